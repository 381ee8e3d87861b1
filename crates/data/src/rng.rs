//! A small, explicit, seedable random number generator.
//!
//! Every random choice in this crate is derived from a tuple of keys, e.g.
//! `(seed, epoch, sample_index)`, so results never depend on thread scheduling, on the number of
//! workers or on the order in which samples are visited. The generator is SplitMix64 (Steele,
//! Lea & Flood 2014): tiny, fast and with a fixed output for a fixed key, independent of the
//! `rand` crate's version.

/// A SplitMix64 generator seeded from a tuple of keys.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose stream is a function of `keys` only.
    pub fn from_keys(keys: &[u64]) -> Self {
        let mut s = 0x2545_F491_4F6C_DD1D_u64;
        for &k in keys {
            s = mix(s.wrapping_add(GOLDEN) ^ mix(k.wrapping_add(GOLDEN)));
        }
        Self { state: s }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Standard normal sample (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform_f64().max(f64::MIN_POSITIVE);
        let u2 = self.uniform_f64();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Gamma(shape, 1) sample (Marsaglia & Tsang 2000), `shape > 0`.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = self.uniform_f64().max(f64::MIN_POSITIVE);
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal() as f64;
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform_f64().max(f64::MIN_POSITIVE);
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// Beta(a, b) sample.
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        if x + y == 0.0 { 0.5 } else { x / (x + y) }
    }

    /// Poisson(lambda) sample: exact (Knuth) for small lambda, normal approximation above 30.
    pub fn poisson(&mut self, lambda: f64) -> f64 {
        if lambda <= 0.0 {
            return 0.0;
        }
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal() as f64)
                .round()
                .max(0.0);
        }
        let l = (-lambda).exp();
        let mut k = 0.0;
        let mut p = 1.0;
        loop {
            p *= self.uniform_f64();
            if p <= l {
                return k;
            }
            k += 1.0;
        }
    }

    /// Shuffle a slice in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_keys_same_stream_and_keys_matter() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Rng::from_keys(&[1, 2]), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Rng::from_keys(&[1, 2]), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Rng::from_keys(&[2, 1]), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn distributions_have_plausible_moments() {
        let mut r = Rng::from_keys(&[7]);
        let n = 20_000;
        let mean_u: f32 = (0..n).map(|_| r.uniform()).sum::<f32>() / n as f32;
        assert!((mean_u - 0.5).abs() < 0.02);
        let mean_n: f32 = (0..n).map(|_| r.normal()).sum::<f32>() / n as f32;
        assert!(mean_n.abs() < 0.05);
        let mean_b: f64 = (0..n).map(|_| r.beta(0.4, 0.4)).sum::<f64>() / n as f64;
        assert!((mean_b - 0.5).abs() < 0.03);
        let mean_p: f64 = (0..n).map(|_| r.poisson(3.0)).sum::<f64>() / n as f64;
        assert!((mean_p - 3.0).abs() < 0.1);
        assert!((0..1000).all(|_| r.below(5) < 5));
    }
}
