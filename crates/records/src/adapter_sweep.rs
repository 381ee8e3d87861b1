//! The records of `cargo xtask sweep-adapters`, the paper's adapter comparison (one row per
//! regime / adapter, each trained and evaluated by the cli): the sweep file it reads
//! ([`SweepConfig`], `configs/sweep-*.toml`), the settings kept beside each row
//! (`<row>.settings.json`, [`RowSettings`]) and the report it writes (`results.json`,
//! [`SweepResults`]). "Sweep" here is over adapters; the soup sweep over β is
//! [`crate::soup`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A sweep file (`configs/sweep-*.toml`); `results.json` repeats it as run.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Names the report directory.
    pub name: String,
    /// The training config every row starts from (relative to the workspace root).
    pub base: PathBuf,
    /// Seed of every run, attack and corruption.
    #[serde(default)]
    pub seed: u64,
    /// `key=value` overrides applied to every row's training config.
    #[serde(default)]
    pub set: Vec<String>,
    /// Prompt tokens of the `prompt` row.
    pub prompt_tokens: usize,
    /// Rank of the `lora` row.
    pub lora_rank: usize,
    /// Robust evaluation.
    pub eval: EvalSpec,
    /// Soup sweep and per-shift selection.
    pub soup: SoupSpec,
    /// The `--quick` variant.
    #[serde(default)]
    pub quick: Option<QuickSpec>,
}

impl SweepConfig {
    /// The corruptions of `soup.corruptions` (trimmed, without empty entries and `none`).
    pub fn corruption_list(&self) -> Vec<String> {
        self.soup
            .corruptions
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty() && c != "none")
            .collect()
    }
}

/// Robust evaluation of each row (in the soup sweep, at every β).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Test images attacked (PGD-20 and APGD-CE on the same images).
    pub n_robust: usize,
    /// APGD-CE iterations.
    pub apgd_iter: usize,
}

/// Soup sweep and β selection.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SoupSpec {
    /// Soup weights, `start:end:step` or a comma list.
    pub betas: String,
    /// Test images for the sweep's clean accuracy.
    pub n_clean: usize,
    /// Test images per corruption in the sweep.
    pub n_shift: usize,
    /// Corruptions (comma list of names or `all`).
    pub corruptions: String,
    /// Their severity.
    pub severity: u8,
    /// Held-out images β is chosen on, per corruption.
    pub n_held_out: usize,
    /// Test images the chosen β is reported on, per corruption.
    pub n_test: usize,
}

/// What `--quick` changes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuickSpec {
    /// Extra overrides after the sweep's own.
    #[serde(default)]
    pub set: Vec<String>,
    /// Replaces `eval.n_robust`.
    pub n_robust: Option<usize>,
    /// Replaces `eval.apgd_iter`.
    pub apgd_iter: Option<usize>,
    /// Replaces `soup.betas`.
    pub betas: Option<String>,
    /// Replaces `soup.n_clean`.
    pub n_clean: Option<usize>,
    /// Replaces `soup.n_shift`.
    pub n_shift: Option<usize>,
    /// Replaces `soup.corruptions`.
    pub corruptions: Option<String>,
    /// Replaces `soup.n_held_out`.
    pub n_held_out: Option<usize>,
    /// Replaces `soup.n_test`.
    pub n_test: Option<usize>,
}

/// `<row>.settings.json`: the exact settings a row was trained and evaluated with, so results
/// of other settings are never reused silently.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RowSettings {
    /// The `advsoup` arguments of the training run.
    pub train: Vec<String>,
    /// The robust evaluation.
    pub eval: EvalSpec,
    /// The soup sweep and selection.
    pub soup: SoupSpec,
}

/// Per-shift soup result of one row (from its `select-<shift>.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShiftSoupResult {
    /// `corruption:severity`.
    pub shift: String,
    /// β chosen on the corrupted held-out split.
    pub chosen_beta: f64,
    /// Corrupted-test accuracy at that β.
    pub soup_acc: f64,
    /// ... in the clean mode (β = 1).
    pub clean_mode_acc: f64,
    /// ... in the robust mode (β = 0).
    pub robust_mode_acc: f64,
    /// Test images.
    pub n_test: usize,
}

/// One row of the report, every number read from the cli's files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RowResult {
    /// Row name.
    pub name: String,
    /// Human label.
    pub label: String,
    /// Regime.
    pub regime: String,
    /// Adapter (cli spelling).
    pub adapter: String,
    /// Whether the two modes differ.
    pub has_adapter: bool,
    /// Domain-specific parameters per domain.
    pub params_per_domain: usize,
    /// Total parameters.
    pub total_params: usize,
    /// Clean accuracy of the clean mode on the test split.
    pub clean_acc: f64,
    /// Its test images.
    pub n_clean: usize,
    /// Robust accuracy of the robust mode under the run's final attack (PGD-20).
    pub robust_acc_pgd20: f64,
    /// Its attacked test images.
    pub n_robust_pgd20: usize,
    /// The final attack's name as the run recorded it.
    pub final_attack: String,
    /// Robust accuracy of the robust mode under APGD-CE.
    pub robust_acc_apgd_ce: f64,
    /// Its attacked test images.
    pub n_robust_apgd: usize,
    /// Mean over shifts of the clean mode's corrupted-test accuracy.
    pub mean_corruption_acc: f64,
    /// Mean over shifts of the soup's corrupted-test accuracy at the β chosen on held-out.
    pub mean_soup_acc: f64,
    /// Shifts where the chosen soup beats both modes.
    pub soup_beats_both: usize,
    /// Per shift.
    pub shifts: Vec<ShiftSoupResult>,
    /// Training wall time (s).
    pub train_seconds: f64,
    /// Soup sweep wall time (s).
    pub sweep_seconds: f64,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Its soup sweep.
    pub soup_json: PathBuf,
}

/// `results.json`: the whole report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepResults {
    /// The sweep file's settings as run.
    pub config: SweepConfig,
    /// `--quick`.
    pub quick: bool,
    /// ε (ℓ∞) of the evaluations.
    pub eps: f64,
    /// Rows with results.
    pub rows: Vec<RowResult>,
    /// The paper's claims checked against these numbers.
    pub claims: Vec<Claim>,
}

/// The verdict on one claim (serialized as the text REPORT.md shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The numbers support the claim.
    #[serde(rename = "holds")]
    Holds,
    /// The numbers contradict the claim.
    #[serde(rename = "does not hold")]
    DoesNotHold,
    /// Behind, but by less than a margin too wide to decide on.
    #[serde(rename = "inconclusive (too few test images)")]
    Inconclusive,
    /// The rows the claim needs have no results.
    #[serde(rename = "not measured")]
    NotMeasured,
}

impl Verdict {
    /// The text of the verdict (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::Inconclusive => "inconclusive (too few test images)",
            Verdict::NotMeasured => "not measured",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A claim of the paper and whether these numbers support it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claim {
    /// The claim.
    pub claim: String,
    /// `holds`, `does not hold`, `inconclusive (too few test images)` or `not measured`.
    pub verdict: Verdict,
    /// The numbers behind the verdict.
    pub evidence: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWEEP_TOML_AS_JSON: &str = r#"{
  "name": "fmnist",
  "base": "configs/fmnist.toml",
  "seed": 0,
  "set": [
    "optim.epochs=8"
  ],
  "prompt_tokens": 4,
  "lora_rank": 4,
  "eval": {
    "n_robust": 1000,
    "apgd_iter": 50
  },
  "soup": {
    "betas": "0:1:0.1",
    "n_clean": 10000,
    "n_shift": 1000,
    "corruptions": "contrast, none,fog",
    "severity": 3,
    "n_held_out": 1000,
    "n_test": 1000
  },
  "quick": null
}"#;

    #[test]
    fn sweep_config_round_trips_and_lists_corruptions() {
        let c: SweepConfig = serde_json::from_str(SWEEP_TOML_AS_JSON).expect("parse");
        assert_eq!(c.corruption_list(), ["contrast", "fog"]);
        assert_eq!(
            serde_json::to_string_pretty(&c).expect("json"),
            SWEEP_TOML_AS_JSON
        );
        let typo = SWEEP_TOML_AS_JSON.replace("\"lora_rank\"", "\"lora_rnak\"");
        let e = serde_json::from_str::<SweepConfig>(&typo).expect_err("unknown field");
        assert!(e.to_string().contains("lora_rnak"), "{e}");
    }

    #[test]
    fn settings_json_as_xtask_wrote_it_parses() {
        // xtask wrote it with serde_json::json!({"train": a, "eval": .., "soup": ..}),
        // whose map sorts the keys; field order does not matter when reading
        let c: SweepConfig = serde_json::from_str(SWEEP_TOML_AS_JSON).expect("parse");
        let written = serde_json::to_string_pretty(&serde_json::json!({
            "train": ["train", "--config", "configs/fmnist.toml"],
            "eval": c.eval,
            "soup": c.soup,
        }))
        .expect("json");
        let s: RowSettings = serde_json::from_str(&written).expect("parse");
        assert_eq!(s.train.len(), 3);
        assert_eq!(s.soup, c.soup);
    }

    #[test]
    fn verdicts_serialize_as_the_report_text() {
        for v in [
            Verdict::Holds,
            Verdict::DoesNotHold,
            Verdict::Inconclusive,
            Verdict::NotMeasured,
        ] {
            let json = serde_json::to_string(&v).expect("json");
            assert_eq!(json, format!("\"{}\"", v.as_str()));
            assert_eq!(serde_json::from_str::<Verdict>(&json).expect("parse"), v);
        }
        let claim =
            r#"{"claim":"c","verdict":"inconclusive (too few test images)","evidence":"e"}"#;
        let c: Claim = serde_json::from_str(claim).expect("parse");
        assert_eq!(c.verdict, Verdict::Inconclusive);
        assert_eq!(serde_json::to_string(&c).expect("json"), claim);
    }
}
