//! advsoup-report: self-contained HTML pages and SVG plots drawn from advsoup's on-disk
//! records — a training run's curves and page ([`run_page`], `advsoup report --run DIR`), and
//! the adapter sweep's page with its claims, fronts and tables ([`sweep_page`], written by
//! `cargo xtask sweep-adapters`).
//!
//! Every page is ONE file that opens offline in any browser: plots are inline SVG, the only
//! style is an inline stylesheet, and nothing refers to a file or URL outside the page (no
//! `<script src>`, no `<link href>`, no `<img src>`); every text is HTML-escaped.
//!
//! What this crate must not do: depend on burn or on any advsoup crate but advsoup-records
//! (xtask links it, and xtask never links burn), evaluate a model, compute a verdict (the
//! claims come from `advsoup_records::claims`), or write a file: it returns strings, and the
//! caller writes them (`advsoup_io::write_atomic`). It reads a run directory's records only in
//! [`run_page`] and [`read_metrics`].
//!
//! ```
//! use advsoup_records::run::EpochMetrics;
//! let epoch = |e: usize, loss: f64| EpochMetrics {
//!     epoch: e, step: 10 * e, loss, clean_acc: 0.5 + 0.1 * e as f64,
//!     robust_acc: 0.3, lr: 1e-3, images_per_s: 100.0, loss_scale: None, skipped_steps: None,
//! };
//! let svg = advsoup_report::training_curves(&[epoch(1, 2.0), epoch(2, 1.5)], "run").unwrap();
//! assert!(svg.starts_with("<svg") && svg.contains("training loss"));
//! let mut page = advsoup_report::Page::new("my run");
//! page.figure("curves", &svg, "training curves");
//! assert!(page.finish().contains("<figure id=\"curves\">"));
//! ```
#![warn(missing_docs)]

mod html;
mod plot;
mod run_page;
mod sweep_page;

use std::path::PathBuf;

pub use html::{Page, escape};
pub use plot::{FrontBar, FrontSeries, soup_fronts, training_curves};
pub use run_page::{read_metrics, run_page};
pub use sweep_page::{fronts_of, sweep_page};

/// Why a page or plot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A record file is missing or not the expected record.
    #[error(transparent)]
    Record(#[from] advsoup_records::RecordError),
    /// A file of the run directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// plotters could not draw a plot.
    #[error("{what}: cannot draw the plot: {message}")]
    Plot {
        /// The plot.
        what: String,
        /// plotters' message.
        message: String,
    },
}
