//! The report of a benchmark suite: per preset, the throughput records of its steps and the peak
//! memory of its attacks. `advsoup bench --json` and `crates/bench/reference/torch_bench.py`
//! write this same shape, so `cargo xtask bench` can join them by (preset, step). The types are
//! `advsoup-records`' (serde only, so xtask reads them without linking burn), re-exported here.

pub use advsoup_records::bench::{BenchReport, PresetReport};
