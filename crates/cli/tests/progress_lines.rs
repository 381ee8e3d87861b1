//! Progress of `advsoup eval` through the real binary: plain periodic lines when stderr is not
//! a terminal (a log file gets no control codes), and a redrawn bar when it is one (run under
//! `script`, which gives the command a pseudo-terminal).
//!
//! Run alone: `cargo test -p advsoup-cli --test progress_lines` (a few seconds).

use std::path::{Path, PathBuf};
use std::process::Command;

use advsoup_adapters::{AdaptedVitConfig, AdapterKind};
use advsoup_train::testing::TinyConfig;
use burn::backend::Flex;

const BIN: &str = env!("CARGO_BIN_EXE_advsoup");

/// A run of the smallest tiny config evaluated one image per batch (so 8 test images are 8
/// batches), with a freshly initialized model, and its data under `dir`.
fn run_dir(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    advsoup_data::testing::write_idx(&data, 24, 8);
    let tiny = TinyConfig::smallest(&data).set("eval.batch_size", 1);
    let run = dir.join("run");
    std::fs::rename(tiny.write(&run), run.join("config.toml")).expect("config");
    let model = AdaptedVitConfig {
        vit: tiny.vit(),
        adapter: AdapterKind::ClsToken,
    }
    .try_init::<Flex>(&Default::default())
    .expect("model");
    advsoup_adapters::io::save_model(&model, &run.join("model.safetensors")).expect("save");
    run
}

const EVAL: [&str; 7] = ["eval", "--attack", "pgd-1", "--eps", "0.1", "--n", "8"];

#[test]
fn eval_prints_a_plain_line_per_tenth_of_the_work_without_control_codes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = run_dir(tmp.path());
    let out = Command::new(BIN)
        .args(EVAL)
        .arg("--run")
        .arg(&run)
        .env_remove("ADVSOUP_LOG")
        .output()
        .expect("run advsoup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("eval: ")).collect();
    // 8 batches of 1 image: every batch is more than a tenth of the work.
    assert_eq!(lines.len(), 8, "{stderr}");
    for (i, line) in lines.iter().enumerate() {
        let head = format!("eval: {}/8 images, ", i + 1);
        assert!(
            line.starts_with(&head) && line.contains(" elapsed"),
            "{line}"
        );
        assert!(line.contains(" left"), "{line}");
    }
}

#[test]
fn eval_draws_a_bar_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = run_dir(tmp.path());
    let command = format!("{BIN} {} --run {}", EVAL.join(" "), run.display());
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("ADVSOUP_LOG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run script");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    // The bar is redrawn in place (control codes), and never printed as plain lines.
    assert!(tty.contains("\x1b["), "{tty:?}");
    assert!(
        tty.contains("/8 images") && !tty.contains("eval: 1/8 images, "),
        "{tty:?}"
    );
    // NO_COLOR: no colour (SGR) codes, only cursor and line control.
    assert!(
        !tty.contains("\x1b[36m") && !tty.contains("\x1b[34m"),
        "{tty:?}"
    );
}
