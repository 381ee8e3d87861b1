//! What the commands that read a run (`eval`, `attack`, `soup`, `export-timm`, `info --run`,
//! `report`) check before they start, and the lock every command takes on the directory it
//! writes into.
//!
//! - [`require_run`]: a directory without `config.toml` is `not a run directory`, not a
//!   missing file.
//! - [`require_finished`]: a run without `model.safetensors` has not finished training; the
//!   error says so and gives the command that continues it.
//! - [`lock_output`]: an [`advsoup_io::DirLock`] on the directory an output goes into; a second
//!   writer is refused naming the holder's pid (exit 2) before anything is written.

use std::path::{Path, PathBuf};

use advsoup_io::DirLock;

use crate::signals::Writing;

/// Why a directory cannot be used as a run.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// No `config.toml`: not a run directory at all.
    #[error("{}: not a run directory (no config.toml)", dir.display())]
    NotARun {
        /// The directory given.
        dir: PathBuf,
    },
    /// A run whose training has not written its model yet.
    #[error(
        "{}: training has not finished (no model.safetensors); continue it with `{resume}`",
        dir.display()
    )]
    Unfinished {
        /// The run directory.
        dir: PathBuf,
        /// The command that continues it.
        resume: String,
    },
}

/// Refuses a directory that is not a run (no `config.toml`).
pub fn require_run(dir: &Path) -> Result<(), RunDirError> {
    if dir.join("config.toml").is_file() {
        Ok(())
    } else {
        Err(RunDirError::NotARun {
            dir: dir.to_path_buf(),
        })
    }
}

/// Refuses a directory that is not a run, or a run whose training has not finished (no
/// `model.safetensors`).
pub fn require_finished(dir: &Path) -> Result<(), RunDirError> {
    require_run(dir)?;
    if dir.join("model.safetensors").is_file() {
        return Ok(());
    }
    Err(RunDirError::Unfinished {
        dir: dir.to_path_buf(),
        resume: resume_command(dir),
    })
}

/// The command that continues the run in `dir` (`<runs>/<name>`): its resolved config, its
/// parent as the runs directory, `--resume`.
pub fn resume_command(dir: &Path) -> String {
    let runs = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    format!(
        "advsoup train --config {} --runs-dir {} --resume",
        dir.join("config.toml").display(),
        runs.display()
    )
}

/// The lock held while a command writes into a directory (released, and the lock file
/// removed, when dropped; a signal that ends the process cleans the directory).
#[derive(Debug)]
pub struct OutputLock {
    // Field order: deregister from the signal clean-up before the lock goes.
    _writing: Writing,
    _lock: DirLock,
}

/// Locks the directory that `output` (a file or a directory) is written into: its parent, or
/// `.` for a bare name. A second writer gets [`advsoup_io::LockError::Held`].
pub fn lock_output(output: &Path) -> anyhow::Result<OutputLock> {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    lock_dir(dir)
}

/// Locks `dir` itself (created if missing).
pub fn lock_dir(dir: &Path) -> anyhow::Result<OutputLock> {
    let lock = DirLock::acquire(dir)?;
    Ok(OutputLock {
        _writing: Writing::new(dir),
        _lock: lock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_run_and_an_unfinished_one_say_what_they_are() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let run = tmp.path().join("runs/x");
        let err = require_finished(&run).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{}: not a run directory (no config.toml)", run.display())
        );
        std::fs::create_dir_all(&run).expect("mkdir");
        std::fs::write(run.join("config.toml"), "name = \"x\"\n").expect("config");
        require_run(&run).expect("a run");
        let err = require_finished(&run).unwrap_err().to_string();
        assert!(err.contains("training has not finished"), "{err}");
        assert!(
            err.contains(&format!(
                "advsoup train --config {} --runs-dir {} --resume",
                run.join("config.toml").display(),
                tmp.path().join("runs").display()
            )),
            "{err}"
        );
        std::fs::write(run.join("model.safetensors"), b"").expect("model");
        require_finished(&run).expect("finished");
        assert_eq!(
            resume_command(Path::new("x")),
            "advsoup train --config x/config.toml --runs-dir . --resume"
        );
    }

    #[test]
    fn a_second_writer_is_refused_naming_the_pid() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("eval.json");
        let held = lock_output(&out).expect("first");
        let err = lock_output(&out).unwrap_err().to_string();
        assert!(
            err.contains(&format!("in use by process {}", std::process::id())),
            "{err}"
        );
        drop(held);
        lock_output(&out).expect("free again");
    }
}
