//! FGSM and PGD.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::attack::{Attack, check_ids};
use crate::core::{AttackOutput, Best, Objective, Oracle, ranked_other_class};
use crate::error::{AttackError, MAX_RESTARTS, MAX_STEPS, check_counts};
use crate::loss::Loss;
use crate::rng::Purpose;
use crate::threat::ThreatModel;

/// Which iterate PGD returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Per sample, the best evaluated iterate over all steps and restarts: a successful one if
    /// any, else the one of largest loss. Costs one extra forward per restart; makes results
    /// monotone in the number of steps (a longer run sees a superset of iterates).
    Best,
    /// The last iterate (Madry et al. 2018), the training fast path: with one restart no
    /// forward pass beyond the K gradient steps.
    Last,
}

/// Projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to
/// Adversarial Attacks"; Kurakin et al. 2017 without random start).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgdConfig {
    /// The perturbation set.
    pub threat: ThreatModel,
    /// Radius of the ball, in pixel units of [0, 1] images.
    pub eps: f64,
    /// Step size η (in the threat model's norm).
    pub step_size: f64,
    /// Number of gradient steps K.
    pub steps: usize,
    /// Independent restarts; the best per sample is kept.
    pub restarts: usize,
    /// Start at a uniform random point of the ball (keyed by seed, sample id, restart).
    pub random_start: bool,
    /// Objective to maximise.
    pub loss: Loss,
    /// Targeted: push towards the most likely wrong class at the clean point (or the targets
    /// given to [`Pgd::attack_targeted`]); success then means predicting the target.
    pub targeted: bool,
    /// Which iterate to return.
    pub select: Selection,
}

impl PgdConfig {
    /// PGD-`steps` with Madry et al.'s step size 2.5·ε/K, one random restart, cross-entropy,
    /// untargeted, best-iterate selection.
    pub fn new(threat: ThreatModel, eps: f64, steps: usize) -> Self {
        Self {
            threat,
            eps,
            step_size: 2.5 * eps / steps.max(1) as f64,
            steps,
            restarts: 1,
            random_start: true,
            loss: Loss::CrossEntropy,
            targeted: false,
            select: Selection::Best,
        }
    }

    /// Sets the step size η.
    pub fn with_step_size(mut self, step_size: f64) -> Self {
        self.step_size = step_size;
        self
    }
    /// Sets the number of restarts.
    pub fn with_restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts;
        self
    }
    /// Turns the random start on or off.
    pub fn with_random_start(mut self, random_start: bool) -> Self {
        self.random_start = random_start;
        self
    }
    /// Sets the objective.
    pub fn with_loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }
    /// Makes the attack targeted or untargeted.
    pub fn with_targeted(mut self, targeted: bool) -> Self {
        self.targeted = targeted;
        self
    }
    /// Sets which iterate is returned.
    pub fn with_select(mut self, select: Selection) -> Self {
        self.select = select;
        self
    }

    /// Checks the fields. ε = 0 is allowed (the attack is then the identity).
    pub fn validate(&self) -> Result<(), AttackError> {
        self.threat.check_eps(self.eps)?;
        if !(self.step_size.is_finite()
            && (self.step_size > 0.0 || (self.step_size == 0.0 && self.eps == 0.0)))
        {
            return Err(AttackError::StepSize(self.step_size));
        }
        check_counts(&[
            ("steps", self.steps, MAX_STEPS),
            ("restarts", self.restarts, MAX_RESTARTS),
        ])
    }

    /// A validated attack.
    pub fn init(self) -> Result<Pgd, AttackError> {
        self.validate()?;
        Ok(Pgd { config: self })
    }
}

/// A validated PGD attack (Madry et al. 2018); see [`PgdConfig`].
#[derive(Clone, Debug)]
pub struct Pgd {
    config: PgdConfig,
}

impl Pgd {
    /// The configuration.
    pub fn config(&self) -> &PgdConfig {
        &self.config
    }

    /// [`Attack::attack`] with the batch cut into `shards` contiguous parts that are attacked
    /// concurrently on scoped threads, each with its own autodiff graph; the parts' outputs are
    /// concatenated in order and their costs summed (`forward_calls` then counts every shard's
    /// calls).
    ///
    /// The result equals [`Attack::attack`]'s up to float summation order inside the closure:
    /// every sample's objective and random start depend on that sample alone (random starts are
    /// keyed by `ids`). It is a CPU speed-up: burn's CPU backend runs the element-wise ops of a
    /// small model on one core, so two shards keep two cores busy. `shards` is clamped to
    /// `1..=n`; 1 is [`Attack::attack`].
    ///
    /// # Shapes
    /// - `x`: `[n, c, h, w]` in [0, 1]; `y`: `[n]`; `ids`: `n` entries.
    pub fn attack_sharded<AD, F>(
        &self,
        f: &F,
        x: &Tensor<AD::InnerBackend, 4>,
        y: &Tensor<AD::InnerBackend, 1, Int>,
        ids: &[u64],
        seed: u64,
        shards: usize,
    ) -> AttackOutput<AD::InnerBackend>
    where
        AD: AutodiffBackend,
        F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2> + Sync,
    {
        let n = x.dims()[0];
        check_ids(Self::NAME, ids, n);
        let shards = shards.clamp(1, n.max(1));
        if shards == 1 {
            return self.attack::<AD, F>(f, x, y, ids, seed);
        }
        let outputs: Vec<AttackOutput<AD::InnerBackend>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..shards)
                .map(|s| {
                    let (start, end) = (s * n / shards, (s + 1) * n / shards);
                    let xs = x.clone().narrow(0, start, end - start);
                    let ys = y.clone().narrow(0, start, end - start);
                    let ids = &ids[start..end];
                    scope.spawn(move || self.attack::<AD, F>(f, &xs, &ys, ids, seed))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let mut cost = crate::core::Cost::default();
        let mut x_adv = Vec::with_capacity(shards);
        let mut success = Some(Vec::with_capacity(shards));
        for out in outputs {
            cost += out.cost;
            x_adv.push(out.x_adv);
            success = match (success, out.success) {
                (Some(mut all), Some(s)) => {
                    all.push(s);
                    Some(all)
                }
                _ => None,
            };
        }
        AttackOutput {
            x_adv: Tensor::cat(x_adv, 0),
            success: success.map(|s| Tensor::cat(s, 0)),
            cost,
        }
    }

    /// Targeted attack towards the given classes (the config's `targeted` flag is implied).
    ///
    /// # Shapes
    /// - `x`: `[n, c, h, w]`; `y`, `targets`: `[n]`.
    pub fn attack_targeted<AD, F>(
        &self,
        f: &F,
        x: &Tensor<AD::InnerBackend, 4>,
        y: &Tensor<AD::InnerBackend, 1, Int>,
        targets: &Tensor<AD::InnerBackend, 1, Int>,
        ids: &[u64],
        seed: u64,
    ) -> AttackOutput<AD::InnerBackend>
    where
        AD: AutodiffBackend,
        F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
    {
        check_ids(Self::NAME, ids, x.dims()[0]);
        let oracle = Oracle::<AD, F>::new(f);
        self.run(&oracle, x, y, Some(targets.clone()), ids, seed)
    }

    fn run<AD, F>(
        &self,
        oracle: &Oracle<'_, AD, F>,
        x: &Tensor<AD::InnerBackend, 4>,
        y: &Tensor<AD::InnerBackend, 1, Int>,
        target: Option<Tensor<AD::InnerBackend, 1, Int>>,
        ids: &[u64],
        seed: u64,
    ) -> AttackOutput<AD::InnerBackend>
    where
        AD: AutodiffBackend,
        F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
    {
        let c = &self.config;
        let objective = Objective {
            loss: c.loss,
            labels: y.clone(),
            success_is_target: target.is_some(),
            target,
        };
        let track = c.select == Selection::Best;
        let mut best: Option<Best<AD::InnerBackend>> = None;
        let mut last = x.clone();
        for restart in 0..c.restarts {
            let mut xk = if c.random_start {
                c.threat.random_start(
                    x,
                    c.eps,
                    ids,
                    seed,
                    restart as u64,
                    Purpose::PgdStart,
                    false,
                )
            } else {
                x.clone()
            };
            for _ in 0..c.steps {
                let (logits, loss, g) = oracle.value_and_grad(xk.clone(), &objective);
                if track {
                    best = Some(offer(best, xk.clone(), objective.success(logits), loss));
                }
                let stepped = xk + c.threat.normalize_step(g).mul_scalar(c.step_size);
                xk = c.threat.project(x, stepped, c.eps);
            }
            if track || c.restarts > 1 {
                let logits = oracle.logits(xk.clone());
                let (s, l) = (objective.success(logits.clone()), objective.loss(logits));
                best = Some(offer(best, xk.clone(), s, l));
            }
            last = xk;
        }
        match best {
            Some(b) => AttackOutput {
                x_adv: b.x,
                success: Some(b.success),
                cost: oracle.cost(),
            },
            None => AttackOutput {
                x_adv: last,
                success: None,
                cost: oracle.cost(),
            },
        }
    }
}

/// Projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to
/// Adversarial Attacks"): K signed (ℓ∞) or normalized (ℓ2) gradient steps from a random start,
/// each projected back onto the ε-ball and [0, 1].
impl Attack for Pgd {
    const NAME: &'static str = "pgd";

    /// Random starts are keyed by `(seed, ids[i], restart)`. Only the input is lifted to the
    /// autodiff backend; no graph is kept between steps and nothing is read back to the host
    /// inside the step loop. A targeted config pushes towards the most likely wrong class at
    /// the clean point.
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
        let oracle = Oracle::<AD, F>::new(f);
        let target = self
            .config
            .targeted
            .then(|| ranked_other_class(oracle.logits(x.clone()), y.clone(), 0));
        self.run(&oracle, x, y, target, ids, seed)
    }
}

fn offer<B: Backend>(
    best: Option<Best<B>>,
    x: Tensor<B, 4>,
    s: Tensor<B, 1, Bool>,
    l: Tensor<B, 1>,
) -> Best<B> {
    match best {
        Some(b) => b.offer(x, s, l),
        None => Best {
            x,
            success: s,
            loss: l,
        },
    }
}

/// Fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, "Explaining and Harnessing
/// Adversarial Examples"): one step of size ε from the clean point, `x + ε·sign(∇x CE)` for ℓ∞
/// (the fast gradient method `x + ε·∇/||∇||2` for ℓ2), clamped to [0, 1].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FgsmConfig {
    /// The perturbation set.
    pub threat: ThreatModel,
    /// Radius (= step size).
    pub eps: f64,
    /// Objective (cross-entropy in the paper).
    pub loss: Loss,
}

impl FgsmConfig {
    /// FGSM with cross-entropy.
    pub fn new(threat: ThreatModel, eps: f64) -> Self {
        Self {
            threat,
            eps,
            loss: Loss::CrossEntropy,
        }
    }

    /// The equivalent one-step PGD without random start (returns its last iterate).
    pub fn as_pgd(&self) -> PgdConfig {
        PgdConfig::new(self.threat, self.eps, 1)
            .with_step_size(self.eps.max(f64::MIN_POSITIVE))
            .with_random_start(false)
            .with_loss(self.loss)
            .with_select(Selection::Last)
    }

    /// A validated attack.
    pub fn init(self) -> Result<Fgsm, AttackError> {
        self.threat.check_eps(self.eps)?;
        let pgd = self.as_pgd().init()?;
        Ok(Fgsm { config: self, pgd })
    }
}

/// A validated FGSM attack (Goodfellow et al. 2015); see [`FgsmConfig`].
#[derive(Clone, Debug)]
pub struct Fgsm {
    config: FgsmConfig,
    pgd: Pgd,
}

impl Fgsm {
    /// The configuration.
    pub fn config(&self) -> &FgsmConfig {
        &self.config
    }
}

/// Fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, "Explaining and Harnessing
/// Adversarial Examples"): one step of size ε, run as the equivalent one-step PGD without random
/// start.
impl Attack for Fgsm {
    const NAME: &'static str = "fgsm";

    /// One signed-gradient step. Deterministic: `ids` and `seed` do not change the result (the
    /// one-step PGD has no random start).
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
        self.pgd.perturb::<AD, F>(f, x, y, ids, seed)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    use super::*;

    type TestBackend = Flex;
    type AD = Autodiff<TestBackend>;

    #[test]
    fn sharded_attack_equals_the_whole_batch_attack() {
        let device = Default::default();
        <TestBackend as Backend>::seed(&device, 11);
        let n = 7;
        let x = Tensor::<TestBackend, 4>::random([n, 2, 3, 3], Distribution::Default, &device);
        let y = Tensor::<TestBackend, 1, Int>::from_ints([0, 1, 2, 3, 0, 1, 2], &device);
        let w = Tensor::<AD, 2>::random([18, 4], Distribution::Normal(0.0, 1.0), &device);
        // A small non-linear classifier whose parameters are constants.
        let f = |x: Tensor<AD, 4>| {
            let [n, ..] = x.dims();
            burn::tensor::activation::gelu(x.reshape([n, 18]).matmul(w.clone())).mul_scalar(3.0)
        };
        let ids: Vec<u64> = (100..100 + n as u64).collect();
        for select in [Selection::Last, Selection::Best] {
            let pgd = PgdConfig::new(ThreatModel::Linf, 0.2, 3)
                .with_select(select)
                .init()
                .unwrap();
            let whole = pgd.attack::<AD, _>(&f, &x, &y, &ids, 5);
            for shards in [2, 3, 7, 50] {
                let part = pgd.attack_sharded::<AD, _>(&f, &x, &y, &ids, 5, shards);
                let diff = (part.x_adv.clone() - whole.x_adv.clone())
                    .abs()
                    .max()
                    .into_scalar();
                assert!(
                    diff <= 1e-6,
                    "{select:?}, {shards} shards: x_adv differs by {diff}"
                );
                assert_eq!(part.x_adv.dims(), [n, 2, 3, 3]);
                assert_eq!(
                    part.success.map(|s| s.into_data()),
                    whole.success.clone().map(|s| s.into_data()),
                    "{select:?}, {shards} shards"
                );
                assert_eq!(part.cost.sample_forwards, whole.cost.sample_forwards);
                assert_eq!(part.cost.sample_backwards, whole.cost.sample_backwards);
                assert_eq!(
                    part.cost.backward_calls,
                    whole.cost.backward_calls * shards.min(n) as u64
                );
            }
        }
    }
}
