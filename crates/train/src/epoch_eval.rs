//! The evaluation after every epoch, on the held-out slice of train (never the test split):
//! clean accuracy in clean mode and robust accuracy in robust mode under the eval PGD, each
//! peer counting its shard. A streamed set is decoded here, so an unreadable image is an error.

use advsoup_adapters::{AdaptedVit, Mode, Route};
use advsoup_attacks::{AttackSpec, Evaluator, PgdConfig, ThreatModel};
use std::ops::Range;

use advsoup_data::ImageDataset;
use burn::tensor::backend::AutodiffBackend;

use crate::TrainError;
use advsoup_eval::{EvalJob, correct_count};

use crate::eval::shard_range;
use crate::parallel::Peer;
use crate::plan::EvalPlan;

/// The held-out evaluation of a run.
pub(crate) struct HeldOutEval {
    attack: Evaluator,
    batch_size: usize,
    robust: usize,
}

impl HeldOutEval {
    /// The eval PGD of `eval` (ℓ∞, `attack.eval`) on `eval.held_out_robust` samples.
    pub(crate) fn new(eval: &EvalPlan) -> Result<Self, TrainError> {
        let e = &eval.held_out_attack;
        let pgd = PgdConfig::new(ThreatModel::Linf, e.eps, e.num_steps)
            .with_step_size(e.step_size)
            .with_random_start(e.random_start);
        let attack =
            Evaluator::new(vec![AttackSpec::Pgd(pgd)], eval.seed).map_err(TrainError::Attack)?;
        Ok(Self {
            attack,
            batch_size: eval.batch_size,
            robust: eval.held_out_robust,
        })
    }

    /// `(clean accuracy, robust accuracy)` of `model` on `held`, summed over the peers.
    ///
    /// A streamed set is decoded here, [`CHUNK`] samples at a time, so that a file that fails
    /// to decode is an error naming it instead of a panic in an evaluation worker.
    pub(crate) fn accuracies<B: AutodiffBackend>(
        &self,
        model: &AdaptedVit<B::InnerBackend>,
        held: &ImageDataset,
        peer: Peer,
        device: &B::Device,
    ) -> Result<(f64, f64), TrainError> {
        let bs = self.batch_size;
        let clean_range = shard_range(held.num_samples(), peer);
        let n_robust = self.robust.min(held.num_samples());
        let robust_range = shard_range(n_robust, peer);
        let clean_count = |data: &ImageDataset, range: Range<usize>| {
            let route = Route::mode(Mode::Clean);
            correct_count(model, data, range, &route, None, bs, device)
        };
        let robust_job = EvalJob::new(self.attack.clone(), Mode::Adversarial).batch_size(bs);
        let (correct, robust) = if held.is_streamed() {
            let mut correct = 0;
            for start in clean_range.clone().step_by(CHUNK) {
                let part = in_memory(held, start..(start + CHUNK).min(clean_range.end))?;
                correct += clean_count(&part, 0..part.num_samples());
            }
            let part = in_memory(held, robust_range)?;
            let n = part.num_samples();
            (
                correct,
                robust_job.range(0..n).count::<B>(model, &part, device),
            )
        } else {
            let robust = robust_job
                .range(robust_range)
                .count::<B>(model, held, device);
            (clean_count(held, clean_range), robust)
        };
        let sums = peer.sum::<B::InnerBackend>(&[correct as f64, robust as f64], device)?;
        let ratio = |k: f64, n: usize| if n == 0 { 0.0 } else { k / n as f64 };
        Ok((ratio(sums[0], held.num_samples()), ratio(sums[1], n_robust)))
    }
}

/// Samples of a streamed set decoded at once by the held-out evaluation.
const CHUNK: usize = 512;

/// The samples `range` of `data` decoded into memory.
fn in_memory(data: &ImageDataset, range: Range<usize>) -> Result<ImageDataset, TrainError> {
    let mut pixels = Vec::with_capacity(range.len() * data.image_len());
    for i in range.clone() {
        pixels.extend_from_slice(&data.try_image(i)?);
    }
    let labels = data.labels()[range].to_vec();
    Ok(ImageDataset::new(
        data.shape(),
        pixels,
        labels,
        data.num_classes(),
    )?)
}
