//! Scale-out through the cli's library API: `advsoup train --dry-run` plans the ImageNet recipe
//! without data, and `--devices 2` (two data-parallel peers on the CPU, gradients all-reduced by
//! burn's collective) trains the same model as one device with the same global batch.

use std::path::{Path, PathBuf};

use advsoup_e2e::{TinyConfig, cli, serial, train, write_idx};

fn imagenet_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/imagenet-vit-b16-cls.toml")
        .to_str()
        .expect("utf8")
        .to_string()
}

/// The tiny experiment with mixup, CutMix and label smoothing on, for 2 epochs.
fn tiny_config(dir: &Path, data: &Path) -> PathBuf {
    TinyConfig::new(data, 2)
        .set("seed", 11)
        .set("data.mixup_alpha", 0.8)
        .set("data.cutmix_alpha", 1.0)
        .set("data.label_smoothing", 0.1)
        .write(dir)
}

#[test]
fn dry_run_plans_the_imagenet_recipe_without_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let runs = tmp.path().join("runs");
    let config = imagenet_config();
    let base = [
        "train",
        "--config",
        &config,
        "--runs-dir",
        runs.to_str().expect("utf8"),
    ];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        cli(&args)
    };
    with(&["--dry-run"]).expect("one device");
    with(&["--dry-run", "--devices", "8", "--nodes", "4"]).expect("4 nodes x 8 devices");
    assert!(!runs.exists(), "a dry run writes nothing");
    for (extra, needle) in [
        (&["--dry-run", "--devices", "3"][..], "optim.batch_size"),
        (&["--nodes", "2"][..], "--coordinator"),
        (
            &[
                "--dry-run",
                "--nodes",
                "2",
                "--node-rank",
                "2",
                "--coordinator",
                "h:1",
            ][..],
            "--node-rank",
        ),
        (&["--dry-run", "--devices", "0"][..], "--devices"),
    ] {
        let e = format!("{:#}", with(extra).expect_err(needle));
        assert!(e.contains(needle) && !e.contains('\n'), "{extra:?}: {e}");
    }
}

fn read_f32s(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).expect("model");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let data = st.tensor(&n).expect("tensor").data().to_vec();
            let v = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (n, v)
        })
        .collect()
}

/// `other`'s run trained the same model as `one`'s: parameters within 1e-5, the same loss per
/// epoch (within 1e-5) and the same accuracies.
fn assert_same_run(one: &Path, other: &Path) {
    let (a, b) = (
        read_f32s(&one.join("tiny/model.safetensors")),
        read_f32s(&other.join("tiny/model.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let diff = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(diff <= 1e-5, "{name} differs by {diff}");
    }
    let metrics = |dir: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("tiny/metrics.jsonl"))
            .expect("metrics")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    };
    let (ma, mb) = (metrics(one), metrics(other));
    assert_eq!(ma.len(), 2);
    assert_eq!(ma.len(), mb.len());
    for (x, y) in ma.iter().zip(&mb) {
        let loss = |v: &serde_json::Value| v["loss"].as_f64().expect("loss");
        assert!((loss(x) - loss(y)).abs() <= 1e-5, "{x} vs {y}");
        assert_eq!(x["clean_acc"], y["clean_acc"]);
        assert_eq!(x["robust_acc"], y["robust_acc"]);
    }
}

#[test]
fn two_cpu_peers_train_the_one_device_model() {
    let _rng = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    write_idx(&data, 84, 30);
    let config = tiny_config(tmp.path(), &data);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    train(&config, &one, &["--devices", "1"]).expect("one device");
    train(&config, &two, &["--devices", "2"]).expect("two peers");
    assert_same_run(&one, &two);
    let run_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(two.join("tiny/run.json")).expect("run.json"))
            .expect("json");
    assert_eq!(run_json["devices"], 2);
}

const BIN: &str = env!("CARGO_BIN_EXE_advsoup-e2e-bin");

/// A free TCP port on 127.0.0.1 and the next two (the coordinator's, then each node's data
/// service: `--coordinator` port + 1 + rank).
fn free_ports() -> u16 {
    (20000..60000)
        .step_by(7)
        .find(|p| (0..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()))
        .expect("a free port")
}

/// Runs `ranks` of a 2-node run on 127.0.0.1 as processes (node R into `<runs>/<R>`), with
/// multi-node training allowed or not, and waits at most `secs` for them: a deadlocked
/// all-reduce never returns, so leftovers are killed and reported as `None` instead of hanging
/// the test. Returns each node's exit status and stderr.
fn run_nodes(
    config: &Path,
    runs: &Path,
    ranks: &[usize],
    allow: bool,
    secs: u64,
) -> Vec<(Option<std::process::ExitStatus>, String)> {
    let port = free_ports();
    let log = |rank: usize| runs.join(format!("node{rank}.log"));
    std::fs::create_dir_all(runs).expect("mkdir");
    let mut children: Vec<_> = ranks
        .iter()
        .map(|&rank| {
            let mut c = std::process::Command::new(BIN);
            c.args(["train", "--quiet", "--config"])
                .arg(config)
                .arg("--runs-dir")
                .arg(runs.join(rank.to_string()))
                .args(["--nodes", "2", "--node-rank", &rank.to_string()])
                .args(["--coordinator", &format!("127.0.0.1:{port}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(log(rank)).expect("log"));
            if allow {
                c.env(advsoup_cli::MULTI_NODE_ENV, "1");
            } else {
                c.env_remove(advsoup_cli::MULTI_NODE_ENV);
            }
            c.spawn().expect("spawn")
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut status = vec![None; ranks.len()];
    while status.iter().any(Option::is_none) && std::time::Instant::now() < deadline {
        for (s, child) in status.iter_mut().zip(&mut children) {
            if s.is_none() {
                *s = child.try_wait().expect("wait");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for child in &mut children {
        let _ = child.kill();
    }
    status
        .into_iter()
        .zip(ranks)
        .map(|(s, &rank)| (s, std::fs::read_to_string(log(rank)).unwrap_or_default()))
        .collect()
}

/// Stock burn-collective 0.21.0 deadlocks on the second global all-reduce: a multi-node run is
/// refused up front, in one line that says why and what to do, instead of hanging after a step.
#[test]
fn several_nodes_are_refused_on_stock_burn_collective() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    write_idx(&data, 84, 30);
    let config = tiny_config(tmp.path(), &data);
    let runs = tmp.path().join("runs");
    let [(status, err)] =
        <[_; 1]>::try_from(run_nodes(&config, &runs, &[0], false, 60)).expect("one node");
    let status = status.unwrap_or_else(|| panic!("not refused: still running after 60 s: {err}"));
    assert!(!status.success());
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in {err}"));
    assert!(
        line.contains("--nodes") && line.contains(advsoup_cli::MULTI_NODE_ENV),
        "{line}"
    );
    assert!(!runs.join("0/tiny").exists(), "nothing written");
}

/// Two nodes (two processes on 127.0.0.1, burn's global collective) train the one-device model.
///
/// Needs a burn-collective whose `SyncService::sync` clears its shared peer list (README,
/// "Several machines"); on stock 0.21.0 the second all-reduce never returns. Run with
/// `cargo test -p advsoup-e2e --test parallel -- --ignored two_nodes` on such a build.
#[test]
#[ignore = "needs burn-collective with the sync fix; stock 0.21.0 deadlocks (README, Several machines)"]
fn two_nodes_on_localhost_train_the_one_device_model() {
    let _rng = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    write_idx(&data, 84, 30);
    let config = tiny_config(tmp.path(), &data);
    let (one, nodes) = (tmp.path().join("one"), tmp.path().join("nodes"));
    train(&config, &one, &["--devices", "1"]).expect("one device");
    for (rank, (status, err)) in run_nodes(&config, &nodes, &[0, 1], true, 300)
        .into_iter()
        .enumerate()
    {
        match status {
            Some(s) => assert!(s.success(), "node {rank}: {err}"),
            None => panic!("node {rank} still running after 300 s (deadlock?): {err}"),
        }
    }
    // Node 0 (rank 0) writes the run; node 1 writes nothing.
    assert_same_run(&one, &nodes.join("0"));
    assert!(!nodes.join("1/tiny/model.safetensors").exists());
}
