//! The run directory `<runs_dir>/<name>/` and every file in it: the resolved `config.toml`,
//! `run.json` (seed, git revision, backend, topology), `metrics.jsonl`, the checkpoint
//! ([`crate::checkpoint`]), and at the end `model.safetensors`, `adapter.safetensors`,
//! `model_ema.safetensors`, `final.json` and `final.md`. Every file is written atomically.

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
use crate::state::{Learner, State};
use crate::step::Regime;

/// A run's directory.
#[derive(Debug, Clone)]
pub(crate) struct RunDir {
    path: PathBuf,
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

    /// Whether a checkpoint (or the previous one a crash left) is there.
    pub(crate) fn has_checkpoint(&self) -> bool {
        self.checkpoint_dir().exists() || self.path.join("checkpoint.old").exists()
    }

    /// The checkpoint directory.
    pub(crate) fn checkpoint_dir(&self) -> PathBuf {
        checkpoint::checkpoint_dir(&self.path)
    }

    /// Creates the directory with the resolved config and `run.json`.
    pub(crate) fn create(
        &self,
        config: &TrainConfig,
        plan: &Plan,
        git_revision: &Option<String>,
        backend: &str,
    ) -> Result<(), TrainError> {
        let run = &self.path;
        std::fs::create_dir_all(run).map_err(io_err(run))?;
        let resolved = toml::to_string_pretty(config).map_err(|e| TrainError::Checkpoint {
            path: run.join("config.toml"),
            message: e.to_string(),
        })?;
        write_atomic(&run.join("config.toml"), resolved.as_bytes())?;
        let meta = advsoup_records::run::RunMeta {
            accumulation: plan.accumulation,
            backend: backend.to_string(),
            burn: "0.21.0".to_string(),
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
