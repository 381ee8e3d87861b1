//! What a run records and returns: one line of `metrics.jsonl` per epoch, the final table
//! (`final.json`, `final.md`) and the summary [`crate::train`] returns. The on-disk field names
//! and serde attributes are the file formats; keep them as they are.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch (1-based, completed).
    pub epoch: usize,
    /// Optimizer steps so far.
    pub step: usize,
    /// Mean training loss over the epoch.
    pub loss: f64,
    /// Held-out clean accuracy in clean mode.
    pub clean_acc: f64,
    /// Held-out robust accuracy in robust mode under the eval PGD.
    pub robust_acc: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Training images per second (counting both halves of a mixed batch once).
    pub images_per_s: f64,
    /// f16 runs: the loss scale at the end of the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// f16 runs: steps skipped for overflowing gradients so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<usize>,
}

/// The final table, on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    /// Test samples for clean accuracy.
    pub n_clean: usize,
    /// Test samples attacked.
    pub n_robust: usize,
    /// Attack preset.
    pub attack: String,
    /// ε.
    pub eps: f64,
    /// Clean accuracy of the clean mode.
    pub clean_mode_clean_acc: f64,
    /// Clean accuracy of the robust mode.
    pub robust_mode_clean_acc: f64,
    /// Robust accuracy of the clean mode.
    pub clean_mode_robust_acc: f64,
    /// Robust accuracy of the robust mode.
    pub robust_mode_robust_acc: f64,
    /// Training wall time in seconds (this process and resumed ones).
    pub train_seconds: f64,
    /// Seed.
    pub seed: u64,
    /// Distribution-shift test sets (`eval.shifts`), both modes.
    #[serde(default)]
    pub shifts: Vec<crate::eval::ShiftResult>,
    /// The same evaluation of the EMA weights (`optim.ema_decay > 0`), which timm-style
    /// recipes report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<Box<FinalReport>>,
}

impl FinalReport {
    /// A small markdown table.
    pub fn table(&self) -> String {
        format!(
            "| mode | clean acc (n={}) | robust acc {} eps={} (n={}) |\n|---|---|---|\n| clean | {:.2}% | {:.2}% |\n| robust | {:.2}% | {:.2}% |\n",
            self.n_clean,
            self.attack,
            self.eps,
            self.n_robust,
            100.0 * self.clean_mode_clean_acc,
            100.0 * self.clean_mode_robust_acc,
            100.0 * self.robust_mode_clean_acc,
            100.0 * self.robust_mode_robust_acc,
        ) + &self.shift_table()
            + &self
                .ema
                .as_ref()
                .map(|e| format!("\nEMA weights:\n\n{}", e.table()))
                .unwrap_or_default()
    }

    fn shift_table(&self) -> String {
        if self.shifts.is_empty() {
            return String::new();
        }
        let mut t = String::from(
            "\n| shifted set | n | classes | clean mode | robust mode |\n|---|---|---|---|---|\n",
        );
        for s in &self.shifts {
            t += &format!(
                "| {} | {} | {} | {:.2}% | {:.2}% |\n",
                s.name,
                s.n,
                s.classes,
                100.0 * s.clean_mode_acc,
                100.0 * s.robust_mode_acc
            );
        }
        t
    }
}

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
