//! `advsoup soup sweep|select|fronts`: adversarial model soups (SPEC §4-5), wiring only.
//!
//! Parses the options, loads the run (config, model, splits), makes one call into
//! `advsoup-soup` ([`advsoup_soup::sweep_into`], [`advsoup_soup::select`],
//! [`advsoup_soup::plot_fronts`]) and prints what it returns. `sweep` evaluates every soup φ(β)
//! on the test split and writes `soup.csv`, `soup.json`, SVG plots and one report card per β;
//! `select` chooses β on the corrupted held-out split (never test) and reports test accuracy
//! there and at both ends.
use std::path::PathBuf;
use std::time::Instant;

use advsoup_soup::{
    SelectOptions, Subject, SweepOptions, build_attacks, parse_betas, parse_corruptions,
    parse_shift,
};
use anyhow::{Context, Result};
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;

/// Soup commands.
#[derive(Debug, clap::Subcommand)]
pub enum SoupCmd {
    /// Evaluate the soups φ(β) = β·φ_clean + (1 − β)·φ_adv over a range of β.
    Sweep(SweepArgs),
    /// Choose β on the held-out split under a shift; report test accuracy there and at β=0, 1.
    Select(SelectArgs),
    /// Draw the clean/robust fronts of several sweeps (`soup.json` files) in one SVG.
    Fronts(FrontsArgs),
}

/// `advsoup soup fronts`.
#[derive(Debug, clap::Args)]
pub struct FrontsArgs {
    /// `LABEL=PATH/soup.json`, one per front (repeatable).
    #[arg(required = true)]
    pub sweeps: Vec<String>,
    /// The plot's title.
    #[arg(long, default_value = "adversarial soups: clean vs robust accuracy")]
    pub title: String,
    /// Output SVG.
    #[arg(long)]
    pub out: PathBuf,
}

/// `advsoup soup sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Soup weights: `start:end:step` (inclusive) or a comma list.
    #[arg(long, default_value = "0:1:0.1", value_parser = parse_betas_arg)]
    pub betas: Betas,
    /// Test images for clean accuracy.
    #[arg(long, default_value_t = 2000)]
    pub n_clean: usize,
    /// Test images attacked.
    #[arg(long, default_value_t = 500)]
    pub n_robust: usize,
    /// Test images per corruption.
    #[arg(long, default_value_t = 1000)]
    pub n_shift: usize,
    /// Attack presets, each run separately on the same images (comma list).
    #[arg(long, default_value = "pgd-10,apgd-ce")]
    pub attacks: String,
    /// APGD iterations (AutoAttack's standard is 100; fewer keeps 11 β within minutes on a CPU;
    /// at most 10000).
    #[arg(long, default_value_t = 25)]
    pub apgd_iter: usize,
    /// Radius (ℓ∞) in (0, 1] (default: the run's attack.eval.eps).
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,
    /// Corruptions: a comma list of names, `all`, or `none`.
    #[arg(long, default_value = "all")]
    pub corruptions: String,
    /// Corruption severity (1..=5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub severity: u8,
    /// Seed of the attacks' random starts and of the corruptions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (default: RUN/soup).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `advsoup soup select`.
#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// The shift: `corruption[:severity]` (severity 3 if left out).
    #[arg(long)]
    pub shift: String,
    /// Candidate soup weights.
    #[arg(long, default_value = "0:1:0.1", value_parser = parse_betas_arg)]
    pub betas: Betas,
    /// Held-out images to choose on (default: all of the held-out split).
    #[arg(long)]
    pub n_held_out: Option<usize>,
    /// Test images to report on (default: the whole test split).
    #[arg(long)]
    pub n_test: Option<usize>,
    /// Seed of the corruption draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output JSON (default: RUN/soup/select-<corruption>-<severity>.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A parsed `--betas` value.
#[derive(Debug, Clone, PartialEq)]
pub struct Betas(pub Vec<f32>);

fn parse_betas_arg(s: &str) -> Result<Betas, String> {
    parse_betas(s).map(Betas)
}

/// Runs a soup command.
pub fn run(cmd: SoupCmd) -> Result<()> {
    match cmd {
        SoupCmd::Sweep(args) => run_sweep(args),
        SoupCmd::Select(args) => run_select(args),
        SoupCmd::Fronts(args) => run_fronts(args),
    }
}

fn run_fronts(args: FrontsArgs) -> Result<()> {
    let mut sweeps = Vec::new();
    for spec in &args.sweeps {
        let (label, path) = spec
            .split_once('=')
            .with_context(|| format!("`{spec}`: expected LABEL=PATH/soup.json"))?;
        let sweep = advsoup_soup::read_sweep(std::path::Path::new(path))?;
        sweeps.push((label.to_string(), sweep));
    }
    advsoup_soup::plot_fronts(&sweeps, &args.title, &args.out)?;
    println!("{} fronts -> {}", sweeps.len(), args.out.display());
    Ok(())
}

fn run_sweep(args: SweepArgs) -> Result<()> {
    type AD = Autodiff<Flex>;
    let device = Default::default();
    let eps = crate::radius(args.eps)?;
    let (config, model) = crate::load_run::<AD>(&args.run, &device)?;
    let eps = eps.unwrap_or(config.attack.eval.eps);
    // Options are checked before the data is read or anything is locked.
    let attacks = build_attacks(&args.attacks, eps, args.seed, args.apgd_iter)?;
    let out = args.out.unwrap_or_else(|| args.run.join("soup"));
    let _lock = crate::run_dir::lock_output(&out)?;
    let splits = advsoup_train::load_data(&config, false)?;
    let opts = SweepOptions {
        betas: args.betas.0,
        n_clean: args.n_clean,
        n_robust: args.n_robust,
        n_shift: args.n_shift,
        attacks,
        corruptions: parse_corruptions(&args.corruptions)?,
        severity: args.severity,
        seed: args.seed,
        batch_size: config.eval.batch_size,
        threads: advsoup_bench::harness::threads(),
    };
    let dataset = format!("{}/test", config.data.dataset.kind());
    println!(
        "soup sweep {}: {} β, clean n={}, robust n={} ({}), {} corruptions at severity {} n={}, eps {eps}",
        config.name,
        opts.betas.len(),
        opts.n_clean,
        opts.n_robust,
        args.attacks,
        opts.corruptions.len(),
        opts.severity,
        opts.n_shift
    );
    let t0 = Instant::now();
    let valid = model.valid();
    let subject = Subject {
        model: &valid,
        name: &config.name,
        dataset: &dataset,
    };
    let progress = crate::progress::Progress::start("soup sweep", "soups", opts.betas.len());
    let mut rows = 0;
    let done =
        advsoup_soup::sweep_into::<AD>(subject, &splits.test, &opts, &device, &out, &mut |r| {
            progress.println(&format!(
                "β={:<4} clean {:.2}%  robust {:.2}%  [{:.0}s]",
                r.beta,
                100.0 * r.clean_acc,
                100.0 * r.robust_acc,
                t0.elapsed().as_secs_f64()
            ));
            rows += 1;
            progress.update(rows);
        })?;
    progress.finish();
    print!("{}", done.summary(&out));
    Ok(())
}

fn run_select(args: SelectArgs) -> Result<()> {
    let device = Default::default();
    let (config, model) = crate::load_run::<Flex>(&args.run, &device)?;
    let (corruption, severity) = parse_shift(&args.shift)?;
    let out = args.out.unwrap_or_else(|| {
        args.run
            .join("soup")
            .join(format!("select-{}-{severity}.json", corruption.name()))
    });
    let _lock = crate::run_dir::lock_output(&out)?;
    let splits = advsoup_train::load_data(&config, false)?;
    let opts = SelectOptions {
        betas: args.betas.0,
        corruption,
        severity,
        n_held_out: args.n_held_out.unwrap_or(usize::MAX),
        n_test: args.n_test.unwrap_or(usize::MAX),
        seed: args.seed,
        batch_size: config.eval.batch_size,
        threads: advsoup_bench::harness::threads(),
    };
    let report = advsoup_soup::select::<Flex>(
        &model,
        &config.name,
        &splits.held_out,
        &splits.test,
        &opts,
        &device,
    )?;
    advsoup_soup::write_select(&out, &report)?;
    println!("held-out n={}, test n={}", report.n_held_out, report.n_test);
    println!("{}", report.line());
    println!("report: {}", out.display());
    Ok(())
}
