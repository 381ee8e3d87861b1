//! A keyed, counter-free random stream (SplitMix64) so that a sample's random start depends only
//! on `(seed, sample id, restart, purpose)`, never on the batch it sits in.

/// What the stream is for; keeps the noise of different attacks independent.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    PgdStart = 1,
    ApgdStart = 2,
    Square = 3,
}

/// SplitMix64 (Steele, Lea & Flood 2014), seeded by hashing the key.
#[derive(Clone, Debug)]
pub(crate) struct KeyedRng {
    state: u64,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl KeyedRng {
    pub(crate) fn new(seed: u64, id: u64, restart: u64, purpose: Purpose) -> Self {
        let mut s = mix(seed ^ 0x9e37_79b9_7f4a_7c15);
        s = mix(s ^ id.wrapping_mul(0xd1b5_4a32_d192_ed03));
        s = mix(s ^ restart.wrapping_mul(0x8cb9_2ba7_2f3d_8dd7));
        s = mix(s ^ (purpose as u64).wrapping_mul(0xa24b_aed4_963e_e407));
        Self { state: s }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [-1, 1).
    pub(crate) fn symmetric(&mut self) -> f64 {
        2.0 * self.uniform() - 1.0
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in [0, n).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        (self.uniform() * n as f64) as usize % n
    }

    /// +1 or -1 with equal probability.
    pub(crate) fn sign(&mut self) -> f64 {
        if self.next_u64() >> 63 == 0 {
            -1.0
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_keyed_and_reproducible() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = KeyedRng::new(1, 2, 0, Purpose::PgdStart);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = KeyedRng::new(1, 2, 0, Purpose::PgdStart);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(
            KeyedRng::new(1, 2, 1, Purpose::PgdStart).next_u64(),
            KeyedRng::new(1, 2, 0, Purpose::PgdStart).next_u64()
        );
        let mut r = KeyedRng::new(7, 7, 7, Purpose::Square);
        let mean: f64 = (0..4000).map(|_| r.uniform()).sum::<f64>() / 4000.0;
        assert!((mean - 0.5).abs() < 0.03, "{mean}");
    }
}
