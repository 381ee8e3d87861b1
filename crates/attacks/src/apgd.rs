//! Auto-PGD (APGD-CE, APGD-DLR, APGD-T).

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::attack::Attack;
use crate::core::{
    AttackOutput, Cost, Objective, Oracle, assign_rows, indices, ranked_other_class, to_host_bools,
};
use crate::error::{AttackError, MAX_RESTARTS, MAX_STEPS, MAX_TARGET_CLASSES, check_counts};
use crate::loss::Loss;
use crate::rng::Purpose;
use crate::threat::{ThreatModel, expand_mask};

/// APGD's objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApgdLoss {
    /// APGD-CE: untargeted cross-entropy.
    Ce,
    /// APGD-DLR: untargeted difference of logits ratio.
    Dlr,
    /// APGD-T: targeted DLR, run once per target class (the 2nd, 3rd, ... most likely classes at
    /// the clean point), each run only on the samples still robust.
    DlrTargeted,
}

/// Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
/// of diverse parameter-free attacks", ICML): step size 2ε halved at checkpoints
/// `w_j = ⌈p_j N⌉` (p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)) when
/// fewer than ρ·(w_j − w_{j−1}) steps increased the loss, or when the step was not reduced at the
/// previous checkpoint and the best loss has not improved since; after halving it restarts from
/// the best point. Momentum 0.75, best-point tracking. Follows the reference implementation
/// (fra31/auto-attack, `apgd-attack.py`) with one documented difference: the oscillation count at
/// the first checkpoint compares the first step against the loss at the starting point (the
/// reference compares against an unset entry, 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApgdConfig {
    /// The perturbation set.
    pub threat: ThreatModel,
    /// Radius.
    pub eps: f64,
    /// Iterations N per run (100 in AutoAttack's standard version).
    pub n_iter: usize,
    /// Restarts (1 in AutoAttack's standard version); later restarts attack only the samples
    /// still robust.
    pub restarts: usize,
    /// Objective.
    pub loss: ApgdLoss,
    /// Target classes for [`ApgdLoss::DlrTargeted`] (9 in AutoAttack; capped at classes − 1).
    pub n_target_classes: usize,
    /// Oscillation threshold ρ (0.75).
    pub rho: f64,
    /// Momentum α (0.75).
    pub momentum: f64,
}

impl ApgdConfig {
    /// APGD-CE with AutoAttack's standard settings.
    pub fn ce(threat: ThreatModel, eps: f64) -> Self {
        Self {
            threat,
            eps,
            n_iter: 100,
            restarts: 1,
            loss: ApgdLoss::Ce,
            n_target_classes: 9,
            rho: 0.75,
            momentum: 0.75,
        }
    }
    /// APGD-T (targeted DLR, 9 targets) with AutoAttack's standard settings.
    pub fn targeted(threat: ThreatModel, eps: f64) -> Self {
        Self {
            loss: ApgdLoss::DlrTargeted,
            ..Self::ce(threat, eps)
        }
    }
    /// Sets the iterations per run.
    pub fn with_n_iter(mut self, n_iter: usize) -> Self {
        self.n_iter = n_iter;
        self
    }
    /// Sets the restarts.
    pub fn with_restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts;
        self
    }
    /// Sets the objective.
    pub fn with_loss(mut self, loss: ApgdLoss) -> Self {
        self.loss = loss;
        self
    }
    /// Sets the number of target classes.
    pub fn with_n_target_classes(mut self, n: usize) -> Self {
        self.n_target_classes = n;
        self
    }

    /// Checks the fields.
    pub fn validate(&self) -> Result<(), AttackError> {
        self.threat.check_eps(self.eps)?;
        check_counts(&[
            ("n_iter", self.n_iter, MAX_STEPS),
            ("restarts", self.restarts, MAX_RESTARTS),
            (
                "n_target_classes",
                self.n_target_classes,
                MAX_TARGET_CLASSES,
            ),
        ])?;
        for (field, value) in [("rho", self.rho), ("momentum", self.momentum)] {
            if !(value > 0.0 && value <= 1.0) {
                return Err(AttackError::Fraction { field, value });
            }
        }
        Ok(())
    }

    /// A validated attack.
    pub fn init(self) -> Result<Apgd, AttackError> {
        self.validate()?;
        Ok(Apgd { config: self })
    }
}

/// A validated APGD attack (Croce & Hein 2020); see [`ApgdConfig`].
#[derive(Clone, Debug)]
pub struct Apgd {
    config: ApgdConfig,
}

/// One run's result on a (sub)batch.
struct Run<B: Backend> {
    x: Tensor<B, 4>,
    success: Tensor<B, 1, Bool>,
}

impl Apgd {
    /// The configuration.
    pub fn config(&self) -> &ApgdConfig {
        &self.config
    }

    /// The checkpoint lengths `w_j − w_{j−1}` of the reference implementation for `n_iter`.
    pub fn checkpoint_lengths(n_iter: usize) -> Vec<usize> {
        let n = n_iter as f64;
        let mut k = ((0.22 * n) as usize).max(1);
        let size_decr = ((0.03 * n) as usize).max(1);
        let k_min = ((0.06 * n) as usize).max(1);
        let mut out = Vec::new();
        let mut at = 0;
        while at + k <= n_iter {
            at += k;
            out.push(k);
            k = k.saturating_sub(size_decr).max(k_min);
        }
        out
    }

    fn single_run<AD, F>(
        &self,
        oracle: &Oracle<'_, AD, F>,
        x: &Tensor<AD::InnerBackend, 4>,
        start: Tensor<AD::InnerBackend, 4>,
        objective: &Objective<AD::InnerBackend>,
    ) -> Run<AD::InnerBackend>
    where
        AD: AutodiffBackend,
        F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
    {
        let c = &self.config;
        let dims = x.dims();
        let n = dims[0];
        let device = x.device();
        let threat = c.threat;
        let proj = |t: Tensor<AD::InnerBackend, 4>| threat.project(x, t, c.eps);

        let mut x_adv = start;
        let (logits, loss, mut grad) = oracle.value_and_grad(x_adv.clone(), objective);
        let mut fooled = objective.success(logits);
        let mut x_best_adv = x_adv.clone();
        let mut x_best = x_adv.clone();
        let mut grad_best = grad.clone();
        let mut loss_best = loss.clone();
        let mut step = Tensor::<AD::InnerBackend, 4>::full([n, 1, 1, 1], 2.0 * c.eps, &device);
        let mut x_old = x_adv.clone();
        let mut losses: Vec<Tensor<AD::InnerBackend, 1>> = vec![loss];
        let mut loss_best_last_check = loss_best.clone();
        let mut reduced_last_check = Tensor::<AD::InnerBackend, 1, Bool>::full([n], true, &device);
        let lengths = Self::checkpoint_lengths(c.n_iter);
        let mut next_check = lengths.first().copied();
        let mut check_index = 0;
        let mut since_check = 0;

        for i in 0..c.n_iter {
            let a = if i > 0 { c.momentum } else { 1.0 };
            let momentum_term = x_adv.clone() - x_old;
            x_old = x_adv.clone();
            let z = proj(x_adv.clone() + threat.normalize_step(grad).mul(step.clone()));
            x_adv =
                proj(x_adv.clone() + (z - x_adv).mul_scalar(a) + momentum_term.mul_scalar(1.0 - a));

            let (logits, loss, g) = oracle.value_and_grad(x_adv.clone(), objective);
            grad = g;
            let now_fooled = objective.success(logits);
            x_best_adv =
                x_best_adv.mask_where(expand_mask(now_fooled.clone(), dims), x_adv.clone());
            fooled = fooled.bool_or(now_fooled);

            let improved = loss.clone().greater(loss_best.clone());
            let improved4 = expand_mask(improved.clone(), dims);
            x_best = x_best.mask_where(improved4.clone(), x_adv.clone());
            grad_best = grad_best.mask_where(improved4, grad.clone());
            loss_best = loss_best.mask_where(improved, loss.clone());
            losses.push(loss);

            since_check += 1;
            if Some(since_check) == next_check {
                let k = since_check;
                // losses[j + 1] is the loss after step j; losses[0] the start.
                let end = losses.len() - 1;
                let mut increases = Tensor::<AD::InnerBackend, 1>::zeros([n], &device);
                for j in (end + 1 - k)..=end {
                    increases =
                        increases + losses[j].clone().greater(losses[j - 1].clone()).float();
                }
                let oscillating = increases.lower_equal_elem(k as f64 * c.rho);
                let stalled = reduced_last_check
                    .bool_not()
                    .bool_and(loss_best_last_check.greater_equal(loss_best.clone()));
                let reduce = oscillating.bool_or(stalled);
                reduced_last_check = reduce.clone();
                loss_best_last_check = loss_best.clone();
                let halve = reduce
                    .clone()
                    .float()
                    .mul_scalar(-0.5)
                    .add_scalar(1.0)
                    .reshape([n, 1, 1, 1]);
                step = step.mul(halve);
                let reduce4 = expand_mask(reduce, dims);
                x_adv = x_adv.mask_where(reduce4.clone(), x_best.clone());
                grad = grad.mask_where(reduce4, grad_best.clone());
                check_index += 1;
                next_check = lengths.get(check_index).copied();
                since_check = 0;
            }
        }
        let fooled4 = expand_mask(fooled.clone(), dims);
        Run {
            x: x_best.mask_where(fooled4, x_best_adv),
            success: fooled,
        }
    }
}

/// Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
/// of diverse parameter-free attacks", ICML); see [`ApgdConfig`] for the schedule.
impl Attack for Apgd {
    const NAME: &'static str = "apgd";

    /// Attacks `x` (labels `y`) through the logits closure `f`; see [`Attack::attack`] for
    /// the contract on `f`. Returns, per sample, a misclassified point if one was found, else the
    /// point of highest loss. Success is untargeted misclassification for every loss.
    ///
    /// The step loop reads nothing back to the host; between restarts / target classes the
    /// success mask is read once to attack only the samples still robust.
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
        let n = x.dims()[0];
        let oracle = Oracle::<AD, F>::new(f);
        let device = x.device();
        let (targets, ranks): (Option<Tensor<AD::InnerBackend, 2>>, Vec<usize>) = match c.loss {
            ApgdLoss::DlrTargeted => {
                let logits = oracle.logits(x.clone());
                let classes = logits.dims()[1];
                let k = c.n_target_classes.min(classes.saturating_sub(1)).max(1);
                (Some(logits), (0..k).collect())
            }
            _ => (None, vec![0]),
        };
        let mut x_out = x.clone();
        let mut done = vec![false; n];
        let mut run_index = 0u64;
        for &rank in &ranks {
            for restart in 0..c.restarts {
                let todo: Vec<bool> = done.iter().map(|d| !d).collect();
                let (rows, idx) = indices::<AD::InnerBackend>(&todo, &device);
                if rows.is_empty() {
                    break;
                }
                let sub_ids: Vec<u64> = rows.iter().map(|&i| ids[i]).collect();
                let x_sub = x.clone().select(0, idx.clone());
                let y_sub = y.clone().select(0, idx.clone());
                let objective = match (&targets, c.loss) {
                    (Some(logits), _) => Objective {
                        loss: Loss::Dlr,
                        target: Some(
                            ranked_other_class(logits.clone(), y.clone(), rank)
                                .select(0, idx.clone()),
                        ),
                        labels: y_sub,
                        success_is_target: false,
                    },
                    (None, loss) => Objective {
                        loss: if loss == ApgdLoss::Ce {
                            Loss::CrossEntropy
                        } else {
                            Loss::Dlr
                        },
                        labels: y_sub,
                        target: None,
                        success_is_target: false,
                    },
                };
                let start = c.threat.random_start(
                    &x_sub,
                    c.eps,
                    &sub_ids,
                    seed,
                    (rank * c.restarts + restart) as u64,
                    Purpose::ApgdStart,
                    true,
                );
                let run = self.single_run(&oracle, &x_sub, start, &objective);
                x_out = assign_rows(x_out, idx, run.x);
                for (&i, s) in rows.iter().zip(to_host_bools(run.success)) {
                    done[i] |= s;
                }
                run_index += 1;
            }
        }
        tracing::debug!(
            runs = run_index,
            fooled = done.iter().filter(|d| **d).count(),
            "apgd finished"
        );
        let success =
            Tensor::<AD::InnerBackend, 1, Bool>::from_data(TensorData::new(done, [n]), &device);
        let cost: Cost = oracle.cost();
        AttackOutput {
            x_adv: x_out,
            success: Some(success),
            cost,
        }
    }
}
