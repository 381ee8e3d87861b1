//! One test per claim rule: made-up rows that yield each verdict the rule can give.

use super::*;
use crate::testing::row;

/// nominal, adversarial, none, cls_token, bias: every claim holds.
fn rows() -> Vec<RowResult> {
    vec![
        row("nominal", 0.88, 0.01, 0.0, 0),
        row("adversarial", 0.76, 0.62, 0.60, 0),
        row("none", 0.80, 0.55, 0.53, 0),
        row("cls_token", 0.875, 0.61, 0.60, 64),
        row("bias", 0.86, 0.60, 0.58, 1802),
    ]
}

const CLS: usize = 3;

fn with(edit: impl FnOnce(&mut Vec<RowResult>)) -> Vec<RowResult> {
    let mut r = rows();
    edit(&mut r);
    r
}

fn without(name: &str) -> Vec<RowResult> {
    with(|r| r.retain(|r| r.name != name))
}

#[test]
fn margin_is_two_standard_errors_of_the_difference() {
    let m = margin(0.5, 100, 0.5, 100);
    assert!((m - 2.0 * 0.005f64.sqrt()).abs() < 1e-12, "{m}");
    assert_eq!(margin(0.5, 0, 0.5, 0), 0.0);
    assert_eq!(at_least_as_good(0.5, 0.5, 0.0), Some(true));
    assert_eq!(at_least_as_good(0.4, 0.5, 0.05), Some(false));
    assert_eq!(at_least_as_good(0.48, 0.5, 0.05), Some(true));
    assert_eq!(at_least_as_good(0.48, 0.5, 0.08), None);
}

#[test]
fn claims_follow_the_numbers() {
    let rows = rows();
    let c = claims(&rows);
    assert_eq!(c.len(), 5);
    assert!(c.iter().all(|c| c.verdict == Verdict::Holds), "{c:#?}");
    // the robust mode far below adversarial training: claim 2 fails
    let mut worse = rows.clone();
    worse[CLS].robust_acc_pgd20 = 0.50;
    let c = claims(&worse);
    assert_eq!(c[1].verdict, Verdict::DoesNotHold, "{:?}", c[1]);
    assert_eq!(
        c[2].verdict,
        Verdict::DoesNotHold,
        "no-adapter beats it now"
    );
    // behind by less than a wide margin (few attacked images): inconclusive, not "holds"
    let mut few = rows.clone();
    for r in &mut few {
        r.n_robust_pgd20 = 100;
        r.n_robust_apgd = 100;
    }
    few[CLS].robust_acc_pgd20 = 0.57;
    let c = claims(&few);
    assert_eq!(c[1].verdict, Verdict::Inconclusive, "{:?}", c[1]);
    // a claim whose rows are missing is not measured, never guessed
    let c = claims(&rows[..2]);
    assert!(
        c.iter().all(|c| c.verdict == Verdict::NotMeasured),
        "{c:#?}"
    );
}

#[test]
fn clean_accuracy_kept_rule() {
    let c = clean_accuracy_kept(&rows());
    // behind by 0.5 pt with a margin under a point: holds
    assert_eq!(c.verdict, Verdict::Holds);
    assert_eq!(
        c.evidence,
        "cls_token clean mode 87.50% vs nominal 88.00% (margin 0.93 pt, n=10000)"
    );
    let better = with(|r| r[CLS].clean_acc = 0.89);
    assert_eq!(clean_accuracy_kept(&better).verdict, Verdict::Holds);
    let behind = with(|r| r[CLS].clean_acc = 0.80);
    assert_eq!(clean_accuracy_kept(&behind).verdict, Verdict::DoesNotHold);
    // 100 test images: a ~9.7 pt margin, too wide to call 3 pt behind "the same"
    let few = with(|r| {
        for r in r.iter_mut() {
            r.n_clean = 100;
        }
        r[CLS].clean_acc = 0.85;
    });
    assert_eq!(clean_accuracy_kept(&few).verdict, Verdict::Inconclusive);
    let c = clean_accuracy_kept(&without("nominal"));
    assert_eq!(c.verdict, Verdict::NotMeasured);
    assert_eq!(c.evidence, "needs the rows cls_token, nominal");
}

#[test]
fn robust_accuracy_kept_rule() {
    assert_eq!(robust_accuracy_kept(&rows()).verdict, Verdict::Holds);
    let pgd_behind = with(|r| r[CLS].robust_acc_pgd20 = 0.50);
    assert_eq!(
        robust_accuracy_kept(&pgd_behind).verdict,
        Verdict::DoesNotHold
    );
    let apgd_behind = with(|r| r[CLS].robust_acc_apgd_ce = 0.40);
    assert_eq!(
        robust_accuracy_kept(&apgd_behind).verdict,
        Verdict::DoesNotHold
    );
    let few = with(|r| {
        for r in r.iter_mut() {
            r.n_robust_pgd20 = 100;
            r.n_robust_apgd = 100;
        }
        r[CLS].robust_acc_pgd20 = 0.57;
    });
    assert_eq!(robust_accuracy_kept(&few).verdict, Verdict::Inconclusive);
    assert_eq!(
        robust_accuracy_kept(&without("adversarial")).verdict,
        Verdict::NotMeasured
    );
}

#[test]
fn no_adapter_is_a_compromise_rule() {
    assert_eq!(no_adapter_is_a_compromise(&rows()).verdict, Verdict::Holds);
    let cleaner = with(|r| r[2].clean_acc = 0.90);
    assert_eq!(
        no_adapter_is_a_compromise(&cleaner).verdict,
        Verdict::DoesNotHold
    );
    // strictly lower: a tie on robust accuracy does not hold
    let tie = with(|r| r[2].robust_acc_pgd20 = r[CLS].robust_acc_pgd20);
    assert_eq!(
        no_adapter_is_a_compromise(&tie).verdict,
        Verdict::DoesNotHold
    );
    assert_eq!(
        no_adapter_is_a_compromise(&without("none")).verdict,
        Verdict::NotMeasured
    );
}

#[test]
fn few_parameters_suffice_rule() {
    let c = few_parameters_suffice(&rows());
    assert_eq!(c.verdict, Verdict::Holds);
    assert!(
        c.evidence.starts_with("cls_token (64 params/domain)"),
        "{}",
        c.evidence
    );
    let bias_far_cleaner = with(|r| r[4].clean_acc = 0.95);
    let c = few_parameters_suffice(&bias_far_cleaner);
    assert_eq!(c.verdict, Verdict::DoesNotHold);
    assert!(
        c.evidence.contains("best clean bias (1802 params) 95.00%"),
        "{}",
        c.evidence
    );
    let bias_far_more_robust = with(|r| r[4].robust_acc_pgd20 = 0.75);
    assert_eq!(
        few_parameters_suffice(&bias_far_more_robust).verdict,
        Verdict::DoesNotHold
    );
    let few = with(|r| {
        for r in r.iter_mut() {
            r.n_clean = 100;
        }
        r[4].clean_acc = 0.90;
    });
    assert_eq!(few_parameters_suffice(&few).verdict, Verdict::Inconclusive);
    // cls_token is the only adapter row
    let c = few_parameters_suffice(&without("bias"));
    assert_eq!(c.verdict, Verdict::NotMeasured);
    assert_eq!(
        c.evidence,
        "needs the rows cls_token and at least one other adapter"
    );
}

#[test]
fn soups_adapt_to_shifts_rule() {
    let c = soups_adapt_to_shifts(&rows());
    assert_eq!(c.verdict, Verdict::Holds);
    assert_eq!(
        c.evidence,
        "mean over 1 shifts: soup 65.00%, clean mode 60.00%, robust mode 50.00%; the soup beats \
         both modes on 1 of 1 shifts"
    );
    let below_clean = with(|r| r[CLS].mean_soup_acc = 0.55);
    assert_eq!(
        soups_adapt_to_shifts(&below_clean).verdict,
        Verdict::DoesNotHold
    );
    let below_robust = with(|r| r[CLS].shifts[0].robust_mode_acc = 0.7);
    assert_eq!(
        soups_adapt_to_shifts(&below_robust).verdict,
        Verdict::DoesNotHold
    );
    let no_shifts = with(|r| r[CLS].shifts.clear());
    assert_eq!(
        soups_adapt_to_shifts(&no_shifts).verdict,
        Verdict::NotMeasured
    );
    assert_eq!(
        soups_adapt_to_shifts(&without("cls_token")).verdict,
        Verdict::NotMeasured
    );
}

#[test]
fn unmeasured_numbers_show_as_a_dash() {
    let c = clean_accuracy_kept(&with(|r| r[CLS].clean_acc = f64::NAN));
    assert!(
        c.evidence.starts_with("cls_token clean mode -% vs"),
        "{}",
        c.evidence
    );
}
