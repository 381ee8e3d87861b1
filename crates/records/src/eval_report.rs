//! The part of `advsoup eval`'s report (`eval-<attack>-<eps>-<mode>.json`, the attacks
//! crate's `EvalReport`) that a reader without the attack types needs: the accuracies, the
//! ensemble's attack names and the sanity flags. Fields it does not name (per-sample results,
//! attack configs, costs) are skipped when reading.

use serde::{Deserialize, Serialize};

/// An ensemble member's name (the report's `per_attack` entries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackName {
    /// The attack's name.
    pub name: String,
}

/// The evaluator's sanity checks (the attacks crate's `Sanity`, field for field).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SanityFlags {
    /// Outputs look like probabilities rather than logits.
    pub outputs_look_like_probabilities: bool,
    /// Two forward passes on the same input differed.
    pub nondeterministic_forward: bool,
    /// Largest absolute difference between those two passes.
    pub max_forward_difference: f64,
    /// Samples whose input gradient at the clean point is exactly zero.
    pub zero_gradient_samples: Vec<u64>,
    /// Samples broken only by a black-box attack after every white-box attack failed.
    pub black_box_only_breaks: usize,
    /// A black-box attack broke samples the white-box attacks missed (gradient masking?).
    pub black_box_beats_white_box: bool,
    /// Adversarial inputs outside the threat model; must be 0.
    pub out_of_ball: usize,
    /// Robust accuracy rose with ε somewhere in a sweep (`None` outside sweeps).
    pub non_monotone_in_eps: Option<bool>,
}

impl SanityFlags {
    /// One short line per raised flag (empty: none raised), as the reports print them.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.outputs_look_like_probabilities {
            w.push("outputs look like probabilities".to_string());
        }
        if self.nondeterministic_forward {
            w.push(format!(
                "forward not deterministic (max difference {:e})",
                self.max_forward_difference
            ));
        }
        if !self.zero_gradient_samples.is_empty() {
            w.push(format!(
                "{} samples with a zero input gradient",
                self.zero_gradient_samples.len()
            ));
        }
        if self.black_box_beats_white_box {
            w.push(format!(
                "black-box attack broke {} samples the white-box attacks missed",
                self.black_box_only_breaks
            ));
        }
        if self.out_of_ball > 0 {
            w.push(format!("{} inputs left the threat model", self.out_of_ball));
        }
        if self.non_monotone_in_eps == Some(true) {
            w.push("robust accuracy not monotone in eps".to_string());
        }
        w
    }
}

/// `advsoup eval`'s report, the fields a summary needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    /// Seed of the attacks' random starts.
    pub seed: u64,
    /// Radius.
    pub eps: f64,
    /// Samples evaluated.
    pub n: usize,
    /// Clean accuracy on them.
    pub clean_accuracy: f64,
    /// Accuracy under every attack of the ensemble.
    pub robust_accuracy: f64,
    /// The ensemble's members, in order.
    pub per_attack: Vec<AttackName>,
    /// The sanity flags.
    pub sanity: SanityFlags,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_it_names_and_lists_raised_flags() {
        let text = r#"{"seed": 0, "threat": "linf", "eps": 0.1, "attacks": [], "n": 4,
            "clean_correct": 3, "robust": 2, "clean_accuracy": 0.75, "robust_accuracy": 0.5,
            "per_attack": [{"name": "apgd-ce", "attacked": 3, "broken": 1, "cost": {}}],
            "samples": [], "cost": {},
            "sanity": {"outputs_look_like_probabilities": false, "nondeterministic_forward": false,
              "max_forward_difference": 0.0, "zero_gradient_samples": [3, 4],
              "black_box_only_breaks": 0, "black_box_beats_white_box": false, "out_of_ball": 0,
              "non_monotone_in_eps": null}}"#;
        let s: EvalSummary = serde_json::from_str(text).expect("parse");
        assert_eq!((s.n, s.robust_accuracy), (4, 0.5));
        assert_eq!(s.per_attack[0].name, "apgd-ce");
        assert_eq!(
            s.sanity.warnings(),
            ["2 samples with a zero input gradient"]
        );
        assert!(SanityFlags::default().warnings().is_empty());
        let broken = text.replace("\"sanity\"", "\"sanity_\"");
        assert!(serde_json::from_str::<EvalSummary>(&broken).is_err());
    }
}
