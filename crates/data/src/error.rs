//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading, verifying, fetching or writing data.
///
/// Messages are lowercase, name the file (or URL / command) and, where it applies, the byte
/// offset or entry and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O operation on a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file ended before the data its header (or record size) promised.
    #[error(
        "{path}: truncated at byte offset {offset}: expected {expected} bytes in total, found {found}"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where the missing data starts.
        offset: u64,
        /// Bytes the file should have.
        expected: u64,
        /// Bytes it has.
        found: u64,
    },
    /// The magic number at the start of a file is not the expected one.
    #[error(
        "{path}: wrong magic number at byte offset 0: expected {expected:#010x}, found {found:#010x}"
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number the format requires.
        expected: u32,
        /// The number found.
        found: u32,
    },
    /// Two files (or a header and its data) disagree on the number of items.
    #[error("{path}: item count mismatch: expected {expected} items ({what}), found {found}")]
    CountMismatch {
        /// The file whose count is wrong.
        path: PathBuf,
        /// The count required.
        expected: usize,
        /// The count found.
        found: usize,
        /// Where the expected count comes from.
        what: String,
    },
    /// A label is not a valid class index.
    #[error(
        "{path}: entry {entry} (byte offset {offset}): label {label} out of range: expected a class index below {num_classes}"
    )]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// The item index.
        entry: usize,
        /// Byte offset of the label.
        offset: u64,
        /// The label found.
        label: u64,
        /// Number of classes.
        num_classes: usize,
    },
    /// An image file could not be decoded.
    #[error("{path}: image failed to decode: {reason}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// A file's SHA-256 is not the expected one.
    #[error("{path}: sha-256 mismatch: expected {expected}, found {found}")]
    Checksum {
        /// The file (or the name it was to be stored under).
        path: PathBuf,
        /// The pinned checksum.
        expected: String,
        /// The checksum of the data received.
        found: String,
    },
    /// A file is readable but its content does not follow the format.
    #[error("{path}: {what}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was found and what was expected, including the offset or entry.
        what: String,
    },
    /// An image's shape differs from the one the dataset uses.
    #[error("{path}: image shape {found:?} (c, h, w) differs from the dataset's {expected:?}")]
    ShapeMismatch {
        /// The image file.
        path: PathBuf,
        /// The dataset's shape.
        expected: [usize; 3],
        /// The image's shape.
        found: [usize; 3],
    },
    /// A dataset is not (completely) in the cache.
    #[error(
        "{path}: dataset {dataset} is not in the cache (missing {file}); run `advsoup data fetch {dataset}`"
    )]
    NotCached {
        /// The dataset directory.
        path: PathBuf,
        /// The dataset name.
        dataset: String,
        /// The first missing file.
        file: String,
    },
    /// Every source of a fetch failed.
    #[error("fetching {dataset} failed; tried, in order:\n{tried}")]
    FetchFailed {
        /// The dataset name.
        dataset: String,
        /// One line per attempt: the source and why it failed.
        tried: String,
    },
    /// A download failed (status, size cap, transport).
    #[error("{url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// An external command (`apt-get`, `dpkg-deb`, `npm`) failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status / stderr, with a hint where one is known.
        reason: String,
    },
    /// An argument is not valid (unknown dataset, severity out of range, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// The crate's result type.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Attach a path to an `io::Error`.
pub(crate) fn path_err(e: advsoup_io::PathError) -> DataError {
    DataError::Io {
        path: e.path,
        source: e.source,
    }
}

/// [`advsoup_io::write_atomic`] (temp file, sync, rename, sync the directory; mode 0644), its
/// error as a [`DataError::Io`] naming the path.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    advsoup_io::write_atomic(path, bytes).map_err(path_err)
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| DataError::Io { path, source }
}
