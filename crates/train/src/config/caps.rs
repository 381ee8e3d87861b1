//! The largest counts a config may ask for: a typo or a unit slip (`num_steps = 1e11`) must be
//! one line naming the field and its maximum, not a run that works in silence for ever. Each
//! maximum is far above any published recipe (README, "Config").

use super::{TrainConfig, invalid};
use crate::TrainError;

/// Most PGD steps of an attack: `attack.train.num_steps`, `attack.eval.num_steps` (robustness
/// papers use 7 to 100; AutoAttack's APGD runs 100).
pub const MAX_ATTACK_STEPS: usize = 10_000;

/// Most epochs (`optim.epochs`; DeiT trains ImageNet for 300 to 1000).
pub const MAX_EPOCHS: usize = 100_000;

/// Most samples in one batch: `optim.batch_size`, `optim.micro_batch_size`, `eval.batch_size`
/// (large-batch ImageNet training uses up to 64Ki).
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// Most samples a count may name: `data.held_out`, `data.train_limit`, `data.train_samples`,
/// `eval.held_out_robust`, `eval.test_robust` (4 Gi: above the largest public image sets).
pub const MAX_SAMPLES: usize = 1 << 32;

/// Largest image side to decode (`data.load_size`, in pixels).
pub const MAX_IMAGE_SIZE: usize = 8192;

impl TrainConfig {
    /// Refuses a count above its maximum, naming the field and the maximum.
    pub(super) fn validate_caps(&self) -> Result<(), TrainError> {
        let (d, o, e, a) = (&self.data, &self.optim, &self.eval, &self.attack);
        let caps: [(&str, Option<usize>, usize); 12] = [
            (
                "attack.train.num_steps",
                Some(a.train.num_steps),
                MAX_ATTACK_STEPS,
            ),
            (
                "attack.eval.num_steps",
                Some(a.eval.num_steps),
                MAX_ATTACK_STEPS,
            ),
            ("optim.epochs", Some(o.epochs), MAX_EPOCHS),
            ("optim.batch_size", Some(o.batch_size), MAX_BATCH_SIZE),
            ("optim.micro_batch_size", o.micro_batch_size, MAX_BATCH_SIZE),
            ("eval.batch_size", Some(e.batch_size), MAX_BATCH_SIZE),
            ("data.held_out", Some(d.held_out), MAX_SAMPLES),
            ("data.train_limit", d.train_limit, MAX_SAMPLES),
            ("data.train_samples", d.train_samples, MAX_SAMPLES),
            ("eval.held_out_robust", Some(e.held_out_robust), MAX_SAMPLES),
            ("eval.test_robust", Some(e.test_robust), MAX_SAMPLES),
            ("data.load_size", d.load_size, MAX_IMAGE_SIZE),
        ];
        for (field, value, max) in caps {
            if let Some(v) = value.filter(|v| *v > max) {
                return Err(invalid(field, format!("{v} is above the maximum of {max}")));
            }
        }
        if let Some(n) = d.dataset.train_size()
            && d.held_out >= n
        {
            return Err(invalid(
                "data.held_out",
                format!(
                    "{} leaves none of the {n} training samples of {} to train on",
                    d.held_out,
                    d.dataset.kind()
                ),
            ));
        }
        Ok(())
    }
}
