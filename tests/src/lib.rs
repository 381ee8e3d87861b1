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

/// Helpers for the tests that run the binary as a separate process (kill.rs, signals.rs,
/// logs.rs).
pub mod process {
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// `<bin> train --quiet --checkpoint-every 2 --config <config> --runs-dir <runs>
    /// [--resume]`, stdout discarded, stderr piped.
    pub fn train_command(bin: &str, config: &Path, runs: &Path, resume: bool) -> Command {
        let mut c = Command::new(bin);
        c.args(["train", "--quiet", "--checkpoint-every", "2", "--config"])
            .arg(config)
            .arg("--runs-dir")
            .arg(runs)
            .env_remove("ADVSOUP_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if resume {
            c.arg("--resume");
        }
        c
    }

    /// The step of the checkpoint on disk (the renamed-aside one counts too: resume uses it).
    pub fn checkpoint_step(run: &Path) -> Option<u64> {
        ["checkpoint", "checkpoint.old"].iter().find_map(|d| {
            let bytes = std::fs::read(run.join(d).join("state.json")).ok()?;
            serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["global_step"].as_u64()
        })
    }

    /// Waits until a checkpoint at `step` or later exists while `child` runs; returns the step
    /// seen. Panics if the child exits first or nothing comes within two minutes.
    pub fn wait_for_checkpoint(child: &mut Child, run: &Path, step: u64) -> u64 {
        let start = Instant::now();
        loop {
            if let Some(s) = checkpoint_step(run).filter(|s| *s >= step) {
                return s;
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("the run exited ({status}) before step {step}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no checkpoint at step {step}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Runs `c` to the end and requires success.
    pub fn finish(mut c: Command) {
        let out = c.output().expect("spawn");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `final.json` without the wall time, which differs between interrupted and whole runs.
    pub fn final_json(run: &Path) -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("final.json")).expect("final.json"))
                .expect("json");
        v.as_object_mut().expect("object").remove("train_seconds");
        v
    }

    /// Files under `dir` whose names mark an unfinished write (`.tmp`, `.fetch-`).
    pub fn temporaries(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return found;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp") || name.starts_with(".fetch-") {
                found.push(e.path());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                found.extend(temporaries(&e.path()));
            }
        }
        found
    }

    /// Sends `signal` (`TERM`, `INT`) to process `pid` with kill(1).
    pub fn send(signal: &str, pid: u32) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }
}
