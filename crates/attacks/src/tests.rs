//! Crate tests. The fixed model is a tiny MLP (1x6x6 → 32 → 10) trained by PyTorch, shipped
//! with PyTorch's FGSM/PGD outputs in `tests/fixtures/attacks_mlp.safetensors`. Regenerate with
//! `python3 scripts/reference/attacks_reference.py` (needs torch + safetensors).

use std::sync::OnceLock;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use proptest::prelude::*;

use crate::*;

type TestBackend = Flex;
type AD = Autodiff<TestBackend>;
type X = Tensor<TestBackend, 4>;
type Y = Tensor<TestBackend, 1, Int>;

const MEAN: f64 = 0.4;
const STD: f64 = 0.3;

struct Fixture {
    tensors: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/attacks_mlp.safetensors"
        );
        let bytes = std::fs::read(path)
            .expect("fixture missing: run scripts/reference/attacks_reference.py");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("fixture is safetensors");
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let data: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (name, (view.shape().to_vec(), data))
            })
            .collect();
        Fixture { tensors }
    })
}

fn tensor<B: Backend, const D: usize>(name: &str) -> Tensor<B, D> {
    let (shape, data) = &fixture().tensors[name];
    Tensor::from_data(
        TensorData::new(data.clone(), shape.clone()),
        &Default::default(),
    )
}

/// The fixture MLP with normalization inside; parameters are constants (no grad).
#[derive(Clone)]
struct Mlp {
    w1: Tensor<AD, 2>,
    b1: Tensor<AD, 2>,
    w2: Tensor<AD, 2>,
    b2: Tensor<AD, 2>,
}

impl Mlp {
    fn load() -> Self {
        Self {
            w1: tensor::<AD, 2>("fc1.weight").transpose(),
            b1: tensor::<AD, 1>("fc1.bias").unsqueeze(),
            w2: tensor::<AD, 2>("fc2.weight").transpose(),
            b2: tensor::<AD, 1>("fc2.bias").unsqueeze(),
        }
    }

    fn forward(&self, x: Tensor<AD, 4>) -> Tensor<AD, 2> {
        let n = x.dims()[0];
        let h = x
            .reshape([n, 36])
            .sub_scalar(MEAN)
            .div_scalar(STD)
            .matmul(self.w1.clone())
            + self.b1.clone();
        burn::tensor::activation::relu(h).matmul(self.w2.clone()) + self.b2.clone()
    }
}

fn batch() -> (X, Y) {
    let y: Tensor<TestBackend, 1> = tensor("y");
    (tensor("x"), y.int())
}

fn ids(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| 1000 + 7 * i).collect()
}

fn max_abs_diff(a: &X, b: &X) -> f32 {
    (a.clone() - b.clone()).abs().max().into_scalar()
}

fn host(t: X) -> Vec<f32> {
    t.into_data().to_vec::<f32>().expect("f32")
}

// ---------------------------------------------------------------- reference values (PyTorch)

#[test]
fn fgsm_and_pgd_match_pytorch() {
    let m = Mlp::load();
    let f = |x| m.forward(x);
    let (x, y) = batch();
    let logits = f(Tensor::from_inner(x.clone())).inner();
    assert!(
        max_abs_diff(
            &logits.unsqueeze(),
            &tensor::<TestBackend, 2>("logits").unsqueeze()
        ) < 1e-4
    );
    let n = x.dims()[0];
    let cases = [
        ("fgsm_linf", ThreatModel::Linf, 0.1, 0.1, 1),
        ("pgd_linf", ThreatModel::Linf, 0.1, 0.025, 10),
        ("fgsm_l2", ThreatModel::L2, 0.5, 0.5, 1),
        ("pgd_l2", ThreatModel::L2, 0.5, 0.1, 10),
    ];
    for (name, threat, eps, step, steps) in cases {
        let out = if steps == 1 {
            FgsmConfig::new(threat, eps)
                .init()
                .unwrap()
                .attack::<AD, _>(&f, &x, &y, &ids(n), 0)
        } else {
            PgdConfig::new(threat, eps, steps)
                .with_step_size(step)
                .with_random_start(false)
                .with_select(Selection::Last)
                .init()
                .unwrap()
                .attack::<AD, _>(&f, &x, &y, &ids(n), 0)
        };
        let diff = max_abs_diff(&out.x_adv, &tensor(name));
        assert!(diff < 1e-4, "{name}: max |x_adv - torch| = {diff}");
        assert_eq!(
            out.cost.backward_calls, steps as u64,
            "{name}: one backward per step"
        );
    }
}

#[test]
fn apgd_ce_is_at_least_as_strong_as_pgd40() {
    let m = Mlp::load();
    let f = |x| m.forward(x);
    let (x, y) = batch();
    let n = x.dims()[0];
    let eps = 0.2;
    let pgd = Evaluator::preset("pgd-40", ThreatModel::Linf, eps, 3).unwrap();
    let apgd = Evaluator::preset("apgd-ce", ThreatModel::Linf, eps, 3).unwrap();
    let rp = pgd.evaluate::<AD, _>(&f, &x, &y, &ids(n)).report;
    let ra = apgd.evaluate::<AD, _>(&f, &x, &y, &ids(n)).report;
    assert!(
        rp.robust < rp.clean_correct,
        "eps too small to be informative"
    );
    assert!(
        ra.robust_accuracy <= rp.robust_accuracy,
        "apgd-ce {} > pgd-40 {}",
        ra.robust_accuracy,
        rp.robust_accuracy
    );
    assert_eq!(ra.sanity.out_of_ball, 0);
    assert!(
        ra.sanity.warnings().is_empty(),
        "{:?}",
        ra.sanity.warnings()
    );
}

#[test]
fn targeted_attacks_reach_their_target() {
    // Stated rate: targeted PGD-40 (CE, eps 0.3) reaches a fixed non-true target on >= 80% of
    // the fixture batch; targeted margin and DLR losses on >= 80% too.
    let m = Mlp::load();
    let f = |x| m.forward(x);
    let (x, y) = batch();
    let n = x.dims()[0];
    let targets = y.clone().add_scalar(3).remainder_scalar(10);
    for loss in [Loss::CrossEntropy, Loss::Margin, Loss::Dlr] {
        let pgd = PgdConfig::new(ThreatModel::Linf, 0.3, 40)
            .with_loss(loss)
            .with_targeted(true)
            .init()
            .unwrap();
        let out = pgd.attack_targeted::<AD, _>(&f, &x, &y, &targets, &ids(n), 5);
        let pred = f(Tensor::from_inner(out.x_adv))
            .inner()
            .argmax(1)
            .reshape([n]);
        let hits = pred
            .equal(targets.clone())
            .int()
            .sum()
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap()[0];
        assert!(
            hits as f64 >= 0.8 * n as f64,
            "{loss:?}: {hits}/{n} reached the target"
        );
    }
    // APGD-T breaks at least as many as APGD-CE's 100 iterations at a small eps.
    let at = Evaluator::preset("apgd-t", ThreatModel::Linf, 0.15, 0).unwrap();
    let ce = Evaluator::preset("apgd-ce", ThreatModel::Linf, 0.15, 0).unwrap();
    let rt = at
        .with_eps(0.15)
        .unwrap()
        .evaluate::<AD, _>(&f, &x, &y, &ids(n))
        .report;
    let rc = ce.evaluate::<AD, _>(&f, &x, &y, &ids(n)).report;
    assert!(
        rt.robust <= rc.robust + 1,
        "apgd-t {} vs apgd-ce {}",
        rt.robust,
        rc.robust
    );
}

#[test]
fn standard_preset_runs_and_square_is_black_box() {
    let m = Mlp::load();
    let f = |x| m.forward(x);
    let (x, y) = batch();
    let x = x.narrow(0, 0, 4);
    let y = y.narrow(0, 0, 4);
    let mut ev = Evaluator::preset("standard", ThreatModel::Linf, 0.2, 1).unwrap();
    assert_eq!(
        ev.attacks.iter().map(AttackSpec::name).collect::<Vec<_>>(),
        ["apgd-ce", "apgd-t", "square"]
    );
    for a in &mut ev.attacks {
        match a {
            AttackSpec::Apgd(c) => c.n_iter = 20,
            AttackSpec::Square(c) => c.n_queries = 50,
            _ => {}
        }
    }
    let r = ev.evaluate::<AD, _>(&f, &x, &y, &ids(4)).report;
    assert_eq!(r.per_attack.len(), 3);
    assert!(r.cost.forward_calls > 0 && r.cost.sample_forwards >= r.cost.forward_calls);
    let json = serde_json::to_string(&r).unwrap();
    let back: EvalReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    // Square alone uses no backward pass inside the attack.
    let sq = SquareConfig::new(ThreatModel::Linf, 0.2)
        .with_n_queries(30)
        .init()
        .unwrap();
    let out = sq.attack::<AD, _>(&f, &x, &y, &ids(4), 0);
    assert_eq!(out.cost.backward_calls, 0);
    assert!(max_abs_diff(&out.x_adv, &x) <= 0.2 + 1e-6);
}

// ---------------------------------------------------------------- evaluator semantics

#[test]
fn robust_accuracy_non_increasing_in_k_and_eps() {
    let m = Mlp::load();
    let f = |x| m.forward(x);
    let (x, y) = batch();
    let n = x.dims()[0];
    let mut last = usize::MAX;
    for k in [1, 2, 5, 10, 20, 40] {
        let pgd = PgdConfig::new(ThreatModel::Linf, 0.15, k).with_step_size(0.02);
        let r = Evaluator::new(vec![AttackSpec::Pgd(pgd)], 9)
            .unwrap()
            .evaluate::<AD, _>(&f, &x, &y, &ids(n))
            .report;
        assert!(r.robust <= last, "K={k}: {} robust after {last}", r.robust);
        last = r.robust;
    }
    let ev = Evaluator::preset("pgd-20", ThreatModel::Linf, 0.1, 9).unwrap();
    let eps = [0.0, 0.05, 0.1, 0.2, 0.3];
    let sweep = ev
        .evaluate_sweep::<AD, _>(&f, &x, &y, &ids(n), &eps)
        .unwrap();
    assert!(
        sweep.robust_accuracy.windows(2).all(|w| w[1] <= w[0]),
        "{:?}",
        sweep.robust_accuracy
    );
    assert!(
        !sweep.non_monotone_in_eps,
        "raw accuracies {:?}",
        sweep.reports.iter().map(|r| r.robust).collect::<Vec<_>>()
    );
    assert_eq!(
        sweep.reports[0].robust, sweep.reports[0].clean_correct,
        "eps 0 is the clean accuracy"
    );
    assert!(sweep.robust_accuracy[4] < sweep.robust_accuracy[0]);
    assert!(matches!(
        ev.evaluate_sweep::<AD, _>(&f, &x, &y, &ids(n), &[0.2, 0.1]),
        Err(AttackError::SweepOrder(_))
    ));
}

#[test]
fn evaluator_attacks_only_robust_samples_and_merges() {
    let m = Mlp::load();
    let f = |x| m.forward(x);
    let (x, y) = batch();
    let n = x.dims()[0];
    let a = PgdConfig::new(ThreatModel::Linf, 0.2, 10);
    let ev = Evaluator::new(
        vec![
            AttackSpec::Pgd(a.clone()),
            AttackSpec::Pgd(a.with_restarts(2)),
        ],
        0,
    )
    .unwrap();
    let e = ev.evaluate::<AD, _>(&f, &x, &y, &ids(n));
    let r = &e.report;
    assert_eq!(r.per_attack[0].attacked, r.clean_correct);
    assert_eq!(
        r.per_attack[1].attacked,
        r.clean_correct - r.per_attack[0].broken
    );
    assert_eq!(
        r.robust,
        r.clean_correct - r.per_attack[0].broken - r.per_attack[1].broken
    );
    for s in &r.samples {
        assert_eq!(s.robust, s.clean_correct && s.broken_by.is_none());
    }
    // x_adv's predictions agree with the per-sample record.
    let pred = f(Tensor::from_inner(e.x_adv.clone()))
        .inner()
        .argmax(1)
        .reshape([n]);
    let pred = pred.into_data().convert::<i64>().to_vec::<i64>().unwrap();
    for (s, p) in r.samples.iter().zip(pred) {
        assert_eq!(s.adv_prediction, p);
    }
    let mut merged = r.clone();
    merged.merge(r.clone());
    assert_eq!((merged.n, merged.robust), (2 * r.n, 2 * r.robust));
    assert_eq!(merged.robust_accuracy, r.robust_accuracy);
}

#[test]
fn sanity_flags_fire() {
    let m = Mlp::load();
    let (x, y) = batch();
    let (x, y) = (x.narrow(0, 0, 4), y.narrow(0, 0, 4));
    let ev = Evaluator::preset("pgd-5", ThreatModel::Linf, 0.1, 0).unwrap();
    let clean = ev
        .evaluate::<AD, _>(&|x| m.forward(x), &x, &y, &ids(4))
        .report
        .sanity;
    assert_eq!(
        clean,
        Sanity {
            max_forward_difference: 0.0,
            ..Sanity::default()
        }
    );

    let probs = |x| burn::tensor::activation::softmax(m.forward(x), 1);
    assert!(
        ev.evaluate::<AD, _>(&probs, &x, &y, &ids(4))
            .report
            .sanity
            .outputs_look_like_probabilities
    );

    let calls = std::cell::Cell::new(0.0);
    let noisy = |x| {
        calls.set(calls.get() + 1.0);
        m.forward(x).add_scalar(calls.get() * 1e-3)
    };
    assert!(
        ev.evaluate::<AD, _>(&noisy, &x, &y, &ids(4))
            .report
            .sanity
            .nondeterministic_forward
    );

    // Gradient masking: the closure cuts the graph, so white-box attacks see zero gradients;
    // Square (logits only) still works.
    let masked = |x: Tensor<AD, 4>| m.forward(Tensor::from_inner(x.inner()));
    let ev = Evaluator::new(
        vec![
            AttackSpec::Pgd(PgdConfig::new(ThreatModel::Linf, 0.3, 5).with_random_start(false)),
            AttackSpec::Square(SquareConfig::new(ThreatModel::Linf, 0.3).with_n_queries(300)),
        ],
        0,
    )
    .unwrap();
    let s = ev.evaluate::<AD, _>(&masked, &x, &y, &ids(4)).report.sanity;
    assert_eq!(s.zero_gradient_samples, ids(4));
    assert!(s.black_box_beats_white_box, "{s:?}");
}

#[test]
fn configs_are_validated() {
    let e = PgdConfig::new(ThreatModel::Linf, 1.5, 10)
        .init()
        .unwrap_err();
    assert_eq!(e, AttackError::Eps(1.5));
    let msg = e.to_string();
    assert!(msg.starts_with("eps") && !msg.ends_with('.'), "{msg}");
    assert!(
        PgdConfig::new(ThreatModel::L2, 3.0, 10).init().is_ok(),
        "l2 eps may exceed 1"
    );
    assert!(
        PgdConfig::new(ThreatModel::Linf, f64::NAN, 10)
            .init()
            .is_err()
    );
    assert_eq!(
        PgdConfig::new(ThreatModel::Linf, 0.1, 0).validate(),
        Err(AttackError::ZeroCount { field: "steps" })
    );
    assert!(matches!(
        PgdConfig::new(ThreatModel::Linf, 0.1, 3)
            .with_step_size(-1.0)
            .validate(),
        Err(AttackError::StepSize(_))
    ));
    assert!(matches!(
        SquareConfig::new(ThreatModel::L2, 0.1).validate(),
        Err(AttackError::Unsupported { .. })
    ));
    assert!(matches!(
        ApgdConfig::ce(ThreatModel::Linf, 0.1)
            .with_n_iter(0)
            .validate(),
        Err(AttackError::ZeroCount { .. })
    ));
    for bad in ["pgd", "pgd-0", "pgd-x", "autoattack"] {
        assert!(
            matches!(
                Evaluator::preset(bad, ThreatModel::Linf, 0.1, 0),
                Err(AttackError::UnknownPreset(_))
            ),
            "{bad}"
        );
    }
    assert_eq!(Evaluator::new(vec![], 0), Err(AttackError::EmptyEnsemble));
    let p = Evaluator::preset("pgd-40", ThreatModel::Linf, 0.1, 0).unwrap();
    match &p.attacks[0] {
        AttackSpec::Pgd(c) => assert!((c.step_size - 0.25 / 40.0).abs() < 1e-12 && c.steps == 40),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Evaluator::preset("standard", ThreatModel::L2, 0.5, 0)
            .unwrap()
            .attacks
            .len(),
        2
    );
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<Evaluator>(&json).unwrap(), p);
}

#[test]
fn apgd_checkpoints_follow_the_paper() {
    let lengths = Apgd::checkpoint_lengths(100);
    assert_eq!(lengths, [22, 19, 16, 13, 10, 7, 6, 6]);
    let w: Vec<usize> = lengths
        .iter()
        .scan(0, |s, l| {
            *s += l;
            Some(*s)
        })
        .collect();
    assert_eq!(w, [22, 41, 57, 70, 80, 87, 93, 99]);
    assert!(Apgd::checkpoint_lengths(5).iter().all(|l| *l >= 1));
    assert_eq!(Square::p_selection(0.8, 0, 5000), 0.8);
    assert_eq!(Square::p_selection(0.8, 4999, 5000), 0.8 / 512.0);
}

// ---------------------------------------------------------------- properties

fn all_attacks(threat: ThreatModel, eps: f64, steps: usize) -> Vec<AttackSpec> {
    let mut v = vec![
        AttackSpec::Fgsm(FgsmConfig::new(threat, eps)),
        AttackSpec::Pgd(PgdConfig::new(threat, eps, steps).with_restarts(2)),
        AttackSpec::Pgd(
            PgdConfig::new(threat, eps, steps)
                .with_loss(Loss::Dlr)
                .with_targeted(true),
        ),
        AttackSpec::Pgd(
            PgdConfig::new(threat, eps, steps)
                .with_loss(Loss::Margin)
                .with_select(Selection::Last),
        ),
        AttackSpec::Apgd(
            ApgdConfig::ce(threat, eps)
                .with_n_iter(steps + 3)
                .with_restarts(2),
        ),
        AttackSpec::Apgd(
            ApgdConfig::targeted(threat, eps)
                .with_n_iter(steps + 3)
                .with_n_target_classes(2),
        ),
    ];
    if threat == ThreatModel::Linf {
        v.push(AttackSpec::Square(
            SquareConfig::new(threat, eps).with_n_queries(steps * 3),
        ));
    }
    v
}

prop_compose! {
    fn inputs()(n in 1usize..4)(px in proptest::collection::vec(0.0f32..=1.0, n * 36), labels in proptest::collection::vec(0i64..10, n)) -> (X, Y) {
        let d = Default::default();
        (Tensor::from_data(TensorData::new(px, [labels.len(), 1, 6, 6]), &d), Tensor::from_data(TensorData::new(labels.clone(), [labels.len()]), &d))
    }
}

fn threat() -> impl Strategy<Value = ThreatModel> {
    prop_oneof![Just(ThreatModel::Linf), Just(ThreatModel::L2)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn every_attack_stays_in_the_ball_and_box((x, y) in inputs(), threat in threat(), eps in 0.01f64..0.5, steps in 1usize..4, seed: u64) {
        let m = Mlp::load();
        let f = |x| m.forward(x);
        let n = x.dims()[0];
        let before = x.to_data();
        for attack in all_attacks(threat, eps, steps) {
            // Every step count up to `steps` (each PGD run with k steps returns iterate k).
            let out = attack.run::<AD, _>(&f, &x, &y, &ids(n), seed).unwrap();
            let dist = threat.distance(out.x_adv.clone(), x.clone()).into_data().to_vec::<f32>().unwrap();
            prop_assert!(dist.iter().all(|d| (*d as f64) <= eps + 1e-6), "{}: {dist:?} > {eps}", attack.name());
            let v = host(out.x_adv);
            prop_assert!(v.iter().all(|p| (0.0..=1.0).contains(p)), "{} left [0,1]", attack.name());
        }
        x.to_data().assert_eq(&before, true);
    }

    #[test]
    fn every_pgd_iterate_and_restart_stays_in_the_ball((x, y) in inputs(), threat in threat(), eps in 0.01f64..0.5, seed: u64) {
        let m = Mlp::load();
        let f = |x| m.forward(x);
        let n = x.dims()[0];
        for k in 1..=4 {
            for restarts in 1..=2 {
                let pgd = PgdConfig::new(threat, eps, k).with_restarts(restarts).with_step_size(eps).with_select(Selection::Last);
                let out = pgd.init().unwrap().attack::<AD, _>(&f, &x, &y, &ids(n), seed);
                let d: f32 = threat.distance(out.x_adv.clone(), x.clone()).max().into_scalar();
                prop_assert!(d as f64 <= eps + 1e-6);
                prop_assert!(host(out.x_adv).iter().all(|p| (0.0..=1.0).contains(p)));
            }
        }
    }

    #[test]
    fn eps_zero_is_the_identity((x, y) in inputs(), threat in threat(), seed: u64) {
        let m = Mlp::load();
        let f = |x| m.forward(x);
        let n = x.dims()[0];
        for attack in all_attacks(threat, 0.0, 2) {
            let out = attack.run::<AD, _>(&f, &x, &y, &ids(n), seed).unwrap();
            prop_assert_eq!(host(out.x_adv), host(x.clone()), "{}", attack.name());
        }
    }

    #[test]
    fn pgd_without_random_start_moves_at_most_k_eta((x, y) in inputs(), threat in threat(), eta in 0.001f64..0.05, k in 1usize..6) {
        let m = Mlp::load();
        let f = |x| m.forward(x);
        let n = x.dims()[0];
        let pgd = PgdConfig::new(threat, 0.5, k).with_step_size(eta).with_random_start(false);
        let out = pgd.init().unwrap().attack::<AD, _>(&f, &x, &y, &ids(n), 0);
        let d: f32 = threat.distance(out.x_adv, x).max().into_scalar();
        prop_assert!(d as f64 <= k as f64 * eta + 1e-6, "{d} > {k} * {eta}");
    }

    #[test]
    fn same_seed_same_output_and_batch_independence((x, y) in inputs(), threat in threat(), seed: u64) {
        let m = Mlp::load();
        let f = |x| m.forward(x);
        let n = x.dims()[0];
        for attack in [
            AttackSpec::Pgd(PgdConfig::new(threat, 0.1, 3).with_restarts(2)),
            AttackSpec::Apgd(ApgdConfig::ce(threat, 0.1).with_n_iter(5)),
        ] {
            let a = attack.run::<AD, _>(&f, &x, &y, &ids(n), seed).unwrap().x_adv;
            let b = attack.run::<AD, _>(&f, &x, &y, &ids(n), seed).unwrap().x_adv;
            prop_assert_eq!(host(a.clone()), host(b));
            for i in 0..n {
                let alone = attack
                    .run::<AD, _>(&f, &x.clone().narrow(0, i, 1), &y.clone().narrow(0, i, 1), &ids(n)[i..i + 1], seed)
                    .unwrap()
                    .x_adv;
                let d = max_abs_diff(&alone, &a.clone().narrow(0, i, 1));
                prop_assert!(d < 1e-5, "{}: sample {i} alone differs by {d}", attack.name());
            }
        }
        // A different seed gives a different random start. (A small step: with the default
        // 2.5·ε the one ℓ∞ step saturates every pixel to x ± ε whatever the start.)
        let pgd = PgdConfig::new(threat, 0.1, 1)
            .with_step_size(0.001)
            .with_select(Selection::Last)
            .init()
            .unwrap();
        let a = pgd.attack::<AD, _>(&f, &x, &y, &ids(n), seed).x_adv;
        let b = pgd.attack::<AD, _>(&f, &x, &y, &ids(n), seed.wrapping_add(1)).x_adv;
        prop_assert!(max_abs_diff(&a, &b) > 0.0);
    }

    #[test]
    fn pgd_does_not_decrease_the_loss((x, y) in inputs(), threat in threat(), eps in 0.01f64..0.3) {
        let m = Mlp::load();
        let f = |x| m.forward(x);
        let n = x.dims()[0];
        for loss in [Loss::CrossEntropy, Loss::Margin, Loss::Dlr] {
            let pgd = PgdConfig::new(threat, eps, 5).with_loss(loss).with_random_start(false);
            let out = pgd.init().unwrap().attack::<AD, _>(&f, &x, &y, &ids(n), 0);
            let value = |t: X| loss.per_sample(f(Tensor::from_inner(t)).inner(), y.clone(), None).into_data().to_vec::<f32>().unwrap();
            let (before, after) = (value(x.clone()), value(out.x_adv));
            for (b, a) in before.iter().zip(&after) {
                prop_assert!(a + 1e-5 >= *b, "{loss:?}: {a} < {b}");
            }
        }
    }

    #[test]
    fn projection_is_idempotent_and_in_the_ball(v in proptest::collection::vec(-0.5f32..1.5, 2 * 36), eps in 0.0f64..1.0, threat in threat()) {
        let d = Default::default();
        let x0 = Tensor::<TestBackend, 4>::from_data(TensorData::new(v[..36].iter().map(|p| p.clamp(0.0, 1.0)).collect::<Vec<_>>(), [1, 1, 6, 6]), &d);
        let x = Tensor::<TestBackend, 4>::from_data(TensorData::new(v[36..].to_vec(), [1, 1, 6, 6]), &d);
        let p = threat.project(&x0, x, eps);
        let dist: f32 = threat.distance(p.clone(), x0.clone()).into_scalar();
        prop_assert!(dist as f64 <= eps + 1e-6);
        let pp = threat.project(&x0, p.clone(), eps);
        prop_assert!(max_abs_diff(&p, &pp) < 1e-6);
    }
}

// ---------------------------------------------------------------- benchmark (not a timed test)

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Images/s of one PGD step vs one training forward+backward, and peak RSS after PGD with K = 1
/// and then K = 20 (equal peaks = memory flat in K). Run with
/// `cargo test -p advsoup-attacks --release -- --ignored bench_pgd --nocapture`.
#[test]
#[ignore = "benchmark; run by hand (see doc comment)"]
fn bench_pgd_step_vs_train_step() {
    use burn::module::Param;
    let device = Default::default();
    <TestBackend as Backend>::seed(&device, 0);
    let (d_in, hidden, classes, batch) = (3 * 32 * 32, 1024, 10, 64);
    let init = |r: usize, c: usize| {
        Tensor::<AD, 2>::random(
            [r, c],
            burn::tensor::Distribution::Normal(0.0, 0.02),
            &device,
        )
    };
    let (w1, w2, w3) = (
        init(d_in, hidden),
        init(hidden, hidden),
        init(hidden, classes),
    );
    let mlp = |x: Tensor<AD, 4>, a: &Tensor<AD, 2>, b: &Tensor<AD, 2>, c: &Tensor<AD, 2>| {
        let n = x.dims()[0];
        let h = burn::tensor::activation::relu(x.reshape([n, d_in]).matmul(a.clone()));
        burn::tensor::activation::relu(h.matmul(b.clone())).matmul(c.clone())
    };
    let frozen = |x| mlp(x, &w1, &w2, &w3);
    let (t1, t2, t3) = (
        Param::from_tensor(w1.clone()).val(),
        Param::from_tensor(w2.clone()).val(),
        Param::from_tensor(w3.clone()).val(),
    );
    let trainable = |x| mlp(x, &t1, &t2, &t3);
    let x = Tensor::<TestBackend, 4>::random(
        [batch, 3, 32, 32],
        burn::tensor::Distribution::Default,
        &device,
    );
    let y = Tensor::<TestBackend, 1, Int>::from_data(
        TensorData::new(
            (0..batch as i64).map(|i| i % 10).collect::<Vec<_>>(),
            [batch],
        ),
        &device,
    );
    let t = bench::step_throughput::<AD, _, _>(&frozen, &trainable, &x, &y, 8.0 / 255.0, 20);
    eprintln!("{t:?}");
    let ids: Vec<u64> = (0..batch as u64).collect();
    for k in [1, 20] {
        let pgd = PgdConfig::new(ThreatModel::Linf, 8.0 / 255.0, k)
            .with_select(Selection::Last)
            .init()
            .unwrap();
        let out = pgd.attack::<AD, _>(&frozen, &x, &y, &ids, 0);
        let _ = out.x_adv.sum().into_data();
        eprintln!("K={k}: peak RSS {} MiB", peak_rss_kib() / 1024);
    }
}
