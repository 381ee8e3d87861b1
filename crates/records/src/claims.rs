//! The paper's claims (Rebuffi et al. 2023) checked against the rows of an adapter sweep:
//! pure functions from [`RowResult`]s to [`Claim`]s, one per claim, each with its rule in its
//! doc comment. [`claims`] runs all five in report order.
//!
//! A claim whose rows have no results is [`Verdict::NotMeasured`], never guessed. "At least as
//! good, up to noise" ([`at_least_as_good`]) uses [`margin`], two binomial standard errors of
//! the difference; a claim that is behind by less than a margin wider than 7 points is
//! [`Verdict::Inconclusive`].

use crate::adapter_sweep::{Claim, RowResult, Verdict};

/// The widest margin (in [0, 1] units) within which "behind, but within the margin" still
/// counts as holding; beyond it the sample is too small to say.
pub const MODERATE_MARGIN: f64 = 0.07;

/// Two binomial standard errors of the difference of two accuracies, in [0, 1] units: the
/// margin within which two numbers are called "the same" here.
pub fn margin(p1: f64, n1: usize, p2: f64, n2: usize) -> f64 {
    let var = |p: f64, n: usize| {
        if n == 0 {
            0.0
        } else {
            p * (1.0 - p) / n as f64
        }
    };
    2.0 * (var(p1, n1) + var(p2, n2)).sqrt()
}

/// "At least as good, up to noise": better or equal holds (`Some(true)`); behind by more than
/// `margin` does not (`Some(false)`); behind by less holds only when the margin itself is
/// moderate (≤ [`MODERATE_MARGIN`]), else the sample is too small (`None`).
pub fn at_least_as_good(ours: f64, theirs: f64, margin: f64) -> Option<bool> {
    if ours >= theirs {
        Some(true)
    } else if theirs - ours > margin {
        Some(false)
    } else if margin <= MODERATE_MARGIN {
        Some(true)
    } else {
        None
    }
}

/// Both comparisons: one failing fails, both holding holds, else undecided.
fn both(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn verdict(ok: bool) -> Verdict {
    if ok {
        Verdict::Holds
    } else {
        Verdict::DoesNotHold
    }
}

fn graded(r: Option<bool>) -> Verdict {
    match r {
        Some(ok) => verdict(ok),
        None => Verdict::Inconclusive,
    }
}

fn missing(claim: &str, need: &str) -> Claim {
    Claim {
        claim: claim.into(),
        verdict: Verdict::NotMeasured,
        evidence: format!("needs the rows {need}"),
    }
}

/// Percent with two decimals, `-` for a number that was not measured (NaN).
fn pct(v: f64) -> String {
    if v.is_finite() {
        crate::pct(v)
    } else {
        "-".into()
    }
}

fn get<'a>(rows: &'a [RowResult], name: &str) -> Option<&'a RowResult> {
    rows.iter().find(|r| r.name == name)
}

/// Checks the paper's claims on the rows (each claim needs its rows; else `not measured`), in
/// report order.
pub fn claims(rows: &[RowResult]) -> Vec<Claim> {
    vec![
        clean_accuracy_kept(rows),
        robust_accuracy_kept(rows),
        no_adapter_is_a_compromise(rows),
        few_parameters_suffice(rows),
        soups_adapt_to_shifts(rows),
    ]
}

/// Claim 1. Rule: the `cls_token` row's clean accuracy is [`at_least_as_good`] as the
/// `nominal` row's, within [`margin`].
pub fn clean_accuracy_kept(rows: &[RowResult]) -> Claim {
    let c1 = "Co-training with the cls-token adapter keeps nominal training's clean accuracy in \
              its clean mode (within 2 standard errors or better)";
    let (Some(c), Some(n)) = (get(rows, "cls_token"), get(rows, "nominal")) else {
        return missing(c1, "cls_token, nominal");
    };
    let m = margin(c.clean_acc, c.n_clean, n.clean_acc, n.n_clean);
    Claim {
        claim: c1.into(),
        verdict: graded(at_least_as_good(c.clean_acc, n.clean_acc, m)),
        evidence: format!(
            "cls_token clean mode {}% vs nominal {}% (margin {} pt, n={})",
            pct(c.clean_acc),
            pct(n.clean_acc),
            pct(m),
            c.n_clean
        ),
    }
}

/// Claim 2. Rule: the `cls_token` row's robust accuracy is [`at_least_as_good`] as the
/// `adversarial` row's under PGD-20 and under APGD-CE (one failing fails).
pub fn robust_accuracy_kept(rows: &[RowResult]) -> Claim {
    let c2 = "... and adversarial training's robust accuracy in its robust mode (PGD-20 and \
              APGD-CE, within 2 standard errors or better)";
    let (Some(c), Some(a)) = (get(rows, "cls_token"), get(rows, "adversarial")) else {
        return missing(c2, "cls_token, adversarial");
    };
    let m1 = margin(
        c.robust_acc_pgd20,
        c.n_robust_pgd20,
        a.robust_acc_pgd20,
        a.n_robust_pgd20,
    );
    let m2 = margin(
        c.robust_acc_apgd_ce,
        c.n_robust_apgd,
        a.robust_acc_apgd_ce,
        a.n_robust_apgd,
    );
    Claim {
        claim: c2.into(),
        verdict: graded(both(
            at_least_as_good(c.robust_acc_pgd20, a.robust_acc_pgd20, m1),
            at_least_as_good(c.robust_acc_apgd_ce, a.robust_acc_apgd_ce, m2),
        )),
        evidence: format!(
            "PGD-20: cls_token robust mode {}% vs adversarial {}% (margin {} pt); \
             APGD-CE: {}% vs {}% (margin {} pt)",
            pct(c.robust_acc_pgd20),
            pct(a.robust_acc_pgd20),
            pct(m1),
            pct(c.robust_acc_apgd_ce),
            pct(a.robust_acc_apgd_ce),
            pct(m2)
        ),
    }
}

/// Claim 3. Rule: the `none` row (co-training without an adapter) has strictly lower clean
/// accuracy and strictly lower PGD-20 accuracy than the `cls_token` row (no margin).
pub fn no_adapter_is_a_compromise(rows: &[RowResult]) -> Claim {
    let c3 = "Without domain-specific parameters co-training is a compromise: lower clean \
              accuracy than the cls-token model's clean mode and lower robust accuracy than its \
              robust mode";
    let (Some(z), Some(c)) = (get(rows, "none"), get(rows, "cls_token")) else {
        return missing(c3, "none, cls_token");
    };
    Claim {
        claim: c3.into(),
        verdict: verdict(z.clean_acc < c.clean_acc && z.robust_acc_pgd20 < c.robust_acc_pgd20),
        evidence: format!(
            "no adapter: clean {}%, PGD-20 {}%; cls_token: clean {}%, PGD-20 {}%",
            pct(z.clean_acc),
            pct(z.robust_acc_pgd20),
            pct(c.clean_acc),
            pct(c.robust_acc_pgd20)
        ),
    }
}

/// Claim 4. Rule: among the co-training rows with an adapter (at least two), the `cls_token`
/// row is [`at_least_as_good`] as the best clean accuracy and as the best PGD-20 accuracy
/// (one failing fails).
pub fn few_parameters_suffice(rows: &[RowResult]) -> Claim {
    let c4 = "A few domain-specific parameters suffice: the cls token (the fewest) is within 2 \
              standard errors of the best adapter on clean and on PGD-20 accuracy";
    let adapters: Vec<&RowResult> = rows
        .iter()
        .filter(|r| r.has_adapter && r.regime == "co_training")
        .collect();
    let c = match get(rows, "cls_token") {
        Some(c) if adapters.len() >= 2 => c,
        _ => return missing(c4, "cls_token and at least one other adapter"),
    };
    let best_clean = adapters
        .iter()
        .max_by(|a, b| a.clean_acc.total_cmp(&b.clean_acc))
        .copied()
        .unwrap_or(c);
    let best_rob = adapters
        .iter()
        .max_by(|a, b| a.robust_acc_pgd20.total_cmp(&b.robust_acc_pgd20))
        .copied()
        .unwrap_or(c);
    let m1 = margin(
        c.clean_acc,
        c.n_clean,
        best_clean.clean_acc,
        best_clean.n_clean,
    );
    let m2 = margin(
        c.robust_acc_pgd20,
        c.n_robust_pgd20,
        best_rob.robust_acc_pgd20,
        best_rob.n_robust_pgd20,
    );
    Claim {
        claim: c4.into(),
        verdict: graded(both(
            at_least_as_good(c.clean_acc, best_clean.clean_acc, m1),
            at_least_as_good(c.robust_acc_pgd20, best_rob.robust_acc_pgd20, m2),
        )),
        evidence: format!(
            "cls_token ({} params/domain): clean {}%, PGD-20 {}%; best clean {} ({} \
             params) {}%; best PGD-20 {} ({} params) {}%",
            c.params_per_domain,
            pct(c.clean_acc),
            pct(c.robust_acc_pgd20),
            best_clean.name,
            best_clean.params_per_domain,
            pct(best_clean.clean_acc),
            best_rob.name,
            best_rob.params_per_domain,
            pct(best_rob.robust_acc_pgd20)
        ),
    }
}

/// Claim 5. Rule: the `cls_token` row's mean soup accuracy over its per-shift selections is
/// strictly above the mean of its clean mode and strictly above the mean of its robust mode
/// (no margin).
pub fn soups_adapt_to_shifts(rows: &[RowResult]) -> Claim {
    let c5 = "Adversarial soups adapt to distribution shifts: with β chosen per shift on \
              held-out data, the cls-token soup beats both of its modes on average over the \
              shifts";
    let c = match get(rows, "cls_token") {
        Some(c) if !c.shifts.is_empty() => c,
        _ => return missing(c5, "cls_token with per-shift selections"),
    };
    let robust_mean =
        c.shifts.iter().map(|s| s.robust_mode_acc).sum::<f64>() / c.shifts.len() as f64;
    Claim {
        claim: c5.into(),
        verdict: verdict(c.mean_soup_acc > c.mean_corruption_acc && c.mean_soup_acc > robust_mean),
        evidence: format!(
            "mean over {} shifts: soup {}%, clean mode {}%, robust mode {}%; the soup \
             beats both modes on {} of {} shifts",
            c.shifts.len(),
            pct(c.mean_soup_acc),
            pct(c.mean_corruption_acc),
            pct(robust_mean),
            c.soup_beats_both,
            c.shifts.len()
        ),
    }
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
