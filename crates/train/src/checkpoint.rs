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
    let mut dir = checkpoint_dir(run);
    if !dir.exists() {
        // A crash between the two renames of `save` leaves only the old one.
        dir = run.join("checkpoint.old");
        if !dir.exists() {
            return Ok(None);
        }
    }
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let err = |what: &str, message: String| TrainError::Checkpoint {
        path: dir.join(what),
        message,
    };
    let record = recorder
        .load(dir.join("model"), device)
        .map_err(|e| err("model.bin", e.to_string()))?;
    let module = module.load_record(record);
    let orec = recorder
        .load(dir.join("optim"), device)
        .map_err(|e| err("optim.bin", e.to_string()))?;
    let optim = optim.load_record(orec);
    let ema = match ema {
        Some(e) if dir.join("ema.bin").exists() => {
            let rec = recorder
                .load(dir.join("ema"), device)
                .map_err(|x| err("ema.bin", x.to_string()))?;
            Some(e.load_record(rec))
        }
        // EMA switched on for a run that did not keep one: it starts from the weights.
        Some(_) => Some(module.model().valid()),
        None => None,
    };
    let state_path = dir.join("state.json");
    let bytes = std::fs::read(&state_path).map_err(io_err(&state_path))?;
    let state: State =
        serde_json::from_slice(&bytes).map_err(|e| err("state.json", e.to_string()))?;
    Ok(Some((Learner { module, optim, ema }, state)))
}
