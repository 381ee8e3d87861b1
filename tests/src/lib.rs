//! Test support for advsoup's end-to-end tests (`tests/tests/*.rs`): generated datasets and
//! configs, so that no test needs the network. The `advsoup-e2e-bin` binary is the `advsoup`
//! command built inside this package, so that tests can run (and SIGKILL) a real process.

use std::path::{Path, PathBuf};

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

/// Writes a small Fashion-MNIST-shaped IDX dataset (28x28, 10 classes) whose classes are
/// learnable: class c has a bright horizontal band at row 2c.
///
/// # Panics
/// When the files cannot be written (test support).
pub fn write_idx(dir: &Path, train: usize, test: usize) {
    let d = dir.join("fashion-mnist");
    std::fs::create_dir_all(&d).expect("mkdir");
    let images = |n: usize, salt: usize| {
        let mut v = vec![0u8, 0, 8, 3];
        for x in [n as u32, 28, 28] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        for i in 0..n {
            let class = i % 10;
            for r in 0..28 {
                for c in 0..28 {
                    let band = r / 2 == class + 2;
                    let noise = ((i * 31 + r * 7 + c * 13 + salt) % 17) as u8;
                    v.push(if band { 200 + noise } else { noise * 3 });
                }
            }
        }
        v
    };
    let labels = |n: usize| {
        let mut v = vec![0u8, 0, 8, 1];
        v.extend_from_slice(&(n as u32).to_be_bytes());
        v.extend((0..n).map(|i| (i % 10) as u8));
        v
    };
    std::fs::write(d.join("train-images-idx3-ubyte"), images(train, 0)).expect("write");
    std::fs::write(d.join("train-labels-idx1-ubyte"), labels(train)).expect("write");
    std::fs::write(d.join("t10k-images-idx3-ubyte"), images(test, 5)).expect("write");
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), labels(test)).expect("write");
}

/// Writes `dir/tiny.toml`: a 1-block ViT co-trained on the data of [`write_idx`] under `data`
/// for `epochs` epochs (batch 16).
///
/// # Panics
/// When the file cannot be written (test support).
pub fn tiny_config(dir: &Path, data: &Path, epochs: usize) -> PathBuf {
    let text = format!(
        r#"
name = "tiny"
seed = 3
regime = "co_training"

[model]
preset = "vit_mini_patch4_28"
adapter = "cls_token"
patch_size = 7
embed_dim = 16
depth = 1
num_heads = 2
mlp_ratio = 2.0

[data]
dataset = "fashion-mnist"
data_dir = "{}"
held_out = 20
crop_padding = 1
workers = 0

[attack.train]
eps = 0.1
num_steps = 2
step_size = 0.0625

[attack.eval]
eps = 0.1
num_steps = 3
step_size = 0.05

[optim]
epochs = {epochs}
batch_size = 16
lr = 1e-3
warmup_epochs = 0.5
weight_decay = 0.05
grad_clip = 1.0

[eval]
held_out_robust = 10
test_robust = 20
test_attack = "pgd-5"
batch_size = 32
"#,
        data.display()
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).expect("write config");
    path
}
