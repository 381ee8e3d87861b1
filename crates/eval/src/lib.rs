//! advsoup-eval: evaluation of an adapted model — clean accuracy in a mode, robust accuracy of
//! a mode under an attack ensemble from `advsoup-attacks`, report cards, and resumable results.
//!
//! - [`EvalJob`]: ONE robust evaluation (mode, ensemble, batch size, range of a split) with
//!   [`EvalJob::run`], [`EvalJob::run_each`] (every batch's adversarial examples),
//!   [`EvalJob::count`], [`EvalJob::run_chunked`] / [`EvalJob::run_to_file`] (chunks kept in a
//!   [`Resumable`] store, so a killed evaluation continues) and [`EvalJob::write_adversarial`].
//!   [`EvalJob::on_progress`] hands the caller a [`Progress`] after every batch (the cli draws
//!   it). A damaged streamed image is an [`EvalError::Data`] naming the file, never a panic;
//!   logits with NaN or inf on the first batch are refused ([`EvalError::NonFinite`]).
//!   It attacks a frozen deterministic copy; sample ids are dataset indices, so chunks, shards
//!   and resumed evaluations merge to exactly the one-pass report.
//! - [`eval_batches`], [`correct_count`], [`accuracy`]: clean top-1 of a route, in order, over a
//!   range of a split (optionally masked to a class subset, as for ImageNet-R/-A).
//! - [`report`]: RobustBench-style report cards (JSON + markdown) and model content hashes.
//! - [`Resumable`]: finished pieces of a long computation kept in `<out>.partial/`.
//!
//! What it must not do: train, choose anything on the test split, know a config file format,
//! or print (it logs with `tracing`). File writes go through [`advsoup_io::write_atomic`].
//! `cargo run -p advsoup-eval --example evaluate` runs a whole evaluation on a random model.
//!
//! ```
//! use advsoup_adapters::{AdaptedVitConfig, AdapterKind, Mode, Route};
//! use advsoup_attacks::{Evaluator, ThreatModel};
//! use advsoup_data::ImageDataset;
//! use advsoup_eval::EvalJob;
//! use advsoup_vit::VitConfig;
//! use burn::backend::{Autodiff, Flex};
//! use burn::module::AutodiffModule;
//!
//! let device = Default::default();
//! let vit = VitConfig::new().with_img_size(8).with_patch_size(4).with_in_chans(1).with_num_classes(3).with_embed_dim(16).with_depth(1).with_num_heads(2).with_mean(vec![0.5]).with_std(vec![0.5]);
//! let model = AdaptedVitConfig { vit, adapter: AdapterKind::ClsToken }
//!     .try_init::<Autodiff<Flex>>(&device)?;
//! let data = ImageDataset::new([1, 8, 8], vec![128; 4 * 64], vec![0, 1, 2, 0], 3)?;
//! let clean = advsoup_eval::accuracy(&model.valid(), &data, &Route::mode(Mode::Clean), 2, &device)?;
//! let evaluator = Evaluator::preset("pgd-2", ThreatModel::Linf, 0.1, 0)?;
//! let job = EvalJob::new(evaluator, Mode::Adversarial).batch_size(2);
//! let report = job.run::<Autodiff<Flex>>(&model.valid(), &data, &device)?.expect("4 samples");
//! assert!(report.robust_accuracy <= report.clean_accuracy && (0.0..=1.0).contains(&clean));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

/// The burn this crate is built on (`=0.21.0`), so users get the matching version and types.
pub use burn;

use std::path::PathBuf;

mod adversarial;
mod clean;
mod job;
pub mod report;
mod resumable;

pub use adversarial::AdversarialSet;
pub use clean::{accuracy, check_finite, correct_count, eval_batches, inner};
pub use job::{DEFAULT_BATCH_SIZE, EvalJob, Progress, mode_tag};
pub use resumable::Resumable;

/// Why an evaluation's files could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file or directory operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`reading`, `creating`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An atomic write failed.
    #[error(transparent)]
    Write(#[from] advsoup_io::PathError),
    /// A stored piece of a result is not valid JSON of the expected shape.
    #[error("{}: a damaged partial result (delete it): {source}", path.display())]
    Damaged {
        /// The piece.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A value could not be serialized for a file.
    #[error("{}: serializing: {source}", path.display())]
    Json {
        /// The file it was meant for.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A safetensors file could not be built.
    #[error("{}: {message}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The job's range holds no sample of the split.
    #[error("no samples to evaluate")]
    NoSamples,
    /// A sample could not be read (a damaged streamed image, named).
    #[error(transparent)]
    Data(#[from] advsoup_data::DataError),
    /// The model's logits hold NaN or ±inf: its weights are unusable, and evaluating it would
    /// report the accuracy of a constant prediction.
    #[error("{what} are not finite (NaN or inf): the model's weights are unusable")]
    NonFinite {
        /// Which logits (e.g. "the model's logits on the first batch").
        what: String,
    },
}

/// Writes `value` as pretty JSON to `path`, atomically.
fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<(), EvalError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| EvalError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(advsoup_io::write_atomic(path, &bytes)?)
}
