//! The adapter sweep's page (`reports/<sweep>/report.html`): the per-row table over seeds,
//! the paper's claims with their effects and verdicts, the budget axis, the `standard`
//! ensemble with its sanity flags, the per-seed table, the soup fronts with interval bars,
//! training curves, the per-shift soups and the commands that rerun it.

use advsoup_records::adapter_sweep::{Claim, SweepResults, Verdict};
use advsoup_records::claims::show_effect;
use advsoup_records::stats::{Interval, interval};

use crate::{FrontBar, FrontSeries, Page, ReportError, soup_fronts};

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}", 100.0 * v)
    } else {
        "-".into()
    }
}

fn show(i: &Interval) -> String {
    i.show(100.0)
}

/// The CSS class of a verdict.
fn class(v: Verdict) -> &'static str {
    match v {
        Verdict::Reproduced => "reproduced",
        Verdict::NotReproduced => "not-reproduced",
        Verdict::Inconclusive => "inconclusive",
        Verdict::NotMeasured => "not-measured",
    }
}

/// The soup front of every row with an adapter: per β, the mean and 95% interval over seeds.
pub fn fronts_of(r: &SweepResults) -> Vec<FrontSeries> {
    r.summary
        .iter()
        .filter(|s| s.has_adapter)
        .filter_map(|s| {
            let rows: Vec<_> = r.rows.iter().filter(|x| x.name == s.name).collect();
            let first = rows.first()?;
            let points = first
                .front
                .iter()
                .map(|p| {
                    let at = |f: fn(&advsoup_records::adapter_sweep::FrontPoint) -> f64| {
                        let v: Vec<f64> = rows
                            .iter()
                            .filter_map(|x| x.front.iter().find(|q| q.beta == p.beta).map(f))
                            .collect();
                        interval(&v)
                    };
                    FrontBar {
                        beta: p.beta,
                        clean: at(|q| q.clean_acc),
                        robust: at(|q| q.robust_acc),
                    }
                })
                .collect();
            Some(FrontSeries {
                name: s.name.clone(),
                points,
            })
        })
        .collect()
}

/// The claims table's rows.
fn claim_rows(claims: &[Claim]) -> Vec<Vec<String>> {
    claims
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.kind.as_str().into(),
                c.claim.clone(),
                c.verdict.as_str().into(),
                c.evidence.clone(),
            ]
        })
        .collect()
}

/// The sweep's page. `curves`: (caption, SVG) training-curve plots to show inline;
/// `commands`: the commands that rerun the sweep.
///
/// # Errors
/// When the fronts cannot be drawn.
pub fn sweep_page(
    r: &SweepResults,
    curves: &[(String, String)],
    commands: &str,
) -> Result<String, ReportError> {
    let c = &r.config;
    let mut page = Page::new(&format!(
        "Adapter sweep {}{}: seeds {:?}",
        c.name,
        if r.quick { " (quick)" } else { "" },
        r.seeds
    ));
    page.paragraph(&format!(
        "Every row trains {} with the same overrides ({}) once per seed; a seed fixes the data \
         order and the initialization, so rows are compared paired by seed. Numbers are the \
         mean over seeds with a 95% Student-t interval (n/a with one seed). ε = {} (ℓ∞).",
        c.base.display(),
        c.set.join(", "),
        r.eps
    ));
    page.heading("claims", "The paper's claims");
    page.paragraph(
        "Each effect is a difference paired by seed, in accuracy points. Verdicts: reproduced \
         (the 95% interval lies entirely on the claimed side), not reproduced (it excludes the \
         claimed side), inconclusive at this scale (otherwise, and always with one seed). \
         \"Matches\" means within ±1 point; softer variants are ours, labelled.",
    );
    page.table(
        "claims-table",
        &[
            "id",
            "kind",
            "claim",
            "verdict",
            "effects (mean [95% interval], per seed)",
        ],
        &claim_rows(&r.claims),
    );
    page.list(
        &r.claims
            .iter()
            .map(|cl| {
                (
                    Some(class(cl.verdict)),
                    format!("{} ({}): {}", cl.id, cl.verdict, cl.evidence),
                )
            })
            .collect::<Vec<_>>(),
    );
    page.heading("rows", "Rows over seeds");
    let rows: Vec<Vec<String>> = r
        .summary
        .iter()
        .map(|s| {
            vec![
                s.label.clone(),
                s.params_per_domain.to_string(),
                s.seeds.len().to_string(),
                show(&s.clean_acc),
                show(&s.robust_acc_pgd20),
                show(&s.robust_acc_apgd_ce),
                s.robust_acc_standard.as_ref().map_or("-".into(), show),
                show(&s.mean_corruption_acc),
                show(&s.mean_soup_acc),
            ]
        })
        .collect();
    page.table(
        "summary-table",
        &[
            "regime / adapter",
            "domain-specific params",
            "seeds",
            "clean acc %",
            "robust PGD-20 %",
            "robust APGD-CE %",
            "robust standard %",
            "mean corruption acc %",
            "per-shift soup acc %",
        ],
        &rows,
    );
    budget(&mut page, r);
    standard(&mut page, r);
    page.heading("per-seed", "Every (row, seed)");
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|x| {
            vec![
                x.name.clone(),
                x.seed.to_string(),
                format!("{} (n={})", pct(x.clean_acc), x.n_clean),
                format!("{} (n={})", pct(x.robust_acc_pgd20), x.n_robust_pgd20),
                format!("{} (n={})", pct(x.robust_acc_apgd_ce), x.n_robust_apgd),
                pct(x.mean_corruption_acc),
                pct(x.mean_soup_acc),
                format!("{:.0}", x.train_seconds),
            ]
        })
        .collect();
    page.table(
        "per-seed-table",
        &[
            "row",
            "seed",
            "clean %",
            "PGD-20 %",
            "APGD-CE %",
            "mean corruption %",
            "soup %",
            "train s",
        ],
        &rows,
    );
    page.heading("plots", "Plots");
    let fronts = fronts_of(r);
    if !fronts.is_empty() {
        let svg = soup_fronts(
            &fronts,
            &format!(
                "soup fronts, mean over {} seed(s), 95% interval bars",
                r.seeds.len()
            ),
        )?;
        page.figure(
            "soup-fronts",
            &svg,
            "clean vs robust accuracy along β per adapter (β = 1: clean mode, β = 0: robust mode)",
        );
    }
    for (i, (caption, svg)) in curves.iter().enumerate() {
        page.figure(&format!("curves-{i}"), svg, caption);
    }
    page.heading("shifts", "Per-shift soups");
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .filter(|x| x.has_adapter)
        .flat_map(|x| {
            x.shifts.iter().map(move |s| {
                vec![
                    x.name.clone(),
                    x.seed.to_string(),
                    s.shift.clone(),
                    s.chosen_beta.to_string(),
                    pct(s.soup_acc),
                    pct(s.clean_mode_acc),
                    pct(s.robust_mode_acc),
                ]
            })
        })
        .collect();
    page.table(
        "shifts-table",
        &[
            "row",
            "seed",
            "shift",
            "chosen β",
            "soup %",
            "clean mode %",
            "robust mode %",
        ],
        &rows,
    );
    page.heading("rerun", "Commands to rerun");
    page.pre(commands);
    Ok(page.finish())
}

/// The budget axis: clean accuracy of nominal and cls_token at both budgets, and claim 1's
/// effect at each.
fn budget(page: &mut Page, r: &SweepResults) {
    let Some(b) = &r.budget else { return };
    page.heading("budget", "Budget axis");
    page.paragraph(&format!(
        "nominal and co-training + cls token trained again at a longer budget ({}; overrides {}), \
         same seeds. Claim 1's effect at both budgets shows whether the gap closes or opens \
         with budget.",
        b.spec.label,
        b.spec.set.join(", ")
    ));
    let mut rows = Vec::new();
    for id in ["1", "1-budget"] {
        if let Some(cl) = r.claims.iter().find(|c| c.id == id) {
            let e = cl.effects.first();
            rows.push(vec![
                if id == "1" {
                    "the sweep's".into()
                } else {
                    b.spec.label.clone()
                },
                e.map_or("-".into(), |e| show(&e.interval)),
                cl.verdict.as_str().into(),
                e.map_or_else(|| cl.evidence.clone(), show_effect),
            ]);
        }
    }
    page.table(
        "budget-table",
        &[
            "budget",
            "clean acc cls_token − nominal, pt",
            "verdict",
            "effect",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = b
        .rows
        .iter()
        .map(|x| {
            vec![
                x.name.clone(),
                x.seed.to_string(),
                format!("{} (n={})", pct(x.clean_acc), x.n_clean),
                format!("{} (n={})", pct(x.robust_acc), x.n_robust),
                format!("{:.0}", x.train_seconds),
            ]
        })
        .collect();
    page.table(
        "budget-runs-table",
        &[
            "row",
            "seed",
            "clean %",
            "robust % (final attack)",
            "train s",
        ],
        &rows,
    );
}

/// The `standard` ensemble's rows with their sanity flags.
fn standard(page: &mut Page, r: &SweepResults) {
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .filter_map(|x| {
            let s = x.standard.as_ref()?;
            Some(vec![
                x.name.clone(),
                x.seed.to_string(),
                s.n.to_string(),
                pct(s.clean_acc),
                pct(s.robust_acc),
                s.attacks.join(", "),
                if s.sanity_flags.is_empty() {
                    "none".into()
                } else {
                    s.sanity_flags.join("; ")
                },
            ])
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    page.heading("standard", "The standard ensemble (robust mode)");
    page.table(
        "standard-table",
        &[
            "row",
            "seed",
            "n",
            "clean %",
            "robust %",
            "attacks",
            "gradient-masking flags",
        ],
        &rows,
    );
}
