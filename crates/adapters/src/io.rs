//! Saving and loading whole adapted models, or the domain-specific parameters alone (small files
//! an adapter can be shared or souped with), as safetensors with burn's parameter names.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_store::{ModuleSnapshot, PathFilter, SafetensorsStore};

use crate::{AdaptedVit, AdapterKind};

/// Metadata key holding the adapter kind in every file this module writes.
pub const KIND_KEY: &str = "advsoup.adapter";
/// Metadata key telling a whole model from an adapter-only file.
pub const CONTENT_KEY: &str = "advsoup.content";

/// Why a model or adapter file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AdapterIoError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file was written for another adapter or holds another kind of content.
    #[error("{path}: holds {found}, expected {expected}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What the caller expected.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A parameter is missing or has the wrong shape, or the file is not safetensors.
    #[error("{path}: {message}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Regexes (over burn parameter paths) selecting the domain-specific parameters of `kind`: the
/// adapter's own plus the model's copies that act as φ_clean.
pub fn domain_param_patterns(kind: AdapterKind) -> Vec<&'static str> {
    let mut p = vec![r"^adapter\..*"];
    match kind {
        AdapterKind::ClsToken => p.push(r"^vit\.cls_token$"),
        AdapterKind::DualLayerNorm => {
            p.push(r"^vit\.blocks\.\d+\.norm[12]\..*");
            p.push(r"^vit\.norm\..*");
        }
        AdapterKind::Bias => {
            p.push(r"^vit\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])\.bias$");
            p.push(r"^vit\.head\.bias$");
        }
        AdapterKind::None | AdapterKind::Prompt { .. } | AdapterKind::Lora { .. } => {}
    }
    p
}

fn content_error(path: &Path, message: impl std::fmt::Display) -> AdapterIoError {
    AdapterIoError::Content {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn to_bytes<B: Backend>(
    model: &AdaptedVit<B>,
    path: &Path,
    adapter_only: bool,
) -> Result<Vec<u8>, AdapterIoError> {
    let kind = model.kind();
    let mut store = SafetensorsStore::from_bytes(None)
        .metadata(KIND_KEY, kind.name())
        .metadata(CONTENT_KEY, if adapter_only { "adapter" } else { "model" });
    if adapter_only {
        store = store.with_regexes(domain_param_patterns(kind));
    }
    model
        .save_into(&mut store)
        .map_err(|e| content_error(path, e))?;
    store.get_bytes().map_err(|e| content_error(path, e))
}

/// A canonical byte string of parameters (sorted `path`, shape and little-endian values), stable
/// across runs: what content hashes are computed over. `adapter_only` keeps the domain-specific
/// parameters alone.
pub fn canonical_bytes<B: Backend>(model: &AdaptedVit<B>, adapter_only: bool) -> Vec<u8> {
    let filter =
        adapter_only.then(|| PathFilter::new().with_regexes(domain_param_patterns(model.kind())));
    let mut snaps = model.collect(filter, None, false);
    snaps.sort_by_key(|s| s.full_path());
    let mut out = Vec::new();
    for s in snaps {
        out.extend_from_slice(s.full_path().as_bytes());
        out.push(0);
        for d in s.shape.iter() {
            out.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        if let Ok(data) = s.to_data() {
            out.extend_from_slice(&data.bytes);
        }
    }
    out
}

/// Saves the whole model atomically.
pub fn save_model<B: Backend>(model: &AdaptedVit<B>, path: &Path) -> Result<(), AdapterIoError> {
    let bytes = to_bytes(model, path, false)?;
    write(path, &bytes)
}

/// Saves only the domain-specific parameters (both domains) atomically.
pub fn save_adapter<B: Backend>(model: &AdaptedVit<B>, path: &Path) -> Result<(), AdapterIoError> {
    let bytes = to_bytes(model, path, true)?;
    write(path, &bytes)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), AdapterIoError> {
    advsoup_vit::io::write_atomic(path, bytes).map_err(|source| AdapterIoError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read_checked(path: &Path, kind: AdapterKind, content: &str) -> Result<Vec<u8>, AdapterIoError> {
    let bytes = std::fs::read(path).map_err(|source| AdapterIoError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| content_error(path, format!("not a valid safetensors file: {e}")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let found_kind = meta
        .get(KIND_KEY)
        .cloned()
        .unwrap_or_else(|| "no adapter tag".into());
    let found_content = meta
        .get(CONTENT_KEY)
        .cloned()
        .unwrap_or_else(|| "unknown content".into());
    if found_content != content {
        return Err(AdapterIoError::Mismatch {
            path: path.to_owned(),
            expected: format!("an advsoup {content} file"),
            found: found_content,
        });
    }
    if found_kind != kind.name() {
        return Err(AdapterIoError::Mismatch {
            path: path.to_owned(),
            expected: format!("adapter `{}`", kind.name()),
            found: format!("adapter `{found_kind}`"),
        });
    }
    Ok(bytes)
}

fn apply<B: Backend>(
    model: &mut AdaptedVit<B>,
    path: &Path,
    bytes: Vec<u8>,
    patterns: Option<Vec<&'static str>>,
) -> Result<(), AdapterIoError> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .validate(false)
        .allow_partial(true);
    let filter = patterns
        .as_ref()
        .map(|p| PathFilter::new().with_regexes(p.iter().copied()));
    if let Some(p) = patterns {
        store = store.with_regexes(p);
    }
    let result = model
        .load_from(&mut store)
        .map_err(|e| content_error(path, e))?;
    if let Some(e) = result.errors.first() {
        return Err(content_error(path, e));
    }
    // A partial (adapter-only) file leaves the parameters outside its filter "missing".
    let wanted = |key: &String| filter.as_ref().is_none_or(|f| f.matches(key));
    if let Some((key, _)) = result.missing.iter().find(|(k, _)| wanted(k)) {
        return Err(content_error(path, format!("missing parameter `{key}`")));
    }
    Ok(())
}

/// Loads a whole model saved by [`save_model`] into `model` (built with the same config).
pub fn load_model<B: Backend>(
    mut model: AdaptedVit<B>,
    path: &Path,
) -> Result<AdaptedVit<B>, AdapterIoError> {
    let bytes = read_checked(path, model.kind(), "model")?;
    apply(&mut model, path, bytes, None)?;
    Ok(model)
}

/// Loads an adapter-only file saved by [`save_adapter`] into `model`'s domain-specific
/// parameters, leaving the shared ones as they are.
pub fn load_adapter<B: Backend>(
    mut model: AdaptedVit<B>,
    path: &Path,
) -> Result<AdaptedVit<B>, AdapterIoError> {
    let kind = model.kind();
    let bytes = read_checked(path, kind, "adapter")?;
    apply(&mut model, path, bytes, Some(domain_param_patterns(kind)))?;
    Ok(model)
}
