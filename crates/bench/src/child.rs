//! PGD peak memory, one fresh process per attack length, so K = 1 and K = 20 start from the
//! same state (a peak is only comparable between runs that start alike: [`crate::memory`]).
//!
//! The contract with the binary: the parent runs
//! `<exe> bench --preset P --batch N --device D --precision X --memory-child K` ([`child_args`]);
//! the child (the cli, calling [`memory_child`]) runs one PGD-K attack as training crafts it and
//! prints its [`MemoryRecord`] as one JSON line, the last line of its stdout.

use std::path::PathBuf;

use advsoup_train::step::{StepConfig, craft};
use burn::tensor::backend::AutodiffBackend;

use crate::BenchError;
use crate::harness::{Settings, batch, model, settle};
use crate::memory::{self, MemoryRecord};
use crate::presets::BenchPreset;

/// How to start the memory children.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// The `advsoup` binary (the running one: `std::env::current_exe()`).
    pub exe: PathBuf,
    /// The child's `--device` (`cpu`: the peak is the host process's).
    pub device: String,
    /// Attack lengths K, one child each.
    pub steps: Vec<usize>,
}

/// The arguments a memory child is started with (after the binary).
pub fn child_args(
    preset: &str,
    batch: usize,
    device: &str,
    precision: advsoup_vit::Precision,
    steps: usize,
) -> Vec<String> {
    [
        "bench",
        "--preset",
        preset,
        "--batch",
        &batch.to_string(),
        "--device",
        device,
        "--precision",
        precision.name(),
        "--memory-child",
        &steps.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// Runs one memory child for preset `p` at batch `n`, attack length `k` and compute precision
/// `precision`, and reads back its record.
pub fn spawn_memory_child(
    plan: &MemoryPlan,
    precision: advsoup_vit::Precision,
    p: &BenchPreset,
    n: usize,
    k: usize,
) -> Result<MemoryRecord, BenchError> {
    let out = std::process::Command::new(&plan.exe)
        .args(child_args(p.name, n, &plan.device, precision, k))
        .output()
        .map_err(|source| BenchError::Spawn {
            exe: plan.exe.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(BenchError::ChildFailed {
            steps: k,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    parse_child_output(&String::from_utf8_lossy(&out.stdout))
}

/// The record on the last line of a memory child's stdout.
pub fn parse_child_output(stdout: &str) -> Result<MemoryRecord, BenchError> {
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|source| BenchError::ChildOutput {
        line: line.to_string(),
        source,
    })
}

/// The child's work: one PGD-K attack as training crafts it, with the resident set before and
/// the peak after.
pub fn memory_child<B: AutodiffBackend>(
    p: &BenchPreset,
    n: usize,
    k: usize,
    o: &Settings,
    device: &B::Device,
) -> Result<MemoryRecord, BenchError> {
    let model = model::<B>(p, device)?;
    let batch = batch::<B>(p, n, device);
    let attack = StepConfig::new(0.5, &o.pgd(k))?.attack;
    let before = memory::rss_bytes().ok_or(BenchError::ProcStatus { field: "VmRSS" })?;
    settle(craft(&o.precision.cast(model), &attack, &batch));
    let peak = memory::peak_rss_bytes().ok_or(BenchError::ProcStatus { field: "VmHWM" })?;
    Ok(MemoryRecord {
        name: "pgd".into(),
        steps: k,
        rss_before_mib: memory::mib(before),
        peak_rss_mib: memory::mib(peak),
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};

    use super::*;

    #[test]
    fn memory_child_reports_a_peak() {
        let p = BenchPreset::test();
        let o = Settings::new(1, 0, 2);
        let r = memory_child::<Autodiff<Flex>>(&p, 2, 3, &o, &Default::default())
            .expect("memory record");
        assert_eq!((r.name.as_str(), r.steps), ("pgd", 3));
        assert!(
            r.rss_before_mib > 0.0 && r.peak_rss_mib >= r.rss_before_mib,
            "{r:?}"
        );
    }

    #[test]
    fn child_arguments_and_output() {
        let args = child_args("tiny32", 64, "cpu", advsoup_vit::Precision::Bf16, 20);
        assert_eq!(
            args.join(" "),
            "bench --preset tiny32 --batch 64 --device cpu --precision bf16 --memory-child 20"
        );
        let r = parse_child_output(
            "noise\n{\"name\":\"pgd\",\"steps\":1,\"rss_before_mib\":1.0,\"peak_rss_mib\":2.0}",
        )
        .expect("a record");
        assert_eq!((r.steps, r.delta_mib()), (1, 1.0));
        let err = parse_child_output("oops\n").expect_err("not json");
        assert!(err.to_string().starts_with("memory child printed `oops`"));
    }

    #[test]
    fn a_missing_or_failing_child_is_an_error() {
        let plan = MemoryPlan {
            exe: "/nonexistent/advsoup".into(),
            device: "cpu".into(),
            steps: vec![1],
        };
        let f32 = advsoup_vit::Precision::F32;
        let err =
            spawn_memory_child(&plan, f32, &BenchPreset::test(), 2, 1).expect_err("no binary");
        assert!(
            err.to_string().starts_with("running /nonexistent/advsoup"),
            "{err}"
        );
        // `false` ignores its arguments and exits 1.
        let plan = MemoryPlan {
            exe: "false".into(),
            ..plan
        };
        let err = spawn_memory_child(&plan, f32, &BenchPreset::test(), 2, 1).expect_err("exit 1");
        assert_eq!(err.to_string(), "memory child (K = 1) failed: ");
    }
}
