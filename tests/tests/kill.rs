//! A real process killed with SIGKILL mid-epoch, twice, then resumed with `--resume`, ends with
//! the same model (bit for bit) and the same final metrics as an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use advsoup_e2e::process::{final_json, finish, train_command, wait_for_checkpoint};
use advsoup_e2e::{tiny_config, write_idx};

const BIN: &str = env!("CARGO_BIN_EXE_advsoup-e2e-bin");

fn train(config: &Path, runs: &Path, resume: bool) -> Command {
    train_command(BIN, config, runs, resume)
}

/// Waits until a checkpoint at `step` or later exists, then SIGKILLs the child. Returns the
/// step seen.
fn kill_after(mut child: Child, run: &Path, step: u64) -> u64 {
    let s = wait_for_checkpoint(&mut child, run, step);
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the run ended before it was killed");
    s
}

#[test]
fn sigkill_mid_epoch_then_resume_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // 150 training samples - 20 held out = 130: 9 steps of 16 per epoch, 3 epochs
    write_idx(&data, 150, 40);
    let config = tiny_config(tmp.path(), &data, 3);
    let (a, b): (PathBuf, PathBuf) = (tmp.path().join("a"), tmp.path().join("b"));
    finish(train(&config, &a, false));

    let run = b.join("tiny");
    let child = train(&config, &b, false).spawn().expect("spawn");
    let first = kill_after(child, &run, 4);
    let child = train(&config, &b, true).spawn().expect("spawn");
    let second = kill_after(child, &run, first + 8);
    assert!(
        !run.join("final.json").exists(),
        "killed runs must not have a final report"
    );
    finish(train(&config, &b, true));
    assert!(second > first);

    let read = |dir: &Path| std::fs::read(dir.join("tiny/model.safetensors")).expect("model");
    assert!(
        read(&a) == read(&b),
        "model after two SIGKILLs (at checkpoints {first} and {second}) differs from the \
         uninterrupted one"
    );
    assert_eq!(final_json(&a.join("tiny")), final_json(&run));
    let metrics = |dir: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .expect("metrics")
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).expect("line");
                v.as_object_mut().expect("object").remove("images_per_s");
                v
            })
            .collect()
    };
    assert_eq!(metrics(&a.join("tiny")), metrics(&run));
    assert!(
        !std::fs::read_dir(&run).expect("run dir").any(|e| e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .contains(".tmp")),
        "temporary files left in the run directory"
    );
}
