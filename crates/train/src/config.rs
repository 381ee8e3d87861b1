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
    /// An ImageFolder tree (`data.train_dir`, `data.val_dir`; ImageNet layout).
    ImageFolder,
}

/// What a [`DatasetName`] reads: a fetchable dataset of the data crate or an ImageFolder tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// A dataset `advsoup data fetch` knows.
    Builtin(advsoup_data::DatasetKind),
    /// `<root>/<class>/<image>` trees.
    ImageFolder,
}

impl std::fmt::Display for DataKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin(k) => write!(f, "{k}"),
            Self::ImageFolder => f.write_str("image-folder"),
        }
    }
}

impl DatasetName {
    /// The data crate's kind.
    pub fn kind(self) -> DataKind {
        DataKind::Builtin(match self {
            Self::FashionMnist => advsoup_data::DatasetKind::FashionMnist,
            Self::Mnist => advsoup_data::DatasetKind::Mnist,
            Self::Cifar10 => advsoup_data::DatasetKind::Cifar10,
            Self::Cifar100 => advsoup_data::DatasetKind::Cifar100,
            Self::ImageFolder => return DataKind::ImageFolder,
        })
    }

    /// Official training-set size (before the held-out slice), when known without the data.
    pub fn train_size(self) -> Option<usize> {
        match self {
            Self::FashionMnist | Self::Mnist => Some(60_000),
            Self::Cifar10 | Self::Cifar100 => Some(50_000),
            Self::ImageFolder => None,
        }
    }
}

/// timm's `RandomResizedCrop` (Szegedy et al. 2015): a crop of random area share and aspect
/// ratio, resized to the model's input size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizedCropSection {
    /// Area share range, `0 < lo <= hi <= 1` (timm: [0.08, 1]).
    #[serde(default = "rrc_scale")]
    pub scale: [f32; 2],
    /// Aspect ratio range, `0 < lo <= hi` (timm: [3/4, 4/3]).
    #[serde(default = "rrc_ratio")]
    pub ratio: [f32; 2],
}

fn rrc_scale() -> [f32; 2] {
    [0.08, 1.0]
}
fn rrc_ratio() -> [f32; 2] {
    [0.75, 4.0 / 3.0]
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
    /// Train on the first N samples of the training split only (after the held-out slice is
    /// taken; the same N samples for every regime and seed of a sweep). Unset: all of them.
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Probability that a batch is mixed at all when mixup or CutMix is on (timm `mixup_prob`).
    #[serde(default = "one")]
    pub mix_prob: f32,
    /// Probability of CutMix rather than mixup when both are on (timm `switch_prob`).
    #[serde(default = "half32")]
    pub cutmix_switch_prob: f32,
    /// timm RandAugment policy string, e.g. `"rand-m9-mstd0.5-inc1"` (Cubuk et al. 2020).
    pub rand_augment: Option<String>,
    /// RandomResizedCrop instead of the padded crop.
    pub random_resized_crop: Option<ResizedCropSection>,
    /// ImageFolder: the training tree `<train_dir>/<class>/<image>`.
    pub train_dir: Option<PathBuf>,
    /// ImageFolder: the validation tree (the test split; never used for choices).
    pub val_dir: Option<PathBuf>,
    /// ImageFolder: class index file (`<folder> [name]` per line); else the sorted folders.
    pub class_index: Option<PathBuf>,
    /// ImageFolder: images are decoded at this side (shorter side resized, center-cropped);
    /// random crops then produce the model's input size.
    pub load_size: Option<usize>,
    /// ImageFolder: training images, for planning without the data (`--dry-run`).
    pub train_samples: Option<usize>,
    /// ImageFolder: keep only the file lists and decode every image when a batch reads it
    /// (the loader's workers decode in parallel), instead of decoding both trees into memory
    /// up front. Needed for ImageNet-sized trees; off by default (small trees train faster
    /// decoded once).
    #[serde(default)]
    pub stream: bool,
}

fn one() -> f32 {
    1.0
}
fn half32() -> f32 {
    0.5
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
    /// Global samples per optimizer step, over all devices and accumulation steps (per domain
    /// for co-training: the mixed batch is twice this).
    pub batch_size: usize,
    /// Most samples one device takes in one forward/backward pass; a larger per-device share
    /// of `batch_size` is reached by gradient accumulation (default: no accumulation).
    pub micro_batch_size: Option<usize>,
    /// Decay of an exponential moving average of the weights, updated every optimizer step
    /// (0 = off; timm's DeiT recipe uses 0.99996).
    #[serde(default)]
    pub ema_decay: f64,
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
    /// Compute precision of the training step: `"f32"`, `"bf16"` or `"f16"` (mixed precision:
    /// f32 master weights and optimizer; forward, backward and the attack in 16 bits, with
    /// LayerNorm, softmax, logits, losses and the attack's gradient sign in f32; f16 adds dynamic
    /// loss scaling). For GPUs; burn's CPU backend runs 16-bit floats through f32 conversions
    /// and is slower.
    #[serde(default = "precision")]
    pub precision: String,
    /// Initial loss scale under `precision = "f16"`: halved (down to 1) when a step's gradients
    /// overflow, and that step is skipped; doubled after 2000 finite steps in a row.
    #[serde(default = "loss_scale")]
    pub loss_scale: f64,
}

fn beta1() -> f32 {
    0.9
}
fn beta2() -> f32 {
    0.999
}
fn precision() -> String {
    "f32".into()
}
fn loss_scale() -> f64 {
    65536.0
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
    /// Distribution-shift test sets in ImageFolder layouts (ImageNet-C/-R/-A/-Sketch),
    /// evaluated in both modes after training; image-folder runs only.
    #[serde(default)]
    pub shifts: Vec<ShiftSection>,
}

/// How a shifted test set is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShiftLayout {
    /// `<dir>/<class>/<image>` (ImageNet-R, -A, -Sketch); when only some classes are present
    /// (200 for -R and -A) the other logits are masked.
    #[default]
    Folder,
    /// `<dir>/<corruption>/<severity>/<class>/<image>` (ImageNet-C).
    ImagenetC,
}

/// One distribution-shift test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftSection {
    /// Name in the report (`imagenet-r`, ...).
    pub name: String,
    /// Root directory.
    pub dir: PathBuf,
    /// Layout.
    #[serde(default)]
    pub layout: ShiftLayout,
    /// ImageNet-C: corruptions to evaluate (folder names).
    #[serde(default)]
    pub corruptions: Vec<String>,
    /// ImageNet-C: severities (1..=5).
    #[serde(default)]
    pub severities: Vec<u8>,
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
            message: toml_error(&e, Some(text)),
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
                    message: toml_error(&e, None),
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

    /// The training step's compute precision (`optim.precision`).
    pub fn precision(&self) -> Result<advsoup_vit::Precision, TrainError> {
        advsoup_vit::Precision::parse(&self.optim.precision)
            .map_err(|m| invalid("optim.precision", m))
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
        let vit = self.vit()?;
        self.validate_sizes(&vit)?;
        self.precision()?;
        if !(self.optim.loss_scale.is_finite() && self.optim.loss_scale >= 1.0) {
            return Err(invalid(
                "optim.loss_scale",
                format!("{} must be a finite number >= 1", self.optim.loss_scale),
            ));
        }
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
        if self.data.train_limit == Some(0) {
            return Err(invalid(
                "data.train_limit",
                "expected a positive number of training samples (or leave it out for all)",
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
            .any(|v| !(*v >= 0.0 && v.is_finite()))
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
        if !(o.grad_clip >= 0.0 && o.grad_clip.is_finite()) {
            return Err(invalid(
                "optim.grad_clip",
                format!("expected a finite value >= 0, got {}", o.grad_clip),
            ));
        }
        // An unknown preset would otherwise surface only after the whole training.
        advsoup_attacks::Evaluator::preset(
            &self.eval.test_attack,
            advsoup_attacks::ThreatModel::Linf,
            self.attack.eval.eps,
            self.seed,
        )
        .map_err(|e| invalid("eval.test_attack", e.to_string()))?;
        if !(0.0..1.0).contains(&self.data.label_smoothing) {
            return Err(invalid(
                "data.label_smoothing",
                "expected a value in [0, 1)",
            ));
        }
        if o.micro_batch_size == Some(0) {
            return Err(invalid(
                "optim.micro_batch_size",
                "expected a positive batch size",
            ));
        }
        if !(0.0..1.0).contains(&o.ema_decay) {
            return Err(invalid(
                "optim.ema_decay",
                format!("expected a decay in [0, 1), got {}", o.ema_decay),
            ));
        }
        self.augment().map_err(|e| match e {
            TrainError::Data(d) => invalid("data", d.to_string()),
            other => other,
        })?;
        for (i, shift) in self.eval.shifts.iter().enumerate() {
            let field = format!("eval.shifts[{i}]");
            if self.data.dataset != DatasetName::ImageFolder {
                return Err(invalid(
                    &field,
                    "shifted sets need data.dataset = \"image-folder\" (its class index)",
                ));
            }
            if shift.layout == ShiftLayout::ImagenetC
                && (shift.corruptions.is_empty()
                    || shift.severities.is_empty()
                    || shift.severities.iter().any(|s| !(1..=5).contains(s)))
            {
                return Err(invalid(
                    &field,
                    "imagenet_c needs corruptions and severities in 1..=5",
                ));
            }
        }
        if self.data.dataset == DatasetName::ImageFolder {
            for (field, v) in [
                ("data.train_dir", &self.data.train_dir),
                ("data.val_dir", &self.data.val_dir),
            ] {
                if v.is_none() {
                    return Err(invalid(
                        field,
                        "required when data.dataset = \"image-folder\"",
                    ));
                }
            }
            if self.data.load_size == Some(0) {
                return Err(invalid("data.load_size", "expected a positive size"));
            }
        }
        Ok(())
    }

    /// The training augmentation of this config, checked.
    pub fn augment(&self) -> Result<advsoup_data::AugmentConfig, TrainError> {
        let d = &self.data;
        let rand_augment = d
            .rand_augment
            .as_deref()
            .map(advsoup_data::augment::RandAugment::parse)
            .transpose()?;
        let resized_crop =
            d.random_resized_crop
                .as_ref()
                .map(|r| advsoup_data::augment::ResizedCrop {
                    size: 0,
                    scale: r.scale,
                    ratio: r.ratio,
                });
        let a = advsoup_data::AugmentConfig {
            crop_padding: d.crop_padding,
            hflip: d.hflip,
            mixup_alpha: d.mixup_alpha,
            cutmix_alpha: d.cutmix_alpha,
            mix_prob: d.mix_prob,
            cutmix_switch_prob: d.cutmix_switch_prob,
            label_smoothing: d.label_smoothing,
            rand_augment,
            resized_crop: resized_crop.map(|mut r| {
                r.size = self.vit().map(|v| v.img_size).unwrap_or(0);
                r
            }),
        };
        a.validate()?;
        Ok(a)
    }
}

impl TrainConfig {
    /// Sizes a machine can hold: a typo such as `embed_dim = 6400000` must be an error naming
    /// the field here, not an allocation failure (an abort) or a burn panic when the model is
    /// built.
    fn validate_sizes(&self, vit: &VitConfig) -> Result<(), TrainError> {
        const MAX_PARAMS: usize = 1 << 32;
        for (field, value, max) in [
            ("model.embed_dim", vit.embed_dim, 1 << 16),
            ("model.depth", vit.depth, 1 << 10),
            ("model.num_classes", vit.num_classes, 1 << 20),
            ("data.crop_padding", self.data.crop_padding, vit.img_size),
            ("data.workers", self.data.workers, 256),
        ] {
            if value > max {
                return Err(invalid(
                    field,
                    format!("{value} is too large: expected at most {max}"),
                ));
            }
        }
        let hidden = vit.mlp_hidden();
        if hidden > 1 << 22 {
            return Err(invalid(
                "model.mlp_ratio",
                format!(
                    "{} gives an MLP width of {hidden}: expected at most {}",
                    vit.mlp_ratio,
                    1 << 22
                ),
            ));
        }
        match self.model.adapter {
            AdapterKind::Prompt { tokens } if tokens == 0 || tokens > 1 << 16 => {
                return Err(invalid(
                    "model.adapter",
                    format!("prompt tokens = {tokens}: expected 1 to 65536"),
                ));
            }
            AdapterKind::Lora { rank } if rank == 0 || rank > vit.embed_dim => {
                return Err(invalid(
                    "model.adapter",
                    format!(
                        "lora rank = {rank}: expected 1 to embed_dim = {}",
                        vit.embed_dim
                    ),
                ));
            }
            _ => {}
        }
        // With the bounds above this count cannot overflow.
        let params = advsoup_adapters::AdaptedVitConfig {
            vit: vit.clone(),
            adapter: self.model.adapter,
        }
        .num_params();
        if params > MAX_PARAMS {
            return Err(invalid(
                "model",
                format!("{params} parameters: expected at most {MAX_PARAMS}"),
            ));
        }
        Ok(())
    }
}

/// One line for a TOML error: the key path when deserializing (`optim.batch_size: invalid
/// value: integer -8, expected usize`), the line number when parsing. `message()` alone names
/// neither, and `Display` spans several lines.
fn toml_error(e: &toml::de::Error, text: Option<&str>) -> String {
    if let (Some(text), Some(span)) = (text, e.span()) {
        let line = text
            .get(..span.start)
            .map_or(0, |before| before.matches('\n').count())
            + 1;
        return format!("line {line}: {}", e.message());
    }
    let shown = e.to_string();
    match shown.lines().rev().find_map(|l| l.strip_prefix("in `")) {
        Some(keys) => format!("{}: {}", keys.trim_end_matches('`'), e.message()),
        None => e.message().to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Plan, Topology};
    use crate::step::{CoTraining, Regime as _, StepConfig, TrainBatch};
    use advsoup_adapters::AdaptedVitConfig;
    use burn::backend::{Autodiff, Flex};
    use burn::optim::{AdamWConfig, Optimizer};
    use burn::prelude::*;
    use burn::train::TrainStep;

    type TestBackend = Autodiff<Flex>;

    fn imagenet() -> TrainConfig {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/imagenet-vit-b16-cls.toml");
        TrainConfig::load(&path, &[]).expect("the ImageNet config validates")
    }

    #[test]
    fn imagenet_config_resolves_to_the_paper_recipe_and_plans() {
        let c = imagenet();
        let vit = c.vit().expect("vit");
        assert_eq!(
            (vit.img_size, vit.patch_size, vit.embed_dim, vit.depth),
            (224, 16, 768, 12)
        );
        assert!((c.attack.train.eps - 4.0 / 255.0).abs() < 1e-12);
        assert_eq!(
            (c.optim.beta1, c.optim.beta2, c.optim.weight_decay),
            (0.9, 0.95, 0.3)
        );
        let a = c.augment().expect("augment");
        assert_eq!(a.resized_crop.as_ref().map(|r| r.size), Some(224));
        assert_eq!(a.rand_augment.as_ref().map(|r| r.magnitude), Some(9.0));
        let samples = crate::planned_train_samples(&c).expect("samples");
        assert_eq!(samples, 1_281_167 - 10_000);
        let one = Plan::new(&c, &Topology::single(), samples).expect("plan");
        assert_eq!(
            (one.per_device_batch, one.micro_batch, one.accumulation),
            (4096, 64, 64)
        );
        assert_eq!(one.steps_per_epoch, 310);
        let t = Topology {
            nodes: 4,
            coordinator: Some("node0:7000".into()),
            ..Topology::local(8)
        };
        let many = Plan::new(&c, &t, samples).expect("plan");
        assert_eq!(
            (many.world, many.per_device_batch, many.accumulation),
            (32, 128, 2)
        );
        let text = many.to_string();
        assert!(
            text.contains("accumulation") && text.contains("PGD-2"),
            "{text}"
        );
        assert!(text.contains("precision: f32"), "{text}");
        let mut bf16 = c.clone();
        bf16.optim.precision = "bf16".into();
        let text = Plan::new(&bf16, &t, samples).expect("plan").to_string();
        assert!(
            text.contains("precision: bf16 compute, f32 master") && !text.contains("loss scaling"),
            "{text}"
        );
        bf16.optim.precision = "f16".into();
        let text = Plan::new(&bf16, &t, samples).expect("plan").to_string();
        assert!(text.contains("dynamic loss scaling from 65536"), "{text}");
        assert_eq!(c.eval.shifts.len(), 4);
        assert_eq!(
            c.eval.shifts[3].corruptions.len() * c.eval.shifts[3].severities.len(),
            75
        );
        let e = crate::run::check_shift_dirs(&c)
            .expect_err("no ImageNet-R here")
            .to_string();
        assert!(
            e.contains("eval.shifts[0].dir") && e.contains("eval.shifts=[]"),
            "{e}"
        );
        let none = TrainConfig {
            eval: EvalSection {
                shifts: vec![],
                ..c.eval.clone()
            },
            ..c.clone()
        };
        assert!(crate::run::check_shift_dirs(&none).is_ok());
        // 4096 over 3 devices does not split.
        let e = Plan::new(&c, &Topology::local(3), samples)
            .expect_err("3")
            .to_string();
        assert!(e.contains("optim.batch_size"), "{e}");
        // Misspelt and invalid fields name themselves.
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/imagenet-vit-b16-cls.toml"),
        )
        .expect("read");
        for (o, needle) in [
            ("data.rand_augment=\"rand-m9-mstd0.5\"", "inc1"),
            ("optim.ema_decay=1.0", "optim.ema_decay"),
            ("optim.micro_batch_size=0", "optim.micro_batch_size"),
            ("data.random_resized_crop.scale=[0.5, 0.1]", "scale"),
            ("data.train_dir_typo=\"x\"", "unknown field"),
        ] {
            let e = TrainConfig::parse(&text, "in.toml".as_ref(), &[o.to_string()])
                .expect_err(o)
                .to_string();
            assert!(e.contains(needle) && !e.contains('\n'), "{o}: {e}");
        }
    }

    #[test]
    fn vit_b16_takes_one_co_training_step_on_two_images() {
        let _rng = crate::test_support::serial();
        let c = imagenet();
        let device = Default::default();
        TestBackend::seed(&device, 0);
        let model = AdaptedVitConfig {
            vit: c.vit().expect("vit"),
            adapter: c.model.adapter,
        }
        .try_init::<TestBackend>(&device)
        .expect("ViT-B/16");
        let step = StepConfig::new(c.alpha, &c.attack.train).expect("attack");
        let module = CoTraining::wrap(model, step);
        let images = Tensor::<TestBackend, 4>::random(
            [2, 3, 224, 224],
            burn::tensor::Distribution::Uniform(0.0, 1.0),
            &device,
        );
        let targets = Tensor::<TestBackend, 1, Int>::from_ints([3, 997], &device);
        let eps = c.data.label_smoothing;
        let soft = targets.clone().one_hot::<2>(1000).float() * (1.0 - eps) + eps / 1000.0;
        let out = module.step(TrainBatch {
            images,
            targets,
            soft_targets: soft,
            ids: vec![0, 1],
            seed: 1,
            loss_scale: 1.0,
        });
        // ln(1000) = 6.9 at initialization.
        assert!(
            out.item.loss.is_finite() && (4.0..10.0).contains(&out.item.loss),
            "{}",
            out.item.loss
        );
        assert_eq!(out.item.samples, 4);
        let before = module.model.vit.cls_token.val().into_data();
        let mut optim = AdamWConfig::new()
            .with_beta_2(c.optim.beta2)
            .init::<TestBackend, CoTraining<TestBackend>>();
        let module = optim.step(c.optim.lr, module, out.grads);
        let after = module.model.vit.cls_token.val().into_data();
        assert_ne!(before, after, "the optimizer step moved the clean token");
    }
}
