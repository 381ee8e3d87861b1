//! The one training loop: run directory, checkpoints, resume, metrics, progress, final table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use advsoup_adapters::{AdaptedVit, AdaptedVitConfig, Mode, Route};
use advsoup_attacks::{AttackSpec, Evaluator, PgdConfig, ThreatModel};
use advsoup_data::{AugmentConfig, ImageBatcher, ImageLoader, LoaderConfig, Splits};
use burn::module::{AutodiffModule, ModuleMapper, Param};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, Optimizer};
use burn::prelude::*;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;

use serde::{Deserialize, Serialize};

use crate::config::{Regime as RegimeName, TrainConfig};
use crate::eval::{accuracy, robust_eval};
use crate::step::{Adversarial, CoTraining, Nominal, Regime, StepConfig, TrainBatch};
use crate::{TrainError, write_atomic};

/// How to run (not part of the experiment).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Parent of run directories.
    pub runs_dir: PathBuf,
    /// Continue from the run directory's checkpoint when there is one.
    pub resume: bool,
    /// Stop after this many optimizer steps in this process (tests, smoke runs); a checkpoint is
    /// written and the run can be resumed.
    pub max_steps: Option<usize>,
    /// Show a progress bar.
    pub progress: bool,
    /// The source revision, recorded in the run directory.
    pub git_revision: Option<String>,
    /// Set to stop cleanly (Ctrl-C): the loop checkpoints and returns
    /// [`TrainError::Interrupted`].
    pub stop: Arc<AtomicBool>,
    /// Write a checkpoint every this many steps inside an epoch (0 = only at epoch ends).
    pub checkpoint_every: usize,
}

impl RunOptions {
    /// Defaults for a run under `runs_dir`.
    pub fn new(runs_dir: impl Into<PathBuf>) -> Self {
        Self {
            runs_dir: runs_dir.into(),
            resume: false,
            max_steps: None,
            progress: false,
            git_revision: None,
            stop: Arc::new(AtomicBool::new(false)),
            checkpoint_every: 0,
        }
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch (1-based, completed).
    pub epoch: usize,
    /// Optimizer steps so far.
    pub step: usize,
    /// Mean training loss over the epoch.
    pub loss: f64,
    /// Held-out clean accuracy in clean mode.
    pub clean_acc: f64,
    /// Held-out robust accuracy in robust mode under the eval PGD.
    pub robust_acc: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Training images per second (counting both halves of a mixed batch once).
    pub images_per_s: f64,
}

/// The final table, on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    /// Test samples for clean accuracy.
    pub n_clean: usize,
    /// Test samples attacked.
    pub n_robust: usize,
    /// Attack preset.
    pub attack: String,
    /// ε.
    pub eps: f64,
    /// Clean accuracy of the clean mode.
    pub clean_mode_clean_acc: f64,
    /// Clean accuracy of the robust mode.
    pub robust_mode_clean_acc: f64,
    /// Robust accuracy of the clean mode.
    pub clean_mode_robust_acc: f64,
    /// Robust accuracy of the robust mode.
    pub robust_mode_robust_acc: f64,
    /// Training wall time in seconds (this process and resumed ones).
    pub train_seconds: f64,
    /// Seed.
    pub seed: u64,
}

impl FinalReport {
    /// A small markdown table.
    pub fn table(&self) -> String {
        format!(
            "| mode | clean acc (n={}) | robust acc {} eps={} (n={}) |\n|---|---|---|\n| clean | {:.2}% | {:.2}% |\n| robust | {:.2}% | {:.2}% |\n",
            self.n_clean,
            self.attack,
            self.eps,
            self.n_robust,
            100.0 * self.clean_mode_clean_acc,
            100.0 * self.clean_mode_robust_acc,
            100.0 * self.robust_mode_clean_acc,
            100.0 * self.robust_mode_robust_acc,
        )
    }
}

/// What a finished run returns.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// Per-epoch metrics, all epochs.
    pub epochs: Vec<EpochMetrics>,
    /// The final table (`None` when stopped by `max_steps`).
    pub report: Option<FinalReport>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    epoch: usize,
    step_in_epoch: usize,
    global_step: usize,
    loss_sum: f64,
    loss_count: usize,
    train_seconds: f64,
    epochs: Vec<EpochMetrics>,
}

/// Learning rate at `step`: linear warmup, then cosine decay to `min_lr_ratio · lr`.
pub fn learning_rate(config: &TrainConfig, step: usize, steps_per_epoch: usize) -> f64 {
    let o = &config.optim;
    let total = (o.epochs * steps_per_epoch).max(1) as f64;
    let warmup = (o.warmup_epochs * steps_per_epoch as f64).min(total);
    let s = step as f64;
    if s < warmup {
        return o.lr * (s + 1.0) / warmup;
    }
    let progress = ((s - warmup) / (total - warmup).max(1.0)).clamp(0.0, 1.0);
    let min = o.lr * o.min_lr_ratio;
    min + (o.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Decoupled weight decay `θ ← (1 − lr·wd)·θ` on weight matrices and conv kernels only (rank 2
/// and 4): tokens, position embeddings and prompts (rank 3), norms and biases (rank 1) are
/// excluded, as in the paper's recipe.
struct WeightDecay {
    factor: f64,
}

impl<B: Backend> ModuleMapper<B> for WeightDecay {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if D != 2 && D != 4 {
            return param;
        }
        let factor = self.factor;
        param.map(|t| {
            let rg = t.is_require_grad();
            (t * factor).detach().set_require_grad(rg)
        })
    }
}

fn step_seed(seed: u64, step: usize) -> u64 {
    // splitmix64 of (seed, step): a distinct, reproducible stream per step.
    let mut z = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Trains `config` on `splits` and evaluates it; the regime picks the [`TrainStep`].
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    splits: &Splits,
    options: &RunOptions,
    device: &B::Device,
) -> Result<RunSummary, TrainError> {
    match config.regime {
        RegimeName::Nominal => fit::<B, Nominal<B>>(config, splits, options, device),
        RegimeName::Adversarial => fit::<B, Adversarial<B>>(config, splits, options, device),
        RegimeName::CoTraining => fit::<B, CoTraining<B>>(config, splits, options, device),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_owned(),
        source,
    }
}

fn checkpoint_dir(run: &Path) -> PathBuf {
    run.join("checkpoint")
}

fn save_checkpoint<B: AutodiffBackend, R: Regime<B>, O: Optimizer<R, B>>(
    run: &Path,
    module: &R,
    optim: &O,
    state: &State,
) -> Result<(), TrainError> {
    let tmp = run.join("checkpoint.tmp");
    let old = run.join("checkpoint.old");
    let cur = checkpoint_dir(run);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let rec_err = |what: &str, e: burn::record::RecorderError| TrainError::Checkpoint {
        path: tmp.join(what),
        message: e.to_string(),
    };
    recorder
        .record(module.clone().into_record(), tmp.join("model"))
        .map_err(|e| rec_err("model.bin", e))?;
    recorder
        .record(optim.to_record(), tmp.join("optim"))
        .map_err(|e| rec_err("optim.bin", e))?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::Checkpoint {
        path: tmp.join("state.json"),
        message: e.to_string(),
    })?;
    write_atomic(&tmp.join("state.json"), &json)?;
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
    Ok(())
}

fn load_checkpoint<B: AutodiffBackend, R: Regime<B>, O: Optimizer<R, B>>(
    run: &Path,
    module: R,
    optim: O,
    device: &B::Device,
) -> Result<Option<(R, O, State)>, TrainError> {
    let mut dir = checkpoint_dir(run);
    if !dir.exists() {
        // A crash between the two renames of save_checkpoint leaves only the old one.
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
    let state_path = dir.join("state.json");
    let bytes = std::fs::read(&state_path).map_err(io_err(&state_path))?;
    let state: State =
        serde_json::from_slice(&bytes).map_err(|e| err("state.json", e.to_string()))?;
    Ok(Some((module, optim, state)))
}

fn eval_pgd(config: &TrainConfig) -> Result<Evaluator, TrainError> {
    let e = &config.attack.eval;
    let pgd = PgdConfig::new(ThreatModel::Linf, e.eps, e.num_steps)
        .with_step_size(e.step_size)
        .with_random_start(e.random_start);
    Evaluator::new(vec![AttackSpec::Pgd(pgd)], config.seed).map_err(TrainError::Attack)
}

fn fit<B: AutodiffBackend, R: Regime<B>>(
    config: &TrainConfig,
    splits: &Splits,
    options: &RunOptions,
    device: &B::Device,
) -> Result<RunSummary, TrainError> {
    let run = options.runs_dir.join(&config.name);
    let has_checkpoint = checkpoint_dir(&run).exists() || run.join("checkpoint.old").exists();
    if has_checkpoint && !options.resume {
        return Err(TrainError::RunExists { dir: run });
    }
    std::fs::create_dir_all(&run).map_err(io_err(&run))?;
    let resolved = toml::to_string_pretty(config).map_err(|e| TrainError::Checkpoint {
        path: run.join("config.toml"),
        message: e.to_string(),
    })?;
    write_atomic(&run.join("config.toml"), resolved.as_bytes())?;
    let meta = serde_json::json!({
        "seed": config.seed,
        "git_revision": options.git_revision,
        "burn": "0.21.0",
        "backend": std::any::type_name::<B>(),
    });
    write_atomic(&run.join("run.json"), meta.to_string().as_bytes())?;

    let vit = config.vit()?;
    let shape = splits.train.shape();
    if shape != [vit.in_chans, vit.img_size, vit.img_size]
        || splits.train.num_classes() > vit.num_classes
    {
        return Err(TrainError::Invalid {
            field: "model".into(),
            message: format!(
                "the model takes {}x{}x{} images and {} classes, the data has {:?} images and {} classes",
                vit.in_chans,
                vit.img_size,
                vit.img_size,
                vit.num_classes,
                shape,
                splits.train.num_classes()
            ),
        });
    }
    B::seed(device, config.seed);
    let model: AdaptedVit<B> = AdaptedVitConfig {
        vit,
        adapter: config.model.adapter,
    }
    .try_init(device)
    .map_err(|e| TrainError::Invalid {
        field: "model".into(),
        message: e.to_string(),
    })?;
    let step_config =
        StepConfig::new(config.alpha, &config.attack.train).map_err(TrainError::Attack)?;
    let o = &config.optim;
    let mut adamw = AdamWConfig::new()
        .with_beta_1(o.beta1)
        .with_beta_2(o.beta2)
        .with_epsilon(1e-8)
        .with_weight_decay(0.0);
    if o.grad_clip > 0.0 {
        adamw = adamw.with_grad_clipping(Some(GradientClippingConfig::Norm(o.grad_clip)));
    }
    let mut module = R::wrap(model, step_config.clone());
    let mut optim = adamw.init::<B, R>();
    let mut state = State::default();
    if options.resume
        && let Some((m, opt, s)) =
            load_checkpoint::<B, R, _>(&run, module.clone(), optim.clone(), device)?
    {
        tracing::info!(epoch = s.epoch, step = s.global_step, "resuming");
        module = R::wrap(m.into_model(), step_config.clone());
        optim = opt;
        state = s;
    }

    let augment = AugmentConfig {
        crop_padding: config.data.crop_padding,
        hflip: config.data.hflip,
        mixup_alpha: config.data.mixup_alpha,
        cutmix_alpha: config.data.cutmix_alpha,
        label_smoothing: config.data.label_smoothing,
        ..AugmentConfig::default()
    };
    let num_classes = module.model().vit.num_classes();
    let loader = ImageLoader::<B>::new(
        splits.train.clone(),
        ImageBatcher::new(augment, num_classes, config.seed),
        LoaderConfig {
            batch_size: o.batch_size,
            num_workers: config.data.workers,
            shuffle: true,
            drop_last: true,
            seed: config.seed,
        },
        device.clone(),
    );
    let steps_per_epoch = loader.num_batches();
    if steps_per_epoch == 0 {
        return Err(TrainError::Invalid {
            field: "optim.batch_size".into(),
            message: format!(
                "{} exceeds the {} training samples",
                o.batch_size,
                splits.train.num_samples()
            ),
        });
    }
    let n_train = splits.train.num_samples() as u64;
    let eval_attack = eval_pgd(config)?;
    let mut steps_this_process = 0usize;
    let total_steps = o.epochs * steps_per_epoch;
    let bar = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(total_steps as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_position(state.global_step as u64);
        bar
    });

    while state.epoch < o.epochs {
        let epoch = state.epoch;
        let started = Instant::now();
        let mut seen = 0usize;
        let skip = state.step_in_epoch;
        for batch in loader.epoch(epoch as u64).skip(skip) {
            let step = state.global_step;
            B::seed(device, step_seed(config.seed, step));
            let n = batch.targets.dims()[0];
            let soft_targets = match batch.soft_targets {
                Some(s) => s,
                None => batch.targets.clone().one_hot::<2>(num_classes).float(),
            };
            let ids = batch
                .indices
                .iter()
                .map(|i| epoch as u64 * n_train + *i as u64)
                .collect();
            let lr = learning_rate(config, step, steps_per_epoch);
            let out = module.step(TrainBatch {
                images: batch.images,
                targets: batch.targets,
                soft_targets,
                ids,
                seed: step_seed(config.seed ^ 0x00A7_7AC4, step),
            });
            if !out.item.loss.is_finite() {
                return Err(TrainError::NonFinite {
                    step,
                    epoch,
                    loss: out.item.loss,
                    dir: checkpoint_dir(&run),
                });
            }
            if o.weight_decay > 0.0 {
                module = module.map(&mut WeightDecay {
                    factor: 1.0 - lr * o.weight_decay,
                });
            }
            module = module.optimize(&mut optim, lr, out.grads);
            state.global_step += 1;
            state.step_in_epoch += 1;
            state.loss_sum += out.item.loss;
            state.loss_count += 1;
            seen += n;
            steps_this_process += 1;
            if let Some(bar) = &bar {
                let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
                bar.set_position(state.global_step as u64);
                bar.set_message(format!(
                    "epoch {}/{} loss {:.4} lr {:.2e} {:.0} img/s",
                    epoch + 1,
                    o.epochs,
                    out.item.loss,
                    lr,
                    rate
                ));
            }
            let interrupted = options.stop.load(Ordering::SeqCst);
            let limit = options.max_steps.is_some_and(|m| steps_this_process >= m);
            let periodic =
                options.checkpoint_every > 0 && state.step_in_epoch % options.checkpoint_every == 0;
            if (interrupted || limit || periodic) && state.step_in_epoch < steps_per_epoch {
                let mut snapshot = state.clone();
                snapshot.train_seconds += started.elapsed().as_secs_f64();
                save_checkpoint(&run, &module, &optim, &snapshot)?;
                if interrupted {
                    if let Some(bar) = &bar {
                        bar.abandon();
                    }
                    return Err(TrainError::Interrupted { dir: run });
                }
                if limit {
                    if let Some(bar) = &bar {
                        bar.abandon();
                    }
                    return Ok(RunSummary {
                        dir: run,
                        epochs: state.epochs,
                        report: None,
                    });
                }
            }
        }
        let train_time = started.elapsed().as_secs_f64();
        state.train_seconds += train_time;
        // End of epoch: held-out metrics, one metrics line, a checkpoint.
        let inner = module.model().valid();
        let held = &splits.held_out;
        let clean_acc = accuracy(
            &inner,
            held,
            &Route::mode(Mode::Clean),
            config.eval.batch_size,
            device,
        );
        let robust_acc = robust_eval::<B>(
            &inner,
            Mode::Adversarial,
            &eval_attack,
            held,
            config.eval.held_out_robust,
            config.eval.batch_size,
            device,
        )
        .map_or(0.0, |r| r.robust_accuracy);
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            step: state.global_step,
            loss: state.loss_sum / state.loss_count.max(1) as f64,
            clean_acc,
            robust_acc,
            lr: learning_rate(config, state.global_step.saturating_sub(1), steps_per_epoch),
            images_per_s: seen as f64 / train_time.max(1e-9),
        };
        tracing::info!(
            "epoch {}: loss {:.4} held-out clean {:.2}% robust {:.2}% ({:.0} img/s)",
            metrics.epoch,
            metrics.loss,
            100.0 * clean_acc,
            100.0 * robust_acc,
            metrics.images_per_s
        );
        if let Some(bar) = &bar {
            bar.println(format!(
                "epoch {:>3}: loss {:.4}  held-out clean {:.2}%  robust {:.2}%  {:.0} img/s",
                metrics.epoch,
                metrics.loss,
                100.0 * clean_acc,
                100.0 * robust_acc,
                metrics.images_per_s
            ));
        }
        state.epochs.push(metrics);
        state.epoch += 1;
        state.step_in_epoch = 0;
        state.loss_sum = 0.0;
        state.loss_count = 0;
        let lines: String = state
            .epochs
            .iter()
            .map(|m| serde_json::to_string(m).unwrap_or_default() + "\n")
            .collect();
        write_atomic(&run.join("metrics.jsonl"), lines.as_bytes())?;
        save_checkpoint(&run, &module, &optim, &state)?;
        let limit = options.max_steps.is_some_and(|m| steps_this_process >= m);
        if limit && state.epoch < o.epochs {
            return Ok(RunSummary {
                dir: run,
                epochs: state.epochs,
                report: None,
            });
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let model = module.into_model();
    advsoup_adapters::io::save_model(&model, &run.join("model.safetensors"))
        .map_err(TrainError::Adapter)?;
    advsoup_adapters::io::save_adapter(&model, &run.join("adapter.safetensors"))
        .map_err(TrainError::Adapter)?;
    let report = final_report::<B>(config, &model.valid(), splits, state.train_seconds, device)?;
    let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
    write_atomic(&run.join("final.json"), &json)?;
    write_atomic(&run.join("final.md"), report.table().as_bytes())?;
    Ok(RunSummary {
        dir: run,
        epochs: state.epochs,
        report: Some(report),
    })
}

/// The final table of a trained model on the test split.
pub fn final_report<B: AutodiffBackend>(
    config: &TrainConfig,
    model: &AdaptedVit<B::InnerBackend>,
    splits: &Splits,
    train_seconds: f64,
    device: &B::Device,
) -> Result<FinalReport, TrainError> {
    let e = &config.eval;
    let eps = config.attack.eval.eps;
    let evaluator = Evaluator::preset(&e.test_attack, ThreatModel::Linf, eps, config.seed)
        .map_err(TrainError::Attack)?;
    let test = &splits.test;
    let acc = |mode| accuracy(model, test, &Route::mode(mode), e.batch_size, device);
    let rob = |mode| {
        robust_eval::<B>(
            model,
            mode,
            &evaluator,
            test,
            e.test_robust,
            e.batch_size,
            device,
        )
        .map_or(0.0, |r| r.robust_accuracy)
    };
    Ok(FinalReport {
        n_clean: test.num_samples(),
        n_robust: e.test_robust.min(test.num_samples()),
        attack: e.test_attack.clone(),
        eps,
        clean_mode_clean_acc: acc(Mode::Clean),
        robust_mode_clean_acc: acc(Mode::Adversarial),
        clean_mode_robust_acc: rob(Mode::Clean),
        robust_mode_robust_acc: rob(Mode::Adversarial),
        train_seconds,
        seed: config.seed,
    })
}
