//! The records a sweep and a selection produce and the files they are written to.
//!
//! The types and their text forms (CSV, markdown table, one line) are `advsoup-records`' (the
//! serde-only crate that `cargo xtask` reads them with), re-exported here with the attack
//! configuration filled in; this module adds the writers. Field names and CSV columns are a file
//! format, not an implementation detail.

use std::path::{Path, PathBuf};

use advsoup_attacks::Evaluator;
use advsoup_eval::report::{ReportCard, markdown};

use crate::SoupError;
use crate::plot::{plot_front, plot_shifts};

pub use advsoup_records::soup::{
    NamedAcc, Recipe, SelectReport, SoupRow, ThreatModel, argmax_first, f32_as_json_f64,
};

/// `soup.json` as this crate writes it: a whole sweep, each attack's configuration the attacks
/// crate's [`Evaluator`] (readers that do not look at it use `advsoup_records`' default).
pub type SoupSweep = advsoup_records::soup::SoupSweep<Evaluator>;

/// One attack preset of a sweep with its exact [`Evaluator`].
pub type SweepAttack = advsoup_records::soup::SweepAttack<Evaluator>;

/// Writes `bytes` to `path` atomically ([`advsoup_io::write_atomic`]).
///
/// # Errors
/// When the file cannot be written.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), SoupError> {
    advsoup_io::write_atomic(path, bytes).map_err(SoupError::Write)
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), SoupError> {
    std::fs::create_dir_all(dir).map_err(|source| SoupError::CreateDir {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `soup.csv`, `soup.json`, `front.svg` and `shifts.svg` into `dir` (created) and
/// returns their paths.
///
/// # Errors
/// When a file cannot be written or a plot cannot be drawn.
pub fn write_records(dir: &Path, sweep: &SoupSweep) -> Result<Vec<PathBuf>, SoupError> {
    create_dir(dir)?;
    let csv = dir.join("soup.csv");
    write(&csv, sweep.to_csv().as_bytes())?;
    let json = dir.join("soup.json");
    write(
        &json,
        serde_json::to_string_pretty(sweep)
            .expect("a sweep always serializes")
            .as_bytes(),
    )?;
    let front = dir.join("front.svg");
    plot_front(sweep, &front)?;
    let shifts = dir.join("shifts.svg");
    plot_shifts(sweep, &shifts)?;
    Ok(vec![csv, json, front, shifts])
}

/// Writes a sweep's files into `dir`: `soup.csv`, `soup.json`, `front.svg`, `shifts.svg`,
/// `cards/beta-<β>.json` (one report card per row) and `cards.md`. Returns the paths written.
///
/// # Errors
/// When a file cannot be written or a plot cannot be drawn.
pub fn write_sweep(
    dir: &Path,
    sweep: &SoupSweep,
    cards: &[ReportCard],
) -> Result<Vec<PathBuf>, SoupError> {
    let mut files = write_records(dir, sweep)?;
    let card_dir = dir.join("cards");
    create_dir(&card_dir)?;
    for (row, card) in sweep.rows.iter().zip(cards) {
        let p = card_dir.join(format!("beta-{:.3}.json", row.beta));
        write(&p, card.to_json().as_bytes())?;
        files.push(p);
    }
    let md = dir.join("cards.md");
    write(&md, markdown(cards).as_bytes())?;
    files.push(md);
    Ok(files)
}

/// Reads a `soup.json` written by [`write_records`] back.
///
/// # Errors
/// When the file cannot be read or is not a sweep's JSON.
pub fn read_sweep(path: &Path) -> Result<SoupSweep, SoupError> {
    let bytes = std::fs::read(path).map_err(|source| SoupError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| SoupError::NotASweep {
        path: path.to_owned(),
        source,
    })
}

/// Writes a selection's report as pretty JSON to `path` (its directory created).
///
/// # Errors
/// When the directory or the file cannot be written.
pub fn write_select(path: &Path, report: &SelectReport) -> Result<(), SoupError> {
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    let json = serde_json::to_string_pretty(report).expect("a report always serializes");
    write(path, json.as_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A hand-made three-row sweep (no model).
    pub(crate) fn sweep() -> SoupSweep {
        advsoup_records::testing::soup_sweep()
    }

    #[test]
    fn write_produces_parsable_files_and_svgs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = sweep();
        let files = write_records(&dir.path().join("soup"), &s).expect("write");
        assert_eq!(files.len(), 4);
        let back: SoupSweep = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("soup/soup.json")).expect("json"),
        )
        .expect("parse");
        assert_eq!(back, s);
        assert_eq!(
            read_sweep(&dir.path().join("soup/soup.json")).expect("read"),
            s
        );
        let e = read_sweep(&dir.path().join("soup/soup.csv")).expect_err("csv");
        assert!(
            e.to_string()
                .ends_with("soup.csv: not a soup.json written by `advsoup soup sweep`"),
            "{e}"
        );
        let svg = std::fs::read_to_string(dir.path().join("soup/front.svg")).expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("β=0.5"), "front lacks β labels");
        let svg = std::fs::read_to_string(dir.path().join("soup/shifts.svg")).expect("svg");
        assert!(svg.contains("contrast"));
    }
}
