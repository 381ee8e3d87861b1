//! The learning-rate schedule (linear warmup, then cosine decay) and the per-step seeds: what
//! depends only on the step number.

use crate::config::OptimSection;

/// Linear warmup to `lr`, then cosine decay to `min_lr_ratio · lr`, over `epochs ·
/// steps_per_epoch` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Warmup length in epochs (may be fractional).
    pub warmup_epochs: f64,
    /// Epochs.
    pub epochs: usize,
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
}

impl Schedule {
    /// The schedule of `optim` at `steps_per_epoch` steps per epoch.
    pub fn new(optim: &OptimSection, steps_per_epoch: usize) -> Self {
        Self {
            lr: optim.lr,
            min_lr_ratio: optim.min_lr_ratio,
            warmup_epochs: optim.warmup_epochs,
            epochs: optim.epochs,
            steps_per_epoch,
        }
    }

    /// Optimizer steps in all.
    pub fn total_steps(&self) -> usize {
        self.epochs * self.steps_per_epoch
    }

    /// Linear warmup steps (whole steps, at most all of them).
    pub fn warmup_steps(&self) -> usize {
        ((self.warmup_epochs * self.steps_per_epoch as f64) as usize).min(self.total_steps())
    }

    /// Learning rate at `step`: linear warmup, then cosine decay to `min_lr_ratio · lr`.
    pub fn lr(&self, step: usize) -> f64 {
        let total = (self.epochs * self.steps_per_epoch).max(1) as f64;
        let warmup = (self.warmup_epochs * self.steps_per_epoch as f64).min(total);
        let s = step as f64;
        if s < warmup {
            return self.lr * (s + 1.0) / warmup;
        }
        let progress = ((s - warmup) / (total - warmup).max(1.0)).clamp(0.0, 1.0);
        let min = self.lr * self.min_lr_ratio;
        min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// A distinct, reproducible seed for `step` of a run seeded `seed` (splitmix64 of both).
pub fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The backend seed of `step` on peer `rank`: rank 0 draws what a one-device run draws; other
/// ranks draw their own dropout masks.
pub fn peer_step_seed(seed: u64, rank: usize, step: usize) -> u64 {
    step_seed(seed ^ (rank as u64).wrapping_mul(0x51_7CC1_B727_220A), step)
}

/// The seed of the training attack's random starts at `step`.
pub fn attack_seed(seed: u64, step: usize) -> u64 {
    step_seed(seed ^ 0x00A7_7AC4, step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            lr: 1e-3,
            min_lr_ratio: 0.1,
            warmup_epochs: 0.5,
            epochs: 2,
            steps_per_epoch: 4,
        }
    }

    #[test]
    fn warmup_is_linear_then_the_cosine_ends_at_the_floor() {
        let s = schedule();
        assert_eq!((s.total_steps(), s.warmup_steps()), (8, 2));
        assert_eq!(s.lr(0), 1e-3 * 1.0 / 2.0);
        assert_eq!(s.lr(1), 1e-3);
        assert_eq!(s.lr(2), 1e-3);
        assert!((s.lr(8) - 1e-4).abs() < 1e-15);
        for step in 2..8 {
            assert!(s.lr(step + 1) <= s.lr(step), "decays at {step}");
        }
    }

    #[test]
    fn step_seeds_differ_by_step_rank_and_use() {
        assert_eq!(step_seed(7, 3), step_seed(7, 3));
        assert_ne!(step_seed(7, 3), step_seed(7, 4));
        assert_eq!(peer_step_seed(7, 0, 3), step_seed(7, 3));
        assert_ne!(peer_step_seed(7, 1, 3), step_seed(7, 3));
        assert_ne!(attack_seed(7, 3), step_seed(7, 3));
    }
}
