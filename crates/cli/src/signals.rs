//! SIGINT and SIGTERM: Ctrl-C, and what `timeout`, `docker stop`, Kubernetes and Slurm send.
//!
//! - `advsoup train` ([`OnSignal::Stop`]) asks the trainer to stop: it finishes the current
//!   step, writes a checkpoint, and the process exits 130 (SIGINT) / 143 (SIGTERM) with one
//!   line saying how to continue ([`Stopped`]). Further signals only repeat the request, so the
//!   checkpoint being written is never cut short (SIGKILL aborts without one). During the final
//!   evaluation the request ends it between its parts; `--resume` evaluates again.
//! - Every other command ([`OnSignal::Exit`]) exits at once with 130 / 143, after removing the
//!   temporary files (`.<name>.<random>.tmp`, `.fetch-*` staging directories) and the lock
//!   file of the directories it holds ([`Writing`]). Those directories are locked, so what is
//!   removed can only be this process's. Finished pieces of an evaluation (`<out>.partial/`)
//!   are kept: running the command again continues from them.
//!
//! Only the binary installs the handlers ([`install`]); the library API ([`crate::run`]) leaves
//! a process's signals alone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use advsoup_records::run::CheckpointState;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::exit::{Exit, signal_name};

/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The directories this process writes under a lock (cleaned when a signal ends it).
static WRITING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// What a signal does.
pub(crate) enum OnSignal {
    /// Set the trainer's stop flag.
    Stop(Arc<AtomicBool>),
    /// Clean up and exit now.
    Exit,
}

/// Handles SIGINT and SIGTERM on a thread of their own from now on.
pub(crate) fn install(on: OnSignal) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("advsoup-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let first = RECEIVED
                    .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                match &on {
                    OnSignal::Stop(stop) => {
                        stop.store(true, Ordering::SeqCst);
                        if first && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                            eprintln!(
                                "\n{}: finishing this step, then writing a checkpoint \
                                 (SIGKILL stops without one)",
                                signal_name(signal)
                            );
                        }
                    }
                    OnSignal::Exit => {
                        clean_up_writing();
                        std::process::exit(Exit::of_signal(signal).code());
                    }
                }
            }
        })?;
    Ok(())
}

/// The first signal this process received, if any.
pub(crate) fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// `advsoup train` stopped on a signal after writing its checkpoint.
#[derive(Debug)]
pub struct Stopped {
    /// SIGINT or SIGTERM.
    pub signal: i32,
    /// The run directory.
    pub run: PathBuf,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let checkpoint = self.run.join("checkpoint");
        let step = std::fs::read(checkpoint.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<CheckpointState>(&b).ok())
            .map(|state| state.global_step);
        write!(f, "checkpoint saved in {}", checkpoint.display())?;
        if let Some(step) = step {
            write!(f, " at step {step}")?;
        }
        write!(f, "; continue with the same command and --resume")
    }
}

impl std::error::Error for Stopped {}

/// A directory this process writes under its lock, registered for clean-up on a signal until
/// dropped.
#[derive(Debug)]
pub(crate) struct Writing {
    dir: PathBuf,
}

impl Writing {
    pub(crate) fn new(dir: &Path) -> Writing {
        lock_registry().push(dir.to_path_buf());
        Writing {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut dirs = lock_registry();
        if let Some(i) = dirs.iter().position(|d| *d == self.dir) {
            dirs.remove(i);
        }
    }
}

fn lock_registry() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    WRITING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the temporary files and the lock file of every registered directory.
fn clean_up_writing() {
    for dir in lock_registry().iter() {
        remove_temporaries(dir, 4);
        let _ = std::fs::remove_file(dir.join(advsoup_io::lock::LOCK_FILE));
    }
}

/// Whether `name` is one of the temporary files or staging directories advsoup writes:
/// `write_atomic`'s `.<name>.<random>.tmp`, a fetch's `.fetch-<random>`.
pub(crate) fn is_temporary(name: &str) -> bool {
    (name.starts_with('.') && name.ends_with(".tmp")) || name.starts_with(".fetch-")
}

/// Removes the temporaries under `dir`, `depth` levels down.
fn remove_temporaries(dir: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_temporary(&e.file_name().to_string_lossy()) {
            let _ = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        } else if is_dir && depth > 1 {
            remove_temporaries(&path, depth - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_removed_and_results_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for f in [
            ".eval.json.Ab12.tmp",
            "eval.json",
            "eval.json.partial/.00001.json.x9.tmp",
            "eval.json.partial/00000.json",
            ".fetch-Qz/train-images-idx3-ubyte",
        ] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, b"x").expect("write");
        }
        let writing = Writing::new(d);
        clean_up_writing();
        drop(writing);
        let mut left: Vec<String> = Vec::new();
        for e in std::fs::read_dir(d).expect("dir").flatten() {
            left.push(e.file_name().to_string_lossy().into_owned());
        }
        left.sort();
        assert_eq!(left, ["eval.json", "eval.json.partial"]);
        let partial: Vec<_> = std::fs::read_dir(d.join("eval.json.partial"))
            .expect("partial")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(partial, ["00000.json"]);
        assert!(lock_registry().iter().all(|p| p != d), "deregistered");
    }
}
