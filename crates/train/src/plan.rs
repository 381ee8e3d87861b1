//! The resolved plan of a run: how the global batch is split over devices, machines and
//! gradient-accumulation steps, the schedule, and what one step costs. `advsoup train --dry-run`
//! prints it without touching data; the loop follows it.
//!
//! Sharding: a global batch of `n` samples is cut into `shards = world · accumulation` equal
//! micro-batches; peer `r` takes shards `r · accumulation .. (r + 1) · accumulation`, one per
//! accumulation step. When mixup/CutMix is on, sample `i` is mixed with sample `n − 1 − i` of the
//! global batch, so each shard holds mirrored pairs (positions `a..a+k` and `n−a−k..n−a`) and the
//! batch-level mix is keyed by the global batch: every shard mixes exactly as one device would.

use std::fmt;
use std::path::PathBuf;

use advsoup_adapters::AdaptedVitConfig;
use advsoup_data::AugmentConfig;

use crate::TrainError;
use crate::config::{PgdSection, Regime, ShiftSection, TrainConfig};
use crate::schedule::Schedule;
pub use crate::topology::{Topology, split_host_port};

/// The resolved plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Run name.
    pub name: String,
    /// Regime.
    pub regime: Regime,
    /// Model parameters (with the adapter).
    pub params: usize,
    /// Domain-specific parameters per domain.
    pub adapter_params: usize,
    /// Peers in all.
    pub world: usize,
    /// Devices per machine.
    pub devices: usize,
    /// Machines.
    pub nodes: usize,
    /// Samples per optimizer step over all peers (per domain).
    pub global_batch: usize,
    /// Samples per optimizer step on one device.
    pub per_device_batch: usize,
    /// Samples per forward/backward pass on one device (per domain).
    pub micro_batch: usize,
    /// Gradient-accumulation steps per optimizer step.
    pub accumulation: usize,
    /// Whether shards hold mirrored pairs (mixup/CutMix on).
    pub paired: bool,
    /// Training samples (after the held-out slice).
    pub train_samples: usize,
    /// Optimizer steps per epoch (the last incomplete batch is dropped).
    pub steps_per_epoch: usize,
    /// Epochs.
    pub epochs: usize,
    /// Optimizer steps in all.
    pub total_steps: usize,
    /// Linear warmup steps.
    pub warmup_steps: usize,
    /// `(step, lr)` at the start, end of warmup, middle and end.
    pub lr_points: Vec<(usize, f64)>,
    /// PGD steps K of the training attack (0 for nominal training).
    pub attack_steps: usize,
    /// ε and η of the training attack.
    pub attack_eps_step: (f64, f64),
    /// Forward+backward image passes per optimizer step (all peers): attack and update.
    pub passes_per_step: usize,
    /// Of which the attack's.
    pub attack_passes_per_step: usize,
    /// EMA decay (0 = off).
    pub ema_decay: f64,
    /// Compute precision of the step.
    pub precision: advsoup_vit::Precision,
    /// Initial loss scale (f16 only).
    pub loss_scale: f64,
    /// Seed of everything random.
    pub seed: u64,
    /// The model to build (ViT and adapter).
    pub model: AdaptedVitConfig,
    /// The training augmentation.
    pub augment: AugmentConfig,
    /// Data worker threads preparing micro-batches.
    pub workers: usize,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Weight α of the clean loss (co-training).
    pub alpha: f64,
    /// The training attack.
    pub train_attack: PgdSection,
    /// AdamW and its decoupled weight decay.
    pub optimizer: OptimizerPlan,
    /// Per-epoch and final evaluation.
    pub eval: EvalPlan,
}

/// AdamW's settings and the decoupled weight decay applied before each update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerPlan {
    /// AdamW β1.
    pub beta1: f32,
    /// AdamW β2.
    pub beta2: f32,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f32,
    /// Decoupled weight decay on weight matrices and conv kernels (0 = off).
    pub weight_decay: f64,
}

/// What the evaluations need: the held-out metrics after every epoch and the final table on
/// the test split (with the distribution-shift sets).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalPlan {
    /// Seed of the attacks.
    pub seed: u64,
    /// Evaluation batch size.
    pub batch_size: usize,
    /// Held-out samples attacked after every epoch.
    pub held_out_robust: usize,
    /// The attack of the per-epoch held-out robust accuracy.
    pub held_out_attack: PgdSection,
    /// Test samples attacked in the final table.
    pub test_robust: usize,
    /// Attack preset of the final table.
    pub test_attack: String,
    /// ε of the final table's attack.
    pub eps: f64,
    /// Distribution-shift test sets.
    pub shifts: Vec<ShiftSection>,
    /// ImageFolder: the class index file, else the classes are `train_dir`'s folders.
    pub class_index: Option<PathBuf>,
    /// ImageFolder: the training tree.
    pub train_dir: Option<PathBuf>,
    /// Input channels of the model.
    pub in_chans: usize,
    /// Input side of the model.
    pub img_size: usize,
}

impl EvalPlan {
    /// The evaluation settings of `config`.
    pub fn new(config: &TrainConfig) -> Result<Self, TrainError> {
        let vit = config.vit()?;
        let e = &config.eval;
        Ok(Self {
            seed: config.seed,
            batch_size: e.batch_size,
            held_out_robust: e.held_out_robust,
            held_out_attack: config.attack.eval.clone(),
            test_robust: e.test_robust,
            test_attack: e.test_attack.clone(),
            eps: config.attack.eval.eps,
            shifts: e.shifts.clone(),
            class_index: config.data.class_index.clone(),
            train_dir: config.data.train_dir.clone(),
            in_chans: vit.in_chans,
            img_size: vit.img_size,
        })
    }
}

impl Plan {
    /// Resolves `config` on `topology` for `train_samples` training samples (after the held-out
    /// slice).
    pub fn new(
        config: &TrainConfig,
        topology: &Topology,
        train_samples: usize,
    ) -> Result<Self, TrainError> {
        topology.validate_counts()?;
        let bad = |field: &str, message: String| TrainError::Invalid {
            field: field.into(),
            message,
        };
        let o = &config.optim;
        let world = topology.world();
        let n = o.batch_size;
        if !n.is_multiple_of(world) {
            return Err(bad(
                "optim.batch_size",
                format!("{n} is not divisible by the {world} devices"),
            ));
        }
        let per_device = n / world;
        let micro = o.micro_batch_size.unwrap_or(per_device).min(per_device);
        if !per_device.is_multiple_of(micro) {
            return Err(bad(
                "optim.micro_batch_size",
                format!(
                    "{micro} does not divide the per-device batch {per_device} (batch_size {n} / {world} devices)"
                ),
            ));
        }
        let accumulation = per_device / micro;
        let augment = config.augment()?;
        let paired = augment.mixup_alpha > 0.0 || augment.cutmix_alpha > 0.0;
        let shards = world * accumulation;
        if paired && shards > 1 && !n.is_multiple_of(2 * shards) {
            return Err(bad(
                "optim.batch_size",
                format!(
                    "with mixup/CutMix each of the {shards} micro-batches holds mirrored pairs: {n} must be a multiple of {}",
                    2 * shards
                ),
            ));
        }
        let steps_per_epoch = train_samples / n;
        if train_samples == 0 {
            return Err(bad(
                "data.held_out",
                format!(
                    "{} leaves no training samples (with data.train_limit = {:?})",
                    config.data.held_out, config.data.train_limit
                ),
            ));
        }
        if steps_per_epoch == 0 {
            return Err(bad(
                "optim.batch_size",
                format!("{n} exceeds the {train_samples} training samples"),
            ));
        }
        let schedule = Schedule::new(o, steps_per_epoch);
        let total_steps = schedule.total_steps();
        let warmup_steps = schedule.warmup_steps();
        let mut points = vec![
            0,
            warmup_steps,
            (warmup_steps + total_steps) / 2,
            total_steps - 1,
        ];
        points.dedup();
        let lr_points = points.into_iter().map(|s| (s, schedule.lr(s))).collect();
        let vit = config.vit()?;
        let adapted = AdaptedVitConfig {
            vit: vit.clone(),
            adapter: config.model.adapter,
        };
        let (attack_steps, domains) = match config.regime {
            Regime::Nominal => (0, 1),
            Regime::Adversarial => (config.attack.train.num_steps, 1),
            Regime::CoTraining => (config.attack.train.num_steps, 2),
        };
        let attack_passes = attack_steps * n;
        Ok(Self {
            name: config.name.clone(),
            regime: config.regime,
            params: adapted.num_params(),
            adapter_params: config.model.adapter.params_per_domain(&vit),
            world,
            devices: topology.devices,
            nodes: topology.nodes,
            global_batch: n,
            per_device_batch: per_device,
            micro_batch: micro,
            accumulation,
            paired,
            train_samples,
            steps_per_epoch,
            epochs: o.epochs,
            total_steps,
            warmup_steps,
            lr_points,
            attack_steps,
            attack_eps_step: (config.attack.train.eps, config.attack.train.step_size),
            passes_per_step: attack_passes + domains * n,
            attack_passes_per_step: attack_passes,
            ema_decay: o.ema_decay,
            precision: config.precision()?,
            loss_scale: o.loss_scale,
            seed: config.seed,
            model: adapted,
            augment,
            workers: config.data.workers,
            schedule,
            alpha: config.alpha,
            train_attack: config.attack.train.clone(),
            optimizer: OptimizerPlan {
                beta1: o.beta1,
                beta2: o.beta2,
                grad_clip: o.grad_clip,
                weight_decay: o.weight_decay,
            },
            eval: EvalPlan::new(config)?,
        })
    }

    /// Global positions (in `0..global_batch`) of micro-batch `micro` of peer `rank`.
    pub fn shard_positions(&self, rank: usize, micro: usize) -> Vec<usize> {
        shard_positions(
            self.global_batch,
            self.world * self.accumulation,
            rank * self.accumulation + micro,
            self.paired,
        )
    }
}

/// Positions of shard `s` of `shards` in a batch of `n`: contiguous, or (when `paired`) the
/// mirrored pairs `a..a+k` and `n−a−k..n−a` with `k = n / (2·shards)`, so that within the shard
/// item `j` pairs with item `len − 1 − j` exactly as in the whole batch.
pub fn shard_positions(n: usize, shards: usize, s: usize, paired: bool) -> Vec<usize> {
    assert!(
        s < shards && n.is_multiple_of(shards),
        "shard {s} of {shards} for a batch of {n}"
    );
    if shards == 1 {
        return (0..n).collect();
    }
    if !paired {
        let k = n / shards;
        return (s * k..(s + 1) * k).collect();
    }
    assert!(
        n.is_multiple_of(2 * shards),
        "paired shards need n % (2 * shards) == 0"
    );
    let k = n / (2 * shards);
    let a = s * k;
    (a..a + k).chain(n - a - k..n - a).collect()
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = |x: usize| group(x);
        writeln!(f, "plan for {} ({})", self.name, self.regime.name())?;
        writeln!(
            f,
            "  model: {} parameters, {} domain-specific per domain",
            per(self.params),
            per(self.adapter_params)
        )?;
        if self.world == 1 {
            writeln!(f, "  devices: 1 (no all-reduce)")?;
        } else {
            writeln!(
                f,
                "  devices: {} = {} per node x {} node(s); gradients all-reduced (mean) every step",
                self.world, self.devices, self.nodes
            )?;
        }
        writeln!(
            f,
            "  batch: global {} = {} device(s) x {} per device = {} x micro-batch {} ({} accumulation step{}){}",
            self.global_batch,
            self.world,
            self.per_device_batch,
            self.accumulation,
            self.micro_batch,
            self.accumulation,
            if self.accumulation == 1 { "" } else { "s" },
            if self.regime == Regime::CoTraining {
                format!(
                    "; mixed clean+adversarial forward of {} per micro-batch",
                    2 * self.micro_batch
                )
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "  steps: {} per epoch x {} epochs = {} ({} training samples, last partial batch dropped)",
            per(self.steps_per_epoch),
            self.epochs,
            per(self.total_steps),
            per(self.train_samples)
        )?;
        let lrs: Vec<String> = self
            .lr_points
            .iter()
            .map(|(s, lr)| format!("step {}: {lr:.3e}", per(*s)))
            .collect();
        writeln!(
            f,
            "  lr: linear warmup {} steps, then cosine; {}",
            per(self.warmup_steps),
            lrs.join(", ")
        )?;
        if self.attack_steps > 0 {
            writeln!(
                f,
                "  attack: PGD-{} l_inf eps {:.5} step {:.5}: {} forward+backward image passes per step ({} per device), {:.1}x a nominal step",
                self.attack_steps,
                self.attack_eps_step.0,
                self.attack_eps_step.1,
                per(self.attack_passes_per_step),
                per(self.attack_passes_per_step / self.world),
                self.passes_per_step as f64 / self.global_batch as f64
            )?;
        } else {
            writeln!(f, "  attack: none (nominal training)")?;
        }
        writeln!(
            f,
            "  passes: {} forward+backward image passes per step, {} in all",
            per(self.passes_per_step),
            per(self.passes_per_step * self.total_steps)
        )?;
        if self.ema_decay > 0.0 {
            writeln!(f, "  ema: decay {} every step", self.ema_decay)?;
        }
        match self.precision {
            advsoup_vit::Precision::F32 => writeln!(f, "  precision: f32")?,
            p => writeln!(
                f,
                "  precision: {p} compute, f32 master weights, optimizer, losses and attack sign{}",
                if p.needs_loss_scaling() {
                    format!("; dynamic loss scaling from {}", self.loss_scale)
                } else {
                    String::new()
                }
            )?,
        }
        Ok(())
    }
}

/// `n` with a comma every three digits (`1,234,567`), as plans and `advsoup info` print counts.
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(86_415_592), "86,415,592");
    }

    #[test]
    fn shards_cover_the_batch_and_keep_mirrored_pairs() {
        for (n, shards, paired) in [(8, 2, true), (12, 3, true), (12, 4, false), (6, 1, true)] {
            let mut all: Vec<usize> = (0..shards)
                .flat_map(|s| shard_positions(n, shards, s, paired))
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>());
            if paired {
                for s in 0..shards {
                    let p = shard_positions(n, shards, s, true);
                    for (j, &pos) in p.iter().enumerate() {
                        assert_eq!(p[p.len() - 1 - j], n - 1 - pos, "{n} {shards} {s}");
                    }
                }
            }
        }
    }
}
