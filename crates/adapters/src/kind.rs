//! Which parameters are domain-specific, and how many there are.

use advsoup_vit::VitConfig;
use serde::{Deserialize, Serialize};

/// The family of domain-specific parameters ("adapter") given to each input domain.
///
/// Rebuffi, Croce & Gowal 2023, "Revisiting Adapters with Adversarial Training", Table 1 compares
/// these; the class token is the paper's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AdapterKind {
    /// Everything shared (plain co-training): 0 domain-specific parameters.
    None,
    /// One class token per domain: `embed_dim` per domain.
    ClsToken,
    /// Every LayerNorm (scale and shift) has a clean and an adversarial copy:
    /// `2 * embed_dim * (2 * depth + 1)` per domain.
    DualLayerNorm,
    /// Every Linear bias of the blocks and the head is duplicated per domain.
    Bias,
    /// `tokens` extra learned tokens per domain appended to the sequence (prompt tuning):
    /// `tokens * embed_dim` per domain.
    Prompt {
        /// Number of prompt tokens per domain.
        tokens: usize,
    },
    /// A rank-`rank` update `B A` per domain on every attention projection (qkv and proj):
    /// `rank * (in + out)` per adapted matrix (Hu et al. 2021, "LoRA").
    Lora {
        /// Rank of the update.
        rank: usize,
    },
}

impl AdapterKind {
    /// Parses the command-line spelling: `none`, `cls_token`, `dual_layer_norm`, `bias`,
    /// `prompt` / `prompt:K`, `lora` / `lora:R` (defaults K = 4, R = 4).
    pub fn parse(s: &str) -> Option<Self> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a.parse::<usize>().ok().filter(|v| *v > 0)?)),
            None => (s, None),
        };
        Some(match (name, arg) {
            ("none", None) => Self::None,
            ("cls_token", None) => Self::ClsToken,
            ("dual_layer_norm", None) => Self::DualLayerNorm,
            ("bias", None) => Self::Bias,
            ("prompt", k) => Self::Prompt {
                tokens: k.unwrap_or(4),
            },
            ("lora", r) => Self::Lora {
                rank: r.unwrap_or(4),
            },
            _ => return None,
        })
    }

    /// Short stable name, as accepted by [`AdapterKind::parse`].
    pub fn name(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::ClsToken => "cls_token".into(),
            Self::DualLayerNorm => "dual_layer_norm".into(),
            Self::Bias => "bias".into(),
            Self::Prompt { tokens } => format!("prompt:{tokens}"),
            Self::Lora { rank } => format!("lora:{rank}"),
        }
    }

    /// Number of domain-specific parameters per domain for a model built from `config`.
    pub fn params_per_domain(&self, config: &VitConfig) -> usize {
        let d = config.embed_dim;
        let depth = config.depth;
        match *self {
            Self::None => 0,
            Self::ClsToken => d,
            Self::DualLayerNorm => 2 * d * (2 * depth + 1),
            Self::Bias => {
                let qkv = if config.qkv_bias { 3 * d } else { 0 };
                depth * (qkv + d + config.mlp_hidden() + d) + config.num_classes
            }
            Self::Prompt { tokens } => tokens * d,
            Self::Lora { rank } => depth * (rank * (d + 3 * d) + rank * (d + d)),
        }
    }

    /// Parameters this adapter adds to the plain model (the clean copy of a duplicated parameter
    /// is the model's own).
    pub fn added_params(&self, config: &VitConfig) -> usize {
        match self {
            Self::None => 0,
            Self::ClsToken | Self::DualLayerNorm | Self::Bias => self.params_per_domain(config),
            Self::Prompt { .. } | Self::Lora { .. } => 2 * self.params_per_domain(config),
        }
    }
}

impl std::fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}
