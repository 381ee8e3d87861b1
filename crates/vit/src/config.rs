//! [`VitConfig`]: the hyper-parameters of a ViT, with presets named after timm's models.

use burn::config::Config;

/// Why a [`VitConfig`] cannot build a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VitConfigError {
    /// `img_size` is not a multiple of `patch_size`.
    #[error("img_size {img_size} is not divisible by patch_size {patch_size}")]
    PatchSize {
        /// Image side in pixels.
        img_size: usize,
        /// Patch side in pixels.
        patch_size: usize,
    },
    /// `embed_dim` is not a multiple of `num_heads`.
    #[error("embed_dim {embed_dim} is not divisible by num_heads {num_heads}")]
    Heads {
        /// Token width.
        embed_dim: usize,
        /// Number of attention heads.
        num_heads: usize,
    },
    /// `mean`/`std` do not have one entry per input channel, or a std is not positive.
    #[error(
        "mean and std need {in_chans} entries (one per channel) and std > 0, got mean {mean:?} std {std:?}"
    )]
    Normalization {
        /// Number of input channels.
        in_chans: usize,
        /// Per-channel means.
        mean: Vec<f64>,
        /// Per-channel standard deviations.
        std: Vec<f64>,
    },
    /// A size that must be positive is zero.
    #[error("{field} must be > 0")]
    Zero {
        /// The offending field.
        field: &'static str,
    },
    /// A probability outside [0, 1).
    #[error("{field} must be in [0, 1), got {value}")]
    Probability {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
}

/// Hyper-parameters of a [`Vit`](crate::Vit).
///
/// Built by name, never by position: start from a preset (timm's names, e.g.
/// [`VitConfig::vit_base_patch16_224`]) or from [`VitConfig::new`] (which *is* that preset) and
/// change fields with the `with_*` methods:
///
/// ```
/// use advsoup_vit::VitConfig;
///
/// let tiny = VitConfig::new()
///     .with_img_size(8)
///     .with_patch_size(4)
///     .with_in_chans(1)
///     .with_num_classes(3)
///     .with_embed_dim(16)
///     .with_depth(1)
///     .with_num_heads(2)
///     .with_mean(vec![0.5])
///     .with_std(vec![0.5]);
/// assert!(tiny.validate().is_ok());
/// assert_eq!(VitConfig::new(), VitConfig::vit_base_patch16_224());
/// ```
///
/// Any combination where `img_size % patch_size == 0` and `embed_dim % num_heads == 0` is valid;
/// call [`VitConfig::validate`] (done by [`VitConfig::try_init`]) before building. The defaults
/// are timm's `vit_base_patch16_224` (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words";
/// timm `vision_transformer.py`), normalized with mean = std = 0.5 per channel as timm's
/// `augreg` ViT checkpoints are.
#[derive(Config, Debug, PartialEq)]
pub struct VitConfig {
    /// Side of the (square) input image in pixels.
    #[config(default = 224)]
    pub img_size: usize,
    /// Side of a (square) patch in pixels.
    #[config(default = 16)]
    pub patch_size: usize,
    /// Number of input channels.
    #[config(default = 3)]
    pub in_chans: usize,
    /// Number of classes of the classifier head.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Token width.
    #[config(default = 768)]
    pub embed_dim: usize,
    /// Number of transformer blocks.
    #[config(default = 12)]
    pub depth: usize,
    /// Number of attention heads.
    #[config(default = 12)]
    pub num_heads: usize,
    /// Hidden width of the MLP as a multiple of `embed_dim`.
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// Whether the fused qkv projection has a bias (timm default: true).
    #[config(default = true)]
    pub qkv_bias: bool,
    /// Dropout probability after the embeddings, in the MLP, after projections and before the head.
    #[config(default = 0.0)]
    pub drop_rate: f64,
    /// Stochastic depth: the drop-path probability of the last block (linearly increasing from 0).
    #[config(default = 0.0)]
    pub drop_path_rate: f64,
    /// LayerNorm epsilon (timm: 1e-6).
    #[config(default = 1e-6)]
    pub layer_norm_eps: f64,
    /// Per-channel mean subtracted inside the model (inputs are pixels in [0, 1]).
    #[config(default = "vec![0.5, 0.5, 0.5]")]
    pub mean: Vec<f64>,
    /// Per-channel standard deviation divided inside the model.
    #[config(default = "vec![0.5, 0.5, 0.5]")]
    pub std: Vec<f64>,
}

impl VitConfig {
    /// timm's 224x224, patch-16, 12-block, 1000-class ViT family at a given width and head
    /// count (timm `vision_transformer.py`, `vit_*_patch16_224`).
    fn timm_224(embed_dim: usize, num_heads: usize) -> Self {
        Self::new()
            .with_embed_dim(embed_dim)
            .with_num_heads(num_heads)
    }

    /// timm `vit_tiny_patch16_224` (192 wide, 12 blocks, 3 heads, 1000 classes).
    pub fn vit_tiny_patch16_224() -> Self {
        Self::timm_224(192, 3)
    }

    /// timm `vit_small_patch16_224` (384 wide, 12 blocks, 6 heads, 1000 classes).
    pub fn vit_small_patch16_224() -> Self {
        Self::timm_224(384, 6)
    }

    /// timm `vit_base_patch16_224` (768 wide, 12 blocks, 12 heads, 1000 classes; 86,567,656
    /// parameters).
    pub fn vit_base_patch16_224() -> Self {
        Self::timm_224(768, 12)
    }

    /// A small ViT for 28x28 grey images (MNIST, Fashion-MNIST): patch 4 (49 tokens), 128 wide,
    /// 6 blocks, 4 heads, 10 classes, normalized with Fashion-MNIST's statistics.
    pub fn vit_mini_patch4_28() -> Self {
        Self::new()
            .with_img_size(28)
            .with_patch_size(4)
            .with_in_chans(1)
            .with_num_classes(10)
            .with_embed_dim(128)
            .with_depth(6)
            .with_num_heads(4)
            .with_mean(vec![0.2860])
            .with_std(vec![0.3530])
    }

    /// A ViT-Tiny-like model for 32x32 colour images (CIFAR): patch 4 (64 tokens), 192 wide,
    /// 6 blocks, 3 heads, 10 classes, normalized with CIFAR-10's statistics.
    pub fn vit_tiny_patch4_32() -> Self {
        Self::new()
            .with_img_size(32)
            .with_patch_size(4)
            .with_num_classes(10)
            .with_embed_dim(192)
            .with_depth(6)
            .with_num_heads(3)
            .with_mean(vec![0.4914, 0.4822, 0.4465])
            .with_std(vec![0.2470, 0.2435, 0.2616])
    }

    /// Every preset by its name, for command lines and config files.
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "vit_tiny_patch16_224" => Self::vit_tiny_patch16_224(),
            "vit_small_patch16_224" => Self::vit_small_patch16_224(),
            "vit_base_patch16_224" => Self::vit_base_patch16_224(),
            "vit_mini_patch4_28" => Self::vit_mini_patch4_28(),
            "vit_tiny_patch4_32" => Self::vit_tiny_patch4_32(),
            _ => return None,
        })
    }

    /// Names accepted by [`VitConfig::preset`].
    pub const PRESETS: [&'static str; 5] = [
        "vit_tiny_patch16_224",
        "vit_small_patch16_224",
        "vit_base_patch16_224",
        "vit_mini_patch4_28",
        "vit_tiny_patch4_32",
    ];

    /// Checks that the sizes divide evenly and the probabilities are probabilities.
    pub fn validate(&self) -> Result<(), VitConfigError> {
        for (field, v) in [
            ("img_size", self.img_size),
            ("patch_size", self.patch_size),
            ("in_chans", self.in_chans),
            ("num_classes", self.num_classes),
            ("embed_dim", self.embed_dim),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
        ] {
            if v == 0 {
                return Err(VitConfigError::Zero { field });
            }
        }
        if !self.img_size.is_multiple_of(self.patch_size) {
            return Err(VitConfigError::PatchSize {
                img_size: self.img_size,
                patch_size: self.patch_size,
            });
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return Err(VitConfigError::Heads {
                embed_dim: self.embed_dim,
                num_heads: self.num_heads,
            });
        }
        if self.mean.len() != self.in_chans
            || self.std.len() != self.in_chans
            || self.std.iter().any(|s| s.is_nan() || *s <= 0.0)
        {
            return Err(VitConfigError::Normalization {
                in_chans: self.in_chans,
                mean: self.mean.clone(),
                std: self.std.clone(),
            });
        }
        for (field, value) in [
            ("drop_rate", self.drop_rate),
            ("drop_path_rate", self.drop_path_rate),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(VitConfigError::Probability { field, value });
            }
        }
        if self.mlp_ratio.is_nan() || self.mlp_ratio <= 0.0 {
            return Err(VitConfigError::Zero { field: "mlp_ratio" });
        }
        Ok(())
    }

    /// Number of patch tokens.
    pub fn num_patches(&self) -> usize {
        (self.img_size / self.patch_size).pow(2)
    }

    /// Hidden width of each MLP.
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// Number of parameters of the model this config builds (no adapters), computed from the
    /// sizes alone.
    pub fn num_params(&self) -> usize {
        let d = self.embed_dim;
        let h = self.mlp_hidden();
        let patch = self.in_chans * self.patch_size * self.patch_size * d + d;
        let tokens = d + (self.num_patches() + 1) * d;
        let qkv = d * 3 * d + if self.qkv_bias { 3 * d } else { 0 };
        let block = 2 * (2 * d) + qkv + (d * d + d) + (d * h + h) + (h * d + d);
        let head = d * self.num_classes + self.num_classes;
        patch + tokens + self.depth * block + 2 * d + head
    }
}
