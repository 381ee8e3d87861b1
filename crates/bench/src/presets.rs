//! The models `advsoup bench` measures, each a named constructor that says where its shape
//! comes from.

use advsoup_vit::VitConfig;

/// A model to benchmark and the batch it is measured at.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchPreset {
    /// Short name (`tiny32`, `vitb16`, `fmnist`, `test`): the report's `preset` field and the
    /// `--preset` value the memory child is started with.
    pub name: &'static str,
    /// The model, as a timm-style preset name (the report's `model` field).
    pub model: &'static str,
    /// The model's hyper-parameters.
    pub vit: VitConfig,
    /// Images per step unless the caller asks for another batch.
    pub batch: usize,
    /// Whether the train and co-training steps are measured (forward and PGD step always are).
    pub train: bool,
}

impl BenchPreset {
    /// ViT-Tiny-like for 32x32 images, batch 64, all four steps. Source: advsoup-vit's
    /// [`VitConfig::vit_tiny_patch4_32`] (timm's `vit_tiny_patch16_224` widths — 192 wide,
    /// 3 heads — with patch 4 and 6 blocks for CIFAR-sized images).
    pub fn tiny32() -> Self {
        Self {
            name: "tiny32",
            model: "vit_tiny_patch4_32",
            vit: VitConfig::vit_tiny_patch4_32(),
            batch: 64,
            train: true,
        }
    }

    /// ViT-B/16 at 224x224. Source: timm `vit_base_patch16_224` (advsoup-vit's
    /// [`VitConfig::vit_base_patch16_224`]). On a CPU only the forward and the PGD step are
    /// measured, at batch 4; on an accelerator all four steps at batch 64.
    pub fn vitb16(accelerator: bool) -> Self {
        Self {
            name: "vitb16",
            model: "vit_base_patch16_224",
            vit: VitConfig::vit_base_patch16_224(),
            batch: if accelerator { 64 } else { 4 },
            train: accelerator,
        }
    }

    /// The default training's model, batch 128, all four steps. Source: configs/fmnist-cls.toml
    /// `[model]`: preset `vit_mini_patch4_28` (28x28 grey images, Fashion-MNIST statistics)
    /// with `patch_size = 7`, `embed_dim = 64`, `depth = 4`, `num_heads = 4`,
    /// `mlp_ratio = 2.0`.
    pub fn fmnist() -> Self {
        Self {
            name: "fmnist",
            model: "vit_mini_patch7_28",
            vit: VitConfig {
                patch_size: 7,
                embed_dim: 64,
                depth: 4,
                num_heads: 4,
                mlp_ratio: 2.0,
                ..VitConfig::vit_mini_patch4_28()
            },
            batch: 128,
            train: true,
        }
    }

    /// A test-sized model for CI, batch 2, all four steps: 8x8 RGB images, patch 4, 16 wide,
    /// one block, 2 heads, 10 classes. Source: the tiny models of the crates' own tests
    /// (STYLE.md: batch 2, 8x8 images, embed_dim 16); every other hyper-parameter (MLP ratio 4,
    /// qkv bias, normalization 0.5/0.5, no dropout) is timm's default, taken from
    /// [`VitConfig::vit_tiny_patch16_224`].
    pub fn test() -> Self {
        Self {
            name: "test",
            model: "test_patch4_8",
            vit: VitConfig {
                img_size: 8,
                patch_size: 4,
                num_classes: 10,
                embed_dim: 16,
                depth: 1,
                num_heads: 2,
                ..VitConfig::vit_tiny_patch16_224()
            },
            batch: 2,
            train: true,
        }
    }

    /// The preset called `name` (one of [`BenchPreset::NAMES`]), sized for an accelerator or
    /// not.
    pub fn by_name(name: &str, accelerator: bool) -> Option<Self> {
        Some(match name {
            "tiny32" => Self::tiny32(),
            "vitb16" => Self::vitb16(accelerator),
            "fmnist" => Self::fmnist(),
            "test" => Self::test(),
            _ => return None,
        })
    }

    /// Names accepted by [`BenchPreset::by_name`].
    pub const NAMES: [&'static str; 4] = ["tiny32", "vitb16", "fmnist", "test"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_valid_named_shapes() {
        for name in BenchPreset::NAMES {
            for accelerator in [false, true] {
                let p = BenchPreset::by_name(name, accelerator).expect("a preset");
                assert_eq!(p.name, name);
                p.vit.validate().expect("a valid model");
                assert!(p.batch > 0);
            }
        }
        assert_eq!(BenchPreset::by_name("huge", false), None);
        let fmnist = BenchPreset::fmnist();
        assert_eq!(
            (fmnist.vit.patch_size, fmnist.vit.embed_dim, fmnist.batch),
            (7, 64, 128)
        );
        assert_eq!((fmnist.vit.img_size, fmnist.vit.in_chans), (28, 1));
        assert!(!BenchPreset::vitb16(false).train);
        assert!(BenchPreset::vitb16(true).train);
        assert_eq!(
            (
                BenchPreset::vitb16(false).batch,
                BenchPreset::vitb16(true).batch
            ),
            (4, 64)
        );
    }

    #[test]
    fn test_preset_is_the_old_positional_shape() {
        // The shape the cli built as `VitConfig::new(8, 4, 3, 10, 16, 1, 2)` before it moved here.
        let v = BenchPreset::test().vit;
        assert_eq!(
            (
                v.img_size,
                v.patch_size,
                v.in_chans,
                v.num_classes,
                v.embed_dim,
                v.depth,
                v.num_heads
            ),
            (8, 4, 3, 10, 16, 1, 2)
        );
        assert_eq!((v.mlp_ratio, v.qkv_bias), (4.0, true));
        assert_eq!(
            (v.drop_rate, v.drop_path_rate, v.layer_norm_eps),
            (0.0, 0.0, 1e-6)
        );
        assert_eq!((v.mean, v.std), (vec![0.5; 3], vec![0.5; 3]));
    }
}
