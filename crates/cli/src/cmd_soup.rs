//! `advsoup soup sweep|select`: adversarial model soups (SPEC §4-5).
//!
//! `sweep` evaluates every soup φ(β) as a model in its own right (clean accuracy, robust accuracy
//! under each attack preset attacking the soup directly, accuracy under generated corruptions)
//! and writes `soup.csv`, `soup.json`, SVG plots and one report card per β. `select` chooses β on
//! the corrupted held-out split (never test) and reports test accuracy there and at both ends.
//!
//! [`sweep`] and [`select`] are library-style cores (model, data, options in; records out) so
//! they are tested without run directories; [`run`] only loads the run and writes files.
use std::path::{Path, PathBuf};
use std::time::Instant;

use advsoup_adapters::{AdaptedVit, Mode, Route};
use advsoup_attacks::{AttackSpec, Evaluator, ThreatModel};
use advsoup_bench::report::{CardSubject, ModelHashes, Recipe, ReportCard, markdown};
use advsoup_bench::sweep::{
    NamedAcc, SelectReport, SoupRow, SoupSweep, SweepAttack, argmax_first, parse_betas,
};
use advsoup_data::ImageDataset;
use advsoup_data::corrupt::{Corruption, corrupt_dataset};
use advsoup_train::eval::{accuracy, robust_eval};
use anyhow::{Context, Result, bail};
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;

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
    /// APGD iterations (AutoAttack's standard is 100; fewer keeps 11 β within minutes on a CPU).
    #[arg(long, default_value_t = 25)]
    pub apgd_iter: usize,
    /// Radius (ℓ∞; default: the run's attack.eval.eps).
    #[arg(long)]
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

/// What a sweep evaluates.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Soup weights.
    pub betas: Vec<f32>,
    /// Test images for clean accuracy.
    pub n_clean: usize,
    /// Test images attacked.
    pub n_robust: usize,
    /// Test images per corruption.
    pub n_shift: usize,
    /// The attacks, each run separately.
    pub attacks: Vec<SweepAttack>,
    /// Corruptions generated from the test subset.
    pub corruptions: Vec<Corruption>,
    /// Their severity.
    pub severity: u8,
    /// Seed of the corruptions (the attacks carry their own).
    pub seed: u64,
    /// Evaluation batch size.
    pub batch_size: usize,
    /// Threads for generating corruptions.
    pub threads: usize,
}

/// Builds the named attack presets at `eps`, APGD with `apgd_iter` iterations.
pub fn build_attacks(
    names: &str,
    eps: f64,
    seed: u64,
    apgd_iter: usize,
) -> Result<Vec<SweepAttack>> {
    let mut out = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let mut evaluator = Evaluator::preset(name, ThreatModel::Linf, eps, seed)
            .with_context(|| format!("--attacks: preset `{name}`"))?;
        for a in &mut evaluator.attacks {
            if let AttackSpec::Apgd(c) = a {
                c.n_iter = apgd_iter;
            }
        }
        let evaluator = Evaluator::new(evaluator.attacks, seed)
            .with_context(|| format!("--attacks: preset `{name}` with --apgd-iter {apgd_iter}"))?;
        out.push(SweepAttack {
            name: name.to_string(),
            evaluator,
        });
    }
    if out.is_empty() {
        bail!("--attacks: no attack given");
    }
    Ok(out)
}

/// Parses `all`, `none` or a comma list of corruption names.
pub fn parse_corruptions(s: &str) -> Result<Vec<Corruption>> {
    match s.trim() {
        "all" => Ok(Corruption::ALL.to_vec()),
        "none" | "" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|c| c.trim().parse::<Corruption>().context("--corruptions"))
            .collect(),
    }
}

/// Parses `corruption[:severity]`.
pub fn parse_shift(s: &str) -> Result<(Corruption, u8)> {
    let (name, sev) = match s.split_once(':') {
        Some((n, v)) => (
            n,
            v.parse::<u8>()
                .ok()
                .filter(|v| (1..=5).contains(v))
                .with_context(|| format!("--shift `{s}`: severity must be 1..=5"))?,
        ),
        None => (s, 3),
    };
    let c = name
        .parse::<Corruption>()
        .with_context(|| format!("--shift `{s}`"))?;
    Ok((c, sev))
}

fn first_n(data: &ImageDataset, n: usize) -> ImageDataset {
    data.subset(&(0..n.min(data.num_samples())).collect::<Vec<_>>())
}

/// Evaluates every soup of `opts.betas` on `test`: clean accuracy (first `n_clean`), robust
/// accuracy under each attack and per sample worst case (first `n_robust`, the soup's own
/// forward is the attacked closure), and accuracy on each corruption of the first `n_shift`
/// (generated once, deterministic by seed). Returns the sweep and one report card per β;
/// `progress` sees each row when it is done. With `resume`, rows finished by an earlier
/// (killed) call with the same inputs are taken from there and new ones are recorded there.
#[allow(clippy::too_many_arguments)]
pub fn sweep<AD: AutodiffBackend>(
    model: &AdaptedVit<AD::InnerBackend>,
    name: &str,
    dataset: &str,
    test: &ImageDataset,
    opts: &SweepOptions,
    device: &AD::Device,
    resume: Option<&crate::Partial>,
    progress: &mut dyn FnMut(&SoupRow),
) -> Result<(SoupSweep, Vec<ReportCard>)> {
    let start = Instant::now();
    let Some(first_attack) = opts.attacks.first() else {
        bail!("a sweep needs at least one attack");
    };
    if test.num_samples() == 0 {
        bail!("the test split is empty");
    }
    let hashes = ModelHashes::of(model);
    let clean_set = first_n(test, opts.n_clean);
    let shift_base = first_n(test, opts.n_shift);
    let shifted: Vec<(Corruption, ImageDataset)> = opts
        .corruptions
        .iter()
        .map(|&c| {
            corrupt_dataset(&shift_base, c, opts.severity, opts.seed, opts.threads)
                .map(|d| (c, d))
                .with_context(|| format!("corrupting the test subset with {c}"))
        })
        .collect::<Result<_>>()?;
    let eps = first_attack
        .evaluator
        .attacks
        .first()
        .map(|a| a.eps())
        .unwrap_or(0.0);
    let mut rows = Vec::new();
    let mut cards = Vec::new();
    for (i, &beta) in opts.betas.iter().enumerate() {
        if let Some(done) = resume
            && let Some((row, card)) = done.get::<(SoupRow, ReportCard)>(i)?
        {
            progress(&row);
            rows.push(row);
            cards.push(card);
            continue;
        }
        let mode = Mode::Soup(beta);
        let route = Route::mode(mode);
        let clean_acc = accuracy(model, &clean_set, &route, opts.batch_size, device);
        let mut reports = Vec::new();
        for a in &opts.attacks {
            let r = robust_eval::<AD>(
                model,
                mode,
                &a.evaluator,
                test,
                opts.n_robust,
                opts.batch_size,
                device,
            )
            .context("no test images to attack")?;
            reports.push((a.name.clone(), r));
        }
        let recipe = Recipe {
            adapter_sha256: hashes.adapter_sha256.clone(),
            model_sha256: hashes.model_sha256.clone(),
            beta,
        };
        let card = ReportCard::new(
            CardSubject {
                model: name.to_string(),
                mode: format!("soup:{beta}"),
                dataset: dataset.to_string(),
                hashes: hashes.clone(),
                recipe: Some(recipe.clone()),
            },
            clean_set.num_samples(),
            clean_acc,
            &reports,
        )
        .context("no attack reports")?;
        let shifts = shifted
            .iter()
            .map(|(c, d)| NamedAcc {
                name: c.name().to_string(),
                acc: accuracy(model, d, &route, opts.batch_size, device),
            })
            .collect();
        let row = SoupRow {
            beta,
            clean_acc,
            robust_acc: card.robust_acc,
            attacks: card
                .attacks
                .iter()
                .map(|a| NamedAcc {
                    name: a.name.clone(),
                    acc: a.robust_acc,
                })
                .collect(),
            shifts,
            forward_passes: card.forward_passes,
            recipe,
        };
        if let Some(done) = resume {
            done.put(i, &(&row, &card))?;
        }
        progress(&row);
        rows.push(row);
        cards.push(card);
    }
    let sweep = SoupSweep {
        model: name.to_string(),
        dataset: dataset.to_string(),
        model_sha256: hashes.model_sha256,
        adapter_sha256: hashes.adapter_sha256,
        threat_model: ThreatModel::Linf,
        eps,
        seed: first_attack.evaluator.seed,
        n_clean: clean_set.num_samples(),
        n_robust: opts.n_robust.min(test.num_samples()),
        n_shift: shift_base.num_samples(),
        severity: opts.severity,
        attacks: opts.attacks.clone(),
        rows,
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    Ok((sweep, cards))
}

/// Writes a sweep's files into `dir`: `soup.csv`, `soup.json`, `front.svg`, `shifts.svg`,
/// `cards/beta-<β>.json` and `cards.md`. Returns the paths written.
pub fn write_sweep(dir: &Path, sweep: &SoupSweep, cards: &[ReportCard]) -> Result<Vec<PathBuf>> {
    let mut files = sweep.write(dir)?;
    let card_dir = dir.join("cards");
    std::fs::create_dir_all(&card_dir)
        .with_context(|| format!("creating {}", card_dir.display()))?;
    for (row, card) in sweep.rows.iter().zip(cards) {
        let p = card_dir.join(format!("beta-{:.3}.json", row.beta));
        advsoup_bench::sweep::write(&p, card.to_json().as_bytes())?;
        files.push(p);
    }
    let md = dir.join("cards.md");
    advsoup_bench::sweep::write(&md, markdown(cards).as_bytes())?;
    files.push(md);
    Ok(files)
}

/// Options of a β selection.
#[derive(Debug, Clone)]
pub struct SelectOptions {
    /// Candidate weights.
    pub betas: Vec<f32>,
    /// The shift.
    pub corruption: Corruption,
    /// Its severity.
    pub severity: u8,
    /// Held-out images to choose on.
    pub n_held_out: usize,
    /// Test images to report on.
    pub n_test: usize,
    /// Corruption seed.
    pub seed: u64,
    /// Evaluation batch size.
    pub batch_size: usize,
    /// Threads for generating corruptions.
    pub threads: usize,
}

/// Chooses β by accuracy on the corrupted held-out split (first best on ties) and reports
/// corrupted-test accuracy at that β and at β = 0 and β = 1. The test split plays no part in
/// the choice.
pub fn select<B: Backend>(
    model: &AdaptedVit<B>,
    name: &str,
    held_out: &ImageDataset,
    test: &ImageDataset,
    opts: &SelectOptions,
    device: &B::Device,
) -> Result<SelectReport> {
    if opts.betas.is_empty() {
        bail!("no candidate β");
    }
    let held = first_n(held_out, opts.n_held_out);
    let test = first_n(test, opts.n_test);
    if held.num_samples() == 0 || test.num_samples() == 0 {
        bail!("the held-out and test splits must not be empty");
    }
    let corrupt = |d: &ImageDataset| {
        corrupt_dataset(d, opts.corruption, opts.severity, opts.seed, opts.threads)
            .with_context(|| format!("corrupting with {}", opts.corruption))
    };
    let held = corrupt(&held)?;
    let test = corrupt(&test)?;
    let acc = |d: &ImageDataset, beta: f32| {
        accuracy(
            model,
            d,
            &Route::mode(Mode::Soup(beta)),
            opts.batch_size,
            device,
        )
    };
    let held_out_acc: Vec<f64> = opts.betas.iter().map(|&b| acc(&held, b)).collect();
    let best = argmax_first(&held_out_acc).context("no finite held-out accuracy")?;
    let chosen_beta = opts.betas[best];
    let test_acc_all: Vec<f64> = opts.betas.iter().map(|&b| acc(&test, b)).collect();
    let at = |beta: f32| {
        opts.betas
            .iter()
            .position(|b| *b == beta)
            .map(|i| test_acc_all[i])
            .unwrap_or_else(|| acc(&test, beta))
    };
    let (chosen, robust_mode, clean_mode) = (at(chosen_beta), at(0.0), at(1.0));
    let hashes = ModelHashes::of(model);
    Ok(SelectReport {
        model: name.to_string(),
        shift: format!("{}:{}", opts.corruption.name(), opts.severity),
        seed: opts.seed,
        n_held_out: held.num_samples(),
        n_test: test.num_samples(),
        betas: opts.betas.clone(),
        held_out_acc,
        chosen_beta,
        test_acc_chosen: chosen,
        test_acc_robust_mode: robust_mode,
        test_acc_clean_mode: clean_mode,
        beats_both_endpoints: chosen > robust_mode && chosen > clean_mode,
        test_acc_all,
        recipe: Recipe {
            adapter_sha256: hashes.adapter_sha256,
            model_sha256: hashes.model_sha256,
            beta: chosen_beta,
        },
    })
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
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
        let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        let sweep: SoupSweep = serde_json::from_slice(&bytes)
            .with_context(|| format!("{path}: not a soup.json written by `advsoup soup sweep`"))?;
        sweeps.push((label.to_string(), sweep));
    }
    advsoup_bench::sweep::plot_fronts(&sweeps, &args.title, &args.out)?;
    println!("{} fronts -> {}", sweeps.len(), args.out.display());
    Ok(())
}

fn run_sweep(args: SweepArgs) -> Result<()> {
    type AD = Autodiff<Flex>;
    let device = Default::default();
    let (config, model) = crate::load_run::<AD>(&args.run, &device)?;
    let splits = advsoup_train::load_data(&config, false)?;
    let eps = args.eps.unwrap_or(config.attack.eval.eps);
    let opts = SweepOptions {
        betas: args.betas.0,
        n_clean: args.n_clean,
        n_robust: args.n_robust,
        n_shift: args.n_shift,
        attacks: build_attacks(&args.attacks, eps, args.seed, args.apgd_iter)?,
        corruptions: parse_corruptions(&args.corruptions)?,
        severity: args.severity,
        seed: args.seed,
        batch_size: config.eval.batch_size,
        threads: threads(),
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
    let out = args.out.unwrap_or_else(|| args.run.join("soup"));
    let valid = model.valid();
    let key = serde_json::json!({
        "model": ModelHashes::of(&valid).model_sha256,
        "betas": opts.betas,
        "n": [opts.n_clean, opts.n_robust, opts.n_shift],
        "attacks": opts.attacks,
        "corruptions": opts.corruptions.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "severity": opts.severity,
        "seed": opts.seed,
        "batch_size": opts.batch_size,
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let partial = crate::Partial::open(&out.join("soup.json"), &key)?;
    let (sweep, cards) = sweep::<AD>(
        &valid,
        &config.name,
        &dataset,
        &splits.test,
        &opts,
        &device,
        Some(&partial),
        &mut |r| {
            eprintln!(
                "β={:<4} clean {:.2}%  robust {:.2}%  [{:.0}s]",
                r.beta,
                100.0 * r.clean_acc,
                100.0 * r.robust_acc,
                t0.elapsed().as_secs_f64()
            );
        },
    )?;
    let files = write_sweep(&out, &sweep, &cards)?;
    partial.finish()?;
    print!("{}", sweep.table());
    println!("wall time {:.1}s", sweep.wall_seconds);
    println!(
        "wrote {} files under {} (soup.csv, soup.json, front.svg, shifts.svg, cards/)",
        files.len(),
        out.display()
    );
    Ok(())
}

fn run_select(args: SelectArgs) -> Result<()> {
    let device = Default::default();
    let (config, model) = crate::load_run::<Flex>(&args.run, &device)?;
    let splits = advsoup_train::load_data(&config, false)?;
    let (corruption, severity) = parse_shift(&args.shift)?;
    let opts = SelectOptions {
        betas: args.betas.0,
        corruption,
        severity,
        n_held_out: args.n_held_out.unwrap_or(usize::MAX),
        n_test: args.n_test.unwrap_or(usize::MAX),
        seed: args.seed,
        batch_size: config.eval.batch_size,
        threads: threads(),
    };
    let report = select::<Flex>(
        &model,
        &config.name,
        &splits.held_out,
        &splits.test,
        &opts,
        &device,
    )?;
    let out = args.out.unwrap_or_else(|| {
        args.run
            .join("soup")
            .join(format!("select-{}-{severity}.json", corruption.name()))
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    advsoup_bench::sweep::write(&out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!("held-out n={}, test n={}", report.n_held_out, report.n_test);
    println!("{}", report.line());
    println!("report: {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use advsoup_adapters::{AdaptedVitConfig, AdapterKind};
    use advsoup_vit::VitConfig;
    use burn::module::Param;
    use burn::prelude::*;

    type AD = Autodiff<Flex>;

    fn tiny_model(device: &burn::prelude::Device<Flex>) -> AdaptedVit<Flex> {
        <Flex as Backend>::seed(device, 3);
        let config = AdaptedVitConfig {
            vit: VitConfig::new()
                .with_img_size(28)
                .with_patch_size(7)
                .with_in_chans(1)
                .with_num_classes(10)
                .with_embed_dim(16)
                .with_depth(1)
                .with_num_heads(2)
                .with_mean(vec![0.5])
                .with_std(vec![0.5]),
            adapter: AdapterKind::ClsToken,
        };
        let mut model = config.try_init::<Flex>(device).expect("tiny model");
        // Make the two tokens differ so that β matters.
        model.adapter.cls_token_adv = Some(Param::from_tensor(Tensor::random(
            [1, 1, 16],
            burn::tensor::Distribution::Normal(0.0, 2.0),
            device,
        )));
        model
    }

    fn tiny_data(n: usize, seed: u64) -> ImageDataset {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let labels: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
        let pixels: Vec<u8> = labels
            .iter()
            .flat_map(|&l| {
                // Class-dependent brightness plus noise: a learnable-looking toy set.
                let base = 20 * l;
                (0..28 * 28)
                    .map(|_| (base + next() % 60).min(255) as u8)
                    .collect::<Vec<_>>()
            })
            .collect();
        ImageDataset::new([1, 28, 28], pixels, labels, 10).expect("tiny dataset")
    }

    /// `data` relabelled with `model`'s predictions in `mode` (so that mode scores 100%).
    fn labelled_by(
        model: &AdaptedVit<Flex>,
        mode: Mode,
        data: &ImageDataset,
        device: &burn::prelude::Device<Flex>,
    ) -> ImageDataset {
        let mut labels = Vec::new();
        for batch in advsoup_train::eval::eval_batches::<Flex>(data, 64, device) {
            let pred = model.forward_mode(batch.images, mode).argmax(1);
            labels.extend(
                pred.into_data()
                    .iter::<i64>()
                    .map(|p| u32::try_from(p).expect("class")),
            );
        }
        ImageDataset::new(data.shape(), data.pixels().to_vec(), labels, 10).expect("relabel")
    }

    #[test]
    fn sweep_endpoints_are_the_two_modes_and_files_parse() {
        let device = Default::default();
        let model = tiny_model(&device);
        let test = labelled_by(&model, Mode::Clean, &tiny_data(12, 1), &device);
        let opts = SweepOptions {
            betas: parse_betas("0,0.5,1").expect("betas"),
            n_clean: 12,
            n_robust: 4,
            n_shift: 6,
            attacks: build_attacks("pgd-2,apgd-ce", 0.1, 0, 3).expect("attacks"),
            corruptions: parse_corruptions("gaussian_noise,contrast").expect("corruptions"),
            severity: 3,
            seed: 0,
            batch_size: 5,
            threads: 2,
        };
        let mut seen = Vec::new();
        let (sweep, cards) = sweep::<AD>(
            &model,
            "tiny",
            "toy/test",
            &test,
            &opts,
            &device,
            None,
            &mut |r| seen.push(r.beta),
        )
        .expect("sweep");
        assert_eq!(seen, vec![0.0, 0.5, 1.0]);
        assert_eq!(sweep.rows.len(), 3);
        assert_eq!(cards.len(), 3);
        assert_eq!((sweep.n_clean, sweep.n_robust, sweep.n_shift), (12, 4, 6));
        let clean_mode = accuracy(&model, &test, &Route::mode(Mode::Clean), 5, &device);
        let robust_mode = accuracy(&model, &test, &Route::mode(Mode::Adversarial), 5, &device);
        assert_eq!(sweep.rows[2].clean_acc, clean_mode);
        assert_eq!(sweep.rows[0].clean_acc, robust_mode);
        // The data are labelled by the clean mode, so the endpoints can be told apart.
        assert_eq!(clean_mode, 1.0);
        assert!(robust_mode < 1.0, "the two modes agree on every image");
        // The attacked soup at β=0 is the robust mode attacked directly.
        let direct = robust_eval::<AD>(
            &model,
            Mode::Adversarial,
            &opts.attacks[0].evaluator,
            &test,
            4,
            5,
            &device,
        )
        .expect("report");
        assert_eq!(sweep.rows[0].attacks[0].acc, direct.robust_accuracy);
        for (row, card) in sweep.rows.iter().zip(&cards) {
            assert_eq!(row.attacks.len(), 2);
            assert_eq!(row.shifts.len(), 2);
            assert_eq!(row.shifts[1].name, "contrast");
            assert!(row.robust_acc <= row.attacks[0].acc && row.robust_acc <= row.attacks[1].acc);
            assert!(row.robust_acc <= 1.0 && row.clean_acc <= 1.0);
            assert!(row.forward_passes > 0);
            assert_eq!(card.recipe.as_ref().map(|r| r.beta), Some(row.beta));
            assert_eq!(card.adapter_sha256.len(), 64);
        }
        assert_ne!(sweep.adapter_sha256, sweep.model_sha256);

        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_sweep(&dir.path().join("soup"), &sweep, &cards).expect("write");
        for f in &files {
            assert!(f.exists(), "{} missing", f.display());
        }
        let csv = std::fs::read_to_string(dir.path().join("soup/soup.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 4, "{csv}");
        assert!(csv.starts_with("beta,clean_acc,robust_acc,robust_pgd-2,robust_apgd-ce,shift_gaussian_noise,shift_contrast,"));
        let json: SoupSweep = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("soup/soup.json")).expect("json"),
        )
        .expect("parse soup.json");
        assert_eq!(json, sweep);
        assert_eq!(json.attacks[1].evaluator.attacks.len(), 1);
        let card = ReportCard::from_json(
            &std::fs::read_to_string(dir.path().join("soup/cards/beta-0.500.json")).expect("card"),
        )
        .expect("parse card");
        assert_eq!(card, cards[1]);
        assert!(
            std::fs::read_to_string(dir.path().join("soup/front.svg"))
                .expect("svg")
                .contains("β=0.5")
        );
    }

    #[test]
    fn select_chooses_on_held_out_and_reports_endpoints() {
        let device = Default::default();
        let model = tiny_model(&device);
        let held = tiny_data(10, 2);
        let test = tiny_data(10, 3);
        let opts = SelectOptions {
            betas: vec![0.0, 0.5, 1.0],
            corruption: Corruption::Contrast,
            severity: 3,
            n_held_out: usize::MAX,
            n_test: 8,
            seed: 0,
            batch_size: 4,
            threads: 1,
        };
        let r = select::<Flex>(&model, "tiny", &held, &test, &opts, &device).expect("select");
        assert_eq!((r.n_held_out, r.n_test), (10, 8));
        assert_eq!(r.held_out_acc.len(), 3);
        let best = r.held_out_acc.iter().cloned().fold(f64::MIN, f64::max);
        let i = r
            .betas
            .iter()
            .position(|b| *b == r.chosen_beta)
            .expect("chosen");
        assert_eq!(r.held_out_acc[i], best);
        assert_eq!(r.test_acc_robust_mode, r.test_acc_all[0]);
        assert_eq!(r.test_acc_clean_mode, r.test_acc_all[2]);
        let shifted =
            corrupt_dataset(&first_n(&test, 8), Corruption::Contrast, 3, 0, 1).expect("c");
        let direct = accuracy(&model, &shifted, &Route::mode(Mode::Clean), 4, &device);
        assert_eq!(r.test_acc_clean_mode, direct);
        assert_eq!(
            r.beats_both_endpoints,
            r.test_acc_chosen > r.test_acc_robust_mode && r.test_acc_chosen > r.test_acc_clean_mode
        );
    }

    #[test]
    fn option_parsers_reject_typos() {
        assert_eq!(parse_corruptions("all").expect("all").len(), 14);
        assert!(parse_corruptions("none").expect("none").is_empty());
        assert!(parse_corruptions("gaussian_noise,contrastt").is_err());
        assert_eq!(
            parse_shift("contrast:5").expect("shift"),
            (Corruption::Contrast, 5)
        );
        assert_eq!(parse_shift("fog").expect("shift"), (Corruption::Fog, 3));
        assert!(parse_shift("fog:6").is_err());
        assert!(parse_shift("smog").is_err());
        let a = build_attacks("pgd-10, apgd-ce", 0.1, 4, 25).expect("attacks");
        assert_eq!(a.len(), 2);
        match &a[1].evaluator.attacks[0] {
            AttackSpec::Apgd(c) => assert_eq!(c.n_iter, 25),
            other => panic!("expected apgd, got {other:?}"),
        }
        assert_eq!(a[0].evaluator.seed, 4);
        assert!(build_attacks("pgd-x", 0.1, 0, 25).is_err());
        assert!(build_attacks("", 0.1, 0, 25).is_err());
    }
}
