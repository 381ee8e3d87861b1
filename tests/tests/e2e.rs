//! End-to-end tests through the cli's library API on generated data (no network): a smoke run of
//! co-training + evaluation, exact resume after an interruption, and clear config errors.

use std::path::Path;

use advsoup_e2e::{cli, serial, tiny_config, train, write_idx};

#[test]
fn smoke_one_co_training_step_then_evaluation() {
    let _rng = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    write_idx(&data, 84, 40);
    let config = tiny_config(tmp.path(), &data, 1);
    let runs = tmp.path().join("runs");
    // One co-training step, checkpointed.
    train(&config, &runs, &["--max-steps", "1"]).expect("one step");
    let run_dir = runs.join("tiny");
    assert!(run_dir.join("checkpoint/model.bin").is_file());
    assert!(run_dir.join("config.toml").is_file() && run_dir.join("run.json").is_file());
    assert!(!run_dir.join("final.json").exists());
    // Finish the (tiny) epoch and evaluate.
    train(&config, &runs, &["--resume"]).expect("finish");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("final.json")).expect("final.json"))
            .expect("json");
    for key in ["clean_mode_clean_acc", "robust_mode_robust_acc"] {
        let v = report[key].as_f64().expect(key);
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(report["n_clean"], 40);
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics");
    assert_eq!(metrics.lines().count(), 1);
    // A separate evaluation of the run.
    cli(&[
        "eval",
        "--run",
        run_dir.to_str().expect("utf8"),
        "--attack",
        "pgd-3",
        "--eps",
        "0.1",
        "--n",
        "8",
    ])
    .expect("eval");
    assert!(run_dir.join("eval-pgd-3-0.1-robust.json").is_file());
    // Adversarial examples with their per-sample status.
    let out = tmp.path().join("adv");
    cli(&[
        "attack",
        "--run",
        run_dir.to_str().expect("utf8"),
        "--attack",
        "fgsm",
        "--eps",
        "0.1",
        "--n",
        "6",
        "--out",
        out.to_str().expect("utf8"),
    ])
    .expect("attack");
    let bytes = std::fs::read(out.with_extension("safetensors")).expect("x_adv file");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    assert_eq!(st.tensor("x_adv").expect("x_adv").shape(), &[6, 1, 28, 28]);
    assert_eq!(st.tensor("robust").expect("robust").shape(), &[6]);
    // Without --resume an existing run is refused, naming the directory.
    let err = train(&config, &runs, &[]).unwrap_err();
    assert!(format!("{err:#}").contains("--resume"), "{err:#}");
}

fn max_abs_diff(a: &[u8], b: &[u8]) -> f32 {
    assert_eq!(a.len(), b.len());
    let f = |c: &[u8]| f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    a.chunks_exact(4)
        .zip(b.chunks_exact(4))
        .map(|(x, y)| (f(x) - f(y)).abs())
        .fold(0.0, f32::max)
}

/// Drops timing fields and rounds the loss to 1e-5 (see `max_abs_diff`).
fn strip_timing(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("train_seconds");
        o.remove("images_per_s");
        if let Some(l) = o.get("loss").and_then(|l| l.as_f64()) {
            o.insert("loss".into(), serde_json::json!((l * 1e5).round() as i64));
        }
    }
    v
}

#[test]
fn interrupted_and_resumed_run_equals_uninterrupted_run() {
    let _rng = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    write_idx(&data, 84, 30);
    let config = tiny_config(tmp.path(), &data, 2);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train(&config, &a, &[]).expect("uninterrupted");
    // Stop mid-epoch twice (after 2 steps, then 3 more across an epoch end), resuming each
    // time.
    train(&config, &b, &["--max-steps", "2"]).expect("part 1");
    train(&config, &b, &["--resume", "--max-steps", "3"]).expect("part 2");
    train(&config, &b, &["--resume"]).expect("rest");
    let read = |dir: &Path, f: &str| std::fs::read(dir.join("tiny").join(f)).expect(f);
    let (ma, mb) = (read(&a, "model.safetensors"), read(&b, "model.safetensors"));
    let (ta, tb) = (
        safetensors::SafeTensors::deserialize(&ma).expect("model a"),
        safetensors::SafeTensors::deserialize(&mb).expect("model b"),
    );
    let mut names = ta.names();
    names.sort();
    assert!(names.len() > 10);
    // Bit for bit in a real process; compared to 1e-5 as a margin for the backend's
    // floating-point summation order.
    for n in names {
        let (x, y) = (ta.tensor(n).expect("a"), tb.tensor(n).expect("b"));
        let diff = max_abs_diff(x.data(), y.data());
        assert!(diff <= 1e-5, "parameter {n} differs after resume by {diff}");
    }
    let json =
        |dir: &Path| strip_timing(serde_json::from_slice(&read(dir, "final.json")).expect("json"));
    assert_eq!(json(&a), json(&b));
    let lines = |dir: &Path| -> Vec<serde_json::Value> {
        String::from_utf8(read(dir, "metrics.jsonl"))
            .expect("utf8")
            .lines()
            .map(|l| strip_timing(serde_json::from_str(l).expect("line")))
            .collect()
    };
    assert_eq!(lines(&a), lines(&b));
}

#[test]
fn bad_configs_get_one_clear_error() {
    let _rng = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let config = tiny_config(tmp.path(), &data, 1);
    let runs = tmp.path().join("runs");
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "optim.epocs=3"], "unknown field `epocs`"),
        (&["--set", "attack.train.eps=0"], "attack.train.eps"),
        (&["--set", "attack.train.eps=1.5"], "attack.train.eps"),
        (
            &["--set", "attack.train.step_size=0.5"],
            "attack.train.step_size",
        ),
        (&["--regime", "madry"], "unknown regime `madry`"),
        (
            &["--set", "model.embed_dim=15"],
            "embed_dim 15 is not divisible by num_heads 2",
        ),
    ];
    for (extra, needle) in cases {
        let err = format!("{:#}", train(&config, &runs, extra).unwrap_err());
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    assert!(!runs.exists(), "nothing may be written for a bad config");
}

#[test]
fn two_identical_runs_give_identical_models() {
    let _rng = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    write_idx(&data, 84, 30);
    let config = tiny_config(tmp.path(), &data, 1);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train(&config, &a, &[]).expect("a");
    train(&config, &b, &[]).expect("b");
    let read = |dir: &Path| std::fs::read(dir.join("tiny/model.safetensors")).expect("model");
    let (ma, mb) = (read(&a), read(&b));
    let (ta, tb) = (
        safetensors::SafeTensors::deserialize(&ma).expect("a"),
        safetensors::SafeTensors::deserialize(&mb).expect("b"),
    );
    for n in ta.names() {
        assert!(
            ta.tensor(n).expect("a").data() == tb.tensor(n).expect("b").data(),
            "{n} differs"
        );
    }
}

#[test]
fn every_regime_trains() {
    let _rng = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    write_idx(&data, 52, 20);
    let config = tiny_config(tmp.path(), &data, 1);
    for regime in ["nominal", "adversarial", "co_training"] {
        let runs = tmp.path().join(regime);
        train(&config, &runs, &["--regime", regime]).expect(regime);
        let resolved =
            std::fs::read_to_string(runs.join("tiny/config.toml")).expect("resolved config");
        assert!(
            resolved.contains(&format!("regime = \"{regime}\"")),
            "{resolved}"
        );
        assert!(runs.join("tiny/final.json").is_file(), "{regime}");
    }
}
