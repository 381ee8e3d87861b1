//! SIGTERM and SIGINT through the real binary. `train` finishes its step, writes a checkpoint
//! and exits 143 / 130 with one line saying how to continue; `--resume` then ends with the same
//! model and final report as an uninterrupted run. Other commands exit at once with 143 / 130
//! and leave no temporary or lock file.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use advsoup_e2e::process::{
    final_json, finish, send, temporaries, train_command, wait_for_checkpoint,
};
use advsoup_e2e::{tiny_config, write_idx};

const BIN: &str = env!("CARGO_BIN_EXE_advsoup-e2e-bin");

/// The stopped run's stderr ends with one line (after the training's own log lines) naming
/// the signal, the checkpoint and `--resume`.
fn assert_stopped(out: &Output, code: i32, signal: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    let last = last.unwrap_or_default();
    for needle in [
        &format!("stopped by {signal}: checkpoint saved"),
        "--resume",
    ] {
        assert!(last.contains(needle), "{needle:?} missing: {stderr}");
    }
    assert_eq!(stderr.matches("stopped by").count(), 1, "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

/// A checkpoint is there, complete, and nothing half-written is left in the run.
fn assert_clean_checkpoint(run: &Path) {
    assert!(run.join("checkpoint/state.json").is_file(), "no checkpoint");
    assert!(!run.join("checkpoint.tmp").exists(), "checkpoint.tmp left");
    assert_eq!(temporaries(run), Vec::<std::path::PathBuf>::new());
    assert!(
        !run.join("final.json").exists(),
        "a stopped run has no final report"
    );
}

#[test]
fn sigterm_and_sigint_checkpoint_and_resume_to_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // 150 training samples - 20 held out = 130: 9 steps of 16 per epoch, 3 epochs
    write_idx(&data, 150, 40);
    let config = tiny_config(tmp.path(), &data, 3);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    finish(train_command(BIN, &config, &a, false));

    let run = b.join("tiny");
    let mut child = train_command(BIN, &config, &b, false)
        .spawn()
        .expect("spawn");
    let first = wait_for_checkpoint(&mut child, &run, 2);
    send("TERM", child.id());
    assert_stopped(&child.wait_with_output().expect("wait"), 143, "SIGTERM");
    assert_clean_checkpoint(&run);

    // Ctrl-C twice: the second arrives while the first is being honoured and must not cut the
    // checkpoint short.
    let mut child = train_command(BIN, &config, &b, true)
        .spawn()
        .expect("spawn");
    let second = wait_for_checkpoint(&mut child, &run, first + 6);
    send("INT", child.id());
    send("INT", child.id());
    assert_stopped(&child.wait_with_output().expect("wait"), 130, "SIGINT");
    assert_clean_checkpoint(&run);

    finish(train_command(BIN, &config, &b, true));
    assert!(second > first);
    let model = |dir: &Path| std::fs::read(dir.join("tiny/model.safetensors")).expect("model");
    assert!(
        model(&a) == model(&b),
        "model after SIGTERM and SIGINT differs from the uninterrupted one"
    );
    assert_eq!(final_json(&a.join("tiny")), final_json(&run));

    evaluation_exits_at_once(&a.join("tiny"), &tmp.path().join("eval"));
}

/// `advsoup eval` of a finished run: SIGTERM / SIGINT once it holds its output directory's
/// lock end it with 143 / 130 at once, leaving no report, no temporary file and no lock file.
fn evaluation_exits_at_once(run: &Path, out_dir: &Path) {
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let out = out_dir.join(format!("{signal}.json"));
        let mut child = Command::new(BIN)
            .args(["eval", "--attack", "pgd-400", "--n", "40", "--run"])
            .arg(run)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn eval");
        let lock = out_dir.join(".advsoup.lock");
        wait_for(&mut child, || lock.exists());
        let sent = Instant::now();
        send(signal, child.id());
        let output = child.wait_with_output().expect("wait");
        assert_eq!(
            output.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "took {:?} to exit",
            sent.elapsed()
        );
        assert!(!out.exists(), "a report was written");
        assert!(!lock.exists(), "the lock file was left");
        assert_eq!(temporaries(out_dir), Vec::<std::path::PathBuf>::new());
    }
}

fn wait_for(child: &mut Child, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("exited ({status}) before it was ready");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(1));
    }
}
