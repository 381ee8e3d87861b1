//! `advsoup bench`: images/s of the steps advsoup spends its time in, measured through the real
//! training code (`advsoup_train::step`), plus the peak memory of PGD for two attack lengths.
//!
//! Steps, for each preset:
//! - `forward`: evaluation forward (inner backend, no autodiff), clean mode;
//! - `train_step`: the nominal regime's [`TrainStep::step`](burn::train::TrainStep::step) (forward + backward) and
//!   [`TrainStep::optimize`](burn::train::TrainStep::optimize) (AdamW);
//! - `pgd_step`: one PGD step as training crafts it ([`advsoup_train::step::craft`]: a frozen,
//!   deterministic copy, input gradient only, random start, projection);
//! - `co_training_step`: the co-training regime's step (PGD-K against the robust mode, one mixed
//!   clean/adversarial forward/backward) plus AdamW. Its images/s counts the `batch` clean images
//!   of a step (each also attacked), not the 2·batch rows of the mixed pass.
//!
//! Peak memory is the process's `VmHWM` in a fresh child process per attack length (the binary
//! re-runs itself with a hidden `--memory-child K`), so K = 1 and K = 20 start from the same state.

use std::path::PathBuf;

use advsoup_adapters::{AdaptedVit, AdaptedVitConfig, AdapterKind, Mode};
use advsoup_bench::memory::{self, MemoryRecord};
use advsoup_bench::suite::{BenchReport, PresetReport};
use advsoup_bench::{BenchRecord, measure};
use advsoup_train::config::PgdSection;
use advsoup_train::step::{CoTraining, Nominal, Regime, StepConfig, TrainBatch, craft};
use advsoup_vit::VitConfig;
use anyhow::{Context, Result, bail};
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::AdamWConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;

use crate::{DeviceArg, parse_device};

/// Which models to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PresetArg {
    /// ViT-Tiny-like for 32x32 images (`vit_tiny_patch4_32`), batch 64, all four steps.
    Tiny32,
    /// `vit_base_patch16_224`, batch 4 on CPU (forward and PGD step only) or 64 on CUDA.
    Vitb16,
    /// The default training's model (configs/fmnist-cls.toml): 28x28 grey images, patch 7, 64
    /// wide, 4 blocks, 4 heads, MLP 128, batch 128, all four steps.
    Fmnist,
    /// tiny32, vitb16, then fmnist.
    All,
    /// A test-sized model (8x8 images, width 16, one block), batch 2: for CI.
    Test,
}

/// `advsoup bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which models.
    #[arg(long, value_enum, default_value = "tiny32")]
    pub preset: PresetArg,
    /// Batch size (default: per preset).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Measured calls per step.
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Untimed calls before measuring.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// PGD steps K inside the co-training step (the default config trains with K = 2).
    #[arg(long, default_value_t = 2)]
    pub steps: usize,
    /// Write the report here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceArg,
    /// CI size: the test preset, 1 iteration, no warm-up, K = 2.
    #[arg(long)]
    pub quick: bool,
    /// Attack lengths K whose PGD peak memory is measured, each in a fresh child process.
    #[arg(long, value_delimiter = ',', default_value = "1,20")]
    pub memory_steps: Vec<usize>,
    /// Skip the memory measurement.
    #[arg(long)]
    pub no_memory: bool,
    /// Measure only these steps (forward, train_step, pgd_step, co_training_step), e.g. to
    /// profile one of them.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Compute precision of the measured steps: f32, bf16 or f16 (mixed precision: f32 master
    /// weights, 16-bit compute, no loss scaling; for GPUs, burn's CPU backend converts 16-bit
    /// floats through f32).
    #[arg(long, default_value = "f32", value_parser = advsoup_vit::Precision::parse)]
    pub precision: advsoup_vit::Precision,
    /// Internal: run one PGD-K attack and print its memory record as JSON.
    #[arg(long, hide = true)]
    pub memory_child: Option<usize>,
}

/// A model to benchmark.
#[derive(Debug, Clone)]
struct Preset {
    name: &'static str,
    model: &'static str,
    vit: VitConfig,
    batch: usize,
    /// Whether the train and co-training steps are measured.
    train: bool,
}

impl PresetArg {
    fn name(self) -> &'static str {
        match self {
            PresetArg::Tiny32 => "tiny32",
            PresetArg::Vitb16 => "vitb16",
            PresetArg::Fmnist => "fmnist",
            PresetArg::All => "all",
            PresetArg::Test => "test",
        }
    }

    fn presets(self, cuda: bool) -> Vec<Preset> {
        let tiny32 = Preset {
            name: "tiny32",
            model: "vit_tiny_patch4_32",
            vit: VitConfig::vit_tiny_patch4_32(),
            batch: 64,
            train: true,
        };
        let vitb16 = Preset {
            name: "vitb16",
            model: "vit_base_patch16_224",
            vit: VitConfig::vit_base_patch16_224(),
            batch: if cuda { 64 } else { 4 },
            train: cuda,
        };
        let fmnist = Preset {
            name: "fmnist",
            model: "vit_mini_patch7_28",
            vit: VitConfig {
                patch_size: 7,
                embed_dim: 64,
                depth: 4,
                num_heads: 4,
                mlp_ratio: 2.0,
                ..VitConfig::vit_mini_patch4_28()
            },
            batch: 128,
            train: true,
        };
        let test = Preset {
            name: "test",
            model: "test_patch4_8",
            vit: VitConfig::new()
                .with_img_size(8)
                .with_patch_size(4)
                .with_in_chans(3)
                .with_num_classes(10)
                .with_embed_dim(16)
                .with_depth(1)
                .with_num_heads(2),
            batch: 2,
            train: true,
        };
        match self {
            PresetArg::Tiny32 => vec![tiny32],
            PresetArg::Vitb16 => vec![vitb16],
            PresetArg::Fmnist => vec![fmnist],
            PresetArg::All => vec![tiny32, vitb16, fmnist],
            PresetArg::Test => vec![test],
        }
    }
}

/// Measurement settings shared by every preset.
#[derive(Debug, Clone)]
struct Opts {
    iters: usize,
    warmup: usize,
    steps: usize,
    eps: f64,
    step_size: f64,
    lr: f64,
    /// Steps to measure (all when empty).
    only: Vec<String>,
    precision: advsoup_vit::Precision,
}

impl Opts {
    fn wants(&self, step: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == step)
    }

    fn pgd(&self, steps: usize) -> PgdSection {
        PgdSection {
            eps: self.eps,
            num_steps: steps,
            step_size: self.step_size,
            random_start: true,
        }
    }
}

/// A fixed batch: uniform pixels, labels cycling over the classes, one-hot targets.
fn batch<B: AutodiffBackend>(p: &Preset, n: usize, device: &B::Device) -> TrainBatch<B> {
    let v = &p.vit;
    let images = Tensor::<B, 4>::random(
        [n, v.in_chans, v.img_size, v.img_size],
        Distribution::Uniform(0.0, 1.0),
        device,
    );
    let labels: Vec<i64> = (0..n).map(|i| (i % v.num_classes) as i64).collect();
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [n]), device);
    let soft_targets = targets.clone().one_hot::<2>(v.num_classes).float();
    TrainBatch {
        images,
        targets,
        soft_targets,
        ids: (0..n as u64).collect(),
        seed: 7,
        loss_scale: 1.0,
    }
}

fn model<B: AutodiffBackend>(p: &Preset, device: &B::Device) -> Result<AdaptedVit<B>> {
    B::seed(device, 0);
    let model = AdaptedVitConfig {
        vit: p.vit.clone(),
        adapter: AdapterKind::ClsToken,
    }
    .try_init::<B>(device)
    .with_context(|| format!("preset {}", p.name))?;
    advsoup_vit::materialize(&model);
    Ok(model)
}

/// Forces a lazy backend to finish by reading one number back.
fn settle<B: Backend, const D: usize>(t: Tensor<B, D>) {
    let _ = t.sum().into_data();
}

/// Times `step` + `optimize` of a regime with AdamW, the way the training loop calls them.
fn regime_record<B: AutodiffBackend, R: Regime<B>>(
    name: &str,
    module: R,
    batch: &TrainBatch<B>,
    o: &Opts,
) -> BenchRecord {
    let mut optim = AdamWConfig::new().with_epsilon(1e-8).init::<B, R>();
    let mut module = Some(module);
    measure(name, batch.images.dims()[0], o.warmup, o.iters, || {
        let m = module
            .take()
            .expect("the module is put back after every step");
        let out = m.step(batch.clone());
        module = Some(m.optimize(&mut optim, o.lr, out.grads));
    })
}

fn bench_preset<B: AutodiffBackend>(
    p: &Preset,
    n: usize,
    o: &Opts,
    device: &B::Device,
) -> Result<PresetReport> {
    let model = model::<B>(p, device)?;
    let batch = batch::<B>(p, n, device);
    let mut records = Vec::new();

    if o.wants("forward") {
        eprintln!("bench {}: forward", p.name);
        let inner = o.precision.cast(model.valid());
        let x = batch.images.clone().inner();
        records.push(measure("forward", n, o.warmup, o.iters, || {
            settle(inner.forward_mode(x.clone(), Mode::Clean));
        }));
    }

    if p.train && o.wants("train_step") {
        eprintln!("bench {}: train_step", p.name);
        let config = StepConfig::new(0.5, &o.pgd(o.steps))?.with_precision(o.precision);
        records.push(regime_record(
            "train_step",
            Nominal::wrap(model.clone(), config),
            &batch,
            o,
        ));
    }

    if o.wants("pgd_step") {
        eprintln!("bench {}: pgd_step", p.name);
        let one = StepConfig::new(0.5, &o.pgd(1))?;
        let compute = o.precision.cast(model.clone());
        records.push(measure("pgd_step", n, o.warmup, o.iters, || {
            settle(craft(&compute, &one.attack, &batch));
        }));
    }

    if p.train && o.wants("co_training_step") {
        eprintln!("bench {}: co_training_step (K = {})", p.name, o.steps);
        let config = StepConfig::new(0.5, &o.pgd(o.steps))?.with_precision(o.precision);
        records.push(regime_record(
            "co_training_step",
            CoTraining::wrap(model, config),
            &batch,
            o,
        ));
    }

    Ok(PresetReport {
        preset: p.name.to_string(),
        model: p.model.to_string(),
        batch: n,
        pgd_steps: o.steps,
        eps: o.eps,
        step_size: o.step_size,
        records,
        memory: Vec::new(),
    })
}

/// One PGD-K attack as training crafts it, with the resident set before and the peak after.
fn memory_child<B: AutodiffBackend>(
    p: &Preset,
    n: usize,
    k: usize,
    o: &Opts,
    device: &B::Device,
) -> Result<MemoryRecord> {
    let model = model::<B>(p, device)?;
    let batch = batch::<B>(p, n, device);
    let attack = StepConfig::new(0.5, &o.pgd(k))?.attack;
    let before = memory::rss_bytes().context("reading VmRSS from /proc/self/status")?;
    settle(craft(&o.precision.cast(model), &attack, &batch));
    let peak = memory::peak_rss_bytes().context("reading VmHWM from /proc/self/status")?;
    Ok(MemoryRecord {
        name: "pgd".into(),
        steps: k,
        rss_before_mib: memory::mib(before),
        peak_rss_mib: memory::mib(peak),
    })
}

fn device_name(d: DeviceArg) -> String {
    match d {
        DeviceArg::Cpu => "cpu".into(),
        DeviceArg::Cuda(n) => format!("cuda:{n}"),
    }
}

/// Runs `advsoup bench --memory-child K` for one preset in a fresh process.
fn spawn_memory_child(p: &Preset, n: usize, k: usize, args: &BenchArgs) -> Result<MemoryRecord> {
    let exe = std::env::current_exe().context("locating the advsoup binary")?;
    let preset = match p.name {
        "tiny32" => PresetArg::Tiny32,
        "vitb16" => PresetArg::Vitb16,
        "fmnist" => PresetArg::Fmnist,
        _ => PresetArg::Test,
    };
    let out = std::process::Command::new(&exe)
        .args(["bench", "--preset", preset.name(), "--batch"])
        .arg(n.to_string())
        .arg("--device")
        .arg(device_name(args.device))
        .args(["--precision", args.precision.name()])
        .arg("--memory-child")
        .arg(k.to_string())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "memory child (K = {k}) failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("memory child printed `{line}`"))
}

fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn opts(args: &BenchArgs) -> Opts {
    Opts {
        iters: args.iters.max(1),
        warmup: args.warmup,
        steps: args.steps.max(1),
        eps: 8.0 / 255.0,
        step_size: 2.0 / 255.0,
        lr: 1e-4,
        only: args.only.clone(),
        precision: args.precision,
    }
}

/// Measures every preset of `args` on backend `B` (memory in child processes unless
/// `--no-memory`).
fn bench_all<B: AutodiffBackend>(
    args: &BenchArgs,
    device: &B::Device,
    device_label: &str,
) -> Result<BenchReport> {
    let o = opts(args);
    let cuda = matches!(args.device, DeviceArg::Cuda(_));
    let mut presets = Vec::new();
    for p in args.preset.presets(cuda) {
        let n = args.batch.unwrap_or(p.batch);
        if n == 0 {
            bail!("--batch must be > 0");
        }
        let mut report = bench_preset::<B>(&p, n, &o, device)?;
        if !args.no_memory && !cuda {
            for &k in &args.memory_steps {
                eprintln!("bench {}: PGD peak memory (K = {k}, child process)", p.name);
                report.memory.push(spawn_memory_child(&p, n, k, args)?);
            }
        }
        presets.push(report);
    }
    Ok(BenchReport {
        tool: "advsoup".into(),
        // The compute precision travels with the device ("cuda:0 bf16"); f32 is unmarked.
        device: match args.precision {
            advsoup_vit::Precision::F32 => device_label.into(),
            p => format!("{device_label} {p}"),
        },
        threads: threads(),
        presets,
    })
}

fn bench_cpu(args: &BenchArgs) -> Result<BenchReport> {
    let device = Default::default();
    bench_all::<Autodiff<Flex>>(args, &device, "flex-cpu")
}

#[cfg(feature = "cuda")]
fn bench_cuda(args: &BenchArgs, n: usize) -> Result<BenchReport> {
    use burn::backend::Cuda;
    let device = burn::backend::cuda::CudaDevice::new(n);
    crate::probe_cuda(&device)?;
    bench_all::<Autodiff<Cuda>>(args, &device, &format!("cuda:{n}"))
}

#[cfg(not(feature = "cuda"))]
fn bench_cuda(_: &BenchArgs, _: usize) -> Result<BenchReport> {
    bail!(
        "--device cuda: this advsoup was built without the `cuda` feature (cargo build --features cuda)"
    )
}

/// Runs the benchmarks.
pub fn run(mut args: BenchArgs) -> Result<()> {
    const STEPS: [&str; 4] = ["forward", "train_step", "pgd_step", "co_training_step"];
    if let Some(bad) = args.only.iter().find(|s| !STEPS.contains(&s.as_str())) {
        bail!(
            "--only: unknown step `{bad}`, expected one of {}",
            STEPS.join(", ")
        );
    }
    if args.quick {
        args.preset = PresetArg::Test;
        args.iters = 1;
        args.warmup = 0;
        args.steps = 2;
    }
    if let Some(k) = args.memory_child {
        let [p] = args.preset.presets(false).try_into().map_err(|_| {
            anyhow::anyhow!(
                "--memory-child takes one preset, not {}",
                args.preset.name()
            )
        })?;
        let n = args.batch.unwrap_or(p.batch);
        let o = opts(&args);
        let record = match args.device {
            DeviceArg::Cpu => memory_child::<Autodiff<Flex>>(&p, n, k, &o, &Default::default())?,
            DeviceArg::Cuda(_) => bail!("--memory-child measures host memory: use --device cpu"),
        };
        println!("{}", serde_json::to_string(&record)?);
        return Ok(());
    }
    let report = match args.device {
        DeviceArg::Cpu => bench_cpu(&args)?,
        DeviceArg::Cuda(n) => bench_cuda(&args, n)?,
    };
    print!("{}", report.render());
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("json: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> BenchArgs {
        let mut all = vec!["advsoup", "bench"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).expect("parses").command {
            Command::Bench(b) => b,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn quick_bench_writes_all_four_positive_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let json = dir.path().join("bench/out.json");
        let json_arg = json.to_string_lossy().to_string();
        run(parse(&["--quick", "--no-memory", "--json", &json_arg])).expect("bench runs");
        let report: BenchReport =
            serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
        assert_eq!(report.tool, "advsoup");
        let [p] = report.presets.as_slice() else {
            panic!("one preset: {report:?}")
        };
        assert_eq!(p.preset, "test");
        let names: Vec<&str> = p.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["forward", "train_step", "pgd_step", "co_training_step"]
        );
        for r in &p.records {
            assert_eq!((r.batch, r.iters), (2, 1), "{r:?}");
            assert!(r.images_per_s.is_finite() && r.images_per_s > 0.0, "{r:?}");
        }
        assert!(
            report
                .render()
                .contains("| test/co_training_step (K=2) | 2 |")
        );
    }

    #[test]
    fn memory_child_reports_a_peak() {
        let p = PresetArg::Test.presets(false).remove(0);
        let o = opts(&parse(&["--quick"]));
        let r = memory_child::<Autodiff<Flex>>(&p, 2, 3, &o, &Default::default())
            .expect("memory record");
        assert_eq!((r.name.as_str(), r.steps), ("pgd", 3));
        assert!(
            r.rss_before_mib > 0.0 && r.peak_rss_mib >= r.rss_before_mib,
            "{r:?}"
        );
    }

    #[test]
    fn arguments() {
        let a = parse(&[
            "--preset",
            "all",
            "--memory-steps",
            "1,5",
            "--device",
            "cuda",
        ]);
        assert_eq!(a.preset, PresetArg::All);
        assert_eq!(a.memory_steps, [1, 5]);
        assert_eq!(a.device, DeviceArg::Cuda(0));
        let names: Vec<_> = a.preset.presets(false).iter().map(|p| p.name).collect();
        assert_eq!(names, ["tiny32", "vitb16", "fmnist"]);
        let fmnist = &PresetArg::Fmnist.presets(false)[0];
        assert_eq!(
            (fmnist.vit.patch_size, fmnist.vit.embed_dim, fmnist.batch),
            (7, 64, 128)
        );
        assert_eq!(
            parse(&["--only", "forward,pgd_step"]).only,
            ["forward", "pgd_step"]
        );
        assert!(run(parse(&["--quick", "--only", "backward"])).is_err());
        assert!(!PresetArg::Vitb16.presets(false)[0].train);
        assert!(PresetArg::Vitb16.presets(true)[0].train);
        let bad = Cli::try_parse_from(["advsoup", "bench", "--preset", "huge"]);
        assert!(bad.is_err());
    }
}
