//! The [`Trainer`]: one generic loop over epochs and steps for every regime, composed of the
//! run directory ([`crate::run_dir`]), the optimizer step ([`crate::update`]), the held-out
//! evaluation after every epoch ([`crate::epoch_eval`]), the final table ([`crate::report`]) and
//! the progress bar, all reading the resolved [`Plan`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use advsoup_adapters::AdaptedVit;
use advsoup_data::{ImageBatch, ImageBatcher, ImageDataset, ImageLoader, LoaderConfig, Splits};
use burn::module::{AutodiffModule, Module, ModuleMapper, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamW, AdamWConfig, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::TrainError;
use crate::config::{ShiftSection, TrainConfig};
use crate::epoch_eval::HeldOutEval;
use crate::parallel::Peer;
use crate::plan::{Plan, Topology};
use crate::progress::Progress;
use crate::records::{EpochMetrics, FinalReport, RunSummary};
use crate::report::final_report_peer;
use crate::run_dir::{OpenRun, RunDir};
use crate::shard::{StepIter, epoch_steps};
use crate::state::{Learner, State};
use crate::step::{Regime, StepConfig};
use crate::update::Update;

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

/// The optimizer of every run: AdamW (its own weight decay off; the decoupled one is
/// [`crate::update`]'s).
type Adam<B, R> = OptimizerAdaptor<AdamW, R, B>;

/// burn seeds ONE generator per backend; peers on threads of one process initialize their
/// models under this lock so that each draws the same stream as a run on one device.
static INIT: Mutex<()> = Mutex::new(());

/// Initializes every (lazy) parameter now, in visit order, and gives it an id that depends only
/// on its place in the module, so that peers in separate processes agree on ids (burn draws
/// random ones; the all-reduce pairs gradients by sorted id).
struct Renumber {
    next: u64,
}

const PARAM_ID_BASE: u64 = 0xAD50_0000_0000_0000;

impl<B: Backend> ModuleMapper<B> for Renumber {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let mut param = param.map(|t| t);
        param.id = ParamId::from(PARAM_ID_BASE + self.next);
        self.next += 1;
        param
    }
}

/// Checks what every peer would reject before any of them starts (plan, shapes, classes).
pub(crate) fn check_setup(
    config: &TrainConfig,
    splits: &Splits,
    topology: &Topology,
) -> Result<Plan, TrainError> {
    let plan = Plan::new(config, topology, splits.train.num_samples())?;
    check_shift_dirs(&plan.eval.shifts)?;
    let vit = &plan.model.vit;
    let shape = plan.augment.output_shape(splits.train.shape());
    let want = [vit.in_chans, vit.img_size, vit.img_size];
    let classes = splits.train.num_classes().max(splits.test.num_classes());
    if shape != want || splits.test.shape() != want || classes > vit.num_classes {
        return Err(TrainError::Invalid {
            field: "model".into(),
            message: format!(
                "the model takes {}x{}x{} images and {} classes, the data has {:?} training images (after augmentation), {:?} test images and {} classes",
                vit.in_chans,
                vit.img_size,
                vit.img_size,
                vit.num_classes,
                shape,
                splits.test.shape(),
                classes
            ),
        });
    }
    Ok(plan)
}

/// The shifted test sets are read after training: refuse to start a run whose sets are missing.
pub(crate) fn check_shift_dirs(shifts: &[ShiftSection]) -> Result<(), TrainError> {
    for (i, shift) in shifts.iter().enumerate() {
        if !shift.dir.is_dir() {
            return Err(TrainError::Invalid {
                field: format!("eval.shifts[{i}].dir"),
                message: format!(
                    "{} is not a directory (set eval.shifts=[] to train without shifted sets)",
                    shift.dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// Trains `config` on `splits` with regime `R` as peer `peer` of `topology` in the run `opened`
/// ([`RunDir::open`]): the learner (fresh or resumed), the run directory's files, then epoch after epoch until the plan's last or a stop, then
/// the saved weights and the final table.
pub(crate) fn fit<B: AutodiffBackend, R: Regime<B>>(
    config: &TrainConfig,
    splits: &Splits,
    options: &RunOptions,
    device: &B::Device,
    topology: &Topology,
    peer: Peer,
    opened: &OpenRun,
) -> Result<RunSummary, TrainError> {
    let run = RunDir::new(&options.runs_dir, &config.name);
    let plan = check_setup(config, splits, topology)?;
    let mut trainer = Trainer::<B>::new(&plan, options, splits, device, peer, run);
    // The checkpoint is read before anything is written: a damaged one leaves the run as it was.
    let mut learner = trainer.start::<R>()?;
    if peer.leader() {
        trainer.run.create(
            config,
            &plan,
            &options.git_revision,
            std::any::type_name::<B>(),
            opened,
        )?;
    }
    let num_classes = learner.module.model().vit.num_classes();
    let data = EpochData::<B>::new(&plan, splits, num_classes, device);
    let update = trainer.update(num_classes);
    let held_out = HeldOutEval::new(&plan.eval)?;
    trainer.progress = Progress::new(
        options.progress && peer.leader(),
        plan.total_steps,
        trainer.state.global_step,
    );
    if plan.precision.needs_loss_scaling() && trainer.state.loss_scale.is_none() {
        trainer.state.loss_scale = Some(plan.loss_scale);
    }
    while trainer.state.epoch < plan.epochs {
        learner = match trainer.epoch(learner, &data, &update, &held_out)? {
            Flow::Continue(learner) => learner,
            Flow::Stop(summary) => return Ok(summary),
        };
    }
    trainer.finish(learner)
}

/// Whether the loop goes on or the run stops with a summary.
enum Flow<T> {
    Continue(T),
    Stop(RunSummary),
}

/// The training data of every epoch: this peer's micro-batches, in the epoch's sample order.
struct EpochData<B: AutodiffBackend> {
    train: Arc<ImageDataset>,
    batcher: Arc<ImageBatcher>,
    /// Only serves the epoch's sample order.
    order: ImageLoader<B>,
    workers: usize,
}

impl<B: AutodiffBackend> EpochData<B> {
    fn new(plan: &Plan, splits: &Splits, num_classes: usize, device: &B::Device) -> Self {
        let train = Arc::new(splits.train.clone());
        let batcher = Arc::new(ImageBatcher::new(
            plan.augment.clone(),
            num_classes,
            plan.seed,
        ));
        let order = ImageLoader::<B>::new(
            train.clone(),
            ImageBatcher::eval(num_classes),
            LoaderConfig {
                batch_size: plan.global_batch,
                num_workers: 0,
                shuffle: true,
                drop_last: true,
                seed: plan.seed,
            },
            device.clone(),
        );
        Self {
            train,
            batcher,
            order,
            workers: plan.workers,
        }
    }

    /// The steps `skip..` of `epoch` for peer `rank`.
    fn steps(
        &self,
        epoch: usize,
        plan: &Plan,
        rank: usize,
        skip: usize,
        device: &B::Device,
    ) -> StepIter<B> {
        epoch_steps::<B>(
            self.train.clone(),
            self.batcher.clone(),
            Arc::new(self.order.order(epoch as u64)),
            epoch as u64,
            plan,
            rank,
            skip,
            self.workers,
            device.clone(),
        )
    }
}

/// One peer's run: the plan it follows, where it writes, where the loop is.
pub(crate) struct Trainer<'a, B: AutodiffBackend> {
    plan: &'a Plan,
    options: &'a RunOptions,
    splits: &'a Splits,
    device: &'a B::Device,
    peer: Peer,
    run: RunDir,
    state: State,
    /// The loss of every step this process ran.
    step_losses: Vec<f64>,
    steps_this_process: usize,
    progress: Progress,
}

impl<'a, B: AutodiffBackend> Trainer<'a, B> {
    fn new(
        plan: &'a Plan,
        options: &'a RunOptions,
        splits: &'a Splits,
        device: &'a B::Device,
        peer: Peer,
        run: RunDir,
    ) -> Self {
        Self {
            plan,
            options,
            splits,
            device,
            peer,
            run,
            state: State::default(),
            step_losses: Vec::new(),
            steps_this_process: 0,
            progress: Progress::new(false, 0, 0),
        }
    }

    /// The learner a run starts from: a fresh model (seeded by the config, parameter ids by
    /// position), AdamW and the EMA weights; the checkpoint's when resuming; on every peer,
    /// rank 0's at the same step.
    fn start<R: Regime<B>>(&mut self) -> Result<Learner<B, R, Adam<B, R>>, TrainError> {
        let plan = self.plan;
        let model: AdaptedVit<B> = {
            let _rng = INIT.lock().unwrap_or_else(|e| e.into_inner());
            B::seed(self.device, plan.seed);
            plan.model
                .try_init(self.device)
                .map_err(|e| TrainError::Invalid {
                    field: "model".into(),
                    message: e.to_string(),
                })?
                .map(&mut Renumber { next: 0 })
        };
        let step_config = StepConfig::new(plan.alpha, &plan.train_attack)
            .map_err(TrainError::Attack)?
            .with_precision(plan.precision);
        let o = &plan.optimizer;
        let mut adamw = AdamWConfig::new()
            .with_beta_1(o.beta1)
            .with_beta_2(o.beta2)
            .with_epsilon(1e-8)
            .with_weight_decay(0.0);
        if o.grad_clip > 0.0 {
            adamw = adamw.with_grad_clipping(Some(GradientClippingConfig::Norm(o.grad_clip)));
        }
        let module = R::wrap(model, step_config.clone());
        let optim = adamw.init::<B, R>();
        let ema = (plan.ema_decay > 0.0).then(|| module.model().valid());
        let mut learner = Learner { module, optim, ema };
        if self.options.resume
            && let Some((loaded, state)) = self.run.load_checkpoint(&learner, self.device)?
        {
            tracing::info!(epoch = state.epoch, step = state.global_step, "resuming");
            learner = Learner {
                module: R::wrap(loaded.module.into_model(), step_config.clone()),
                ..loaded
            };
            self.state = state;
        }
        self.agree_with_peers(learner, step_config)
    }

    /// Every peer continues from rank 0's parameters (and EMA weights), at the same step.
    fn agree_with_peers<R: Regime<B>, O: Optimizer<R, B>>(
        &self,
        learner: Learner<B, R, O>,
        step_config: StepConfig,
    ) -> Result<Learner<B, R, O>, TrainError> {
        let peer = self.peer;
        if peer.world == 1 {
            return Ok(learner);
        }
        let Learner {
            module,
            optim,
            mut ema,
        } = learner;
        let model = peer.broadcast_module::<B, _>(module.into_model())?;
        let module = R::wrap(model, step_config);
        let step = self.state.global_step;
        let steps = peer.sum::<B::InnerBackend>(&[step as f64], self.device)?;
        if steps[0] != (step * peer.world) as f64 {
            return Err(TrainError::Collective(format!(
                "peer {} resumes at step {} but the peers' steps sum to {}: the run directory must be shared by all nodes",
                peer.rank, step, steps[0]
            )));
        }
        if let Some(e) = ema.take() {
            let e = AdaptedVit::<B>::from_inner(e);
            ema = Some(peer.broadcast_module::<B, _>(e)?.valid());
        }
        Ok(Learner { module, optim, ema })
    }

    /// The settings of this peer's optimizer steps.
    fn update(&self, num_classes: usize) -> Update<'a, B> {
        Update {
            plan: self.plan,
            peer: self.peer,
            device: self.device,
            num_classes,
            train_samples: self.splits.train.num_samples() as u64,
            checkpoint_dir: self.run.checkpoint_dir(),
        }
    }

    /// The rest of the current epoch: its steps, then the held-out metrics and a checkpoint.
    fn epoch<R: Regime<B>, O: Optimizer<R, B>>(
        &mut self,
        mut learner: Learner<B, R, O>,
        data: &EpochData<B>,
        update: &Update<'_, B>,
        held_out: &HeldOutEval,
    ) -> Result<Flow<Learner<B, R, O>>, TrainError> {
        let epoch = self.state.epoch;
        let started = Instant::now();
        let mut seen = 0usize;
        let (plan, rank) = (self.plan, self.peer.rank);
        let steps = data.steps(epoch, plan, rank, self.state.step_in_epoch, self.device);
        for micro_batches in steps {
            let micro_batches = self.agree_on_data(micro_batches)?;
            let stop: &AtomicBool = &self.options.stop;
            let (next, out) = update.step(learner, &mut self.state, micro_batches, epoch, stop)?;
            learner = next;
            self.count_step(out.loss);
            seen += plan.global_batch;
            self.progress.step(self.state.global_step, || {
                let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
                format!(
                    "epoch {}/{} loss {:.4} lr {:.2e} {:.0} img/s",
                    epoch + 1,
                    plan.epochs,
                    out.loss,
                    out.lr,
                    rate
                )
            });
            if let Some(summary) = self.checkpoint_mid_epoch(&learner, started, out.interrupted)? {
                return Ok(Flow::Stop(summary));
            }
        }
        let train_time = started.elapsed().as_secs_f64();
        self.state.train_seconds += train_time;
        self.end_epoch(&learner, held_out, seen, train_time)?;
        let limit = self.at_step_limit();
        if limit && self.state.epoch < plan.epochs {
            return Ok(Flow::Stop(self.summary(None)));
        }
        Ok(Flow::Continue(learner))
    }

    /// A finished step's loss in the loop state.
    fn count_step(&mut self, loss: f64) {
        let state = &mut self.state;
        state.global_step += 1;
        state.step_in_epoch += 1;
        state.loss_sum += loss;
        state.loss_count += 1;
        self.step_losses.push(loss);
        self.steps_this_process += 1;
    }

    /// This step's micro-batches, or the error that ends the run. With several peers, a data
    /// error on one (a damaged streamed image) ends the step on all of them: they sum a
    /// failure flag before the step's gradient all-reduce, so no peer waits there for one that
    /// has returned. The failing peer returns its own error, the others
    /// [`TrainError::PeerDataFailed`].
    fn agree_on_data(
        &self,
        micro_batches: Result<Vec<ImageBatch<B>>, TrainError>,
    ) -> Result<Vec<ImageBatch<B>>, TrainError> {
        if self.peer.world == 1 {
            return micro_batches; // nothing to agree on, no per-step work
        }
        let (local, batches) = match micro_batches {
            Ok(b) => (Ok(Vec::new()), b),
            Err(e) => (Err(e), Vec::new()),
        };
        let at = format!("step {}", self.state.global_step);
        self.peer
            .sum_agreed::<B::InnerBackend>(local, 0, &at, self.device)?;
        Ok(batches)
    }

    /// Whether this process ran its `max_steps`.
    fn at_step_limit(&self) -> bool {
        self.options
            .max_steps
            .is_some_and(|m| self.steps_this_process >= m)
    }

    /// Inside an epoch, a checkpoint when asked to stop, at `max_steps` or every
    /// `checkpoint_every` steps; the first two end the run (an error for a stop request).
    fn checkpoint_mid_epoch<R: Regime<B>, O: Optimizer<R, B>>(
        &mut self,
        learner: &Learner<B, R, O>,
        started: Instant,
        interrupted: bool,
    ) -> Result<Option<RunSummary>, TrainError> {
        let limit = self.at_step_limit();
        let every = self.options.checkpoint_every;
        let periodic = every > 0 && self.state.step_in_epoch.is_multiple_of(every);
        if !(interrupted || limit || periodic)
            || self.state.step_in_epoch >= self.plan.steps_per_epoch
        {
            return Ok(None);
        }
        let mut snapshot = self.state.clone();
        snapshot.train_seconds += started.elapsed().as_secs_f64();
        if self.peer.leader() {
            self.run.save_checkpoint(learner, &snapshot)?;
        }
        if interrupted {
            self.progress.abandon();
            return Err(TrainError::Interrupted {
                dir: self.run.path().to_owned(),
            });
        }
        if limit {
            self.progress.abandon();
            return Ok(Some(self.summary(None)));
        }
        Ok(None)
    }

    /// End of epoch: held-out metrics (sharded over the peers), one metrics line, a checkpoint.
    fn end_epoch<R: Regime<B>, O: Optimizer<R, B>>(
        &mut self,
        learner: &Learner<B, R, O>,
        held_out: &HeldOutEval,
        seen: usize,
        train_time: f64,
    ) -> Result<(), TrainError> {
        let inner = learner.module.model().valid();
        let (clean_acc, robust_acc) =
            held_out.accuracies::<B>(&inner, &self.splits.held_out, self.peer, self.device)?;
        let state = &mut self.state;
        let metrics = EpochMetrics {
            epoch: state.epoch + 1,
            step: state.global_step,
            loss: state.loss_sum / state.loss_count.max(1) as f64,
            clean_acc,
            robust_acc,
            lr: self.plan.schedule.lr(state.global_step.saturating_sub(1)),
            images_per_s: seen as f64 / train_time.max(1e-9),
            loss_scale: state.loss_scale,
            skipped_steps: state.loss_scale.map(|_| state.skipped_steps),
        };
        // One line per epoch: above the progress bar when there is one, else in the log.
        let line = format!(
            "epoch {:>3}: loss {:.4}  held-out clean {:.2}%  robust {:.2}%  {:.0} img/s",
            metrics.epoch,
            metrics.loss,
            100.0 * clean_acc,
            100.0 * robust_acc,
            metrics.images_per_s
        );
        if self.progress.is_shown() {
            self.progress.println(|| line);
        } else if self.peer.leader() {
            tracing::info!("{line}");
        }
        state.epochs.push(metrics);
        state.epoch += 1;
        state.step_in_epoch = 0;
        state.loss_sum = 0.0;
        state.loss_count = 0;
        if self.peer.leader() {
            self.run.write_metrics(&self.state.epochs)?;
            self.run.save_checkpoint(learner, &self.state)?;
        }
        Ok(())
    }

    /// After the last epoch: the weights saved, the final table of the model (and of the EMA
    /// weights) on the test split, written and returned.
    fn finish<R: Regime<B>, O: Optimizer<R, B>>(
        mut self,
        learner: Learner<B, R, O>,
    ) -> Result<RunSummary, TrainError> {
        self.progress.finish();
        let Learner { module, ema, .. } = learner;
        let model = module.into_model();
        if self.peer.leader() {
            self.run.save_models(&model, ema.as_ref())?;
        }
        let seconds = self.state.train_seconds;
        // A stop request during the final evaluation ends it between its parts: the weights
        // and the last checkpoint are written, and `--resume` evaluates again. Peers decide
        // together (any peer asked), as they do after a step.
        let go_on = || -> Result<(), TrainError> {
            let asked = f64::from(u8::from(self.options.stop.load(Ordering::SeqCst)));
            // one peer sums nothing; several sum their requests
            let any = self.peer.sum::<B::InnerBackend>(&[asked], self.device)?;
            if any[0] > 0.0 {
                return Err(TrainError::Interrupted {
                    dir: self.run.path().to_owned(),
                });
            }
            Ok(())
        };
        let report = |m: &AdaptedVit<B::InnerBackend>| -> Result<FinalReport, TrainError> {
            final_report_peer::<B>(
                &self.plan.eval,
                m,
                self.splits,
                seconds,
                self.device,
                self.peer,
                &go_on,
            )
        };
        let mut table = report(&model.valid())?;
        if let Some(ema) = &ema {
            table.ema = Some(Box::new(report(ema)?));
        }
        if self.peer.leader() {
            self.run.write_final(&table)?;
        }
        Ok(self.summary(Some(table)))
    }

    /// What the run returns (takes the epochs and losses: the last thing a run does).
    fn summary(&mut self, report: Option<FinalReport>) -> RunSummary {
        RunSummary {
            dir: self.run.path().to_owned(),
            epochs: std::mem::take(&mut self.state.epochs),
            report,
            step_losses: std::mem::take(&mut self.step_losses),
        }
    }
}
