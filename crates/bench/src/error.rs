//! [`BenchError`]: why a benchmark could not run.

use std::path::PathBuf;

/// Why a benchmark could not run. The messages are the ones `advsoup bench` has always
/// printed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A preset's model could not be built.
    #[error("preset {preset}")]
    Model {
        /// The preset's short name.
        preset: String,
        /// Why.
        source: advsoup_vit::VitConfigError,
    },
    /// A preset was asked to run at batch 0.
    #[error("preset {preset}: batch must be > 0")]
    ZeroBatch {
        /// The preset's short name.
        preset: String,
    },
    /// The training attack could not be built from the settings.
    #[error(transparent)]
    Attack(#[from] advsoup_attacks::AttackError),
    /// `/proc/self/status` has no such field (or cannot be read: no `/proc`).
    #[error("reading {field} from /proc/self/status")]
    ProcStatus {
        /// `VmRSS` or `VmHWM`.
        field: &'static str,
    },
    /// The memory child process could not be started.
    #[error("running {}", exe.display())]
    Spawn {
        /// The binary.
        exe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The memory child process exited with an error.
    #[error("memory child (K = {steps}) failed: {stderr}")]
    ChildFailed {
        /// Its attack length K.
        steps: usize,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// The memory child's last line of output is not a memory record.
    #[error("memory child printed `{line}`")]
    ChildOutput {
        /// The line.
        line: String,
        /// Why it does not parse.
        source: serde_json::Error,
    },
}
