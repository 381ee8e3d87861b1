//! Per-sample attack objectives (all maximised by the attacker).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Large negative logit used to exclude a class from a max.
const EXCLUDED: f64 = -1.0e30;

/// The objective an attack maximises, per sample.
///
/// Untargeted attacks maximise it for the true label `y`; targeted attacks maximise the targeted
/// variant for a target `t` (which always needs its own definition, see each variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Cross-entropy `-log softmax(z)_y` (Goodfellow et al. 2015, Madry et al. 2018); targeted:
    /// `log softmax(z)_t`.
    CrossEntropy,
    /// Margin / CW loss `max_{j != y} z_j - z_y` (Carlini & Wagner 2017, "Towards Evaluating the
    /// Robustness of Neural Networks"); targeted: `z_t - max_{j != t} z_j`.
    Margin,
    /// Difference of logits ratio (Croce & Hein 2020, "Reliable evaluation of adversarial
    /// robustness with an ensemble of diverse parameter-free attacks"):
    /// `-(z_y - max_{j != y} z_j) / (z_π1 - z_π3)`; targeted:
    /// `-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2)`, with `z_π` the sorted logits.
    Dlr,
}

/// Gathers one entry per row: `t[i, idx[i]]`, shape `[n]`.
fn pick<B: Backend>(t: Tensor<B, 2>, idx: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let n = idx.dims()[0];
    t.gather(1, idx.reshape([n, 1])).reshape([n])
}

/// `max_{j != idx} t[i, j]`, shape `[n]`.
fn max_other<B: Backend>(t: Tensor<B, 2>, idx: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [n, c] = t.dims();
    let mask = idx.one_hot::<2>(c).bool();
    t.mask_fill(mask, EXCLUDED).max_dim(1).reshape([n])
}

impl Loss {
    /// Per-sample loss, shape `[n]`, differentiable through `logits`.
    ///
    /// # Shapes
    /// - `logits`: `[n, classes]`, `labels`: `[n]`, `target`: `[n]`.
    ///
    /// # Panics
    /// If there are fewer classes than the loss needs (2; DLR 3; targeted DLR 4).
    pub fn per_sample<B: Backend>(
        self,
        logits: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        target: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 1> {
        let [n, classes] = logits.dims();
        let needed = match (self, &target) {
            (Loss::Dlr, Some(_)) => 4,
            (Loss::Dlr, None) => 3,
            _ => 2,
        };
        assert!(
            classes >= needed,
            "{self:?} loss needs at least {needed} classes, the logits have {classes}"
        );
        match (self, target) {
            (Loss::CrossEntropy, None) => {
                -pick(burn::tensor::activation::log_softmax(logits, 1), labels)
            }
            (Loss::CrossEntropy, Some(t)) => {
                pick(burn::tensor::activation::log_softmax(logits, 1), t)
            }
            (Loss::Margin, None) => {
                max_other(logits.clone(), labels.clone()) - pick(logits, labels)
            }
            (Loss::Margin, Some(t)) => pick(logits.clone(), t.clone()) - max_other(logits, t),
            (Loss::Dlr, target) => {
                let order = logits
                    .clone()
                    .argsort_descending(1)
                    .slice([0..n, 0..needed]);
                let sorted = logits.clone().gather(1, order);
                let top = |k: usize| sorted.clone().slice([0..n, k..k + 1]).reshape([n]);
                match target {
                    None => {
                        let num = pick(logits.clone(), labels.clone()) - max_other(logits, labels);
                        let den = (top(0) - top(2)).add_scalar(1e-12);
                        -(num / den)
                    }
                    Some(t) => {
                        let num = pick(logits.clone(), labels) - pick(logits, t);
                        let den = (top(0) - (top(2) + top(3)).mul_scalar(0.5)).add_scalar(1e-12);
                        -(num / den)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Tolerance;

    #[test]
    fn losses_match_hand_computed_values() {
        let device = Default::default();
        let z =
            Tensor::<Flex, 2>::from_floats([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 0.5]], &device);
        let y = Tensor::<Flex, 1, Int>::from_ints([0, 2], &device);
        let t = Tensor::<Flex, 1, Int>::from_ints([1, 1], &device);
        let m = Loss::Margin.per_sample(z.clone(), y.clone(), None);
        m.into_data()
            .assert_approx_eq::<f32>(&TensorData::from([-2.0, 1.0]), Tolerance::default());
        let mt = Loss::Margin.per_sample(z.clone(), y.clone(), Some(t.clone()));
        mt.into_data()
            .assert_approx_eq::<f32>(&TensorData::from([-2.0, 1.0]), Tolerance::default());
        // DLR: -(z_y - max_other) / (z1 - z3)
        let d = Loss::Dlr.per_sample(z.clone(), y.clone(), None);
        d.into_data().assert_approx_eq::<f32>(
            &TensorData::from([-(3.0 - 1.0) / (3.0 - 0.0), -(1.0 - 2.0) / (2.0 - 0.5)]),
            Tolerance::default(),
        );
        let dt = Loss::Dlr.per_sample(z.clone(), y.clone(), Some(t));
        dt.into_data().assert_approx_eq::<f32>(
            &TensorData::from([
                -(3.0 - 1.0) / (3.0 - (0.0 - 1.0) / 2.0),
                -(1.0 - 2.0) / (2.0 - 0.25),
            ]),
            Tolerance::default(),
        );
        let ce = Loss::CrossEntropy
            .per_sample(z, y, None)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let lse0 = (3f32.exp() + 1f32.exp() + 1.0 + (-1f32).exp()).ln();
        assert!((ce[0] - (lse0 - 3.0)).abs() < 1e-5);
    }
}
