//! The sections of a config file (`[model]`, `[data]`, `[attack]`, `[optim]`, `[eval]`) and
//! their enums: plain serde structs that reject unknown keys.

use std::path::PathBuf;

use advsoup_adapters::AdapterKind;
use serde::{Deserialize, Serialize};

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
