//! The crate's one error type, and the atomic write that reports it.

use std::path::{Path, PathBuf};

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
    /// `--resume` with a config that computes something else than the run's.
    #[error(
        "--resume {dir}: the configuration differs from the run's: {changes} (only {allowed} may change on resume)"
    )]
    ConfigChanged {
        /// The run directory.
        dir: PathBuf,
        /// Each changed field, `name old -> new`, comma-separated.
        changes: String,
        /// The fields that may change ([`crate::resume::RESUMABLE`]).
        allowed: String,
    },
    /// Another process holds the run directory (or its lock could not be taken).
    #[error(transparent)]
    Locked(advsoup_io::LockError),
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
    /// An evaluation failed (a damaged test image, non-finite logits).
    #[error(transparent)]
    Eval(#[from] advsoup_eval::EvalError),
    /// An attack config is invalid.
    #[error("attack: {0}")]
    Attack(advsoup_attacks::AttackError),
    /// A model or adapter file could not be written.
    #[error(transparent)]
    Adapter(advsoup_adapters::io::AdapterIoError),
    /// A data worker thread stopped without sending its micro-batch.
    #[error("data worker: {0}")]
    Worker(String),
    /// Data-parallel setup or communication failed.
    #[error("data-parallel: {0}")]
    Collective(String),
    /// Another peer could not prepare its micro-batches for this step (that peer returns the
    /// data error itself), so this one stops too instead of waiting for it.
    #[error("data-parallel: another peer's data failed at {at} (its error names the file)")]
    PeerDataFailed {
        /// Where: `step 12`, `the held-out evaluation`, `the final evaluation`.
        at: String,
    },
}

/// [`advsoup_io::write_atomic`] (unique temporary file, synced, renamed, directory synced), its
/// error reported as [`TrainError::Io`] naming `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    advsoup_io::write_atomic(path, bytes).map_err(|e| TrainError::Io {
        path: path.to_owned(),
        source: e.source,
    })
}

/// Maps an IO error on `path` to [`TrainError::Io`].
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_owned(),
        source,
    }
}
