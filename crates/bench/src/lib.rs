//! advsoup-bench: the measuring half of evaluation — throughput of a step and the JSON records
//! benchmarks write.
//!
//! [`measure`] times a closure over warm-up and measured iterations and reports images/s;
//! [`BenchRecord`] is the JSON line `cargo xtask bench` writes. It does not decide what is
//! measured (the cli composes the steps from `train`), and never asserts on timings: speed is
//! reported, not tested.
//!
//! [`report`] holds the RobustBench-style report cards of evaluated models (JSON + markdown)
//! and content hashes; it evaluates nothing itself. (Soup sweep records and plots live in
//! `advsoup-soup`.)
//!
//! ```
//! use advsoup_bench::measure;
//! let m = measure("noop", 8, 1, 3, || {});
//! assert_eq!(m.iters, 3);
//! assert!(m.images_per_s > 0.0);
//! ```
#![warn(missing_docs)]

pub mod report;

pub mod memory;
pub mod suite;

use std::time::Instant;

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

/// Runs `f` `warmup` times, then `iters` times, and reports the mean over the latter. Each
/// call's time goes to stderr as it finishes, so a run stopped by a time limit still shows how
/// far it got and what the first (compiling) calls cost.
pub fn measure(
    name: &str,
    batch: usize,
    warmup: usize,
    iters: usize,
    mut f: impl FnMut(),
) -> BenchRecord {
    let iters = iters.max(1);
    let mut first_call_seconds = 0.0;
    let mut measured = 0.0;
    for call in 0..warmup + iters {
        let start = Instant::now();
        f();
        let secs = start.elapsed().as_secs_f64();
        let kind = if call < warmup { "warm-up" } else { "measured" };
        eprintln!("  {name}: call {} ({kind}) {secs:.3} s", call + 1);
        if call == 0 {
            first_call_seconds = secs;
        }
        if call >= warmup {
            measured += secs;
        }
    }
    let per = (measured / iters as f64).max(1e-12);
    BenchRecord {
        name: name.to_string(),
        batch,
        iters,
        seconds_per_iter: per,
        images_per_s: batch as f64 / per,
        first_call_seconds,
    }
}

/// A side-by-side table of records (name, batch, images/s).
pub fn table(records: &[BenchRecord]) -> String {
    let mut s = String::from("| step | batch | images/s |\n|---|---|---|\n");
    for r in records {
        s.push_str(&format!(
            "| {} | {} | {:.1} |\n",
            r.name, r.batch, r.images_per_s
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_counts_calls_and_divides_by_time() {
        let mut calls = 0;
        let r = measure("sleep", 10, 2, 3, || {
            calls += 1;
            std::thread::sleep(std::time::Duration::from_millis(5));
        });
        assert_eq!(calls, 5);
        assert!(r.seconds_per_iter >= 0.005, "{r:?}");
        assert!((r.images_per_s - 10.0 / r.seconds_per_iter).abs() < 1e-9);
        assert!(r.first_call_seconds >= 0.005, "{r:?}");
        let t = table(&[r]);
        assert!(t.contains("| sleep | 10 |"), "{t}");
    }
}
