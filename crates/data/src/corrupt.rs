//! Common corruptions after Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to
//! Common Corruptions and Perturbations" (ICLR 2019) — the ImageNet-C / CIFAR-10-C recipes.
//!
//! 14 of the 15 ImageNet-C corruptions are implemented (all but frost, which needs the
//! original frost photographs), at severities 1..=5, with the CIFAR-10-C parameters (made for
//! 32x32 images; they also suit 28x28). Every function maps a `[C, H, W]` image in [0, 1] to
//! one in [0, 1], works for 1 and 3 channels, and is deterministic per `(seed, sample index)`:
//! the random draws do not depend on the severity, so higher severities scale the same noise
//! realisation. Differences from the Python reference, all deliberate:
//! - noise, blur and JPEG follow the reference formulas; motion blur uses a one-sided Gaussian
//!   streak like ImageMagick's `motion_blur`; snow uses the same streak for its flakes;
//! - brightness adds to HSV value by scaling RGB (exactly the HSV round trip);
//! - elastic transform is a smooth random displacement field (Simard et al. 2003) whose
//!   amplitude grows with severity (the reference's affine part is left out, so the change is
//!   monotone in severity);
//! - glass blur uses the ImageNet-C parameters (the CIFAR-10-C ones are not monotone);
//! - grayscale images use their single channel where the reference converts to gray.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result, io_err};
use crate::idx::{load_idx_pair, read_idx, write_idx};
use crate::rng::Rng;

/// One corruption type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Corruption {
    /// Additive Gaussian noise.
    GaussianNoise,
    /// Poisson (shot) noise.
    ShotNoise,
    /// Salt-and-pepper noise.
    ImpulseNoise,
    /// Blur with an anti-aliased disk (out-of-focus lens).
    DefocusBlur,
    /// Gaussian blur + local pixel shuffling + Gaussian blur (frosted glass).
    GlassBlur,
    /// Directional streak at a random angle.
    MotionBlur,
    /// Average of zoomed-in copies.
    ZoomBlur,
    /// Snow flakes (thresholded noise, streaked) over a brightened image.
    Snow,
    /// Plasma-fractal fog.
    Fog,
    /// Brightness increase (HSV value).
    Brightness,
    /// Contrast reduction.
    Contrast,
    /// Elastic deformation.
    ElasticTransform,
    /// Down- then up-sampling.
    Pixelate,
    /// JPEG compression artefacts (via the `image` crate's encoder).
    JpegCompression,
}

impl Corruption {
    /// All implemented corruptions, in ImageNet-C order.
    pub const ALL: [Corruption; 14] = [
        Self::GaussianNoise,
        Self::ShotNoise,
        Self::ImpulseNoise,
        Self::DefocusBlur,
        Self::GlassBlur,
        Self::MotionBlur,
        Self::ZoomBlur,
        Self::Snow,
        Self::Fog,
        Self::Brightness,
        Self::Contrast,
        Self::ElasticTransform,
        Self::Pixelate,
        Self::JpegCompression,
    ];

    /// The ImageNet-C name (`gaussian_noise`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::GaussianNoise => "gaussian_noise",
            Self::ShotNoise => "shot_noise",
            Self::ImpulseNoise => "impulse_noise",
            Self::DefocusBlur => "defocus_blur",
            Self::GlassBlur => "glass_blur",
            Self::MotionBlur => "motion_blur",
            Self::ZoomBlur => "zoom_blur",
            Self::Snow => "snow",
            Self::Fog => "fog",
            Self::Brightness => "brightness",
            Self::Contrast => "contrast",
            Self::ElasticTransform => "elastic_transform",
            Self::Pixelate => "pixelate",
            Self::JpegCompression => "jpeg_compression",
        }
    }

    /// Apply at `severity` (1..=5) to one `[C, H, W]` image in [0, 1]; `seed` and `index` (the
    /// sample's index) fix the random draws.
    ///
    /// # Panics
    /// When `severity` is not in 1..=5 or `image.len()` does not match `shape` (contracts; use
    /// [`parse_severities`] on user input).
    pub fn apply(
        self,
        image: &[f32],
        shape: [usize; 3],
        severity: u8,
        seed: u64,
        index: u64,
    ) -> Vec<f32> {
        assert!(
            (1..=5).contains(&severity),
            "corruption severity {severity} not in 1..=5"
        );
        assert_eq!(
            image.len(),
            shape.iter().product::<usize>(),
            "image length does not match shape {shape:?}"
        );
        let s = (severity - 1) as usize;
        let mut rng = Rng::from_keys(&[seed, index, 0xC0_22 + self as u64]);
        let img = Img {
            data: image.to_vec(),
            c: shape[0],
            h: shape[1],
            w: shape[2],
        };
        let mut out = match self {
            Self::GaussianNoise => gaussian_noise(img, [0.04, 0.06, 0.08, 0.09, 0.10][s], &mut rng),
            Self::ShotNoise => shot_noise(img, [500.0, 250.0, 100.0, 75.0, 50.0][s], &mut rng),
            Self::ImpulseNoise => impulse_noise(img, [0.01, 0.02, 0.03, 0.05, 0.07][s], &mut rng),
            Self::DefocusBlur => defocus_blur(
                img,
                [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)][s],
            ),
            Self::GlassBlur => glass_blur(
                img,
                [
                    (0.7, 1, 2),
                    (0.9, 2, 1),
                    (1.0, 2, 3),
                    (1.1, 3, 2),
                    (1.5, 4, 2),
                ][s],
                &mut rng,
            ),
            Self::MotionBlur => {
                let angle = rng.range_f32(-45.0, 45.0);
                motion_blur(
                    img,
                    [
                        (10.0, 1.0),
                        (10.0, 1.5),
                        (10.0, 2.0),
                        (10.0, 2.5),
                        (12.0, 3.0),
                    ][s],
                    angle,
                )
            }
            Self::ZoomBlur => zoom_blur(img, [0.06, 0.11, 0.16, 0.21, 0.26][s]),
            Self::Snow => snow(
                img,
                [
                    (0.1, 0.2, 1.0, 0.6, 8.0, 3.0, 0.95),
                    (0.1, 0.2, 1.0, 0.5, 10.0, 4.0, 0.9),
                    (0.15, 0.3, 1.75, 0.55, 10.0, 4.0, 0.9),
                    (0.25, 0.3, 2.25, 0.6, 12.0, 6.0, 0.85),
                    (0.3, 0.3, 1.25, 0.65, 14.0, 12.0, 0.8),
                ][s],
                &mut rng,
            ),
            Self::Fog => fog(
                img,
                [(0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)][s],
                &mut rng,
            ),
            Self::Brightness => brightness(img, [0.05, 0.1, 0.15, 0.2, 0.3][s]),
            Self::Contrast => contrast(img, [0.75, 0.5, 0.4, 0.3, 0.15][s]),
            Self::ElasticTransform => elastic(img, [0.5, 1.0, 1.5, 2.0, 2.5][s], &mut rng),
            Self::Pixelate => pixelate(img, [0.95, 0.9, 0.85, 0.75, 0.65][s]),
            Self::JpegCompression => jpeg(img, [80, 65, 58, 50, 40][s]),
        };
        for v in &mut out {
            *v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
        }
        out
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Corruption {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|c| {
                c.name() == key
                    || (key == "elastic" && *c == Self::ElasticTransform)
                    || (key == "jpeg" && *c == Self::JpegCompression)
            })
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "unknown corruption {s:?}: expected one of {}",
                    Self::ALL.map(|c| c.name()).join(", ")
                ))
            })
    }
}

/// Parse a severity list such as `1,3,5` or `1-5`.
///
/// # Errors
/// On anything outside 1..=5 or malformed.
pub fn parse_severities(s: &str) -> Result<Vec<u8>> {
    let bad = || {
        DataError::Invalid(format!(
            "severities {s:?}: expected numbers in 1..=5 like \"1,3,5\" or \"1-5\""
        ))
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u8>().map_err(|_| bad())?,
                b.trim().parse::<u8>().map_err(|_| bad())?,
            ),
            None => {
                let v = part.parse::<u8>().map_err(|_| bad())?;
                (v, v)
            }
        };
        if !(1..=5).contains(&a) || !(1..=5).contains(&b) || a > b {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// image helpers

struct Img {
    data: Vec<f32>,
    c: usize,
    h: usize,
    w: usize,
}

impl Img {
    fn like(&self) -> Self {
        Self {
            data: vec![0.0; self.data.len()],
            c: self.c,
            h: self.h,
            w: self.w,
        }
    }
    fn at(&self, k: usize, y: usize, x: usize) -> f32 {
        self.data[(k * self.h + y) * self.w + x]
    }
    /// Bilinear sample with edge clamping.
    fn sample(&self, k: usize, y: f32, x: f32) -> f32 {
        let y = y.clamp(0.0, (self.h - 1) as f32);
        let x = x.clamp(0.0, (self.w - 1) as f32);
        let (y0, x0) = (y.floor() as usize, x.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(self.h - 1), (x0 + 1).min(self.w - 1));
        let (fy, fx) = (y - y0 as f32, x - x0 as f32);
        let top = self.at(k, y0, x0) * (1.0 - fx) + self.at(k, y0, x1) * fx;
        let bot = self.at(k, y1, x0) * (1.0 - fx) + self.at(k, y1, x1) * fx;
        top * (1.0 - fy) + bot * fy
    }
}

fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
}

/// Separable Gaussian blur of a `[planes, h, w]` buffer with edge clamping.
fn blur_planes(data: &mut [f32], h: usize, w: usize, sigma: f32) {
    if sigma <= 0.0 {
        return;
    }
    let k = gaussian_kernel(sigma);
    let r = (k.len() / 2) as isize;
    let mut tmp = vec![0.0; h * w];
    for plane in data.chunks_exact_mut(h * w) {
        for y in 0..h {
            for x in 0..w {
                tmp[y * w + x] = k
                    .iter()
                    .enumerate()
                    .map(|(i, kv)| {
                        kv * plane[y * w
                            + (x as isize + i as isize - r).clamp(0, w as isize - 1) as usize]
                    })
                    .sum();
            }
        }
        for y in 0..h {
            for x in 0..w {
                plane[y * w + x] = k
                    .iter()
                    .enumerate()
                    .map(|(i, kv)| {
                        kv * tmp[(y as isize + i as isize - r).clamp(0, h as isize - 1) as usize
                            * w
                            + x]
                    })
                    .sum();
            }
        }
    }
}

/// Convolve every channel with a `(2r+1)^2` kernel, edge clamping.
fn convolve(img: &Img, kernel: &[f32], r: usize) -> Img {
    let size = 2 * r + 1;
    let mut out = img.like();
    for k in 0..img.c {
        for y in 0..img.h {
            for x in 0..img.w {
                let mut acc = 0.0;
                for ky in 0..size {
                    let sy = (y as isize + ky as isize - r as isize).clamp(0, img.h as isize - 1)
                        as usize;
                    for kx in 0..size {
                        let kv = kernel[ky * size + kx];
                        if kv != 0.0 {
                            let sx = (x as isize + kx as isize - r as isize)
                                .clamp(0, img.w as isize - 1)
                                as usize;
                            acc += kv * img.at(k, sy, sx);
                        }
                    }
                }
                out.data[(k * img.h + y) * img.w + x] = acc;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// the corruptions

fn gaussian_noise(mut img: Img, sigma: f32, rng: &mut Rng) -> Vec<f32> {
    for v in &mut img.data {
        *v += sigma * rng.normal();
    }
    img.data
}

/// Poisson(x·λ)/λ, drawn by inverting the CDF with one uniform per pixel (so the draw is a
/// monotone function of the same uniform at every severity).
fn shot_noise(mut img: Img, lam: f32, rng: &mut Rng) -> Vec<f32> {
    for v in &mut img.data {
        let u = rng.uniform_f64();
        let mean = (v.max(0.0) * lam) as f64;
        let k = if mean > 600.0 {
            // Normal approximation where exp(-mean) would underflow.
            let z = std::f64::consts::SQRT_2 * inverse_erf(2.0 * u - 1.0);
            (mean + mean.sqrt() * z).round().max(0.0)
        } else {
            let mut p = (-mean).exp();
            let mut cdf = p;
            let mut k = 0.0;
            while cdf < u && k < 10.0 * mean + 50.0 {
                k += 1.0;
                p *= mean / k;
                cdf += p;
            }
            k
        };
        *v = (k / lam as f64) as f32;
    }
    img.data
}

/// Inverse error function (Giles 2010 single-precision approximation, adequate for sampling).
fn inverse_erf(x: f64) -> f64 {
    let x = x.clamp(-0.999_999, 0.999_999);
    let w = -((1.0 - x) * (1.0 + x)).ln();
    let p = if w < 5.0 {
        let w = w - 2.5;
        let mut p = 2.810_226_36e-08;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            p = c + p * w;
        }
        p
    } else {
        let w = w.sqrt() - 3.0;
        let mut p = -0.000_200_214_257;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            p = c + p * w;
        }
        p
    };
    p * x
}

fn impulse_noise(mut img: Img, amount: f32, rng: &mut Rng) -> Vec<f32> {
    for v in &mut img.data {
        let (u, salt) = (rng.uniform(), rng.uniform());
        if u < amount {
            *v = if salt < 0.5 { 0.0 } else { 1.0 };
        }
    }
    img.data
}

fn defocus_blur(img: Img, (radius, alias_blur): (f32, f32)) -> Vec<f32> {
    let r = (radius.ceil() as usize) + (3.0 * alias_blur).ceil() as usize;
    let size = 2 * r + 1;
    let mut k = vec![0.0f32; size * size];
    for y in 0..size {
        for x in 0..size {
            let (dy, dx) = (y as f32 - r as f32, x as f32 - r as f32);
            if dy * dy + dx * dx <= radius * radius {
                k[y * size + x] = 1.0;
            }
        }
    }
    blur_zero_padded(&mut k, size, alias_blur);
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    convolve(&img, &k, r).data
}

/// Gaussian blur of a small square kernel with zero padding (so the kernel's mass spreads).
fn blur_zero_padded(k: &mut [f32], size: usize, sigma: f32) {
    let g = gaussian_kernel(sigma);
    let gr = (g.len() / 2) as isize;
    let src = k.to_vec();
    let mut tmp = vec![0.0; size * size];
    let get = |buf: &[f32], y: isize, x: isize| {
        if y < 0 || x < 0 || y >= size as isize || x >= size as isize {
            0.0
        } else {
            buf[y as usize * size + x as usize]
        }
    };
    for y in 0..size as isize {
        for x in 0..size as isize {
            tmp[y as usize * size + x as usize] = g
                .iter()
                .enumerate()
                .map(|(i, gv)| gv * get(&src, y, x + i as isize - gr))
                .sum();
        }
    }
    for y in 0..size as isize {
        for x in 0..size as isize {
            k[y as usize * size + x as usize] = g
                .iter()
                .enumerate()
                .map(|(i, gv)| gv * get(&tmp, y + i as isize - gr, x))
                .sum();
        }
    }
}

fn glass_blur(
    mut img: Img,
    (sigma, max_delta, iterations): (f32, usize, usize),
    rng: &mut Rng,
) -> Vec<f32> {
    let (h, w) = (img.h, img.w);
    blur_planes(&mut img.data, h, w, sigma);
    // The same uniforms at every severity (one pair per pixel and iteration), mapped to offsets
    // in [-max_delta, max_delta], so the shuffles of different severities are related.
    let d = max_delta as isize;
    let us: Vec<(f32, f32)> = (0..3 * h * w)
        .map(|_| (rng.uniform(), rng.uniform()))
        .collect();
    let off = |u: f32| ((u * (2 * max_delta + 1) as f32) as isize).min(2 * d) - d;
    for it in 0..iterations {
        for y in (max_delta..h.saturating_sub(max_delta)).rev() {
            for x in (max_delta..w.saturating_sub(max_delta)).rev() {
                let (ux, uy) = us[(it * h + y) * w + x];
                let (yp, xp) = (
                    (y as isize + off(uy)) as usize,
                    (x as isize + off(ux)) as usize,
                );
                for k in 0..img.c {
                    img.data.swap((k * h + y) * w + x, (k * h + yp) * w + xp);
                }
            }
        }
    }
    blur_planes(&mut img.data, h, w, sigma);
    img.data
}

/// One-sided Gaussian streak of `radius` pixels at `angle` degrees (ImageMagick motion blur).
fn streak(img: &Img, radius: f32, sigma: f32, angle_deg: f32) -> Img {
    let n = radius.round().max(1.0) as usize;
    let weights: Vec<f32> = (0..n)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let (sin, cos) = angle_deg.to_radians().sin_cos();
    let mut out = img.like();
    for k in 0..img.c {
        for y in 0..img.h {
            for x in 0..img.w {
                let mut acc = 0.0;
                for (i, wv) in weights.iter().enumerate() {
                    acc += wv * img.sample(k, y as f32 - i as f32 * sin, x as f32 - i as f32 * cos);
                }
                out.data[(k * img.h + y) * img.w + x] = acc / total;
            }
        }
    }
    out
}

fn motion_blur(img: Img, (radius, sigma): (f32, f32), angle: f32) -> Vec<f32> {
    streak(&img, radius, sigma, angle).data
}

fn zoom(img: &Img, z: f32) -> Img {
    let mut out = img.like();
    let (cy, cx) = ((img.h as f32 - 1.0) / 2.0, (img.w as f32 - 1.0) / 2.0);
    for k in 0..img.c {
        for y in 0..img.h {
            for x in 0..img.w {
                out.data[(k * img.h + y) * img.w + x] =
                    img.sample(k, cy + (y as f32 - cy) / z, cx + (x as f32 - cx) / z);
            }
        }
    }
    out
}

fn zoom_blur(img: Img, max_extra: f32) -> Vec<f32> {
    let steps = (max_extra / 0.01).round() as usize; // arange(1, 1 + max_extra, 0.01)
    let mut acc = img.data.clone();
    for i in 0..steps {
        let z = zoom(&img, 1.0 + 0.01 * i as f32);
        acc.iter_mut().zip(&z.data).for_each(|(a, b)| *a += b);
    }
    acc.iter_mut().for_each(|a| *a /= (steps + 1) as f32);
    acc
}

fn gray(img: &Img) -> Vec<f32> {
    let hw = img.h * img.w;
    if img.c == 3 {
        (0..hw)
            .map(|i| 0.299 * img.data[i] + 0.587 * img.data[hw + i] + 0.114 * img.data[2 * hw + i])
            .collect()
    } else {
        img.data[..hw].to_vec()
    }
}

#[allow(clippy::type_complexity)]
fn snow(
    img: Img,
    (loc, scale, zoom_f, thr, radius, sigma, blend): (f32, f32, f32, f32, f32, f32, f32),
    rng: &mut Rng,
) -> Vec<f32> {
    let (h, w) = (img.h, img.w);
    let z: Vec<f32> = (0..h * w).map(|_| rng.normal()).collect();
    let angle = rng.range_f32(-135.0, -45.0);
    let layer = Img {
        data: z.iter().map(|z| loc + scale * z).collect(),
        c: 1,
        h,
        w,
    };
    let mut layer = zoom(&layer, zoom_f);
    for v in &mut layer.data {
        if *v < thr {
            *v = 0.0;
        }
        *v = v.clamp(0.0, 1.0);
    }
    let flakes = streak(&layer, radius, sigma, angle);
    let g = gray(&img);
    let hw = h * w;
    let mut out = img.data.clone();
    for k in 0..img.c {
        for i in 0..hw {
            let x = img.data[k * hw + i];
            let lifted = blend * x + (1.0 - blend) * x.max(g[i] * 1.5 + 0.5);
            out[k * hw + i] = lifted + flakes.data[i] + flakes.data[hw - 1 - i];
        }
    }
    out
}

/// Diamond-square plasma fractal in [0, 1] (the ImageNet-C `plasma_fractal`).
fn plasma(mapsize: usize, decay: f32, rng: &mut Rng) -> Vec<f32> {
    let n = mapsize;
    let mut m = vec![0.0f32; n * n];
    let mut step = n;
    let mut wibble = 100.0f32;
    let idx = |y: usize, x: usize| (y % n) * n + (x % n);
    while step >= 2 {
        let half = step / 2;
        // squares: centre = mean of the four corners + noise
        for y in (0..n).step_by(step) {
            for x in (0..n).step_by(step) {
                let s = m[idx(y, x)]
                    + m[idx(y + step, x)]
                    + m[idx(y, x + step)]
                    + m[idx(y + step, x + step)];
                m[idx(y + half, x + half)] = s / 4.0 + wibble * rng.range_f32(-wibble, wibble);
            }
        }
        // diamonds: edge midpoints from their two corners and two neighbouring centres
        for y in (0..n).step_by(step) {
            for x in (0..n).step_by(step) {
                let top = m[idx(y, x)]
                    + m[idx(y, x + step)]
                    + m[idx(y + half, x + half)]
                    + m[idx(y + n - half, x + half)];
                m[idx(y, x + half)] = top / 4.0 + wibble * rng.range_f32(-wibble, wibble);
                let left = m[idx(y, x)]
                    + m[idx(y + step, x)]
                    + m[idx(y + half, x + half)]
                    + m[idx(y + half, x + n - half)];
                m[idx(y + half, x)] = left / 4.0 + wibble * rng.range_f32(-wibble, wibble);
            }
        }
        step /= 2;
        wibble /= decay;
    }
    let (lo, hi) = m
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = (hi - lo).max(f32::MIN_POSITIVE);
    m.into_iter().map(|v| (v - lo) / span).collect()
}

fn fog(img: Img, (strength, decay): (f32, f32), rng: &mut Rng) -> Vec<f32> {
    let max_val = img.data.iter().cloned().fold(0.0f32, f32::max);
    let size = img.h.max(img.w).next_power_of_two().max(32);
    let p = plasma(size, decay, rng);
    let hw = img.h * img.w;
    let mut out = img.data.clone();
    for k in 0..img.c {
        for y in 0..img.h {
            for x in 0..img.w {
                let i = k * hw + y * img.w + x;
                out[i] = (out[i] + strength * p[y * size + x]) * max_val / (max_val + strength);
            }
        }
    }
    out
}

fn brightness(img: Img, c: f32) -> Vec<f32> {
    let hw = img.h * img.w;
    let mut out = img.data.clone();
    if img.c != 3 {
        out.iter_mut().for_each(|v| *v = (*v + c).min(1.0));
        return out;
    }
    for i in 0..hw {
        let (r, g, b) = (img.data[i], img.data[hw + i], img.data[2 * hw + i]);
        let v = r.max(g).max(b);
        let v2 = (v + c).clamp(0.0, 1.0);
        for k in 0..3 {
            out[k * hw + i] = if v > 0.0 {
                img.data[k * hw + i] * v2 / v
            } else {
                v2
            };
        }
    }
    out
}

fn contrast(img: Img, c: f32) -> Vec<f32> {
    let hw = img.h * img.w;
    let mut out = img.data.clone();
    for plane in out.chunks_exact_mut(hw) {
        let mean = plane.iter().sum::<f32>() / hw as f32;
        plane.iter_mut().for_each(|v| *v = (*v - mean) * c + mean);
    }
    out
}

fn elastic(img: Img, alpha_per_32: f32, rng: &mut Rng) -> Vec<f32> {
    let (h, w) = (img.h, img.w);
    let scale = h.max(w) as f32 / 32.0;
    let mut field: Vec<f32> = (0..2 * h * w).map(|_| rng.range_f32(-1.0, 1.0)).collect();
    blur_planes(&mut field, h, w, 3.0 * scale);
    // Normalize the smoothed field to unit RMS so `alpha` is the displacement in pixels.
    let rms = (field.iter().map(|v| v * v).sum::<f32>() / field.len() as f32)
        .sqrt()
        .max(1e-6);
    let alpha = alpha_per_32 * scale / rms;
    let mut out = img.like();
    for k in 0..img.c {
        for y in 0..h {
            for x in 0..w {
                let (dy, dx) = (field[y * w + x] * alpha, field[h * w + y * w + x] * alpha);
                out.data[(k * h + y) * w + x] = img.sample(k, y as f32 + dy, x as f32 + dx);
            }
        }
    }
    out.data
}

/// Area-weighted (box) resampling weights from `n` source pixels to `m` output pixels:
/// output `o` covers source interval `[o·n/m, (o+1)·n/m)`, each source pixel weighted by overlap.
fn box_weights(n: usize, m: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = n as f32 / m as f32;
    (0..m)
        .map(|o| {
            let (lo, hi) = (o as f32 * scale, (o + 1) as f32 * scale);
            let mut ws: Vec<(usize, f32)> = (lo.floor() as usize..(hi.ceil() as usize).min(n))
                .map(|i| (i, (hi.min(i as f32 + 1.0) - lo.max(i as f32)).max(0.0)))
                .collect();
            let total: f32 = ws.iter().map(|w| w.1).sum();
            ws.iter_mut().for_each(|w| w.1 /= total);
            ws
        })
        .collect()
}

/// PIL-style BOX down-sampling to `c`·size, then BOX (nearest-centre) up-sampling back.
fn pixelate(img: Img, c: f32) -> Vec<f32> {
    let (h, w) = (img.h, img.w);
    let (sh, sw) = (
        ((h as f32 * c) as usize).max(1),
        ((w as f32 * c) as usize).max(1),
    );
    let (wy, wx) = (box_weights(h, sh), box_weights(w, sw));
    let mut out = img.like();
    for k in 0..img.c {
        let mut small = vec![0.0f32; sh * sw];
        for (sy, row) in small.chunks_exact_mut(sw).enumerate() {
            for (sx, v) in row.iter_mut().enumerate() {
                *v = wy[sy]
                    .iter()
                    .map(|&(y, a)| {
                        a * wx[sx]
                            .iter()
                            .map(|&(x, b)| b * img.at(k, y, x))
                            .sum::<f32>()
                    })
                    .sum();
            }
        }
        for y in 0..h {
            let sy = (((y as f32 + 0.5) * sh as f32 / h as f32) as usize).min(sh - 1);
            for x in 0..w {
                let sx = (((x as f32 + 0.5) * sw as f32 / w as f32) as usize).min(sw - 1);
                out.data[(k * h + y) * w + x] = small[sy * sw + sx];
            }
        }
    }
    out.data
}

fn jpeg(img: Img, quality: u8) -> Vec<f32> {
    use image::ImageEncoder;
    let (h, w, hw) = (img.h, img.w, img.h * img.w);
    let (bytes, color) = if img.c == 3 {
        let mut b = Vec::with_capacity(3 * hw);
        for i in 0..hw {
            for k in 0..3 {
                b.push((img.data[k * hw + i].clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
        (b, image::ExtendedColorType::Rgb8)
    } else {
        (
            img.data[..hw]
                .iter()
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect(),
            image::ExtendedColorType::L8,
        )
    };
    let mut enc = Vec::new();
    let planes = img.c;
    let encoded = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut enc, quality)
        .write_image(&bytes, w as u32, h as u32, color)
        .and_then(|_| image::load_from_memory_with_format(&enc, image::ImageFormat::Jpeg));
    let decoded = match encoded {
        Ok(d) => d,
        Err(e) => {
            // In-memory encode/decode of a valid buffer cannot fail; keep the image if it does.
            tracing::error!("jpeg round trip failed: {e}");
            return img.data;
        }
    };
    let mut out = img.data.clone();
    if planes == 3 {
        let rgb = decoded.to_rgb8();
        for (i, p) in rgb.pixels().enumerate() {
            for k in 0..3 {
                out[k * hw + i] = p.0[k] as f32 / 255.0;
            }
        }
    } else {
        let l = decoded.to_luma8();
        for k in 0..planes {
            for (i, p) in l.pixels().enumerate() {
                out[k * hw + i] = p.0[0] as f32 / 255.0;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// materialized "-C" sets

/// Corrupt one `u8` sample of a dataset and quantize back to `u8`.
pub fn corrupt_u8(
    c: Corruption,
    image: &[u8],
    shape: [usize; 3],
    severity: u8,
    seed: u64,
    index: u64,
) -> Vec<u8> {
    let f: Vec<f32> = image.iter().map(|&p| p as f32 / 255.0).collect();
    c.apply(&f, shape, severity, seed, index)
        .into_iter()
        .map(|v| (v * 255.0).round() as u8)
        .collect()
}

/// Corrupt every sample of a dataset (samples in parallel over `threads` threads).
pub fn corrupt_dataset(
    data: &ImageDataset,
    c: Corruption,
    severity: u8,
    seed: u64,
    threads: usize,
) -> Result<ImageDataset> {
    if !(1..=5).contains(&severity) {
        return Err(DataError::Invalid(format!(
            "severity {severity} not in 1..=5"
        )));
    }
    let n = data.num_samples();
    let per = data.image_len();
    let shape = data.shape();
    let mut pixels = vec![0u8; n * per];
    let threads = threads.max(1);
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (t, out) in pixels.chunks_mut(chunk * per).enumerate() {
            s.spawn(move || {
                for (j, dst) in out.chunks_exact_mut(per).enumerate() {
                    let i = t * chunk + j;
                    dst.copy_from_slice(&corrupt_u8(
                        c,
                        &data.image(i),
                        shape,
                        severity,
                        seed,
                        i as u64,
                    ));
                }
            });
        }
    });
    ImageDataset::new(shape, pixels, data.labels().to_vec(), data.num_classes())
}

/// One materialized corruption/severity.
#[derive(Clone, Debug, PartialEq)]
pub struct CorruptedEntry {
    /// The corruption.
    pub corruption: Corruption,
    /// Its severity.
    pub severity: u8,
    /// Number of images.
    pub count: usize,
    /// SHA-256 of the image file.
    pub sha256: String,
    /// Mean absolute pixel change against the clean images, in [0, 1] units.
    pub mean_abs_change: f32,
}

/// The manifest of a materialized "-C" directory.
#[derive(Clone, Debug, PartialEq)]
pub struct CorruptedManifest {
    /// Seed used.
    pub seed: u64,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// One entry per (corruption, severity).
    pub entries: Vec<CorruptedEntry>,
}

const MANIFEST: &str = "manifest.txt";
const LABELS: &str = "labels-idx1-ubyte";

fn images_path(dir: &Path, c: Corruption, severity: u8) -> PathBuf {
    dir.join(c.name())
        .join(severity.to_string())
        .join("images-idx-ubyte")
}

/// Write a "-C" set: `<out>/labels-idx1-ubyte`, `<out>/<corruption>/<severity>/images-idx-ubyte`
/// (IDX, `[N, H, W]` or `[N, C, H, W]`) and `<out>/manifest.txt` (written last, listing the
/// SHA-256 of every image file). Every file is placed atomically.
pub fn materialize_corrupted(
    data: &ImageDataset,
    corruptions: &[Corruption],
    severities: &[u8],
    seed: u64,
    out: &Path,
    threads: usize,
) -> Result<CorruptedManifest> {
    let n = data.num_samples();
    let labels: Vec<u8> = data.labels().iter().map(|&l| l as u8).collect();
    if data.num_classes() > 256 {
        return Err(DataError::Invalid(format!(
            "{}: idx labels are bytes; {} classes do not fit",
            out.display(),
            data.num_classes()
        )));
    }
    write_idx(&out.join(LABELS), &[n], &labels)?;
    let [c, h, w] = data.shape();
    let dims: Vec<usize> = if c == 1 {
        vec![n, h, w]
    } else {
        vec![n, c, h, w]
    };
    let mut entries = Vec::new();
    for &corruption in corruptions {
        for &severity in severities {
            let cd = corrupt_dataset(data, corruption, severity, seed, threads)?;
            let path = images_path(out, corruption, severity);
            write_idx(&path, &dims, cd.pixels())?;
            let file = std::fs::read(&path).map_err(io_err(&path))?;
            let mad = cd
                .pixels()
                .iter()
                .zip(data.pixels())
                .map(|(a, b)| (*a as f32 - *b as f32).abs())
                .sum::<f32>()
                / (255.0 * data.pixels().len().max(1) as f32);
            tracing::info!(
                corruption = corruption.name(),
                severity,
                mean_abs_change = mad,
                "materialized"
            );
            entries.push(CorruptedEntry {
                corruption,
                severity,
                count: n,
                sha256: hex(&Sha256::digest(&file)),
                mean_abs_change: mad,
            });
        }
    }
    let m = CorruptedManifest {
        seed,
        shape: data.shape(),
        num_classes: data.num_classes(),
        entries,
    };
    crate::fetch::write_atomic(&out.join(MANIFEST), manifest_text(&m).as_bytes())?;
    Ok(m)
}

fn manifest_text(m: &CorruptedManifest) -> String {
    let mut s = format!(
        "advsoup-c 1\nseed {}\nshape {} {} {}\nclasses {}\n",
        m.seed, m.shape[0], m.shape[1], m.shape[2], m.num_classes
    );
    for e in &m.entries {
        s += &format!(
            "{} {} {} {} {}\n",
            e.corruption.name(),
            e.severity,
            e.count,
            e.sha256,
            e.mean_abs_change
        );
    }
    s
}

/// Read `<dir>/manifest.txt`.
pub fn read_manifest(dir: &Path) -> Result<CorruptedManifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let bad = |line: usize, what: &str| DataError::Format {
        path: path.clone(),
        what: format!("line {line}: expected {what}"),
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.first() != Some(&"advsoup-c 1") {
        return Err(bad(1, "\"advsoup-c 1\""));
    }
    let field = |i: usize, key: &str| -> Result<Vec<usize>> {
        let l = lines
            .get(i)
            .and_then(|l| l.strip_prefix(key))
            .ok_or_else(|| bad(i + 1, key))?;
        l.split_whitespace()
            .map(|t| t.parse::<usize>().map_err(|_| bad(i + 1, key)))
            .collect()
    };
    let seed = lines
        .get(1)
        .and_then(|l| l.strip_prefix("seed "))
        .and_then(|t| t.trim().parse::<u64>().ok())
        .ok_or_else(|| bad(2, "seed <u64>"))?;
    let shape = field(2, "shape ")?;
    let classes = field(3, "classes ")?;
    let (Ok(shape), [num_classes]) = (<[usize; 3]>::try_from(shape), classes.as_slice()) else {
        return Err(bad(3, "shape <c> <h> <w> and classes <k>"));
    };
    let mut entries = Vec::new();
    for (i, l) in lines.iter().enumerate().skip(4) {
        let t: Vec<&str> = l.split_whitespace().collect();
        let what = "<corruption> <severity> <count> <sha256> <mean abs change>";
        let [name, sev, count, sha, mad] = t.as_slice() else {
            return Err(bad(i + 1, what));
        };
        entries.push(CorruptedEntry {
            corruption: name.parse().map_err(|_| bad(i + 1, what))?,
            severity: sev.parse().map_err(|_| bad(i + 1, what))?,
            count: count.parse().map_err(|_| bad(i + 1, what))?,
            sha256: sha.to_string(),
            mean_abs_change: mad.parse().map_err(|_| bad(i + 1, what))?,
        });
    }
    Ok(CorruptedManifest {
        seed,
        shape,
        num_classes: *num_classes,
        entries,
    })
}

/// Load one corruption/severity of a materialized "-C" set, verifying its SHA-256 against the
/// manifest.
pub fn load_corrupted(dir: &Path, corruption: Corruption, severity: u8) -> Result<ImageDataset> {
    let m = read_manifest(dir)?;
    let path = images_path(dir, corruption, severity);
    let entry = m
        .entries
        .iter()
        .find(|e| e.corruption == corruption && e.severity == severity)
        .ok_or_else(|| DataError::Format {
            path: dir.join(MANIFEST),
            what: format!("no entry for {} severity {severity}", corruption.name()),
        })?;
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let found = hex(&Sha256::digest(&bytes));
    if found != entry.sha256 {
        return Err(DataError::Checksum {
            path,
            expected: entry.sha256.clone(),
            found,
        });
    }
    let _ = read_idx; // the pair loader below re-reads and validates the header
    load_idx_pair(&path, &dir.join(LABELS), m.num_classes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gradient plus smoothed random texture (not periodic, like a natural image), in (0, 1).
    fn test_image(shape: [usize; 3]) -> Vec<f32> {
        let [c, h, w] = shape;
        let mut r = Rng::from_keys(&[99]);
        let mut tex: Vec<f32> = (0..c * h * w).map(|_| r.range_f32(-1.0, 1.0)).collect();
        blur_planes(&mut tex, h, w, 1.5);
        let mut v = Vec::with_capacity(c * h * w);
        for k in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let base = 0.25 + 0.4 * ((x + y) as f32 / (h + w) as f32) + 0.05 * k as f32;
                    v.push((base + 0.6 * tex[(k * h + y) * w + x]).clamp(0.0, 1.0));
                }
            }
        }
        v
    }

    fn mad(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
    }

    #[test]
    fn every_corruption_is_bounded_changes_input_grows_with_severity_and_is_seeded() {
        let mut failures = Vec::new();
        for shape in [[1, 28, 28], [3, 32, 32]] {
            let x = test_image(shape);
            for c in Corruption::ALL {
                let mut prev = 0.0;
                let mut changes = Vec::new();
                for s in 1..=5 {
                    let y = c.apply(&x, shape, s, 7, 3);
                    assert!(
                        y.iter().all(|v| (0.0..=1.0).contains(v)),
                        "{c} s{s} out of [0,1]"
                    );
                    let m = mad(&x, &y);
                    assert!(m > 0.0, "{c} s{s} {shape:?} left the image unchanged");
                    if m < prev * 0.98 {
                        failures.push(format!(
                            "{c} {shape:?}: change fell from {prev} to {m} at severity {s}"
                        ));
                    }
                    prev = prev.max(m);
                    changes.push(m);
                    assert_eq!(y, c.apply(&x, shape, s, 7, 3), "{c} not deterministic");
                }
                assert!(
                    changes[4] > changes[0],
                    "{c} {shape:?}: severity 5 ({}) not above 1 ({})",
                    changes[4],
                    changes[0]
                );
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        // The seed and the sample index matter for the random ones.
        let shape = [1, 28, 28];
        let x = test_image(shape);
        let a = Corruption::GaussianNoise.apply(&x, shape, 3, 7, 3);
        assert_ne!(a, Corruption::GaussianNoise.apply(&x, shape, 3, 8, 3));
        assert_ne!(a, Corruption::GaussianNoise.apply(&x, shape, 3, 7, 4));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Any image, corruption, severity and seed: same length, inside [0, 1], reproducible.
        #[test]
        fn corruptions_stay_in_unit_box(
            c in 0usize..14, severity in 1u8..=5, seed in proptest::prelude::any::<u64>(),
            channels in proptest::sample::select(vec![1usize, 3]), h in 5usize..14, w in 5usize..14,
            fill in 0u64..1000,
        ) {
            let shape = [channels, h, w];
            let mut r = Rng::from_keys(&[fill]);
            let x: Vec<f32> = (0..channels * h * w).map(|_| r.uniform()).collect();
            let c = Corruption::ALL[c];
            let y = c.apply(&x, shape, severity, seed, 0);
            proptest::prop_assert_eq!(y.len(), x.len());
            proptest::prop_assert!(y.iter().all(|v| (0.0..=1.0).contains(v)));
            proptest::prop_assert_eq!(y, c.apply(&x, shape, severity, seed, 0));
        }
    }

    #[test]
    fn names_and_severities_parse() {
        for c in Corruption::ALL {
            assert_eq!(c.name().parse::<Corruption>().expect("name"), c);
        }
        assert!("frost".parse::<Corruption>().is_err());
        assert_eq!(parse_severities("1-3,5").expect("sev"), vec![1, 2, 3, 5]);
        assert!(parse_severities("0").is_err());
        assert!(parse_severities("2-6").is_err());
        assert!(parse_severities("x").is_err());
    }

    #[test]
    fn materialize_and_load_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = crate::dataset::tests::toy(6, [3, 8, 8], 3, 4);
        let cs = [Corruption::Contrast, Corruption::ShotNoise];
        let m = materialize_corrupted(&data, &cs, &[1, 5], 1, dir.path(), 2).expect("materialize");
        assert_eq!(m.entries.len(), 4);
        assert_eq!(
            read_manifest(dir.path()).expect("manifest").entries.len(),
            4
        );
        let back = load_corrupted(dir.path(), Corruption::ShotNoise, 5).expect("load");
        assert_eq!(back.labels(), data.labels());
        assert_eq!(
            back,
            corrupt_dataset(&data, Corruption::ShotNoise, 5, 1, 1).expect("corrupt")
        );
        assert_ne!(back.pixels(), data.pixels());
        // Tampering is caught by the checksum.
        let p = images_path(dir.path(), Corruption::Contrast, 1);
        let mut bytes = std::fs::read(&p).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, bytes).expect("write");
        let e = load_corrupted(dir.path(), Corruption::Contrast, 1)
            .expect_err("tampered")
            .to_string();
        assert!(
            e.contains("images-idx-ubyte") && e.contains("sha-256 mismatch"),
            "{e}"
        );
        assert!(load_corrupted(dir.path(), Corruption::Fog, 1).is_err());
    }
}
