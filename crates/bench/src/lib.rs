//! advsoup-bench: the speed and memory harness of advsoup's own steps, and the JSON records
//! benchmarks write.
//!
//! [`measure`] times a closure over warm-up and measured iterations and reports images/s as a
//! [`BenchRecord`] (the record types are `advsoup-records`', re-exported here). [`harness::run_suite`] measures the steps training spends its time in
//! (forward, nominal train step, PGD step, co-training step), composed from `advsoup-train`'s
//! regimes, on the named models of [`presets`], and returns the [`suite::BenchReport`] that
//! `advsoup bench --json` writes and `cargo xtask bench` joins with the PyTorch reference;
//! [`child`] measures PGD's peak memory in fresh child processes of the `advsoup` binary. It
//! never asserts on timings (speed is reported, not tested), parses no command line and
//! prints no results: the cli does (progress goes to stderr).
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
//!
//! `examples/measure.rs` times a small ViT's forward pass this way.
#![warn(missing_docs)]

/// The burn this crate is built on (`=0.21.0`), so users get the matching version and types.
pub use burn;

pub mod child;
mod error;
pub mod harness;
pub mod memory;
pub mod presets;
pub mod suite;

pub use child::{MemoryPlan, memory_child};
pub use error::BenchError;
pub use harness::{BenchStep, Settings, SuitePlan, run_suite, threads};
pub use presets::BenchPreset;

/// The record types moved to advsoup-records; re-exported at their old paths.
pub use advsoup_records::bench::{BenchRecord, table};

use std::time::Instant;

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
