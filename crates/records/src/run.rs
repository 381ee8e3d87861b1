//! The records of one training run directory (`advsoup train`): `run.json` ([`RunMeta`]),
//! `metrics.jsonl` (one [`EpochMetrics`] per line), `checkpoint/state.json`
//! ([`CheckpointState`]) and `final.json` ([`FinalReport`], whose [`FinalReport::table`] is
//! `final.md`).

use serde::{Deserialize, Serialize};

/// `run.json`: how the run was started. Written once, before training.
///
/// The fields are in alphabetical order because the writer built the file with
/// `serde_json::json!`, whose map sorts its keys: this order keeps the bytes identical.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// Gradient accumulation steps per optimizer step.
    pub accumulation: usize,
    /// The burn backend's type name.
    pub backend: String,
    /// burn's version (`0.21.0`).
    pub burn: String,
    /// The CPU of the machine that last started (or resumed) the run; absent in runs written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuInfo>,
    /// Devices (processes) of the run, all nodes together.
    pub devices: usize,
    /// The git revision of the code, when known.
    pub git_revision: Option<String>,
    /// Images per optimizer step, all devices and accumulation steps together.
    pub global_batch: usize,
    /// Nodes (machines).
    pub nodes: usize,
    /// The run's seed.
    pub seed: u64,
}

/// A machine's CPU as far as it decides a run's numbers: burn's CPU matmul (gemm) and
/// advsoup's fused kernels pick their SIMD path at run time (AVX-512, AVX2+FMA, NEON or
/// scalar), and each path rounds differently. A run is reproducible bit for bit on a CPU with
/// the same `arch` and `simd`; on another it computes the same functions with other rounding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// `std::env::consts::ARCH` (`x86_64`, `aarch64`).
    pub arch: String,
    /// The model name the operating system reports, when it does (Linux `/proc/cpuinfo`).
    pub model: Option<String>,
    /// The SIMD extensions detected at run time that those kernels dispatch on, in a fixed order.
    pub simd: Vec<String>,
}

impl CpuInfo {
    /// Whether `other` takes the same SIMD paths (the model name aside), so that the same run
    /// gives the same bits on both.
    pub fn same_paths(&self, other: &Self) -> bool {
        self.arch == other.arch && self.simd == other.simd
    }

    /// `x86_64 avx2+fma+avx512f (Intel(R) Xeon(R) Processor)`: one line for logs and reports.
    pub fn summary(&self) -> String {
        let simd = if self.simd.is_empty() {
            "no SIMD".to_string()
        } else {
            self.simd.join("+")
        };
        match &self.model {
            Some(m) => format!("{} {simd} ({m})", self.arch),
            None => format!("{} {simd}", self.arch),
        }
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch (1-based, completed).
    pub epoch: usize,
    /// Optimizer steps so far.
    pub step: usize,
    /// Mean training loss over the epoch.
    pub loss: f64,
    /// Held-out clean accuracy in clean mode.
    pub clean_acc: f64,
    /// Held-out robust accuracy in robust mode under the eval PGD.
    pub robust_acc: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Training images per second (counting both halves of a mixed batch once).
    pub images_per_s: f64,
    /// f16 runs: the loss scale at the end of the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// f16 runs: steps skipped for overflowing gradients so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<usize>,
}

/// `checkpoint/state.json`: where training stands, saved with each checkpoint (what a
/// resumed run continues from).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Completed epochs.
    pub epoch: usize,
    /// Optimizer steps into the current epoch.
    pub step_in_epoch: usize,
    /// Optimizer steps in all.
    pub global_step: usize,
    /// Sum of the current epoch's step losses so far.
    pub loss_sum: f64,
    /// Steps in `loss_sum`.
    pub loss_count: usize,
    /// Training wall time so far (s).
    pub train_seconds: f64,
    /// The completed epochs' metrics.
    pub epochs: Vec<EpochMetrics>,
    /// f16 loss scaling: the current scale (`None` when the precision needs none).
    #[serde(default)]
    pub loss_scale: Option<f64>,
    /// Finite steps in a row at the current scale.
    #[serde(default)]
    pub finite_steps: usize,
    /// Steps skipped for non-finite scaled gradients, in all.
    #[serde(default)]
    pub skipped_steps: usize,
}

/// Accuracy of both modes on one distribution-shift test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftResult {
    /// `name` or `name/corruption/severity`.
    pub name: String,
    /// Samples.
    pub n: usize,
    /// Classes present (logits of the others are masked when fewer than the model's).
    pub classes: usize,
    /// Top-1 of the clean mode.
    pub clean_mode_acc: f64,
    /// Top-1 of the robust mode.
    pub robust_mode_acc: f64,
}

/// `final.json`: the final table, on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    /// Test samples for clean accuracy.
    pub n_clean: usize,
    /// Test samples attacked.
    pub n_robust: usize,
    /// Attack preset.
    pub attack: String,
    /// ε.
    pub eps: f64,
    /// Clean accuracy of the clean mode.
    pub clean_mode_clean_acc: f64,
    /// Clean accuracy of the robust mode.
    pub robust_mode_clean_acc: f64,
    /// Robust accuracy of the clean mode.
    pub clean_mode_robust_acc: f64,
    /// Robust accuracy of the robust mode.
    pub robust_mode_robust_acc: f64,
    /// Training wall time in seconds (this process and resumed ones).
    pub train_seconds: f64,
    /// Seed.
    pub seed: u64,
    /// Distribution-shift test sets (`eval.shifts`), both modes.
    #[serde(default)]
    pub shifts: Vec<ShiftResult>,
    /// The same evaluation of the EMA weights (`optim.ema_decay > 0`), which timm-style
    /// recipes report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<Box<FinalReport>>,
}

impl FinalReport {
    /// A small markdown table (`final.md`).
    pub fn table(&self) -> String {
        format!(
            "| mode | clean acc (n={}) | robust acc {} eps={} (n={}) |\n|---|---|---|\n| clean | {:.2}% | {:.2}% |\n| robust | {:.2}% | {:.2}% |\n",
            self.n_clean,
            self.attack,
            self.eps,
            self.n_robust,
            100.0 * self.clean_mode_clean_acc,
            100.0 * self.clean_mode_robust_acc,
            100.0 * self.robust_mode_clean_acc,
            100.0 * self.robust_mode_robust_acc,
        ) + &self.shift_table()
            + &self
                .ema
                .as_ref()
                .map(|e| format!("\nEMA weights:\n\n{}", e.table()))
                .unwrap_or_default()
    }

    fn shift_table(&self) -> String {
        if self.shifts.is_empty() {
            return String::new();
        }
        let mut t = String::from(
            "\n| shifted set | n | classes | clean mode | robust mode |\n|---|---|---|---|---|\n",
        );
        for s in &self.shifts {
            t += &format!(
                "| {} | {} | {} | {:.2}% | {:.2}% |\n",
                s.name,
                s.n,
                s.classes,
                100.0 * s.clean_mode_acc,
                100.0 * s.robust_mode_acc
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> FinalReport {
        FinalReport {
            n_clean: 100,
            n_robust: 50,
            attack: "pgd-20".into(),
            eps: 0.1,
            clean_mode_clean_acc: 0.9,
            robust_mode_clean_acc: 0.8,
            clean_mode_robust_acc: 0.0,
            robust_mode_robust_acc: 0.625,
            train_seconds: 12.5,
            seed: 7,
            shifts: vec![ShiftResult {
                name: "c/contrast/3".into(),
                n: 10,
                classes: 10,
                clean_mode_acc: 0.5,
                robust_mode_acc: 0.4,
            }],
            ema: None,
        }
    }

    #[test]
    fn final_json_as_train_writes_it_round_trips_byte_for_byte() {
        // train writes final.json with serde_json::to_vec_pretty
        let text = r#"{
  "n_clean": 100,
  "n_robust": 50,
  "attack": "pgd-20",
  "eps": 0.1,
  "clean_mode_clean_acc": 0.9,
  "robust_mode_clean_acc": 0.8,
  "clean_mode_robust_acc": 0.0,
  "robust_mode_robust_acc": 0.625,
  "train_seconds": 12.5,
  "seed": 7,
  "shifts": [
    {
      "name": "c/contrast/3",
      "n": 10,
      "classes": 10,
      "clean_mode_acc": 0.5,
      "robust_mode_acc": 0.4
    }
  ]
}"#;
        let parsed: FinalReport = serde_json::from_str(text).expect("parse");
        assert_eq!(parsed, report());
        assert_eq!(serde_json::to_string_pretty(&parsed).expect("json"), text);
        let mut with_ema = report();
        with_ema.ema = Some(Box::new(report()));
        let back: FinalReport =
            serde_json::from_str(&serde_json::to_string(&with_ema).expect("json")).expect("parse");
        assert_eq!(back, with_ema);
        // files written before `shifts` existed still parse
        let old = r#"{"n_clean":1,"n_robust":1,"attack":"a","eps":0.1,"clean_mode_clean_acc":1,
            "robust_mode_clean_acc":1,"clean_mode_robust_acc":0,"robust_mode_robust_acc":0,
            "train_seconds":1,"seed":0}"#;
        let old: FinalReport = serde_json::from_str(old).expect("old file");
        assert!(old.shifts.is_empty() && old.ema.is_none());
    }

    #[test]
    fn final_md_table() {
        let t = report().table();
        assert!(
            t.starts_with("| mode | clean acc (n=100) | robust acc pgd-20 eps=0.1 (n=50) |"),
            "{t}"
        );
        assert!(t.contains("| clean | 90.00% | 0.00% |"), "{t}");
        assert!(t.contains("| robust | 80.00% | 62.50% |"), "{t}");
        assert!(
            t.contains("| c/contrast/3 | 10 | 10 | 50.00% | 40.00% |"),
            "{t}"
        );
        let mut with_ema = report();
        with_ema.ema = Some(Box::new(report()));
        assert!(with_ema.table().contains("\nEMA weights:\n\n| mode |"));
    }

    #[test]
    fn metrics_lines_round_trip_and_skip_absent_f16_fields() {
        let line = r#"{"epoch":1,"step":10,"loss":2.25,"clean_acc":0.5,"robust_acc":0.25,"lr":0.001,"images_per_s":120.5}"#;
        let m: EpochMetrics = serde_json::from_str(line).expect("parse");
        assert_eq!(m.loss_scale, None);
        assert_eq!(serde_json::to_string(&m).expect("json"), line);
        let f16 = r#"{"epoch":2,"step":20,"loss":1.5,"clean_acc":0.5,"robust_acc":0.25,"lr":0.001,"images_per_s":120.5,"loss_scale":65536.0,"skipped_steps":3}"#;
        let m: EpochMetrics = serde_json::from_str(f16).expect("parse");
        assert_eq!(m.skipped_steps, Some(3));
        assert_eq!(serde_json::to_string(&m).expect("json"), f16);
    }

    #[test]
    fn run_json_matches_the_json_macro_writer() {
        // train writes run.json as serde_json::json!({...}).to_string(): keys sorted
        let written = serde_json::json!({
            "seed": 3u64,
            "git_revision": Option::<String>::None,
            "burn": "0.21.0",
            "backend": "B",
            "devices": 2usize,
            "nodes": 1usize,
            "global_batch": 64usize,
            "accumulation": 1usize,
        })
        .to_string();
        let meta: RunMeta = serde_json::from_str(&written).expect("parse");
        assert_eq!(meta.devices, 2);
        assert_eq!(meta.git_revision, None);
        assert_eq!(serde_json::to_string(&meta).expect("json"), written);
        let with_rev = RunMeta {
            git_revision: Some("abc".into()),
            ..meta
        };
        let back: RunMeta =
            serde_json::from_str(&serde_json::to_string(&with_rev).expect("json")).expect("parse");
        assert_eq!(back, with_rev);
    }

    #[test]
    fn run_json_records_the_cpu_and_compares_its_simd_paths() {
        let written = r#"{"accumulation":1,"backend":"B","burn":"0.21.0","cpu":{"arch":"x86_64","model":"Xeon","simd":["avx2","fma","avx512f"]},"devices":1,"git_revision":null,"global_batch":64,"nodes":1,"seed":0}"#;
        let meta: RunMeta = serde_json::from_str(written).expect("parse");
        assert_eq!(serde_json::to_string(&meta).expect("json"), written);
        let cpu = meta.cpu.expect("cpu");
        assert_eq!(cpu.summary(), "x86_64 avx2+fma+avx512f (Xeon)");
        let renamed = CpuInfo {
            model: Some("Other".into()),
            ..cpu.clone()
        };
        assert!(
            cpu.same_paths(&renamed),
            "the model name does not change the bits"
        );
        let no_avx512 = CpuInfo {
            simd: vec!["avx2".into(), "fma".into()],
            ..cpu.clone()
        };
        assert!(!cpu.same_paths(&no_avx512));
        assert_eq!(
            CpuInfo {
                model: None,
                simd: vec![],
                ..cpu
            }
            .summary(),
            "x86_64 no SIMD"
        );
    }

    #[test]
    fn checkpoint_state_round_trips_and_old_states_parse() {
        let state = CheckpointState {
            epoch: 1,
            step_in_epoch: 2,
            global_step: 12,
            loss_sum: 4.5,
            loss_count: 2,
            train_seconds: 3.25,
            epochs: vec![],
            loss_scale: Some(1024.0),
            finite_steps: 5,
            skipped_steps: 1,
        };
        let text = serde_json::to_string_pretty(&state).expect("json");
        assert_eq!(
            serde_json::from_str::<CheckpointState>(&text).expect("parse"),
            state
        );
        let old = r#"{"epoch":0,"step_in_epoch":3,"global_step":3,"loss_sum":6.0,
            "loss_count":3,"train_seconds":1.0,"epochs":[]}"#;
        let old: CheckpointState = serde_json::from_str(old).expect("old state");
        assert_eq!(
            (old.global_step, old.loss_scale, old.finite_steps),
            (3, None, 0)
        );
    }
}
