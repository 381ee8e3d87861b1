//! An advisory lock on a directory that one process writes: [`DirLock`].
//!
//! The lock is an exclusive `flock`-style lock (std's [`File::try_lock`]) on
//! `<dir>/.advsoup.lock`, a file that holds the owner's process id. The operating system drops
//! the lock when its process dies, however it dies, so a lock file left by a killed process
//! never blocks anyone: the next process takes the lock and writes its own pid. A clean owner
//! removes the file when the [`DirLock`] drops.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::PathError;

/// The lock file's name inside the locked directory.
pub const LOCK_FILE: &str = ".advsoup.lock";

/// Why a directory could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another live process holds the lock.
    Held {
        /// The locked directory.
        dir: PathBuf,
        /// The holder's process id, as it wrote it (`None` if the file did not say yet).
        pid: Option<u32>,
    },
    /// Creating the directory or the lock file failed.
    Io(PathError),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { dir, pid } => {
                let holder = pid.map_or("another process".to_string(), |p| format!("process {p}"));
                write!(
                    f,
                    "{}: in use by {holder} (lock file {LOCK_FILE}); wait for it to finish or stop it",
                    dir.display()
                )
            }
            LockError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Held { .. } => None,
            LockError::Io(e) => Some(e),
        }
    }
}

/// An exclusive advisory lock on a directory, held until dropped.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let lock = advsoup_io::DirLock::acquire(dir.path()).unwrap();
/// // A second writer (here the same process, through a second open file) is refused.
/// let err = advsoup_io::DirLock::acquire(dir.path()).unwrap_err();
/// assert!(err.to_string().contains(&format!("process {}", std::process::id())));
/// drop(lock);
/// assert!(advsoup_io::DirLock::acquire(dir.path()).is_ok());
/// ```
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Creates `dir` if needed and takes its lock without waiting: [`LockError::Held`] names
    /// the holder's pid when another process (or another `DirLock` of this one) has it.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let at = |p: &Path| {
            let p = p.to_path_buf();
            move |source| LockError::Io(PathError { path: p, source })
        };
        std::fs::create_dir_all(dir).map_err(at(dir))?;
        // A previous owner removes the file as it lets go: if the file this process locked is
        // no longer the one at `path`, it locked a removed file, and tries again.
        for _ in 0..16 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(at(&path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Err(LockError::Held {
                        dir: dir.to_path_buf(),
                        pid: text.trim().parse().ok(),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(at(&path)(e)),
            }
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0).map_err(at(&path))?;
            file.rewind().map_err(at(&path))?;
            writeln!(file, "{}", std::process::id()).map_err(at(&path))?;
            return Ok(DirLock { file, path });
        }
        Err(at(&path)(std::io::Error::other(
            "the lock file kept being replaced while locking it",
        )))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Removed while still locked, so nobody can lock this file after it is gone; a
        // process that opened it meanwhile sees it replaced and retries.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holders_pid_and_the_lock_goes_with_its_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("run");
        let lock = DirLock::acquire(&run).expect("first lock");
        assert_eq!(
            std::fs::read_to_string(lock.path())
                .expect("lock file")
                .trim(),
            std::process::id().to_string()
        );
        match DirLock::acquire(&run) {
            Err(LockError::Held { pid, dir }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(dir, run);
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(lock);
        assert!(
            !run.join(LOCK_FILE).exists(),
            "a clean owner removes the file"
        );
        DirLock::acquire(&run).expect("free again");
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_does_not_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        // What a SIGKILLed owner leaves: the file with its pid, and no lock (the OS dropped it).
        std::fs::write(dir.path().join(LOCK_FILE), "999999999\n").expect("stale file");
        let lock = DirLock::acquire(dir.path()).expect("a stale lock never blocks");
        assert_eq!(
            std::fs::read_to_string(lock.path())
                .expect("lock file")
                .trim(),
            std::process::id().to_string()
        );
    }

    #[test]
    fn a_child_process_holding_the_lock_is_named_and_its_death_frees_it() {
        // `flock(1)` holds a lock of the same kind as std's File::lock on Linux.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(LOCK_FILE);
        let child = std::process::Command::new("flock")
            // -o: only flock itself holds the lock, not the `sleep` it runs.
            .arg("-o")
            .arg(&file)
            .args(["sleep", "30"])
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("skipped: no flock(1) here");
            return;
        };
        // Wait (without taking the lock for long) until the child holds it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let locked_by_child = loop {
            let probe = File::open(&file).ok();
            match probe.as_ref().map(File::try_lock) {
                Some(Err(TryLockError::WouldBlock)) => break true,
                _ if std::time::Instant::now() > deadline => break false,
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        let held = matches!(DirLock::acquire(dir.path()), Err(LockError::Held { .. }));
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(locked_by_child, "flock never took the lock");
        assert!(held, "the child's lock was not seen by DirLock");
        DirLock::acquire(dir.path()).expect("the dead child's lock does not block");
    }
}
