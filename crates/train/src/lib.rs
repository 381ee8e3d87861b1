//! advsoup-train: adversarial co-training with adapters, end to end — the one crate that combines
//! `vit`, `adapters`, `attacks` and `data`.
//!
//! - [`TrainConfig`]: the `configs/*.toml` format (unknown keys rejected, `--set` overrides,
//!   [`TrainConfig::validate`]).
//! - Regimes are burn [`TrainStep`](burn::train::TrainStep) impls ([`step::Nominal`],
//!   [`step::Adversarial`], [`step::CoTraining`]) driven by ONE loop, [`train`]. Co-training
//!   crafts PGD against the robust mode of a frozen deterministic copy and routes the clean and
//!   adversarial halves through their own adapters in one mixed batch.
//! - A run directory holds the resolved config, `run.json` (seed, git revision), `metrics.jsonl`,
//!   an atomic checkpoint (model, optimizer, loop state; resumable bit for bit on CPU because every
//!   step reseeds the backend from (seed, step)), and at the end `model.safetensors`,
//!   `adapter.safetensors`, `final.json`/`final.md`.
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

use std::path::PathBuf;

pub mod config;
pub mod eval;
pub mod run;
pub mod step;

pub use config::{Regime, TrainConfig};
pub use run::{EpochMetrics, FinalReport, RunOptions, RunSummary, final_report, train};

/// Why training or evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file is malformed or invalid.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A config value is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What was expected.
        message: String,
    },
    /// The run directory already has a checkpoint and `--resume` was not given.
    #[error("{dir} already holds a run: pass --resume to continue it, or choose another name")]
    RunExists {
        /// The run directory.
        dir: PathBuf,
    },
    /// A checkpoint could not be written or read.
    #[error("{path}: checkpoint: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The loss became NaN or infinite.
    #[error("non-finite loss {loss} at step {step} (epoch {}); the last good checkpoint is in {dir}", epoch + 1)]
    NonFinite {
        /// Global step.
        step: usize,
        /// Epoch (0-based).
        epoch: usize,
        /// The loss.
        loss: f64,
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// Stopped on request (Ctrl-C) after writing a checkpoint.
    #[error("interrupted; checkpoint saved, continue with --resume ({dir})")]
    Interrupted {
        /// The run directory.
        dir: PathBuf,
    },
    /// Data could not be loaded.
    #[error(transparent)]
    Data(#[from] advsoup_data::DataError),
    /// An attack config is invalid.
    #[error("attack: {0}")]
    Attack(advsoup_attacks::AttackError),
    /// A model or adapter file could not be written.
    #[error(transparent)]
    Adapter(advsoup_adapters::io::AdapterIoError),
}

/// Writes a file atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), TrainError> {
    advsoup_vit::io::write_atomic(path, bytes).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Loads the config's dataset as train / held-out / test, fetching it first when `fetch` is
/// set and it is not cached.
pub fn load_data(config: &TrainConfig, fetch: bool) -> Result<advsoup_data::Splits, TrainError> {
    let dir = advsoup_data::resolve_data_dir(config.data.data_dir.as_deref())?;
    let kind = config.data.dataset.kind();
    match advsoup_data::load_splits(kind, &dir, config.data.held_out, config.seed) {
        Err(advsoup_data::DataError::NotCached { .. }) if fetch => {
            advsoup_data::fetch(kind, &dir)?;
            Ok(advsoup_data::load_splits(
                kind,
                &dir,
                config.data.held_out,
                config.seed,
            )?)
        }
        other => Ok(other?),
    }
}
