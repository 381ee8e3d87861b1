//! Durable file IO shared by the advsoup crates: one atomic write, one hash, one ordered
//! prefetch pool, one directory lock.
//!
//! - [`write_atomic`] writes a file so that a reader (or a process killed half-way) never sees
//!   a half-written file: a uniquely named temporary file in the target's directory, synced,
//!   renamed over the target, then the directory synced so the rename itself survives a crash.
//! - [`sha256_hex`] / [`sha256_file`] are the project's one content hash.
//! - [`prefetch::OrderedPool`] runs a job over `0..n` on worker threads, a bounded number of
//!   results ahead, and yields the results in index order (panics come back as values); the
//!   data loaders of advsoup-data and advsoup-train read their batches through it.
//!
//! - [`DirLock`] is the advisory lock on a directory that one process writes (a run, an
//!   evaluation's output): a second writer is refused with the holder's pid, and a lock left by
//!   a killed process never blocks.
//!
//! What this crate must not do: know any advsoup type, depend on burn, or print. Errors are
//! `std::io::Error`s; [`PathError`] names the file for callers that report it.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("run.json");
//! advsoup_io::write_atomic(&path, b"{}").unwrap();
//! assert_eq!(std::fs::read(&path).unwrap(), b"{}");
//! assert_eq!(advsoup_io::sha256_hex(b"").len(), 64);
//! ```
#![warn(missing_docs)]

pub mod lock;
pub mod prefetch;

pub use lock::{DirLock, LockError};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// An IO error with the path it happened on: displays as `<path>: <os error>`.
#[derive(Debug)]
pub struct PathError {
    /// The file or directory.
    pub path: PathBuf,
    /// What the OS said.
    pub source: std::io::Error,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The directory a file lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically and durably.
///
/// A temporary file with a unique name (`.<name>.<random>.tmp`) is created in `path`'s
/// directory (created if missing), written, given mode 0644 on Unix, synced, and renamed over
/// `path`; then the directory is synced. On any error the temporary file is removed and `path`
/// is left as it was. The error names the path it happened on.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PathError> {
    let dir = parent_dir(path);
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PathError { path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(at(dir))?;
    tmp.write_all(bytes).map_err(at(tmp.path()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(at(tmp.path()))?;
    }
    tmp.as_file().sync_all().map_err(at(tmp.path()))?;
    // On error `persist` hands the temporary file back; dropping it removes it.
    tmp.persist(path).map_err(|e| PathError {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(dir).map_err(at(dir))
}

/// Syncs a directory so that renames into it survive a crash (a no-op where directories
/// cannot be opened, as on Windows).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The lowercase hex SHA-256 of a file's contents, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<String, PathError> {
    let at = |source| PathError {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(at)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(at)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(digest: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(digest.len() * 2);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(entries(&dir.path().join("sub")), vec!["a.json".to_string()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }

    #[test]
    fn failed_write_keeps_the_old_file_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target");
        // A directory in the way: the rename fails, the directory stays, no temp file remains.
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
        let err = write_atomic(&path, b"new").unwrap_err();
        assert!(
            err.to_string().starts_with(&path.display().to_string()),
            "{err}"
        );
        assert!(path.is_dir());
        assert_eq!(entries(dir.path()), vec!["target".to_string()]);
    }

    #[test]
    fn hashes_agree_and_match_a_known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), sha256_hex(&bytes));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let missing = sha256_file(&dir.path().join("missing")).unwrap_err();
        assert!(missing.to_string().contains("missing"), "{missing}");
    }
}
