//! Issue 16, the training side: `--resume` with a config that computes another run (each
//! changed field named old -> new), a second writer while the run is locked, counts above their
//! maximum, a held-out slice that leaves nothing to train on, and damaged checkpoints. Every
//! refusal leaves the run byte-identical.

use std::path::Path;
use std::process::Command;

use super::*;

/// `advsoup train --resume` on a run of the tiny config (trained one step here, so it holds a
/// checkpoint) with `overrides`, after `damage` was done to the run; the run must stay as it
/// was.
fn resume_row(
    root: &Path,
    name: &'static str,
    overrides: &[&str],
    damage: impl FnOnce(&Path),
    needles: &[&str],
) -> Row {
    let mut row = train_row(root, name, |_| {}, overrides, needles);
    let config = row.dir.join("tiny.toml");
    let trained = Command::new(BIN)
        .current_dir(&row.dir)
        .args(["train", "--quiet", "--runs-dir", "runs", "--max-steps", "1"])
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run advsoup");
    assert!(
        trained.status.success(),
        "{name}: setup run failed: {trained:?}"
    );
    let run = row.dir.join("runs/tiny");
    damage(&run);
    row.cmd.arg("--resume");
    row.absent = vec![];
    row.unchanged = vec![run];
    row
}

/// Issue 16, the training side: `--resume` with a config that computes another run (each
/// changed field named old -> new), a second writer while the run is locked, counts above
/// their maximum, a held-out slice that leaves nothing to train on, and damaged checkpoints.
/// Every refusal leaves the run byte-identical.
pub(super) fn rows(root: &Path) -> Vec<Row> {
    let differs = "the configuration differs from the run's";
    let mut rows = vec![
        resume_row(
            root,
            "resume-changed-embed-dim",
            &["model.embed_dim=32"],
            |_| {},
            &[
                differs,
                "vit.embed_dim 16 -> 32",
                "only optim.epochs (more)",
            ],
        ),
        resume_row(
            root,
            "resume-changed-num-heads",
            &["model.num_heads=4"],
            |_| {},
            &[differs, "vit.num_heads 2 -> 4"],
        ),
        resume_row(
            root,
            "resume-changed-adapter",
            &["model.adapter=dual_layer_norm"],
            |_| {},
            &[differs, "model.adapter cls_token -> dual_layer_norm"],
        ),
        resume_row(
            root,
            "resume-changed-lr",
            &["optim.lr=0.01"],
            |_| {},
            &[differs, "optim.lr 0.001 -> 0.01"],
        ),
        resume_row(
            root,
            "resume-changed-depth",
            &["model.depth=2"],
            |_| {},
            &[differs, "vit.depth 1 -> 2"],
        ),
        resume_row(
            root,
            "resume-truncated-checkpoint",
            &[],
            |run| {
                let model = run.join("checkpoint/model.bin");
                let bytes = std::fs::read(&model).expect("model.bin");
                std::fs::write(&model, &bytes[..bytes.len() / 2]).expect("truncate");
            },
            &[
                "checkpoint/model.bin",
                "cannot be decoded (truncated or damaged)",
            ],
        ),
        resume_row(
            root,
            "resume-checkpoint-without-state",
            &[],
            |run| std::fs::remove_file(run.join("checkpoint/state.json")).expect("rm"),
            &[
                "runs/tiny: the checkpoint",
                "has no state.json",
                "move the run directory away",
            ],
        ),
    ];
    // A second writer: this test process holds the run's lock for the rest of the test (the
    // lock is leaked on purpose; the OS releases it when the test process exits).
    let mut second = resume_row(root, "second-writer", &[], |_| {}, &[]);
    let lock = advsoup_io::DirLock::acquire(&second.dir.join("runs/tiny")).expect("lock");
    Box::leak(Box::new(lock));
    second.needles = vec![
        "runs/tiny".into(),
        format!("in use by process {}", std::process::id()),
    ];
    rows.push(second);
    rows.push(train_row(
        root,
        "num-steps-1e11",
        |_| {},
        &["attack.train.num_steps=1e11"],
        &[
            "attack.train.num_steps",
            "100000000000 is above the maximum of 10000",
        ],
    ));
    rows.push(train_row(
        root,
        "held-out-60000",
        |_| {},
        &["data.held_out=60000"],
        &["data.held_out: 60000 leaves none of the 60000 training samples"],
    ));
    rows
}
