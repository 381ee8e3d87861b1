//! advsoup-vit: a backend-generic Vision Transformer laid out like timm's `VisionTransformer`.
//!
//! - Parameter names mirror timm (`patch_embed.proj`, `cls_token`, `pos_embed`,
//!   `blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`, `head`), so timm
//!   checkpoints load by name ([`io::load_timm`]) and save back ([`io::save_timm`]).
//! - Inputs are pixels in [0, 1]; the per-channel normalization is part of the model, so attacks
//!   and ε-balls live in pixel space.
//! - [`DomainHooks`] is the slot through which adapters (another crate) replace the class token,
//!   LayerNorms or Linears per sample. This crate knows nothing of adapters, data or attacks.
//! - [`Vit::deterministic`] turns dropout and drop-path off, which an attack needs.
//! - [`fast`]: fused CPU kernels (Linear, LayerNorm, GELU, attention core) used on burn's Flex
//!   backend, with and without autodiff; other backends run burn's ops.
//!
//! What it must not do: IO other than [`io`]'s explicit load/save, printing, or hidden RNGs
//! (dropout draws from the backend's seeded generator).
//!
//! ```
//! use advsoup_vit::VitConfig;
//! use burn::backend::Flex;
//! use burn::prelude::*;
//!
//! let device = Default::default();
//! let config = VitConfig::new().with_img_size(8).with_patch_size(4).with_in_chans(1).with_num_classes(3).with_embed_dim(16).with_depth(2).with_num_heads(2).with_mean(vec![0.5]).with_std(vec![0.5]);
//! let vit = config.init::<Flex>(&device);
//! let logits = vit.forward(Tensor::zeros([2, 1, 8, 8], &device));
//! assert_eq!(logits.dims(), [2, 3]);
//! ```
#![warn(missing_docs)]

/// The burn this crate is built on (`=0.21.0`), so users get the matching version and types.
pub use burn;

mod config;
pub mod fast;
mod hooks;
pub mod io;
mod model;
mod precision;

pub use config::{VitConfig, VitConfigError};
pub use hooks::{DomainHooks, LinearSite, NoHooks, NormSite};
pub use model::{Attention, Block, DropPath, Mlp, PatchEmbed, Vit, linear_tokens};
pub use precision::{Precision, materialize};

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::{AutodiffModule, Module};
    use burn::prelude::*;
    use burn::tensor::{Distribution, Tolerance};

    type TestBackend = Flex;
    type TestAutodiff = Autodiff<Flex>;

    fn tiny() -> VitConfig {
        VitConfig::new()
            .with_img_size(8)
            .with_patch_size(4)
            .with_in_chans(1)
            .with_num_classes(3)
            .with_embed_dim(16)
            .with_depth(2)
            .with_num_heads(2)
            .with_mean(vec![0.4])
            .with_std(vec![0.3])
    }

    #[test]
    fn shapes_of_features_and_logits() {
        let device = Default::default();
        let vit = tiny().init::<TestBackend>(&device);
        let x = Tensor::<TestBackend, 4>::random([2, 1, 8, 8], Distribution::Default, &device);
        let f = vit.forward_features(x.clone(), &NoHooks);
        assert_eq!(f.dims(), [2, 5, 16]);
        assert_eq!(vit.forward_head(f, &NoHooks).dims(), [2, 3]);
        assert_eq!(vit.forward(x).dims(), [2, 3]);
    }

    #[test]
    fn any_evenly_dividing_combination_builds() {
        let device = Default::default();
        let config = VitConfig::new()
            .with_img_size(12)
            .with_patch_size(3)
            .with_in_chans(2)
            .with_num_classes(5)
            .with_embed_dim(24)
            .with_depth(1)
            .with_num_heads(4)
            .with_mean(vec![0.5, 0.5])
            .with_std(vec![0.2, 0.3]);
        let vit = config.init::<TestBackend>(&device);
        let x = Tensor::<TestBackend, 4>::zeros([3, 2, 12, 12], &device);
        assert_eq!(vit.forward(x).dims(), [3, 5]);
        assert_eq!(vit.num_params(), config.num_params());
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let bad = [
            VitConfig {
                patch_size: 3,
                ..tiny()
            },
            VitConfig {
                num_heads: 3,
                ..tiny()
            },
            tiny().with_mean(vec![0.1, 0.2]),
            tiny().with_std(vec![0.0]),
            tiny().with_drop_rate(1.0),
            VitConfig { depth: 0, ..tiny() },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} should be invalid");
        }
        assert!(tiny().validate().is_ok());
        let e = VitConfig {
            num_heads: 3,
            ..tiny()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "embed_dim 16 is not divisible by num_heads 3"
        );
    }

    #[test]
    fn vit_base_has_timms_parameter_count() {
        // timm: sum(p.numel() for p in vit_base_patch16_224().parameters()) == 86_567_656
        assert_eq!(VitConfig::vit_base_patch16_224().num_params(), 86_567_656);
        assert_eq!(VitConfig::vit_tiny_patch16_224().num_params(), 5_717_416);
        assert_eq!(VitConfig::vit_small_patch16_224().num_params(), 22_050_664);
        for name in VitConfig::PRESETS {
            let c = VitConfig::preset(name).expect("listed preset");
            assert!(c.validate().is_ok(), "{name}");
        }
    }

    #[test]
    fn built_model_matches_counted_parameters() {
        let device = Default::default();
        for c in [tiny(), VitConfig::vit_mini_patch4_28()] {
            let vit = c.init::<TestBackend>(&device);
            assert_eq!(vit.num_params(), c.num_params());
        }
    }

    #[test]
    fn normalization_happens_inside_the_model() {
        // A constant image equal to the mean is all zeros after normalization: the patch
        // embedding then only sees its bias, so every patch token is identical.
        let device = Default::default();
        let vit = tiny().init::<TestBackend>(&device);
        let x = Tensor::<TestBackend, 4>::full([1, 1, 8, 8], 0.4, &device);
        let x = (x - vit.mean.clone()) * vit.inv_std.clone();
        let tokens = vit.patch_embed.forward(x);
        let bias = vit.patch_embed.proj.bias.as_ref().expect("bias").val();
        for p in 0..4 {
            tokens
                .clone()
                .slice([0..1, p..p + 1, 0..16])
                .reshape([16])
                .into_data()
                .assert_approx_eq::<f32>(&bias.clone().into_data(), Tolerance::absolute(1e-6));
        }
    }

    #[test]
    fn deterministic_mode_gives_identical_logits_with_dropout_configured() {
        let device = Default::default();
        TestAutodiff::seed(&device, 7);
        let vit = tiny()
            .with_drop_rate(0.5)
            .with_drop_path_rate(0.5)
            .init::<TestAutodiff>(&device);
        let x = Tensor::<TestAutodiff, 4>::random([2, 1, 8, 8], Distribution::Default, &device);
        // Dropout is live on the autodiff backend: two passes differ...
        let a = vit.forward(x.clone()).into_data();
        let b = vit.forward(x.clone()).into_data();
        assert_ne!(a, b, "dropout should randomize an autodiff forward");
        // ...and the deterministic copy does not, and equals the inner-backend (eval) forward.
        let det = vit.clone().deterministic();
        let c = det.forward(x.clone()).into_data();
        let d = det.forward(x.clone()).into_data();
        assert_eq!(c, d);
        let eval = vit.valid().forward(x.inner()).into_data();
        c.assert_approx_eq::<f32>(&eval, Tolerance::rel_abs(1e-5, 1e-5));
    }

    #[test]
    fn gradients_reach_every_parameter() {
        use burn::module::ModuleVisitor;
        use burn::module::Param;
        let device = Default::default();
        let vit = tiny().init::<TestAutodiff>(&device);
        let x = Tensor::<TestAutodiff, 4>::random([2, 1, 8, 8], Distribution::Default, &device);
        let grads = vit.forward(x).sum().backward();
        struct Check<'a> {
            grads: &'a <TestAutodiff as burn::tensor::backend::AutodiffBackend>::Gradients,
            missing: usize,
            seen: usize,
        }
        impl ModuleVisitor<TestAutodiff> for Check<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<TestAutodiff, D>>) {
                self.seen += 1;
                if param.val().grad(self.grads).is_none() {
                    self.missing += 1;
                }
            }
        }
        let mut check = Check {
            grads: &grads,
            missing: 0,
            seen: 0,
        };
        vit.visit(&mut check);
        assert!(check.seen > 10);
        assert_eq!(check.missing, 0);
    }
}
