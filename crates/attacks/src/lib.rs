//! advsoup-attacks: white- and black-box adversarial attacks and an AutoAttack-style robustness
//! evaluator, generic over any burn autodiff backend.
//!
//! - Attacks take a **logits closure** `Fn(Tensor<AD, 4>) -> Tensor<AD, 2>` (pixels in [0, 1] →
//!   logits), never a concrete model. Pass a frozen, deterministic copy
//!   (`M::from_inner(model.valid()).no_grad()` with dropout off): only the input is lifted to
//!   the autodiff backend, x_adv lives on the inner backend between steps, no graph outlives a
//!   step (memory is flat in K) and the PGD/APGD step loops read nothing back to the host.
//! - Threat models [`ThreatModel::Linf`] and [`ThreatModel::L2`] share one projection / step /
//!   random-start implementation; every iterate is clamped to [0, 1].
//! - One [`Attack`] trait, every attack an impl: [`Fgsm`], [`Pgd`] (restarts, targeted, CE /
//!   margin / DLR [`Loss`]), [`Apgd`] (APGD-CE, APGD-DLR, APGD-T), [`Square`] (black box).
//!   [`Attack::attack`] checks the arguments once for all of them; [`AttackSpec::run`]
//!   dispatches a serializable config through it.
//! - Random starts are keyed by `(seed, sample id, restart)`: a sample gets the same start in
//!   any batch. There is no hidden RNG.
//! - [`Evaluator`] runs an ordered ensemble on the samples still robust, judges every attack by
//!   a fresh forward pass, and returns a serializable [`EvalReport`] with per-sample results,
//!   costs, the configs, the seed and [`Sanity`] flags. Presets: `pgd-K`, `fgsm`, `apgd-ce`,
//!   `apgd-t`, `square`, `standard`.
//! - Every count is capped at a documented maximum ([`MAX_STEPS`] steps or iterations,
//!   [`MAX_RESTARTS`] restarts, [`MAX_QUERIES`] queries, [`MAX_TARGET_CLASSES`] targets):
//!   validation refuses more with [`AttackError::TooLarge`], so no config runs for days.
//!
//! What it must not do: depend on a model crate, do IO, print (it logs with `tracing`), or
//! compute parameter gradients inside an attack.
//!
//! ```
//! use advsoup_attacks::{Attack, Evaluator, PgdConfig, ThreatModel};
//! use burn::backend::{Autodiff, Flex};
//! use burn::prelude::*;
//!
//! type AD = Autodiff<Flex>;
//! let device = Default::default();
//! // A fixed linear "model" on 1x2x2 images with 3 classes.
//! let w = Tensor::<AD, 2>::from_floats([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0], [-1.0, 0.5, 1.0], [0.5, 0.0, -0.5]], &device);
//! let f = |x: Tensor<AD, 4>| x.reshape([0, 4]).matmul(w.clone());
//! let x = Tensor::<Flex, 4>::from_floats([[[[0.2, 0.8], [0.5, 0.1]]]], &device);
//! let y = Tensor::<Flex, 1, Int>::from_ints([1], &device);
//!
//! // What a training step calls once per batch:
//! let pgd = PgdConfig::new(ThreatModel::Linf, 0.1, 2).init()?;
//! let out = pgd.attack::<AD, _>(&f, &x, &y, &[7], 42);
//! assert_eq!(out.x_adv.dims(), [1, 1, 2, 2]);
//!
//! // What an evaluation calls:
//! let eval = Evaluator::preset("pgd-10", ThreatModel::Linf, 0.1, 0)?;
//! let report = eval.evaluate::<AD, _>(&f, &x, &y, &[7]).report;
//! assert!(report.robust <= report.clean_correct);
//! # Ok::<(), advsoup_attacks::AttackError>(())
//! ```
#![warn(missing_docs)]

/// The burn this crate is built on (`=0.21.0`), so users get the matching version and types.
pub use burn;

mod apgd;
mod attack;
pub mod bench;
mod core;
mod error;
mod eval;
mod loss;
mod pgd;
mod rng;
mod square;
mod threat;

pub use apgd::{Apgd, ApgdConfig, ApgdLoss};
pub use attack::Attack;
pub use core::{AttackOutput, Cost};
pub use error::{AttackError, MAX_QUERIES, MAX_RESTARTS, MAX_STEPS, MAX_TARGET_CLASSES};
pub use eval::{
    AttackSpec, AttackStats, EvalReport, Evaluation, Evaluator, SampleResult, Sanity, SweepReport,
};
pub use loss::Loss;
pub use pgd::{Fgsm, FgsmConfig, Pgd, PgdConfig, Selection};
pub use square::{Square, SquareConfig};
pub use threat::ThreatModel;

#[cfg(test)]
mod tests;
