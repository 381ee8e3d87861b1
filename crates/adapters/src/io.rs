//! Saving and loading whole adapted models, or the domain-specific parameters alone (small files
//! an adapter can be shared or souped with), as safetensors with burn's parameter names.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_store::{ApplyError, ModuleSnapshot, PathFilter, SafetensorsStore};

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
    /// A parameter holds NaN or ±inf (a diverged or damaged model): refused at load, so it is
    /// never evaluated, souped or exported.
    #[error(
        "{path}: parameter `{tensor}` holds a non-finite value ({value}): the weights are unusable"
    )]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The first such parameter, in name order.
        tensor: String,
        /// The first such value (`NaN`, `inf` or `-inf`).
        value: f32,
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
    store
        .get_bytes()
        .map(reproducible)
        .map_err(|e| content_error(path, e))
}

pub use advsoup_vit::io::reproducible;

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
    advsoup_io::write_atomic(path, bytes).map_err(|e| AdapterIoError::Io {
        path: path.to_owned(),
        source: e.source,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, AdapterIoError> {
    std::fs::read(path).map_err(|source| AdapterIoError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Checks the safetensors header: valid, tagged with `content` and `kind`, every tensor `F32`
/// (what [`save_model`] writes; another dtype would be loaded as is and break the model later).
fn check_bytes(
    path: &Path,
    bytes: &[u8],
    kind: AdapterKind,
    content: &str,
) -> Result<(), AdapterIoError> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| content_error(path, format!("not a valid safetensors file: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
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
    let mut tensors: Vec<_> = header.tensors().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some((key, info)) = tensors
        .iter()
        .find(|(_, i)| i.dtype != safetensors::Dtype::F32)
    {
        return Err(content_error(
            path,
            format!("parameter `{key}` has dtype {:?}, expected F32", info.dtype),
        ));
    }
    check_finite(path, bytes)
}

/// The first parameter (in name order) holding NaN or ±inf, as an error.
fn check_finite(path: &Path, bytes: &[u8]) -> Result<(), AdapterIoError> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| content_error(path, format!("not a valid safetensors file: {e}")))?;
    let mut tensors = st.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in tensors {
        let bad = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .find(|v| !v.is_finite());
        if let Some(value) = bad {
            return Err(AdapterIoError::NonFinite {
                path: path.to_owned(),
                tensor: name,
                value,
            });
        }
    }
    Ok(())
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
        return Err(content_error(
            path,
            match e {
                ApplyError::ShapeMismatch {
                    path: key,
                    expected,
                    found,
                } => format!(
                    "parameter `{key}`: shape mismatch: found {found}, expected {expected} (a file of another architecture?)"
                ),
                other => other.to_string(),
            },
        ));
    }
    // A partial (adapter-only) file leaves the parameters outside its filter "missing".
    let wanted = |key: &String| filter.as_ref().is_none_or(|f| f.matches(key));
    if let Some((key, _)) = result.missing.iter().find(|(k, _)| wanted(k)) {
        return Err(content_error(path, format!("missing parameter `{key}`")));
    }
    // Without this, a file of a deeper model (more blocks) would load silently into a
    // shallower one. (burn-store lists applied keys as unused only with its PyTorch adapter,
    // which these files do not use.)
    if let Some(key) = result.unused.first() {
        return Err(content_error(
            path,
            format!(
                "unexpected parameter `{key}`: not a parameter of this model (a file of another architecture?)"
            ),
        ));
    }
    Ok(())
}

/// Loads a whole model saved by [`save_model`] into `model` (built with the same config).
pub fn load_model<B: Backend>(
    model: AdaptedVit<B>,
    path: &Path,
) -> Result<AdaptedVit<B>, AdapterIoError> {
    load_model_bytes(model, path, read(path)?)
}

/// [`load_model`] on the bytes of a file already read (`path` only names it in errors).
pub fn load_model_bytes<B: Backend>(
    mut model: AdaptedVit<B>,
    path: &Path,
    bytes: Vec<u8>,
) -> Result<AdaptedVit<B>, AdapterIoError> {
    check_bytes(path, &bytes, model.kind(), "model")?;
    apply(&mut model, path, bytes, None)?;
    Ok(model)
}

/// Loads an adapter-only file saved by [`save_adapter`] into `model`'s domain-specific
/// parameters, leaving the shared ones as they are.
pub fn load_adapter<B: Backend>(
    model: AdaptedVit<B>,
    path: &Path,
) -> Result<AdaptedVit<B>, AdapterIoError> {
    load_adapter_bytes(model, path, read(path)?)
}

/// [`load_adapter`] on the bytes of a file already read (`path` only names it in errors).
pub fn load_adapter_bytes<B: Backend>(
    mut model: AdaptedVit<B>,
    path: &Path,
    bytes: Vec<u8>,
) -> Result<AdaptedVit<B>, AdapterIoError> {
    let kind = model.kind();
    check_bytes(path, &bytes, kind, "adapter")?;
    apply(&mut model, path, bytes, Some(domain_param_patterns(kind)))?;
    Ok(model)
}

/// The bytes [`save_model`] (or, with `adapter_only`, [`save_adapter`]) writes.
pub fn to_safetensors<B: Backend>(
    model: &AdaptedVit<B>,
    adapter_only: bool,
) -> Result<Vec<u8>, AdapterIoError> {
    to_bytes(model, Path::new("<memory>"), adapter_only)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AdaptedVitConfig;
    use advsoup_vit::VitConfig;
    use burn::backend::Flex;

    type TestBackend = Flex;

    fn model(kind: AdapterKind, depth: usize) -> AdaptedVit<TestBackend> {
        let vit = VitConfig::new()
            .with_img_size(8)
            .with_patch_size(4)
            .with_in_chans(1)
            .with_num_classes(3)
            .with_embed_dim(8)
            .with_depth(depth)
            .with_num_heads(2)
            .with_mean(vec![0.5])
            .with_std(vec![0.5]);
        AdaptedVitConfig { vit, adapter: kind }
            .try_init::<TestBackend>(&Default::default())
            .expect("valid tiny config")
    }

    /// Rewrites every tensor of a safetensors file as `dtype` (same byte size), keeping metadata.
    fn retype(bytes: &[u8], dtype: safetensors::Dtype) -> Vec<u8> {
        let st = safetensors::SafeTensors::deserialize(bytes).expect("valid");
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).expect("valid");
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .map(|(k, v)| {
                let view =
                    safetensors::tensor::TensorView::new(dtype, v.shape().to_vec(), v.data())
                        .expect("same size");
                (k, view)
            })
            .collect();
        safetensors::serialize(views, header.metadata().clone()).expect("serialize")
    }

    #[test]
    fn model_file_of_a_deeper_model_is_refused_not_half_loaded() {
        // Regression: the extra block's tensors used to be ignored, so a depth-2 file loaded
        // "successfully" into a depth-1 model.
        let bytes = to_safetensors(&model(AdapterKind::ClsToken, 2), false).expect("bytes");
        let e = load_model_bytes(model(AdapterKind::ClsToken, 1), Path::new("deep.st"), bytes)
            .expect_err("deeper file")
            .to_string();
        assert!(
            e.contains("deep.st") && e.contains("unexpected parameter `vit.blocks.1."),
            "{e}"
        );
        // The same file into the model it came from loads.
        let bytes = to_safetensors(&model(AdapterKind::ClsToken, 2), false).expect("bytes");
        load_model_bytes(model(AdapterKind::ClsToken, 2), Path::new("deep.st"), bytes)
            .expect("same architecture");
    }

    #[test]
    fn non_f32_tensors_are_refused() {
        // Regression: an I32 tensor (same byte size as F32) was handed to burn as is, and the
        // load aborted the whole process with heap corruption ("double free or corruption").
        for adapter_only in [false, true] {
            let m = model(AdapterKind::DualLayerNorm, 1);
            let bytes = retype(
                &to_safetensors(&m, adapter_only).expect("bytes"),
                safetensors::Dtype::I32,
            );
            let path = Path::new("ints.st");
            let e = if adapter_only {
                load_adapter_bytes(model(AdapterKind::DualLayerNorm, 1), path, bytes)
            } else {
                load_model_bytes(model(AdapterKind::DualLayerNorm, 1), path, bytes)
            }
            .expect_err("integer tensors")
            .to_string();
            assert!(
                e.contains("ints.st") && e.contains("dtype I32, expected F32"),
                "{e}"
            );
        }
    }
}
