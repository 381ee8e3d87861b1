//! Batch-level mixing: mixup (Zhang et al. 2018), CutMix (Yun et al. 2019), and the soft
//! targets they and label smoothing (Szegedy et al. 2016) produce. Sample `i` is mixed with
//! sample `n - 1 - i` of the same batch (timm's "flip" pairing).

use super::AugmentConfig;
use crate::rng::Rng;

/// How a batch was mixed.
#[derive(Clone, Debug, PartialEq)]
pub enum Mix {
    /// Not mixed.
    None,
    /// Mixup with weight λ on the sample itself.
    Mixup(f32),
    /// CutMix: the box `[y0, y1) x [x0, x1)` comes from the partner; λ is the remaining area share.
    CutMix {
        /// Share of the image that stays the sample's own.
        lambda: f32,
        /// Box rows.
        y: (usize, usize),
        /// Box columns.
        x: (usize, usize),
    },
}

/// Mix a batch of `n` images (`[N, C, H, W]`, in place) with partner `n - 1 - i` and return
/// what was done. `rng` should be the batch RNG.
pub fn mix_batch(
    images: &mut [f32],
    n: usize,
    shape: [usize; 3],
    cfg: &AugmentConfig,
    rng: &mut Rng,
) -> Mix {
    let mix_on = cfg.mixup_alpha > 0.0 || cfg.cutmix_alpha > 0.0;
    if !mix_on || n < 2 || rng.uniform() >= cfg.mix_prob {
        return Mix::None;
    }
    let use_cutmix = if cfg.mixup_alpha > 0.0 && cfg.cutmix_alpha > 0.0 {
        rng.uniform() < cfg.cutmix_switch_prob
    } else {
        cfg.cutmix_alpha > 0.0
    };
    let per: usize = shape.iter().product();
    let src = images.to_vec();
    if !use_cutmix {
        let a = cfg.mixup_alpha as f64;
        let lam = rng.beta(a, a) as f32;
        for i in 0..n {
            let j = n - 1 - i;
            let (dst, other) = (
                &mut images[i * per..(i + 1) * per],
                &src[j * per..(j + 1) * per],
            );
            for (d, o) in dst.iter_mut().zip(other) {
                *d = lam * *d + (1.0 - lam) * o;
            }
        }
        return Mix::Mixup(lam);
    }
    let a = cfg.cutmix_alpha as f64;
    let lam = rng.beta(a, a);
    let [c, h, w] = shape;
    let ratio = (1.0 - lam).sqrt();
    let (ch, cw) = ((h as f64 * ratio) as usize, (w as f64 * ratio) as usize);
    let (cy, cx) = (rng.below(h), rng.below(w));
    let y = (cy.saturating_sub(ch / 2), (cy + ch / 2).min(h));
    let x = (cx.saturating_sub(cw / 2), (cx + cw / 2).min(w));
    for i in 0..n {
        let j = n - 1 - i;
        for k in 0..c {
            for yy in y.0..y.1 {
                for xx in x.0..x.1 {
                    let o = (k * h + yy) * w + xx;
                    images[i * per + o] = src[j * per + o];
                }
            }
        }
    }
    let lambda = 1.0 - ((y.1 - y.0) * (x.1 - x.0)) as f32 / (h * w) as f32;
    Mix::CutMix { lambda, y, x }
}

/// Soft targets `[N, K]` (row-major) for labels, a mix and label smoothing ε.
pub fn soft_targets(labels: &[usize], num_classes: usize, mix: &Mix, eps: f32) -> Vec<f32> {
    let n = labels.len();
    let off = eps / num_classes as f32;
    let on = 1.0 - eps + off;
    let lam = match mix {
        Mix::None => 1.0,
        Mix::Mixup(l) => *l,
        Mix::CutMix { lambda, .. } => *lambda,
    };
    let mut t = vec![off; n * num_classes];
    for (i, &y) in labels.iter().enumerate() {
        let partner = labels[n - 1 - i];
        let row = &mut t[i * num_classes..(i + 1) * num_classes];
        row[y] += lam * (on - off);
        row[partner] += (1.0 - lam) * (on - off);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixing_and_soft_targets_sum_to_one() {
        let shape = [1, 8, 8];
        let n = 4;
        let imgs: Vec<f32> = (0..n * 64).map(|i| (i / 64) as f32 / 4.0).collect();
        for cfg in [
            AugmentConfig::default().with_mixing(0.4, 0.0),
            AugmentConfig::default().with_mixing(0.0, 1.0),
        ] {
            let mut x = imgs.clone();
            let mix = mix_batch(&mut x, n, shape, &cfg, &mut Rng::from_keys(&[5]));
            assert_ne!(mix, Mix::None);
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
            let t = soft_targets(&[0, 1, 2, 3], 5, &mix, 0.1);
            for row in t.chunks(5) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
            if let Mix::CutMix { lambda, .. } = mix {
                // λ equals the share of pixels that kept their own value.
                let own = x[..64].iter().filter(|v| **v == 0.0).count() as f32 / 64.0;
                assert!((own - lambda).abs() < 1e-6);
            }
        }
        let t = soft_targets(&[1, 0], 2, &Mix::None, 0.2);
        for (a, b) in t.iter().zip([0.1, 0.9, 0.9, 0.1]) {
            assert!((a - b).abs() < 1e-6, "{t:?}");
        }
        assert!(
            AugmentConfig {
                label_smoothing: 1.0,
                ..AugmentConfig::default()
            }
            .validate()
            .is_err()
        );
    }
}
