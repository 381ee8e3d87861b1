//! Means with 95% intervals over seeds (Student t), and differences paired by seed: the
//! statistics of an adapter sweep's rows and claims. Pure functions, no IO.
//!
//! With n values the interval is mean ± t(0.975, n − 1) · s / √n (s the sample standard
//! deviation). With fewer than two values there is no interval ([`Interval::lo`] and
//! [`Interval::hi`] are `None`, shown as "n/a").

use serde::{Deserialize, Serialize};

/// A mean over seeds with its 95% interval (Student t).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Mean of the values (NaN when there are none).
    pub mean: f64,
    /// Lower end of the 95% interval; `None` with fewer than two values.
    pub lo: Option<f64>,
    /// Upper end; `None` with fewer than two values.
    pub hi: Option<f64>,
    /// Number of values (seeds).
    pub n: usize,
}

impl Interval {
    /// The interval's ends, when there are at least two values.
    pub fn bounds(&self) -> Option<(f64, f64)> {
        self.lo.zip(self.hi)
    }

    /// `mean [lo, hi]` scaled by `scale` with two decimals (`n/a` for the interval of one value).
    pub fn show(&self, scale: f64) -> String {
        if !self.mean.is_finite() {
            return "-".into();
        }
        match self.bounds() {
            Some((lo, hi)) => format!(
                "{:.2} [{:.2}, {:.2}]",
                scale * self.mean,
                scale * lo,
                scale * hi
            ),
            None => format!("{:.2} [n/a]", scale * self.mean),
        }
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (table to 30, then
/// 1.96 + 2.4/df, within 0.003 of the exact value).
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        _ => 1.96 + 2.4 / df as f64,
    }
}

/// Mean and 95% interval of `values` (NaN entries count as values: a NaN makes the mean NaN).
pub fn interval(values: &[f64]) -> Interval {
    let n = values.len();
    if n == 0 {
        return Interval {
            mean: f64::NAN,
            lo: None,
            hi: None,
            n,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Interval {
            mean,
            lo: None,
            hi: None,
            n,
        };
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t975(n - 1) * (var / n as f64).sqrt();
    Interval {
        mean,
        lo: Some(mean - half),
        hi: Some(mean + half),
        n,
    }
}

/// `a − b` for every seed both have, in `a`'s order (a seed present in one list only is left
/// out: pairs share the data order and initialization, nothing else).
pub fn paired(a: &[(u64, f64)], b: &[(u64, f64)]) -> Vec<(u64, f64)> {
    a.iter()
        .filter_map(|&(s, x)| b.iter().find(|(t, _)| *t == s).map(|&(_, y)| (s, x - y)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_student_t_over_seeds() {
        // 3 values, mean 2, s = 1: half-width 4.303 / sqrt(3)
        let i = interval(&[1.0, 2.0, 3.0]);
        assert_eq!((i.mean, i.n), (2.0, 3));
        let half = 4.303 / 3f64.sqrt();
        let (lo, hi) = i.bounds().expect("two or more values");
        assert!((lo - (2.0 - half)).abs() < 1e-12 && (hi - (2.0 + half)).abs() < 1e-12);
        assert_eq!(i.show(1.0), "2.00 [-0.48, 4.48]");
        let one = interval(&[0.5]);
        assert_eq!((one.mean, one.bounds()), (0.5, None));
        assert_eq!(one.show(100.0), "50.00 [n/a]");
        assert!(interval(&[]).mean.is_nan());
        assert!((t975(60) - 2.000).abs() < 0.003 && (t975(120) - 1.980).abs() < 0.003);
    }

    #[test]
    fn pairs_are_matched_by_seed_not_position() {
        let d = paired(&[(0, 0.9), (1, 0.8), (2, 0.7)], &[(2, 0.5), (0, 0.6)]);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].0, 0);
        assert!((d[0].1 - 0.3).abs() < 1e-12);
        assert_eq!(d[1].0, 2);
        assert!((d[1].1 - 0.2).abs() < 1e-12);
    }
}
