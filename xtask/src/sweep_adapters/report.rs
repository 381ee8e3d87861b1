//! The report of an adapter sweep: the table over seeds (also printed), the claims, REPORT.md,
//! and through advsoup-report the soup fronts (`fronts.svg`) and the self-contained
//! `report.html` (tables, claims, plots inline, the commands to rerun).

use std::fmt::Write as _;
use std::path::Path;

use advsoup_records::adapter_sweep::SweepResults;
use advsoup_records::stats::Interval;
use anyhow::Result;

use super::run::write_atomic;

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

/// The table of the report: one line per row, each number the mean over seeds with its 95%
/// interval (`n/a` with one seed).
pub fn table(r: &SweepResults) -> String {
    let first = r.rows.first();
    let mut t = format!(
        "| regime / adapter | domain-specific params | seeds | clean acc % (n={}) | robust acc \
         PGD-20 % (n={}) | robust acc APGD-CE % (n={}) | robust acc standard % | mean \
         corruption acc % | per-shift soup acc % |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        first.map_or(0, |f| f.n_clean),
        first.map_or(0, |f| f.n_robust_pgd20),
        first.map_or(0, |f| f.n_robust_apgd),
    );
    for s in &r.summary {
        let standard = match (
            &s.robust_acc_standard,
            r.rows.iter().find(|x| x.name == s.name),
        ) {
            (Some(i), Some(x)) => {
                format!("{} (n={})", show(i), x.standard.as_ref().map_or(0, |s| s.n))
            }
            _ => "-".into(),
        };
        let soup = if s.has_adapter {
            show(&s.mean_soup_acc)
        } else {
            format!("{} (one model)", show(&s.mean_soup_acc))
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.label,
            s.params_per_domain,
            s.seeds.len(),
            show(&s.clean_acc),
            show(&s.robust_acc_pgd20),
            show(&s.robust_acc_apgd_ce),
            standard,
            show(&s.mean_corruption_acc),
            soup,
        );
    }
    t
}

/// The claims, one block each: the claim as stated, its kind, verdict and effects.
pub fn claims_md(r: &SweepResults) -> String {
    let mut m = String::new();
    for c in &r.claims {
        let _ = writeln!(
            m,
            "- **{}: {}** ({}) — {}\n  - {}",
            c.id,
            c.verdict,
            c.kind.as_str(),
            c.claim,
            c.evidence
        );
    }
    m
}

/// REPORT.md: how the numbers were made, the table, the claims, the budget axis, the
/// `standard` ensemble, the per-(row, seed) numbers and the per-shift soups.
pub fn report_md(r: &SweepResults) -> String {
    let c = &r.config;
    let seeds = r
        .seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut m = format!(
        "# Adapter sweep `{}`{} (seeds {seeds})\n\nWritten by `cargo xtask sweep-adapters{} \
         --seeds {seeds}`; every number below is read from the files the `advsoup` commands \
         wrote under `runs/seed-<s>/` (results.json has them all; report.html is the same \
         report with its plots inline).\n\n",
        c.name,
        if r.quick { " — quick" } else { "" },
        if r.quick { " --quick" } else { "" },
    );
    let _ = writeln!(
        m,
        "- Every row trains `{}` once per seed with the same overrides (`{}`); a seed fixes the \
         data order and the initialization, so claims compare rows **paired by seed**. Numbers \
         are means over seeds with a 95% Student-t interval `mean [lo, hi]` (`n/a` with one \
         seed).",
        c.base.display(),
        c.set.join("`, `")
    );
    let _ = writeln!(
        m,
        "- Clean accuracy: the clean mode (β = 1) on the test split. Robust accuracy: the robust \
         mode (β = 0), ℓ∞ ε = {}: PGD-20 from the run's final evaluation, APGD-CE ({} \
         iterations) from the soup sweep, and the `standard` ensemble (`advsoup eval --attack \
         standard`, {} images) on the rows the claims rest on ({}).",
        r.eps,
        c.eval.apgd_iter,
        c.eval.n_standard,
        c.eval.standard_rows.join(", ")
    );
    let _ = writeln!(
        m,
        "- Corruptions (severity {}): {}. Per-shift soup: β ∈ {{{}}} chosen per corruption on \
         {} corrupted held-out (training) images, reported on {} corrupted test images.\n",
        c.soup.severity,
        c.corruption_list().join(", "),
        c.soup.betas,
        c.soup.n_held_out,
        c.soup.n_test
    );
    m.push_str(&machines_md(r));
    m.push_str(&table(r));
    m.push_str("\n![soup fronts](fronts.svg)\n\n## The paper's claims at this scale\n\n");
    m.push_str(
        "Each effect is a difference paired by seed, in accuracy points, with its 95% interval. \
         **reproduced**: the interval lies entirely on the claimed side; **not reproduced**: it \
         excludes the claimed side (for \"improves\": the interval is at or below 0; for \
         \"matches\", i.e. within ±1 point: the interval lies entirely outside ±1 point); \
         **inconclusive at this scale**: otherwise, and always with one seed. Softer variants \
         are ours and labelled.\n\n",
    );
    m.push_str(&claims_md(r));
    if let Some(b) = &r.budget {
        let _ = writeln!(
            m,
            "\n## Budget axis: {}\n\nnominal and co-training + cls token again with `{}`, same \
             seeds. Claim 1's effect (clean acc, cls_token − nominal):\n",
            b.spec.label,
            b.spec.set.join("`, `")
        );
        for id in ["1", "1-budget"] {
            if let Some(cl) = r.claims.iter().find(|c| c.id == id) {
                let _ = writeln!(
                    m,
                    "- {}: {}",
                    if id == "1" {
                        "the sweep's budget"
                    } else {
                        b.spec.label.as_str()
                    },
                    cl.evidence
                );
            }
        }
        m.push_str("\n| row | seed | clean % | robust % (final attack) | train s |\n|---|---:|---:|---:|---:|\n");
        for x in &b.rows {
            let _ = writeln!(
                m,
                "| {} | {} | {} (n={}) | {} (n={}) | {:.0} |",
                x.name,
                x.seed,
                pct(x.clean_acc),
                x.n_clean,
                pct(x.robust_acc),
                x.n_robust,
                x.train_seconds
            );
        }
    }
    let standard: Vec<_> = r.rows.iter().filter(|x| x.standard.is_some()).collect();
    if !standard.is_empty() {
        m.push_str("\n## The standard ensemble (robust mode) and its gradient-masking flags\n\n| row | seed | n | clean % | robust % | attacks | flags |\n|---|---:|---:|---:|---:|---|---|\n");
        for x in standard {
            if let Some(s) = &x.standard {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    x.name,
                    x.seed,
                    s.n,
                    pct(s.clean_acc),
                    pct(s.robust_acc),
                    s.attacks.join(", "),
                    if s.sanity_flags.is_empty() {
                        "none".to_string()
                    } else {
                        s.sanity_flags.join("; ")
                    }
                );
            }
        }
    }
    m.push_str("\n## Every (row, seed)\n\n| row | seed | clean % | PGD-20 % | APGD-CE % | mean corruption % | per-shift soup % | train s |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for x in &r.rows {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            x.name,
            x.seed,
            pct(x.clean_acc),
            pct(x.robust_acc_pgd20),
            pct(x.robust_acc_apgd_ce),
            pct(x.mean_corruption_acc),
            pct(x.mean_soup_acc),
            x.train_seconds
        );
    }
    m.push_str("\n## Per-shift soups\n\n| row | seed | shift | chosen β | soup % | clean mode % | robust mode % |\n|---|---:|---|---:|---:|---:|---:|\n");
    for x in r.rows.iter().filter(|r| r.has_adapter) {
        for s in &x.shifts {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} |",
                x.name,
                x.seed,
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
        "\nRegenerate (finished (row, seed) runs are skipped; `--force` retrains):\n\n```sh\n{}\n```",
        commands(r)
    );
    m
}

/// Which CPUs trained the runs: burn's gemm and the fused kernels round differently on other
/// SIMD paths, so a rerun reproduces results.json bit for bit only on the same kind of CPU.
fn machines_md(r: &SweepResults) -> String {
    let list = |ms: &[advsoup_records::run::CpuInfo]| {
        ms.iter()
            .map(|m| format!("`{}`", m.summary()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let runs = r.rows.len() + r.budget.as_ref().map_or(0, |b| b.rows.len());
    let unrecorded = r.runs_without_cpu;
    let which = if unrecorded == 0 {
        "Trained on".to_string()
    } else {
        format!(
            "{unrecorded} of the {runs} runs do not name their CPU (trained before run.json \
             recorded it); the other {} were trained on",
            runs.saturating_sub(unrecorded)
        )
    };
    match r.machines.as_slice() {
        [] if unrecorded == 0 => String::new(),
        [] => "- No run names its CPU (trained before run.json recorded it): each reproduces \
               bit for bit only on a CPU like the one that trained it, which the records cannot \
               tell.\n\n"
            .to_string(),
        ms if r.mixed_machines() => format!(
            "- {which} {} CPUs with different SIMD paths ({}): each (row, seed) reproduces \
             bit for bit only on the kind of CPU that trained it (run.json names it); on another \
             the rounding differs, and training can grow that into tenths of a point.\n\n",
            ms.len(),
            list(ms)
        ),
        ms => format!(
            "- {which} one kind of CPU: {}. A run reproduces bit for bit on a CPU with the \
             same SIMD extensions; on another, the same functions round differently{}.\n\n",
            list(&ms[..1]),
            if unrecorded > 0 {
                ", so the runs that name no CPU reproduce only on a CPU like the one that \
                 trained them, which the records cannot tell"
            } else {
                ""
            }
        ),
    }
}

/// The commands that rerun the sweep and check that it reproduces.
pub fn commands(r: &SweepResults) -> String {
    let seeds = r
        .seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let q = if r.quick { " --quick" } else { "" };
    let nb = if r.budget.is_none() {
        " --no-budget"
    } else {
        ""
    };
    format!(
        "cargo xtask sweep-adapters --config <this sweep file>{q} --seeds {seeds}{nb}\n\
         # a fresh rerun elsewhere must give the same results.json up to wall times:\n\
         cargo xtask sweep-adapters --config <this sweep file>{q} --seeds {seeds}{nb} --out <new dir> \
         --check-against <this dir>/results.json"
    )
}

/// Training-curve plots of the first seed's runs (each row, then the budget rows; run
/// directories are relative to `out`), for the sweep page; a run whose metrics cannot be drawn
/// is left out with a note on stderr.
fn curves(r: &SweepResults, out: &Path) -> Vec<(String, String)> {
    let Some(&seed) = r.seeds.first() else {
        return vec![];
    };
    let mut dirs: Vec<(String, std::path::PathBuf)> = r
        .of_seed(seed)
        .map(|x| (x.name.clone(), x.run_dir.clone()))
        .collect();
    if let Some(b) = &r.budget {
        dirs.extend(
            b.rows
                .iter()
                .filter(|x| x.seed == seed)
                .map(|x| (format!("{} at {}", x.name, b.spec.label), x.run_dir.clone())),
        );
    }
    dirs.into_iter()
        .filter_map(|(name, dir)| {
            let svg = advsoup_report::read_metrics(&out.join(dir).join("metrics.jsonl"))
                .and_then(|m| advsoup_report::training_curves(&m, &format!("{name}, seed {seed}")));
            match svg {
                Ok(svg) => Some((format!("training curves: {name}, seed {seed}"), svg)),
                Err(e) => {
                    eprintln!("report: no training curves for {name}: {e}");
                    None
                }
            }
        })
        .collect()
}

/// Writes REPORT.md, fronts.svg and report.html into `out`.
pub fn write_all(r: &SweepResults, out: &Path) -> Result<()> {
    write_atomic(&out.join("REPORT.md"), report_md(r).as_bytes())?;
    let fronts = advsoup_report::fronts_of(r);
    if !fronts.is_empty() {
        let svg = advsoup_report::soup_fronts(
            &fronts,
            &format!(
                "sweep {}: soup fronts, mean over {} seed(s), 95% interval bars",
                r.config.name,
                r.seeds.len()
            ),
        )?;
        write_atomic(&out.join("fronts.svg"), svg.as_bytes())?;
    }
    let html = advsoup_report::sweep_page(r, &curves(r, out), &commands(r))?;
    write_atomic(&out.join("report.html"), html.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use advsoup_records::claims::claims;
    use advsoup_records::stats::interval;
    use advsoup_records::testing::row;

    use super::*;

    fn cpu(simd: &[&str]) -> advsoup_records::run::CpuInfo {
        advsoup_records::run::CpuInfo {
            arch: "x86_64".into(),
            model: Some("test".into()),
            simd: simd.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn table_has_one_line_per_row_with_intervals_and_the_claims_their_numbers() {
        let mut rows = vec![];
        for seed in [0, 1] {
            for (n, c) in [("nominal", 0.88), ("cls_token", 0.875)] {
                let mut x = row(n, c + 0.01 * seed as f64, 0.61, 0.60, 64);
                x.seed = seed;
                rows.push(x);
            }
        }
        let summary = ["nominal", "cls_token"]
            .iter()
            .map(|n| {
                let rs: Vec<_> = rows.iter().filter(|x| x.name == *n).collect();
                let i = |f: fn(&advsoup_records::adapter_sweep::RowResult) -> f64| {
                    interval(&rs.iter().map(|x| f(x)).collect::<Vec<_>>())
                };
                advsoup_records::adapter_sweep::RowSummary {
                    name: (*n).into(),
                    label: (*n).into(),
                    has_adapter: rs[0].has_adapter,
                    params_per_domain: 64,
                    seeds: vec![0, 1],
                    clean_acc: i(|x| x.clean_acc),
                    robust_acc_pgd20: i(|x| x.robust_acc_pgd20),
                    robust_acc_apgd_ce: i(|x| x.robust_acc_apgd_ce),
                    robust_acc_standard: None,
                    mean_corruption_acc: i(|x| x.mean_corruption_acc),
                    mean_soup_acc: i(|x| x.mean_soup_acc),
                }
            })
            .collect();
        let r = SweepResults {
            config: super::super::plan::tests::config(),
            quick: false,
            eps: 0.1,
            seeds: vec![0, 1],
            claims: claims(&rows, None),
            rows,
            summary,
            budget: None,
            machines: vec![cpu(&["avx2", "fma", "avx512f"]), cpu(&["avx2", "fma"])],
            runs_without_cpu: 0,
        };
        let t = table(&r);
        assert_eq!(t.lines().count(), 4, "{t}");
        // 87.5 and 88.5: mean 88.00, t(1) = 12.706, s/√2 = 0.5 → ±6.35
        assert!(
            t.contains("| cls_token | 64 | 2 | 88.00 [81.65, 94.35] | 61.00 [61.00, 61.00] |"),
            "{t}"
        );
        let md = report_md(&r);
        assert!(md.contains("![soup fronts](fronts.svg)"));
        assert!(
            md.contains("- Trained on 2 CPUs with different SIMD paths"),
            "{md}"
        );
        let one = SweepResults {
            machines: vec![cpu(&["avx2", "fma"])],
            ..r.clone()
        };
        let md = report_md(&one);
        assert!(
            md.contains("- Trained on one kind of CPU: `x86_64 avx2+fma (test)`. A run"),
            "{md}"
        );
        let some_unrecorded = SweepResults {
            runs_without_cpu: 3,
            ..one
        };
        let runs = some_unrecorded.rows.len();
        let md = report_md(&some_unrecorded);
        let line = format!(
            "- 3 of the {runs} runs do not name their CPU (trained before run.json recorded \
             it); the other {} were trained on one kind of CPU: `x86_64 avx2+fma (test)`.",
            runs - 3
        );
        assert!(md.contains(&line), "{line}\n{md}");
        assert!(
            md.contains("- **1: not reproduced** (paper) — Co-training on clean"),
            "{md}"
        );
        assert!(
            md.contains("clean acc, cls_token − nominal: -0.50 [-0.50, -0.50] pt over 2 seed(s)"),
            "{md}"
        );
        assert!(
            md.contains("| cls_token | 1 | contrast:3 | 0.5 | 65.00 | 60.00 | 50.00 |"),
            "{md}"
        );
        assert!(md.contains("--seeds 0,1 --no-budget"), "{md}");
    }
}
