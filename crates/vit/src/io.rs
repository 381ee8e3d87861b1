//! timm interop: load and save `.safetensors` files written by PyTorch/timm, through
//! burn-store's PyTorch adapters (Linear weights transposed, LayerNorm `weight/bias` <->
//! `gamma/beta`). Keys are timm's, so no renaming is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

use crate::{Vit, VitConfig};

/// Why timm weights could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TimmIoError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key the model needs is not in the file.
    #[error("{path}: missing key `{key}` (expected shape {expected:?})")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The timm key.
        key: String,
        /// The shape the model needs.
        expected: Vec<usize>,
    },
    /// A tensor has another dtype than `F32`.
    #[error("{path}: key `{key}` has dtype {found}, expected F32 (save the weights as float32)")]
    DType {
        /// The file.
        path: PathBuf,
        /// The timm key.
        key: String,
        /// The dtype in the file.
        found: String,
    },
    /// A tensor has another shape than the model's.
    #[error("{path}: key `{key}` has shape {found:?}, expected {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The timm key.
        key: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// The file holds a tensor this architecture does not have.
    #[error("{path}: unexpected key `{key}` (not a parameter of this architecture)")]
    UnexpectedKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// burn-store refused the file.
    #[error("{path}: {message}")]
    Store {
        /// The file.
        path: PathBuf,
        /// burn-store's message.
        message: String,
    },
}

/// Every parameter of the model this config builds, by timm key, with its shape in PyTorch's
/// layout (Linear weights `[out, in]`).
pub fn timm_param_shapes(config: &VitConfig) -> BTreeMap<String, Vec<usize>> {
    let d = config.embed_dim;
    let h = config.mlp_hidden();
    let p = config.patch_size;
    let mut m = BTreeMap::new();
    let mut put = |k: String, s: Vec<usize>| {
        m.insert(k, s);
    };
    put(
        "patch_embed.proj.weight".into(),
        vec![d, config.in_chans, p, p],
    );
    put("patch_embed.proj.bias".into(), vec![d]);
    put("cls_token".into(), vec![1, 1, d]);
    put("pos_embed".into(), vec![1, config.num_patches() + 1, d]);
    for i in 0..config.depth {
        let b = format!("blocks.{i}");
        for n in ["norm1", "norm2"] {
            put(format!("{b}.{n}.weight"), vec![d]);
            put(format!("{b}.{n}.bias"), vec![d]);
        }
        put(format!("{b}.attn.qkv.weight"), vec![3 * d, d]);
        if config.qkv_bias {
            put(format!("{b}.attn.qkv.bias"), vec![3 * d]);
        }
        put(format!("{b}.attn.proj.weight"), vec![d, d]);
        put(format!("{b}.attn.proj.bias"), vec![d]);
        put(format!("{b}.mlp.fc1.weight"), vec![h, d]);
        put(format!("{b}.mlp.fc1.bias"), vec![h]);
        put(format!("{b}.mlp.fc2.weight"), vec![d, h]);
        put(format!("{b}.mlp.fc2.bias"), vec![d]);
    }
    put("norm.weight".into(), vec![d]);
    put("norm.bias".into(), vec![d]);
    put("head.weight".into(), vec![config.num_classes, d]);
    put("head.bias".into(), vec![config.num_classes]);
    m
}

/// Checks a safetensors buffer against the keys and shapes of `config`'s model, naming the first
/// offending key.
pub fn check_timm_bytes(path: &Path, bytes: &[u8], config: &VitConfig) -> Result<(), TimmIoError> {
    let tensors =
        safetensors::SafeTensors::deserialize(bytes).map_err(|e| TimmIoError::Format {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    let found: BTreeMap<String, (Vec<usize>, safetensors::Dtype)> = tensors
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.shape().to_vec(), v.dtype())))
        .collect();
    let expected = timm_param_shapes(config);
    for (key, shape) in &expected {
        match found.get(key) {
            None => {
                return Err(TimmIoError::MissingKey {
                    path: path.to_owned(),
                    key: key.clone(),
                    expected: shape.clone(),
                });
            }
            Some((f, _)) if f != shape => {
                return Err(TimmIoError::Shape {
                    path: path.to_owned(),
                    key: key.clone(),
                    expected: shape.clone(),
                    found: f.clone(),
                });
            }
            // burn-store would load another dtype as is (an f16 or integer tensor inside an f32
            // model), which fails later, far from the file.
            Some((_, dtype)) if *dtype != safetensors::Dtype::F32 => {
                return Err(TimmIoError::DType {
                    path: path.to_owned(),
                    key: key.clone(),
                    found: format!("{dtype:?}"),
                });
            }
            Some(_) => {}
        }
    }
    if let Some(key) = found.keys().find(|k| !expected.contains_key(*k)) {
        return Err(TimmIoError::UnexpectedKey {
            path: path.to_owned(),
            key: key.clone(),
        });
    }
    Ok(())
}

/// Loads timm weights (a PyTorch-written `.safetensors`) into a model built from `config`.
/// Every key must be present with the right shape; the error names the first one that is not.
pub fn load_timm<B: Backend>(
    path: &Path,
    config: &VitConfig,
    device: &B::Device,
) -> Result<Vit<B>, TimmIoError> {
    let bytes = std::fs::read(path).map_err(|source| TimmIoError::Io {
        path: path.to_owned(),
        source,
    })?;
    load_timm_bytes(path, bytes, config, device)
}

/// [`load_timm`] on the bytes of a file already read (`path` only names it in errors).
pub fn load_timm_bytes<B: Backend>(
    path: &Path,
    bytes: Vec<u8>,
    config: &VitConfig,
    device: &B::Device,
) -> Result<Vit<B>, TimmIoError> {
    check_timm_bytes(path, &bytes, config)?;
    let mut model: Vit<B> = config.init(device);
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter)
        .validate(false)
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| TimmIoError::Store {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    // burn-store 0.21 lists applied LayerNorm keys as unused; judge by missing and errors.
    if let Some((key, _)) = result.missing.first() {
        return Err(TimmIoError::Store {
            path: path.to_owned(),
            message: format!("parameter `{key}` was not loaded"),
        });
    }
    if let Some(e) = result.errors.first() {
        return Err(TimmIoError::Store {
            path: path.to_owned(),
            message: e.to_string(),
        });
    }
    Ok(model)
}

/// Writes the model in timm's layout and names, atomically (temporary file, then rename).
pub fn save_timm<B: Backend>(model: &Vit<B>, path: &Path) -> Result<(), TimmIoError> {
    let bytes = timm_bytes(model, path)?;
    write_atomic(path, &bytes).map_err(|source| TimmIoError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The bytes [`save_timm`] writes (`path` only names the file in errors).
pub fn timm_bytes<B: Backend>(model: &Vit<B>, path: &Path) -> Result<Vec<u8>, TimmIoError> {
    let mut store = SafetensorsStore::from_bytes(None).with_to_adapter(BurnToPyTorchAdapter);
    model
        .save_into(&mut store)
        .map_err(|e| TimmIoError::Store {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    store
        .get_bytes()
        .map(reproducible)
        .map_err(|e| TimmIoError::Store {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// burn-store writes the safetensors header from hash maps, so the same weights give different
/// file bytes in different processes (metadata order). This rewrites the header as JSON with
/// sorted keys (serde_json's map is ordered) padded to 8 bytes; tensor offsets are relative to
/// the data section and do not change. Equal weights then give equal files, which is what a
/// resumed-versus-uninterrupted comparison or a content address wants. Bytes that are not a
/// well-formed safetensors file are returned unchanged (loading reports them).
pub fn reproducible(bytes: Vec<u8>) -> Vec<u8> {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8usize.saturating_add(len)) else {
        return bytes;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return bytes;
    };
    let Ok(mut text) = serde_json::to_vec(&value) else {
        return bytes;
    };
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + len..]);
    out
}

/// Writes `bytes` to a temporary file next to `path`, syncs it, then renames it over `path`, so
/// that a reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// Exported timm files are byte-reproducible: the header's keys come out sorted (burn-store
    /// writes them from hash maps, whose order differs between maps and processes).
    #[test]
    fn timm_export_header_is_sorted() {
        let config = VitConfig::new(8, 4, 1, 3, 8, 1, 2)
            .with_mean(vec![0.5])
            .with_std(vec![0.5]);
        let device = Default::default();
        let bytes = timm_bytes(&config.init::<Flex>(&device), Path::new("m")).expect("bytes");
        let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        let header = std::str::from_utf8(&bytes[8..8 + len]).expect("utf-8 header");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid");
        let mut in_file_order: Vec<String> =
            st.names().into_iter().map(|s| s.to_string()).collect();
        assert!(in_file_order.len() > 5, "{in_file_order:?}");
        in_file_order.sort_by_key(|n| header.find(&format!("\"{n}\"")).expect("name in header"));
        let mut sorted = in_file_order.clone();
        sorted.sort();
        assert_eq!(
            in_file_order, sorted,
            "header keys in file order must be sorted"
        );
        assert_eq!(reproducible(bytes.clone()), bytes, "already canonical");
    }

    #[test]
    fn non_f32_tensors_are_refused_before_loading() {
        // Regression: an I32 tensor of the right shape passed the key/shape check and was
        // handed to burn-store as is (the same case aborted the process with heap corruption in
        // the adapter loader).
        let config = VitConfig::new(8, 4, 1, 3, 8, 1, 2)
            .with_mean(vec![0.5])
            .with_std(vec![0.5]);
        let device = Default::default();
        let bytes = timm_bytes(&config.init::<Flex>(&device), Path::new("m")).expect("bytes");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid");
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .map(|(k, v)| {
                let dtype = if k == "head.bias" {
                    safetensors::Dtype::I32
                } else {
                    v.dtype()
                };
                let view =
                    safetensors::tensor::TensorView::new(dtype, v.shape().to_vec(), v.data())
                        .expect("same size");
                (k, view)
            })
            .collect();
        let ints = safetensors::serialize(views, None).expect("serialize");
        let e = load_timm_bytes::<Flex>(Path::new("ints.safetensors"), ints, &config, &device)
            .expect_err("integer head bias")
            .to_string();
        assert!(
            e.contains("ints.safetensors") && e.contains("`head.bias`") && e.contains("I32"),
            "{e}"
        );
        load_timm_bytes::<Flex>(Path::new("ok.safetensors"), bytes, &config, &device)
            .expect("the unmodified file loads");
    }
}
