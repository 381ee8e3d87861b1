//! Evaluation report cards: one RobustBench-style JSON per evaluated model, and a short markdown
//! table of several.
//!
//! A card records everything a number depends on: the attack ensemble (full configs), radius,
//! threat model, seed, number of evaluated samples, the cost in per-sample forward and backward
//! passes, the evaluator's sanity flags, and content hashes of the model and of its adapter, so
//! the number can be traced back to the exact parameters (and, for a soup, to its recipe).

use std::collections::HashMap;

use advsoup_adapters::AdaptedVit;
use advsoup_attacks::{AttackSpec, EvalReport, ThreatModel};
use burn::prelude::Backend;
use serde::{Deserialize, Serialize};

pub use advsoup_io::sha256_hex;

/// The schema tag written in every card.
pub const CARD_SCHEMA: &str = "advsoup-report-card/1";

/// Content hashes of a model: all parameters, and the domain-specific (adapter) ones alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelHashes {
    /// SHA-256 over `advsoup_adapters::io::canonical_bytes(model, false)`.
    pub model_sha256: String,
    /// SHA-256 over `advsoup_adapters::io::canonical_bytes(model, true)`.
    pub adapter_sha256: String,
}

impl ModelHashes {
    /// Hashes `model`'s canonical parameter bytes.
    pub fn of<B: Backend>(model: &AdaptedVit<B>) -> Self {
        Self {
            model_sha256: sha256_hex(&advsoup_adapters::io::canonical_bytes(model, false)),
            adapter_sha256: sha256_hex(&advsoup_adapters::io::canonical_bytes(model, true)),
        }
    }
}

pub use advsoup_records::soup::Recipe;

/// One attack's share of a card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackResult {
    /// Short name (`pgd-10`, `apgd-ce`, ...).
    pub name: String,
    /// Full configuration of the ensemble run under this name.
    pub config: Vec<AttackSpec>,
    /// Robust accuracy under this attack alone.
    pub robust_acc: f64,
    /// Per-sample forward passes this attack's evaluation cost.
    pub forward_passes: u64,
    /// Per-sample backward passes this attack's evaluation cost.
    pub backward_passes: u64,
}

/// The per-sample worst case over several separately run evaluations of the same samples.
#[derive(Clone, Debug, PartialEq)]
pub struct WorstCase {
    /// Samples evaluated (those of the first report).
    pub n: usize,
    /// Samples correct and robust under every report.
    pub robust: usize,
    /// `robust / n`.
    pub robust_acc: f64,
}

/// Combines evaluations of the same samples: a sample counts as robust only if it is robust in
/// every report (a sample missing from a report counts as not robust). `None` for no reports.
pub fn worst_case(reports: &[EvalReport]) -> Option<WorstCase> {
    let first = reports.first()?;
    let maps: Vec<HashMap<u64, bool>> = reports
        .iter()
        .map(|r| r.samples.iter().map(|s| (s.id, s.robust)).collect())
        .collect();
    let robust = first
        .samples
        .iter()
        .filter(|s| maps.iter().all(|m| m.get(&s.id).copied().unwrap_or(false)))
        .count();
    let n = first.samples.len();
    Some(WorstCase {
        n,
        robust,
        robust_acc: if n == 0 {
            0.0
        } else {
            robust as f64 / n as f64
        },
    })
}

/// Who and what a card is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CardSubject {
    /// The model's name (e.g. the run name).
    pub model: String,
    /// `clean`, `robust` or `soup:β`.
    pub mode: String,
    /// The dataset evaluated on (and split).
    pub dataset: String,
    /// Content hashes.
    pub hashes: ModelHashes,
    /// For a soup, how to regenerate it.
    pub recipe: Option<Recipe>,
}

/// A RobustBench-style report card of one evaluated model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportCard {
    /// [`CARD_SCHEMA`].
    pub schema: String,
    /// The model's name.
    pub model: String,
    /// `clean`, `robust` or `soup:β`.
    pub mode: String,
    /// Dataset and split.
    pub dataset: String,
    /// Threat model of the attacks.
    pub threat_model: ThreatModel,
    /// Radius.
    pub eps: f64,
    /// Seed of every attack's random starts.
    pub seed: u64,
    /// Samples of the clean accuracy.
    pub n_clean: usize,
    /// Clean top-1 accuracy.
    pub clean_acc: f64,
    /// Samples attacked.
    pub n_eval: usize,
    /// Robust accuracy: per sample, worst case over every attack.
    pub robust_acc: f64,
    /// Each attack's own result.
    pub attacks: Vec<AttackResult>,
    /// Per-sample forward passes of the whole robust evaluation.
    pub forward_passes: u64,
    /// Per-sample backward passes of the whole robust evaluation.
    pub backward_passes: u64,
    /// The evaluators' sanity warnings, prefixed with the attack (empty: none raised).
    pub sanity_flags: Vec<String>,
    /// SHA-256 of all parameters.
    pub model_sha256: String,
    /// SHA-256 of the adapter parameters.
    pub adapter_sha256: String,
    /// For a soup, how to regenerate it.
    pub recipe: Option<Recipe>,
}

impl ReportCard {
    /// A card from a clean accuracy (on `n_clean` samples) and one or more robustness
    /// evaluations of the same samples (one per attack preset). `None` when `reports` is empty.
    pub fn new(
        subject: CardSubject,
        n_clean: usize,
        clean_acc: f64,
        reports: &[(String, EvalReport)],
    ) -> Option<Self> {
        let plain: Vec<EvalReport> = reports.iter().map(|(_, r)| r.clone()).collect();
        let worst = worst_case(&plain)?;
        let first = &reports[0].1;
        let mut attacks = Vec::new();
        let mut sanity_flags = Vec::new();
        let (mut fwd, mut bwd) = (0, 0);
        for (name, r) in reports {
            fwd += r.cost.sample_forwards;
            bwd += r.cost.sample_backwards;
            sanity_flags.extend(
                r.sanity
                    .warnings()
                    .into_iter()
                    .map(|w| format!("{name}: {w}")),
            );
            attacks.push(AttackResult {
                name: name.clone(),
                config: r.attacks.clone(),
                robust_acc: r.robust_accuracy,
                forward_passes: r.cost.sample_forwards,
                backward_passes: r.cost.sample_backwards,
            });
        }
        Some(Self {
            schema: CARD_SCHEMA.to_string(),
            model: subject.model,
            mode: subject.mode,
            dataset: subject.dataset,
            threat_model: first.threat,
            eps: first.eps,
            seed: first.seed,
            n_clean,
            clean_acc,
            n_eval: worst.n,
            robust_acc: worst.robust_acc,
            attacks,
            forward_passes: fwd,
            backward_passes: bwd,
            sanity_flags,
            model_sha256: subject.hashes.model_sha256,
            adapter_sha256: subject.hashes.adapter_sha256,
            recipe: subject.recipe,
        })
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report card always serializes")
    }

    /// Parses a card written by [`ReportCard::to_json`].
    ///
    /// # Errors
    /// On malformed JSON or missing fields.
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

fn threat_name(t: ThreatModel) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{t:?}"))
}

/// A short markdown table of cards, one row each.
pub fn markdown(cards: &[ReportCard]) -> String {
    let mut s = String::from(
        "| model | mode | clean | robust | attacks | threat | eps | n clean | n eval | forwards | seed | adapter | flags |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in cards {
        let attacks: Vec<String> = c
            .attacks
            .iter()
            .map(|a| format!("{} {:.2}%", a.name, 100.0 * a.robust_acc))
            .collect();
        s.push_str(&format!(
            "| {} | {} | {:.2}% | {:.2}% | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.model,
            c.mode,
            100.0 * c.clean_acc,
            100.0 * c.robust_acc,
            attacks.join(", "),
            threat_name(c.threat_model),
            c.eps,
            c.n_clean,
            c.n_eval,
            c.forward_passes,
            c.seed,
            &c.adapter_sha256[..c.adapter_sha256.len().min(12)],
            if c.sanity_flags.is_empty() {
                "ok".to_string()
            } else {
                c.sanity_flags.len().to_string()
            },
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use advsoup_attacks::{Cost, PgdConfig, SampleResult, Sanity};

    fn report(seed: u64, robust: &[bool], forwards: u64) -> EvalReport {
        let samples: Vec<SampleResult> = robust
            .iter()
            .enumerate()
            .map(|(i, &r)| SampleResult {
                id: i as u64,
                label: 0,
                clean_prediction: 0,
                adv_prediction: if r { 0 } else { 1 },
                clean_correct: true,
                robust: r,
                broken_by: (!r).then_some(0),
            })
            .collect();
        let n = samples.len();
        let k = robust.iter().filter(|r| **r).count();
        EvalReport {
            seed,
            threat: ThreatModel::Linf,
            eps: 0.1,
            attacks: vec![AttackSpec::Pgd(PgdConfig::new(ThreatModel::Linf, 0.1, 10))],
            n,
            clean_correct: n,
            robust: k,
            clean_accuracy: 1.0,
            robust_accuracy: k as f64 / n as f64,
            per_attack: vec![],
            samples,
            cost: Cost {
                forward_calls: 1,
                backward_calls: 1,
                sample_forwards: forwards,
                sample_backwards: forwards / 2,
            },
            sanity: Sanity::default(),
        }
    }

    fn subject() -> CardSubject {
        CardSubject {
            model: "fmnist-cls".into(),
            mode: "soup:0.3".into(),
            dataset: "fashion-mnist/test".into(),
            hashes: ModelHashes {
                model_sha256: sha256_hex(b"model"),
                adapter_sha256: sha256_hex(b"adapter"),
            },
            recipe: Some(Recipe {
                adapter_sha256: sha256_hex(b"adapter"),
                model_sha256: sha256_hex(b"model"),
                beta: 0.3,
            }),
        }
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn worst_case_needs_every_attack_to_fail() {
        let a = report(0, &[true, true, false, true], 10);
        let b = report(0, &[true, false, false, true], 20);
        let w = worst_case(&[a, b]).expect("reports");
        assert_eq!((w.n, w.robust), (4, 2));
        assert!((w.robust_acc - 0.5).abs() < 1e-12);
        assert!(worst_case(&[]).is_none());
    }

    #[test]
    fn card_round_trips_and_sums_costs() {
        let reports = vec![
            (
                "pgd-10".to_string(),
                report(7, &[true, true, false, true], 10),
            ),
            (
                "apgd-ce".to_string(),
                report(7, &[true, false, true, true], 30),
            ),
        ];
        let card = ReportCard::new(subject(), 100, 0.91, &reports).expect("card");
        assert_eq!(card.schema, CARD_SCHEMA);
        assert_eq!(card.n_eval, 4);
        assert!((card.robust_acc - 0.5).abs() < 1e-12, "{card:?}");
        assert_eq!(card.forward_passes, 40);
        assert_eq!(card.backward_passes, 5 + 15);
        assert_eq!(card.seed, 7);
        assert_eq!(card.attacks.len(), 2);
        assert!((card.attacks[0].robust_acc - 0.75).abs() < 1e-12);
        assert!(card.sanity_flags.is_empty());
        let json = card.to_json();
        for key in [
            "\"clean_acc\"",
            "\"robust_acc\"",
            "\"threat_model\": \"linf\"",
            "\"n_eval\"",
            "\"forward_passes\"",
            "\"sanity_flags\"",
            "\"model_sha256\"",
            "\"adapter_sha256\"",
            "\"beta\"",
        ] {
            assert!(json.contains(key), "{key} missing in {json}");
        }
        let back = ReportCard::from_json(&json).expect("parse");
        assert_eq!(back, card);
        assert!(ReportCard::from_json("{\"clean_acc\": 1}").is_err());
        assert!(ReportCard::new(subject(), 1, 1.0, &[]).is_none());
    }

    #[test]
    fn markdown_has_a_row_with_the_fields() {
        let reports = vec![("pgd-10".to_string(), report(3, &[true, false], 8))];
        let card = ReportCard::new(subject(), 100, 0.875, &reports).expect("card");
        let md = markdown(&[card.clone(), card]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 4, "{md}");
        assert!(lines[0].contains("| clean | robust |"), "{md}");
        let row = lines[2];
        for field in [
            "fmnist-cls",
            "soup:0.3",
            "87.50%",
            "50.00%",
            "pgd-10 50.00%",
            "linf",
            "0.1",
            "| 8 |",
            &sha256_hex(b"adapter")[..12],
            "| ok |",
        ] {
            assert!(row.contains(field), "{field} missing in {row}");
        }
    }
}
