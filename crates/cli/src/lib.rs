//! advsoup-cli: the `advsoup` command line, thin by design: it parses arguments, reads config
//! files, picks the backend and device, and calls `advsoup-train`, `-attacks`, `-data`, `-soup`.
//!
//! Its library API ([`Cli`], [`run`]) is what the end-to-end tests drive.
#![warn(missing_docs)]

mod cmd_bench;
mod cmd_data;
mod cmd_info;
mod cmd_report;
mod cmd_soup;
mod entry;
pub mod exit;
mod gpu;
mod progress;
pub mod run_dir;
mod signals;

use advsoup_train::plan::group;
use cmd_info::{adapter, preset};
pub use cmd_info::{counts, counts_text, info, run_counts};
pub use entry::main_entry;
pub use signals::Stopped;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use advsoup_adapters::{AdaptedVitConfig, Mode};
use advsoup_attacks::{Evaluator, ThreatModel};
use advsoup_eval::EvalJob;
/// Set to `1` to allow `--nodes` above 1 (see `advsoup_train::multi_node_allowed`).
pub use advsoup_train::MULTI_NODE_ENV;
use advsoup_train::{RunOptions, TrainConfig};
use advsoup_vit::io::{Normalization, NormalizationSource};
use anyhow::{Context, Result, bail};
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;

use clap::{Parser, Subcommand};

/// The `advsoup` command line.
#[derive(Debug, Parser)]
#[command(
    name = "advsoup",
    version,
    about = "Adversarial co-training with adapters and adversarial model soups"
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// CubeCL's kernel cache and compile log (GPU backends).
    #[command(flatten)]
    pub kernels: gpu::KernelArgs,
}

/// Where to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    /// burn's Flex CPU backend.
    Cpu,
    /// CUDA device N (needs the `cuda` feature).
    Cuda(usize),
    /// burn's wgpu backend on the default adapter (needs the `wgpu` feature): Vulkan, Metal or
    /// DX12, or Mesa's software Vulkan driver where there is no GPU.
    Wgpu,
}

fn parse_device(s: &str) -> Result<DeviceArg, String> {
    match s {
        "cpu" => Ok(DeviceArg::Cpu),
        "cuda" => Ok(DeviceArg::Cuda(0)),
        "wgpu" => Ok(DeviceArg::Wgpu),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceArg::Cuda)
            .ok_or_else(|| format!("expected cpu, cuda, cuda:N or wgpu, got `{other}`")),
    }
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "clean" => Ok(Mode::Clean),
        "robust" | "adversarial" => Ok(Mode::Adversarial),
        other => other
            .strip_prefix("soup:")
            .and_then(|b| b.parse::<f32>().ok())
            .filter(|b| (0.0..=1.0).contains(b))
            .map(Mode::Soup)
            .ok_or_else(|| {
                format!("expected clean, robust or soup:BETA with BETA in [0, 1], got `{other}`")
            }),
    }
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model from a config file.
    Train(TrainArgs),
    /// Evaluate a trained run under an attack ensemble.
    ///
    /// Shows a progress bar with an ETA when stderr is a terminal, and a plain line
    /// (`eval: 400/1000 images, 1m12s elapsed, ~1m48s left`) every tenth of the work or every
    /// 30 s otherwise (`attack`, `soup sweep` and `export-timm` do the same). Weights holding
    /// NaN or inf, and non-finite logits on the first batch, are refused before evaluating.
    Eval(EvalArgs),
    /// Adversarial model soups: sweep β, select β on a shifted held-out set.
    #[command(subcommand)]
    Soup(cmd_soup::SoupCmd),
    /// Speed benchmarks (images/s) of forward, train, PGD and co-training steps.
    Bench(cmd_bench::BenchArgs),
    /// Write a run's self-contained HTML page (RUN/report.html: tables, curves, model card).
    Report(cmd_report::ReportArgs),
    /// Fetch, inspect and corrupt datasets.
    #[command(subcommand)]
    Data(cmd_data::DataCmd),
    /// Attack test images of a run and write the adversarial examples with their per-sample
    /// status (`<out>.safetensors`: `x_adv` [n, c, h, w], `label`, `robust`; `<out>.json`: the
    /// report).
    Attack(AttackArgs),
    /// Print parameter counts of a preset with an adapter, or of a trained run's model.
    Info {
        /// A ViT preset (e.g. vit_base_patch16_224).
        #[arg(long, required_unless_present = "run", conflicts_with = "run")]
        preset: Option<String>,
        /// Adapter: none, cls_token, dual_layer_norm, bias, prompt[:K], lora[:R].
        #[arg(long, default_value = "cls_token", conflicts_with = "run")]
        adapter: String,
        /// A run directory: counts of its model, from the config's formulas and from the
        /// tensors in its `model.safetensors` (an error if they disagree).
        #[arg(long)]
        run: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a timm `.safetensors` against a preset and write it as an advsoup model.
    ImportTimm {
        /// The timm weights (PyTorch layout, timm keys).
        file: PathBuf,
        /// The preset the weights belong to.
        #[arg(long)]
        preset: String,
        /// Adapter to add (its duplicated parameters start as copies of the loaded ones).
        #[arg(long, default_value = "cls_token")]
        adapter: String,
        /// Output advsoup model file.
        #[arg(long)]
        out: PathBuf,
        /// Per-channel input mean the checkpoint was trained with (timm's pretrained_cfg, e.g.
        /// `0.5,0.5,0.5`); required with --std unless the file records it (advsoup's exports do).
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
        mean: Option<Vec<f64>>,
        /// Per-channel input std (e.g. `0.5,0.5,0.5`); see --mean.
        #[arg(long, value_delimiter = ',')]
        std: Option<Vec<f64>>,
    },
    /// Write a run's model (a given mode) back to timm's layout.
    ExportTimm {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// Which adapter to bake in: clean, robust or soup:BETA (cls_token/dual_layer_norm/bias).
        #[arg(long, default_value = "clean", value_parser = parse_mode)]
        mode: Mode,
        /// Output `.safetensors`.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `advsoup train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The experiment file.
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config value (repeatable): `--set attack.train.num_steps=3`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Override the regime: nominal, adversarial or co_training.
    #[arg(long)]
    pub regime: Option<String>,
    /// Continue from the run's checkpoint if there is one (after SIGTERM or Ctrl-C, which
    /// checkpoint and exit 143 / 130, or after a kill); the config must match the run's
    /// fingerprint.json (the long help lists what may change).
    #[arg(long, long_help = advsoup_train::resume::resume_help())]
    pub resume: bool,
    /// Parent directory of runs.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// cpu, cuda, cuda:N or wgpu.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceArg,
    /// Stop after this many steps (checkpointed; resumable).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Checkpoint every N steps inside an epoch (0: at epoch ends only).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Cache root of the built-in datasets (overrides the config's `data.data_dir`). Data is
    /// looked for in `data.data_dir`, else in $ADVSOUP_DATA, else in the platform cache dir
    /// (`~/.cache/advsoup` on Linux), under `<dataset>/`; ImageFolder data is read from
    /// `data.train_dir` / `data.val_dir`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Fetch the dataset into that cache if it is not there.
    #[arg(long)]
    pub fetch: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the resolved plan (batch split, accumulation, schedule, attack cost) and exit
    /// without reading data.
    #[arg(long)]
    pub dry_run: bool,
    /// Data-parallel peers on this machine (one per device: cuda:N, cuda:N+1, ...; on cpu,
    /// threads sharing the CPU).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Machines in a multi-node run (each runs this command with its --node-rank).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// This machine's rank in 0..nodes; node 0 runs the coordinator and writes the run.
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
    /// host:port of the coordinator on node 0 (needed with --nodes > 1).
    #[arg(long)]
    pub coordinator: Option<String>,
    /// host:port other nodes reach this one at (default: coordinator host, port + 1 + rank).
    #[arg(long)]
    pub node_address: Option<String>,
}

/// `advsoup eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Attack preset: pgd-K (K at most 10000 steps), fgsm, apgd-ce, apgd-t, square, standard.
    #[arg(long, default_value = "standard")]
    pub attack: String,
    /// Radius (ℓ∞) in (0, 1] (default: the run's `attack.eval.eps`).
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,
    /// Test samples to attack.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Model mode: clean, robust, soup:BETA.
    #[arg(long, default_value = "robust", value_parser = parse_mode)]
    pub mode: Mode,
    /// Seed of the attacks' random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the report here (default: RUN/eval-<attack>-<eps>-<mode>.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `advsoup attack`.
#[derive(Debug, clap::Args)]
pub struct AttackArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Attack preset: pgd-K (K at most 10000 steps), fgsm, apgd-ce, apgd-t, square, standard.
    #[arg(long, default_value = "pgd-20")]
    pub attack: String,
    /// Radius (ℓ∞) in (0, 1] (default: the run's `attack.eval.eps`).
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,
    /// Test samples to attack (the first n).
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Model mode: clean, robust, soup:BETA.
    #[arg(long, default_value = "robust", value_parser = parse_mode)]
    pub mode: Mode,
    /// Seed of the attacks' random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output path without extension.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    run_with(cli, Arc::new(AtomicBool::new(false)))
}

/// Runs a parsed command line; setting `stop` asks `train` to checkpoint after the current
/// step and return [`Stopped`] (the binary sets it on SIGINT and SIGTERM).
pub fn run_with(cli: Cli, stop: Arc<AtomicBool>) -> Result<()> {
    cli.kernels.apply()?;
    match cli.command {
        Command::Train(args) => train(args, stop),
        Command::Eval(args) => eval(args),
        Command::Attack(args) => attack(args),
        Command::Data(cmd) => cmd_data::run(cmd),
        Command::Soup(cmd) => cmd_soup::run(cmd),
        Command::Bench(args) => cmd_bench::run(args),
        Command::Report(args) => cmd_report::run(args),
        Command::Info {
            preset,
            adapter,
            run,
            json,
        } => cmd_info::run(preset.as_deref(), &adapter, run.as_deref(), json),
        Command::ImportTimm {
            file,
            preset,
            adapter,
            out,
            mean,
            std,
        } => {
            let norm = match (mean, std) {
                (Some(mean), Some(std)) => {
                    NormalizationSource::Given(Normalization::new(mean, std))
                }
                (None, None) => NormalizationSource::FromFile,
                _ => bail!("--mean and --std go together: give both or neither"),
            };
            import_timm(&file, &preset, &adapter, &norm, &out)
        }
        Command::ExportTimm { run, mode, out } => export_timm(&run, mode, &out),
    }
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Loads a config file with overrides and an optional regime override.
pub fn load_config(path: &Path, overrides: &[String], regime: Option<&str>) -> Result<TrainConfig> {
    let mut overrides = overrides.to_vec();
    if let Some(r) = regime {
        if advsoup_train::Regime::parse(r).is_none() {
            bail!("--regime: unknown regime `{r}`, expected nominal, adversarial or co_training");
        }
        overrides.push(format!("regime=\"{r}\""));
    }
    Ok(TrainConfig::load(path, &overrides)?)
}

fn train(args: TrainArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let mut config = load_config(&args.config, &args.overrides, args.regime.as_deref())?;
    if let Some(dir) = &args.data_dir {
        config.data.data_dir = Some(dir.clone());
    }
    let topology = advsoup_train::Topology {
        devices: args.devices,
        nodes: args.nodes,
        node_rank: args.node_rank,
        coordinator: args.coordinator.clone(),
        node_address: args.node_address.clone(),
    };
    if args.dry_run {
        let samples = advsoup_train::planned_train_samples(&config)?;
        let plan = advsoup_train::Plan::new(&config, &topology, samples)
            .with_context(|| format!("{}", args.config.display()))?;
        print!("{plan}");
        return Ok(());
    }
    topology.validate()?;
    let splits = advsoup_train::load_data(&config, args.fetch)?;
    let mut options = RunOptions::new(&args.runs_dir);
    options.resume = args.resume;
    options.max_steps = args.max_steps;
    options.progress = !args.quiet;
    options.git_revision = git_revision();
    options.stop = stop;
    options.checkpoint_every = args.checkpoint_every;
    let summary = match args.device {
        DeviceArg::Cpu => {
            let devices = vec![Default::default(); topology.devices];
            train_on::<Autodiff<Flex>>(&config, &splits, &options, &devices, &topology)
        }
        DeviceArg::Cuda(n) => train_cuda(&config, &splits, &options, n, &topology),
        DeviceArg::Wgpu => gpu::train_wgpu(&config, &splits, &options, &topology),
    };
    let summary = summary.map_err(stopped)?;
    println!("run: {}", summary.dir.display());
    match summary.report {
        Some(report) => {
            println!(
                "final ({} test images clean, {} attacked; train time {:.0}s):",
                report.n_clean, report.n_robust, report.train_seconds
            );
            print!("{}", report.table());
        }
        None => println!("stopped after --max-steps; continue with --resume"),
    }
    Ok(())
}

/// A training stopped by a signal becomes [`Stopped`] (exit 130/143); other errors pass
/// through.
fn stopped(err: anyhow::Error) -> anyhow::Error {
    match err.downcast_ref() {
        Some(advsoup_train::TrainError::Interrupted { dir }) => Stopped {
            signal: signals::received().unwrap_or(signal_hook::consts::SIGINT),
            run: dir.clone(),
        }
        .into(),
        _ => err,
    }
}

/// One peer per device of `devices` (data-parallel when there are several peers in all).
fn train_on<B: burn::tensor::backend::AutodiffBackend>(
    config: &TrainConfig,
    splits: &advsoup_data::Splits,
    options: &RunOptions,
    devices: &[B::Device],
    topology: &advsoup_train::Topology,
) -> Result<advsoup_train::RunSummary> {
    #[cfg(feature = "collective")]
    {
        Ok(advsoup_train::train_parallel::<B>(
            config, splits, options, devices, topology,
        )?)
    }
    #[cfg(not(feature = "collective"))]
    {
        if topology.world() > 1 {
            bail!("--devices/--nodes: this advsoup was built without the `collective` feature");
        }
        Ok(advsoup_train::train::<B>(
            config,
            splits,
            options,
            &devices[0],
        )?)
    }
}

#[cfg(feature = "cuda")]
fn train_cuda(
    config: &TrainConfig,
    splits: &advsoup_data::Splits,
    options: &RunOptions,
    n: usize,
    topology: &advsoup_train::Topology,
) -> Result<advsoup_train::RunSummary> {
    use burn::backend::Cuda;
    let devices: Vec<_> = (n..n + topology.devices)
        .map(burn::backend::cuda::CudaDevice::new)
        .collect();
    for device in &devices {
        probe_cuda(device)?;
    }
    train_on::<Autodiff<Cuda>>(config, splits, options, &devices, topology)
}

#[cfg(feature = "cuda")]
fn probe_cuda(device: &burn::backend::cuda::CudaDevice) -> Result<()> {
    use burn::backend::Cuda;
    use burn::prelude::*;
    let d = device.clone();
    let ok = std::panic::catch_unwind(move || {
        Tensor::<Cuda, 1>::ones([2], &d)
            .sum()
            .into_scalar()
            .elem::<f32>()
    });
    match ok {
        Ok(2.0) => Ok(()),
        _ => {
            bail!("--device cuda: no usable CUDA device {device:?} (driver missing or device busy)")
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn train_cuda(
    _: &TrainConfig,
    _: &advsoup_data::Splits,
    _: &RunOptions,
    _: usize,
    _: &advsoup_train::Topology,
) -> Result<advsoup_train::RunSummary> {
    bail!(
        "--device cuda: this advsoup was built without the `cuda` feature (cargo build --features cuda)"
    )
}

/// Rebuilds a run's model from its resolved config and `model.safetensors`.
pub fn load_run<B: burn::prelude::Backend>(
    run: &Path,
    device: &B::Device,
) -> Result<(TrainConfig, advsoup_adapters::AdaptedVit<B>)> {
    run_dir::require_finished(run)?;
    let config_path = run.join("config.toml");
    let config = TrainConfig::load(&config_path, &[])?;
    let model = AdaptedVitConfig {
        vit: config.vit()?,
        adapter: config.model.adapter,
    }
    .try_init::<B>(device)
    .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    let model = advsoup_adapters::io::load_model(model, &run.join("model.safetensors"))?;
    Ok((config, model))
}

/// A given `--eps`, checked: a radius in (0, 1].
pub fn radius(eps: Option<f64>) -> Result<Option<f64>> {
    match eps {
        Some(e) if !(e > 0.0 && e <= 1.0) => bail!("--eps: expected a radius in (0, 1], got {e}"),
        other => Ok(other),
    }
}

fn eval(args: EvalArgs) -> Result<()> {
    type AD = Autodiff<Flex>;
    let device = Default::default();
    let eps = radius(args.eps)?;
    let (config, model) = load_run::<AD>(&args.run, &device)?;
    let eps = eps.unwrap_or(config.attack.eval.eps);
    let evaluator = attack_preset(&args.attack, eps, args.seed)?;
    let mode = advsoup_eval::mode_tag(args.mode);
    let out = args.out.clone().unwrap_or_else(|| {
        args.run
            .join(format!("eval-{}-{eps}-{mode}.json", args.attack))
    });
    let _lock = run_dir::lock_output(&out)?;
    let splits = advsoup_train::load_data(&config, false)?;
    let n = args.n.min(splits.test.num_samples());
    if n == 0 {
        bail!("--n: the test split has no samples to evaluate");
    }
    // Chunks of one batch are kept in `<out>.partial/` until the report is written, so a
    // killed evaluation continues where it stopped.
    let progress = progress::Progress::start("eval", "images", n);
    let report = EvalJob::new(evaluator, args.mode)
        .batch_size(config.eval.batch_size)
        .first(n)
        .on_progress(job_progress(&progress))
        .run_to_file::<AD>(&model.valid(), &splits.test, &device, &out)?;
    progress.finish();
    println!(
        "{} eps={eps} mode={mode} n={}: clean {:.2}%  robust {:.2}%  forwards {}",
        args.attack,
        report.n,
        100.0 * report.clean_accuracy,
        100.0 * report.robust_accuracy,
        report.cost.sample_forwards
    );
    for w in report.sanity.warnings() {
        println!("sanity: {w}");
    }
    println!("report: {}", out.display());
    Ok(())
}

fn attack(args: AttackArgs) -> Result<()> {
    type AD = Autodiff<Flex>;
    let device = Default::default();
    let eps = radius(args.eps)?;
    let (config, model) = load_run::<AD>(&args.run, &device)?;
    let eps = eps.unwrap_or(config.attack.eval.eps);
    let evaluator = attack_preset(&args.attack, eps, args.seed)?;
    let _lock = run_dir::lock_output(&args.out)?;
    let splits = advsoup_train::load_data(&config, false)?;
    let n = args.n.min(splits.test.num_samples());
    if n == 0 {
        bail!("--n: the test split has no samples to attack");
    }
    let progress = progress::Progress::start("attack", "images", n);
    let written = EvalJob::new(evaluator, args.mode)
        .batch_size(config.eval.batch_size)
        .first(n)
        .on_progress(job_progress(&progress))
        .write_adversarial::<AD>(&model.valid(), &splits.test, &device, &args.out)?;
    progress.finish();
    println!(
        "{} eps={eps} n={}: robust {:.2}% -> {} and {}",
        args.attack,
        written.report.n,
        100.0 * written.report.robust_accuracy,
        written.safetensors.display(),
        written.json.display()
    );
    Ok(())
}

/// The `--attack` preset, its error naming the option (e.g. a step count above the maximum).
fn attack_preset(name: &str, eps: f64, seed: u64) -> Result<Evaluator> {
    Evaluator::preset(name, ThreatModel::Linf, eps, seed).context("--attack")
}

/// An [`EvalJob::on_progress`] callback drawing on `progress`.
fn job_progress(
    progress: &progress::Progress,
) -> impl Fn(advsoup_eval::Progress) + Send + Sync + use<> {
    let update = progress.callback();
    move |p| update(p.done)
}

fn import_timm(
    file: &Path,
    preset_name: &str,
    adapter_name: &str,
    norm: &NormalizationSource,
    out: &Path,
) -> Result<()> {
    let vit_config = preset(preset_name)?;
    let kind = adapter(adapter_name)?;
    let device = Default::default();
    let vit = advsoup_vit::io::load_timm::<Flex>(file, &vit_config, norm, &device)?;
    let _lock = run_dir::lock_output(out)?;
    // The model's normalization is the one just resolved, not the preset's.
    let vit_config = vit_config
        .with_mean(Normalization::of_model(&vit).mean)
        .with_std(Normalization::of_model(&vit).std);
    let model = advsoup_adapters::AdaptedVit::new(vit, kind, &vit_config);
    advsoup_adapters::io::save_model(&model, out)?;
    println!(
        "imported {} ({} parameters) with adapter {kind} -> {}",
        file.display(),
        group(vit_config.num_params()),
        out.display()
    );
    Ok(())
}

fn export_timm(run: &Path, mode: Mode, out: &Path) -> Result<()> {
    let device = Default::default();
    let (_, model) = load_run::<Flex>(run, &device)?;
    let _lock = run_dir::lock_output(out)?;
    // Steps: load (done), bake, write.
    let progress = progress::Progress::start("export", "steps", 3);
    progress.update(1);
    let vit = model.bake(mode).with_context(|| {
        format!(
            "adapter {} cannot be baked into a plain ViT (prompts and LoRA add computation)",
            model.kind()
        )
    })?;
    progress.update(2);
    advsoup_vit::io::save_timm(&vit, out)?;
    progress.update(3);
    progress.finish();
    println!(
        "exported {} mode {mode:?} -> {}",
        run.display(),
        out.display()
    );
    Ok(())
}

/// The glibc allocator settings the binary runs with (see [`tune_allocator`]).
pub const GLIBC_TUNABLES: &str = "glibc.malloc.mmap_threshold=268435456:\
     glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=67108864";

/// Re-executes the binary once with [`GLIBC_TUNABLES`] set, unless the variable is already set
/// (by the user, or by this re-exec) or `ADVSOUP_NO_TUNABLES` is. By default glibc serves
/// every allocation over its (at most 32 MiB) mmap threshold with a fresh `mmap`, trims the
/// heap top above 128 KiB, and unmaps a thread arena's 64 MiB heap as soon as it empties, so
/// the large activations of every training step came back as fresh zeroed pages. Raised
/// mmap and trim thresholds keep those blocks in the heap, and a 64 MiB `top_pad` keeps
/// rayon workers' heaps from being deleted and re-created. Measured with `advsoup bench
/// --preset tiny32 --only co_training_step --iters 5` (6 steps): 1.21 M page faults with
/// glibc's defaults, 0.26 M with these; PGD memory stays flat in K (crates/bench/README.md).
/// The tunables are read only at process start, hence the exec; if it fails the binary runs
/// untuned.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GLIBC_TUNABLES").is_some()
        || std::env::var_os("ADVSOUP_NO_TUNABLES").is_some()
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    // `exec` only returns on failure; then run as we are.
    let _ = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", GLIBC_TUNABLES)
        .exec();
}

/// Elsewhere the allocator is left as it is.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_reports_timm_count_and_token_size() {
        let text = info("vit_base_patch16_224", "cls_token").expect("info");
        assert!(
            text.contains("total parameters (no adapter): 86,567,656"),
            "{text}"
        );
        assert!(
            text.contains("domain-specific parameters per domain: 768\n"),
            "{text}"
        );
        let text = info("vit_base_patch16_224", "dual_layer_norm").expect("info");
        assert!(text.contains("per domain: 38,400\n"), "{text}");
        assert!(info("vit_huge", "cls_token").is_err());
        assert!(info("vit_base_patch16_224", "tokens").is_err());
    }

    #[test]
    fn device_and_mode_parsing() {
        assert_eq!(parse_device("cuda:1"), Ok(DeviceArg::Cuda(1)));
        assert!(parse_device("gpu").is_err());
        assert_eq!(parse_mode("soup:0.3"), Ok(Mode::Soup(0.3)));
        assert!(parse_mode("soup:1.5").is_err());
    }
}
