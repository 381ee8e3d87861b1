//! advsoup-train: adversarial co-training with adapters, end to end — the one crate that combines
//! `vit`, `adapters`, `attacks` and `data`.
//!
//! - [`TrainConfig`]: the `configs/*.toml` format (unknown keys rejected, `--set` overrides,
//!   [`TrainConfig::validate`]).
//! - Regimes are burn [`TrainStep`](burn::train::TrainStep) impls ([`step::Nominal`],
//!   [`step::Adversarial`], [`step::CoTraining`]) driven by ONE loop, [`train`]. Co-training
//!   crafts PGD against the robust mode of a frozen deterministic copy and routes the clean and
//!   adversarial halves through their own adapters in one mixed batch.
//! - A run directory holds the resolved config, `run.json` (seed, git revision), `metrics.jsonl`,
//!   an atomic checkpoint (model, optimizer, loop state; resumable bit for bit on CPU because every
//!   step reseeds the backend from (seed, step)), and at the end `model.safetensors`,
//!   `adapter.safetensors`, `final.json`/`final.md`.
//!
//! - Scale-out: [`Plan`] resolves a config on a [`Topology`] (global batch → devices x
//!   micro-batches x gradient-accumulation steps, schedule, attack cost; `--dry-run`), and with
//!   the `collective` feature [`train_parallel`] runs one peer per device on several machines,
//!   all-reducing gradients every step ([`parallel`]); evaluation is sharded and summed. Weight
//!   EMA (`optim.ema_decay`), timm-style RandAugment and RandomResizedCrop, ImageFolder data and
//!   distribution-shift sets (ImageNet-C/-R/-A/-Sketch layouts, 200-class masking) are config
//!   fields.
//!
//! What it must not do: choose anything on the test split (per-epoch metrics use the held-out
//! slice of train), or print (it logs with `tracing`; the progress bar is opt-in).
//!
//! ```no_run
//! use advsoup_train::{RunOptions, TrainConfig, load_data, train};
//! use burn::backend::{Autodiff, Flex};
//!
//! let config = TrainConfig::load("configs/fmnist-cls.toml".as_ref(), &["optim.epochs=1".into()])?;
//! let splits = load_data(&config, true)?;
//! let device = Default::default();
//! let summary = train::<Autodiff<Flex>>(&config, &splits, &RunOptions::new("runs"), &device)?;
//! println!("{}", summary.report.expect("finished").table());
//! # Ok::<(), advsoup_train::TrainError>(())
//! ```
#![warn(missing_docs)]

use std::path::PathBuf;

pub mod config;
pub mod eval;
pub mod parallel;
pub mod plan;
pub mod run;
mod shard;
pub mod step;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use config::{Regime, TrainConfig};
#[cfg(feature = "collective")]
pub use parallel::train_parallel;
pub use parallel::{MULTI_NODE_ENV, multi_node_allowed};
pub use plan::{Plan, Topology};
pub use run::{EpochMetrics, FinalReport, RunOptions, RunSummary, final_report, train};

#[cfg(test)]
pub(crate) mod test_support {
    /// burn seeds one generator per backend per process: tests that train hold this lock.
    static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

    pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
        BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why training or evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file is malformed or invalid.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A config value is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What was expected.
        message: String,
    },
    /// The run directory already has a checkpoint and `--resume` was not given.
    #[error("{dir} already holds a run: pass --resume to continue it, or choose another name")]
    RunExists {
        /// The run directory.
        dir: PathBuf,
    },
    /// A checkpoint could not be written or read.
    #[error("{path}: checkpoint: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The loss became NaN or infinite.
    #[error("non-finite loss {loss} at step {step} (epoch {}); the last good checkpoint is in {dir}", epoch + 1)]
    NonFinite {
        /// Global step.
        step: usize,
        /// Epoch (0-based).
        epoch: usize,
        /// The loss.
        loss: f64,
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// Stopped on request (Ctrl-C) after writing a checkpoint.
    #[error("interrupted; checkpoint saved, continue with --resume ({dir})")]
    Interrupted {
        /// The run directory.
        dir: PathBuf,
    },
    /// Data could not be loaded.
    #[error(transparent)]
    Data(#[from] advsoup_data::DataError),
    /// An attack config is invalid.
    #[error("attack: {0}")]
    Attack(advsoup_attacks::AttackError),
    /// A model or adapter file could not be written.
    #[error(transparent)]
    Adapter(advsoup_adapters::io::AdapterIoError),
    /// Data-parallel setup or communication failed.
    #[error("data-parallel: {0}")]
    Collective(String),
}

/// Writes a file atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), TrainError> {
    advsoup_vit::io::write_atomic(path, bytes).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Loads the config's dataset as train / held-out / test, fetching it first when `fetch` is
/// set and it is not cached; `data.train_limit` keeps the first N training samples. An ImageFolder config reads `data.train_dir` (decoded at
/// `data.load_size`, default the model's input size) and `data.val_dir` as the test split
/// (shorter side resized to 8/7 of the input size, center crop, as timm evaluates at 224).
pub fn load_data(config: &TrainConfig, fetch: bool) -> Result<advsoup_data::Splits, TrainError> {
    let mut splits = load_splits(config, fetch)?;
    if let Some(n) = config.data.train_limit
        && n < splits.train.num_samples()
    {
        splits.train = splits.train.subset(&(0..n).collect::<Vec<_>>());
    }
    Ok(splits)
}

fn load_splits(config: &TrainConfig, fetch: bool) -> Result<advsoup_data::Splits, TrainError> {
    let kind = match config.data.dataset.kind() {
        config::DataKind::Builtin(kind) => kind,
        config::DataKind::ImageFolder => return load_folders(config),
    };
    let dir = advsoup_data::resolve_data_dir(config.data.data_dir.as_deref())?;
    match advsoup_data::load_splits(kind, &dir, config.data.held_out, config.seed) {
        Err(advsoup_data::DataError::NotCached { .. }) if fetch => {
            advsoup_data::fetch(kind, &dir)?;
            Ok(advsoup_data::load_splits(
                kind,
                &dir,
                config.data.held_out,
                config.seed,
            )?)
        }
        other => Ok(other?),
    }
}

fn missing(field: &str) -> TrainError {
    TrainError::Invalid {
        field: field.into(),
        message: "required when data.dataset = \"image-folder\"".into(),
    }
}

/// The class index of an ImageFolder config: `data.class_index`, else the sorted class folders
/// of `data.train_dir`.
pub fn class_index(config: &TrainConfig) -> Result<advsoup_data::folder::ClassIndex, TrainError> {
    use advsoup_data::folder::ClassIndex;
    let d = &config.data;
    Ok(match &d.class_index {
        Some(p) => ClassIndex::read(p)?,
        None => ClassIndex::from_dir(
            d.train_dir
                .as_deref()
                .ok_or_else(|| missing("data.train_dir"))?,
        )?,
    })
}

fn load_folders(config: &TrainConfig) -> Result<advsoup_data::Splits, TrainError> {
    use advsoup_data::folder::{FolderOptions, load_image_folder, stream_image_folder};
    let d = &config.data;
    let read = if d.stream {
        stream_image_folder
    } else {
        load_image_folder
    };
    let train_dir = d
        .train_dir
        .as_deref()
        .ok_or_else(|| missing("data.train_dir"))?;
    let val_dir = d
        .val_dir
        .as_deref()
        .ok_or_else(|| missing("data.val_dir"))?;
    let index = class_index(config)?;
    let vit = config.vit()?;
    let img = vit.img_size as u32;
    let load = d.load_size.map_or(img, |s| s as u32);
    let train = read(
        train_dir,
        &index,
        &FolderOptions {
            channels: vit.in_chans,
            resize_shorter: Some(load),
            center_crop: Some(load),
        },
    )?;
    let val = read(
        val_dir,
        &index,
        &FolderOptions {
            channels: vit.in_chans,
            resize_shorter: Some((img * 8).div_ceil(7)),
            center_crop: Some(img),
        },
    )?;
    Ok(advsoup_data::Splits::from_train_test(
        train,
        val,
        d.held_out,
        config.seed,
    )?)
}

/// Training samples after the held-out slice, known without reading data: the official size of
/// a builtin dataset, or `data.train_samples` of an ImageFolder config.
pub fn planned_train_samples(config: &TrainConfig) -> Result<usize, TrainError> {
    let total = config
        .data
        .train_samples
        .or(config.data.dataset.train_size())
        .ok_or_else(|| TrainError::Invalid {
            field: "data.train_samples".into(),
            message: "needed to plan an ImageFolder run without reading the data".into(),
        })?;
    total
        .checked_sub(config.data.held_out)
        .ok_or_else(|| TrainError::Invalid {
            field: "data.held_out".into(),
            message: format!(
                "{} exceeds the {total} training samples",
                config.data.held_out
            ),
        })
}

#[cfg(test)]
mod folder_tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    /// `<root>/<split>/c<k>/<i>.png`: 28x28 grey images whose class k has a bright band.
    fn tree(root: &std::path::Path, split: &str, per_class: usize) {
        for k in 0..2u32 {
            let dir = root.join(split).join(format!("c{k}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            for i in 0..per_class as u32 {
                image::GrayImage::from_fn(28, 28, |x, y| {
                    let band = y / 4 == k * 3 + 1;
                    image::Luma([if band {
                        200
                    } else {
                        ((x * 7 + y * 3 + i) % 40) as u8
                    }])
                })
                .save(dir.join(format!("{i}.png")))
                .expect("png");
            }
        }
    }

    fn config(root: &std::path::Path, stream: bool) -> TrainConfig {
        let text = format!(
            r#"
name = "folder"
seed = 3
regime = "co_training"
[model]
preset = "vit_mini_patch4_28"
adapter = "cls_token"
num_classes = 2
patch_size = 7
embed_dim = 16
depth = 1
num_heads = 2
mlp_ratio = 2.0
[data]
dataset = "image-folder"
train_dir = "{train}"
val_dir = "{val}"
held_out = 4
stream = {stream}
workers = 2
[attack.train]
eps = 0.1
num_steps = 1
step_size = 0.1
[attack.eval]
eps = 0.1
num_steps = 1
step_size = 0.1
[optim]
epochs = 1
batch_size = 8
lr = 1e-3
[eval]
held_out_robust = 4
test_robust = 4
test_attack = "pgd-3"
batch_size = 8
"#,
            train = root.join("train").display(),
            val = root.join("val").display(),
        );
        TrainConfig::parse(&text, "folder.toml".as_ref(), &[]).expect("config")
    }

    /// Two class folders, 10 training and 3 validation images each.
    fn folders() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        tree(dir.path(), "train", 10);
        tree(dir.path(), "val", 3);
        dir
    }

    /// Trains `cfg` on CPU into `<dir>/runs-<tag>`.
    fn run(
        cfg: &TrainConfig,
        splits: &advsoup_data::Splits,
        dir: &std::path::Path,
        tag: &str,
    ) -> RunSummary {
        let out = dir.join(format!("runs-{tag}"));
        train::<Autodiff<Flex>>(cfg, splits, &RunOptions::new(out), &Default::default())
            .expect("train")
    }

    #[test]
    fn a_streamed_image_folder_trains_exactly_like_a_loaded_one() {
        let _rng = test_support::serial();
        let dir = folders();
        let mut runs = Vec::new();
        for stream in [false, true] {
            let cfg = config(dir.path(), stream);
            let splits = load_data(&cfg, false).expect("data");
            assert_eq!(splits.train.is_streamed(), stream);
            assert_eq!(splits.test.is_streamed(), stream);
            assert_eq!(
                (splits.train.num_samples(), splits.held_out.num_samples()),
                (16, 4)
            );
            runs.push(run(&cfg, &splits, dir.path(), &stream.to_string()));
        }
        assert_eq!(runs[0].step_losses.len(), 2);
        assert_eq!(runs[0].step_losses, runs[1].step_losses);
        let (a, b) = (
            runs[0].report.as_ref().expect("report"),
            runs[1].report.as_ref().expect("report"),
        );
        assert_eq!(a.table(), b.table());
    }

    /// `optim.precision = "bf16"`: the run trains (co-training, attack included) with losses
    /// close to the f32 run's, and what it saves is the f32 master weights.
    #[test]
    fn a_bf16_run_follows_the_f32_run_and_keeps_f32_weights() {
        let _rng = test_support::serial();
        let dir = folders();
        let mut runs = Vec::new();
        for precision in ["f32", "bf16"] {
            let mut cfg = config(dir.path(), false);
            cfg.optim.precision = precision.into();
            cfg.validate().expect("valid");
            let splits = load_data(&cfg, false).expect("data");
            runs.push(run(&cfg, &splits, dir.path(), precision));
        }
        let (f32_run, bf16_run) = (&runs[0], &runs[1]);
        assert_eq!(bf16_run.step_losses.len(), 2);
        for (a, b) in f32_run.step_losses.iter().zip(&bf16_run.step_losses) {
            assert!(
                b.is_finite() && (a - b).abs() <= 0.02 * a.abs().max(1.0),
                "{a} vs {b}"
            );
        }
        // bf16 really computed: its losses round differently from f32's.
        assert_ne!(f32_run.step_losses, bf16_run.step_losses);
        let bytes = std::fs::read(bf16_run.dir.join("model.safetensors")).expect("model");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let dtypes: Vec<_> = st.tensors().into_iter().map(|(_, t)| t.dtype()).collect();
        assert!(!dtypes.is_empty());
        assert!(
            dtypes.iter().all(|d| *d == safetensors::Dtype::F32),
            "{dtypes:?}"
        );

        let mut cfg = config(dir.path(), false);
        cfg.optim.precision = "f8".into();
        let e = cfg.validate().expect_err("f8 refused").to_string();
        assert!(
            e.contains("optim.precision") && e.contains("\"f16\""),
            "{e}"
        );
    }

    /// `optim.precision = "f16"` with dynamic loss scaling: at the default scale the run follows
    /// the f32 run and reports the scale; at a scale that overflows f16 every step is skipped,
    /// the scale halves each time, and the weights stay where they started.
    #[test]
    fn an_f16_run_scales_its_loss_and_skips_overflowing_steps() {
        let _rng = test_support::serial();
        let dir = folders();
        let f16 = |scale: f64| {
            let mut cfg = config(dir.path(), false);
            cfg.optim.precision = "f16".into();
            cfg.optim.loss_scale = scale;
            cfg.validate().expect("valid");
            cfg
        };
        let base = config(dir.path(), false);
        let splits = load_data(&base, false).expect("data");
        let f32_run = run(&base, &splits, dir.path(), "f32");
        let scaled = run(&f16(65536.0), &splits, dir.path(), "f16");
        assert_eq!(scaled.step_losses.len(), 2);
        assert_ne!(f32_run.step_losses, scaled.step_losses, "f16 really ran");
        for (a, b) in f32_run.step_losses.iter().zip(&scaled.step_losses) {
            assert!((a - b).abs() <= 0.02 * a.abs().max(1.0), "{a} vs {b}");
        }
        let last = scaled.epochs.last().expect("epoch");
        assert_eq!(
            (last.loss_scale, last.skipped_steps),
            (Some(65536.0), Some(0))
        );
        assert_eq!(f32_run.epochs.last().expect("epoch").loss_scale, None);

        let overflow = run(&f16(1e30), &splits, dir.path(), "f16-overflow");
        let last = overflow.epochs.last().expect("epoch");
        assert_eq!(
            (last.loss_scale, last.skipped_steps),
            (Some(1e30 / 4.0), Some(2))
        );
        // The initial weights: an f32 run whose learning rate rounds to 0 in f32 (AdamW's and
        // the weight decay's updates are then exactly 0).
        let mut frozen = config(dir.path(), false);
        frozen.optim.lr = 1e-46;
        let frozen = run(&frozen, &splits, dir.path(), "lr0");
        let bytes = |r: &RunSummary| std::fs::read(r.dir.join("model.safetensors")).expect("model");
        assert_ne!(bytes(&scaled), bytes(&frozen), "the scaled f16 run trained");
        assert_eq!(
            bytes(&overflow),
            bytes(&frozen),
            "skipped steps leave the weights untouched"
        );
    }
}
