//! The records of the adversarial-soup sweep over β (`advsoup soup sweep`: `soup.json`, whose
//! CSV form is `soup.csv`) and of a β selection under a distribution shift (`advsoup soup
//! select`: `select-<shift>.json`). "Sweep" here is over the soup weight β; the adapter sweep
//! of `cargo xtask sweep-adapters` is [`crate::adapter_sweep`].
//!
//! [`SoupSweep`] is generic over the configuration of each attack it ran ([`SweepAttack::
//! evaluator`], the attacks crate's `Evaluator` when written): a reader that never looks at
//! it (xtask) uses the default, `serde_json::Value`, so this crate needs no attack types.

use serde::{Deserialize, Serialize};

use crate::pct;

/// The perturbation set of the attacks (serialized as `linf` / `l2`, as the attacks crate's
/// `ThreatModel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreatModel {
    /// ℓ∞ ball.
    Linf,
    /// ℓ2 ball.
    L2,
}

impl std::fmt::Display for ThreatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ThreatModel::Linf => "linf",
            ThreatModel::L2 => "l2",
        })
    }
}

/// How a soup is made: the model whose two adapters are mixed, and the clean weight β
/// (φ(β) = β·φ_clean + (1 − β)·φ_adv). Enough to regenerate the soup exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// SHA-256 of the adapter parameters (both domains) the soup mixes.
    pub adapter_sha256: String,
    /// SHA-256 of the whole model the adapters belong to.
    pub model_sha256: String,
    /// Weight of φ_clean.
    pub beta: f32,
}

/// An accuracy under a name (an attack or a shift).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedAcc {
    /// The attack or shift.
    pub name: String,
    /// Top-1 accuracy in [0, 1].
    pub acc: f64,
}

/// One soup evaluated as a model in its own right.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoupRow {
    /// Weight of φ_clean.
    pub beta: f32,
    /// Clean accuracy on the first `n_clean` test images.
    pub clean_acc: f64,
    /// Robust accuracy, per sample worst case over all attacks, on the first `n_robust`.
    pub robust_acc: f64,
    /// Robust accuracy under each attack alone.
    pub attacks: Vec<NamedAcc>,
    /// Accuracy on each generated shift (corruption at the sweep's severity).
    pub shifts: Vec<NamedAcc>,
    /// Per-sample forward passes spent on the robust evaluation.
    pub forward_passes: u64,
    /// How to regenerate this soup.
    pub recipe: Recipe,
}

impl SoupRow {
    /// The accuracy under the attack `name` alone, if it was run.
    pub fn attack_acc(&self, name: &str) -> Option<f64> {
        self.attacks.iter().find(|a| a.name == name).map(|a| a.acc)
    }
}

/// One attack preset of a sweep with its exact configuration (`E`: the attacks crate's
/// `Evaluator` when written; opaque JSON for readers that do not look at it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepAttack<E = serde_json::Value> {
    /// The preset name (`pgd-10`, `apgd-ce`).
    pub name: String,
    /// The evaluator run under that name.
    pub evaluator: E,
}

/// `soup.json`: a whole sweep over β — what was evaluated, how, and one row per β.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoupSweep<E = serde_json::Value> {
    /// The model (run name).
    pub model: String,
    /// Dataset and split the numbers are on.
    pub dataset: String,
    /// SHA-256 of the model's parameters.
    pub model_sha256: String,
    /// SHA-256 of the adapter parameters (both domains): the soup's ingredients.
    pub adapter_sha256: String,
    /// Threat model.
    pub threat_model: ThreatModel,
    /// Radius.
    pub eps: f64,
    /// Seed of the attacks and of the corruptions.
    pub seed: u64,
    /// Test images for clean accuracy.
    pub n_clean: usize,
    /// Test images attacked.
    pub n_robust: usize,
    /// Test images per shift.
    pub n_shift: usize,
    /// Corruption severity (1..=5).
    pub severity: u8,
    /// The attacks, each run separately on the same images.
    pub attacks: Vec<SweepAttack<E>>,
    /// One row per β, in the order asked.
    pub rows: Vec<SoupRow>,
    /// Wall-clock seconds of the whole sweep.
    pub wall_seconds: f64,
}

impl<E> SoupSweep<E> {
    /// Column names of [`SoupSweep::to_csv`].
    pub fn csv_header(&self) -> Vec<String> {
        let mut h = vec![
            "beta".to_string(),
            "clean_acc".to_string(),
            "robust_acc".to_string(),
        ];
        if let Some(r) = self.rows.first() {
            h.extend(r.attacks.iter().map(|a| format!("robust_{}", a.name)));
            h.extend(r.shifts.iter().map(|s| format!("shift_{}", s.name)));
        }
        h.push("forward_passes".to_string());
        h
    }

    /// One line per β: `beta,clean_acc,robust_acc,robust_<attack>...,shift_<name>...,forward_passes`.
    pub fn to_csv(&self) -> String {
        let mut s = self.csv_header().join(",");
        s.push('\n');
        for r in &self.rows {
            let mut cells = vec![
                format!("{}", r.beta),
                format!("{:.6}", r.clean_acc),
                format!("{:.6}", r.robust_acc),
            ];
            cells.extend(r.attacks.iter().map(|a| format!("{:.6}", a.acc)));
            cells.extend(r.shifts.iter().map(|a| format!("{:.6}", a.acc)));
            cells.push(r.forward_passes.to_string());
            s.push_str(&cells.join(","));
            s.push('\n');
        }
        s
    }

    /// A markdown table (percentages), one row per β; shifts are averaged into `shift mean`
    /// when there are more than four of them.
    pub fn table(&self) -> String {
        let Some(first) = self.rows.first() else {
            return String::from("(no rows)\n");
        };
        let many = first.shifts.len() > 4;
        let mut head = vec!["β", "clean", "robust"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        head.extend(first.attacks.iter().map(|a| a.name.clone()));
        if many {
            head.push(format!("shift mean ({})", first.shifts.len()));
        } else {
            head.extend(first.shifts.iter().map(|a| a.name.clone()));
        }
        let mut s = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
        for r in &self.rows {
            let mut cells = vec![
                format!("{:.2}", r.beta),
                pct(r.clean_acc),
                pct(r.robust_acc),
            ];
            cells.extend(r.attacks.iter().map(|a| pct(a.acc)));
            if many {
                let mean = r.shifts.iter().map(|a| a.acc).sum::<f64>() / r.shifts.len() as f64;
                cells.push(pct(mean));
            } else {
                cells.extend(r.shifts.iter().map(|a| pct(a.acc)));
            }
            s.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        s
    }
}

/// `select-<shift>.json`: β chosen on the held-out split of a shifted set, and test accuracy
/// there and at the endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectReport {
    /// The model (run name).
    pub model: String,
    /// The shift (`contrast:3`).
    pub shift: String,
    /// Seed of the corruption draws.
    pub seed: u64,
    /// Held-out images used for choosing (corrupted).
    pub n_held_out: usize,
    /// Test images reported on (corrupted).
    pub n_test: usize,
    /// The candidate weights.
    pub betas: Vec<f32>,
    /// Held-out accuracy at each candidate (what β is chosen by).
    pub held_out_acc: Vec<f64>,
    /// The chosen β (best held-out accuracy; the first on ties).
    pub chosen_beta: f32,
    /// Test accuracy at the chosen β.
    pub test_acc_chosen: f64,
    /// Test accuracy at β = 0 (robust mode).
    pub test_acc_robust_mode: f64,
    /// Test accuracy at β = 1 (clean mode).
    pub test_acc_clean_mode: f64,
    /// Whether the chosen β is strictly better on test than both endpoints.
    pub beats_both_endpoints: bool,
    /// Test accuracy at every candidate: for information only, never used for choosing.
    pub test_acc_all: Vec<f64>,
    /// How to regenerate the chosen soup.
    pub recipe: Recipe,
}

impl SelectReport {
    /// One line of text.
    pub fn line(&self) -> String {
        format!(
            "{}: chosen β={} (held-out {:.2}%)  test: chosen {:.2}%  β=0 {:.2}%  β=1 {:.2}%  beats both: {}",
            self.shift,
            self.chosen_beta,
            100.0
                * self
                    .betas
                    .iter()
                    .position(|b| *b == self.chosen_beta)
                    .map(|i| self.held_out_acc[i])
                    .unwrap_or(f64::NAN),
            100.0 * self.test_acc_chosen,
            100.0 * self.test_acc_robust_mode,
            100.0 * self.test_acc_clean_mode,
            if self.beats_both_endpoints {
                "yes"
            } else {
                "no"
            },
        )
    }
}

/// The `f64` a reader gets when it parses, as `f64`, the JSON number a writer wrote for the
/// `f32` `x` (serde_json writes an `f32` with its own shortest digits: `0.3f32` is written
/// `0.3` and read back as `0.3f64`, not as `0.3f32 as f64` = 0.30000001192092896). `None` for a
/// non-finite `x`, which JSON writes as `null`.
pub fn f32_as_json_f64(x: f32) -> Option<f64> {
    serde_json::to_string(&x)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
}

/// Index of the best score, the first one on ties; `None` when empty or all NaN.
pub fn argmax_first(scores: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, s) in scores.iter().enumerate() {
        if s.is_nan() {
            continue;
        }
        if best.is_none_or(|b| *s > scores[b]) {
            best = Some(i);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep() -> SoupSweep {
        crate::testing::soup_sweep()
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_beta() {
        let s = sweep();
        let csv = s.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "beta,clean_acc,robust_acc,robust_pgd-10,robust_apgd-ce,shift_contrast,forward_passes"
        );
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[2],
            "0.5,0.850000,0.500000,0.510000,0.500000,0.425000,1234"
        );
        for l in &lines {
            assert_eq!(l.split(',').count(), 7, "{l}");
        }
        let t = s.table();
        assert!(
            t.contains("| 1.00 | 90.00 | 10.00 | 11.00 | 10.00 | 45.00 |"),
            "{t}"
        );
        assert_eq!(s.rows[0].attack_acc("apgd-ce"), Some(0.6));
        assert_eq!(s.rows[0].attack_acc("fab"), None);
    }

    /// `soup.json` as bench writes it (`to_string_pretty`), with an evaluator the reader does
    /// not interpret. (Its keys are sorted here because `serde_json::Value`, the default `E`,
    /// sorts them when written back; a writer using the attacks crate's `Evaluator` as `E`
    /// keeps that type's own field order.)
    const SOUP_JSON: &str = r#"{
  "model": "cls_token",
  "dataset": "fashion_mnist/test",
  "model_sha256": "cd",
  "adapter_sha256": "ab",
  "threat_model": "linf",
  "eps": 0.1,
  "seed": 0,
  "n_clean": 10,
  "n_robust": 5,
  "n_shift": 10,
  "severity": 3,
  "attacks": [
    {
      "name": "pgd-20",
      "evaluator": {
        "attacks": [
          {
            "pgd": {
              "eps": 0.1,
              "steps": 20,
              "threat": "linf"
            }
          }
        ],
        "seed": 0
      }
    }
  ],
  "rows": [
    {
      "beta": 0.3,
      "clean_acc": 0.85,
      "robust_acc": 0.5,
      "attacks": [
        {
          "name": "pgd-20",
          "acc": 0.5
        }
      ],
      "shifts": [],
      "forward_passes": 1234,
      "recipe": {
        "adapter_sha256": "ab",
        "model_sha256": "cd",
        "beta": 0.3
      }
    }
  ],
  "wall_seconds": 1.5
}"#;

    #[test]
    fn soup_json_as_bench_writes_it_round_trips_byte_for_byte() {
        let s: SoupSweep = serde_json::from_str(SOUP_JSON).expect("parse");
        assert_eq!(s.rows[0].beta, 0.3f32);
        assert_eq!(s.threat_model, ThreatModel::Linf);
        assert_eq!(s.threat_model.to_string(), "linf");
        assert_eq!(serde_json::to_string_pretty(&s).expect("json"), SOUP_JSON);
        // a reader that ignores the evaluators
        let s: SoupSweep<serde::de::IgnoredAny> = serde_json::from_str(SOUP_JSON).expect("parse");
        assert_eq!(s.attacks[0].name, "pgd-20");
        let back: SoupSweep =
            serde_json::from_str(&serde_json::to_string(&sweep()).expect("json")).expect("parse");
        assert_eq!(back, sweep());
    }

    const SELECT_JSON: &str = r#"{
  "model": "cls_token",
  "shift": "contrast:3",
  "seed": 0,
  "n_held_out": 20,
  "n_test": 30,
  "betas": [
    0.0,
    0.5,
    1.0
  ],
  "held_out_acc": [
    0.5,
    0.75,
    0.6
  ],
  "chosen_beta": 0.5,
  "test_acc_chosen": 0.7,
  "test_acc_robust_mode": 0.5,
  "test_acc_clean_mode": 0.6,
  "beats_both_endpoints": true,
  "test_acc_all": [
    0.5,
    0.7,
    0.6
  ],
  "recipe": {
    "adapter_sha256": "ab",
    "model_sha256": "cd",
    "beta": 0.5
  }
}"#;

    #[test]
    fn select_json_round_trips_and_reads_as_a_line() {
        let r: SelectReport = serde_json::from_str(SELECT_JSON).expect("parse");
        assert_eq!(serde_json::to_string_pretty(&r).expect("json"), SELECT_JSON);
        assert_eq!(
            r.line(),
            "contrast:3: chosen β=0.5 (held-out 75.00%)  test: chosen 70.00%  β=0 50.00%  β=1 60.00%  beats both: yes"
        );
        let missing = SELECT_JSON.replace("\"test_acc_chosen\"", "\"test_acc_best\"");
        let e = serde_json::from_str::<SelectReport>(&missing).expect_err("renamed field");
        assert!(e.to_string().contains("test_acc_chosen"), "{e}");
    }

    #[test]
    fn f32_values_read_back_as_the_f64_of_their_json_digits() {
        assert_eq!(f32_as_json_f64(0.3), Some(0.3));
        assert_ne!(0.3f32 as f64, 0.3);
        assert_eq!(f32_as_json_f64(1.0), Some(1.0));
        assert_eq!(f32_as_json_f64(f32::NAN), None);
        for b in parse_grid() {
            let text = serde_json::to_string(&b).expect("json");
            let read: f64 = serde_json::from_str(&text).expect("parse");
            assert_eq!(f32_as_json_f64(b), Some(read), "{b}");
        }
    }

    fn parse_grid() -> Vec<f32> {
        (0..=20)
            .map(|i| (((i as f64 * 0.05) * 1e6).round() / 1e6) as f32)
            .chain([1e-7, 123.456, 0.1 + 0.2])
            .collect()
    }

    #[test]
    fn argmax_takes_the_first_best() {
        assert_eq!(argmax_first(&[0.1, 0.3, 0.3, 0.2]), Some(1));
        assert_eq!(argmax_first(&[f64::NAN, 0.1]), Some(1));
        assert_eq!(argmax_first(&[]), None);
    }
}
