//! Logs redirected to a file hold no ANSI colour codes; on a terminal they are coloured unless
//! `NO_COLOR` is set.

use std::path::Path;
use std::process::{Command, Stdio};

use advsoup_e2e::{tiny_config, write_idx};

const BIN: &str = env!("CARGO_BIN_EXE_advsoup-e2e-bin");

/// A one-epoch tiny training whose log (the epoch line, at info) goes to a file.
#[test]
fn logs_redirected_to_a_file_hold_no_ansi_codes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    write_idx(&data, 84, 40);
    let config = tiny_config(tmp.path(), &data, 1);
    let log = tmp.path().join("train.log");
    let status = Command::new(BIN)
        .args(["train", "--quiet", "--config"])
        .arg(&config)
        .arg("--runs-dir")
        .arg(tmp.path().join("runs"))
        .env_remove("ADVSOUP_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .status()
        .expect("run");
    assert!(status.success());
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("held-out clean"),
        "no epoch line in the log: {text}"
    );
    assert!(
        !text.contains('\x1b'),
        "ANSI codes in a redirected log: {text:?}"
    );
}

/// On a pseudo-terminal (util-linux `script`) the same log line is coloured, and not with
/// `NO_COLOR=1`.
#[test]
fn a_terminal_gets_colours_unless_no_color_is_set() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    write_idx(&data, 84, 40);
    let config = tiny_config(tmp.path(), &data, 1);
    let pty = Command::new("script")
        .args(["-qec", "true", "/dev/null"])
        .stdin(Stdio::null())
        .output();
    if !pty.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: script(1) cannot open a pseudo-terminal here");
        return;
    }
    let plain = on_terminal(&config, &tmp.path().join("a"), None);
    assert!(plain.contains("held-out clean"), "no epoch line: {plain:?}");
    assert!(
        plain.contains('\x1b'),
        "no colours on a terminal: {plain:?}"
    );
    let no_color = on_terminal(&config, &tmp.path().join("b"), Some("1"));
    assert!(no_color.contains("held-out clean"), "{no_color:?}");
    assert!(
        !no_color.contains('\x1b'),
        "colours despite NO_COLOR: {no_color:?}"
    );
}

/// What a one-epoch training prints on a terminal.
fn on_terminal(config: &Path, runs: &Path, no_color: Option<&str>) -> String {
    let cmd = format!(
        "{BIN} train --quiet --config {} --runs-dir {}",
        config.display(),
        runs.display()
    );
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .env_remove("ADVSOUP_LOG")
        .stdin(Stdio::null());
    match no_color {
        Some(v) => c.env("NO_COLOR", v),
        None => c.env_remove("NO_COLOR"),
    };
    let out = c.output().expect("script");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}
