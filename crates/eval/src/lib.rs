//! advsoup-eval: evaluation of an adapted model — clean accuracy in a mode, robust accuracy of
//! a mode under an attack ensemble from `advsoup-attacks`, report cards, and resumable results.
//!
//! - [`eval_batches`], [`correct_count`], [`accuracy`]: clean top-1 of a route, in order, over a
//!   range of a split (optionally masked to a class subset, as for ImageNet-R/-A).
//! - [`robust_eval`] and friends: robust accuracy under an [`Evaluator`](advsoup_attacks::Evaluator),
//!   attacking a frozen deterministic copy; sample ids are dataset indices, so chunks, shards and
//!   resumed evaluations merge to exactly the one-pass report.
//! - [`report`]: RobustBench-style report cards (JSON + markdown) and model content hashes.
//! - [`Resumable`]: finished pieces of a long evaluation kept in `<out>.partial/`.
//!
//! What it must not do: train, choose anything on the test split, know a config file format,
//! or print (it logs with `tracing`). File writes go through [`advsoup_io::write_atomic`].
//!
//! ```
//! use advsoup_adapters::{AdaptedVitConfig, AdapterKind, Mode, Route};
//! use advsoup_data::ImageDataset;
//! use advsoup_vit::VitConfig;
//! use burn::backend::Flex;
//!
//! let device = Default::default();
//! let vit = VitConfig::new(8, 4, 1, 3, 16, 1, 2).with_mean(vec![0.5]).with_std(vec![0.5]);
//! let model = AdaptedVitConfig { vit, adapter: AdapterKind::ClsToken }.try_init::<Flex>(&device)?;
//! let data = ImageDataset::new([1, 8, 8], vec![128; 4 * 64], vec![0, 1, 2, 0], 3)?;
//! let acc = advsoup_eval::accuracy(&model, &data, &Route::mode(Mode::Clean), 2, &device);
//! assert!((0.0..=1.0).contains(&acc));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

use std::path::PathBuf;

mod clean;
pub mod report;
mod resumable;
mod robust;

pub use clean::{accuracy, correct_count, eval_batches, inner};
pub use resumable::Resumable;
pub use robust::{robust_count, robust_eval, robust_eval_each, robust_eval_range_each};

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
}
