//! Fused CPU kernels for the three places where burn 0.21's Flex backend spends most of a ViT
//! step outside matmul: the exact GELU, LayerNorm and the attention core (scores, softmax,
//! weighted sum, head split and merge).
//!
//! Each function takes any backend. On `Flex` and `Autodiff<Flex>` with `f32` tensors it runs
//! one fused, multi-threaded kernel forward and (under autodiff) one fused backward, instead of
//! burn's composite of 5–15 single-threaded element-wise ops, strided copies and zero-filled
//! slice gradients. On every other backend (CUDA, ...) it is exactly burn's own op.
//!
//! Measured with `advsoup bench --preset tiny32`: see crates/bench/README.md. The fused forms
//! agree with burn's ops within 1e-5 (tests below); the exact-GELU `erf` is a rational
//! approximation within 4e-7 of erf ([`math::erf`]).
//!
//! The switch is process-wide and works the same for every user of the crate: the environment
//! variable `ADVSOUP_REFERENCE_KERNELS=1` (read once, at the first fused call) or
//! [`set_enabled`]`(false)` in code switches every call back to burn's ops (for A/B
//! measurements, or to rule the kernels out when something looks wrong).

mod buffer;
mod flex;
mod gemm;
pub mod math;

use std::any::Any;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::{Autodiff, Flex};
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::{DType, FloatDType};

type Ad = Autodiff<Flex>;

/// The environment variable that turns the fused kernels off when set to anything but `0`.
pub const REFERENCE_KERNELS_ENV: &str = "ADVSOUP_REFERENCE_KERNELS";

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

/// `UNSET` until the first [`enabled`] (which reads [`REFERENCE_KERNELS_ENV`]) or
/// [`set_enabled`].
static STATE: AtomicU8 = AtomicU8::new(UNSET);

/// Turns the fused kernels on (the default) or off process-wide; off, every function of this
/// module is burn's composite op. Overrides [`REFERENCE_KERNELS_ENV`].
pub fn set_enabled(on: bool) {
    STATE.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

/// Whether the fused kernels are on: [`set_enabled`]'s last value, else on unless
/// [`REFERENCE_KERNELS_ENV`] is set to anything but `0`.
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = on_for_env(std::env::var_os(REFERENCE_KERNELS_ENV).as_deref());
            // A concurrent `set_enabled` wins over the environment.
            let _ = STATE.compare_exchange(
                UNSET,
                if on { ON } else { OFF },
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            STATE.load(Ordering::Relaxed) == ON
        }
    }
}

/// Whether a value of [`REFERENCE_KERNELS_ENV`] leaves the fused kernels on.
fn on_for_env(value: Option<&OsStr>) -> bool {
    value.is_none_or(|v| v == "0")
}

/// `t` as a `U` when `T` and `U` are the same type (how a generic `Tensor<B, D>` is found to be
/// a `Tensor<Flex, D>`), else `t` back.
fn cast<T: 'static, U: 'static>(t: T) -> Result<U, T> {
    let boxed: Box<dyn Any> = Box::new(t);
    match boxed.downcast::<U>() {
        Ok(u) => Ok(*u),
        Err(boxed) => match boxed.downcast::<T>() {
            Ok(t) => Err(*t),
            Err(_) => unreachable!("a box holds the type it was given"),
        },
    }
}

/// The inverse of a successful [`cast`].
fn uncast<T: 'static, U: 'static>(t: T) -> U {
    match cast::<T, U>(t) {
        Ok(u) => u,
        Err(_) => unreachable!("uncast is only called with U the type cast came from"),
    }
}

/// Exact (erf) GELU, `x·Φ(x)`: burn's `activation::gelu`, fused on Flex.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if !enabled() || x.dtype() != DType::F32 {
        return activation::gelu(x);
    }
    let x = match cast::<_, Tensor<Ad, D>>(x) {
        Ok(x) => return uncast(flex::gelu_autodiff(x)),
        Err(x) => x,
    };
    match cast::<_, Tensor<Flex, D>>(x) {
        Ok(x) => uncast(flex::gelu_inner(x)),
        Err(x) => activation::gelu(x),
    }
}

/// `(x − mean)·inv_std` with `mean` and `inv_std` of shape `[1, channels, 1, 1]` (the pixel
/// normalization). On Flex and `Autodiff<Flex>` one parallel pass; burn-flex 0.21 walks a
/// broadcast operand element by element on one thread (12% of the default model's forward).
/// Each element is the same two f32 operations as burn's `sub` then `mul`, and the input
/// gradient the same one multiply, so results are theirs bit for bit. With `mean` or `inv_std`
/// on the autodiff graph, and on other backends, it is burn's ops.
///
/// # Shapes
/// - x: `[batch, channels, height, width]` -> same
pub fn normalize<B: Backend>(
    x: Tensor<B, 4>,
    mean: Tensor<B, 4>,
    inv_std: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let fused = enabled()
        && n * h * w > 0
        && mean.dims() == [1, c, 1, 1]
        && inv_std.dims() == [1, c, 1, 1]
        && [x.dtype(), mean.dtype(), inv_std.dtype()] == [DType::F32; 3];
    if !fused {
        return (x - mean) * inv_std;
    }
    let x = match cast::<_, Tensor<Ad, 4>>(x) {
        Ok(x) => {
            let (mean, inv_std): (Tensor<Ad, 4>, Tensor<Ad, 4>) = (uncast(mean), uncast(inv_std));
            // Statistics on the graph are left to burn's ops, which differentiate them.
            return uncast(if flex::is_tracked(&mean) || flex::is_tracked(&inv_std) {
                (x - mean) * inv_std
            } else {
                flex::normalize_autodiff(x, mean, inv_std)
            });
        }
        Err(x) => x,
    };
    match cast::<_, Tensor<Flex, 4>>(x) {
        Ok(x) => uncast(flex::normalize_inner(x, uncast(mean), uncast(inv_std))),
        Err(x) => (x - mean) * inv_std,
    }
}

/// `x + pos` with `pos` of shape `[1, tokens, dim]` (the position embedding), in one parallel
/// pass on Flex and `Autodiff<Flex>`, bit for bit burn's broadcast `add` (see [`normalize`]);
/// the position gradient sums the samples in burn-flex's order.
///
/// # Shapes
/// - x: `[batch, tokens, dim]` -> same
pub fn add_positions<B: Backend>(x: Tensor<B, 3>, pos: Tensor<B, 3>) -> Tensor<B, 3> {
    let [n, t, d] = x.dims();
    let fused = enabled()
        && n * t * d > 0
        && pos.dims() == [1, t, d]
        && [x.dtype(), pos.dtype()] == [DType::F32; 2];
    if !fused {
        return x + pos;
    }
    let x = match cast::<_, Tensor<Ad, 3>>(x) {
        Ok(x) => return uncast(flex::add_positions_autodiff(x, uncast(pos))),
        Err(x) => x,
    };
    match cast::<_, Tensor<Flex, 3>>(x) {
        Ok(x) => uncast(flex::add_positions_inner(x, uncast(pos))),
        Err(x) => x + pos,
    }
}

/// `linear.forward(x)` on `[batch, tokens, in]`, fused on Flex: one gemm forward (onto the
/// bias rows), one gemm per gradient backward, parameter gradients only when tracked.
///
/// # Shapes
/// - x: `[batch, tokens, in]` -> `[batch, tokens, out]`
pub fn linear<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let reference = |x: Tensor<B, 3>| {
        let [n, t, d] = x.dims();
        let y = linear.forward(x.reshape([n * t, d]));
        let [_, out] = y.dims();
        y.reshape([n, t, out])
    };
    let Some(bias) = linear.bias.as_ref() else {
        return reference(x);
    };
    let (weight, bias) = (linear.weight.val(), bias.val());
    if !enabled() || [x.dtype(), weight.dtype(), bias.dtype()] != [DType::F32; 3] {
        return reference(x);
    }
    let x = match cast::<_, Tensor<Ad, 3>>(x) {
        Ok(x) => return uncast(flex::linear_autodiff(x, uncast(weight), uncast(bias))),
        Err(x) => x,
    };
    match cast::<_, Tensor<Flex, 3>>(x) {
        Ok(x) => uncast(flex::linear_inner(x, uncast(weight), uncast(bias))),
        Err(x) => reference(x),
    }
}

/// `norm.forward(x)` (LayerNorm over the last dim, biased variance), fused on Flex.
///
/// # Shapes
/// - x: `[batch, tokens, dim]` -> same
pub fn layer_norm<B: Backend>(norm: &LayerNorm<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    if crate::precision::is_half(x.dtype()) {
        return layer_norm_f32(norm, x);
    }
    let Some(beta) = norm.beta.as_ref() else {
        return norm.forward(x);
    };
    if !enabled() || x.dtype() != DType::F32 {
        return norm.forward(x);
    }
    let (gamma, beta) = (norm.gamma.val(), beta.val());
    if gamma.dtype() != DType::F32 || beta.dtype() != DType::F32 {
        return norm.forward(x);
    }
    let Some(eps) = epsilon_of(norm) else {
        return norm.forward(x);
    };
    let x = match cast::<_, Tensor<Ad, 3>>(x) {
        Ok(x) => {
            let (g, b) = (uncast(gamma), uncast(beta));
            return uncast(flex::layer_norm_autodiff(x, g, b, eps));
        }
        Err(x) => x,
    };
    match cast::<_, Tensor<Flex, 3>>(x) {
        Ok(x) => uncast(flex::layer_norm_inner(x, uncast(gamma), uncast(beta), eps)),
        Err(x) => norm.forward(x),
    }
}

/// LayerNorm of a 16-bit `x` with statistics and affine in f32, returned in `x`'s dtype (mixed
/// precision keeps normalization in f32, as autocast does).
fn layer_norm_f32<B: Backend>(norm: &LayerNorm<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let Some(eps) = epsilon_of(norm) else {
        return norm.forward(x);
    };
    let dtype = x.dtype();
    let d = x.dims()[2];
    let x = x.cast(FloatDType::F32);
    let mean = x.clone().mean_dim(2);
    let centered = x - mean;
    let var = centered.clone().powi_scalar(2).mean_dim(2);
    let y = centered / (var + eps).sqrt();
    let y = y * norm.gamma.val().cast(FloatDType::F32).reshape([1, 1, d]);
    let y = match &norm.beta {
        Some(beta) => y + beta.val().cast(FloatDType::F32).reshape([1, 1, d]),
        None => y,
    };
    y.cast(dtype)
}

/// ε of a LayerNorm. burn 0.21 keeps the field private but shows it in the module's Display
/// (`epsilon: 0.000001`), written with Rust's shortest round-trip float format, so parsing it
/// back gives the exact value; `None` if the format ever changes (the caller then uses burn's
/// op).
fn epsilon_of<B: Backend>(norm: &LayerNorm<B>) -> Option<f64> {
    let text = norm.to_string();
    let rest = &text[text.find("epsilon: ")? + "epsilon: ".len()..];
    let end = rest
        .find(|c: char| c == ',' || c == '}' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Multi-head attention core on the fused qkv projection: splits `qkv` into q, k and v with
/// `heads` heads, computes `softmax(q·kᵀ / √head_dim)·v` per head and merges the heads.
///
/// # Shapes
/// - qkv: `[batch, tokens, 3 * dim]` (q, k, v, each head-major: timm's layout) ->
///   `[batch, tokens, dim]`
pub fn attention<B: Backend>(qkv: Tensor<B, 3>, heads: usize) -> Tensor<B, 3> {
    if !enabled() || qkv.dtype() != DType::F32 {
        return attention_reference(qkv, heads);
    }
    let qkv = match cast::<_, Tensor<Ad, 3>>(qkv) {
        Ok(x) => return uncast(flex::attention_autodiff(x, heads)),
        Err(x) => x,
    };
    match cast::<_, Tensor<Flex, 3>>(qkv) {
        Ok(x) => uncast(flex::attention_inner(x, heads)),
        Err(x) => attention_reference(x, heads),
    }
}

/// [`attention`] with burn's ops (any backend).
pub fn attention_reference<B: Backend>(qkv: Tensor<B, 3>, heads: usize) -> Tensor<B, 3> {
    let [n, t, d3] = qkv.dims();
    let d = d3 / 3;
    let hd = d / heads;
    // q, k and v stay strided 5-D views of the qkv output (`[1, n, heads, tokens, hd]`):
    // matmul reads them in place, while squeezing them to 4-D or scaling q would copy them
    // with burn-flex's slow N-D strided copy. The scale goes on the (contiguous) scores.
    let qkv = qkv.reshape([n, t, 3, heads, hd]).permute([2, 0, 3, 1, 4]);
    let q = qkv.clone().narrow(0, 0, 1);
    let k = qkv.clone().narrow(0, 1, 1);
    let v = qkv.narrow(0, 2, 1);
    let scores = q
        .matmul(k.swap_dims(3, 4))
        .mul_scalar((hd as f64).powf(-0.5));
    // 16-bit scores take their softmax in f32 (mixed precision), then go back.
    let dtype = scores.dtype();
    let attn = if crate::precision::is_half(dtype) {
        activation::softmax(scores.cast(FloatDType::F32), 4).cast(dtype)
    } else {
        activation::softmax(scores, 4)
    };
    attn.matmul(v).permute([1, 3, 0, 2, 4]).reshape([n, t, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{AutodiffModule, Module, Param};
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Distribution, Tolerance};

    #[test]
    fn the_environment_switch_reads_zero_as_on_and_anything_else_as_off() {
        assert!(on_for_env(None));
        assert!(on_for_env(Some(OsStr::new("0"))));
        assert!(!on_for_env(Some(OsStr::new("1"))));
        assert!(!on_for_env(Some(OsStr::new(""))));
        assert!(!on_for_env(Some(OsStr::new("yes"))));
    }

    fn seeded<B: Backend>(seed: u64) -> B::Device {
        let device = Default::default();
        B::seed(&device, seed);
        device
    }

    /// `f(x)` and the gradient of `Σ f(x) ⊙ w` with respect to `x`. The references are burn's
    /// ops called directly (not through [`set_enabled`], which is process-wide while tests run
    /// in parallel).
    fn grads_of<const D: usize>(
        x: Tensor<Ad, D>,
        f: impl Fn(Tensor<Ad, D>) -> Tensor<Ad, D>,
        w: Tensor<Ad, D>,
    ) -> (Tensor<Flex, D>, Tensor<Flex, D>) {
        let x = x.require_grad();
        let y = f(x.clone());
        let grads = (y.clone() * w).sum().backward();
        (y.inner(), x.grad(&grads).expect("x requires grad"))
    }

    #[test]
    fn gelu_matches_burn_forward_and_backward() {
        let device = seeded::<Ad>(1);
        let x = Tensor::<Ad, 3>::random([3, 5, 70], Distribution::Normal(0.0, 3.0), &device);
        let w = Tensor::<Ad, 3>::random([3, 5, 70], Distribution::Default, &device);
        let (y, g) = grads_of(x.clone(), flex::gelu_autodiff, w.clone());
        let (y_ref, g_ref) = grads_of(x, activation::gelu, w);
        y.into_data()
            .assert_approx_eq::<f32>(&y_ref.into_data(), Tolerance::absolute(2e-6));
        g.into_data()
            .assert_approx_eq::<f32>(&g_ref.into_data(), Tolerance::absolute(2e-6));
    }

    #[test]
    fn gelu_on_the_inner_backend_matches_burn() {
        let device = seeded::<Flex>(2);
        let x = Tensor::<Flex, 2>::random([33, 129], Distribution::Normal(0.0, 2.0), &device);
        let y = flex::gelu_inner(x.clone());
        y.into_data()
            .assert_approx_eq::<f32>(&activation::gelu(x).into_data(), Tolerance::absolute(2e-6));
    }

    #[test]
    fn layer_norm_matches_burn_with_parameter_gradients() {
        let device = seeded::<Ad>(3);
        let mut norm = LayerNormConfig::new(24).init::<Ad>(&device);
        let normal = |mean| Tensor::<Ad, 1>::random([24], Distribution::Normal(mean, 0.5), &device);
        norm.gamma = Param::from_tensor(normal(1.0));
        norm.beta = Some(Param::from_tensor(normal(0.0)));
        let x = Tensor::<Ad, 3>::random([4, 9, 24], Distribution::Normal(1.0, 2.0), &device)
            .require_grad();
        let w = Tensor::<Ad, 3>::random([4, 9, 24], Distribution::Default, &device);
        let beta = norm.beta.as_ref().expect("LayerNorm has a beta").val();
        let run = |y: Tensor<Ad, 3>| {
            let grads = (y.clone() * w.clone()).sum().backward();
            (
                y.inner(),
                x.grad(&grads).expect("x"),
                norm.gamma.val().grad(&grads).expect("gamma"),
                beta.grad(&grads).expect("beta"),
            )
        };
        let fused = run(flex::layer_norm_autodiff(
            x.clone(),
            norm.gamma.val(),
            beta.clone(),
            epsilon_of(&norm).expect("epsilon"),
        ));
        let reference = run(norm.forward(x.clone()));
        let tol = Tolerance::absolute(1e-5);
        fused
            .0
            .into_data()
            .assert_approx_eq::<f32>(&reference.0.into_data(), tol);
        fused
            .1
            .into_data()
            .assert_approx_eq::<f32>(&reference.1.into_data(), tol);
        fused
            .2
            .into_data()
            .assert_approx_eq::<f32>(&reference.2.into_data(), tol);
        fused
            .3
            .into_data()
            .assert_approx_eq::<f32>(&reference.3.into_data(), tol);
    }

    #[test]
    fn attention_matches_the_reference_forward_and_backward() {
        let device = seeded::<Ad>(4);
        let (n, t, d, h) = (3, 7, 12, 3);
        let x = Tensor::<Ad, 3>::random([n, t, 3 * d], Distribution::Normal(0.0, 1.5), &device);
        let w = Tensor::<Ad, 3>::random([n, t, d], Distribution::Default, &device);
        let (y, g) = grads_of(x.clone(), |x| flex::attention_autodiff(x, h), w.clone());
        let (y_ref, g_ref) = grads_of(x.clone(), |x| attention_reference(x, h), w);
        let tol = Tolerance::absolute(1e-5);
        y.into_data()
            .assert_approx_eq::<f32>(&y_ref.clone().into_data(), tol);
        g.into_data()
            .assert_approx_eq::<f32>(&g_ref.into_data(), tol);
        let inner = flex::attention_inner(x.inner(), h);
        inner
            .into_data()
            .assert_approx_eq::<f32>(&y_ref.into_data(), tol);
    }

    #[test]
    fn untracked_inputs_give_no_gradient_and_the_same_values() {
        // Parameters frozen (the attack's copy): the op must still compute, without a graph.
        let device = seeded::<Ad>(5);
        let x = Tensor::<Ad, 3>::random([2, 5, 12], Distribution::Default, &device);
        let y = flex::attention_autodiff(x.clone(), 2);
        y.into_data().assert_approx_eq::<f32>(
            &attention_reference(x, 2).into_data(),
            Tolerance::absolute(1e-5),
        );
    }

    #[test]
    fn linear_matches_burn_with_every_gradient_combination() {
        use burn::nn::LinearConfig;
        let device = seeded::<Ad>(7);
        let lin = LinearConfig::new(10, 6).init::<Ad>(&device);
        let w = Tensor::<Ad, 3>::random([3, 5, 6], Distribution::Default, &device);
        let reference = |l: &Linear<Ad>, x: Tensor<Ad, 3>| {
            let y = l.forward(x.reshape([15, 10]));
            y.reshape([3, 5, 6])
        };
        for (x_grad, params_grad) in [(true, true), (true, false), (false, true)] {
            let l = if params_grad {
                lin.clone()
            } else {
                lin.clone().no_grad()
            };
            let x = Tensor::<Ad, 3>::random([3, 5, 10], Distribution::Normal(0.0, 2.0), &device);
            let x = if x_grad { x.require_grad() } else { x };
            let bias = l.bias.as_ref().expect("bias").val();
            let run = |y: Tensor<Ad, 3>| {
                let grads = (y.clone() * w.clone()).sum().backward();
                (
                    y.inner(),
                    x.grad(&grads),
                    l.weight.val().grad(&grads),
                    bias.grad(&grads),
                )
            };
            let fused = run(flex::linear_autodiff(
                x.clone(),
                l.weight.val(),
                bias.clone(),
            ));
            let want = run(reference(&l, x.clone()));
            let tol = Tolerance::absolute(1e-5);
            fused
                .0
                .into_data()
                .assert_approx_eq::<f32>(&want.0.into_data(), tol);
            assert_eq!(fused.1.is_some(), x_grad);
            assert_eq!(fused.2.is_some(), params_grad);
            assert_eq!(fused.3.is_some(), params_grad);
            let pairs = [
                (
                    fused.1.map(|t| t.into_data()),
                    want.1.map(|t| t.into_data()),
                ),
                (
                    fused.2.map(|t| t.into_data()),
                    want.2.map(|t| t.into_data()),
                ),
                (
                    fused.3.map(|t| t.into_data()),
                    want.3.map(|t| t.into_data()),
                ),
            ];
            for pair in pairs {
                match pair {
                    (Some(a), Some(b)) => a.assert_approx_eq::<f32>(&b, tol),
                    (None, None) => {}
                    _ => panic!("the fused op and burn's disagree on which gradients exist"),
                }
            }
        }
        let x = Tensor::<Flex, 3>::random([2, 3, 10], Distribution::Default, &device);
        let inner = lin.valid();
        flex::linear_inner(
            x.clone(),
            inner.weight.val(),
            inner.bias.clone().expect("b").val(),
        )
        .into_data()
        .assert_approx_eq::<f32>(&inner.forward(x).into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn normalize_and_position_add_are_burns_broadcast_ops_bit_for_bit() {
        let device = seeded::<Flex>(8);
        let x = Tensor::<Flex, 4>::random([3, 2, 5, 4], Distribution::Default, &device);
        let mean = Tensor::<Flex, 4>::from_floats([[[[0.3]], [[0.6]]]], &device);
        let inv_std = Tensor::<Flex, 4>::from_floats([[[[4.1]], [[2.7]]]], &device);
        // a non-contiguous input too (the fused path makes it contiguous first)
        let strided = x.clone().swap_dims(2, 3);
        for x in [x.clone(), strided] {
            let want = (x.clone() - mean.clone()) * inv_std.clone();
            let got = normalize(x.clone(), mean.clone(), inv_std.clone());
            assert_eq!(got.into_data(), want.into_data());
            assert_eq!(
                flex::normalize_inner(x.clone(), mean.clone(), inv_std.clone()).into_data(),
                ((x - mean.clone()) * inv_std.clone()).into_data()
            );
        }
        let x = Tensor::<Flex, 3>::random([4, 5, 6], Distribution::Normal(0.0, 3.0), &device);
        let pos = Tensor::<Flex, 3>::random([1, 5, 6], Distribution::Normal(0.0, 3.0), &device);
        for x in [x.clone(), x.clone().slice([0..4, 1..6, 0..6])] {
            let pos = pos.clone().slice([0..1, 0..x.dims()[1], 0..6]);
            let want = (x.clone() + pos.clone()).into_data();
            assert_eq!(add_positions(x.clone(), pos.clone()).into_data(), want);
            assert_eq!(flex::add_positions_inner(x, pos).into_data(), want);
        }
        // a broadcast of another shape is burn's op
        let row = Tensor::<Flex, 3>::random([1, 1, 6], Distribution::Default, &device);
        let x = Tensor::<Flex, 3>::random([2, 5, 6], Distribution::Default, &device);
        assert_eq!(
            add_positions(x.clone(), row.clone()).into_data(),
            (x + row).into_data()
        );
    }

    #[test]
    fn normalize_and_position_add_under_autodiff_are_burns_ops_bit_for_bit() {
        // Values and every gradient equal burn's broadcast ops exactly: the position gradient
        // sums 16 samples in burn-flex's order, over more than one parallel block of elements.
        let device = seeded::<Ad>(9);
        let normal = |dims: [usize; 3]| {
            Tensor::<Ad, 3>::random(dims, Distribution::Normal(0.0, 3.0), &device)
        };
        let (x, pos, w) = (
            normal([16, 65, 300]),
            normal([1, 65, 300]),
            normal([16, 65, 300]),
        );
        for (x_grad, pos_grad) in [(true, true), (false, true), (true, false)] {
            let x = if x_grad {
                x.clone().require_grad()
            } else {
                x.clone()
            };
            let pos = if pos_grad {
                pos.clone().require_grad()
            } else {
                pos.clone()
            };
            let run = |y: Tensor<Ad, 3>| {
                let grads = (y.clone() * w.clone()).sum().backward();
                let grad = |t: &Tensor<Ad, 3>| t.grad(&grads).map(|g| g.into_data());
                (y.inner().into_data(), grad(&x), grad(&pos))
            };
            let fused = run(flex::add_positions_autodiff(x.clone(), pos.clone()));
            assert_eq!(fused, run(x.clone() + pos.clone()));
            assert_eq!((fused.1.is_some(), fused.2.is_some()), (x_grad, pos_grad));
        }

        let x = Tensor::<Ad, 4>::random([5, 3, 7, 6], Distribution::Default, &device);
        let w = Tensor::<Ad, 4>::random([5, 3, 7, 6], Distribution::Normal(0.0, 2.0), &device);
        let mean = Tensor::<Ad, 4>::from_floats([[[[0.49]], [[0.48]], [[0.45]]]], &device);
        let inv_std = Tensor::<Ad, 4>::from_floats([[[[4.05]], [[4.11]], [[3.82]]]], &device);
        let run = |x: &Tensor<Ad, 4>, y: Tensor<Ad, 4>| {
            let grads = (y.clone() * w.clone()).sum().backward();
            (y.inner().into_data(), x.grad(&grads).map(|g| g.into_data()))
        };
        let x = x.require_grad();
        assert!(!flex::is_tracked(&mean) && !flex::is_tracked(&inv_std));
        let fused = run(
            &x,
            flex::normalize_autodiff(x.clone(), mean.clone(), inv_std.clone()),
        );
        assert!(fused.1.is_some());
        assert_eq!(
            fused,
            run(&x, normalize(x.clone(), mean.clone(), inv_std.clone()))
        );
        assert_eq!(fused, run(&x, (x.clone() - mean.clone()) * inv_std.clone()));
        // a tracked statistic is left to burn's ops, which differentiate it
        let tracked = inv_std.clone().require_grad();
        assert!(flex::is_tracked(&tracked));
        let via_generic = normalize(x.clone(), mean.clone(), tracked.clone());
        let grads = via_generic.sum().backward();
        assert!(tracked.grad(&grads).is_some());
    }

    #[test]
    fn epsilon_is_read_back_exactly() {
        let device = Default::default();
        for eps in [1e-6, 1e-5, 1e-12, 0.1, 3.3e-7] {
            let norm = LayerNormConfig::new(5)
                .with_epsilon(eps)
                .init::<Flex>(&device);
            assert_eq!(epsilon_of(&norm), Some(eps), "{norm}");
        }
    }

    #[test]
    fn generic_entry_points_take_the_fused_path_on_flex() {
        // Through the generic functions, Flex and Autodiff<Flex> must reach the fused kernels:
        // the results equal those kernels bit for bit (burn's own ops round differently, e.g.
        // libm's erf against the rational one), and burn's ops within tolerance.
        let device = seeded::<Flex>(6);
        let x = Tensor::<Flex, 3>::random([2, 4, 9], Distribution::Normal(0.0, 2.0), &device);
        let via_generic = gelu(x.clone()).into_data();
        assert_eq!(via_generic, flex::gelu_inner(x.clone()).into_data());
        via_generic.assert_approx_eq::<f32>(
            &activation::gelu(x.clone()).into_data(),
            Tolerance::absolute(2e-6),
        );
        let xa = Tensor::<Ad, 3>::from_inner(x.clone());
        assert_eq!(
            gelu(xa.clone()).into_data(),
            flex::gelu_autodiff(xa).into_data()
        );
        let norm = LayerNormConfig::new(9).init::<Flex>(&device);
        let (gamma, beta) = (norm.gamma.val(), norm.beta.as_ref().expect("beta").val());
        let via_generic = layer_norm(&norm, x.clone()).into_data();
        assert_eq!(
            via_generic,
            flex::layer_norm_inner(x.clone(), gamma, beta, 1e-5).into_data()
        );
        via_generic
            .assert_approx_eq::<f32>(&norm.forward(x).into_data(), Tolerance::absolute(1e-5));
    }
}
