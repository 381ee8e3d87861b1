//! The experiment file format (`configs/*.toml`): plain serde structs that reject unknown keys,
//! `--set key=value` overrides applied before deserializing, and [`TrainConfig::validate`].
//!
//! - [`sections`]: the `[model]`, `[data]`, `[attack]`, `[optim]`, `[eval]` tables;
//! - `validate`: the checks, each naming its field;
//! - `augment`: the training augmentation of a config;
//! - [`caps`]: the largest counts a config may ask for.

use std::path::Path;

use advsoup_vit::VitConfig;
use serde::{Deserialize, Serialize};

use crate::TrainError;

mod augment;
pub mod caps;
pub mod sections;
mod validate;

pub use sections::*;

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Run name (`runs/<name>`).
    pub name: String,
    /// Seed of everything random (init, order, augmentation, attacks, dropout).
    pub seed: u64,
    /// What is optimized.
    pub regime: Regime,
    /// Weight α of the clean loss in co-training.
    #[serde(default = "half")]
    pub alpha: f64,
    /// Model.
    pub model: ModelSection,
    /// Data.
    pub data: DataSection,
    /// Attacks.
    pub attack: AttackSection,
    /// Optimizer.
    pub optim: OptimSection,
    /// Evaluation.
    pub eval: EvalSection,
}

fn half() -> f64 {
    0.5
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> TrainError {
    TrainError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

impl TrainConfig {
    /// Reads a TOML file, applies `key=value` overrides (dotted keys, TOML values; a bare word
    /// is a string), then deserializes, so misspelt keys in the file or the overrides fail.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, overrides)
    }

    /// [`TrainConfig::load`] on text already read (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| TrainError::Config {
            path: path.to_owned(),
            message: toml_error(&e, Some(text)),
        })?;
        for o in overrides {
            apply_override(&mut value, o).map_err(|message| TrainError::Config {
                path: path.to_owned(),
                message: format!("--set {o}: {message}"),
            })?;
        }
        let mut value = toml::Value::Table(value);
        whole_floats_to_integers(&mut value);
        let config: TrainConfig =
            value
                .try_into()
                .map_err(|e: toml::de::Error| TrainError::Config {
                    path: path.to_owned(),
                    message: toml_error(&e, None),
                })?;
        config.validate().map_err(|e| match e {
            TrainError::Invalid { field, message } => TrainError::Config {
                path: path.to_owned(),
                message: format!("{field}: {message}"),
            },
            other => other,
        })?;
        Ok(config)
    }

    /// The resolved model config (preset + overrides).
    pub fn vit(&self) -> Result<VitConfig, TrainError> {
        let m = &self.model;
        let mut v = VitConfig::preset(&m.preset).ok_or_else(|| {
            invalid(
                "model.preset",
                format!(
                    "unknown preset `{}`, expected one of {}",
                    m.preset,
                    VitConfig::PRESETS.join(", ")
                ),
            )
        })?;
        if let Some(p) = m.patch_size {
            v.patch_size = p;
        }
        if let Some(d) = m.embed_dim {
            v.embed_dim = d;
        }
        if let Some(d) = m.depth {
            v.depth = d;
        }
        if let Some(h) = m.num_heads {
            v.num_heads = h;
        }
        if let Some(r) = m.mlp_ratio {
            v.mlp_ratio = r;
        }
        if let Some(c) = m.num_classes {
            v.num_classes = c;
        }
        v.drop_rate = m.drop_rate;
        v.drop_path_rate = m.drop_path_rate;
        v.validate().map_err(|e| invalid("model", e.to_string()))?;
        Ok(v)
    }

    /// The training step's compute precision (`optim.precision`).
    pub fn precision(&self) -> Result<advsoup_vit::Precision, TrainError> {
        advsoup_vit::Precision::parse(&self.optim.precision)
            .map_err(|m| invalid("optim.precision", m))
    }
}

/// One line for a TOML error: the key path when deserializing (`optim.batch_size: invalid
/// value: integer -8, expected usize`), the line number when parsing. `message()` alone names
/// neither, and `Display` spans several lines.
fn toml_error(e: &toml::de::Error, text: Option<&str>) -> String {
    if let (Some(text), Some(span)) = (text, e.span()) {
        let line = text
            .get(..span.start)
            .map_or(0, |before| before.matches('\n').count())
            + 1;
        return format!("line {line}: {}", e.message());
    }
    let shown = e.to_string();
    match shown.lines().rev().find_map(|l| l.strip_prefix("in `")) {
        Some(keys) => format!("{}: {}", keys.trim_end_matches('`'), e.message()),
        None => e.message().to_string(),
    }
}

/// TOML reads `1e11` as a float; a whole float is read as the integer it is, so that a count
/// written in exponent notation meets the count's own check ([`caps`]) instead of a type error.
/// Float fields take integers as they are.
fn whole_floats_to_integers(value: &mut toml::Value) {
    match value {
        toml::Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
            *value = toml::Value::Integer(*f as i64);
        }
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| whole_floats_to_integers(v)),
        toml::Value::Array(a) => a.iter_mut().for_each(whole_floats_to_integers),
        _ => {}
    }
}

fn parse_value(raw: &str) -> toml::Value {
    // A TOML value if it parses as one, else a bare string.
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), String> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| "expected key=value".to_string())?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{key}` is not a dotted key"));
    }
    let mut node = table;
    for p in &parts[..parts.len() - 1] {
        let entry = node
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a table"))?;
    }
    node.insert(parts[parts.len() - 1].to_string(), parse_value(raw.trim()));
    Ok(())
}
