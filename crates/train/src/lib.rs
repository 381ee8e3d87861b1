//! advsoup-train: adversarial co-training with adapters, end to end — the one crate that combines
//! `vit`, `adapters`, `attacks` and `data`.
//!
//! - [`TrainConfig`]: the `configs/*.toml` format (unknown keys rejected, `--set` overrides,
//!   [`TrainConfig::validate`]).
//! - Regimes are burn [`TrainStep`](burn::train::TrainStep) impls ([`step::Nominal`],
//!   [`step::Adversarial`], [`step::CoTraining`]) driven by ONE loop, [`train`] (the trainer). Co-training
//!   crafts PGD against the robust mode of a frozen deterministic copy and routes the clean and
//!   adversarial halves through their own adapters in one mixed batch.
//! - A run directory holds the resolved config, `run.json` (seed, git revision), `metrics.jsonl`,
//!   an atomic checkpoint (model, optimizer, loop state; resumable bit for bit on CPU because every
//!   step reseeds the backend from (seed, step)), `fingerprint.json` (what `--resume` must match,
//!   [`resume`]) and `history.jsonl`, and at the end `model.safetensors`,
//!   `adapter.safetensors`, `final.json`/`final.md`.
//!
//! - Scale-out: [`Plan`] resolves a config on a [`Topology`] (global batch → devices x
//!   micro-batches x gradient-accumulation steps, schedule, attack cost; `--dry-run`), and with
//!   the `collective` feature [`train_parallel`] runs one peer per device on several machines,
//!   all-reducing gradients every step ([`parallel`]); evaluation is sharded and summed. Weight
//!   EMA (`optim.ema_decay`), timm-style RandAugment and RandomResizedCrop, ImageFolder data and
//!   distribution-shift sets (ImageNet-C/-R/-A/-Sketch layouts, 200-class masking) are config
//!   fields.
//!
//! ## Rooms (modules), arrows pointing one way only
//!
//! ```text
//! error ──► every module below
//! config ──► schedule ──► plan ◄── topology        (the config resolved once into a Plan)
//! config ──► step, data          parallel (Peer) ──► eval ──► records
//! plan ──► shard, epoch_eval, report, update       records ──► state ──► checkpoint ──► run_dir
//! step, state, parallel, schedule ──► update       eval, data ──► report
//! run_dir, update, epoch_eval, report, shard, progress ──► trainer ──► launch (train, train_parallel)
//! ```
//!
//! The trainer reads only the [`Plan`]: helpers take its typed parts
//! ([`plan::EvalPlan`], [`plan::OptimizerPlan`], [`schedule::Schedule`]), never the whole
//! [`TrainConfig`] (only the run directory's `config.toml` is the config itself).
//!
//! What it must not do: choose anything on the test split (per-epoch metrics use the held-out
//! slice of train), or print (it logs with `tracing`; the progress bar is opt-in).
//!
//! ```no_run
//! use advsoup_train::{RunOptions, TrainConfig, load_data, train};
//! use burn::backend::{Autodiff, Flex};
//!
//! let config = TrainConfig::load("configs/fmnist-cls.toml".as_ref(), &["optim.epochs=1".into()])?;
//! let splits = load_data(&config, true)?;
//! let device = Default::default();
//! let summary = train::<Autodiff<Flex>>(&config, &splits, &RunOptions::new("runs"), &device)?;
//! println!("{}", summary.report.expect("finished").table());
//! # Ok::<(), advsoup_train::TrainError>(())
//! ```
#![warn(missing_docs)]

/// The burn this crate is built on (`=0.21.0`), so users get the matching version and types.
pub use burn;

mod checkpoint;
pub mod config;
mod data;
mod epoch_eval;
mod error;
pub mod eval;
mod launch;
pub mod machine;
mod parallel;
pub mod plan;
mod progress;
mod records;
mod report;
pub mod resume;
mod run_dir;
pub mod schedule;
mod shard;
mod state;
pub mod step;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod topology;
mod trainer;
mod update;

pub use config::{Regime, TrainConfig};
pub use data::{class_index, load_data, planned_train_samples};
pub use error::TrainError;
#[cfg(feature = "collective")]
pub use launch::train_parallel;
pub use launch::{MULTI_NODE_ENV, multi_node_allowed, train};
pub use plan::{Plan, Topology};
pub use records::{EpochMetrics, FinalReport, RunSummary};
pub use report::final_report;
pub use trainer::RunOptions;

#[cfg(test)]
pub(crate) mod test_support {
    /// burn seeds one generator per backend per process: tests that train hold this lock.
    static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

    pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
        BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod resume_tests;
#[cfg(test)]
mod tests;
