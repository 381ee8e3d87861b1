//! The records a training run keeps so that `--resume` can refuse a changed experiment:
//! `fingerprint.json` ([`RunFingerprint`]: every config field that defines the computation,
//! flattened to dotted names) and `history.jsonl` (one [`ResumeRecord`] per resume that changed
//! a field allowed to change).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::RecordError;

/// The version of the fingerprint's field naming; a reader refuses a newer one.
pub const FINGERPRINT_FORMAT: u32 = 1;

/// `fingerprint.json`: the fields of a run's resolved config that define its computation
/// (architecture, adapter, regime, data, training attack, optimizer, schedule, seed,
/// precision), each as `dotted.name -> value` in a canonical text form. Two runs compute the
/// same thing when their fingerprints are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFingerprint {
    /// [`FINGERPRINT_FORMAT`] of the writer.
    pub format: u32,
    /// Field name (`vit.embed_dim`, `optim.lr`, ...) to value (`64`, `0.001`, `cls_token`).
    pub fields: BTreeMap<String, String>,
}

impl RunFingerprint {
    /// A fingerprint of the current format holding `fields`.
    pub fn new(fields: BTreeMap<String, String>) -> Self {
        Self {
            format: FINGERPRINT_FORMAT,
            fields,
        }
    }

    /// The fields whose values differ from `new`'s, in name order (a field that only one side
    /// has is a change from or to unset).
    pub fn changes(&self, new: &Self) -> Vec<FieldChange> {
        changes(&self.fields, &new.fields)
    }
}

/// The fields of `old` and `new` whose values differ, in name order.
pub fn changes(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<FieldChange> {
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| FieldChange {
            field: k.clone(),
            old: old.get(k).cloned(),
            new: new.get(k).cloned(),
        })
        .collect()
}

/// One field whose value changed (`None`: unset on that side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Dotted field name.
    pub field: String,
    /// The run's value.
    pub old: Option<String>,
    /// The new config's value.
    pub new: Option<String>,
}

impl std::fmt::Display for FieldChange {
    /// `optim.lr 0.001 -> 0.01`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "unset".into());
        write!(
            f,
            "{} {} -> {}",
            self.field,
            side(&self.old),
            side(&self.new)
        )
    }
}

/// One line of `history.jsonl`: a resume that changed fields allowed to change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeRecord {
    /// When the run was resumed (seconds since the Unix epoch).
    pub time_unix_s: u64,
    /// Completed epochs at the resume.
    pub epoch: usize,
    /// Optimizer steps done at the resume.
    pub global_step: usize,
    /// The fields that changed, with the run's and the new value.
    pub changed: Vec<FieldChange>,
}

/// Parses `text`, the contents of `fingerprint.json` at `path`.
///
/// # Errors
/// [`RecordError::Parse`] naming `path` when it is not a fingerprint; a fingerprint of a newer
/// format is refused the same way.
pub fn parse_fingerprint(text: &str, path: &Path) -> Result<RunFingerprint, RecordError> {
    let fp: RunFingerprint = crate::parse_json(text, path)?;
    if fp.format > FINGERPRINT_FORMAT {
        return Err(RecordError::Parse {
            path: path.to_owned(),
            source: serde::de::Error::custom(format!(
                "fingerprint format {} is newer than this advsoup's {FINGERPRINT_FORMAT}",
                fp.format
            )),
        });
    }
    Ok(fp)
}

/// Parses `text`, the contents of `history.jsonl` at `path` (blank lines skipped).
///
/// # Errors
/// [`RecordError::Parse`] naming `path` and the line when a line is not a [`ResumeRecord`].
pub fn parse_history(text: &str, path: &Path) -> Result<Vec<ResumeRecord>, RecordError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| RecordError::Parse {
                path: path.with_file_name(format!(
                    "{} line {}",
                    path.file_name()
                        .map_or("history.jsonl".into(), |n| n.to_string_lossy()),
                    i + 1
                )),
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn changes_name_each_field_old_and_new_in_order() {
        let old = RunFingerprint::new(map(&[("optim.lr", "0.001"), ("vit.embed_dim", "64")]));
        let new = RunFingerprint::new(map(&[
            ("optim.lr", "0.01"),
            ("vit.embed_dim", "64"),
            ("data.rand_augment", "rand-m9"),
        ]));
        let shown: Vec<String> = old.changes(&new).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                "data.rand_augment unset -> rand-m9",
                "optim.lr 0.001 -> 0.01"
            ]
        );
        assert!(old.changes(&old).is_empty());
    }

    #[test]
    fn readers_refuse_damaged_files_naming_them() {
        let p = Path::new("runs/x/fingerprint.json");
        let e = parse_fingerprint("{\"format\": 1}", p).expect_err("no fields");
        assert!(e.to_string().contains("runs/x/fingerprint.json"), "{e}");
        let e = parse_fingerprint("{\"format\": 99, \"fields\": {}}", p).expect_err("newer");
        assert!(e.to_string().contains("newer"), "{e}");
        let rec = ResumeRecord {
            time_unix_s: 1,
            epoch: 2,
            global_step: 3,
            changed: vec![FieldChange {
                field: "optim.epochs".into(),
                old: Some("2".into()),
                new: Some("3".into()),
            }],
        };
        let line = serde_json::to_string(&rec).expect("json");
        let h = Path::new("runs/x/history.jsonl");
        assert_eq!(
            parse_history(&format!("{line}\n\n{line}\n"), h).expect("two"),
            [rec.clone(), rec]
        );
        let e = parse_history(&format!("{line}\n{{\n"), h).expect_err("line 2");
        assert!(e.to_string().contains("history.jsonl line 2"), "{e}");
    }
}
