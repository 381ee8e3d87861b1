//! Threat models: the ε-ball, its projection, step normalization and random starts, written once
//! for ℓ∞ and ℓ2 (after foolbox's `gradient_descent_base`, Rauber et al. 2017).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::rng::{KeyedRng, Purpose};

/// Guards divisions by a norm.
pub(crate) const TINY: f64 = 1e-12;

/// The perturbation set `{x' : ||x' - x|| <= eps, x' in [0, 1]^d}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreatModel {
    /// ℓ∞ ball (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks").
    Linf,
    /// ℓ2 ball.
    L2,
}

impl std::fmt::Display for ThreatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ThreatModel::Linf => "linf",
            ThreatModel::L2 => "l2",
        })
    }
}

/// Per-sample ℓ2 norm of a `[n, c, h, w]` tensor, shaped `[n, 1, 1, 1]`.
pub(crate) fn l2_norm4<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = t.dims();
    t.powi_scalar(2)
        .reshape([n, c * h * w])
        .sum_dim(1)
        .sqrt()
        .reshape([n, 1, 1, 1])
}

/// Broadcasts a per-sample mask `[n]` to `[n, c, h, w]`.
pub(crate) fn expand_mask<B: Backend>(
    mask: Tensor<B, 1, Bool>,
    dims: [usize; 4],
) -> Tensor<B, 4, Bool> {
    mask.reshape([dims[0], 1, 1, 1]).expand(dims)
}

impl ThreatModel {
    /// Projects `x` onto the ε-ball around `x0` and then onto the [0, 1] box.
    ///
    /// Clamping to the box after the ball projection never leaves the ball because `x0` is in the
    /// box, and neither step increases the distance to `x0`. With `eps = 0` the result is `x0`.
    ///
    /// # Shapes
    /// - `x0`, `x`: `[n, c, h, w]`; returns `[n, c, h, w]`.
    pub fn project<B: Backend>(self, x0: &Tensor<B, 4>, x: Tensor<B, 4>, eps: f64) -> Tensor<B, 4> {
        let projected = match self {
            ThreatModel::Linf => x
                .max_pair(x0.clone().sub_scalar(eps))
                .min_pair(x0.clone().add_scalar(eps)),
            ThreatModel::L2 => {
                let delta = x - x0.clone();
                let norm = l2_norm4(delta.clone());
                let factor = norm.add_scalar(TINY).recip().mul_scalar(eps).clamp_max(1.0);
                x0.clone() + delta * factor
            }
        };
        projected.clamp(0.0, 1.0)
    }

    /// The steepest-ascent direction of unit norm for a gradient: `sign(g)` for ℓ∞, `g / ||g||2`
    /// for ℓ2 (zero where the gradient is zero).
    pub fn normalize_step<B: Backend>(self, g: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            ThreatModel::Linf => g.sign(),
            ThreatModel::L2 => {
                let norm = l2_norm4(g.clone());
                g / norm.add_scalar(TINY)
            }
        }
    }

    /// Per-sample distance `||a - b||` in this norm, shape `[n]`.
    pub fn distance<B: Backend>(self, a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 1> {
        let d = a - b;
        let [n, c, h, w] = d.dims();
        match self {
            ThreatModel::Linf => d.abs().reshape([n, c * h * w]).max_dim(1).reshape([n]),
            ThreatModel::L2 => l2_norm4(d).reshape([n]),
        }
    }

    /// Host-side random start noise for one restart, keyed per sample: for each id a perturbation
    /// of norm at most `eps` (uniform in the ℓ∞ cube / uniform in the ℓ2 ball, as in Madry et al.
    /// 2018; with `on_sphere` the APGD start of Croce & Hein 2020: `eps * t / ||t||`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_noise(
        self,
        eps: f64,
        sample_dims: [usize; 3],
        ids: &[u64],
        seed: u64,
        restart: u64,
        purpose: Purpose,
        on_sphere: bool,
    ) -> Vec<f32> {
        let d = sample_dims.iter().product::<usize>();
        let mut out = Vec::with_capacity(ids.len() * d);
        for &id in ids {
            let mut rng = KeyedRng::new(seed, id, restart, purpose);
            match self {
                ThreatModel::Linf => {
                    let t: Vec<f64> = (0..d).map(|_| rng.symmetric()).collect();
                    let scale = if on_sphere {
                        let m = t.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                        eps / m.max(TINY)
                    } else {
                        eps
                    };
                    out.extend(t.iter().map(|v| (v * scale) as f32));
                }
                ThreatModel::L2 => {
                    let g: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
                    let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt().max(TINY);
                    let radius = if on_sphere {
                        eps
                    } else {
                        eps * rng.uniform().powf(1.0 / d as f64)
                    };
                    out.extend(g.iter().map(|v| (v / norm * radius) as f32));
                }
            }
        }
        out
    }

    /// `project(x0 + noise)` for the keyed noise of [`ThreatModel::start_noise`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn random_start<B: Backend>(
        self,
        x0: &Tensor<B, 4>,
        eps: f64,
        ids: &[u64],
        seed: u64,
        restart: u64,
        purpose: Purpose,
        on_sphere: bool,
    ) -> Tensor<B, 4> {
        let dims = x0.dims();
        let noise = self.start_noise(
            eps,
            [dims[1], dims[2], dims[3]],
            ids,
            seed,
            restart,
            purpose,
            on_sphere,
        );
        let noise = Tensor::<B, 4>::from_data(TensorData::new(noise, dims), &x0.device());
        self.project(x0, x0.clone() + noise, eps)
    }

    /// Checks `eps` for this threat model.
    pub(crate) fn check_eps(self, eps: f64) -> Result<(), crate::AttackError> {
        let ok = eps.is_finite()
            && eps >= 0.0
            && match self {
                ThreatModel::Linf => eps <= 1.0,
                ThreatModel::L2 => true,
            };
        if ok {
            Ok(())
        } else {
            Err(crate::AttackError::Eps(eps))
        }
    }
}
