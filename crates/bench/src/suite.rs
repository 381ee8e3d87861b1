//! The report of a benchmark suite: per preset, the throughput records of its steps and the peak
//! memory of its attacks. `advsoup bench --json` and `crates/bench/reference/torch_bench.py`
//! write this same shape, so `cargo xtask bench` can join them by (preset, step).

use serde::{Deserialize, Serialize};

use crate::BenchRecord;
use crate::memory::{MemoryRecord, memory_table};

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// `advsoup` (or `torch` for the reference).
    pub tool: String,
    /// Backend and device (e.g. `flex-cpu`).
    pub device: String,
    /// CPU threads the backend used.
    pub threads: usize,
    /// One entry per preset.
    pub presets: Vec<PresetReport>,
}

/// The measurements of one preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresetReport {
    /// Short name (`tiny32`, `vitb16`, `test`).
    pub preset: String,
    /// The model (a timm-style preset name).
    pub model: String,
    /// Images per step.
    pub batch: usize,
    /// PGD steps K of the co-training step.
    pub pgd_steps: usize,
    /// Attack radius (ℓ∞, pixels in [0, 1]).
    pub eps: f64,
    /// PGD step size.
    pub step_size: f64,
    /// Throughput of each measured step (`forward`, `train_step`, `pgd_step`,
    /// `co_training_step`).
    pub records: Vec<BenchRecord>,
    /// PGD peak memory per attack length.
    pub memory: Vec<MemoryRecord>,
}

impl BenchReport {
    /// One throughput table (names prefixed by the preset) and, if measured, one memory table.
    pub fn render(&self) -> String {
        let mut records = Vec::new();
        let mut memory = Vec::new();
        for p in &self.presets {
            for r in &p.records {
                let name = match r.name.as_str() {
                    "co_training_step" => format!("{}/{} (K={})", p.preset, r.name, p.pgd_steps),
                    _ => format!("{}/{}", p.preset, r.name),
                };
                records.push(BenchRecord { name, ..r.clone() });
            }
            for m in &p.memory {
                memory.push(MemoryRecord {
                    name: format!("{}/{} (batch {})", p.preset, m.name, p.batch),
                    ..m.clone()
                });
            }
        }
        let mut s = format!(
            "{} bench ({}, {} threads)\n{}",
            self.tool,
            self.device,
            self.threads,
            crate::table(&records)
        );
        if !memory.is_empty() {
            s.push('\n');
            s.push_str(&memory_table(&memory));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_prefixes_presets_and_names_k() {
        let rec = |name: &str| BenchRecord {
            name: name.into(),
            batch: 4,
            iters: 1,
            seconds_per_iter: 0.5,
            images_per_s: 8.0,
            first_call_seconds: 0.5,
        };
        let report = BenchReport {
            tool: "advsoup".into(),
            device: "flex-cpu".into(),
            threads: 2,
            presets: vec![PresetReport {
                preset: "tiny32".into(),
                model: "vit_tiny_patch4_32".into(),
                batch: 4,
                pgd_steps: 3,
                eps: 8.0 / 255.0,
                step_size: 2.0 / 255.0,
                records: vec![rec("forward"), rec("co_training_step")],
                memory: vec![MemoryRecord {
                    name: "pgd".into(),
                    steps: 20,
                    rss_before_mib: 100.0,
                    peak_rss_mib: 110.0,
                }],
            }],
        };
        let text = report.render();
        assert!(
            text.starts_with("advsoup bench (flex-cpu, 2 threads)"),
            "{text}"
        );
        assert!(text.contains("| tiny32/forward | 4 | 8.0 |"), "{text}");
        assert!(
            text.contains("| tiny32/co_training_step (K=3) | 4 | 8.0 |"),
            "{text}"
        );
        assert!(
            text.contains("| tiny32/pgd (batch 4) | 20 | 100.0 | 110.0 | 10.0 |"),
            "{text}"
        );
    }
}
