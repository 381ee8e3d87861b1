//! Test support for advsoup's end-to-end tests (`tests/tests/*.rs`): generated datasets and
//! configs, so that no test needs the network. The `advsoup-e2e-bin` binary is the `advsoup`
//! command built inside this package, so that tests can run (and SIGKILL) a real process.

use std::path::Path;

use advsoup_cli::{Cli, run};
use clap::Parser;

/// `advsoup <args>` through the cli's library API, in this process.
///
/// # Errors
/// What the command returns.
pub fn cli(args: &[&str]) -> anyhow::Result<()> {
    run(Cli::try_parse_from(
        std::iter::once("advsoup").chain(args.iter().copied()),
    )?)
}

/// `advsoup train --quiet --config <config> --runs-dir <runs> <extra>`, in this process.
///
/// # Errors
/// What the command returns.
pub fn train(config: &Path, runs: &Path, extra: &[&str]) -> anyhow::Result<()> {
    let mut args = vec![
        "train",
        "--config",
        config.to_str().expect("utf8"),
        "--runs-dir",
        runs.to_str().expect("utf8"),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

/// burn seeds ONE global generator per backend (`B::seed`), so trainings running on parallel
/// test threads of one process would interleave their draws. Every test that trains holds this
/// lock for its whole body, so each run owns the generator as it does in a real process.
static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds [`BACKEND_RNG`] (a panicked holder does not poison it for the others).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shared fixtures: the synthetic Fashion-MNIST cache (`write_idx(dir, train, test)`) and
/// the tiny experiment config (`tiny_config(dir, data, epochs)`, or [`TinyConfig`] for a
/// variation), kept once in advsoup-data and advsoup-train behind their `test-support` feature.
pub use advsoup_data::testing::write_idx;
pub use advsoup_train::testing::{TinyConfig, tiny_config};
