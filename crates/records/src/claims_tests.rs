//! One test per rule and outcome: made-up result sets (three seeds unless a test says
//! otherwise) that yield each verdict the rule can give.

use super::*;
use crate::adapter_sweep::{BudgetRow, BudgetSpec, StandardResult};
use crate::testing::row;

const SEEDS: [u64; 3] = [0, 1, 2];
/// Seed-to-seed variation shared by every row of a seed (same data order and init).
const JITTER: [f64; 3] = [0.0, 0.03, -0.02];

/// Three seeds of nominal, adversarial, none, cls_token and dual_layer_norm: every paper claim
/// reproduced (cls_token 2 points above nominal, 3 above none, within 0.3 of dual LN).
fn rows() -> Vec<RowResult> {
    let mut v = Vec::new();
    for (i, s) in SEEDS.iter().enumerate() {
        let j = JITTER[i];
        let small = [0.0, 0.002, -0.001][i];
        for mut r in [
            row("nominal", 0.80 + j, 0.01, 0.0, 0),
            row("adversarial", 0.70 + j, 0.60 + j, 0.58 + j, 0),
            row("none", 0.79 + j - small, 0.55, 0.53, 0),
            row(
                "cls_token",
                0.82 + j + small,
                0.61 + j,
                0.59 + j + small,
                64,
            ),
            row("dual_layer_norm", 0.822 + j, 0.612 + j, 0.591 + j, 3136),
        ] {
            r.seed = *s;
            v.push(r);
        }
    }
    v
}

/// Sets a field of row `name` at each seed (index into [`SEEDS`]).
fn edit(rows: &mut [RowResult], name: &str, f: impl Fn(&mut RowResult, usize)) {
    for r in rows.iter_mut().filter(|r| r.name == name) {
        let i = SEEDS
            .iter()
            .position(|s| *s == r.seed)
            .expect("a known seed");
        f(r, i);
    }
}

fn with(f: impl FnOnce(&mut Vec<RowResult>)) -> Vec<RowResult> {
    let mut r = rows();
    f(&mut r);
    r
}

fn without(name: &str) -> Vec<RowResult> {
    with(|r| r.retain(|r| r.name != name))
}

fn seed0() -> Vec<RowResult> {
    with(|r| r.retain(|r| r.seed == 0))
}

fn iv(values: &[f64]) -> Interval {
    interval(values)
}

#[test]
fn above_rule_each_outcome() {
    let rule = Rule::Above { threshold: 0.0 };
    assert_eq!(
        verdict_of(rule, &iv(&[0.02, 0.021, 0.019])),
        Verdict::Reproduced
    );
    assert_eq!(
        verdict_of(rule, &iv(&[-0.02, -0.021, -0.019])),
        Verdict::NotReproduced
    );
    // an interval ending exactly at the boundary excludes the claimed side (> 0)
    assert_eq!(verdict_of(rule, &iv(&[0.0, 0.0])), Verdict::NotReproduced);
    assert_eq!(
        verdict_of(rule, &iv(&[0.02, -0.02, 0.01])),
        Verdict::Inconclusive
    );
    // one seed: no interval, no verdict either way
    assert_eq!(verdict_of(rule, &iv(&[0.05])), Verdict::Inconclusive);
    assert_eq!(verdict_of(rule, &iv(&[-0.05])), Verdict::Inconclusive);
    assert_eq!(verdict_of(rule, &iv(&[])), Verdict::NotMeasured);
    assert_eq!(
        verdict_of(rule, &iv(&[f64::NAN, 0.1])),
        Verdict::NotMeasured
    );
    let soft = Rule::Above { threshold: -0.01 };
    assert_eq!(
        verdict_of(soft, &iv(&[-0.005, -0.004, -0.006])),
        Verdict::Reproduced
    );
    assert_eq!(
        verdict_of(soft, &iv(&[-0.03, -0.031, -0.029])),
        Verdict::NotReproduced
    );
}

#[test]
fn within_rule_each_outcome() {
    let rule = Rule::Within { delta: 0.01 };
    assert_eq!(
        verdict_of(rule, &iv(&[0.002, -0.001, 0.0])),
        Verdict::Reproduced
    );
    assert_eq!(
        verdict_of(rule, &iv(&[0.05, 0.051, 0.049])),
        Verdict::NotReproduced
    );
    assert_eq!(
        verdict_of(rule, &iv(&[-0.05, -0.051, -0.049])),
        Verdict::NotReproduced
    );
    // straddles the margin
    assert_eq!(
        verdict_of(rule, &iv(&[0.01, 0.012, 0.008])),
        Verdict::Inconclusive
    );
    assert_eq!(verdict_of(rule, &iv(&[0.0])), Verdict::Inconclusive);
}

#[test]
fn combine_rule_each_outcome() {
    use Verdict::*;
    assert_eq!(combine(&[Reproduced, Reproduced]), Reproduced);
    assert_eq!(combine(&[Reproduced, Inconclusive]), Inconclusive);
    assert_eq!(combine(&[Inconclusive, NotReproduced]), NotReproduced);
    assert_eq!(combine(&[Reproduced, NotMeasured]), NotMeasured);
    assert_eq!(combine(&[]), NotMeasured);
}

#[test]
fn every_claim_reproduced_on_the_base_set() {
    let c = claims(&rows(), None);
    assert_eq!(c.len(), 7);
    assert!(c.iter().all(|c| c.verdict == Verdict::Reproduced), "{c:#?}");
    let ids: Vec<&str> = c.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["1", "1-softer", "2", "3", "4", "5", "robust-softer"]);
    assert!(
        c[0].claim.contains("+1.12 points"),
        "quoted as the paper states it"
    );
    assert_eq!(c[1].kind, ClaimKind::Softer);
}

#[test]
fn claim_1_each_outcome() {
    let c = clean_accuracy_improves(&rows());
    assert_eq!(c.verdict, Verdict::Reproduced, "{}", c.evidence);
    assert_eq!(
        c.evidence,
        "clean acc, cls_token − nominal: 2.03 [1.65, 2.41] pt over 3 seed(s) (seed 0: +2.00, \
         seed 1: +2.20, seed 2: +1.90; claimed > 0) → reproduced"
    );
    // the run the issue describes: cls token 0.5 points below nominal, every seed
    let below = with(|r| edit(r, "cls_token", |r, i| r.clean_acc = 0.795 + JITTER[i]));
    assert_eq!(
        clean_accuracy_improves(&below).verdict,
        Verdict::NotReproduced
    );
    let mixed = with(|r| {
        edit(r, "cls_token", |r, i| {
            r.clean_acc = 0.80 + JITTER[i] + [0.01, -0.01, 0.004][i]
        })
    });
    assert_eq!(
        clean_accuracy_improves(&mixed).verdict,
        Verdict::Inconclusive
    );
    let one = clean_accuracy_improves(&seed0());
    assert_eq!(one.verdict, Verdict::Inconclusive);
    assert!(
        one.evidence.contains("2.00 [n/a] pt over 1 seed(s)"),
        "{}",
        one.evidence
    );
    let c = clean_accuracy_improves(&without("nominal"));
    assert_eq!(c.verdict, Verdict::NotMeasured);
    assert_eq!(c.evidence, "needs the rows cls_token, nominal");
}

#[test]
fn claim_1_pairs_by_seed() {
    // seeds vary a lot (±10 points) while cls_token is 1 point above nominal at every seed:
    // paired, the effect is clear; listed in another order, the pairs are the same
    let spread = [0.0, 0.10, -0.10];
    let mut r = with(|r| {
        edit(r, "nominal", |r, i| r.clean_acc = 0.80 + spread[i]);
        edit(r, "cls_token", |r, i| {
            r.clean_acc = 0.81 + spread[i] + [0.0, 0.001, -0.001][i]
        });
    });
    assert_eq!(clean_accuracy_improves(&r).verdict, Verdict::Reproduced);
    // nominal's seeds listed in the opposite order to cls_token's
    r.sort_by_key(|x| {
        if x.name == "nominal" {
            10 - x.seed
        } else {
            x.seed
        }
    });
    let c = clean_accuracy_improves(&r);
    assert_eq!(c.verdict, Verdict::Reproduced, "{}", c.evidence);
    // a seed only one row has is left out, not paired with another seed
    let r = with(|r| r.retain(|r| !(r.name == "nominal" && r.seed == 2)));
    let seeds: Vec<u64> = clean_accuracy_improves(&r).effects[0]
        .per_seed
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(seeds, [0, 1]);
}

#[test]
fn claim_1_softer_each_outcome() {
    let half_below = with(|r| {
        edit(r, "cls_token", |r, i| {
            r.clean_acc = 0.795 + JITTER[i] + [0.0, 0.001, -0.001][i]
        })
    });
    // the paper's claim is not reproduced, the softer line is: separate lines
    assert_eq!(
        clean_accuracy_improves(&half_below).verdict,
        Verdict::NotReproduced
    );
    assert_eq!(
        clean_accuracy_kept_softer(&half_below).verdict,
        Verdict::Reproduced
    );
    let far_below = with(|r| edit(r, "cls_token", |r, i| r.clean_acc = 0.77 + JITTER[i]));
    assert_eq!(
        clean_accuracy_kept_softer(&far_below).verdict,
        Verdict::NotReproduced
    );
    let around = with(|r| {
        edit(r, "cls_token", |r, i| {
            r.clean_acc = 0.79 + JITTER[i] + [0.0, 0.01, -0.01][i]
        })
    });
    assert_eq!(
        clean_accuracy_kept_softer(&around).verdict,
        Verdict::Inconclusive
    );
}

#[test]
fn claim_1_at_budget_each_outcome() {
    let budget = |cls: [f64; 3]| BudgetResults {
        spec: BudgetSpec {
            label: "4x".into(),
            set: vec![],
        },
        rows: SEEDS
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                [("nominal", 0.85), ("cls_token", cls[i])].map(|(n, acc)| BudgetRow {
                    name: n.into(),
                    seed: *s,
                    clean_acc: acc,
                    n_clean: 10_000,
                    robust_acc: 0.5,
                    n_robust: 1000,
                    train_seconds: 1.0,
                    run_dir: "r".into(),
                })
            })
            .collect(),
    };
    let v = |b: BudgetResults| clean_accuracy_improves_at_budget(&b).verdict;
    assert_eq!(v(budget([0.86, 0.861, 0.862])), Verdict::Reproduced);
    assert_eq!(v(budget([0.84, 0.841, 0.842])), Verdict::NotReproduced);
    assert_eq!(v(budget([0.86, 0.84, 0.855])), Verdict::Inconclusive);
    let mut b = budget([0.86, 0.861, 0.862]);
    b.rows.retain(|r| r.name == "nominal");
    assert_eq!(v(b), Verdict::NotMeasured);
    let c = claims(&rows(), Some(&budget([0.86, 0.861, 0.862])));
    assert_eq!(c.last().map(|c| c.kind), Some(ClaimKind::Budget));
}

#[test]
fn claim_2_each_outcome() {
    let c = cls_token_matches_dual_norm(&rows());
    assert_eq!(c.verdict, Verdict::Reproduced, "{}", c.evidence);
    assert!(
        c.evidence.contains("robust acc (APGD-CE)"),
        "{}",
        c.evidence
    );
    assert!(
        c.evidence
            .contains("cls_token 64, dual_layer_norm 3136 (49.0x)")
    );
    // dual LN 5 points cleaner at every seed: does not match
    let cleaner = with(|r| edit(r, "dual_layer_norm", |r, i| r.clean_acc = 0.87 + JITTER[i]));
    assert_eq!(
        cls_token_matches_dual_norm(&cleaner).verdict,
        Verdict::NotReproduced
    );
    let noisy = with(|r| {
        edit(r, "dual_layer_norm", |r, i| {
            r.robust_acc_apgd_ce = 0.59 + JITTER[i] + [0.02, -0.02, 0.0][i]
        })
    });
    assert_eq!(
        cls_token_matches_dual_norm(&noisy).verdict,
        Verdict::Inconclusive
    );
    // with the standard ensemble on every (row, seed), the claim uses it
    let standard = |acc: f64| StandardResult {
        n: 1000,
        clean_acc: 0.8,
        robust_acc: acc,
        attacks: vec!["apgd-ce".into()],
        sanity_flags: vec![],
        report: "r".into(),
    };
    let std_far = with(|r| {
        edit(r, "cls_token", |r, _| r.standard = Some(standard(0.40)));
        edit(r, "dual_layer_norm", |r, i| {
            r.standard = Some(standard(0.50 + [0.0, 0.001, 0.002][i]))
        });
    });
    let c = cls_token_matches_dual_norm(&std_far);
    assert_eq!(c.verdict, Verdict::NotReproduced, "{}", c.evidence);
    assert!(c.evidence.contains("standard ensemble"), "{}", c.evidence);
    assert_eq!(
        cls_token_matches_dual_norm(&without("dual_layer_norm")).verdict,
        Verdict::NotMeasured
    );
}

#[test]
fn claim_3_each_outcome() {
    assert_eq!(no_adapter_does_worse(&rows()).verdict, Verdict::Reproduced);
    let cleaner = with(|r| edit(r, "none", |r, i| r.clean_acc = 0.84 + JITTER[i]));
    assert_eq!(
        no_adapter_does_worse(&cleaner).verdict,
        Verdict::NotReproduced
    );
    let close = with(|r| {
        edit(r, "none", |r, i| {
            r.clean_acc = 0.82 + JITTER[i] + [0.01, -0.01, 0.0][i]
        })
    });
    assert_eq!(no_adapter_does_worse(&close).verdict, Verdict::Inconclusive);
    assert_eq!(
        no_adapter_does_worse(&without("none")).verdict,
        Verdict::NotMeasured
    );
}

#[test]
fn claim_4_each_outcome() {
    // the front of testing::row: clean rises 10 points with β, robust falls 30
    assert_eq!(soups_trade_off(&rows()).verdict, Verdict::Reproduced);
    let flat = with(|r| {
        edit(r, "cls_token", |r, _| {
            let c = r.front[0].clean_acc;
            r.front[1].clean_acc = c - 0.01;
        })
    });
    assert_eq!(soups_trade_off(&flat).verdict, Verdict::NotReproduced);
    let noisy = with(|r| {
        edit(r, "cls_token", |r, i| {
            r.front[1].robust_acc = r.front[0].robust_acc + [0.01, -0.02, 0.005][i]
        })
    });
    assert_eq!(soups_trade_off(&noisy).verdict, Verdict::Inconclusive);
    let no_front = with(|r| edit(r, "cls_token", |r, _| r.front.truncate(1)));
    assert_eq!(soups_trade_off(&no_front).verdict, Verdict::NotMeasured);
}

#[test]
fn claim_5_each_outcome() {
    // testing::row's shift: soup 65%, clean mode 60%, robust mode 50%
    let c = soups_adapt_to_shifts(&rows());
    assert_eq!(c.verdict, Verdict::Reproduced, "{}", c.evidence);
    assert!(
        c.evidence.contains("on 3 of 3 (shift, seed) pairs"),
        "{}",
        c.evidence
    );
    let worse = with(|r| edit(r, "cls_token", |r, _| r.shifts[0].soup_acc = 0.58));
    assert_eq!(
        soups_adapt_to_shifts(&worse).verdict,
        Verdict::NotReproduced
    );
    let mixed = with(|r| {
        edit(r, "cls_token", |r, i| {
            r.shifts[0].soup_acc = 0.60 + [0.02, -0.02, 0.01][i]
        })
    });
    assert_eq!(soups_adapt_to_shifts(&mixed).verdict, Verdict::Inconclusive);
    let none = with(|r| edit(r, "cls_token", |r, _| r.shifts.clear()));
    assert_eq!(soups_adapt_to_shifts(&none).verdict, Verdict::NotMeasured);
}

#[test]
fn robust_softer_each_outcome() {
    assert_eq!(
        robust_accuracy_kept_softer(&rows()).verdict,
        Verdict::Reproduced
    );
    let far = with(|r| {
        edit(r, "cls_token", |r, i| {
            r.robust_acc_apgd_ce = 0.50 + JITTER[i]
        })
    });
    assert_eq!(
        robust_accuracy_kept_softer(&far).verdict,
        Verdict::NotReproduced
    );
    let around = with(|r| {
        edit(r, "cls_token", |r, i| {
            r.robust_acc_apgd_ce = 0.57 + JITTER[i] + [0.01, -0.01, 0.0][i]
        })
    });
    assert_eq!(
        robust_accuracy_kept_softer(&around).verdict,
        Verdict::Inconclusive
    );
    assert_eq!(
        robust_accuracy_kept_softer(&without("adversarial")).verdict,
        Verdict::NotMeasured
    );
}
