//! advsoup-soup: adversarial model soups — parameter interpolation, the β sweep, per-shift β
//! selection, their records and plots.
//!
//! A soup φ(β) = β·φ_clean + (1 − β)·φ_adv mixes the clean and the adversarial adapter of one
//! co-trained model (Rebuffi et al. 2023); `advsoup_adapters::Mode::Soup(β)` runs it as one
//! forward pass, and this crate evaluates it as a model in its own right:
//!
//! - [`interpolate()`], [`uniform`], [`greedy`]: the generic parameter algebra over any burn
//!   [`Module`](burn::module::Module) (Wortsman et al. 2022).
//! - [`sweep()`] / [`sweep_into`]: every β on the test split — clean accuracy, robust accuracy
//!   under each attack preset attacking the soup directly, accuracy under generated corruptions,
//!   one report card per β — resumable per β through [`advsoup_eval::Resumable`].
//! - [`select()`]: β chosen on the corrupted held-out split ([`argmax_first`]: the first best),
//!   then reported on the corrupted test split at that β and at both ends.
//! - [`records`]: [`SoupSweep`], [`SoupRow`], [`SelectReport`] (`advsoup-records`' types,
//!   re-exported) and their files;
//!   [`plot`]: `front.svg`, `shifts.svg` and several fronts in one SVG.
//! - [`parse_betas`], [`build_attacks`], [`parse_corruptions`], [`parse_shift`]: the option
//!   values of `advsoup soup`.
//!
//! What it must not do: train (it depends on `advsoup-eval`, never on `advsoup-train`), read
//! config files or run directories (the cli loads the model and the splits), choose anything on
//! the test split, or print (progress goes to a caller's closure). File writes go through
//! [`advsoup_io::write_atomic`].
//!
//! ```
//! use advsoup_soup::{interpolate, parse_betas};
//! use burn::backend::Flex;
//! use burn::nn::LinearConfig;
//! use burn::prelude::*;
//!
//! assert_eq!(parse_betas("0:1:0.5").unwrap(), vec![0.0, 0.5, 1.0]);
//! let device = Default::default();
//! let a = LinearConfig::new(2, 2).init::<Flex>(&device);
//! let b = LinearConfig::new(2, 2).init::<Flex>(&device);
//! let half = interpolate(&a, &b, 0.5);
//! let w = (a.weight.val() + b.weight.val()) / 2.0;
//! half.weight.val().into_data().assert_approx_eq::<f32>(&w.into_data(), Default::default());
//! ```
//!
//! A whole sweep of an adapted model, with a PGD evaluator, is `examples/soup_sweep.rs`
//! (`cargo run -p advsoup-soup --example soup_sweep`).
#![warn(missing_docs)]

use std::path::PathBuf;

pub mod interpolate;
pub mod options;
pub mod plot;
pub mod records;
pub mod select;
pub mod sweep;
#[cfg(test)]
mod testing;

pub use burn;
pub use interpolate::{greedy, interpolate, uniform};
pub use options::{build_attacks, parse_betas, parse_corruptions, parse_shift};
pub use plot::{plot_front, plot_fronts, plot_shifts};
pub use records::{
    NamedAcc, Recipe, SelectReport, SoupRow, SoupSweep, SweepAttack, argmax_first, read_sweep,
    write_records, write_select, write_sweep,
};
pub use select::{SelectOptions, select};
pub use sweep::{Subject, SweepOptions, SweepOutput, resume_key, sweep, sweep_into};

/// Why a soup command's inputs were rejected or its files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SoupError {
    /// An attack preset is unknown or its radius invalid (`--attacks`).
    #[error("--attacks: preset `{name}`")]
    Preset {
        /// The preset name.
        name: String,
        /// The attacks crate's reason.
        source: advsoup_attacks::AttackError,
    },
    /// A preset's APGD iteration count was rejected (`--apgd-iter`).
    #[error("--attacks: preset `{name}` with --apgd-iter {apgd_iter}")]
    ApgdIter {
        /// The preset name.
        name: String,
        /// The iteration count asked for.
        apgd_iter: usize,
        /// The attacks crate's reason.
        source: advsoup_attacks::AttackError,
    },
    /// `--attacks` named no preset.
    #[error("--attacks: no attack given")]
    NoAttack,
    /// `--corruptions` names an unknown corruption.
    #[error("--corruptions")]
    Corruptions(#[source] advsoup_data::DataError),
    /// The severity of `--shift` is not 1..=5.
    #[error("--shift `{shift}`: severity must be 1..=5")]
    Severity {
        /// The whole `--shift` value.
        shift: String,
    },
    /// `--shift` names an unknown corruption.
    #[error("--shift `{shift}`")]
    Shift {
        /// The whole `--shift` value.
        shift: String,
        /// The data crate's reason.
        source: advsoup_data::DataError,
    },
    /// Nothing to evaluate (no attack, no candidate β, an empty split, ...).
    #[error("{0}")]
    Empty(&'static str),
    /// A corrupted copy of a split could not be generated.
    #[error("{context}")]
    Corrupt {
        /// What was being corrupted, and with what.
        context: String,
        /// The data crate's reason.
        source: advsoup_data::DataError,
    },
    /// A resumable piece could not be read or written.
    #[error(transparent)]
    Eval(#[from] advsoup_eval::EvalError),
    /// A file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not the JSON of a sweep.
    #[error("{}: not a soup.json written by `advsoup soup sweep`", path.display())]
    NotASweep {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A directory could not be created.
    #[error("creating {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {}", .0.path.display(), .0.source)]
    Write(advsoup_io::PathError),
    /// A plot could not be drawn.
    #[error("cannot draw {}: {message}", path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
}
