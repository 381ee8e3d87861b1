//! `advsoup bench`: images/s of the steps advsoup spends its time in and the peak memory of PGD,
//! measured by advsoup-bench's harness ([`advsoup_bench::harness`]: the steps, presets and
//! memory child processes are documented there). This module parses the arguments, picks the
//! backend, makes one call and prints the report.
//!
//! Peak memory is measured in a fresh child process per attack length: the binary re-runs
//! itself with a hidden `--memory-child K` ([`advsoup_bench::child`]), whose entry point is
//! [`advsoup_bench::memory_child`].

use std::path::PathBuf;

use advsoup_bench::suite::BenchReport;
use advsoup_bench::{BenchPreset, BenchStep, MemoryPlan, Settings, SuitePlan};
use anyhow::{Context, Result, bail};
use burn::backend::{Autodiff, Flex};

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
    /// Measure a training config's model instead of a preset, at its batch size and PGD length
    /// (attack.train.num_steps). On a GPU backend with `--kernel-cache DIR` this is the warm-up:
    /// the first call compiles and autotunes the configuration's kernels, the report's
    /// "first call s" says how long that took, and later runs with the same DIR skip it.
    #[arg(long, conflicts_with_all = ["preset", "steps", "memory_child"])]
    pub config: Option<PathBuf>,
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
    /// cpu, cuda, cuda:N or wgpu.
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

    fn presets(self, cuda: bool) -> Vec<BenchPreset> {
        match self {
            PresetArg::Tiny32 => vec![BenchPreset::tiny32()],
            PresetArg::Vitb16 => vec![BenchPreset::vitb16(cuda)],
            PresetArg::Fmnist => vec![BenchPreset::fmnist()],
            PresetArg::All => vec![
                BenchPreset::tiny32(),
                BenchPreset::vitb16(cuda),
                BenchPreset::fmnist(),
            ],
            PresetArg::Test => vec![BenchPreset::test()],
        }
    }
}

/// `--only`'s step names.
fn only_steps(only: &[String]) -> Result<Vec<BenchStep>> {
    only.iter()
        .map(|s| {
            BenchStep::from_name(s).with_context(|| {
                let names: Vec<_> = BenchStep::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "--only: unknown step `{s}`, expected one of {}",
                    names.join(", ")
                )
            })
        })
        .collect()
}

fn settings(args: &BenchArgs, only: Vec<BenchStep>) -> Settings {
    Settings::new(args.iters, args.warmup, args.steps)
        .with_only(only)
        .with_precision(args.precision)
}

fn device_name(d: DeviceArg) -> String {
    match d {
        DeviceArg::Cpu => "cpu".into(),
        DeviceArg::Cuda(n) => format!("cuda:{n}"),
        DeviceArg::Wgpu => "wgpu".into(),
    }
}

/// `--config`'s model as a preset (named `config`) at the config's batch size, and the
/// config's PGD length.
fn config_preset(path: &std::path::Path) -> Result<(BenchPreset, usize)> {
    let config = advsoup_train::TrainConfig::load(path, &[])?;
    let preset = BenchPreset {
        name: "config",
        model: "config",
        vit: config.vit()?,
        batch: config.optim.batch_size,
        train: true,
    };
    Ok((preset, config.attack.train.num_steps))
}

/// The harness's plan: presets sized for the device, memory children on the CPU only (and
/// only for named presets: a child is started with `--preset NAME`).
fn plan(args: &BenchArgs, settings: Settings, config: Option<BenchPreset>) -> Result<SuitePlan> {
    if args.batch == Some(0) {
        bail!("--batch must be > 0");
    }
    if let Some(preset) = config {
        return Ok(SuitePlan {
            presets: vec![preset],
            batch: args.batch,
            settings,
            memory: None,
        });
    }
    // vitb16 trains only where there is a GPU; host memory (VmHWM) means something on cpu only.
    let gpu = matches!(args.device, DeviceArg::Cuda(_) | DeviceArg::Wgpu);
    let memory = if args.no_memory || gpu {
        None
    } else {
        Some(MemoryPlan {
            exe: std::env::current_exe().context("locating the advsoup binary")?,
            device: device_name(args.device),
            steps: args.memory_steps.clone(),
        })
    };
    Ok(SuitePlan {
        presets: args.preset.presets(gpu),
        batch: args.batch,
        settings,
        memory,
    })
}

fn bench_cpu(plan: &SuitePlan) -> Result<BenchReport> {
    Ok(advsoup_bench::run_suite::<Autodiff<Flex>>(
        plan,
        &Default::default(),
        "flex-cpu",
    )?)
}

#[cfg(feature = "cuda")]
fn bench_cuda(plan: &SuitePlan, n: usize) -> Result<BenchReport> {
    use burn::backend::Cuda;
    let device = burn::backend::cuda::CudaDevice::new(n);
    crate::probe_cuda(&device)?;
    Ok(advsoup_bench::run_suite::<Autodiff<Cuda>>(
        plan,
        &device,
        &format!("cuda:{n}"),
    )?)
}

#[cfg(not(feature = "cuda"))]
fn bench_cuda(_: &SuitePlan, _: usize) -> Result<BenchReport> {
    bail!(
        "--device cuda: this advsoup was built without the `cuda` feature (cargo build --features cuda)"
    )
}

/// `--memory-child K`: one PGD-K attack of the one preset, its memory record printed as JSON.
fn memory_child(args: &BenchArgs, k: usize, settings: &Settings) -> Result<()> {
    let [p] = args.preset.presets(false).try_into().map_err(|_| {
        anyhow::anyhow!(
            "--memory-child takes one preset, not {}",
            args.preset.name()
        )
    })?;
    let n = args.batch.unwrap_or(p.batch);
    let record = match args.device {
        DeviceArg::Cpu => {
            advsoup_bench::memory_child::<Autodiff<Flex>>(&p, n, k, settings, &Default::default())?
        }
        DeviceArg::Cuda(_) | DeviceArg::Wgpu => {
            bail!("--memory-child measures host memory: use --device cpu")
        }
    };
    println!("{}", serde_json::to_string(&record)?);
    Ok(())
}

/// Runs the benchmarks.
pub fn run(mut args: BenchArgs) -> Result<()> {
    let only = only_steps(&args.only)?;
    if args.quick {
        args.preset = PresetArg::Test;
        args.iters = 1;
        args.warmup = 0;
        args.steps = 2;
    }
    let config = match &args.config {
        Some(path) => {
            let (preset, steps) = config_preset(path)?;
            args.steps = steps;
            Some(preset)
        }
        None => None,
    };
    let settings = settings(&args, only);
    if let Some(k) = args.memory_child {
        return memory_child(&args, k, &settings);
    }
    let plan = plan(&args, settings, config)?;
    let report = match args.device {
        DeviceArg::Cpu => bench_cpu(&plan)?,
        DeviceArg::Cuda(n) => bench_cuda(&plan, n)?,
        DeviceArg::Wgpu => crate::gpu::bench_wgpu(&plan)?,
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
    fn config_benches_its_model_at_its_batch_and_pgd_length() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let fmnist = format!("{root}/configs/fmnist-cls.toml");
        let (p, k) = config_preset(std::path::Path::new(&fmnist)).expect("config");
        let preset = BenchPreset::fmnist();
        assert_eq!(p.vit.patch_size, preset.vit.patch_size);
        assert_eq!(p.vit.embed_dim, preset.vit.embed_dim);
        assert_eq!((p.vit.depth, p.batch, k), (preset.vit.depth, 128, 2));

        let dir = tempfile::tempdir().expect("tempdir");
        let json = dir.path().join("out.json");
        let tiny = format!("{root}/crates/train/fixtures/tiny.toml");
        let args = [
            "--config",
            &tiny,
            "--iters",
            "1",
            "--warmup",
            "0",
            "--only",
            "co_training_step",
            "--json",
            json.to_str().expect("utf-8"),
        ];
        run(parse(&args)).expect("bench runs");
        let report: BenchReport =
            serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("report");
        let tiny = advsoup_train::TrainConfig::load(std::path::Path::new(&tiny), &[])
            .expect("tiny config");
        let p = &report.presets[0];
        assert_eq!((p.preset.as_str(), p.memory.len()), ("config", 0));
        assert_eq!(p.pgd_steps, tiny.attack.train.num_steps);
        assert_eq!(p.records[0].batch, tiny.optim.batch_size);
        let bad = Cli::try_parse_from(["advsoup", "bench", "--config", "x", "--preset", "test"]);
        assert!(bad.is_err(), "--config and --preset conflict");
    }

    #[test]
    fn memory_child_arguments_parse_back() {
        // The harness starts the child with these arguments; they must select one preset.
        for name in BenchPreset::NAMES {
            let args =
                advsoup_bench::child::child_args(name, 3, "cpu", advsoup_vit::Precision::Bf16, 20);
            let mut all = vec!["advsoup"];
            all.extend(args.iter().map(String::as_str));
            let Command::Bench(b) = Cli::try_parse_from(all).expect("parses").command else {
                panic!("not bench")
            };
            let [p] = b.preset.presets(false).try_into().expect("one preset");
            assert_eq!(p.name, name);
            assert_eq!((b.batch, b.memory_child), (Some(3), Some(20)));
            assert_eq!(
                (b.device, b.precision),
                (DeviceArg::Cpu, advsoup_vit::Precision::Bf16)
            );
        }
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
        let err = run(parse(&["--quick", "--only", "backward"])).expect_err("unknown step");
        assert_eq!(
            format!("{err:#}"),
            "--only: unknown step `backward`, expected one of forward, train_step, pgd_step, co_training_step"
        );
        assert!(!PresetArg::Vitb16.presets(false)[0].train);
        assert!(PresetArg::Vitb16.presets(true)[0].train);
        let bad = Cli::try_parse_from(["advsoup", "bench", "--preset", "huge"]);
        assert!(bad.is_err());
        let err = run(parse(&["--quick", "--batch", "0"])).expect_err("batch 0");
        assert_eq!(format!("{err:#}"), "--batch must be > 0");
        let err = run(parse(&["--preset", "all", "--memory-child", "1"])).expect_err("all");
        assert_eq!(
            format!("{err:#}"),
            "--memory-child takes one preset, not all"
        );
    }
}
