//! `cargo xtask sweep-adapters`: the paper's adapter comparison (Rebuffi et al. 2023, Table 1 at
//! small scale) as one resumable command. ("Sweep" here is over adapters; `advsoup soup sweep`
//! sweeps the soup weight β of one model.)
//!
//! Every row trains from the same base config with the same seed, data order and budget
//! (`advsoup train`), then is evaluated by the cli (`advsoup soup sweep` for clean/PGD-20/APGD-CE
//! accuracy along β, `advsoup soup select` per corruption with β chosen on held-out data,
//! `advsoup info --run` for the parameter counts). Each step leaves its own file in the row's run
//! directory; a step whose file exists is skipped, so an interrupted sweep resumes without
//! retraining finished runs. This module only orchestrates and aggregates: every number comes
//! from a file the cli wrote, read through its type in `advsoup-records`, which also holds the
//! paper-claim verdicts.
//!
//! - [`plan`]: the sweep file and its rows;
//! - [`run`]: one row's cli calls, each skipped when its file exists;
//! - [`collect`]: the rows' files read into `results.json`'s records;
//! - [`report`]: the table and REPORT.md.

mod collect;
mod plan;
mod report;
mod run;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

pub use run::private_binary;

use run::{Advsoup, s, write_atomic};

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
    /// Override the sweep file's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Use a debug build of advsoup (dependencies are optimized in dev builds too; this skips
    /// the release build, e.g. in CI where the tests already built the debug one).
    #[arg(long)]
    pub dev: bool,
    /// Output directory (default: reports/sweep-<name>[-quick]-<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
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
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    let rows = plan::select_rows(plan::rows(&config), args.only.as_deref())?;
    let out = args.out.clone().unwrap_or_else(|| {
        root.join("reports").join(format!(
            "sweep-{}{}-{}",
            config.name,
            if args.quick { "-quick" } else { "" },
            config.seed
        ))
    });
    let runs = out.join("runs");
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let advsoup = Advsoup {
        binary: private_binary(args.dev, &out.join("bin"))?,
    };
    let base = root.join(&config.base);
    let t0 = Instant::now();
    for (i, row) in rows.iter().enumerate() {
        println!(
            "\n== [{}/{}] {} ({}) [{:.0}s]",
            i + 1,
            rows.len(),
            row.name,
            row.label,
            t0.elapsed().as_secs_f64()
        );
        run::run_row(&advsoup, &config, &base, &runs, row, args.force)?;
    }
    let results = collect::collect(&config, &runs, args.quick)?;
    if results.rows.is_empty() {
        bail!("no row has results under {}", runs.display());
    }
    let fronts: Vec<String> = results
        .rows
        .iter()
        .filter(|r| r.has_adapter)
        .map(|r| format!("{}={}", r.name, r.soup_json.display()))
        .collect();
    if !fronts.is_empty() {
        let mut a = vec![
            s("soup"),
            s("fronts"),
            s("--title"),
            format!(
                "sweep {}{}: soup fronts per adapter (eps {})",
                config.name,
                if args.quick { " (quick)" } else { "" },
                results.eps
            ),
            s("--out"),
            out.join("fronts.svg").display().to_string(),
        ];
        a.extend(fronts);
        advsoup.run(&a)?;
    }
    let json = serde_json::to_string_pretty(&results)?;
    write_atomic(&out.join("results.json"), json.as_bytes())?;
    let report = report::report_md(&results);
    write_atomic(&out.join("REPORT.md"), report.as_bytes())?;
    println!("\n{}", report::table(&results));
    println!(
        "sweep done in {:.0}s: {} (REPORT.md, results.json, fronts.svg)",
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
