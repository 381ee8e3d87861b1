//! What training changes and a checkpoint keeps: the [`Learner`] (module, optimizer, EMA
//! weights) and the loop [`State`] (position, running loss, f16 loss scale, past epochs).

use advsoup_adapters::AdaptedVit;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::records::EpochMetrics;

/// The trained module `R`, its optimizer `O` and the EMA weights (when `optim.ema_decay > 0`).
pub(crate) struct Learner<B: AutodiffBackend, R, O> {
    /// The regime module (the model inside).
    pub(crate) module: R,
    /// The optimizer.
    pub(crate) optim: O,
    /// The EMA weights, on the inner backend.
    pub(crate) ema: Option<AdaptedVit<B::InnerBackend>>,
}

/// Where the loop is, saved in every checkpoint's `state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// Completed epochs (the current one, 0-based).
    pub(crate) epoch: usize,
    /// Optimizer steps done in the current epoch.
    pub(crate) step_in_epoch: usize,
    /// Optimizer steps done in all.
    pub(crate) global_step: usize,
    /// Sum of the current epoch's step losses.
    pub(crate) loss_sum: f64,
    /// Steps in that sum.
    pub(crate) loss_count: usize,
    /// Training wall time so far (all processes).
    pub(crate) train_seconds: f64,
    /// Metrics of the completed epochs.
    pub(crate) epochs: Vec<EpochMetrics>,
    /// f16 loss scaling: the current scale (`None` when the precision needs none).
    #[serde(default)]
    pub(crate) loss_scale: Option<f64>,
    /// Finite steps in a row at the current scale.
    #[serde(default)]
    pub(crate) finite_steps: usize,
    /// Steps skipped for non-finite scaled gradients, in all.
    #[serde(default)]
    pub(crate) skipped_steps: usize,
}

/// Finite steps in a row after which the f16 loss scale doubles.
const LOSS_SCALE_GROWTH_INTERVAL: usize = 2000;

impl State {
    /// Dynamic loss scaling after a step whose unscaled gradients were `finite` or not: an
    /// overflow halves the scale (not below 1) and the step is skipped; 2000 finite steps in a
    /// row double it. Returns whether to apply the step.
    pub(crate) fn update_loss_scale(&mut self, finite: bool) -> bool {
        let Some(scale) = self.loss_scale else {
            return true;
        };
        if !finite {
            self.loss_scale = Some((scale / 2.0).max(1.0));
            self.finite_steps = 0;
            self.skipped_steps += 1;
            return false;
        }
        self.finite_steps += 1;
        if self.finite_steps == LOSS_SCALE_GROWTH_INTERVAL {
            self.loss_scale = Some(scale * 2.0);
            self.finite_steps = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_f16_loss_scale_halves_on_overflow_and_doubles_after_a_finite_run() {
        let mut s = State {
            loss_scale: Some(8.0),
            ..State::default()
        };
        assert!(!s.update_loss_scale(false), "an overflow skips the step");
        assert_eq!((s.loss_scale, s.skipped_steps), (Some(4.0), 1));
        for _ in 0..LOSS_SCALE_GROWTH_INTERVAL - 1 {
            assert!(s.update_loss_scale(true));
        }
        assert_eq!(s.loss_scale, Some(4.0));
        assert!(s.update_loss_scale(true));
        assert_eq!((s.loss_scale, s.finite_steps), (Some(8.0), 0));
        // An overflow resets the run of finite steps; the scale never drops below 1.
        for _ in 0..10 {
            s.update_loss_scale(false);
        }
        assert_eq!((s.loss_scale, s.skipped_steps), (Some(1.0), 11));
        // Without a scale (f32, bf16) every step applies.
        assert!(State::default().update_loss_scale(false));
    }
}
