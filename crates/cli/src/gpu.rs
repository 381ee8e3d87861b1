//! The GPU backends' settings: CubeCL's compiled-kernel cache, autotune cache and compile log,
//! and training on burn's `wgpu` backend.
//!
//! burn's CUDA and wgpu backends share CubeCL's machinery: every distinct kernel (operation,
//! shapes' ranks, element types, vectorization, and with fusion each fused block) is compiled
//! the first time it runs (NVRTC to PTX on CUDA, SPIR-V or WGSL to the driver on wgpu), and
//! autotuned operations (matmul, reductions) time their candidate kernels once per shape key.
//! On a lent H200 this took every minute of the first steps (crates/bench/README.md). Two
//! global flags make those minutes count once:
//!
//! - `--kernel-cache DIR`: compiled kernels (CUDA PTX; SPIR-V under the `vulkan` feature) and
//!   autotune results are kept under `DIR`, so a second run on a machine of the same kind (same
//!   GPU and driver) skips both. Without it, `cubecl.toml` in the working directory (or a
//!   parent) decides; the repository's own puts both under `target/`.
//! - `--kernel-log FILE`: one line `[Compiling kernel] <name>` per compiled kernel (CubeCL's
//!   basic compilation log) and autotune's choices, appended to `FILE`; `wc -l` counts kernels.
//!
//! Both must be set before the device is first used: CubeCL reads its configuration once per
//! process.
use std::path::PathBuf;

use anyhow::Result;

/// `--kernel-cache` and `--kernel-log` (global: any command that computes on a GPU).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KernelArgs {
    /// GPU backends: keep compiled kernels and autotune results in DIR and reuse them in later
    /// runs (same GPU and driver). Overrides cubecl.toml's [compilation] cache and [autotune]
    /// cache. Ignored on cpu.
    #[arg(long, global = true, value_name = "DIR")]
    pub kernel_cache: Option<PathBuf>,
    /// GPU backends: append one line per compiled kernel (and autotune's choices) to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    pub kernel_log: Option<PathBuf>,
}

impl KernelArgs {
    /// Applies the settings to CubeCL's process-wide configuration (a no-op when neither flag
    /// is given, or when this advsoup has no GPU backend).
    ///
    /// # Errors
    /// The cache directory cannot be created.
    pub fn apply(&self) -> Result<()> {
        if self.kernel_cache.is_none() && self.kernel_log.is_none() {
            return Ok(());
        }
        if let Some(dir) = &self.kernel_cache {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("--kernel-cache {}: {e}", dir.display()))?;
        }
        apply_cubecl(self);
        Ok(())
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn apply_cubecl(args: &KernelArgs) {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::compilation::CompilationLogLevel;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

    // cubecl.toml and CUBECL_* variables first, then the flags on top.
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    if let Some(dir) = &args.kernel_cache {
        config.compilation.cache = Some(CacheConfig::File(dir.join("kernels")));
        config.autotune.cache = CacheConfig::File(dir.join("autotune"));
    }
    if let Some(file) = &args.kernel_log {
        config.compilation.logger.level = CompilationLogLevel::Basic;
        config.compilation.logger.file = Some(file.clone());
        config.compilation.logger.append = true;
        config.autotune.logger.file = Some(file.clone());
        config.autotune.logger.append = true;
    }
    CubeClRuntimeConfig::set(config);
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn apply_cubecl(_: &KernelArgs) {
    tracing::debug!("--kernel-cache/--kernel-log: no GPU backend in this build; ignored");
}

/// The wgpu device `--device wgpu` names, checked with one small computation.
///
/// # Errors
/// No adapter (GPU or software driver) is usable.
#[cfg(feature = "wgpu")]
pub fn wgpu_device() -> Result<burn::backend::wgpu::WgpuDevice> {
    use burn::backend::Wgpu;
    use burn::prelude::*;
    let device = burn::backend::wgpu::WgpuDevice::default();
    let d = device.clone();
    let ok = std::panic::catch_unwind(move || {
        Tensor::<Wgpu, 1>::ones([2], &d)
            .sum()
            .into_scalar()
            .elem::<f32>()
    });
    match ok {
        Ok(2.0) => Ok(device),
        _ => anyhow::bail!(
            "--device wgpu: no usable wgpu adapter (no Vulkan/Metal/DX12 driver; Mesa's \
             software driver comes with the mesa-vulkan-drivers package)"
        ),
    }
}

#[cfg(not(feature = "wgpu"))]
fn no_wgpu<T>() -> Result<T> {
    anyhow::bail!(
        "--device wgpu: this advsoup was built without the `wgpu` feature (cargo build --features wgpu)"
    )
}

/// Trains on burn's wgpu backend (one device).
#[cfg(feature = "wgpu")]
pub fn train_wgpu(
    config: &advsoup_train::TrainConfig,
    splits: &advsoup_data::Splits,
    options: &advsoup_train::RunOptions,
    topology: &advsoup_train::Topology,
) -> Result<advsoup_train::RunSummary> {
    use burn::backend::{Autodiff, Wgpu};
    if topology.world() > 1 {
        anyhow::bail!("--devices/--nodes: --device wgpu trains on one device");
    }
    let device = wgpu_device()?;
    crate::train_on::<Autodiff<Wgpu>>(config, splits, options, &[device], topology)
}

/// Without the `wgpu` feature: the one line saying how to build it.
#[cfg(not(feature = "wgpu"))]
pub fn train_wgpu(
    _: &advsoup_train::TrainConfig,
    _: &advsoup_data::Splits,
    _: &advsoup_train::RunOptions,
    _: &advsoup_train::Topology,
) -> Result<advsoup_train::RunSummary> {
    no_wgpu()
}

/// The bench suite on burn's wgpu backend.
#[cfg(feature = "wgpu")]
pub fn bench_wgpu(plan: &advsoup_bench::SuitePlan) -> Result<advsoup_bench::suite::BenchReport> {
    use burn::backend::{Autodiff, Wgpu};
    let device = wgpu_device()?;
    Ok(advsoup_bench::run_suite::<Autodiff<Wgpu>>(
        plan, &device, "wgpu",
    )?)
}

/// Without the `wgpu` feature: the one line saying how to build it.
#[cfg(not(feature = "wgpu"))]
pub fn bench_wgpu(_: &advsoup_bench::SuitePlan) -> Result<advsoup_bench::suite::BenchReport> {
    no_wgpu()
}
