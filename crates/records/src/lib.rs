//! advsoup-records: the on-disk records that one advsoup process writes and another reads —
//! a training run's `final.json`, `metrics.jsonl` and `run.json`, the soup sweep over β
//! (`soup.json`, `select-*.json`), the benchmark reports, `advsoup info --json`'s parameter
//! counts, the part of `advsoup eval`'s report a summary needs (`eval_report`) and the adapter
//! sweep's `results.json`, a run's `fingerprint.json` and `history.jsonl` (`resume`) — plus
//! the pure logic that reads them (markdown tables, means with 95% intervals over seeds in
//! `stats`, the paper-claim verdicts in `claims`).
//!
//! Field names and serde attributes are the file formats: renaming a field changes every file
//! written from then on and breaks every file already written, so a field is only ever added
//! with `#[serde(default)]`. Readers deserialize into these types instead of indexing JSON by
//! string keys, so a missing or renamed field is an error naming the file, never a silent 0.
//!
//! What this crate must not do: depend on anything but serde and serde_json (never burn, never
//! another advsoup crate: `cargo xtask` reads these records and must not link burn), evaluate
//! a model, draw a plot, write a file or print. It reads a file only in [`read_json`].
//!
//! ```
//! use advsoup_records::run::FinalReport;
//! let text = r#"{"n_clean": 10, "n_robust": 5, "attack": "pgd-20", "eps": 0.1,
//!     "clean_mode_clean_acc": 0.9, "robust_mode_clean_acc": 0.8,
//!     "clean_mode_robust_acc": 0.0, "robust_mode_robust_acc": 0.6,
//!     "train_seconds": 12.5, "seed": 0}"#;
//! let report: FinalReport = serde_json::from_str(text).unwrap();
//! assert_eq!(report.robust_mode_robust_acc, 0.6);
//! assert!(report.table().contains("| robust | 80.00% | 60.00% |"));
//! ```
#![warn(missing_docs)]

pub mod adapter_sweep;
pub mod bench;
pub mod claims;
pub mod eval_report;
pub mod params;
pub mod resume;
pub mod run;
pub mod soup;
pub mod stats;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

use std::path::{Path, PathBuf};

/// A record file that could not be read or does not hold the expected record.
#[derive(Debug)]
pub enum RecordError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected record (a missing or renamed field, a wrong
    /// type).
    Parse {
        /// The file.
        path: PathBuf,
        /// serde_json's message (it names the field, line and column).
        source: serde_json::Error,
    },
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            RecordError::Parse { path, source } => {
                write!(f, "{}: not the expected record: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecordError::Io { source, .. } => Some(source),
            RecordError::Parse { source, .. } => Some(source),
        }
    }
}

/// Parses `text` (the contents of `path`) as the record `T`.
///
/// # Errors
/// [`RecordError::Parse`] naming `path` when the text is not that record.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, RecordError> {
    serde_json::from_str(text).map_err(|source| RecordError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Reads the record `T` from the JSON file `path`.
///
/// # Errors
/// [`RecordError::Io`] when the file cannot be read, [`RecordError::Parse`] when it is not
/// that record; both name the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RecordError> {
    let text = std::fs::read_to_string(path).map_err(|source| RecordError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_json(&text, path)
}

/// Percent with two decimals (`0.875` -> `87.50`).
pub(crate) fn pct(v: f64) -> String {
    format!("{:.2}", 100.0 * v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_the_field() {
        let path = Path::new("runs/x/final.json");
        let e = parse_json::<run::FinalReport>(r#"{"n_clean": 1}"#, path).expect_err("partial");
        let text = e.to_string();
        assert!(text.contains("runs/x/final.json"), "{text}");
        assert!(text.contains("n_robust"), "{text}");
        let e = read_json::<run::FinalReport>(Path::new("/nonexistent/final.json"))
            .expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/final.json"), "{e}");
    }
}
