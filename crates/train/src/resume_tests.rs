//! The resume guard ([`crate::resume`]), the run directory's lock, and the config's caps: the
//! guard's readers on hand-made files, then whole tiny runs resumed with changed configs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};

use crate::resume::{RecordedRun, check, config_fields, fingerprint};
use crate::testing::TinyConfig;
use crate::{RunOptions, TrainConfig, TrainError, load_data, test_support, train};

fn config(tiny: TinyConfig) -> TrainConfig {
    TrainConfig::parse(&tiny.text(), Path::new("tiny.toml"), &[]).expect("config")
}

fn tiny() -> TinyConfig {
    TinyConfig::smallest(Path::new("data"))
}

/// A checkpoint state after `epoch` epochs.
fn state(epoch: usize) -> Vec<u8> {
    let s = advsoup_records::run::CheckpointState {
        epoch,
        global_step: 3 * epoch,
        ..Default::default()
    };
    serde_json::to_vec(&s).expect("state")
}

/// [`check`] of `new` against a run recorded from `old` (its config.toml and, with
/// `with_fingerprint`, its fingerprint.json) after `done` epochs.
fn check_against(
    old: &TrainConfig,
    new: &TrainConfig,
    done: usize,
    with_fingerprint: bool,
) -> Result<crate::resume::Resume, TrainError> {
    let toml = toml::to_string_pretty(old).expect("toml");
    let fp = serde_json::to_vec(&fingerprint(old).expect("fp")).expect("json");
    let state = state(done);
    let files = RecordedRun {
        fingerprint: with_fingerprint.then_some(fp.as_slice()),
        config: Some(toml.as_bytes()),
        state: Some(&state),
        history: None,
    };
    check(
        Path::new("runs/x"),
        Path::new("runs/x/checkpoint/state.json"),
        &files,
        new,
    )
}

#[test]
fn the_fingerprint_holds_every_computing_field_and_no_resumable_one() {
    let fields: BTreeMap<String, String> = config_fields(&config(tiny())).expect("fields");
    let fp = fingerprint(&config(tiny())).expect("fingerprint").fields;
    for f in [
        "vit.embed_dim",
        "vit.num_heads",
        "vit.depth",
        "vit.img_size",
        "vit.mean",
        "model.adapter",
        "regime",
        "seed",
        "alpha",
        "optim.lr",
        "optim.batch_size",
        "optim.precision",
        "attack.train.num_steps",
        "data.dataset",
        "data.held_out",
        "data.hflip",
    ] {
        assert!(fp.contains_key(f), "{f} missing from {fp:?}");
    }
    assert_eq!(fp["vit.embed_dim"], "16");
    assert_eq!(fp["model.adapter"], "cls_token");
    for f in [
        "optim.epochs",
        "data.data_dir",
        "data.workers",
        "attack.eval.num_steps",
        "eval.batch_size",
        "eval.test_attack",
    ] {
        assert!(fields.contains_key(f), "{f} is a field");
        assert!(!fp.contains_key(f), "{f} is resumable");
    }
    assert!(!fields.contains_key("name") && !fields.contains_key("model.embed_dim"));
}

#[test]
fn a_changed_field_is_refused_naming_each_field_old_and_new() {
    let old = config(tiny());
    let new = config(tiny().set("model.embed_dim", 32).set("optim.lr", 0.01));
    for with_fingerprint in [true, false] {
        let e = check_against(&old, &new, 1, with_fingerprint)
            .expect_err("changed")
            .to_string();
        assert!(
            e.starts_with("--resume runs/x: the configuration differs"),
            "{e}"
        );
        assert!(e.contains("vit.embed_dim 16 -> 32"), "{e}");
        assert!(e.contains("optim.lr 0.001 -> 0.01"), "{e}");
        assert!(e.contains("only optim.epochs (more), data.data_dir"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    for (key, value) in [
        ("model.num_heads", toml::Value::from(4)),
        ("model.depth", 2.into()),
        ("model.adapter", "dual_layer_norm".into()),
        ("seed", 9.into()),
        ("attack.train.num_steps", 2.into()),
    ] {
        let new = config(tiny().set(key, value));
        let e = check_against(&old, &new, 1, true)
            .expect_err(key)
            .to_string();
        assert!(e.contains("differs"), "{key}: {e}");
    }
}

#[test]
fn more_epochs_and_other_resumable_changes_pass_and_are_recorded() {
    let old = config(tiny());
    let new = config(tiny().set("optim.epochs", 3).set("eval.batch_size", 4));
    let resume = check_against(&old, &new, 1, true).expect("resumable");
    let record = resume.record.expect("a history record");
    assert_eq!((record.epoch, record.global_step), (1, 3));
    let shown: Vec<String> = record.changed.iter().map(|c| c.to_string()).collect();
    assert_eq!(shown, ["eval.batch_size 8 -> 4", "optim.epochs 1 -> 3"]);
    assert_eq!(
        check_against(&old, &old, 1, true).expect("same").record,
        None
    );
    // Fewer epochs than the run has done is refused.
    let two = config(tiny().set("optim.epochs", 2));
    let e = check_against(&two, &old, 2, true)
        .expect_err("fewer")
        .to_string();
    assert!(
        e.contains("optim.epochs 2 -> 1 (the run has done 2 epochs)"),
        "{e}"
    );
}

#[test]
fn damaged_or_missing_files_are_one_line_naming_them() {
    let old = config(tiny());
    let toml = toml::to_string_pretty(&old).expect("toml");
    let state = state(1);
    let run = Path::new("runs/x");
    let state_path = run.join("checkpoint/state.json");
    let files = RecordedRun {
        fingerprint: None,
        config: Some(toml.as_bytes()),
        state: Some(&state),
        history: None,
    };
    let err = |files: RecordedRun<'_>| {
        check(run, &state_path, &files, &old)
            .expect_err("refused")
            .to_string()
    };
    let e = err(RecordedRun {
        state: None,
        ..files
    });
    assert!(
        e.starts_with("runs/x: the checkpoint runs/x/checkpoint has no state.json"),
        "{e}"
    );
    assert!(e.contains("move the run directory away"), "{e}");
    let e = err(RecordedRun {
        state: Some(b"{\"epoch\": 1"),
        ..files
    });
    assert!(
        e.starts_with("runs/x/checkpoint/state.json: damaged"),
        "{e}"
    );
    let e = err(RecordedRun {
        fingerprint: Some(b"\xff\xfe"),
        ..files
    });
    assert!(e.starts_with("runs/x/fingerprint.json: not UTF-8"), "{e}");
    let e = err(RecordedRun {
        fingerprint: Some(b"[]"),
        ..files
    });
    assert!(e.starts_with("runs/x/fingerprint.json: damaged"), "{e}");
    let e = err(RecordedRun {
        history: Some(b"{}\n"),
        ..files
    });
    assert!(e.starts_with("runs/x/history.jsonl line 1: damaged"), "{e}");
    let e = err(RecordedRun {
        config: None,
        ..files
    });
    assert!(e.starts_with("runs/x/config.toml: missing"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn counts_are_capped_naming_the_field_and_the_maximum() {
    let e = TrainConfig::parse(
        &tiny().text(),
        Path::new("tiny.toml"),
        &["attack.train.num_steps=1e11".into()],
    )
    .expect_err("capped")
    .to_string();
    assert_eq!(
        e,
        "tiny.toml: attack.train.num_steps: 100000000000 is above the maximum of 10000"
    );
    for (key, value) in [
        ("attack.eval.num_steps", 10_001_i64),
        ("optim.epochs", 1 << 40),
        ("eval.batch_size", 1 << 40),
        ("eval.test_robust", 1 << 40),
    ] {
        let e = TrainConfig::parse(&tiny().set(key, value).text(), Path::new("t"), &[])
            .expect_err(key)
            .to_string();
        assert!(e.contains(key) && e.contains("maximum"), "{e}");
    }
    let e = TrainConfig::parse(
        &tiny().set("data.held_out", 60_000).text(),
        Path::new("t"),
        &[],
    )
    .expect_err("all held out")
    .to_string();
    assert!(e.starts_with("t: data.held_out: 60000 leaves none"), "{e}");
}

/// A tiny cache and run directory parent under a temporary directory.
struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        advsoup_data::testing::write_idx(&dir.path().join("data"), 24, 8);
        Self { dir }
    }

    fn config(&self, sets: &[(&str, toml::Value)]) -> TrainConfig {
        let mut t = TinyConfig::smallest(&self.dir.path().join("data"));
        for (k, v) in sets {
            t = t.set(k, v.clone());
        }
        config(t)
    }

    fn runs(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    fn run_dir(&self) -> PathBuf {
        self.runs().join("tiny")
    }

    fn train(&self, cfg: &TrainConfig, resume: bool) -> Result<crate::RunSummary, TrainError> {
        let splits = load_data(cfg, false).expect("data");
        let mut options = RunOptions::new(self.runs());
        options.resume = resume;
        train::<Autodiff<Flex>>(cfg, &splits, &options, &Default::default())
    }
}

/// Every file under `dir` but the lock file, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else if e.file_name() != advsoup_io::lock::LOCK_FILE {
                out.insert(e.path(), std::fs::read(e.path()).expect("read"));
            }
        }
    }
    out
}

#[test]
fn a_resume_with_more_epochs_trains_on_and_records_history_a_changed_one_writes_nothing() {
    let _rng = test_support::serial();
    let bench = Bench::new();
    let one = bench.config(&[]);
    let first = bench.train(&one, false).expect("first epoch");
    assert_eq!(first.epochs.len(), 1);
    let run = bench.run_dir();
    assert!(run.join("fingerprint.json").is_file());
    assert!(!run.join("history.jsonl").exists(), "no resume yet");
    let before = snapshot(&run);
    for sets in [
        vec![("model.embed_dim", toml::Value::from(32))],
        vec![("model.num_heads", 4.into())],
        vec![("model.adapter", "dual_layer_norm".into())],
        vec![("model.depth", 2.into())],
        vec![("optim.lr", 0.01.into())],
    ] {
        let e = bench
            .train(&bench.config(&sets), true)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("the configuration differs"), "{sets:?}: {e}");
        assert_eq!(snapshot(&run), before, "{sets:?} changed the run");
    }
    let two = bench.config(&[("optim.epochs", 2.into())]);
    let resumed = bench.train(&two, true).expect("one more epoch");
    assert_eq!(resumed.epochs.len(), 2, "the summary holds both epochs");
    let history = std::fs::read_to_string(run.join("history.jsonl")).expect("history");
    let records =
        advsoup_records::resume::parse_history(&history, Path::new("h")).expect("records");
    assert_eq!(records.len(), 1, "{history}");
    assert_eq!(records[0].epoch, 1);
    assert_eq!(records[0].changed[0].to_string(), "optim.epochs 1 -> 2");
    // A run made before fingerprints is checked through its config.toml, and gets one.
    std::fs::remove_file(run.join("fingerprint.json")).expect("rm");
    let e = bench
        .train(
            &bench.config(&[("optim.epochs", 3.into()), ("seed", 5.into())]),
            true,
        )
        .expect_err("seed changed")
        .to_string();
    assert!(e.contains("seed 1 -> 5"), "{e}");
    bench
        .train(&bench.config(&[("optim.epochs", 3.into())]), true)
        .expect("old run resumed");
    assert!(run.join("fingerprint.json").is_file());
}

#[test]
fn a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_never_blocks() {
    let _rng = test_support::serial();
    let bench = Bench::new();
    let cfg = bench.config(&[]);
    let run = bench.run_dir();
    let lock = advsoup_io::DirLock::acquire(&run).expect("lock");
    let e = bench.train(&cfg, false).expect_err("locked").to_string();
    let pid = std::process::id();
    assert!(e.contains(&format!("in use by process {pid}")), "{e}");
    assert!(!run.join("config.toml").exists(), "nothing written");
    drop(lock);
    // A holder killed by SIGKILL: flock(1) holds the lock file in a child process.
    let Ok(mut child) = std::process::Command::new("flock")
        .arg("-o")
        .arg(run.join(advsoup_io::lock::LOCK_FILE))
        .args(["sleep", "30"])
        .spawn()
    else {
        eprintln!("skipped the killed holder: no flock(1) here");
        return;
    };
    // Wait (probing without taking the lock for long) until the child holds it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let held = loop {
        let probe = std::fs::File::open(run.join(advsoup_io::lock::LOCK_FILE)).ok();
        match probe.as_ref().map(std::fs::File::try_lock) {
            Some(Err(std::fs::TryLockError::WouldBlock)) => break true,
            _ if std::time::Instant::now() > deadline => break false,
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    let refused = bench.train(&cfg, false).is_err();
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(held && refused, "the child's lock was not honoured");
    bench
        .train(&cfg, false)
        .expect("the killed holder's lock does not block");
}

#[test]
fn a_stop_during_the_final_evaluation_exits_interrupted_and_resumes_to_the_same_table() {
    let _rng = test_support::serial();
    let bench = Bench::new();
    let cfg = bench.config(&[]);
    bench.train(&cfg, false).expect("trained");
    let run = bench.run_dir();
    let table = std::fs::read(run.join("final.json")).expect("final.json");
    // Where a run stands when a signal comes during its final evaluation: every epoch
    // checkpointed, the weights written, no table yet.
    std::fs::remove_file(run.join("final.json")).expect("rm final.json");
    std::fs::remove_file(run.join("final.md")).expect("rm final.md");
    let splits = load_data(&cfg, false).expect("data");
    let mut options = RunOptions::new(bench.runs());
    options.resume = true;
    options
        .stop
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let e = train::<Autodiff<Flex>>(&cfg, &splits, &options, &Default::default())
        .expect_err("a stop request ends the final evaluation");
    assert!(
        matches!(&e, TrainError::Interrupted { dir } if *dir == run),
        "{e}"
    );
    assert!(
        !run.join("final.json").exists(),
        "no table from a stopped evaluation"
    );
    assert!(
        run.join("checkpoint").is_dir(),
        "the checkpoint stays for --resume"
    );
    bench.train(&cfg, true).expect("resumed");
    assert_eq!(
        std::fs::read(run.join("final.json")).expect("final.json"),
        table,
        "the resumed evaluation writes the uninterrupted run's table"
    );
}
