//! The resume guard: a run records the fingerprint of its computation (`fingerprint.json`, a
//! [`RunFingerprint`]: every field of the resolved config but the [`RESUMABLE`] ones, the model
//! as the resolved ViT), and `--resume` refuses a config whose fingerprint differs, naming each
//! changed field, before anything in the run directory is written. Changes of resumable fields
//! are appended to the run's `history.jsonl` (a [`ResumeRecord`] per resume).
//!
//! The fields are found by walking the config's serde form, so a field added to the config is
//! in the fingerprint unless it is added to [`RESUMABLE`]. Runs written before fingerprints
//! existed are compared through their `config.toml`.
//!
//! The readers ([`check`]) take the files' bytes, so the fuzz target `resume` feeds them
//! arbitrary input; they never panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use advsoup_records::resume::{ResumeRecord, RunFingerprint, changes, parse_history};
use advsoup_records::run::CheckpointState;
use serde_json::Value;

use crate::TrainError;
use crate::config::TrainConfig;

/// Config fields that may change on `--resume` (a trailing `*` covers a whole section): more
/// epochs (never fewer than the run has done), where the data is cached and how it is read,
/// and everything that only measures (the per-epoch attack and the final evaluation). How a
/// process runs (`--checkpoint-every`, `--max-steps`, `--devices`, threads) is not part of the
/// config at all. Listed in `advsoup train --help` and README.
pub const RESUMABLE: &[&str] = &[
    "optim.epochs",
    "data.data_dir",
    "data.stream",
    "data.workers",
    "data.train_samples",
    "attack.eval.*",
    "eval.*",
];

/// The fingerprint's file in a run directory.
pub const FINGERPRINT_FILE: &str = "fingerprint.json";
/// The resume history's file in a run directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// Whether `field` (dotted) is on the [`RESUMABLE`] list.
pub fn is_resumable(field: &str) -> bool {
    RESUMABLE.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => field.starts_with(prefix),
        None => field == *p,
    })
}

/// [`RESUMABLE`] as a sentence part: `optim.epochs (more), data.data_dir, ...`.
pub fn resumable_list() -> String {
    RESUMABLE
        .iter()
        .map(|f| match *f {
            "optim.epochs" => "optim.epochs (more)".to_string(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `--resume` option's help (`advsoup train --help`).
pub fn resume_help() -> String {
    format!(
        "Continue from the run's checkpoint if there is one. The config must compute the same \
         run as the one recorded in the run's {FINGERPRINT_FILE}; a mismatch is refused naming \
         each changed field, before anything is written. Only {} may change on resume; such \
         changes are appended to the run's {HISTORY_FILE}. --checkpoint-every, --max-steps, \
         --devices and --quiet are not part of the run.",
        resumable_list()
    )
}

/// Every field of `config` by dotted name, values in text form (strings bare, numbers as JSON,
/// lists as compact JSON, unset options left out). The model is the resolved ViT (`vit.*`,
/// preset and overrides applied) and the adapter by name (`model.adapter`); the run's name is
/// its directory, not a field.
pub fn config_fields(config: &TrainConfig) -> Result<BTreeMap<String, String>, TrainError> {
    let json = |e: serde_json::Error| TrainError::Invalid {
        field: "config".into(),
        message: format!("cannot be fingerprinted: {e}"),
    };
    let mut value = serde_json::to_value(config).map_err(json)?;
    let vit = serde_json::to_value(config.vit()?).map_err(json)?;
    if let Some(root) = value.as_object_mut() {
        root.remove("name");
        let adapter = Value::String(config.model.adapter.name());
        root.insert(
            "model".into(),
            Value::Object([("adapter".to_string(), adapter)].into_iter().collect()),
        );
        root.insert("vit".into(), vit);
    }
    let mut fields = BTreeMap::new();
    flatten("", &value, &mut fields);
    Ok(fields)
}

fn flatten(name: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if name.is_empty() {
                    k.clone()
                } else {
                    format!("{name}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => {
            out.insert(name.to_string(), s.clone());
        }
        other => {
            out.insert(name.to_string(), other.to_string());
        }
    }
}

/// The fingerprint of `config`: [`config_fields`] without the [`RESUMABLE`] ones.
pub fn fingerprint(config: &TrainConfig) -> Result<RunFingerprint, TrainError> {
    Ok(RunFingerprint::new(
        config_fields(config)?
            .into_iter()
            .filter(|(k, _)| !is_resumable(k))
            .collect(),
    ))
}

/// The files of a run directory that `--resume` checks, as bytes (`None`: the file is absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordedRun<'a> {
    /// `fingerprint.json`.
    pub fingerprint: Option<&'a [u8]>,
    /// `config.toml` (the run's resolved config).
    pub config: Option<&'a [u8]>,
    /// The checkpoint's `state.json`.
    pub state: Option<&'a [u8]>,
    /// `history.jsonl`.
    pub history: Option<&'a [u8]>,
}

/// What a permitted resume records: the history line to append (when resumable fields
/// changed) after the history already there.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// `history.jsonl` as it is.
    pub history: String,
    /// The line to append, if any field changed.
    pub record: Option<ResumeRecord>,
}

fn text<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str, TrainError> {
    std::str::from_utf8(bytes).map_err(|e| TrainError::Config {
        path: path.to_owned(),
        message: format!("not UTF-8 text: {e}"),
    })
}

fn record_err(e: advsoup_records::RecordError) -> TrainError {
    match e {
        advsoup_records::RecordError::Io { path, source } => TrainError::Io { path, source },
        advsoup_records::RecordError::Parse { path, source } => TrainError::Config {
            path,
            message: format!("damaged: {source}"),
        },
    }
}

/// Checks `config` against the recorded files of run directory `run` whose checkpoint's
/// `state.json` is at `state_path`: the fingerprints must be equal and `optim.epochs` at least
/// the epochs done. Returns what the resume records; reads nothing itself and writes nothing.
///
/// # Errors
/// [`TrainError::ConfigChanged`] naming every changed field; [`TrainError::Config`] naming a
/// file that is damaged, or the run when its checkpoint has no `state.json`.
pub fn check(
    run: &Path,
    state_path: &Path,
    files: &RecordedRun<'_>,
    config: &TrainConfig,
) -> Result<Resume, TrainError> {
    let state = read_state(run, state_path, files.state)?;
    let config_path = run.join("config.toml");
    let old_fields = match files.config {
        Some(bytes) => {
            let old = TrainConfig::parse(text(bytes, &config_path)?, &config_path, &[])?;
            Some(config_fields(&old)?)
        }
        None => None,
    };
    let fp_path = run.join(FINGERPRINT_FILE);
    let recorded = match (files.fingerprint, &old_fields) {
        (Some(bytes), _) => {
            advsoup_records::resume::parse_fingerprint(text(bytes, &fp_path)?, &fp_path)
                .map_err(record_err)?
        }
        (None, Some(fields)) => RunFingerprint::new(
            fields
                .iter()
                .filter(|(k, _)| !is_resumable(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        (None, None) => {
            return Err(TrainError::Config {
                path: config_path,
                message: format!(
                    "missing, and so is {FINGERPRINT_FILE}: the checkpoint cannot be checked \
                     against the configuration; train under another name"
                ),
            });
        }
    };
    let new_fields = config_fields(config)?;
    let new = fingerprint(config)?;
    let mut refused: Vec<String> = recorded
        .changes(&new)
        .iter()
        .map(|c| c.to_string())
        .collect();
    if config.optim.epochs < state.epoch {
        let old = old_fields
            .as_ref()
            .and_then(|f| f.get("optim.epochs").cloned())
            .unwrap_or_else(|| "?".into());
        refused.push(format!(
            "optim.epochs {old} -> {} (the run has done {} epochs)",
            config.optim.epochs, state.epoch
        ));
    }
    if !refused.is_empty() {
        return Err(TrainError::ConfigChanged {
            dir: run.to_owned(),
            changes: refused.join(", "),
            allowed: resumable_list(),
        });
    }
    let history_path = run.join(HISTORY_FILE);
    let history = match files.history {
        Some(bytes) => text(bytes, &history_path)?.to_string(),
        None => String::new(),
    };
    parse_history(&history, &history_path).map_err(record_err)?;
    let changed = old_fields.map_or_else(Vec::new, |old| {
        let resumable = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            m.iter()
                .filter(|(k, _)| is_resumable(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        changes(&resumable(&old), &resumable(&new_fields))
    });
    let record = (!changed.is_empty()).then(|| ResumeRecord {
        time_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        epoch: state.epoch,
        global_step: state.global_step,
        changed,
    });
    Ok(Resume { history, record })
}

fn read_state(
    run: &Path,
    state_path: &Path,
    bytes: Option<&[u8]>,
) -> Result<CheckpointState, TrainError> {
    let Some(bytes) = bytes else {
        let ckpt = state_path.parent().unwrap_or(run);
        return Err(TrainError::Config {
            path: run.to_owned(),
            message: format!(
                "the checkpoint {} has no state.json (an incomplete or damaged checkpoint): \
                 move the run directory away and train again, or train under another name",
                ckpt.display()
            ),
        });
    };
    serde_json::from_slice(bytes).map_err(|e| TrainError::Config {
        path: state_path.to_owned(),
        message: format!("damaged checkpoint state: {e}"),
    })
}

/// Reads `path`, `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, TrainError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TrainError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// [`check`] on the files of run directory `run`, whose checkpoint is `checkpoint_dir`.
pub(crate) fn check_dir(
    run: &Path,
    checkpoint_dir: &Path,
    config: &TrainConfig,
) -> Result<Resume, TrainError> {
    let state_path: PathBuf = checkpoint_dir.join("state.json");
    let fingerprint = read_optional(&run.join(FINGERPRINT_FILE))?;
    let old_config = read_optional(&run.join("config.toml"))?;
    let state = read_optional(&state_path)?;
    let history = read_optional(&run.join(HISTORY_FILE))?;
    let files = RecordedRun {
        fingerprint: fingerprint.as_deref(),
        config: old_config.as_deref(),
        state: state.as_deref(),
        history: history.as_deref(),
    };
    check(run, &state_path, &files, config)
}
