//! The robustness evaluator: an ordered ensemble of attacks, per-sample results, sanity flags.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::AttackOutput;
use crate::apgd::{ApgdConfig, ApgdLoss};
use crate::attack::{Attack, check_ids};
use crate::core::{Cost, Objective, Oracle, assign_rows, indices};
use crate::error::AttackError;
use crate::loss::Loss;
use crate::pgd::{FgsmConfig, PgdConfig};
use crate::square::SquareConfig;
use crate::threat::ThreatModel;

/// One member of an evaluation ensemble.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "attack", rename_all = "snake_case")]
pub enum AttackSpec {
    /// [`crate::Fgsm`].
    Fgsm(FgsmConfig),
    /// [`crate::Pgd`].
    Pgd(PgdConfig),
    /// [`crate::Apgd`].
    Apgd(ApgdConfig),
    /// [`crate::Square`] (black box).
    Square(SquareConfig),
}

impl AttackSpec {
    /// A short name, e.g. `pgd-40`, `apgd-ce`, `apgd-t`, `square`.
    pub fn name(&self) -> String {
        match self {
            AttackSpec::Fgsm(_) => "fgsm".into(),
            AttackSpec::Pgd(c) => format!("pgd-{}", c.steps),
            AttackSpec::Apgd(c) => match c.loss {
                ApgdLoss::Ce => "apgd-ce".into(),
                ApgdLoss::Dlr => "apgd-dlr".into(),
                ApgdLoss::DlrTargeted => "apgd-t".into(),
            },
            AttackSpec::Square(_) => "square".into(),
        }
    }

    /// Whether the attack uses only logits (no gradients).
    pub fn is_black_box(&self) -> bool {
        matches!(self, AttackSpec::Square(_))
    }

    /// The radius.
    pub fn eps(&self) -> f64 {
        match self {
            AttackSpec::Fgsm(c) => c.eps,
            AttackSpec::Pgd(c) => c.eps,
            AttackSpec::Apgd(c) => c.eps,
            AttackSpec::Square(c) => c.eps,
        }
    }

    /// The threat model.
    pub fn threat(&self) -> ThreatModel {
        match self {
            AttackSpec::Fgsm(c) => c.threat,
            AttackSpec::Pgd(c) => c.threat,
            AttackSpec::Apgd(c) => c.threat,
            AttackSpec::Square(c) => c.threat,
        }
    }

    /// The same attack at another radius (PGD's step size scales with it).
    pub fn with_eps(&self, eps: f64) -> Self {
        let mut s = self.clone();
        match &mut s {
            AttackSpec::Fgsm(c) => c.eps = eps,
            AttackSpec::Pgd(c) => {
                c.step_size = if c.eps > 0.0 {
                    c.step_size * eps / c.eps
                } else {
                    c.step_size
                };
                c.eps = eps;
            }
            AttackSpec::Apgd(c) => c.eps = eps,
            AttackSpec::Square(c) => c.eps = eps,
        }
        s
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), AttackError> {
        match self {
            AttackSpec::Fgsm(c) => c.clone().init().map(|_| ()),
            AttackSpec::Pgd(c) => c.validate(),
            AttackSpec::Apgd(c) => c.validate(),
            AttackSpec::Square(c) => c.validate(),
        }
    }

    /// Runs the attack (validating first) through its [`Attack`] impl.
    ///
    /// # Shapes
    /// - `x`: `[n, c, h, w]` in [0, 1]; `y`: `[n]`; `ids`: `n` entries.
    pub fn run<AD, F>(
        &self,
        f: &F,
        x: &Tensor<AD::InnerBackend, 4>,
        y: &Tensor<AD::InnerBackend, 1, Int>,
        ids: &[u64],
        seed: u64,
    ) -> Result<AttackOutput<AD::InnerBackend>, AttackError>
    where
        AD: AutodiffBackend,
        F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
    {
        Ok(match self {
            AttackSpec::Fgsm(c) => c.clone().init()?.attack::<AD, F>(f, x, y, ids, seed),
            AttackSpec::Pgd(c) => c.clone().init()?.attack::<AD, F>(f, x, y, ids, seed),
            AttackSpec::Apgd(c) => c.clone().init()?.attack::<AD, F>(f, x, y, ids, seed),
            AttackSpec::Square(c) => c.clone().init()?.attack::<AD, F>(f, x, y, ids, seed),
        })
    }
}

/// Per-sample outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleResult {
    /// The caller's sample id.
    pub id: u64,
    /// True label.
    pub label: i64,
    /// Predicted class on the clean input.
    pub clean_prediction: i64,
    /// Predicted class on the returned adversarial input.
    pub adv_prediction: i64,
    /// Correct on the clean input.
    pub clean_correct: bool,
    /// Correct under every attack (implies `clean_correct`).
    pub robust: bool,
    /// Index (into the ensemble) of the attack that broke it, if one did.
    pub broken_by: Option<usize>,
}

/// What one ensemble member did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackStats {
    /// [`AttackSpec::name`].
    pub name: String,
    /// Samples it attacked (those still robust when its turn came).
    pub attacked: usize,
    /// Samples it broke (verified by a fresh forward pass).
    pub broken: usize,
    /// Its cost, including the verification forward.
    pub cost: Cost,
}

/// Checks that catch broken evaluations (after Carlini et al. 2019, "On Evaluating Adversarial
/// Robustness", and AutoAttack's flags).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sanity {
    /// Every row of the clean outputs is non-negative and sums to 1: the closure probably returns
    /// probabilities, not logits (cross-entropy gradients vanish).
    pub outputs_look_like_probabilities: bool,
    /// Two forward passes on the same input differed (dropout on? randomized defence?).
    pub nondeterministic_forward: bool,
    /// Largest absolute difference between those two passes.
    pub max_forward_difference: f64,
    /// Ids of samples whose cross-entropy input gradient at the clean point is exactly zero.
    pub zero_gradient_samples: Vec<u64>,
    /// Samples broken only by a black-box attack after every white-box attack failed.
    pub black_box_only_breaks: usize,
    /// `black_box_only_breaks > 0` while the ensemble has white-box attacks (gradient masking?).
    pub black_box_beats_white_box: bool,
    /// Returned adversarial inputs outside the ε-ball or [0, 1] (tolerance 1e-5); must be 0.
    pub out_of_ball: usize,
    /// Raw robust accuracy increased with ε somewhere in a sweep; `None` outside sweeps.
    pub non_monotone_in_eps: Option<bool>,
}

impl Sanity {
    /// Human-readable warnings, empty when everything looks fine.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.outputs_look_like_probabilities {
            w.push("model outputs look like probabilities, attacks expect logits".to_string());
        }
        if self.nondeterministic_forward {
            w.push(format!(
                "forward is not deterministic (max difference {:e})",
                self.max_forward_difference
            ));
        }
        if !self.zero_gradient_samples.is_empty() {
            w.push(format!(
                "{} samples have a zero input gradient",
                self.zero_gradient_samples.len()
            ));
        }
        if self.black_box_beats_white_box {
            w.push(format!(
                "black-box attack broke {} samples the white-box attacks missed",
                self.black_box_only_breaks
            ));
        }
        if self.out_of_ball > 0 {
            w.push(format!(
                "{} adversarial inputs left the threat model",
                self.out_of_ball
            ));
        }
        if self.non_monotone_in_eps == Some(true) {
            w.push("robust accuracy is not monotone in eps".to_string());
        }
        w
    }
}

/// A serializable evaluation record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Seed of the attacks' random starts.
    pub seed: u64,
    /// Threat model.
    pub threat: ThreatModel,
    /// Radius.
    pub eps: f64,
    /// The ensemble, in order, with full configs.
    pub attacks: Vec<AttackSpec>,
    /// Samples evaluated.
    pub n: usize,
    /// Correct on clean inputs.
    pub clean_correct: usize,
    /// Correct under every attack.
    pub robust: usize,
    /// `clean_correct / n`.
    pub clean_accuracy: f64,
    /// `robust / n`.
    pub robust_accuracy: f64,
    /// Per ensemble member.
    pub per_attack: Vec<AttackStats>,
    /// Per sample.
    pub samples: Vec<SampleResult>,
    /// Total cost, including the clean and sanity passes.
    pub cost: Cost,
    /// Sanity flags.
    pub sanity: Sanity,
}

impl EvalReport {
    /// Folds another batch's report (same ensemble and ε) into this one.
    pub fn merge(&mut self, other: EvalReport) {
        self.n += other.n;
        self.clean_correct += other.clean_correct;
        self.robust += other.robust;
        self.clean_accuracy = self.clean_correct as f64 / self.n.max(1) as f64;
        self.robust_accuracy = self.robust as f64 / self.n.max(1) as f64;
        for (a, b) in self.per_attack.iter_mut().zip(other.per_attack) {
            a.attacked += b.attacked;
            a.broken += b.broken;
            a.cost += b.cost;
        }
        self.samples.extend(other.samples);
        self.cost += other.cost;
        let (s, o) = (&mut self.sanity, other.sanity);
        s.outputs_look_like_probabilities |= o.outputs_look_like_probabilities;
        s.nondeterministic_forward |= o.nondeterministic_forward;
        s.max_forward_difference = s.max_forward_difference.max(o.max_forward_difference);
        s.zero_gradient_samples.extend(o.zero_gradient_samples);
        s.black_box_only_breaks += o.black_box_only_breaks;
        s.black_box_beats_white_box |= o.black_box_beats_white_box;
        s.out_of_ball += o.out_of_ball;
        s.non_monotone_in_eps = match (s.non_monotone_in_eps, o.non_monotone_in_eps) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
        };
    }
}

/// An evaluation: the report plus the adversarial batch (for robust samples, the last attack's
/// output; for clean-misclassified samples, the input).
#[derive(Clone, Debug)]
pub struct Evaluation<B: Backend> {
    /// The record.
    pub report: EvalReport,
    /// `[n, c, h, w]`.
    pub x_adv: Tensor<B, 4>,
}

/// Results at several radii (see [`Evaluator::evaluate_sweep`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// One report per ε (each attacks every clean-correct sample afresh).
    pub reports: Vec<EvalReport>,
    /// Robust accuracy where a sample broken at a smaller ε counts as broken at every larger ε
    /// (its adversarial input lies in the larger ball): non-increasing by construction.
    pub robust_accuracy: Vec<f64>,
    /// The raw per-ε robust accuracy increased somewhere.
    pub non_monotone_in_eps: bool,
}

/// Runs an ordered ensemble; each attack sees only the samples every earlier attack failed on,
/// and a sample is robust only if every attack failed (AutoAttack's protocol, Croce & Hein 2020).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluator {
    /// The ensemble, run in order.
    pub attacks: Vec<AttackSpec>,
    /// Seed for every random start.
    pub seed: u64,
}

impl Evaluator {
    /// A validated evaluator.
    pub fn new(attacks: Vec<AttackSpec>, seed: u64) -> Result<Self, AttackError> {
        if attacks.is_empty() {
            return Err(AttackError::EmptyEnsemble);
        }
        for a in &attacks {
            a.validate()?;
        }
        Ok(Self { attacks, seed })
    }

    /// A named preset: `pgd-K` (e.g. `pgd-40`: K steps of 2.5ε/K, one random start, CE),
    /// `fgsm`, `apgd-ce`, `apgd-t`, `square`, or `standard` (APGD-CE, APGD-T with 9 targets,
    /// Square with 5000 queries for ℓ∞; AutoAttack's standard version without FAB-T).
    pub fn preset(
        name: &str,
        threat: ThreatModel,
        eps: f64,
        seed: u64,
    ) -> Result<Self, AttackError> {
        let attacks = match name {
            "fgsm" => vec![AttackSpec::Fgsm(FgsmConfig::new(threat, eps))],
            "apgd-ce" => vec![AttackSpec::Apgd(ApgdConfig::ce(threat, eps))],
            "apgd-t" => vec![AttackSpec::Apgd(ApgdConfig::targeted(threat, eps))],
            "square" => vec![AttackSpec::Square(SquareConfig::new(threat, eps))],
            "standard" => {
                let mut v = vec![
                    AttackSpec::Apgd(ApgdConfig::ce(threat, eps)),
                    AttackSpec::Apgd(ApgdConfig::targeted(threat, eps)),
                ];
                if threat == ThreatModel::Linf {
                    v.push(AttackSpec::Square(SquareConfig::new(threat, eps)));
                }
                v
            }
            other => match other
                .strip_prefix("pgd-")
                .and_then(|k| k.parse::<usize>().ok())
            {
                Some(k) if k > 0 => vec![AttackSpec::Pgd(PgdConfig::new(threat, eps, k))],
                _ => return Err(AttackError::UnknownPreset(other.to_string())),
            },
        };
        Self::new(attacks, seed)
    }

    /// The same ensemble at another radius.
    pub fn with_eps(&self, eps: f64) -> Result<Self, AttackError> {
        Self::new(
            self.attacks.iter().map(|a| a.with_eps(eps)).collect(),
            self.seed,
        )
    }

    /// Evaluates one batch.
    ///
    /// Costs two clean forwards (prediction and determinism check), one forward+backward (zero
    /// gradient check), the attacks, and one verification forward per attack. Robustness is
    /// always judged by that verification forward, never by the attack's own bookkeeping.
    ///
    /// # Shapes
    /// - `x`: `[n, c, h, w]` in [0, 1]; `y`: `[n]`; `ids`: `n` entries.
    pub fn evaluate<AD, F>(
        &self,
        f: &F,
        x: &Tensor<AD::InnerBackend, 4>,
        y: &Tensor<AD::InnerBackend, 1, Int>,
        ids: &[u64],
    ) -> Evaluation<AD::InnerBackend>
    where
        AD: AutodiffBackend,
        F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
    {
        let n = x.dims()[0];
        check_ids("evaluate", ids, n);
        let device = x.device();
        let oracle = Oracle::<AD, F>::new(f);
        let threat = self.attacks[0].threat();
        let eps = self.attacks[0].eps();

        // Clean pass, determinism and probability checks.
        let logits = oracle.logits(x.clone());
        let again = oracle.logits(x.clone());
        let max_diff = host_f32(again.sub(logits.clone()).abs().max())
            .first()
            .copied()
            .unwrap_or(0.0) as f64;
        let classes = logits.dims()[1];
        let rows = host_f32(logits.clone());
        let looks_like_probs = rows
            .chunks(classes.max(1))
            .all(|r| r.iter().all(|v| *v >= 0.0) && (r.iter().sum::<f32>() - 1.0).abs() < 1e-3);
        let labels = host_i64(y.clone());
        let clean_pred = host_i64(logits.argmax(1).reshape([n]));
        let clean_correct: Vec<bool> = clean_pred
            .iter()
            .zip(&labels)
            .map(|(p, l)| p == l)
            .collect();

        // Zero input gradient of cross-entropy at the clean point.
        let ce = Objective {
            loss: Loss::CrossEntropy,
            labels: y.clone(),
            target: None,
            success_is_target: false,
        };
        let (_, _, g) = oracle.value_and_grad(x.clone(), &ce);
        let gnorm = host_f32(ThreatModel::Linf.distance(g.clone(), g.zeros_like()));
        let zero_gradient_samples: Vec<u64> = gnorm
            .iter()
            .zip(ids)
            .filter(|(g, _)| **g == 0.0)
            .map(|(_, id)| *id)
            .collect();

        let mut robust = clean_correct.clone();
        let mut broken_by: Vec<Option<usize>> = vec![None; n];
        let mut adv_pred = clean_pred.clone();
        let mut x_adv = x.clone();
        let mut per_attack = Vec::new();
        let mut out_of_ball = 0;
        let mut total = oracle.cost();
        for (ai, attack) in self.attacks.iter().enumerate() {
            let (rows_idx, idx) = indices::<AD::InnerBackend>(&robust, &device);
            let mut stats = AttackStats {
                name: attack.name(),
                attacked: rows_idx.len(),
                broken: 0,
                cost: Cost::default(),
            };
            if rows_idx.is_empty() {
                per_attack.push(stats);
                continue;
            }
            let x_sub = x.clone().select(0, idx.clone());
            let y_sub = y.clone().select(0, idx.clone());
            let sub_ids: Vec<u64> = rows_idx.iter().map(|&i| ids[i]).collect();
            let out = match attack.run::<AD, F>(f, &x_sub, &y_sub, &sub_ids, self.seed) {
                Ok(out) => out,
                Err(e) => {
                    // Evaluators are built validated; this only happens if fields were mutated.
                    tracing::error!(attack = %attack.name(), error = %e, "attack skipped");
                    per_attack.push(stats);
                    continue;
                }
            };
            stats.cost = out.cost;
            let verify = Oracle::<AD, F>::new(f);
            let pred = host_i64(
                verify
                    .logits(out.x_adv.clone())
                    .argmax(1)
                    .reshape([rows_idx.len()]),
            );
            stats.cost += verify.cost();
            let dist = host_f32(threat.distance(out.x_adv.clone(), x_sub));
            let lo = host_f32(out.x_adv.clone().min());
            let hi = host_f32(out.x_adv.clone().max());
            let box_ok = lo.first().is_none_or(|v| *v >= -1e-5)
                && hi.first().is_none_or(|v| *v <= 1.0 + 1e-5);
            for (k, &i) in rows_idx.iter().enumerate() {
                if dist[k] as f64 > eps + 1e-5 || !box_ok {
                    out_of_ball += 1;
                }
                adv_pred[i] = pred[k];
                if pred[k] != labels[i] {
                    robust[i] = false;
                    broken_by[i] = Some(ai);
                    stats.broken += 1;
                }
            }
            x_adv = assign_rows(x_adv, idx, out.x_adv);
            total += stats.cost;
            tracing::debug!(attack = %stats.name, attacked = stats.attacked, broken = stats.broken, "attack done");
            per_attack.push(stats);
        }

        let has_white = self.attacks.iter().any(|a| !a.is_black_box());
        let black_box_only_breaks = broken_by
            .iter()
            .filter(|b| b.is_some_and(|i| self.attacks[i].is_black_box()))
            .count();
        let sanity = Sanity {
            outputs_look_like_probabilities: looks_like_probs,
            nondeterministic_forward: max_diff > 0.0,
            max_forward_difference: max_diff,
            zero_gradient_samples,
            black_box_only_breaks,
            black_box_beats_white_box: has_white && black_box_only_breaks > 0,
            out_of_ball,
            non_monotone_in_eps: None,
        };
        for w in sanity.warnings() {
            tracing::warn!("{w}");
        }
        let samples: Vec<SampleResult> = (0..n)
            .map(|i| SampleResult {
                id: ids[i],
                label: labels[i],
                clean_prediction: clean_pred[i],
                adv_prediction: adv_pred[i],
                clean_correct: clean_correct[i],
                robust: robust[i],
                broken_by: broken_by[i],
            })
            .collect();
        let clean_n = clean_correct.iter().filter(|c| **c).count();
        let robust_n = robust.iter().filter(|c| **c).count();
        let report = EvalReport {
            seed: self.seed,
            threat,
            eps,
            attacks: self.attacks.clone(),
            n,
            clean_correct: clean_n,
            robust: robust_n,
            clean_accuracy: clean_n as f64 / n.max(1) as f64,
            robust_accuracy: robust_n as f64 / n.max(1) as f64,
            per_attack,
            samples,
            cost: total,
            sanity,
        };
        Evaluation { report, x_adv }
    }

    /// Evaluates the same ensemble at strictly increasing radii `eps` (the ensemble's own ε is
    /// replaced). Each radius attacks every clean-correct sample afresh (raw accuracy, whose
    /// increase sets the `non_monotone_in_eps` flag); [`SweepReport::robust_accuracy`] carries
    /// breaks forward, which is valid because the smaller ball lies inside the larger one.
    pub fn evaluate_sweep<AD, F>(
        &self,
        f: &F,
        x: &Tensor<AD::InnerBackend, 4>,
        y: &Tensor<AD::InnerBackend, 1, Int>,
        ids: &[u64],
        eps: &[f64],
    ) -> Result<SweepReport, AttackError>
    where
        AD: AutodiffBackend,
        F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
    {
        if eps.is_empty() || eps.windows(2).any(|w| w[0] >= w[1]) {
            return Err(AttackError::SweepOrder(eps.to_vec()));
        }
        let mut reports = Vec::new();
        let mut carried: Option<Vec<bool>> = None;
        let mut robust_accuracy = Vec::new();
        for &e in eps {
            let report = self.with_eps(e)?.evaluate::<AD, F>(f, x, y, ids).report;
            let raw: Vec<bool> = report.samples.iter().map(|s| s.robust).collect();
            let now: Vec<bool> = match &carried {
                Some(prev) => raw.iter().zip(prev).map(|(a, b)| *a && *b).collect(),
                None => raw,
            };
            robust_accuracy
                .push(now.iter().filter(|r| **r).count() as f64 / now.len().max(1) as f64);
            carried = Some(now);
            reports.push(report);
        }
        let non_monotone = reports.windows(2).any(|w| w[1].robust > w[0].robust);
        for r in &mut reports {
            r.sanity.non_monotone_in_eps = Some(non_monotone);
        }
        if non_monotone {
            tracing::warn!(
                "robust accuracy is not monotone in eps: the attack is too weak or masked"
            );
        }
        Ok(SweepReport {
            reports,
            robust_accuracy,
            non_monotone_in_eps: non_monotone,
        })
    }
}

fn host_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}

fn host_i64<B: Backend>(t: Tensor<B, 1, Int>) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .unwrap_or_default()
}
