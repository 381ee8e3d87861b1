//! Square attack (ℓ∞), a score-based black-box attack.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::attack::Attack;
use crate::core::{AttackOutput, Oracle, to_host_bools};
use crate::error::{AttackError, MAX_QUERIES, check_counts};
use crate::loss::Loss;
use crate::rng::{KeyedRng, Purpose};
use crate::threat::{ThreatModel, expand_mask};

/// Square attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a
/// query-efficient black-box adversarial attack via random search", ECCV), ℓ∞ version: start
/// from vertical stripes of ±ε, then each query changes one random square window (side from the
/// p-schedule with `p_init`) to a fresh ±ε per channel and keeps it if the margin loss
/// `z_y − max_{j≠y} z_j` decreased. Uses logits only, no gradients; it exists to detect
/// gradient masking (it should never beat the white-box attacks).
///
/// Differences from the reference: square positions are drawn per sample (keyed by seed, id and
/// query) instead of shared by the batch, so results do not depend on batch composition; the
/// reference's resampling until the window changes is omitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SquareConfig {
    /// Must be [`ThreatModel::Linf`].
    pub threat: ThreatModel,
    /// Radius.
    pub eps: f64,
    /// Query budget per sample (5000 in AutoAttack's standard version).
    pub n_queries: usize,
    /// Initial fraction of pixels changed per query (0.8).
    pub p_init: f64,
}

impl SquareConfig {
    /// AutoAttack's standard settings (5000 queries, p_init 0.8).
    pub fn new(threat: ThreatModel, eps: f64) -> Self {
        Self {
            threat,
            eps,
            n_queries: 5000,
            p_init: 0.8,
        }
    }
    /// Sets the query budget.
    pub fn with_n_queries(mut self, n_queries: usize) -> Self {
        self.n_queries = n_queries;
        self
    }

    /// Checks the fields.
    pub fn validate(&self) -> Result<(), AttackError> {
        if self.threat != ThreatModel::Linf {
            return Err(AttackError::Unsupported {
                attack: "square",
                threat: self.threat.to_string(),
            });
        }
        self.threat.check_eps(self.eps)?;
        check_counts(&[("n_queries", self.n_queries, MAX_QUERIES)])?;
        if !(self.p_init > 0.0 && self.p_init <= 1.0) {
            return Err(AttackError::Fraction {
                field: "p_init",
                value: self.p_init,
            });
        }
        Ok(())
    }

    /// A validated attack.
    pub fn init(self) -> Result<Square, AttackError> {
        self.validate()?;
        Ok(Square { config: self })
    }
}

/// A validated Square attack (Andriushchenko et al. 2020); see [`SquareConfig`].
#[derive(Clone, Debug)]
pub struct Square {
    config: SquareConfig,
}

impl Square {
    /// The configuration.
    pub fn config(&self) -> &SquareConfig {
        &self.config
    }

    /// The reference p-schedule: fraction of pixels changed at query `it` of `n_queries`.
    pub fn p_selection(p_init: f64, it: usize, n_queries: usize) -> f64 {
        let it = (it as f64 / n_queries as f64 * 10000.0) as usize;
        let div = match it {
            0..=10 => 1.0,
            11..=50 => 2.0,
            51..=200 => 4.0,
            201..=500 => 8.0,
            501..=1000 => 16.0,
            1001..=2000 => 32.0,
            2001..=4000 => 64.0,
            4001..=6000 => 128.0,
            6001..=8000 => 256.0,
            _ => 512.0,
        };
        p_init / div
    }
}

/// Square attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a
/// query-efficient black-box adversarial attack via random search", ECCV), ℓ∞; see
/// [`SquareConfig`].
impl Attack for Square {
    const NAME: &'static str = "square";

    /// Attacks through forward passes of `f` only. Random windows and signs are drawn on the
    /// host per query (keyed by seed, sample id and query) and uploaded; every 100 queries the
    /// success mask is read to stop early.
    ///
    /// # Shapes
    /// - `x`: `[n, c, h, w]` in [0, 1]; `y`: `[n]`; `ids`: `n` entries.
    fn perturb<AD, F>(
        &self,
        f: &F,
        x: &Tensor<AD::InnerBackend, 4>,
        y: &Tensor<AD::InnerBackend, 1, Int>,
        ids: &[u64],
        seed: u64,
    ) -> AttackOutput<AD::InnerBackend>
    where
        AD: AutodiffBackend,
        F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
    {
        let c = &self.config;
        let dims = x.dims();
        let [n, ch, h, w] = dims;
        let oracle = Oracle::<AD, F>::new(f);
        let device = x.device();
        let margin =
            |logits: Tensor<AD::InnerBackend, 2>| -Loss::Margin.per_sample(logits, y.clone(), None);
        let mut rngs: Vec<KeyedRng> = ids
            .iter()
            .map(|&id| KeyedRng::new(seed, id, 0, Purpose::Square))
            .collect();

        // Vertical stripes: one sign per (channel, column).
        let mut init = Vec::with_capacity(n * ch * h * w);
        for rng in rngs.iter_mut() {
            for _ in 0..ch {
                let cols: Vec<f32> = (0..w).map(|_| (rng.sign() * c.eps) as f32).collect();
                for _ in 0..h {
                    init.extend_from_slice(&cols);
                }
            }
        }
        let init = Tensor::<AD::InnerBackend, 4>::from_data(TensorData::new(init, dims), &device);
        let mut x_best = c.threat.project(x, x.clone() + init, c.eps);
        let mut margin_best = margin(oracle.logits(x_best.clone()));

        for it in 0..c.n_queries.saturating_sub(1) {
            if it % 100 == 0
                && to_host_bools(margin_best.clone().greater_elem(0.0))
                    .iter()
                    .all(|m| !m)
            {
                break;
            }
            let p = Self::p_selection(c.p_init, it, c.n_queries);
            let side =
                ((p * (h * w) as f64).sqrt().round() as usize).clamp(1, h.saturating_sub(1).max(1));
            let mut delta = vec![0f32; n * ch * h * w];
            for (s, rng) in rngs.iter_mut().enumerate() {
                let vh = rng.below(h - side + 1);
                let vw = rng.below(w - side + 1);
                for k in 0..ch {
                    let v = (2.0 * rng.sign() * c.eps) as f32;
                    for r in vh..vh + side {
                        let row = ((s * ch + k) * h + r) * w;
                        delta[row + vw..row + vw + side].fill(v);
                    }
                }
            }
            // Replace the window (not add to it): x_best + delta moves it by ±2ε, then project.
            let delta =
                Tensor::<AD::InnerBackend, 4>::from_data(TensorData::new(delta, dims), &device);
            let candidate = c.threat.project(x, x_best.clone() + delta, c.eps);
            let m = margin(oracle.logits(candidate.clone()));
            let improved = m
                .clone()
                .lower(margin_best.clone())
                .bool_and(margin_best.clone().greater_elem(0.0));
            x_best = x_best.mask_where(expand_mask(improved.clone(), dims), candidate);
            margin_best = margin_best.mask_where(improved, m);
        }
        let success = margin_best.lower_elem(0.0);
        AttackOutput {
            x_adv: x_best,
            success: Some(success),
            cost: oracle.cost(),
        }
    }
}
