//! The run directory `<runs_dir>/<name>/` and every file in it: the resolved `config.toml`,
//! `run.json` (seed, git revision, backend, topology), `metrics.jsonl`, the checkpoint
//! ([`crate::checkpoint`]), and at the end `model.safetensors`, `adapter.safetensors`,
//! `model_ema.safetensors`, `final.json` and `final.md`. Every file is written atomically.
//!
//! A run is [opened](RunDir::open) before anything in it is read or written: the training
//! leader takes the directory's lock ([`advsoup_io::DirLock`]) and a resume is checked against
//! the run's fingerprint ([`crate::resume`]); only then does [`RunDir::create`] write
//! `config.toml`, `run.json`, `fingerprint.json` and the resume's line of `history.jsonl`.

use std::path::{Path, PathBuf};

use advsoup_adapters::AdaptedVit;
use burn::optim::Optimizer;
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;

use crate::TrainError;
use crate::checkpoint;
use crate::config::TrainConfig;
use crate::error::{io_err, write_atomic};
use crate::plan::Plan;
use crate::records::{EpochMetrics, FinalReport};
use crate::resume::{self, FINGERPRINT_FILE, HISTORY_FILE, Resume};
use crate::state::{Learner, State};
use crate::step::Regime;

/// A run's directory.
#[derive(Debug, Clone)]
pub(crate) struct RunDir {
    path: PathBuf,
}

/// A run directory opened by [`RunDir::open`]: its lock (held until this is dropped), the new
/// config's fingerprint and, when resuming, what the resume records.
#[derive(Debug)]
pub(crate) struct OpenRun {
    _lock: Option<advsoup_io::DirLock>,
    fingerprint: advsoup_records::resume::RunFingerprint,
    resume: Option<Resume>,
}

impl RunDir {
    /// `<runs_dir>/<name>`.
    pub(crate) fn new(runs_dir: &Path, name: &str) -> Self {
        Self {
            path: runs_dir.join(name),
        }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint directory.
    pub(crate) fn checkpoint_dir(&self) -> PathBuf {
        checkpoint::checkpoint_dir(&self.path)
    }

    /// Opens the run for training `config`: with `lock` (the process that writes it) takes the
    /// directory's lock first; refuses a run that has a checkpoint unless `resume`, and checks
    /// a resume against the run's fingerprint ([`resume::check`]). Reads, never writes (a
    /// directory the lock created is removed again on refusal).
    pub(crate) fn open(
        &self,
        config: &TrainConfig,
        resume: bool,
        lock: bool,
    ) -> Result<OpenRun, TrainError> {
        let existed = self.path.exists();
        let lock = if lock {
            Some(advsoup_io::DirLock::acquire(&self.path).map_err(TrainError::Locked)?)
        } else {
            None
        };
        let checked = self.check_resume(config, resume);
        match checked {
            Ok((fingerprint, resume)) => Ok(OpenRun {
                _lock: lock,
                fingerprint,
                resume,
            }),
            Err(e) => {
                drop(lock);
                if !existed {
                    // Empty (the lock file went with the lock): leave no trace of a refusal.
                    let _ = std::fs::remove_dir(&self.path);
                }
                Err(e)
            }
        }
    }

    fn check_resume(
        &self,
        config: &TrainConfig,
        resume: bool,
    ) -> Result<(advsoup_records::resume::RunFingerprint, Option<Resume>), TrainError> {
        let checkpoint = checkpoint::existing_dir(&self.path);
        if checkpoint.is_some() && !resume {
            return Err(TrainError::RunExists {
                dir: self.path.clone(),
            });
        }
        let fingerprint = resume::fingerprint(config)?;
        let resumed = match checkpoint {
            Some(dir) if resume => Some(resume::check_dir(&self.path, &dir, config)?),
            _ => None,
        };
        Ok((fingerprint, resumed))
    }

    /// Creates the directory with the resolved config, `run.json`, `fingerprint.json` and (a
    /// resume that changed resumable fields) a line of `history.jsonl`.
    pub(crate) fn create(
        &self,
        config: &TrainConfig,
        plan: &Plan,
        git_revision: &Option<String>,
        backend: &str,
        opened: &OpenRun,
    ) -> Result<(), TrainError> {
        let run = &self.path;
        std::fs::create_dir_all(run).map_err(io_err(run))?;
        let json = |what: &str, e: serde_json::Error| TrainError::Checkpoint {
            path: run.join(what),
            message: e.to_string(),
        };
        let fp = serde_json::to_vec_pretty(&opened.fingerprint)
            .map_err(|e| json(FINGERPRINT_FILE, e))?;
        write_atomic(&run.join(FINGERPRINT_FILE), &fp)?;
        if let Some(Resume {
            history,
            record: Some(record),
        }) = &opened.resume
        {
            let mut text = history.clone();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text += &serde_json::to_string(record).map_err(|e| json(HISTORY_FILE, e))?;
            text.push('\n');
            write_atomic(&run.join(HISTORY_FILE), text.as_bytes())?;
        }
        let resolved = toml::to_string_pretty(config).map_err(|e| TrainError::Checkpoint {
            path: run.join("config.toml"),
            message: e.to_string(),
        })?;
        write_atomic(&run.join("config.toml"), resolved.as_bytes())?;
        let meta = advsoup_records::run::RunMeta {
            accumulation: plan.accumulation,
            backend: backend.to_string(),
            burn: "0.21.0".to_string(),
            cpu: Some(crate::machine::this_cpu()),
            devices: plan.world,
            git_revision: git_revision.clone(),
            global_batch: plan.global_batch,
            nodes: plan.nodes,
            seed: plan.seed,
        };
        let json = serde_json::to_string(&meta).map_err(|e| TrainError::Checkpoint {
            path: run.join("run.json"),
            message: e.to_string(),
        })?;
        write_atomic(&run.join("run.json"), json.as_bytes())
    }

    /// Rewrites `metrics.jsonl`: one line per completed epoch.
    pub(crate) fn write_metrics(&self, epochs: &[EpochMetrics]) -> Result<(), TrainError> {
        let lines: String = epochs
            .iter()
            .map(|m| serde_json::to_string(m).unwrap_or_default() + "\n")
            .collect();
        write_atomic(&self.path.join("metrics.jsonl"), lines.as_bytes())
    }

    /// Replaces the checkpoint ([`checkpoint::save`]).
    pub(crate) fn save_checkpoint<B: AutodiffBackend, R: Regime<B>, O: Optimizer<R, B>>(
        &self,
        learner: &Learner<B, R, O>,
        state: &State,
    ) -> Result<(), TrainError> {
        checkpoint::save(&self.path, learner, state)
    }

    /// Reads the checkpoint into a copy of `learner` ([`checkpoint::load`]).
    pub(crate) fn load_checkpoint<B: AutodiffBackend, R: Regime<B>, O: Optimizer<R, B>>(
        &self,
        learner: &Learner<B, R, O>,
        device: &B::Device,
    ) -> Result<Option<checkpoint::Resumed<B, R, O>>, TrainError> {
        checkpoint::load(&self.path, learner, device)
    }

    /// The trained weights: the whole model, its adapter alone, and the EMA weights.
    pub(crate) fn save_models<B: Backend, I: Backend>(
        &self,
        model: &AdaptedVit<B>,
        ema: Option<&AdaptedVit<I>>,
    ) -> Result<(), TrainError> {
        use advsoup_adapters::io::{save_adapter, save_model};
        let run = &self.path;
        save_model(model, &run.join("model.safetensors")).map_err(TrainError::Adapter)?;
        save_adapter(model, &run.join("adapter.safetensors")).map_err(TrainError::Adapter)?;
        if let Some(ema) = ema {
            save_model(ema, &run.join("model_ema.safetensors")).map_err(TrainError::Adapter)?;
        }
        Ok(())
    }

    /// `final.json` and `final.md`.
    pub(crate) fn write_final(&self, report: &FinalReport) -> Result<(), TrainError> {
        let json = serde_json::to_vec_pretty(report).unwrap_or_default();
        write_atomic(&self.path.join("final.json"), &json)?;
        write_atomic(&self.path.join("final.md"), report.table().as_bytes())
    }
}
