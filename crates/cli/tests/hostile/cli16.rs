//! Issue 16, the cli side: a directory that is not a run, a run whose training has not
//! finished, `--eps` outside (0, 1] (negative values are values, not flags), and a second
//! writer while another process holds the lock of the run or of the data cache.

use std::path::{Path, PathBuf};

use advsoup_adapters::AdapterKind;
use advsoup_io::DirLock;
use advsoup_train::testing::tiny_vit;

use super::{Row, fmnist, foreign_model, row_setup, strings, tiny_config};

/// A run directory as training leaves it: the tiny config as `config.toml` and a model of that
/// architecture (unfinished: without the model).
fn fake_run(dir: &Path, finished: bool) -> PathBuf {
    let run = dir.join("runs/tiny");
    tiny_config(&run, &dir.join("data"));
    std::fs::rename(run.join("tiny.toml"), run.join("config.toml")).expect("mv");
    if finished {
        foreign_model(
            &run.join("model.safetensors"),
            tiny_vit(1, 16),
            AdapterKind::ClsToken,
        );
    } else {
        std::fs::create_dir_all(run.join("checkpoint")).expect("mkdir");
        std::fs::write(run.join("checkpoint/state.json"), "{}").expect("state");
    }
    run
}

/// Holds `dir`'s lock in this (the test) process until it exits: the rows run while it is
/// held.
fn hold_lock(dir: &Path) {
    std::mem::forget(DirLock::acquire(dir).expect("lock"));
}

pub(super) fn rows(root: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut row = |name: &'static str, args: &[&str], finished: Option<bool>, needles: &[&str]| {
        let (dir, mut cmd) = row_setup(root, name);
        let run = finished.map(|f| fake_run(&dir, f));
        cmd.args(args);
        rows.push(Row {
            name,
            absent: vec![],
            unchanged: run.into_iter().collect(),
            dir,
            cmd,
            needles: strings(needles),
        });
    };
    for (name, args) in [
        ("not-a-run-eval", &["eval", "--run", "runs/x"][..]),
        ("not-a-run-soup", &["soup", "sweep", "--run", "runs/x"]),
        ("not-a-run-report", &["report", "--run", "runs/x"]),
        ("not-a-run-info", &["info", "--run", "runs/x"]),
    ] {
        row(
            name,
            args,
            None,
            &["runs/x: not a run directory (no config.toml)"],
        );
    }
    row(
        "unfinished-run-eval",
        &["eval", "--run", "runs/tiny"],
        Some(false),
        &[
            "runs/tiny: training has not finished (no model.safetensors)",
            "advsoup train --config runs/tiny/config.toml --runs-dir runs --resume",
        ],
    );
    row(
        "unfinished-run-export",
        &[
            "export-timm",
            "--run",
            "runs/tiny",
            "--out",
            "t.safetensors",
        ],
        Some(false),
        &["runs/tiny: training has not finished", "--resume"],
    );
    row(
        "eps-negative",
        &["eval", "--run", "runs/tiny", "--eps", "-0.1"],
        Some(true),
        &["--eps: expected a radius in (0, 1], got -0.1"],
    );
    row(
        "eps-above-one",
        &["attack", "--run", "runs/tiny", "--eps", "2", "--out", "adv"],
        Some(true),
        &["--eps: expected a radius in (0, 1], got 2"],
    );
    row(
        "eps-zero-soup",
        &["soup", "sweep", "--run", "runs/tiny", "--eps", "0"],
        Some(true),
        &["--eps: expected a radius in (0, 1], got 0"],
    );
    let pid = format!("in use by process {}", std::process::id());
    row(
        "second-eval-writer",
        &["eval", "--run", "runs/tiny", "--n", "4"],
        Some(true),
        &["runs/tiny", &pid, ".advsoup.lock"],
    );
    hold_lock(&root.join("second-eval-writer/runs/tiny"));
    row(
        "second-attack-writer",
        &["attack", "--run", "runs/tiny", "--out", "out/adv"],
        Some(true),
        &["out", &pid],
    );
    hold_lock(&root.join("second-attack-writer/out"));
    row(
        "data-fetch-while-cache-locked",
        &[
            "data",
            "fetch",
            "mnist",
            "--no-packages",
            "--data-dir",
            "cache",
        ],
        None,
        &["cache", &pid],
    );
    hold_lock(&root.join("data-fetch-while-cache-locked/cache"));
    rows.last_mut()
        .expect("row")
        .absent
        .push(root.join("data-fetch-while-cache-locked/cache/mnist"));
    rows.push(data_dir_row(root));
    rows.push(corrupt_while_locked_row(root, &pid));
    rows
}

/// `data corrupt` into an output directory another process holds.
fn corrupt_while_locked_row(root: &Path, pid: &str) -> Row {
    let (dir, mut cmd) = row_setup(root, "data-corrupt-while-out-locked");
    fmnist(&dir.join("data"));
    cmd.args([
        "data",
        "corrupt",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        "data",
    ])
    .args([
        "--limit",
        "2",
        "--corruptions",
        "contrast",
        "--severities",
        "1",
    ])
    .args(["--out", "out"]);
    hold_lock(&dir.join("out"));
    Row {
        name: "data-corrupt-while-out-locked",
        absent: vec![dir.join("out/labels-idx1-ubyte"), dir.join("out/contrast")],
        unchanged: vec![],
        dir,
        cmd,
        needles: strings(&["out", pid]),
    }
}

/// `train --data-dir` overrides the config's `data.data_dir`: an empty cache there is named.
fn data_dir_row(root: &Path) -> Row {
    let (dir, mut cmd) = row_setup(root, "train-data-dir-override");
    let config = tiny_config(&dir, &dir.join("data"));
    cmd.args([
        "train",
        "--quiet",
        "--runs-dir",
        "runs",
        "--data-dir",
        "elsewhere",
    ])
    .arg("--config")
    .arg(&config);
    Row {
        name: "train-data-dir-override",
        absent: vec![dir.join("runs")],
        unchanged: vec![],
        dir,
        cmd,
        needles: strings(&["elsewhere/fashion-mnist", "not in the cache"]),
    }
}

/// An OS error that a path error both displays and returns as its source is printed once:
/// `error: missing.safetensors: No such file or directory (os error 2)`.
#[test]
fn an_os_error_is_printed_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, mut cmd) = row_setup(tmp.path(), "os-error-once");
    cmd.args([
        "import-timm",
        "missing.safetensors",
        "--preset",
        "vit_mini_patch4_28",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.5,0.5,0.5",
        "--out",
        "model.safetensors",
    ]);
    let out = cmd.output().expect("run advsoup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains("missing.safetensors"));
    assert_eq!(stderr.matches("(os error 2)").count(), 1, "{stderr}");
}
