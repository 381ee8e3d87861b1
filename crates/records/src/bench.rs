//! The records of `advsoup bench --json` (and of `crates/bench/reference/torch_bench.py`,
//! which writes the same shape): a [`BenchReport`] of [`PresetReport`]s, each holding the
//! throughput [`BenchRecord`]s of its steps and the peak [`MemoryRecord`]s of its attacks.
//! `cargo xtask bench` joins two reports by (preset, step).

use serde::{Deserialize, Serialize};

/// One measured quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRecord {
    /// What was measured (e.g. `co_training_step`).
    pub name: String,
    /// Images per call.
    pub batch: usize,
    /// Measured calls.
    pub iters: usize,
    /// Mean seconds per call.
    pub seconds_per_iter: f64,
    /// `batch / seconds_per_iter`.
    pub images_per_s: f64,
    /// Seconds of the very first call (warm-up included): on a JIT backend (CUDA) it holds the
    /// kernel compilation that the measured calls no longer pay.
    #[serde(default)]
    pub first_call_seconds: f64,
}

/// A table of records: name, batch, steady images/s (the measured calls), the steady seconds
/// per call, and the first call's seconds (on a GPU backend, kernel compilation and autotuning
/// are in it), so that first-call and steady-state figures are read separately.
pub fn table(records: &[BenchRecord]) -> String {
    let mut s = String::from(
        "| step | batch | images/s | s/call (steady) | first call s |\n|---|---|---|---|---|\n",
    );
    for r in records {
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.4} | {:.3} |\n",
            r.name, r.batch, r.images_per_s, r.seconds_per_iter, r.first_call_seconds
        ));
    }
    s
}

/// Peak memory of one measured computation, in MiB (2^20 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryRecord {
    /// What was measured (e.g. `pgd`).
    pub name: String,
    /// Attack steps K (or another size parameter of the computation).
    pub steps: usize,
    /// Resident set just before the computation (model and inputs built).
    pub rss_before_mib: f64,
    /// Peak resident set of the whole process after the computation.
    pub peak_rss_mib: f64,
}

impl MemoryRecord {
    /// Growth of the peak over the resident set before the computation.
    pub fn delta_mib(&self) -> f64 {
        self.peak_rss_mib - self.rss_before_mib
    }
}

/// A table of memory records (name, K, RSS before, peak, growth).
pub fn memory_table(records: &[MemoryRecord]) -> String {
    let mut s = String::from(
        "| what | K | RSS before (MiB) | peak RSS (MiB) | growth (MiB) |\n|---|---|---|---|---|\n",
    );
    for r in records {
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |\n",
            r.name,
            r.steps,
            r.rss_before_mib,
            r.peak_rss_mib,
            r.delta_mib()
        ));
    }
    s
}

/// A whole benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// `advsoup` (or `torch` for the reference).
    pub tool: String,
    /// Backend and device (e.g. `flex-cpu`).
    pub device: String,
    /// CPU threads the backend used.
    pub threads: usize,
    /// The machine's CPU (its SIMD extensions decide which CPU kernels run); absent in reports
    /// written before it was recorded and in the PyTorch reference's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<crate::run::CpuInfo>,
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
    /// The preset named `preset`, if measured.
    pub fn preset(&self, preset: &str) -> Option<&PresetReport> {
        self.presets.iter().find(|p| p.preset == preset)
    }

    /// Images/s of `step` in `preset`, if measured.
    pub fn rate(&self, preset: &str, step: &str) -> Option<f64> {
        self.preset(preset)?
            .records
            .iter()
            .find(|r| r.name == step)
            .map(|r| r.images_per_s)
    }

    /// The memory record of `preset` at attack length `k`, if measured.
    pub fn memory(&self, preset: &str, k: usize) -> Option<&MemoryRecord> {
        self.preset(preset)?.memory.iter().find(|m| m.steps == k)
    }

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
            table(&records)
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

    fn report() -> BenchReport {
        let rec = |name: &str| BenchRecord {
            name: name.into(),
            batch: 4,
            iters: 1,
            seconds_per_iter: 0.5,
            images_per_s: 8.0,
            first_call_seconds: 0.5,
        };
        BenchReport {
            tool: "advsoup".into(),
            device: "flex-cpu".into(),
            threads: 2,
            cpu: Some(crate::run::CpuInfo {
                arch: "x86_64".into(),
                model: Some("Xeon".into()),
                simd: vec!["avx2".into(), "avx512f".into()],
            }),
            presets: vec![PresetReport {
                preset: "tiny32".into(),
                model: "vit_tiny_patch4_32".into(),
                batch: 4,
                pgd_steps: 3,
                eps: 0.25,
                step_size: 0.125,
                records: vec![rec("forward"), rec("co_training_step")],
                memory: vec![MemoryRecord {
                    name: "pgd".into(),
                    steps: 20,
                    rss_before_mib: 100.0,
                    peak_rss_mib: 110.0,
                }],
            }],
        }
    }

    #[test]
    fn render_prefixes_presets_and_names_k() {
        let text = report().render();
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

    #[test]
    fn lookups_join_by_preset_step_and_k() {
        let r = report();
        assert_eq!(r.rate("tiny32", "forward"), Some(8.0));
        assert_eq!(r.rate("tiny32", "pgd_step"), None);
        assert_eq!(r.rate("vitb16", "forward"), None);
        assert_eq!(
            r.memory("tiny32", 20).map(MemoryRecord::delta_mib),
            Some(10.0)
        );
        assert!(r.memory("tiny32", 1).is_none());
    }

    /// `advsoup bench --json` writes `to_string_pretty`; the torch reference (Python
    /// `json.dump`) may omit `first_call_seconds`.
    #[test]
    fn bench_json_round_trips_and_the_torch_shape_parses() {
        let text = serde_json::to_string_pretty(&report()).expect("json");
        let back: BenchReport = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, report());
        assert_eq!(serde_json::to_string_pretty(&back).expect("json"), text);
        let torch = r#"{"tool": "torch", "device": "cpu", "threads": 2, "presets": [
            {"preset": "tiny32", "model": "vit_tiny_patch4_32", "batch": 4, "pgd_steps": 3,
             "eps": 0.03137254901960784, "step_size": 0.00784313725490196,
             "records": [{"name": "forward", "batch": 4, "iters": 3,
                          "seconds_per_iter": 0.1, "images_per_s": 40.0}],
             "memory": []}]}"#;
        let t: BenchReport = serde_json::from_str(torch).expect("torch report");
        assert_eq!(t.cpu, None, "the reference names no CPU");
        assert_eq!(t.presets[0].records[0].first_call_seconds, 0.0);
        assert_eq!(t.rate("tiny32", "forward"), Some(40.0));
    }
}
