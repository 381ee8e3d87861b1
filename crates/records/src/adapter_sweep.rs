//! The records of `cargo xtask sweep-adapters`, the paper's adapter comparison (one row per
//! regime / adapter, each trained and evaluated by the cli): the sweep file it reads
//! ([`SweepConfig`], `configs/sweep-*.toml`), the settings kept beside each row
//! (`<row>.settings.json`, [`RowSettings`]) and the report it writes (`results.json`,
//! [`SweepResults`]). "Sweep" here is over adapters; the soup sweep over β is
//! [`crate::soup`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::run::CpuInfo;
use crate::stats::Interval;

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
    /// The budget axis: nominal vs co-training + cls token at a longer budget (`None`: off).
    #[serde(default)]
    pub budget: Option<BudgetSpec>,
}

/// The budget axis of a sweep: the rows of the paper's main claim (nominal and co-training with
/// the cls token) trained again with these overrides after the sweep's own, seeds paired.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// What the budget is, for the report (e.g. `full training split, 6 epochs (5.9x)`).
    pub label: String,
    /// `key=value` overrides after the sweep's `set`.
    pub set: Vec<String>,
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
    /// Test images the `standard` ensemble attacks (robust mode) in the rows the claims rest
    /// on (0: none).
    #[serde(default)]
    pub n_standard: usize,
    /// Those rows (names).
    #[serde(default)]
    pub standard_rows: Vec<String>,
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
    /// Replaces `eval.n_standard`.
    #[serde(default)]
    pub n_standard: Option<usize>,
    /// Replaces the budget axis's overrides (`label`, `set`); without it `--quick` has no
    /// budget axis.
    #[serde(default)]
    pub budget: Option<BudgetSpec>,
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

impl RowSettings {
    /// Whether `other` computes the same row: the same settings up to where the checkout and
    /// the output directory are (`--config` compared as the sweep file's `base` it ends with,
    /// `--runs-dir` by its last component, `seed-<s>`), so a clone elsewhere, or a rerun into
    /// another `--out`, resumes the rows it holds.
    pub fn same_run(&self, other: &Self, base: &Path) -> bool {
        self.eval == other.eval
            && self.soup == other.soup
            && location_free(&self.train, base) == location_free(&other.train, base)
    }
}

/// `args` with the checkout's and the output directory's location taken out.
fn location_free(args: &[String], base: &Path) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut flag: Option<&str> = None;
    for a in args {
        out.push(match flag {
            Some("--config") if Path::new(a).ends_with(base) => base.display().to_string(),
            Some("--runs-dir") => Path::new(a)
                .file_name()
                .map_or_else(|| a.clone(), |n| n.to_string_lossy().into_owned()),
            _ => a.clone(),
        });
        flag = matches!(a.as_str(), "--config" | "--runs-dir").then_some(a.as_str());
    }
    out
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

/// One point of a row's soup front (from its `soup.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FrontPoint {
    /// Weight of the clean adapter.
    pub beta: f64,
    /// Clean accuracy of the soup.
    pub clean_acc: f64,
    /// Robust accuracy of the soup (worst of the sweep's attacks).
    pub robust_acc: f64,
}

/// The `standard` ensemble on a row's robust mode (`advsoup eval --attack standard`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StandardResult {
    /// Test images attacked.
    pub n: usize,
    /// Clean accuracy on them.
    pub clean_acc: f64,
    /// Accuracy under every attack of the ensemble.
    pub robust_acc: f64,
    /// The ensemble's attacks, in order.
    pub attacks: Vec<String>,
    /// The evaluator's gradient-masking sanity warnings (empty: none raised).
    pub sanity_flags: Vec<String>,
    /// The eval report.
    pub report: PathBuf,
}

/// One row of the report for one seed, every number read from the cli's files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RowResult {
    /// Row name.
    pub name: String,
    /// The seed of its training run, attacks and corruptions.
    #[serde(default)]
    pub seed: u64,
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
    /// The soup front along β (one point for a row without an adapter).
    #[serde(default)]
    pub front: Vec<FrontPoint>,
    /// The `standard` ensemble on the robust mode, for the rows the claims rest on.
    #[serde(default)]
    pub standard: Option<StandardResult>,
    /// Training wall time (s).
    pub train_seconds: f64,
    /// Soup sweep wall time (s).
    pub sweep_seconds: f64,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Its soup sweep.
    pub soup_json: PathBuf,
}

/// One row of the budget axis for one seed (from its `final.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BudgetRow {
    /// `nominal` or `cls_token`.
    pub name: String,
    /// Seed.
    pub seed: u64,
    /// Clean accuracy of the clean mode on the test split.
    pub clean_acc: f64,
    /// Its test images.
    pub n_clean: usize,
    /// Robust accuracy of the robust mode under the run's final attack.
    pub robust_acc: f64,
    /// Its attacked test images.
    pub n_robust: usize,
    /// Training wall time (s).
    pub train_seconds: f64,
    /// The run directory.
    pub run_dir: PathBuf,
}

/// The budget axis's results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BudgetResults {
    /// The budget as run.
    pub spec: BudgetSpec,
    /// Every (row, seed) that finished.
    pub rows: Vec<BudgetRow>,
}

/// A row's numbers over seeds: mean and 95% interval of each.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RowSummary {
    /// Row name.
    pub name: String,
    /// Human label.
    pub label: String,
    /// Whether the two modes differ.
    pub has_adapter: bool,
    /// Domain-specific parameters per domain.
    pub params_per_domain: usize,
    /// The seeds with results.
    pub seeds: Vec<u64>,
    /// Clean accuracy of the clean mode.
    pub clean_acc: Interval,
    /// Robust accuracy of the robust mode under PGD-20.
    pub robust_acc_pgd20: Interval,
    /// ... under APGD-CE.
    pub robust_acc_apgd_ce: Interval,
    /// ... under the `standard` ensemble (`None`: not run on this row).
    pub robust_acc_standard: Option<Interval>,
    /// Mean corrupted-test accuracy of the clean mode.
    pub mean_corruption_acc: Interval,
    /// Mean corrupted-test accuracy of the per-shift soup.
    pub mean_soup_acc: Interval,
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
    /// The seeds of the sweep.
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// Every (row, seed) with results, rows in report order, seeds ascending.
    pub rows: Vec<RowResult>,
    /// Per row over seeds, in report order.
    #[serde(default)]
    pub summary: Vec<RowSummary>,
    /// The budget axis (`None`: off).
    #[serde(default)]
    pub budget: Option<BudgetResults>,
    /// The paper's claims checked against these numbers.
    pub claims: Vec<Claim>,
    /// The CPUs the runs were trained on (each run's `run.json`), distinct, in the order the
    /// rows were read. Results reproduce bit for bit only on a CPU with the same SIMD paths
    /// ([`CpuInfo::same_paths`]); empty when no run recorded its CPU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<CpuInfo>,
    /// Runs whose `run.json` names no CPU (written before it was recorded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub runs_without_cpu: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl SweepResults {
    /// Whether the runs were trained on CPUs with different SIMD paths (so no single machine
    /// reproduces every (row, seed) bit for bit).
    pub fn mixed_machines(&self) -> bool {
        self.machines
            .iter()
            .any(|m| !m.same_paths(&self.machines[0]))
    }

    /// The rows' results of one seed.
    pub fn of_seed(&self, seed: u64) -> impl Iterator<Item = &RowResult> {
        self.rows.iter().filter(move |r| r.seed == seed)
    }

    /// The results as JSON with every wall time set to 0: two sweeps with the same seeds and
    /// settings give the same value (times are the only fields that differ between reruns).
    pub fn without_times(&self) -> serde_json::Value {
        let mut r = self.clone();
        for row in &mut r.rows {
            row.train_seconds = 0.0;
            row.sweep_seconds = 0.0;
        }
        if let Some(b) = &mut r.budget {
            for row in &mut b.rows {
                row.train_seconds = 0.0;
            }
        }
        // NaN (an unmeasured mean) is `null` in the value, so it compares equal to itself
        serde_json::to_value(&r).unwrap_or(serde_json::Value::Null)
    }
}

/// The verdict on one claim (serialized as the text the reports show).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The 95% interval of the effect lies entirely on the claimed side.
    #[serde(rename = "reproduced")]
    Reproduced,
    /// The 95% interval excludes the claimed side (see [`crate::claims`] for each rule).
    #[serde(rename = "not reproduced")]
    NotReproduced,
    /// Neither: the interval straddles the boundary, or one seed gives no interval.
    #[serde(rename = "inconclusive at this scale")]
    Inconclusive,
    /// The rows the claim needs have no results.
    #[serde(rename = "not measured")]
    NotMeasured,
}

impl Verdict {
    /// The text of the verdict (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::Inconclusive => "inconclusive at this scale",
            Verdict::NotMeasured => "not measured",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a line of the claims table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimKind {
    /// A claim as the paper states it (SPEC.md §7).
    #[serde(rename = "paper")]
    Paper,
    /// A softer variant of a paper claim, ours, labelled as such.
    #[serde(rename = "softer variant (not the paper's claim)")]
    Softer,
    /// A paper claim at the budget axis's longer budget.
    #[serde(rename = "budget axis")]
    Budget,
}

impl ClaimKind {
    /// The text of the kind (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimKind::Paper => "paper",
            ClaimKind::Softer => "softer variant (not the paper's claim)",
            ClaimKind::Budget => "budget axis",
        }
    }
}

/// The claimed side of an effect (a difference, in [0, 1] accuracy units).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Claimed: effect > threshold.
    Above {
        /// The boundary (0 for "improves").
        threshold: f64,
    },
    /// Claimed: |effect| ≤ delta ("matches").
    Within {
        /// The equivalence margin.
        delta: f64,
    },
}

/// One measured effect of a claim: a difference paired by seed, its interval and its verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Effect {
    /// What is measured (e.g. `clean acc: cls_token − nominal`).
    pub what: String,
    /// The claimed side.
    pub rule: Rule,
    /// The difference per seed.
    pub per_seed: Vec<(u64, f64)>,
    /// Their mean and 95% interval.
    pub interval: Interval,
    /// The verdict of this effect alone.
    pub verdict: Verdict,
}

/// A claim of the paper (or a labelled variant) and what these numbers say about it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claim {
    /// Short id (`1`, `1-softer`, `1-budget`, ...).
    pub id: String,
    /// Paper claim, softer variant or budget axis.
    pub kind: ClaimKind,
    /// The claim, quoted as the paper states it (or the variant's wording).
    pub claim: String,
    /// The verdict (all effects reproduced: reproduced; any not reproduced: not reproduced).
    pub verdict: Verdict,
    /// The effects behind the verdict.
    pub effects: Vec<Effect>,
    /// The numbers behind the verdict, as text.
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
    "apgd_iter": 50,
    "n_standard": 1000,
    "standard_rows": [
      "cls_token"
    ]
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
  "quick": null,
  "budget": null
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
            Verdict::Reproduced,
            Verdict::NotReproduced,
            Verdict::Inconclusive,
            Verdict::NotMeasured,
        ] {
            let json = serde_json::to_string(&v).expect("json");
            assert_eq!(json, format!("\"{}\"", v.as_str()));
            assert_eq!(serde_json::from_str::<Verdict>(&json).expect("parse"), v);
        }
        for k in [ClaimKind::Paper, ClaimKind::Softer, ClaimKind::Budget] {
            let json = serde_json::to_string(&k).expect("json");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
    }

    #[test]
    fn row_settings_compare_without_the_checkout_or_output_location() {
        let c: SweepConfig = serde_json::from_str(SWEEP_TOML_AS_JSON).expect("parse");
        let settings = |config: &str, runs: &str, set: &str| RowSettings {
            train: [
                "train",
                "--config",
                config,
                "--set",
                set,
                "--runs-dir",
                runs,
                "--regime",
                "nominal",
            ]
            .map(String::from)
            .to_vec(),
            eval: c.eval.clone(),
            soup: c.soup.clone(),
        };
        let base = Path::new("configs/fmnist-cls.toml");
        let here = settings(
            "/work/main/configs/fmnist-cls.toml",
            "/work/main/reports/sweep-fmnist/runs/seed-0",
            "optim.epochs=3",
        );
        let clone = settings(
            "/home/u/advsoup/configs/fmnist-cls.toml",
            "/tmp/again/runs/seed-0",
            "optim.epochs=3",
        );
        assert!(here.same_run(&clone, base), "another checkout and --out");
        let other_seed = settings(
            "/work/main/configs/fmnist-cls.toml",
            "/tmp/again/runs/seed-1",
            "optim.epochs=3",
        );
        assert!(!here.same_run(&other_seed, base));
        let other_set = settings(
            "/work/main/configs/fmnist-cls.toml",
            "/tmp/again/runs/seed-0",
            "optim.epochs=4",
        );
        assert!(!here.same_run(&other_set, base));
        let other_base = settings(
            "/work/main/configs/tiny.toml",
            "/work/main/reports/sweep-fmnist/runs/seed-0",
            "optim.epochs=3",
        );
        assert!(!here.same_run(&other_base, base));
        let mut other_eval = clone.clone();
        other_eval.eval.n_standard += 1;
        assert!(!here.same_run(&other_eval, base));
    }

    #[test]
    fn without_times_ignores_wall_times_only() {
        let c: SweepConfig = serde_json::from_str(SWEEP_TOML_AS_JSON).expect("parse");
        let mut row = crate::testing::row("cls_token", 0.8, 0.5, 0.4, 64);
        row.mean_corruption_acc = f64::NAN;
        let a = SweepResults {
            config: c,
            quick: false,
            eps: 0.1,
            seeds: vec![0],
            rows: vec![row],
            summary: vec![],
            budget: None,
            claims: vec![],
            machines: vec![],
            runs_without_cpu: 0,
        };
        let mut b = a.clone();
        b.rows[0].train_seconds = 99.0;
        b.rows[0].sweep_seconds = 7.0;
        assert_eq!(a.without_times(), b.without_times());
        b.rows[0].clean_acc = 0.81;
        assert_ne!(a.without_times(), b.without_times());
    }
}
