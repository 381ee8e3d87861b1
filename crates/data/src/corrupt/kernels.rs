//! The corruption kernels: pure functions from a `[C, H, W]` image in [0, 1] (and, for the
//! random ones, a seeded [`Rng`]) to the corrupted pixels. No IO; the parameters per severity
//! live in [`super::Corruption::apply`].

use crate::rng::Rng;

/// A `[C, H, W]` image in [0, 1].
pub(super) struct Img {
    pub(super) data: Vec<f32>,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
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

pub(super) fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
}

/// Separable Gaussian blur of a `[planes, h, w]` buffer with edge clamping.
pub(super) fn blur_planes(data: &mut [f32], h: usize, w: usize, sigma: f32) {
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
pub(super) fn convolve(img: &Img, kernel: &[f32], r: usize) -> Img {
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

pub(super) fn gaussian_noise(mut img: Img, sigma: f32, rng: &mut Rng) -> Vec<f32> {
    for v in &mut img.data {
        *v += sigma * rng.normal();
    }
    img.data
}

/// Poisson(x·λ)/λ, drawn by inverting the CDF with one uniform per pixel (so the draw is a
/// monotone function of the same uniform at every severity).
pub(super) fn shot_noise(mut img: Img, lam: f32, rng: &mut Rng) -> Vec<f32> {
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
pub(super) fn inverse_erf(x: f64) -> f64 {
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

pub(super) fn impulse_noise(mut img: Img, amount: f32, rng: &mut Rng) -> Vec<f32> {
    for v in &mut img.data {
        let (u, salt) = (rng.uniform(), rng.uniform());
        if u < amount {
            *v = if salt < 0.5 { 0.0 } else { 1.0 };
        }
    }
    img.data
}

pub(super) fn defocus_blur(img: Img, (radius, alias_blur): (f32, f32)) -> Vec<f32> {
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
pub(super) fn blur_zero_padded(k: &mut [f32], size: usize, sigma: f32) {
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

pub(super) fn glass_blur(
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
pub(super) fn streak(img: &Img, radius: f32, sigma: f32, angle_deg: f32) -> Img {
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

pub(super) fn motion_blur(img: Img, (radius, sigma): (f32, f32), angle: f32) -> Vec<f32> {
    streak(&img, radius, sigma, angle).data
}

pub(super) fn zoom(img: &Img, z: f32) -> Img {
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

pub(super) fn zoom_blur(img: Img, max_extra: f32) -> Vec<f32> {
    let steps = (max_extra / 0.01).round() as usize; // arange(1, 1 + max_extra, 0.01)
    let mut acc = img.data.clone();
    for i in 0..steps {
        let z = zoom(&img, 1.0 + 0.01 * i as f32);
        acc.iter_mut().zip(&z.data).for_each(|(a, b)| *a += b);
    }
    acc.iter_mut().for_each(|a| *a /= (steps + 1) as f32);
    acc
}

pub(super) fn gray(img: &Img) -> Vec<f32> {
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
pub(super) fn snow(
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
pub(super) fn plasma(mapsize: usize, decay: f32, rng: &mut Rng) -> Vec<f32> {
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

pub(super) fn fog(img: Img, (strength, decay): (f32, f32), rng: &mut Rng) -> Vec<f32> {
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

pub(super) fn brightness(img: Img, c: f32) -> Vec<f32> {
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

pub(super) fn contrast(img: Img, c: f32) -> Vec<f32> {
    let hw = img.h * img.w;
    let mut out = img.data.clone();
    for plane in out.chunks_exact_mut(hw) {
        let mean = plane.iter().sum::<f32>() / hw as f32;
        plane.iter_mut().for_each(|v| *v = (*v - mean) * c + mean);
    }
    out
}

pub(super) fn elastic(img: Img, alpha_per_32: f32, rng: &mut Rng) -> Vec<f32> {
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
pub(super) fn box_weights(n: usize, m: usize) -> Vec<Vec<(usize, f32)>> {
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
pub(super) fn pixelate(img: Img, c: f32) -> Vec<f32> {
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

pub(super) fn jpeg(img: Img, quality: u8) -> Vec<f32> {
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

#[cfg(test)]
mod tests {
    use super::super::Corruption;
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
}
