//! The experiment file format (`configs/*.toml`): plain serde structs that reject unknown keys,
//! `--set key=value` overrides applied before deserializing, and [`TrainConfig::validate`].

use std::path::{Path, PathBuf};

use advsoup_adapters::AdapterKind;
use advsoup_vit::VitConfig;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// What is optimized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// Clean inputs only, clean adapter (standard training).
    Nominal,
    /// Adversarial inputs only, adversarial adapter (Madry et al. 2018).
    Adversarial,
    /// α·CE(clean, φ_clean) + (1 − α)·CE(adv, φ_adv) in one mixed batch (Rebuffi et al. 2023).
    CoTraining,
}

impl Regime {
    /// Parses `nominal`, `adversarial` or `co_training`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nominal" => Some(Self::Nominal),
            "adversarial" => Some(Self::Adversarial),
            "co_training" => Some(Self::CoTraining),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nominal => "nominal",
            Self::Adversarial => "adversarial",
            Self::CoTraining => "co_training",
        }
    }
}

/// Datasets the trainer can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// Fashion-MNIST (Xiao et al. 2017).
    FashionMnist,
    /// MNIST.
    Mnist,
    /// CIFAR-10.
    Cifar10,
    /// CIFAR-100.
    Cifar100,
}

impl DatasetName {
    /// The data crate's kind.
    pub fn kind(self) -> advsoup_data::DatasetKind {
        match self {
            Self::FashionMnist => advsoup_data::DatasetKind::FashionMnist,
            Self::Mnist => advsoup_data::DatasetKind::Mnist,
            Self::Cifar10 => advsoup_data::DatasetKind::Cifar10,
            Self::Cifar100 => advsoup_data::DatasetKind::Cifar100,
        }
    }
}

/// The model: a preset plus optional overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A [`VitConfig::preset`] name.
    pub preset: String,
    /// The adapter (`"cls_token"`, `"dual_layer_norm"`, `{ prompt = { tokens = 4 } }`, ...).
    pub adapter: AdapterKind,
    /// Override: patch side.
    pub patch_size: Option<usize>,
    /// Override: token width.
    pub embed_dim: Option<usize>,
    /// Override: number of blocks.
    pub depth: Option<usize>,
    /// Override: number of heads.
    pub num_heads: Option<usize>,
    /// Override: MLP ratio.
    pub mlp_ratio: Option<f64>,
    /// Override: number of classes.
    pub num_classes: Option<usize>,
    /// Dropout probability.
    #[serde(default)]
    pub drop_rate: f64,
    /// Drop-path probability of the last block.
    #[serde(default)]
    pub drop_path_rate: f64,
}

/// The data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Which dataset.
    pub dataset: DatasetName,
    /// Cache dir (else `$ADVSOUP_DATA`, else the platform cache dir).
    pub data_dir: Option<PathBuf>,
    /// Training samples held out (seeded) for model selection and per-epoch metrics.
    pub held_out: usize,
    /// Zero padding for random crops (0 = no crop).
    #[serde(default)]
    pub crop_padding: usize,
    /// Horizontal flips.
    #[serde(default)]
    pub hflip: bool,
    /// Mixup α (0 = off).
    #[serde(default)]
    pub mixup_alpha: f32,
    /// CutMix α (0 = off).
    #[serde(default)]
    pub cutmix_alpha: f32,
    /// Label smoothing ε.
    #[serde(default)]
    pub label_smoothing: f32,
    /// Loader worker threads.
    #[serde(default = "default_workers")]
    pub workers: usize,
}

fn default_workers() -> usize {
    1
}

/// A PGD attack (ℓ∞).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgdSection {
    /// Radius ε in pixel units.
    pub eps: f64,
    /// Steps K.
    pub num_steps: usize,
    /// Step size η (≤ ε).
    pub step_size: f64,
    /// Uniform random start in the ball.
    #[serde(default = "yes")]
    pub random_start: bool,
}

fn yes() -> bool {
    true
}

/// Attacks used by training and by the per-epoch evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSection {
    /// The attack crafting x_adv in every training step.
    pub train: PgdSection,
    /// The attack of the per-epoch held-out robust accuracy.
    pub eval: PgdSection,
}

/// Optimizer and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    /// Epochs.
    pub epochs: usize,
    /// Samples per step (per domain for co-training: the mixed batch is twice this).
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine schedule, as a fraction of `lr`.
    #[serde(default)]
    pub min_lr_ratio: f64,
    /// Linear warmup, in epochs (may be fractional).
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Decoupled weight decay (not applied to tokens, position embeddings, norms, biases).
    #[serde(default)]
    pub weight_decay: f64,
    /// AdamW β1.
    #[serde(default = "beta1")]
    pub beta1: f32,
    /// AdamW β2.
    #[serde(default = "beta2")]
    pub beta2: f32,
    /// Clip the global gradient norm to this value (0 = off).
    #[serde(default)]
    pub grad_clip: f32,
}

fn beta1() -> f32 {
    0.9
}
fn beta2() -> f32 {
    0.999
}

/// Final evaluation on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Held-out samples whose robust accuracy is measured after every epoch.
    pub held_out_robust: usize,
    /// Test samples attacked in the final table (clean accuracy uses the whole test split).
    pub test_robust: usize,
    /// Attack preset of the final table (`pgd-20`, `apgd-ce`, `standard`, ...).
    pub test_attack: String,
    /// Batch size of evaluation.
    pub batch_size: usize,
}

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Run name (`runs/<name>`).
    pub name: String,
    /// Seed of everything random (init, order, augmentation, attacks, dropout).
    pub seed: u64,
    /// What is optimized.
    pub regime: Regime,
    /// Weight α of the clean loss in co-training.
    #[serde(default = "half")]
    pub alpha: f64,
    /// Model.
    pub model: ModelSection,
    /// Data.
    pub data: DataSection,
    /// Attacks.
    pub attack: AttackSection,
    /// Optimizer.
    pub optim: OptimSection,
    /// Evaluation.
    pub eval: EvalSection,
}

fn half() -> f64 {
    0.5
}

fn invalid(field: &str, message: impl Into<String>) -> TrainError {
    TrainError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

impl TrainConfig {
    /// Reads a TOML file, applies `key=value` overrides (dotted keys, TOML values; a bare word
    /// is a string), then deserializes, so misspelt keys in the file or the overrides fail.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, overrides)
    }

    /// [`TrainConfig::load`] on text already read (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| TrainError::Config {
            path: path.to_owned(),
            message: e.message().to_string(),
        })?;
        for o in overrides {
            apply_override(&mut value, o).map_err(|message| TrainError::Config {
                path: path.to_owned(),
                message: format!("--set {o}: {message}"),
            })?;
        }
        let config: TrainConfig =
            toml::Value::Table(value)
                .try_into()
                .map_err(|e: toml::de::Error| TrainError::Config {
                    path: path.to_owned(),
                    message: e.message().to_string(),
                })?;
        config.validate().map_err(|e| match e {
            TrainError::Invalid { field, message } => TrainError::Config {
                path: path.to_owned(),
                message: format!("{field}: {message}"),
            },
            other => other,
        })?;
        Ok(config)
    }

    /// The resolved model config (preset + overrides).
    pub fn vit(&self) -> Result<VitConfig, TrainError> {
        let m = &self.model;
        let mut v = VitConfig::preset(&m.preset).ok_or_else(|| {
            invalid(
                "model.preset",
                format!(
                    "unknown preset `{}`, expected one of {}",
                    m.preset,
                    VitConfig::PRESETS.join(", ")
                ),
            )
        })?;
        if let Some(p) = m.patch_size {
            v.patch_size = p;
        }
        if let Some(d) = m.embed_dim {
            v.embed_dim = d;
        }
        if let Some(d) = m.depth {
            v.depth = d;
        }
        if let Some(h) = m.num_heads {
            v.num_heads = h;
        }
        if let Some(r) = m.mlp_ratio {
            v.mlp_ratio = r;
        }
        if let Some(c) = m.num_classes {
            v.num_classes = c;
        }
        v.drop_rate = m.drop_rate;
        v.drop_path_rate = m.drop_path_rate;
        v.validate().map_err(|e| invalid("model", e.to_string()))?;
        Ok(v)
    }

    /// Rejects values that cannot give a meaningful run, naming the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.name.is_empty()
            || self
                .name
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            || self.name.starts_with('.')
        {
            return Err(invalid(
                "name",
                format!(
                    "`{}` must be non-empty letters, digits, '-', '_' or '.'",
                    self.name
                ),
            ));
        }
        self.vit()?;
        for (field, a) in [
            ("attack.train", &self.attack.train),
            ("attack.eval", &self.attack.eval),
        ] {
            if !(a.eps > 0.0 && a.eps <= 1.0) {
                return Err(invalid(
                    &format!("{field}.eps"),
                    format!("expected a radius in (0, 1], got {}", a.eps),
                ));
            }
            if !(a.step_size > 0.0 && a.step_size <= a.eps) {
                return Err(invalid(
                    &format!("{field}.step_size"),
                    format!(
                        "expected a step in (0, eps = {}], got {}",
                        a.eps, a.step_size
                    ),
                ));
            }
            if a.num_steps == 0 {
                return Err(invalid(
                    &format!("{field}.num_steps"),
                    "expected at least 1 step",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(invalid(
                "alpha",
                format!("expected a weight in [0, 1], got {}", self.alpha),
            ));
        }
        let o = &self.optim;
        if o.epochs == 0 {
            return Err(invalid("optim.epochs", "expected at least 1 epoch"));
        }
        if o.batch_size == 0 {
            return Err(invalid(
                "optim.batch_size",
                "expected a positive batch size",
            ));
        }
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return Err(invalid(
                "optim.lr",
                format!("expected a positive learning rate, got {}", o.lr),
            ));
        }
        if [o.weight_decay, o.warmup_epochs, o.min_lr_ratio]
            .iter()
            .any(|v| v.is_nan() || *v < 0.0)
        {
            return Err(invalid(
                "optim",
                "weight_decay, warmup_epochs and min_lr_ratio must be >= 0",
            ));
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return Err(invalid("optim.beta1/beta2", "expected values in [0, 1)"));
        }
        if self.eval.batch_size == 0 {
            return Err(invalid("eval.batch_size", "expected a positive batch size"));
        }
        if self.eval.held_out_robust > self.data.held_out {
            return Err(invalid(
                "eval.held_out_robust",
                format!(
                    "{} exceeds data.held_out = {}",
                    self.eval.held_out_robust, self.data.held_out
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.data.label_smoothing) {
            return Err(invalid(
                "data.label_smoothing",
                "expected a value in [0, 1)",
            ));
        }
        Ok(())
    }
}

fn parse_value(raw: &str) -> toml::Value {
    // A TOML value if it parses as one, else a bare string.
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), String> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| "expected key=value".to_string())?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{key}` is not a dotted key"));
    }
    let mut node = table;
    for p in &parts[..parts.len() - 1] {
        let entry = node
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a table"))?;
    }
    node.insert(parts[parts.len() - 1].to_string(), parse_value(raw.trim()));
    Ok(())
}
