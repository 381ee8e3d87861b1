//! Seeded training augmentation: random crop with padding or timm's RandomResizedCrop
//! (Szegedy et al. 2015), horizontal flip, timm-style RandAugment (Cubuk et al. 2020), mixup,
//! CutMix and label smoothing.
//!
//! Per-sample choices (crop offset, flip) come from `Rng(seed, epoch, sample index)`; per-batch
//! choices (mixup vs CutMix, λ, the box) from `Rng(seed, epoch, first sample index, batch
//! length)`. Mixup: Zhang et al. 2018; CutMix: Yun et al. 2019; label smoothing: Szegedy et al.
//! 2016. Mixing pairs sample `i` with sample `n - 1 - i` of the same batch (timm's "flip"
//! pairing).

mod mix;

use crate::rng::Rng;

pub use mix::{Mix, mix_batch, soft_targets};

/// Augmentation settings. [`AugmentConfig::default`] is "off".
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Zero padding added on every side before a random crop back to the original size;
    /// 0 disables cropping.
    pub crop_padding: usize,
    /// Flip horizontally with probability 1/2.
    pub hflip: bool,
    /// Mixup Beta(α, α) parameter; 0 disables mixup.
    pub mixup_alpha: f32,
    /// CutMix Beta(α, α) parameter; 0 disables CutMix.
    pub cutmix_alpha: f32,
    /// Probability that a batch is mixed at all (when mixup or CutMix is on).
    pub mix_prob: f32,
    /// Probability of CutMix rather than mixup when both are on.
    pub cutmix_switch_prob: f32,
    /// Label smoothing ε: soft target = (1 − ε)·one-hot + ε/K.
    pub label_smoothing: f32,
    /// RandAugment, applied after crop and flip.
    pub rand_augment: Option<RandAugment>,
    /// RandomResizedCrop to a square side (replaces the padded crop).
    pub resized_crop: Option<ResizedCrop>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            crop_padding: 0,
            hflip: false,
            mixup_alpha: 0.0,
            cutmix_alpha: 0.0,
            mix_prob: 1.0,
            cutmix_switch_prob: 0.5,
            label_smoothing: 0.0,
            rand_augment: None,
            resized_crop: None,
        }
    }
}

impl AugmentConfig {
    /// No augmentation (evaluation).
    pub fn none() -> Self {
        Self::default()
    }

    /// Digits and clothes (MNIST, Fashion-MNIST): crop with 2-pixel padding, no flip.
    pub fn digits() -> Self {
        Self {
            crop_padding: 2,
            ..Self::default()
        }
    }

    /// Natural 32x32 images (CIFAR): crop with 4-pixel padding and horizontal flip.
    pub fn cifar() -> Self {
        Self {
            crop_padding: 4,
            hflip: true,
            ..Self::default()
        }
    }

    /// Builder: set mixup and CutMix α.
    pub fn with_mixing(mut self, mixup_alpha: f32, cutmix_alpha: f32) -> Self {
        self.mixup_alpha = mixup_alpha;
        self.cutmix_alpha = cutmix_alpha;
        self
    }

    /// Builder: set label smoothing.
    pub fn with_label_smoothing(mut self, eps: f32) -> Self {
        self.label_smoothing = eps;
        self
    }

    /// Whether batches carry soft targets (mixing or smoothing is on).
    pub fn soft_targets(&self) -> bool {
        self.mixup_alpha > 0.0 || self.cutmix_alpha > 0.0 || self.label_smoothing > 0.0
    }

    /// Check ranges.
    ///
    /// # Errors
    /// On negative α, probabilities outside [0, 1] or ε outside [0, 1).
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |w: &str| Err(crate::DataError::Invalid(w.to_string()));
        if !(self.mixup_alpha >= 0.0 && self.cutmix_alpha >= 0.0) {
            return bad("mixup/cutmix alpha must be >= 0");
        }
        if !(0.0..=1.0).contains(&self.mix_prob) || !(0.0..=1.0).contains(&self.cutmix_switch_prob)
        {
            return bad("mix_prob and cutmix_switch_prob must be in [0, 1]");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label_smoothing must be in [0, 1)");
        }
        if let Some(r) = &self.resized_crop {
            let [s0, s1] = r.scale;
            let [r0, r1] = r.ratio;
            if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
                return bad("random_resized_crop.scale must satisfy 0 < lo <= hi <= 1");
            }
            if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
                return bad("random_resized_crop.ratio must satisfy 0 < lo <= hi");
            }
            if self.crop_padding > 0 {
                return bad("crop_padding and random_resized_crop exclude each other");
            }
        }
        Ok(())
    }

    /// Whether samples are transformed one by one (crop, flip, RandAugment).
    pub fn augments_samples(&self) -> bool {
        self.crop_padding > 0
            || self.hflip
            || self.rand_augment.is_some()
            || self.resized_crop.is_some()
    }

    /// `[C, H, W]` of an augmented sample of input `shape`.
    pub fn output_shape(&self, shape: [usize; 3]) -> [usize; 3] {
        match &self.resized_crop {
            Some(r) if r.size > 0 => [shape[0], r.size, r.size],
            _ => shape,
        }
    }
}

/// timm's `RandomResizedCrop`: a crop covering a random share `scale` of the area with a
/// log-uniform aspect ratio in `ratio` (10 tries, then a center crop), resized bilinearly to
/// `size x size`.
#[derive(Clone, Debug, PartialEq)]
pub struct ResizedCrop {
    /// Output side (0: the input's height).
    pub size: usize,
    /// Area share range.
    pub scale: [f32; 2],
    /// Aspect ratio (w / h) range.
    pub ratio: [f32; 2],
}

impl ResizedCrop {
    /// The crop box `(top, left, height, width)` for an `h x w` image.
    pub fn sample_box(&self, h: usize, w: usize, rng: &mut Rng) -> (usize, usize, usize, usize) {
        let area = (h * w) as f32;
        let (lr0, lr1) = (self.ratio[0].ln(), self.ratio[1].ln());
        for _ in 0..10 {
            let target = area * rng.range_f32(self.scale[0], self.scale[1]);
            let aspect = rng.range_f32(lr0, lr1).exp();
            let cw = (target * aspect).sqrt().round() as usize;
            let ch = (target / aspect).sqrt().round() as usize;
            if cw > 0 && cw <= w && ch > 0 && ch <= h {
                let top = rng.below(h - ch + 1);
                let left = rng.below(w - cw + 1);
                return (top, left, ch, cw);
            }
        }
        let in_ratio = w as f32 / h as f32;
        let (ch, cw) = if in_ratio < self.ratio[0] {
            (((w as f32 / self.ratio[0]).round() as usize).clamp(1, h), w)
        } else if in_ratio > self.ratio[1] {
            (h, ((h as f32 * self.ratio[1]).round() as usize).clamp(1, w))
        } else {
            (h, w)
        };
        ((h - ch) / 2, (w - cw) / 2, ch, cw)
    }
}

/// Bilinear resize (half-pixel centers, edge clamped) of the box `(top, left, bh, bw)` of a
/// `[C, H, W]` image to `[C, oh, ow]`.
pub fn resize_box(
    img: &[f32],
    shape: [usize; 3],
    (top, left, bh, bw): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    let [c, h, w] = shape;
    let mut out = vec![0.0; c * oh * ow];
    let sy = bh as f32 / oh as f32;
    let sx = bw as f32 / ow as f32;
    for y in 0..oh {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (bh - 1) as f32);
        let y0 = fy.floor() as usize;
        let y1 = (y0 + 1).min(bh - 1);
        let wy = fy - y0 as f32;
        for x in 0..ow {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (bw - 1) as f32);
            let x0 = fx.floor() as usize;
            let x1 = (x0 + 1).min(bw - 1);
            let wx = fx - x0 as f32;
            for k in 0..c {
                let at = |yy: usize, xx: usize| img[(k * h + top + yy) * w + left + xx];
                let v = (1.0 - wy) * ((1.0 - wx) * at(y0, x0) + wx * at(y0, x1))
                    + wy * ((1.0 - wx) * at(y1, x0) + wx * at(y1, x1));
                out[(k * oh + y) * ow + x] = v;
            }
        }
    }
    out
}

/// The operations of timm's RandAugment with `inc1` (magnitude-increasing variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RandOp {
    /// Per-channel min/max stretch.
    AutoContrast,
    /// Per-channel histogram equalization (PIL's algorithm).
    Equalize,
    /// 1 − x.
    Invert,
    /// Rotation by up to ±30°.
    Rotate,
    /// Keep `4 − ⌊4m/10⌋` bits.
    Posterize,
    /// Invert pixels at or above `256 − ⌊256m/10⌋`.
    Solarize,
    /// Add `⌊110m/10⌋` to pixels below 128.
    SolarizeAdd,
    /// Saturation factor `1 ± 0.9m/10`.
    Color,
    /// Contrast factor `1 ± 0.9m/10`.
    Contrast,
    /// Brightness factor `1 ± 0.9m/10`.
    Brightness,
    /// Sharpness factor `1 ± 0.9m/10`.
    Sharpness,
    /// Horizontal shear by up to ±0.3.
    ShearX,
    /// Vertical shear by up to ±0.3.
    ShearY,
    /// Horizontal shift by up to ±45% of the width.
    TranslateX,
    /// Vertical shift by up to ±45% of the height.
    TranslateY,
}

impl RandOp {
    /// timm's `_RAND_INCREASING_TRANSFORMS`, in order.
    pub const ALL: [RandOp; 15] = [
        Self::AutoContrast,
        Self::Equalize,
        Self::Invert,
        Self::Rotate,
        Self::Posterize,
        Self::Solarize,
        Self::SolarizeAdd,
        Self::Color,
        Self::Contrast,
        Self::Brightness,
        Self::Sharpness,
        Self::ShearX,
        Self::ShearY,
        Self::TranslateX,
        Self::TranslateY,
    ];
}

/// timm's RandAugment (`rand-mM-nN-mstdS-incI-pP`): `num_ops` operations drawn with
/// replacement, each applied with probability `prob` at magnitude `N(magnitude, magnitude_std)`
/// clipped to [0, 10]. Geometric operations fill with the ImageNet mean.
#[derive(Clone, Debug, PartialEq)]
pub struct RandAugment {
    /// Operations per image (timm `n`, default 2).
    pub num_ops: usize,
    /// Magnitude on timm's 0..10 scale (`m`).
    pub magnitude: f32,
    /// Standard deviation of the per-application magnitude noise (`mstd`).
    pub magnitude_std: f32,
    /// Probability of applying each drawn operation (`p`, default 0.5).
    pub prob: f32,
}

impl RandAugment {
    /// Parses a timm policy string such as `rand-m9-mstd0.5-inc1`. Only the increasing
    /// transforms (`inc1`) are implemented.
    ///
    /// # Errors
    /// On another prefix, an unknown or malformed section, or `inc0`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        let bad = |why: String| crate::DataError::Invalid(format!("rand_augment {s:?}: {why}"));
        let mut parts = s.split('-');
        if parts.next() != Some("rand") {
            return Err(bad("expected a policy starting with `rand`".into()));
        }
        let mut ra = Self {
            num_ops: 2,
            magnitude: 10.0,
            magnitude_std: 0.0,
            prob: 0.5,
        };
        let mut inc = false;
        for p in parts {
            let num = |prefix: &str| -> crate::Result<f32> {
                p[prefix.len()..]
                    .parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| bad(format!("`{p}`: expected {prefix}<number>")))
            };
            if p.starts_with("mstd") {
                ra.magnitude_std = num("mstd")?;
            } else if p.starts_with("inc") {
                inc = num("inc")? != 0.0;
            } else if p.starts_with('m') {
                ra.magnitude = num("m")?;
            } else if p.starts_with('n') {
                ra.num_ops = num("n")? as usize;
            } else if p.starts_with('p') {
                ra.prob = num("p")?;
            } else {
                return Err(bad(format!(
                    "unknown section `{p}`: expected m, n, mstd, inc or p"
                )));
            }
        }
        if !inc {
            return Err(bad(
                "only the increasing transforms (inc1) are implemented".into()
            ));
        }
        if ra.magnitude > 10.0 || ra.prob > 1.0 {
            return Err(bad("expected m <= 10 and p <= 1".into()));
        }
        Ok(ra)
    }

    /// Applies the policy to a `[C, H, W]` image in [0, 1], in place.
    pub fn apply(&self, img: &mut [f32], shape: [usize; 3], rng: &mut Rng) {
        for _ in 0..self.num_ops {
            let op = RandOp::ALL[rng.below(RandOp::ALL.len())];
            if rng.uniform() >= self.prob {
                continue;
            }
            let mut m = self.magnitude;
            if self.magnitude_std > 0.0 {
                m += self.magnitude_std * rng.normal();
            }
            let m = m.clamp(0.0, 10.0) / 10.0;
            let sign = if rng.below(2) == 0 { 1.0 } else { -1.0 };
            apply_op(op, m, sign, img, shape);
        }
    }
}

const FILL: [f32; 3] = [0.485, 0.456, 0.406];

fn gray(img: &[f32], shape: [usize; 3]) -> Vec<f32> {
    let [c, h, w] = shape;
    let n = h * w;
    if c < 3 {
        return img[..n].to_vec();
    }
    (0..n)
        .map(|i| 0.299 * img[i] + 0.587 * img[n + i] + 0.114 * img[2 * n + i])
        .collect()
}

fn blend(img: &mut [f32], degenerate: impl Fn(usize) -> f32, factor: f32) {
    for (i, v) in img.iter_mut().enumerate() {
        let d = degenerate(i);
        *v = (d + factor * (*v - d)).clamp(0.0, 1.0);
    }
}

fn affine(img: &mut [f32], shape: [usize; 3], m: [f32; 6]) {
    // Output pixel (x, y) reads input (a x + b y + c, d x + e y + f) bilinearly, like PIL's
    // `Image.transform(AFFINE)`; outside the image it reads the fill colour.
    let [c, h, w] = shape;
    let src = img.to_vec();
    for k in 0..c {
        let fill = if c == 3 { FILL[k] } else { 0.5 };
        let plane = &src[k * h * w..(k + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f32 + 0.5, y as f32 + 0.5);
                let sx = m[0] * xf + m[1] * yf + m[2] - 0.5;
                let sy = m[3] * xf + m[4] * yf + m[5] - 0.5;
                let (x0, y0) = (sx.floor(), sy.floor());
                let (wx, wy) = (sx - x0, sy - y0);
                let at = |yy: f32, xx: f32| -> f32 {
                    if yy < 0.0 || xx < 0.0 || yy >= h as f32 || xx >= w as f32 {
                        fill
                    } else {
                        plane[yy as usize * w + xx as usize]
                    }
                };
                img[(k * h + y) * w + x] = (1.0 - wy)
                    * ((1.0 - wx) * at(y0, x0) + wx * at(y0, x0 + 1.0))
                    + wy * ((1.0 - wx) * at(y0 + 1.0, x0) + wx * at(y0 + 1.0, x0 + 1.0));
            }
        }
    }
}

fn to_u8(v: f32) -> u32 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u32
}

/// One RandAugment operation at magnitude `m` in [0, 1] with direction `sign` (±1).
pub fn apply_op(op: RandOp, m: f32, sign: f32, img: &mut [f32], shape: [usize; 3]) {
    let [c, h, w] = shape;
    let n = h * w;
    let factor = 1.0 + sign * 0.9 * m;
    match op {
        RandOp::AutoContrast => {
            for plane in img.chunks_exact_mut(n) {
                let lo = plane.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = plane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if hi > lo {
                    plane.iter_mut().for_each(|v| *v = (*v - lo) / (hi - lo));
                }
            }
        }
        RandOp::Equalize => {
            for plane in img.chunks_exact_mut(n) {
                let mut hist = [0usize; 256];
                plane.iter().for_each(|v| hist[to_u8(*v) as usize] += 1);
                let last = hist.iter().rposition(|&k| k > 0).map_or(0, |i| hist[i]);
                let step = (n - last) / 255;
                if step == 0 {
                    continue;
                }
                let mut lut = [0u32; 256];
                let mut acc = step / 2;
                for (i, l) in lut.iter_mut().enumerate() {
                    *l = (acc / step).min(255) as u32;
                    acc += hist[i];
                }
                plane
                    .iter_mut()
                    .for_each(|v| *v = lut[to_u8(*v) as usize] as f32 / 255.0);
            }
        }
        RandOp::Invert => img.iter_mut().for_each(|v| *v = 1.0 - *v),
        RandOp::Posterize => {
            let bits = 4 - (m * 4.0) as u32;
            let mask = !((1u32 << (8 - bits)) - 1) & 0xff;
            img.iter_mut()
                .for_each(|v| *v = (to_u8(*v) & mask) as f32 / 255.0);
        }
        RandOp::Solarize => {
            let thresh = 256 - (m * 256.0) as u32;
            img.iter_mut().for_each(|v| {
                if to_u8(*v) >= thresh {
                    *v = 1.0 - *v;
                }
            });
        }
        RandOp::SolarizeAdd => {
            let add = (m * 110.0).floor() / 255.0;
            img.iter_mut().for_each(|v| {
                if to_u8(*v) < 128 {
                    *v = (*v + add).min(1.0);
                }
            });
        }
        RandOp::Color => {
            let g = gray(img, shape);
            blend(img, |i| g[i % n], factor);
        }
        RandOp::Contrast => {
            let g = gray(img, shape);
            let mean = g.iter().sum::<f32>() / n as f32;
            blend(img, |_| mean, factor);
        }
        RandOp::Brightness => blend(img, |_| 0.0, factor),
        RandOp::Sharpness => {
            // PIL's SMOOTH filter ([[1,1,1],[1,5,1],[1,1,1]] / 13) on the interior; the border
            // keeps its pixels.
            let src = img.to_vec();
            let smooth = |i: usize| -> f32 {
                let (k, y, x) = (i / n, (i % n) / w, i % w);
                if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
                    return src[i];
                }
                let mut s = 4.0 * src[i];
                for dy in [-1isize, 0, 1] {
                    for dx in [-1isize, 0, 1] {
                        let yy = (y as isize + dy) as usize;
                        let xx = (x as isize + dx) as usize;
                        s += src[(k * h + yy) * w + xx];
                    }
                }
                s / 13.0
            };
            blend(img, smooth, factor);
        }
        RandOp::Rotate => {
            let a = (sign * 30.0 * m).to_radians();
            let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
            let (cos, sin) = (a.cos(), a.sin());
            // Inverse map of a counter-clockwise rotation about the center.
            affine(
                img,
                [c, h, w],
                [
                    cos,
                    sin,
                    cx - cos * cx - sin * cy,
                    -sin,
                    cos,
                    cy + sin * cx - cos * cy,
                ],
            );
        }
        RandOp::ShearX => affine(img, shape, [1.0, sign * 0.3 * m, 0.0, 0.0, 1.0, 0.0]),
        RandOp::ShearY => affine(img, shape, [1.0, 0.0, 0.0, sign * 0.3 * m, 1.0, 0.0]),
        RandOp::TranslateX => {
            let dx = sign * 0.45 * m * w as f32;
            affine(img, shape, [1.0, 0.0, dx, 0.0, 1.0, 0.0]);
        }
        RandOp::TranslateY => {
            let dy = sign * 0.45 * m * h as f32;
            affine(img, shape, [1.0, 0.0, 0.0, 0.0, 1.0, dy]);
        }
    }
}

/// Augments one `[C, H, W]` sample in [0, 1]: RandomResizedCrop (or the padded crop), flip, then
/// RandAugment; returns the pixels and their shape. Without a resized crop and RandAugment this
/// is exactly [`crop_flip`].
pub fn augment_sample(
    img: Vec<f32>,
    shape: [usize; 3],
    cfg: &AugmentConfig,
    rng: &mut Rng,
) -> (Vec<f32>, [usize; 3]) {
    let (mut img, shape) = match &cfg.resized_crop {
        Some(r) => {
            let [c, h, w] = shape;
            let size = if r.size > 0 { r.size } else { h };
            let b = r.sample_box(h, w, rng);
            (resize_box(&img, shape, b, (size, size)), [c, size, size])
        }
        None => (img, shape),
    };
    crop_flip(&mut img, shape, cfg, rng);
    if let Some(ra) = &cfg.rand_augment {
        ra.apply(&mut img, shape, rng);
    }
    (img, shape)
}

/// Random crop with zero padding and horizontal flip of one `[C, H, W]` image in [0, 1], in
/// place, seeded by `rng`.
pub fn crop_flip(img: &mut [f32], shape: [usize; 3], cfg: &AugmentConfig, rng: &mut Rng) {
    let [c, h, w] = shape;
    let p = cfg.crop_padding;
    if p > 0 {
        // Output pixel (y, x) reads input (y + dy - p, x + dx - p), zero outside.
        let dy = rng.below(2 * p + 1) as isize - p as isize;
        let dx = rng.below(2 * p + 1) as isize - p as isize;
        if dy != 0 || dx != 0 {
            let src = img.to_vec();
            for ch in 0..c {
                for y in 0..h {
                    let sy = y as isize + dy;
                    for x in 0..w {
                        let sx = x as isize + dx;
                        img[(ch * h + y) * w + x] =
                            if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                                src[(ch * h + sy as usize) * w + sx as usize]
                            } else {
                                0.0
                            };
                    }
                }
            }
        }
    }
    if cfg.hflip && rng.below(2) == 1 {
        for row in img.chunks_exact_mut(w) {
            row.reverse();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rand_augment_parses_timm_policy_and_stays_in_range() {
        let ra = RandAugment::parse("rand-m9-mstd0.5-inc1").expect("timm policy");
        assert_eq!(
            ra,
            RandAugment {
                num_ops: 2,
                magnitude: 9.0,
                magnitude_std: 0.5,
                prob: 0.5
            }
        );
        assert_eq!(
            RandAugment::parse("rand-m5-n3-inc1-p1").expect("p").num_ops,
            3
        );
        for bad in [
            "rand-m9",
            "auto-m9-inc1",
            "rand-q9-inc1",
            "rand-mx-inc1",
            "rand-m11-inc1",
        ] {
            assert!(RandAugment::parse(bad).is_err(), "{bad}");
        }
        let shape = [3, 8, 8];
        let base: Vec<f32> = (0..192).map(|i| (i % 17) as f32 / 16.0).collect();
        for op in RandOp::ALL {
            for sign in [-1.0, 1.0] {
                let mut x = base.clone();
                apply_op(op, 0.9, sign, &mut x, shape);
                assert!(x.iter().all(|v| (0.0..=1.0).contains(v)), "{op:?}");
                if !matches!(op, RandOp::AutoContrast | RandOp::Equalize) {
                    assert_ne!(x, base, "{op:?} at magnitude 9 changes the image");
                }
            }
            // Magnitude 0 of the factor and geometric ops is the identity.
            if matches!(op, RandOp::Brightness | RandOp::ShearX | RandOp::TranslateY) {
                let mut x = base.clone();
                apply_op(op, 0.0, 1.0, &mut x, shape);
                for (a, b) in x.iter().zip(&base) {
                    assert!((a - b).abs() < 1e-5, "{op:?}");
                }
            }
        }
        let run = |k: u64| {
            let mut x = base.clone();
            ra.apply(&mut x, shape, &mut Rng::from_keys(&[k]));
            x
        };
        assert_eq!(run(3), run(3));
        assert!((0..10).any(|k| run(k) != base));
    }

    #[test]
    fn random_resized_crop_boxes_and_resize() {
        let rrc = ResizedCrop {
            size: 4,
            scale: [0.08, 1.0],
            ratio: [0.75, 4.0 / 3.0],
        };
        for k in 0..50 {
            let (t, l, bh, bw) = rrc.sample_box(10, 12, &mut Rng::from_keys(&[k]));
            assert!(bh >= 1 && bw >= 1 && t + bh <= 10 && l + bw <= 12);
        }
        // Resizing the whole of a constant image keeps it; a box picks its own pixels.
        let img: Vec<f32> = (0..2 * 6 * 6).map(|i| (i / 36) as f32).collect();
        let out = resize_box(&img, [2, 6, 6], (0, 0, 6, 6), (3, 3));
        assert!(out[..9].iter().all(|v| *v == 0.0) && out[9..].iter().all(|v| *v == 1.0));
        let ramp: Vec<f32> = (0..16).map(|i| (i % 4) as f32).collect();
        let same = resize_box(&ramp, [1, 4, 4], (0, 1, 2, 2), (2, 2));
        assert_eq!(same, vec![1.0, 2.0, 1.0, 2.0]);
        let cfg = AugmentConfig {
            resized_crop: Some(rrc),
            hflip: true,
            rand_augment: Some(RandAugment::parse("rand-m9-mstd0.5-inc1").expect("ra")),
            ..AugmentConfig::default()
        };
        cfg.validate().expect("valid");
        assert_eq!(cfg.output_shape([3, 10, 12]), [3, 4, 4]);
        let img: Vec<f32> = (0..360).map(|i| (i % 7) as f32 / 7.0).collect();
        let (a, s) = augment_sample(img.clone(), [3, 10, 12], &cfg, &mut Rng::from_keys(&[1]));
        let (b, _) = augment_sample(img, [3, 10, 12], &cfg, &mut Rng::from_keys(&[1]));
        assert_eq!((s, a.len()), ([3, 4, 4], 48));
        assert_eq!(a, b);
        let both = AugmentConfig {
            crop_padding: 2,
            ..cfg
        };
        assert!(both.validate().is_err());
    }

    #[test]
    fn crop_flip_is_seeded_and_shifts_content() {
        let shape = [1, 4, 4];
        let base: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
        let cfg = AugmentConfig {
            crop_padding: 1,
            hflip: true,
            ..AugmentConfig::default()
        };
        let run = |k: u64| {
            let mut x = base.clone();
            crop_flip(&mut x, shape, &cfg, &mut Rng::from_keys(&[k]));
            x
        };
        assert_eq!(run(1), run(1));
        assert!((0..20).any(|k| run(k) != base));
        // Flip only: exact mirror.
        let flip = AugmentConfig {
            hflip: true,
            ..AugmentConfig::default()
        };
        let mut seen_flip = false;
        for k in 0..10 {
            let mut x = base.clone();
            crop_flip(&mut x, shape, &flip, &mut Rng::from_keys(&[k]));
            if x != base {
                seen_flip = true;
                assert_eq!(x[0], base[3]);
            }
        }
        assert!(seen_flip);
    }
}
