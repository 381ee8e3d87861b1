//! What a run records and returns: one line of `metrics.jsonl` per epoch and the final table
//! (`final.json`, `final.md`) are advsoup-records' types (the file formats, shared with every
//! reader); [`RunSummary`] is what [`crate::train`] returns.

use std::path::PathBuf;

pub use advsoup_records::run::{EpochMetrics, FinalReport};

/// What a finished run returns.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// Per-epoch metrics, all epochs.
    pub epochs: Vec<EpochMetrics>,
    /// The final table (`None` when stopped by `max_steps`).
    pub report: Option<FinalReport>,
    /// The loss of every optimizer step run by this process (mean over all peers and
    /// accumulation steps).
    pub step_losses: Vec<f64>,
}
