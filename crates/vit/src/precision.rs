//! Mixed precision: f32 master weights, a bf16 compute copy.
//!
//! burn 0.21 has no autocast, but its float cast is tracked by autodiff (the backward casts the
//! gradient back to the input's dtype) and CUDA picks kernels from each tensor's dtype at run
//! time. So a step casts the f32 parameters to bf16 on the graph ([`Precision::cast`]), runs
//! forward and backward in bf16, and the gradients land on the f32 parameters as f32; the
//! optimizer never sees bf16. Inside the model, pixels are normalized in f32 and cast to the
//! weights' dtype, LayerNorm statistics and the attention softmax are computed in f32, and the
//! logits come back as f32, so losses (and an attack's input gradient and its sign) are f32.
//!
//! f16 works the same way, but its 5-bit exponent flushes small gradients to zero: a trainer
//! using it scales the loss ([`Precision::needs_loss_scaling`]); advsoup-train does, dynamically.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

/// The dtype a training step computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// f32 master weights; forward and backward in bfloat16.
    Bf16,
    /// f32 master weights; forward and backward in IEEE half (needs loss scaling).
    F16,
}

impl Precision {
    /// `"f32"`, `"bf16"` or `"f16"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "f16" => Ok(Self::F16),
            other => Err(format!("`{other}`: expected \"f32\", \"bf16\" or \"f16\"")),
        }
    }

    /// Whether gradients need loss scaling to survive (f16's exponent range).
    pub fn needs_loss_scaling(self) -> bool {
        self == Self::F16
    }

    /// The name [`Precision::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// The compute dtype.
    pub fn dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::Bf16 => FloatDType::BF16,
            Self::F16 => FloatDType::F16,
        }
    }

    /// `module` with every float parameter cast to the compute dtype (ids kept). On an autodiff
    /// backend the casts are on the graph: gradients reach the original parameters in their own
    /// dtype. Constants (plain tensor fields) are left as they are. `F32` returns `module`.
    pub fn cast<B: Backend, M: Module<B>>(self, module: M) -> M {
        match self {
            Self::F32 => module,
            Self::Bf16 | Self::F16 => module.map(&mut CastParams(self.dtype())),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

struct CastParams(FloatDType);

impl<B: Backend> ModuleMapper<B> for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

/// Reads every parameter once, in place, so that clones of the module share values instead of
/// each running a lazy initializer (burn initializes parameters on first read, per clone), and
/// so that no timed call or memory baseline pays for initialization.
pub fn materialize<B: Backend, M: Module<B>>(module: &M) {
    struct Read;
    impl<B: Backend> ModuleVisitor<B> for Read {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let _ = p.val();
        }
    }
    module.visit(&mut Read);
}

/// Whether `dtype` is a 16-bit float (computed in f32 where precision matters).
pub(crate) fn is_half(dtype: DType) -> bool {
    matches!(dtype, DType::BF16 | DType::F16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VitConfig;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::tensor::Distribution;

    type B = Autodiff<Flex>;

    fn tiny() -> VitConfig {
        VitConfig {
            img_size: 8,
            patch_size: 4,
            num_classes: 5,
            embed_dim: 16,
            depth: 2,
            num_heads: 2,
            ..VitConfig::vit_tiny_patch4_32()
        }
    }

    struct Dtypes(Vec<DType>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Dtypes {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.push(p.val().dtype());
        }
    }

    fn dtypes<M: Module<B>>(m: &M) -> Vec<DType> {
        let mut v = Dtypes(Vec::new());
        m.visit(&mut v);
        v.0
    }

    #[test]
    fn names_parse_back() {
        for p in [Precision::F32, Precision::Bf16, Precision::F16] {
            assert_eq!(Precision::parse(p.name()), Ok(p));
        }
        assert!(Precision::parse("fp8").unwrap_err().contains("\"f16\""));
        assert!(Precision::F16.needs_loss_scaling() && !Precision::Bf16.needs_loss_scaling());
    }

    #[test]
    fn half_forward_and_backward_reach_the_f32_master_weights() {
        for precision in [Precision::Bf16, Precision::F16] {
            half_step_matches_f32(precision);
        }
    }

    fn half_step_matches_f32(precision: Precision) {
        let device = Default::default();
        let master = tiny().init::<B>(&device);
        materialize(&master);
        assert!(dtypes(&master).iter().all(|d| *d == DType::F32));
        let half = precision.cast(master.clone());
        let d = dtypes(&half);
        let want = DType::from(precision.dtype());
        assert!(
            !d.is_empty() && d.iter().all(|d| *d == want),
            "{precision}: {d:?}"
        );

        let x = Tensor::<B, 4>::random([4, 3, 8, 8], Distribution::Default, &device);
        let y32 = master.forward(x.clone());
        let y16 = half.forward(x.clone());
        assert_eq!(y16.dtype(), DType::F32);
        let scale = y32.clone().abs().max().into_scalar().max(1e-3);
        let diff = (y32.clone() - y16.clone()).abs().max().into_scalar();
        assert!(
            diff / scale < 0.05,
            "logits differ by {diff} (scale {scale})"
        );

        let g32 = y32.powi_scalar(2).sum().backward();
        let g16 = y16.powi_scalar(2).sum().backward();
        struct Compare<'a> {
            g32: &'a <B as burn::tensor::backend::AutodiffBackend>::Gradients,
            g16: &'a <B as burn::tensor::backend::AutodiffBackend>::Gradients,
            checked: usize,
        }
        impl burn::module::ModuleVisitor<B> for Compare<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let a = p.val().grad(self.g32).expect("f32 gradient");
                let b = p
                    .val()
                    .grad(self.g16)
                    .expect("the 16-bit step reaches the master weight");
                assert_eq!(b.dtype(), DType::F32);
                let (a, b) = (a.flatten::<1>(0, D - 1), b.flatten::<1>(0, D - 1));
                let dot = (a.clone() * b.clone()).sum().into_scalar();
                let norms = a.powi_scalar(2).sum().sqrt().into_scalar()
                    * b.powi_scalar(2).sum().sqrt().into_scalar();
                if norms > 1e-12 {
                    assert!(dot / norms > 0.98, "cosine {}", dot / norms);
                }
                self.checked += 1;
            }
        }
        let mut c = Compare {
            g32: &g32,
            g16: &g16,
            checked: 0,
        };
        master.visit(&mut c);
        assert_eq!(c.checked, dtypes(&master).len());
    }

    /// The attack's view: the gradient with respect to f32 pixels through a 16-bit model is
    /// f32 and its sign agrees with the f32 model's almost everywhere.
    #[test]
    fn the_input_gradient_of_a_half_model_is_f32_with_the_f32_sign() {
        for precision in [Precision::Bf16, Precision::F16] {
            input_gradient_sign_matches_f32(precision);
        }
    }

    fn input_gradient_sign_matches_f32(precision: Precision) {
        let device = Default::default();
        let master = tiny().init::<Flex>(&device);
        materialize(&master);
        let half = precision.cast(master.clone());
        let x = Tensor::<Flex, 4>::random([4, 3, 8, 8], Distribution::Default, &device);
        let grad = |m: &crate::Vit<Flex>| {
            let m = <crate::Vit<B> as AutodiffModule<B>>::from_inner(m.clone());
            let x = Tensor::<B, 4>::from_inner(x.clone()).require_grad();
            let g = m.forward(x.clone()).sum().backward();
            x.grad(&g).expect("input gradient")
        };
        let (g32, g16) = (grad(&master), grad(&half));
        assert_eq!(g16.dtype(), DType::F32);
        let agree = g32.sign().equal(g16.sign()).float().mean().into_scalar();
        assert!(agree > 0.95, "{precision}: sign agreement {agree}");
    }

    #[test]
    fn f32_is_the_identity_and_materialize_keeps_values() {
        let device = Default::default();
        let m = tiny().init::<Flex>(&device);
        materialize(&m);
        let (a, b) = (m.clone(), Precision::F32.cast(m));
        let x = Tensor::<Flex, 4>::random([2, 3, 8, 8], Distribution::Default, &device);
        let d = (a.forward(x.clone()) - b.forward(x))
            .abs()
            .max()
            .into_scalar();
        assert_eq!(d, 0.0);
    }
}
