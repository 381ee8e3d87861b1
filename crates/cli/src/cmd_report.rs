//! `advsoup report --run DIR`: writes the run's self-contained HTML page, DIR/report.html
//! (advsoup-report draws it from the run's records).

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `advsoup report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run directory (needs run.json and config.toml; final.json and metrics.jsonl when
    /// the run has them).
    #[arg(long)]
    pub run: PathBuf,
}

/// Writes `<run>/report.html` and prints its path.
///
/// Takes no lock on the run directory, unlike every other writer: it only reads the run's
/// records and replaces `report.html` atomically (a uniquely named temporary file, then a
/// rename), so it can draw the page of a run while `advsoup train` holds that run's lock, and
/// two reports at once leave one whole page.
pub fn run(args: ReportArgs) -> Result<()> {
    crate::run_dir::require_run(&args.run)?;
    let html = advsoup_report::run_page(&args.run)
        .with_context(|| format!("report: run {}", args.run.display()))?;
    let out = args.run.join("report.html");
    advsoup_io::write_atomic(&out, html.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    println!("report: {}", out.display());
    Ok(())
}
