//! Row and element kernels on `f32` slices, written so that LLVM vectorizes them: no libm
//! calls, no branches, rounding by the 1.5·2²³ trick instead of `round()`. Each slice kernel is
//! compiled three times (AVX-512F, AVX2, baseline) and picks the widest the CPU has at run
//! time. Plain `a * b + c` (Rust never contracts it to an FMA, nor reorders a sum), so every
//! variant gives the same bits and results do not depend on the CPU.
// The unsafe here: calling a `#[target_feature]` variant after checking that the CPU has the
// feature, and the slice kernels passing their (written) output to the `*_into` kernels.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

/// `erf(x)` as `x·P(x²)/Q(x²)` on `[-4, 4]`, clamped to ±1 outside (|1 - erf(4)| < 2e-8).
///
/// A (6, 5) rational fitted by this project (iteratively reweighted least squares on 16,000
/// points of `[0, 4]`, `math.erf` as the target): max |error| 2.2e-8 in f64 arithmetic and
/// 3.4e-7 evaluated in f32 (a few ulp of 1), measured on 2,000,001 points of `[-4.5, 4.5]`.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: [f32; 6] = [
        std::f32::consts::FRAC_2_SQRT_PI,
        0.196_263_28,
        0.053_469_19,
        0.004_004_234,
        0.000_288_047_4,
        1.974_601e-6,
    ];
    const Q: [f32; 6] = [
        1.0,
        0.507_265,
        0.116_482_17,
        0.015_445_579,
        0.001_216_491,
        3.747_886e-5,
    ];
    let x = x.clamp(-4.0, 4.0);
    let z = x * x;
    let p = ((((P[5] * z + P[4]) * z + P[3]) * z + P[2]) * z + P[1]) * z + P[0];
    let q = ((((Q[5] * z + Q[4]) * z + Q[3]) * z + Q[2]) * z + Q[1]) * z + Q[0];
    (x * p / q).clamp(-1.0, 1.0)
}

/// `exp(t)` for `t <= 0` (larger `t` is clamped to 0); below -87 it returns ~1e-38 rather
/// than 0. Relative error under 3e-7 down to t = -80 (below, the result nears f32's subnormal
/// range and loses relative precision): `2^k · e^r` with `|r| <= ln2/2` and a degree-7 Taylor
/// polynomial for `e^r`.
#[inline(always)]
pub fn exp_nonpositive(t: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that k·LN2_HI is exact for |k| < 2^9.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
    let t = t.clamp(-87.0, 0.0);
    let m = t * LOG2E + MAGIC;
    let k = m - MAGIC;
    let r = (t - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // The low mantissa bits of `m` hold k (two's complement); 2^k = (k + 127) << 23.
    let scale = f32::from_bits(m.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23);
    p * scale
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// The standard normal CDF `Φ(x) = 0.5·(1 + erf(x/√2))`.
#[inline(always)]
fn cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// Exact (erf) GELU: `x·Φ(x)`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    x * cdf(x)
}

/// `d/dx gelu(x) = Φ(x) + x·φ(x)`, given `Φ(x)` (so a caller that has it pays one erf).
#[inline(always)]
fn gelu_grad_with_cdf(x: f32, cdf: f32) -> f32 {
    cdf + x * (INV_SQRT_2PI * exp_nonpositive(-0.5 * x * x))
}

/// `d/dx gelu(x)`.
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    gelu_grad_with_cdf(x, cdf(x))
}

/// Lanes of the reductions: sums run as 16 interleaved partial sums (element `i` goes to lane
/// `i % 16`) added in a fixed order at the end, which vectorizes and still gives the same
/// bits on every CPU.
const LANES: usize = 16;

#[inline(always)]
fn fold_lanes(acc: [f32; LANES]) -> f32 {
    let mut a = acc;
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            a[j] += a[j + width];
        }
        width /= 2;
    }
    a[0]
}

/// `Σ f(a[i], b[i])` by [`LANES`] partial sums.
#[inline(always)]
fn sum_lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..LANES {
            acc[j] += f(x[j], y[j]);
        }
    }
    for (j, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        acc[j] += f(x, y);
    }
    fold_lanes(acc)
}

/// `max a[i]` by [`LANES`] partial maxima (max is exact, so any order gives the same value).
#[inline(always)]
fn max_lanes(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let ca = a.chunks_exact(LANES);
    let ra = ca.remainder();
    for x in ca {
        for j in 0..LANES {
            acc[j] = acc[j].max(x[j]);
        }
    }
    for (j, &x) in ra.iter().enumerate() {
        acc[j] = acc[j].max(x);
    }
    acc.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// Defines `pub fn $name(..)` whose body is compiled for AVX-512F, AVX2 and the baseline, and
/// runs the widest variant the CPU supports.
macro_rules! multiversion {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn imp($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn v4($($arg: $ty),*) {
                    imp($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn v3($($arg: $ty),*) {
                    imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { v3($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

/// `s` viewed as memory to be written.
///
/// # Safety
/// Only initialized values may be written through the view (the `*_into` kernels write
/// `f32`s and nothing else), or `s` would hold uninitialized memory after it.
unsafe fn as_unwritten(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the caller's contract keeps `s`
    // initialized.
    unsafe { &mut *(std::ptr::from_mut(s) as *mut [MaybeUninit<f32>]) }
}

/// `out[i] = gelu(x[i])`.
///
/// # Panics
/// If the lengths differ.
pub fn gelu_slice(x: &[f32], out: &mut [f32]) {
    // SAFETY: `gelu_into` writes f32 values only.
    gelu_into(x, unsafe { as_unwritten(out) });
}

/// `out[i] = gelu(x[i])` and `grad[i] = gelu'(x[i])` in one pass (one erf per element).
///
/// # Panics
/// If the lengths differ.
pub fn gelu_with_grad_slice(x: &[f32], out: &mut [f32], grad: &mut [f32]) {
    // SAFETY: `gelu_with_grad_into` writes f32 values only.
    gelu_with_grad_into(x, unsafe { as_unwritten(out) }, unsafe {
        as_unwritten(grad)
    });
}

/// `out[i] = a[i] · b[i]`.
///
/// # Panics
/// If the lengths differ.
pub fn mul_slice(a: &[f32], b: &[f32], out: &mut [f32]) {
    // SAFETY: `mul_into` writes f32 values only.
    mul_into(a, b, unsafe { as_unwritten(out) });
}

multiversion! {
    /// `out[i] = gelu(x[i])` into unwritten memory. Writes every element of `out` (`x` and
    /// `out` must have one length): `fast::buffer` relies on that to hand the buffer out as
    /// written.
    pub(super) fn gelu_into(x: &[f32], out: &mut [MaybeUninit<f32>]) {
        assert_eq!(x.len(), out.len(), "gelu_into: input and output lengths");
        for (o, &v) in out.iter_mut().zip(x) {
            o.write(gelu(v));
        }
    }
}

multiversion! {
    /// `gelu(x[i])` and `gelu'(x[i])` into unwritten memory. Writes every element of `out` and `grad`
    /// (all three of one length): `fast::buffer` relies on that.
    pub(super) fn gelu_with_grad_into(
        x: &[f32],
        out: &mut [MaybeUninit<f32>],
        grad: &mut [MaybeUninit<f32>],
    ) {
        assert!(
            x.len() == out.len() && x.len() == grad.len(),
            "gelu_with_grad_into: input and output lengths"
        );
        for ((o, g), &v) in out.iter_mut().zip(grad.iter_mut()).zip(x) {
            let c = cdf(v);
            o.write(v * c);
            g.write(gelu_grad_with_cdf(v, c));
        }
    }
}

multiversion! {
    /// `out[i] = a[i] · b[i]` into unwritten memory. Writes every element of `out` (all three of one
    /// length): `fast::buffer` relies on that.
    pub(super) fn mul_into(a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>]) {
        assert!(
            a.len() == out.len() && b.len() == out.len(),
            "mul_into: input and output lengths"
        );
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            o.write(x * y);
        }
    }
}

multiversion! {
    /// Row-wise `softmax(scale · m)` of a `[rows, cols]` row-major matrix, in place
    /// (max-subtracted; `scale > 0`).
    pub fn softmax_rows(m: &mut [f32], cols: usize, scale: f32) {
        for row in m.chunks_exact_mut(cols) {
            let max = max_lanes(row);
            for v in row.iter_mut() {
                *v = exp_nonpositive((*v - max) * scale);
            }
            let inv = 1.0 / sum_lanes(row, row, |a, _| a);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

multiversion! {
    /// Backward of [`softmax_rows`], in place: with `p` its output and `dp` the gradient of that
    /// output (both `[rows, cols]`), `dp := p ⊙ (dp - rowsum(p ⊙ dp)) · scale`, the gradient of
    /// the unscaled input.
    pub fn softmax_backward_rows(p: &[f32], dp: &mut [f32], cols: usize, scale: f32) {
        for (pr, dr) in p.chunks_exact(cols).zip(dp.chunks_exact_mut(cols)) {
            let dot = sum_lanes(pr, dr, |a, b| a * b);
            for (d, &pv) in dr.iter_mut().zip(pr) {
                *d = pv * (*d - dot) * scale;
            }
        }
    }
}

multiversion! {
    /// LayerNorm of each row of `x` (`[rows, d]`): writes `y = x̂·γ + β` and the per-row
    /// `1/σ` (biased variance, like PyTorch); `x̂` is written to `xhat`.
    pub fn layer_norm_rows(
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        y: &mut [f32],
        xhat: &mut [f32],
        rstd: &mut [f32],
    ) {
        let d = gamma.len();
        for (((xr, yr), hr), r) in x
            .chunks_exact(d)
            .zip(y.chunks_exact_mut(d))
            .zip(xhat.chunks_exact_mut(d))
            .zip(rstd.iter_mut())
        {
            let mean = sum_lanes(xr, xr, |a, _| a) / d as f32;
            let var = sum_lanes(xr, xr, |a, _| (a - mean) * (a - mean)) / d as f32;
            let s = 1.0 / (var + eps).sqrt();
            *r = s;
            for ((o, h), (&v, (&g, &b))) in yr
                .iter_mut()
                .zip(hr.iter_mut())
                .zip(xr.iter().zip(gamma.iter().zip(beta)))
            {
                let n = (v - mean) * s;
                *h = n;
                *o = n * g + b;
            }
        }
    }
}

multiversion! {
    /// Backward of [`layer_norm_rows`] for a block of rows: writes `dx` and ADDS this block's
    /// `Σ dy·x̂` to `dgamma` and `Σ dy` to `dbeta`.
    pub fn layer_norm_backward_rows(
        dy: &[f32],
        xhat: &[f32],
        rstd: &[f32],
        gamma: &[f32],
        dx: &mut [f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        let d = gamma.len();
        for (((gr, hr), xr), &s) in dy
            .chunks_exact(d)
            .zip(xhat.chunks_exact(d))
            .zip(dx.chunks_exact_mut(d))
            .zip(rstd)
        {
            // dx̂ = dy·γ first (in dx), then the two row means.
            for ((o, &g), &w) in xr.iter_mut().zip(gr).zip(gamma) {
                *o = g * w;
            }
            let mean_g = sum_lanes(xr, xr, |a, _| a) / d as f32;
            let mean_gh = sum_lanes(xr, hr, |a, b| a * b) / d as f32;
            for (o, &h) in xr.iter_mut().zip(hr) {
                *o = s * (*o - mean_g - h * mean_gh);
            }
            for ((dg, db), (&g, &h)) in dgamma
                .iter_mut()
                .zip(dbeta.iter_mut())
                .zip(gr.iter().zip(hr))
            {
                *dg += g * h;
                *db += g;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference erf in f64: the Maclaurin series for |x| < 3, the asymptotic erfc beyond.
    fn erf64(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut term = x;
            let mut sum = x;
            let x2 = x * x;
            for n in 1..200 {
                term *= -x2 / n as f64;
                let add = term / (2 * n + 1) as f64;
                sum += add;
                if add.abs() < 1e-17 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(x) ~ exp(-x²)/(x√π) · (1 - 1/(2x²) + 3/(4x⁴) - 15/(8x⁶)), < 1e-9 here.
            let x2 = x.abs() * x.abs();
            let tail = (-x2).exp() / (x.abs() * std::f64::consts::PI.sqrt())
                * (1.0 - 1.0 / (2.0 * x2) + 3.0 / (4.0 * x2 * x2) - 15.0 / (8.0 * x2 * x2 * x2));
            (1.0 - tail).copysign(x)
        }
    }

    #[test]
    fn erf_is_within_4e7_of_the_series() {
        let mut worst = 0.0f64;
        for i in -45_000..=45_000 {
            let x = i as f64 / 10_000.0;
            let err = (erf(x as f32) as f64 - erf64(x)).abs();
            worst = worst.max(err);
        }
        assert!(worst < 4e-7, "max |erf error| {worst}");
    }

    #[test]
    fn exp_is_within_3e7_relative() {
        let mut worst = 0.0f64;
        for i in 0..=80_000u32 {
            let t = -(i as f32) / 1000.0;
            let e = (t as f64).exp();
            let err = ((exp_nonpositive(t) as f64) - e).abs() / e;
            worst = worst.max(err);
        }
        assert!(worst < 3e-7, "max relative exp error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-200.0) < 1e-37);
    }

    #[test]
    fn gelu_grad_matches_finite_differences() {
        for i in -60..=60 {
            let x = i as f64 / 10.0;
            let h = 1e-3;
            let g = |v: f64| 0.5 * v * (1.0 + erf64(v / std::f64::consts::SQRT_2));
            let fd = (g(x + h) - g(x - h)) / (2.0 * h);
            let ours = gelu_grad(x as f32) as f64;
            assert!((ours - fd).abs() < 2e-6, "x = {x}: {ours} vs {fd}");
        }
    }

    #[test]
    fn slice_kernels_equal_the_scalar_functions() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 37.0).collect();
        let g: Vec<f32> = (0..1000)
            .map(|i| ((i * 7) % 13) as f32 / 5.0 - 1.0)
            .collect();
        let mut y = vec![0.0; 1000];
        gelu_slice(&x, &mut y);
        let (mut y2, mut dg) = (vec![0.0; 1000], vec![0.0; 1000]);
        gelu_with_grad_slice(&x, &mut y2, &mut dg);
        let mut d = vec![0.0; 1000];
        mul_slice(&g, &dg, &mut d);
        for i in 0..1000 {
            assert_eq!(y[i].to_bits(), gelu(x[i]).to_bits());
            assert_eq!(y2[i].to_bits(), y[i].to_bits());
            assert_eq!(dg[i].to_bits(), gelu_grad(x[i]).to_bits());
            assert_eq!(d[i].to_bits(), (g[i] * gelu_grad(x[i])).to_bits());
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_backward_matches_finite_differences() {
        let cols = 7;
        let logits: Vec<f32> = (0..21).map(|i| ((i * 5) % 11) as f32 / 3.0 - 1.5).collect();
        let mut p = logits.clone();
        softmax_rows(&mut p, cols, 1.0);
        for row in p.chunks(cols) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // loss = Σ w ⊙ softmax(logits): d loss / d logits = p ⊙ (w - rowsum(p ⊙ w)).
        let w: Vec<f32> = (0..21).map(|i| (i % 4) as f32 - 1.0).collect();
        let mut d = w.clone();
        softmax_backward_rows(&p, &mut d, cols, 1.0);
        let loss = |l: &[f32]| {
            let mut q = l.to_vec();
            softmax_rows(&mut q, cols, 1.0);
            q.iter().zip(&w).map(|(a, b)| (a * b) as f64).sum::<f64>()
        };
        for i in 0..21 {
            let mut up = logits.clone();
            up[i] += 1e-2;
            let mut dn = logits.clone();
            dn[i] -= 1e-2;
            let fd = (loss(&up) - loss(&dn)) / 2e-2;
            assert!((d[i] as f64 - fd).abs() < 1e-3, "{i}: {} vs {fd}", d[i]);
        }
    }
}
