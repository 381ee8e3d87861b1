//! The report of an adapter sweep: the one table (also printed) and REPORT.md.

use std::fmt::Write as _;

use advsoup_records::adapter_sweep::SweepResults;

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}", 100.0 * v)
    } else {
        "-".into()
    }
}

/// The one table of the report.
pub fn table(r: &SweepResults) -> String {
    let first = r.rows.first();
    let mut t = format!(
        "| regime / adapter | domain-specific params | clean acc % (n={}) | robust acc PGD-20 % \
         (n={}) | robust acc APGD-CE % (n={}) | mean corruption acc % | best per-shift soup acc \
         % | train time |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        first.map_or(0, |f| f.n_clean),
        first.map_or(0, |f| f.n_robust_pgd20),
        first.map_or(0, |f| f.n_robust_apgd),
    );
    for row in &r.rows {
        let soup = if row.has_adapter {
            format!(
                "{} ({}/{} beat both)",
                pct(row.mean_soup_acc),
                row.soup_beats_both,
                row.shifts.len()
            )
        } else {
            format!("{} (one model)", pct(row.mean_soup_acc))
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} s |",
            row.label,
            row.params_per_domain,
            pct(row.clean_acc),
            pct(row.robust_acc_pgd20),
            pct(row.robust_acc_apgd_ce),
            pct(row.mean_corruption_acc),
            soup,
            row.train_seconds
        );
    }
    t
}

/// REPORT.md: how the numbers were made, the table, the claims and the per-shift soups.
pub fn report_md(r: &SweepResults) -> String {
    let c = &r.config;
    let mut m = format!(
        "# Adapter sweep `{}`{} (seed {})\n\nWritten by `cargo xtask sweep-adapters{}`; every \
         number below is read from the files the `advsoup` commands wrote under `runs/` \
         (results.json has them all).\n\n",
        c.name,
        if r.quick { " — quick" } else { "" },
        c.seed,
        if r.quick { " --quick" } else { "" },
    );
    let _ = writeln!(
        m,
        "- Every row trains `{}` with the same seed, data order and budget; overrides: `{}`.",
        c.base.display(),
        c.set.join("`, `")
    );
    let _ = writeln!(
        m,
        "- Clean accuracy: the clean mode (β = 1) on the test split. Robust accuracy: the robust \
         mode (β = 0), ℓ∞ ε = {}: PGD-20 from the run's final evaluation, APGD-CE ({} \
         iterations) from the soup sweep, on the first test images.",
        r.eps, c.eval.apgd_iter
    );
    let _ = writeln!(
        m,
        "- Corruptions (severity {}): {}. Mean corruption accuracy: the clean mode on the first \
         {} corrupted test images. Best per-shift soup: β ∈ {{{}}} chosen per corruption on {} \
         corrupted held-out (training) images, reported on the same test images; without an \
         adapter both modes are one model.",
        c.soup.severity,
        c.corruption_list().join(", "),
        c.soup.n_test,
        c.soup.betas,
        c.soup.n_held_out
    );
    let _ = writeln!(
        m,
        "- Domain-specific parameters per domain: the adapter's formula, checked against the \
         tensors of each saved model (`advsoup info --run`).\n"
    );
    m.push_str(&table(r));
    m.push_str("\n![soup fronts](fronts.svg)\n\n## The paper's claims at this scale\n\n");
    for cl in &r.claims {
        let _ = writeln!(m, "- **{}** — {}. {}", cl.verdict, cl.claim, cl.evidence);
    }
    m.push_str("\n## Per-shift soups\n\n| row | shift | chosen β | soup % | clean mode % | robust mode % |\n|---|---|---:|---:|---:|---:|\n");
    for row in r.rows.iter().filter(|r| r.has_adapter) {
        for s in &row.shifts {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} |",
                row.name,
                s.shift,
                s.chosen_beta,
                pct(s.soup_acc),
                pct(s.clean_mode_acc),
                pct(s.robust_mode_acc)
            );
        }
    }
    let _ = writeln!(
        m,
        "\nRegenerate: `cargo xtask sweep-adapters --config <this sweep file>{} --seed {}` \
         (finished rows are skipped; `--force` retrains).",
        if r.quick { " --quick" } else { "" },
        c.seed
    );
    m
}

#[cfg(test)]
mod tests {
    use advsoup_records::adapter_sweep::{Claim, Verdict};
    use advsoup_records::testing::row;

    use super::*;

    #[test]
    fn table_has_one_line_per_row_with_counts() {
        let r = SweepResults {
            config: super::super::plan::tests::config(),
            quick: false,
            eps: 0.1,
            rows: vec![
                row("nominal", 0.88, 0.01, 0.0, 0),
                row("cls_token", 0.875, 0.61, 0.60, 64),
            ],
            claims: vec![Claim {
                claim: "c".into(),
                verdict: Verdict::Inconclusive,
                evidence: "e".into(),
            }],
        };
        let t = table(&r);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(
            t.contains(
                "| cls_token | 64 | 87.50 | 61.00 | 60.00 | 60.00 | 65.00 (1/1 beat both) | 10 s |"
            ),
            "{t}"
        );
        assert!(t.contains("(n=10000)") && t.contains("(n=500)"), "{t}");
        let md = report_md(&r);
        assert!(md.contains("![soup fronts](fronts.svg)"));
        assert!(
            md.contains("- **inconclusive (too few test images)** — c. e\n"),
            "{md}"
        );
        assert!(md.contains("| cls_token | contrast:3 | 0.5 | 65.00 | 60.00 | 50.00 |"));
    }
}
