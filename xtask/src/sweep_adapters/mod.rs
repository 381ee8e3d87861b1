//! `cargo xtask sweep-adapters`: the paper's adapter comparison (Rebuffi et al. 2023, Table 1 at
//! small scale) as one resumable command. ("Sweep" here is over adapters; `advsoup soup sweep`
//! sweeps the soup weight β of one model.)
//!
//! Every row trains from the same base config with the same data order and budget, once per
//! seed (`<out>/runs/seed-<s>/<row>`, `advsoup train`), then is evaluated by the cli (`advsoup
//! soup sweep` for clean/PGD-20/APGD-CE accuracy along β, `advsoup soup select` per corruption
//! with β chosen on held-out data, `advsoup eval --attack standard` on the rows the claims rest
//! on, `advsoup info --run` for the parameter counts, `advsoup report --run` for the run's
//! page). The budget axis trains nominal and co-training + cls token again at the sweep file's
//! longer `[budget]` (`budget-<row>`). Each step leaves its own file in the run directory; a
//! step whose file exists is skipped, so an interrupted sweep resumes per (row, seed) without
//! retraining finished runs. This module only orchestrates and aggregates: every number comes
//! from a file the cli wrote, read through its type in `advsoup-records`, which also holds the
//! intervals and the paper-claim verdicts; advsoup-report draws the plots and the HTML page.
//!
//! - [`plan`]: the sweep file and its rows;
//! - [`run`]: one (row, seed)'s cli calls, each skipped when its file exists;
//! - [`collect`]: the runs' files read into `results.json`'s records, summaries and claims;
//! - [`report`]: the table, REPORT.md, fronts.svg and report.html.

mod collect;
mod plan;
mod report;
mod run;

use std::path::{Path, PathBuf};
use std::time::Instant;

use advsoup_records::adapter_sweep::SweepResults;
use anyhow::{Context, Result, bail};
use serde_json::Value;

pub use run::private_binary;

use run::{Advsoup, write_atomic};

/// `cargo xtask sweep-adapters`.
#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// The sweep file.
    #[arg(long, default_value = "configs/sweep-fmnist.toml")]
    pub config: PathBuf,
    /// Only these rows (comma list of nominal, adversarial, none, cls_token, dual_layer_norm,
    /// bias, prompt, lora). The report covers every row that has results on disk.
    #[arg(long)]
    pub only: Option<String>,
    /// The sweep file's `[quick]` variant: tiny model, small subsets, two epochs (CI size).
    #[arg(long)]
    pub quick: bool,
    /// Retrain and re-evaluate the selected rows even when their results exist.
    #[arg(long)]
    pub force: bool,
    /// Seeds, comma list (default: the sweep file's seed and the next two; with `--quick`,
    /// the sweep file's seed alone). Each (row, seed) is its own run; a finished one is never
    /// retrained.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// Skip the budget axis (nominal vs co-training + cls token at the sweep file's longer
    /// `[budget]`).
    #[arg(long)]
    pub no_budget: bool,
    /// Compare the results.json this run writes with another one, ignoring wall times; fail
    /// naming the first difference (a rerun with the same seeds must reproduce it).
    #[arg(long)]
    pub check_against: Option<PathBuf>,
    /// Use a debug build of advsoup (dependencies are optimized in dev builds too; this skips
    /// the release build, e.g. in CI where the tests already built the debug one).
    #[arg(long)]
    pub dev: bool,
    /// Output directory (default: reports/sweep-<name>[-quick]).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The seeds of a run: `--seeds`, else the sweep file's seed and the next two (one with
/// `--quick`).
pub fn seeds(args_seeds: Option<&[u64]>, base: u64, quick: bool) -> Result<Vec<u64>> {
    let seeds = match args_seeds {
        Some(s) => s.to_vec(),
        None if quick => vec![base],
        None => (base..base + 3).collect(),
    };
    if seeds.is_empty() {
        bail!("--seeds: expected at least one seed");
    }
    let mut sorted = seeds.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != seeds.len() {
        bail!("--seeds: a seed is listed twice in {seeds:?}");
    }
    Ok(sorted)
}

/// Runs the sweep and writes the report.
pub fn run(args: SweepArgs) -> Result<()> {
    let root = crate::workspace_root();
    let config_path = if args.config.is_absolute() {
        args.config.clone()
    } else {
        root.join(&args.config)
    };
    let mut config = plan::load_config(&config_path)?;
    if args.quick {
        config = plan::quick(config)?;
    }
    if args.no_budget {
        config.budget = None;
    }
    let seeds = seeds(args.seeds.as_deref(), config.seed, args.quick)?;
    let rows = plan::select_rows(plan::rows(&config), args.only.as_deref())?;
    let out = args.out.clone().unwrap_or_else(|| {
        root.join("reports").join(format!(
            "sweep-{}{}",
            config.name,
            if args.quick { "-quick" } else { "" },
        ))
    });
    let runs = out.join("runs");
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let advsoup = Advsoup {
        binary: private_binary(args.dev, &out.join("bin"))?,
    };
    let base = root.join(&config.base);
    let t0 = Instant::now();
    let budget_rows: Vec<&plan::RowSpec> =
        rows.iter().filter(|r| collect::is_budget_row(r)).collect();
    let steps =
        seeds.len() * (rows.len() + config.budget.as_ref().map_or(0, |_| budget_rows.len()));
    let mut step = 0;
    for &seed in &seeds {
        let mut at_seed = config.clone();
        at_seed.seed = seed;
        let seed_runs = run::seed_dir(&runs, seed);
        std::fs::create_dir_all(&seed_runs)
            .with_context(|| format!("creating {}", seed_runs.display()))?;
        for row in &rows {
            step += 1;
            println!(
                "\n== [{step}/{steps}] seed {seed}: {} ({}) [{:.0}s]",
                row.name,
                row.label,
                t0.elapsed().as_secs_f64()
            );
            run::run_row(&advsoup, &at_seed, &base, &seed_runs, row, args.force)?;
        }
        if let Some(budget) = &config.budget {
            for row in &budget_rows {
                step += 1;
                println!(
                    "\n== [{step}/{steps}] seed {seed}: budget axis, {} ({}) [{:.0}s]",
                    row.name,
                    budget.label,
                    t0.elapsed().as_secs_f64()
                );
                run::run_budget_row(
                    &advsoup,
                    &at_seed,
                    &base,
                    &seed_runs,
                    row,
                    &budget.set,
                    args.force,
                )?;
            }
        }
    }
    let results = collect::collect(&config, &runs, &seeds, args.quick)?;
    if results.rows.is_empty() {
        bail!("no row has results under {}", runs.display());
    }
    let json = serde_json::to_string_pretty(&results)?;
    write_atomic(&out.join("results.json"), json.as_bytes())?;
    report::write_all(&results, &out)?;
    println!("\n{}", report::table(&results));
    println!("{}", report::claims_md(&results));
    println!(
        "sweep done in {:.0}s: {} (REPORT.md, report.html, results.json, fronts.svg)",
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    if let Some(other) = &args.check_against {
        check_against(&out.join("results.json"), other)?;
    }
    Ok(())
}

/// `--check-against`: the same results up to wall times, or the first difference. Both sides
/// are read from their files: serde_json's float parsing is not an exact inverse of its
/// printing, so an in-memory value could differ from the same value read back by one ulp.
fn check_against(ours: &Path, other: &Path) -> Result<()> {
    let ours: SweepResults = advsoup_records::read_json(ours)?;
    let theirs: SweepResults = advsoup_records::read_json(other)?;
    match first_difference(&ours.without_times(), &theirs.without_times(), "") {
        None => {
            println!(
                "results.json matches {} (wall times ignored)",
                other.display()
            );
            Ok(())
        }
        Some(path) => bail!(
            "results.json differs from {} at `{path}` (wall times ignored){}",
            other.display(),
            cpu_hint(&ours, &theirs)
        ),
    }
}

/// When a CPU trained runs on one side only with SIMD paths the other side never used, why
/// the results may differ without a bug: those paths round differently.
fn cpu_hint(ours: &SweepResults, theirs: &SweepResults) -> String {
    let other_paths = ours
        .machines
        .iter()
        .any(|m| theirs.machines.iter().all(|t| !m.same_paths(t)))
        || theirs
            .machines
            .iter()
            .any(|t| ours.machines.iter().all(|m| !m.same_paths(t)));
    if !other_paths || ours.machines.is_empty() || theirs.machines.is_empty() {
        return String::new();
    }
    let cpus = |r: &SweepResults| {
        r.machines
            .iter()
            .map(|m| m.summary())
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!(
        "; the runs were trained on CPUs with other SIMD paths ({} here, {} there), which \
         round differently",
        cpus(ours),
        cpus(theirs)
    )
}

/// The JSON pointer of the first place two values differ.
pub fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(u), Some(v)) => first_difference(u, v, &format!("{at}/{k}")),
                _ => Some(format!("{at}/{k}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &format!("{at}/{i}"))),
        _ if a == b => None,
        _ => Some(if at.is_empty() { "/".into() } else { at.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_default_to_three_or_one_and_refuse_duplicates() {
        assert_eq!(seeds(None, 5, false).expect("default"), [5, 6, 7]);
        assert_eq!(seeds(None, 5, true).expect("quick"), [5]);
        assert_eq!(seeds(Some(&[2, 0]), 5, false).expect("given"), [0, 2]);
        let e = seeds(Some(&[1, 1]), 0, false)
            .expect_err("twice")
            .to_string();
        assert!(e.contains("--seeds"), "{e}");
    }

    #[test]
    fn a_difference_names_other_cpus_only_when_their_paths_differ() {
        let cpu = |simd: &[&str]| advsoup_records::run::CpuInfo {
            arch: "x86_64".into(),
            model: None,
            simd: simd.iter().map(|f| f.to_string()).collect(),
        };
        let toml =
            std::fs::read_to_string(crate::workspace_root().join("configs/sweep-fmnist.toml"))
                .expect("sweep file");
        let with = |machines| SweepResults {
            config: toml::from_str(&toml).expect("parse"),
            quick: false,
            eps: 0.1,
            seeds: vec![0],
            rows: vec![],
            summary: vec![],
            budget: None,
            claims: vec![],
            machines,
            runs_without_cpu: 0,
        };
        let avx512 = with(vec![cpu(&["avx2", "avx512f"])]);
        let avx2 = with(vec![cpu(&["avx2"])]);
        assert_eq!(cpu_hint(&avx512, &avx512), "");
        assert_eq!(cpu_hint(&avx512, &with(vec![])), "", "unrecorded: no claim");
        let hint = cpu_hint(&avx512, &avx2);
        assert!(
            hint.contains("x86_64 avx2+avx512f here, x86_64 avx2 there"),
            "{hint}"
        );
        assert!(!cpu_hint(&avx2, &avx512).is_empty());
    }

    #[test]
    fn first_difference_names_the_path() {
        let a = serde_json::json!({"rows": [{"clean_acc": 0.5, "train_seconds": 0.0}], "eps": 0.1});
        let mut b = a.clone();
        assert_eq!(first_difference(&a, &b, ""), None);
        b["rows"][0]["clean_acc"] = serde_json::json!(0.51);
        assert_eq!(
            first_difference(&a, &b, "").as_deref(),
            Some("/rows/0/clean_acc")
        );
        b["rows"] = serde_json::json!([]);
        assert_eq!(first_difference(&a, &b, "").as_deref(), Some("/rows"));
    }
}
