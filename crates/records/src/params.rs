//! `advsoup info --json`'s record: the parameter counts of a model (`params.json` in each row
//! of the adapter sweep).

use serde::{Deserialize, Serialize};

/// Parameter counts of a model (`advsoup info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCounts {
    /// The preset or run the counts are of.
    pub model: String,
    /// The adapter.
    pub adapter: String,
    /// Parameters of the plain ViT.
    pub total_params_no_adapter: usize,
    /// Parameters with the adapter (both domains).
    pub total_params: usize,
    /// Domain-specific parameters per domain (the adapter formula).
    pub params_per_domain: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_json_as_the_cli_prints_it_round_trips() {
        // the cli prints serde_json::to_string_pretty(&counts) followed by a newline
        let text = r#"{
  "model": "runs/cls_token",
  "adapter": "cls_token",
  "total_params_no_adapter": 5000,
  "total_params": 5064,
  "params_per_domain": 32
}"#;
        let c: ParamCounts = serde_json::from_str(&format!("{text}\n")).expect("parse");
        assert_eq!(c.params_per_domain, 32);
        assert_eq!(serde_json::to_string_pretty(&c).expect("json"), text);
    }
}
