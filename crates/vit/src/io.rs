//! timm interop: load and save `.safetensors` files written by PyTorch/timm, through
//! burn-store's PyTorch adapters (Linear weights transposed, LayerNorm `weight/bias` <->
//! `gamma/beta`). Keys are timm's, so no renaming is needed.
//!
//! A timm weight file does not say how its inputs are normalized (timm keeps the mean and std
//! in the model's `pretrained_cfg`, not in the weights), and a wrong normalization gives wrong
//! predictions without any error. So [`load_timm`] never assumes one: the caller gives it
//! ([`NormalizationSource::Given`]) or the file carries it ([`NormalizationSource::FromFile`]:
//! [`save_timm`] writes `mean` and `std` into the safetensors metadata).

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
    /// The input normalization is neither given nor recorded in the file.
    #[error(
        "{path}: the file does not record its input normalization (timm files never do); give the mean and std the checkpoint was trained with (timm's pretrained_cfg, e.g. 0.5,0.5,0.5 for the augreg ViTs)"
    )]
    NoNormalization {
        /// The file.
        path: PathBuf,
    },
    /// The given normalization differs from the one the file records, or is not valid for the
    /// model.
    #[error("{path}: {message}")]
    Normalization {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
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

/// A model's per-channel input normalization: pixels in [0, 1] become `(x - mean) / std` inside
/// the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Per-channel means.
    pub mean: Vec<f64>,
    /// Per-channel standard deviations.
    pub std: Vec<f64>,
}

impl Normalization {
    /// A normalization from its per-channel mean and std.
    pub fn new(mean: Vec<f64>, std: Vec<f64>) -> Self {
        Self { mean, std }
    }

    /// timm's `IMAGENET_INCEPTION_MEAN` / `_STD` (0.5 and 0.5 per channel; timm
    /// `data/constants.py`), the normalization of timm's ViT `augreg` checkpoints.
    pub fn inception() -> Self {
        Self::new(vec![0.5; 3], vec![0.5; 3])
    }

    /// timm's `IMAGENET_DEFAULT_MEAN` / `_STD` ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225);
    /// timm `data/constants.py`), the normalization of DeiT and most torchvision-style
    /// checkpoints.
    pub fn imagenet() -> Self {
        Self::new(vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
    }

    /// The normalization a config builds into its model.
    pub fn of_config(config: &VitConfig) -> Self {
        Self::new(config.mean.clone(), config.std.clone())
    }

    /// The normalization a model applies, read back from its constants: each value is the
    /// shortest decimal that rebuilds the stored f32 constant exactly (the model keeps `mean`
    /// and `1 / std`), so a config's 0.286 / 0.353 come back as 0.286 / 0.353.
    pub fn of_model<B: Backend>(model: &Vit<B>) -> Self {
        let values = |t: Tensor<B, 4>| -> Vec<f32> {
            t.into_data().convert::<f32>().to_vec().unwrap_or_default()
        };
        Self::new(
            values(model.mean.clone())
                .into_iter()
                .map(|m| shortest_decimal(m, f64::from(m), |x| x as f32))
                .collect(),
            values(model.inv_std.clone())
                .into_iter()
                .map(|inv| shortest_decimal(inv, 1.0 / f64::from(inv), |x| (1.0 / x) as f32))
                .collect(),
        )
    }

    fn to_metadata(&self) -> [(&'static str, String); 2] {
        let list = |v: &[f64]| serde_json::to_string(v).unwrap_or_default();
        [("mean", list(&self.mean)), ("std", list(&self.std))]
    }

    fn from_metadata(
        meta: &std::collections::HashMap<String, String>,
    ) -> Option<Result<Self, String>> {
        let read = |k: &str| -> Option<Result<Vec<f64>, String>> {
            meta.get(k).map(|v| {
                serde_json::from_str::<Vec<f64>>(v)
                    .map_err(|e| format!("metadata `{k}` = {v:?} is not a list of numbers ({e})"))
            })
        };
        match (read("mean"), read("std")) {
            (None, None) => None,
            (Some(m), Some(s)) => Some(m.and_then(|m| s.map(|s| Self::new(m, s)))),
            _ => Some(Err(
                "metadata has only one of `mean` and `std`; expected both".to_string(),
            )),
        }
    }
}

/// The decimal with the fewest significant digits near `approx` that `stored` maps back to
/// `target` (`approx` itself when none of up to 17 digits does).
fn shortest_decimal(target: f32, approx: f64, stored: impl Fn(f64) -> f32) -> f64 {
    (0..17)
        .filter_map(|digits| format!("{approx:.digits$e}").parse::<f64>().ok())
        .find(|&x| stored(x) == target)
        .unwrap_or(approx)
}

/// Where [`load_timm`] takes the model's input normalization from.
#[derive(Debug, Clone, PartialEq)]
pub enum NormalizationSource {
    /// From the file's `mean` / `std` metadata (written by [`save_timm`]); an error if absent.
    FromFile,
    /// As given; if the file records one too, they must agree.
    Given(Normalization),
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

/// Loads timm weights (a PyTorch-written `.safetensors`) into a model built from `config`, with
/// the input normalization from `normalization` (never `config`'s default: see the module
/// docs). Every key must be present with the right shape; the error names the first one that
/// is not.
pub fn load_timm<B: Backend>(
    path: &Path,
    config: &VitConfig,
    normalization: &NormalizationSource,
    device: &B::Device,
) -> Result<Vit<B>, TimmIoError> {
    let bytes = std::fs::read(path).map_err(|source| TimmIoError::Io {
        path: path.to_owned(),
        source,
    })?;
    load_timm_bytes(path, bytes, config, normalization, device)
}

/// The config `load_timm` builds: `config` with the normalization resolved from `source` and
/// the file's metadata.
fn resolve_normalization(
    path: &Path,
    bytes: &[u8],
    config: &VitConfig,
    source: &NormalizationSource,
) -> Result<VitConfig, TimmIoError> {
    let bad = |message: String| TimmIoError::Normalization {
        path: path.to_owned(),
        message,
    };
    let recorded = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| TimmIoError::Format {
            path: path.to_owned(),
            message: e.to_string(),
        })?
        .1
        .metadata()
        .as_ref()
        .and_then(Normalization::from_metadata)
        .transpose()
        .map_err(bad)?;
    let norm = match (source, recorded) {
        (NormalizationSource::FromFile, Some(r)) => r,
        (NormalizationSource::FromFile, None) => {
            return Err(TimmIoError::NoNormalization {
                path: path.to_owned(),
            });
        }
        (NormalizationSource::Given(g), Some(r)) if *g != r => {
            return Err(bad(format!(
                "the given normalization (mean {:?}, std {:?}) differs from the file's (mean {:?}, std {:?})",
                g.mean, g.std, r.mean, r.std
            )));
        }
        (NormalizationSource::Given(g), _) => g.clone(),
    };
    let resolved = config.clone().with_mean(norm.mean).with_std(norm.std);
    resolved.validate().map_err(|e| bad(e.to_string()))?;
    Ok(resolved)
}

/// [`load_timm`] on the bytes of a file already read (`path` only names it in errors).
pub fn load_timm_bytes<B: Backend>(
    path: &Path,
    bytes: Vec<u8>,
    config: &VitConfig,
    normalization: &NormalizationSource,
    device: &B::Device,
) -> Result<Vit<B>, TimmIoError> {
    check_timm_bytes(path, &bytes, config)?;
    let config = resolve_normalization(path, &bytes, config, normalization)?;
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

/// Writes the model in timm's layout and names, atomically (temporary file, then rename), with
/// its input normalization as `mean` / `std` metadata.
pub fn save_timm<B: Backend>(model: &Vit<B>, path: &Path) -> Result<(), TimmIoError> {
    let bytes = timm_bytes(model, path)?;
    advsoup_io::write_atomic(path, &bytes).map_err(|e| TimmIoError::Io {
        path: path.to_owned(),
        source: e.source,
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
    let bytes = store.get_bytes().map_err(|e| TimmIoError::Store {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let norm = Normalization::of_model(model);
    Ok(rewrite_header(bytes, |header| {
        if let Some(obj) = header.as_object_mut() {
            let meta = obj
                .entry("__metadata__")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let Some(meta) = meta.as_object_mut() {
                for (k, v) in norm.to_metadata() {
                    meta.insert(k.to_string(), serde_json::Value::String(v));
                }
            }
        }
    }))
}

/// burn-store writes the safetensors header from hash maps, so the same weights give different
/// file bytes in different processes (metadata order). This rewrites the header as JSON with
/// sorted keys (serde_json's map is ordered) padded to 8 bytes; tensor offsets are relative to
/// the data section and do not change. Equal weights then give equal files, which is what a
/// resumed-versus-uninterrupted comparison or a content address wants. Bytes that are not a
/// well-formed safetensors file are returned unchanged (loading reports them).
pub fn reproducible(bytes: Vec<u8>) -> Vec<u8> {
    rewrite_header(bytes, |_| {})
}

/// The safetensors `bytes` with the header parsed, changed by `edit`, and written back with
/// sorted keys padded to 8 bytes (see [`reproducible`]); malformed bytes come back unchanged.
fn rewrite_header(bytes: Vec<u8>, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8usize.saturating_add(len)) else {
        return bytes;
    };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return bytes;
    };
    edit(&mut value);
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// Exported timm files are byte-reproducible: the header's keys come out sorted (burn-store
    /// writes them from hash maps, whose order differs between maps and processes).
    #[test]
    fn timm_export_header_is_sorted() {
        let config = VitConfig::new()
            .with_img_size(8)
            .with_patch_size(4)
            .with_in_chans(1)
            .with_num_classes(3)
            .with_embed_dim(8)
            .with_depth(1)
            .with_num_heads(2)
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
        let config = VitConfig::new()
            .with_img_size(8)
            .with_patch_size(4)
            .with_in_chans(1)
            .with_num_classes(3)
            .with_embed_dim(8)
            .with_depth(1)
            .with_num_heads(2)
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
        let e = load_timm_bytes::<Flex>(
            Path::new("ints.safetensors"),
            ints,
            &config,
            &FROM_FILE,
            &device,
        )
        .expect_err("integer head bias")
        .to_string();
        assert!(
            e.contains("ints.safetensors") && e.contains("`head.bias`") && e.contains("I32"),
            "{e}"
        );
        load_timm_bytes::<Flex>(
            Path::new("ok.safetensors"),
            bytes,
            &config,
            &FROM_FILE,
            &device,
        )
        .expect("the unmodified file loads");
    }

    const FROM_FILE: NormalizationSource = NormalizationSource::FromFile;

    fn tiny_with(mean: f64, std: f64) -> VitConfig {
        VitConfig::new()
            .with_img_size(8)
            .with_patch_size(4)
            .with_in_chans(1)
            .with_num_classes(3)
            .with_embed_dim(8)
            .with_depth(1)
            .with_num_heads(2)
            .with_mean(vec![mean])
            .with_std(vec![std])
    }

    /// A timm-written file (no metadata) must not load with the config's normalization unless
    /// one is given; advsoup's export records it, so its files load by themselves.
    #[test]
    fn normalization_is_given_or_read_from_the_file_never_defaulted() {
        let device = Default::default();
        let exported = tiny_with(0.286, 0.353).init::<Flex>(&device);
        let bytes = timm_bytes(&exported, Path::new("m")).expect("bytes");
        let meta = safetensors::SafeTensors::read_metadata(&bytes)
            .expect("header")
            .1;
        let meta = meta.metadata().clone().expect("metadata written");
        assert_eq!(meta["mean"], "[0.286]");
        assert_eq!(meta["std"], "[0.353]");

        // From the file: the recorded values win over the config's 0.5.
        let cfg = tiny_with(0.5, 0.5);
        let back =
            load_timm_bytes::<Flex>(Path::new("a"), bytes.clone(), &cfg, &FROM_FILE, &device)
                .expect("loads from metadata");
        assert_eq!(
            Normalization::of_model(&back),
            Normalization::new(vec![0.286], vec![0.353])
        );
        back.mean
            .into_data()
            .assert_eq(&exported.mean.clone().into_data(), true);

        // Given and agreeing: fine; given and disagreeing: refused, naming the file.
        let agree = NormalizationSource::Given(Normalization::new(vec![0.286], vec![0.353]));
        load_timm_bytes::<Flex>(Path::new("a"), bytes.clone(), &cfg, &agree, &device)
            .expect("agreeing normalization");
        let other = NormalizationSource::Given(Normalization::new(vec![0.5], vec![0.5]));
        let e = load_timm_bytes::<Flex>(Path::new("b.st"), bytes.clone(), &cfg, &other, &device)
            .expect_err("conflict")
            .to_string();
        assert!(e.starts_with("b.st: the given normalization"), "{e}");

        // A file without metadata (as timm writes them): refused unless given.
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid");
        let plain = safetensors::serialize(st.tensors(), None).expect("serialize");
        let e = load_timm_bytes::<Flex>(
            Path::new("timm.st"),
            plain.clone(),
            &cfg,
            &FROM_FILE,
            &device,
        )
        .expect_err("no normalization")
        .to_string();
        assert!(
            e.starts_with("timm.st: the file does not record its input normalization"),
            "{e}"
        );
        let given =
            load_timm_bytes::<Flex>(Path::new("timm.st"), plain.clone(), &cfg, &agree, &device)
                .expect("given");
        assert_eq!(
            Normalization::of_model(&given),
            Normalization::new(vec![0.286], vec![0.353])
        );

        // A normalization with the wrong number of channels is refused before building.
        let three = NormalizationSource::Given(Normalization::inception());
        let e = load_timm_bytes::<Flex>(Path::new("timm.st"), plain, &cfg, &three, &device)
            .expect_err("3 channels for a 1-channel model")
            .to_string();
        assert!(e.contains("mean and std need 1 entries"), "{e}");
    }
}
