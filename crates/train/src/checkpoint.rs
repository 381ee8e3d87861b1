//! The checkpoint directory of a run: model, optimizer and EMA records plus the loop state,
//! replaced atomically as a whole so that a crash (or a full disk) never leaves a partial one
//! where a resume would read it.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::prelude::Backend;
use burn::record::{BinBytesRecorder, BinFileRecorder, FullPrecisionSettings, Record, Recorder};
use burn::tensor::backend::AutodiffBackend;

use crate::TrainError;
use crate::error::{io_err, write_atomic};
use crate::state::{Learner, State};
use crate::step::Regime;

/// The checkpoint directory of run directory `run`.
pub(crate) fn checkpoint_dir(run: &Path) -> PathBuf {
    run.join("checkpoint")
}

/// The checkpoint a resume reads: `checkpoint/`, or the `checkpoint.old/` that a crash between
/// [`save`]'s two renames leaves alone; `None` when there is neither.
pub(crate) fn existing_dir(run: &Path) -> Option<PathBuf> {
    [checkpoint_dir(run), run.join("checkpoint.old")]
        .into_iter()
        .find(|d| d.exists())
}

/// Replaces the checkpoint of run directory `run` by `learner` and `state`: written whole into
/// `checkpoint.tmp/`, then renamed over `checkpoint/` (the previous one moved to
/// `checkpoint.old/` in between and removed after), so a crash at any point leaves a complete
/// checkpoint for [`load`].
pub(crate) fn save<B: AutodiffBackend, R: Regime<B>, O: Optimizer<R, B>>(
    run: &Path,
    learner: &Learner<B, R, O>,
    state: &State,
) -> Result<(), TrainError> {
    let tmp = run.join("checkpoint.tmp");
    let old = run.join("checkpoint.old");
    let cur = checkpoint_dir(run);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    // A failed write (disk full, quota) must not leave a half-written checkpoint behind: the
    // previous checkpoint stays the one a resume reads, and the partial one is removed.
    if let Err(e) = write_checkpoint_files(&tmp, learner, state) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if cur.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        std::fs::rename(&cur, &old).map_err(io_err(&cur))?;
    }
    std::fs::rename(&tmp, &cur).map_err(io_err(&tmp))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    // The renames themselves survive a crash.
    advsoup_io::sync_dir(run).map_err(io_err(run))
}

/// Writes the files of a checkpoint into `tmp`. Records are encoded in memory and written by
/// [`write_atomic`], so an I/O failure surfaces as the operating system's error on the file.
fn write_checkpoint_files<B: AutodiffBackend, R: Regime<B>, O: Optimizer<R, B>>(
    tmp: &Path,
    learner: &Learner<B, R, O>,
    state: &State,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    write_record::<B, _>(tmp, "model.bin", learner.module.clone().into_record())?;
    write_record::<B, _>(tmp, "optim.bin", learner.optim.to_record())?;
    if let Some(ema) = &learner.ema {
        write_record::<B::InnerBackend, _>(tmp, "ema.bin", ema.clone().into_record())?;
    }
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::Checkpoint {
        path: tmp.join("state.json"),
        message: e.to_string(),
    })?;
    write_atomic(&tmp.join("state.json"), &json)
}

/// Encodes `record` in memory and writes it to `dir/name` with [`write_atomic`]. The bytes
/// recorder encodes exactly what `BinFileRecorder` writes (same bincode settings), so [`load`]
/// reads the file with `BinFileRecorder`.
fn write_record<B: Backend, T: Record<B>>(
    dir: &Path,
    name: &str,
    record: T,
) -> Result<(), TrainError> {
    let path = dir.join(name);
    let bytes = BinBytesRecorder::<FullPrecisionSettings>::new()
        .record(record, ())
        .map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            message: e.to_string(),
        })?;
    write_atomic(&path, &bytes)
}

/// What a checkpoint restores: the learner and the loop state.
pub(crate) type Resumed<B, R, O> = (Learner<B, R, O>, State);

/// Reads the checkpoint of run directory `run` (or the `checkpoint.old/` a crash between
/// [`save`]'s renames left) into a copy of `learner`; `None` when there is none.
pub(crate) fn load<B: AutodiffBackend, R: Regime<B>, O: Optimizer<R, B>>(
    run: &Path,
    learner: &Learner<B, R, O>,
    device: &B::Device,
) -> Result<Option<Resumed<B, R, O>>, TrainError> {
    let (module, optim, ema) = (
        learner.module.clone(),
        learner.optim.clone(),
        learner.ema.clone(),
    );
    let Some(dir) = existing_dir(run) else {
        return Ok(None);
    };
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    // burn's error is its decoder's debug string; the user needs the file and what to do.
    let err = |what: &str| {
        let path = dir.join(what);
        let message = if path.exists() {
            "cannot be decoded (truncated or damaged)"
        } else {
            "missing (an incomplete checkpoint)"
        };
        TrainError::Checkpoint {
            message: format!(
                "{message}: move {} away and train again, or train under another name",
                run.display()
            ),
            path,
        }
    };
    let record = recorder
        .load(dir.join("model"), device)
        .map_err(|_| err("model.bin"))?;
    let module = module.load_record(record);
    let orec = recorder
        .load(dir.join("optim"), device)
        .map_err(|_| err("optim.bin"))?;
    let optim = optim.load_record(orec);
    let ema = match ema {
        Some(e) if dir.join("ema.bin").exists() => {
            let rec = recorder
                .load(dir.join("ema"), device)
                .map_err(|_| err("ema.bin"))?;
            Some(e.load_record(rec))
        }
        // EMA switched on for a run that did not keep one: it starts from the weights.
        Some(_) => Some(module.model().valid()),
        None => None,
    };
    let state_path = dir.join("state.json");
    let bytes = std::fs::read(&state_path).map_err(io_err(&state_path))?;
    let state: State = serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint {
        path: state_path.clone(),
        message: e.to_string(),
    })?;
    Ok(Some((Learner { module, optim, ema }, state)))
}
