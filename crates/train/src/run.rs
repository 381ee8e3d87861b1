//! The one training loop: run directory, checkpoints, resume, metrics, progress, final table;
//! gradient accumulation, weight EMA and data-parallel peers ([`crate::parallel`]) included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use advsoup_adapters::{AdaptedVit, AdaptedVitConfig, Mode, Route};
use advsoup_attacks::{AttackSpec, Evaluator, PgdConfig, ThreatModel};
use advsoup_data::{ImageBatcher, ImageLoader, LoaderConfig, Splits};
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{BinBytesRecorder, BinFileRecorder, FullPrecisionSettings, Record, Recorder};
use burn::tensor::backend::AutodiffBackend;

use serde::{Deserialize, Serialize};

use crate::config::{Regime as RegimeName, TrainConfig};
use crate::eval::{correct_count, robust_count, shard_range};
use crate::parallel::Peer;
use crate::plan::{Plan, Topology};
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
    /// f16 runs: the loss scale at the end of the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// f16 runs: steps skipped for overflowing gradients so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<usize>,
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
    /// Distribution-shift test sets (`eval.shifts`), both modes.
    #[serde(default)]
    pub shifts: Vec<crate::eval::ShiftResult>,
    /// The same evaluation of the EMA weights (`optim.ema_decay > 0`), which timm-style
    /// recipes report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<Box<FinalReport>>,
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
        ) + &self.shift_table()
            + &self
                .ema
                .as_ref()
                .map(|e| format!("\nEMA weights:\n\n{}", e.table()))
                .unwrap_or_default()
    }

    fn shift_table(&self) -> String {
        if self.shifts.is_empty() {
            return String::new();
        }
        let mut t = String::from(
            "\n| shifted set | n | classes | clean mode | robust mode |\n|---|---|---|---|---|\n",
        );
        for s in &self.shifts {
            t += &format!(
                "| {} | {} | {} | {:.2}% | {:.2}% |\n",
                s.name,
                s.n,
                s.classes,
                100.0 * s.clean_mode_acc,
                100.0 * s.robust_mode_acc
            );
        }
        t
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
    /// The loss of every optimizer step run by this process (mean over all peers and
    /// accumulation steps).
    pub step_losses: Vec<f64>,
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
    /// f16 loss scaling: the current scale (`None` when the precision needs none).
    #[serde(default)]
    loss_scale: Option<f64>,
    /// Finite steps in a row at the current scale.
    #[serde(default)]
    finite_steps: usize,
    /// Steps skipped for non-finite scaled gradients, in all.
    #[serde(default)]
    skipped_steps: usize,
}

/// Finite steps in a row after which the f16 loss scale doubles.
const LOSS_SCALE_GROWTH_INTERVAL: usize = 2000;

impl State {
    /// Dynamic loss scaling after a step whose unscaled gradients were `finite` or not: an
    /// overflow halves the scale (not below 1) and the step is skipped; 2000 finite steps in a
    /// row double it. Returns whether to apply the step.
    fn update_loss_scale(&mut self, finite: bool) -> bool {
        let Some(scale) = self.loss_scale else {
            return true;
        };
        if !finite {
            self.loss_scale = Some((scale / 2.0).max(1.0));
            self.finite_steps = 0;
            self.skipped_steps += 1;
            return false;
        }
        self.finite_steps += 1;
        if self.finite_steps == LOSS_SCALE_GROWTH_INTERVAL {
            self.loss_scale = Some(scale * 2.0);
            self.finite_steps = 0;
        }
        true
    }
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

/// Multiplies every gradient of a module's parameters by `factor`.
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Whether every gradient of `module`'s parameters is finite: one sum per gradient, added up on
/// the device, one read (inf and NaN propagate through the sums).
fn grads_finite<B: AutodiffBackend, M: Module<B>>(module: &M, grads: &GradientsParams) -> bool {
    struct Sum<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        total: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Sum<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let s = g.sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    let mut sum = Sum::<B> { grads, total: None };
    module.visit(&mut sum);
    sum.total
        .is_none_or(|t| t.into_scalar().elem::<f64>().is_finite())
}

/// The flattened parameter values of a module, by id.
struct Snapshot<B: Backend> {
    params: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Snapshot<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.params
            .insert(param.id, param.val().flatten::<1>(0, D - 1));
    }
}

/// `ema ← decay · ema + (1 − decay) · θ`, parameter by parameter (matched by id).
struct EmaStep<B: Backend> {
    params: HashMap<ParamId, Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for EmaStep<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let Some(v) = self.params.remove(&param.id) else {
            return param;
        };
        let d = self.decay;
        param.map(|t| {
            let dims = t.dims();
            t.mul_scalar(d) + v.reshape(dims).mul_scalar(1.0 - d)
        })
    }
}

/// One EMA update of `ema` towards `model`.
pub fn ema_update<B: Backend>(
    ema: AdaptedVit<B>,
    model: &AdaptedVit<B>,
    decay: f64,
) -> AdaptedVit<B> {
    let mut snap = Snapshot {
        params: HashMap::new(),
    };
    model.visit(&mut snap);
    ema.map(&mut EmaStep {
        params: snap.params,
        decay,
    })
}

/// burn seeds ONE generator per backend; peers on threads of one process initialize their
/// models under this lock so that each draws the same stream as a run on one device.
static INIT: Mutex<()> = Mutex::new(());

/// Trains `config` on `splits` on one device and evaluates it; the regime picks the
/// [`TrainStep`](burn::train::TrainStep).
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    splits: &Splits,
    options: &RunOptions,
    device: &B::Device,
) -> Result<RunSummary, TrainError> {
    train_peer::<B>(
        config,
        splits,
        options,
        device,
        &Topology::single(),
        Peer::SOLO,
    )
}

pub(crate) fn train_peer<B: AutodiffBackend>(
    config: &TrainConfig,
    splits: &Splits,
    options: &RunOptions,
    device: &B::Device,
    topology: &Topology,
    peer: Peer,
) -> Result<RunSummary, TrainError> {
    match config.regime {
        RegimeName::Nominal => {
            fit::<B, Nominal<B>>(config, splits, options, device, topology, peer)
        }
        RegimeName::Adversarial => {
            fit::<B, Adversarial<B>>(config, splits, options, device, topology, peer)
        }
        RegimeName::CoTraining => {
            fit::<B, CoTraining<B>>(config, splits, options, device, topology, peer)
        }
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
    ema: Option<&AdaptedVit<B::InnerBackend>>,
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
    if let Err(e) = write_checkpoint_files(&tmp, module, optim, ema, state) {
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
    Ok(())
}

/// Writes the files of a checkpoint into `tmp`. Records are encoded in memory and written by
/// [`write_atomic`], so an I/O failure surfaces as the operating system's error on the file.
fn write_checkpoint_files<B: AutodiffBackend, R: Regime<B>, O: Optimizer<R, B>>(
    tmp: &Path,
    module: &R,
    optim: &O,
    ema: Option<&AdaptedVit<B::InnerBackend>>,
    state: &State,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    write_record::<B, _>(tmp, "model.bin", module.clone().into_record())?;
    write_record::<B, _>(tmp, "optim.bin", optim.to_record())?;
    if let Some(ema) = ema {
        write_record::<B::InnerBackend, _>(tmp, "ema.bin", ema.clone().into_record())?;
    }
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::Checkpoint {
        path: tmp.join("state.json"),
        message: e.to_string(),
    })?;
    write_atomic(&tmp.join("state.json"), &json)
}

/// Encodes `record` in memory and writes it to `dir/name` with [`write_atomic`]. The bytes
/// recorder encodes exactly what `BinFileRecorder` writes (same bincode settings), so
/// `load_checkpoint` reads the file with `BinFileRecorder`.
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

type Loaded<B, R, O> = (
    R,
    O,
    Option<AdaptedVit<<B as AutodiffBackend>::InnerBackend>>,
    State,
);

fn load_checkpoint<B: AutodiffBackend, R: Regime<B>, O: Optimizer<R, B>>(
    run: &Path,
    module: R,
    optim: O,
    ema: Option<AdaptedVit<B::InnerBackend>>,
    device: &B::Device,
) -> Result<Option<Loaded<B, R, O>>, TrainError> {
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
    Ok(Some((module, optim, ema, state)))
}

fn eval_pgd(config: &TrainConfig) -> Result<Evaluator, TrainError> {
    let e = &config.attack.eval;
    let pgd = PgdConfig::new(ThreatModel::Linf, e.eps, e.num_steps)
        .with_step_size(e.step_size)
        .with_random_start(e.random_start);
    Evaluator::new(vec![AttackSpec::Pgd(pgd)], config.seed).map_err(TrainError::Attack)
}

/// Checks what every peer would reject before any of them starts (plan, shapes, classes).
pub(crate) fn check_setup(
    config: &TrainConfig,
    splits: &Splits,
    topology: &Topology,
) -> Result<Plan, TrainError> {
    let plan = Plan::new(config, topology, splits.train.num_samples())?;
    check_shift_dirs(config)?;
    let vit = config.vit()?;
    let shape = config.augment()?.output_shape(splits.train.shape());
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
pub(crate) fn check_shift_dirs(config: &TrainConfig) -> Result<(), TrainError> {
    for (i, shift) in config.eval.shifts.iter().enumerate() {
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

fn step_seed_for(config: &TrainConfig, peer: Peer, step: usize) -> u64 {
    // Rank 0 draws what a one-device run draws; other ranks draw their own dropout masks.
    step_seed(
        config.seed ^ (peer.rank as u64).wrapping_mul(0x51_7CC1_B727_220A),
        step,
    )
}

fn fit<B: AutodiffBackend, R: Regime<B>>(
    config: &TrainConfig,
    splits: &Splits,
    options: &RunOptions,
    device: &B::Device,
    topology: &Topology,
    peer: Peer,
) -> Result<RunSummary, TrainError> {
    let run = options.runs_dir.join(&config.name);
    let has_checkpoint = checkpoint_dir(&run).exists() || run.join("checkpoint.old").exists();
    if has_checkpoint && !options.resume {
        return Err(TrainError::RunExists { dir: run });
    }
    let plan = check_setup(config, splits, topology)?;
    if peer.leader() {
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
            "devices": plan.world,
            "nodes": plan.nodes,
            "global_batch": plan.global_batch,
            "accumulation": plan.accumulation,
        });
        write_atomic(&run.join("run.json"), meta.to_string().as_bytes())?;
    }

    let model: AdaptedVit<B> = {
        let _rng = INIT.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(device, config.seed);
        AdaptedVitConfig {
            vit: config.vit()?,
            adapter: config.model.adapter,
        }
        .try_init(device)
        .map_err(|e| TrainError::Invalid {
            field: "model".into(),
            message: e.to_string(),
        })?
        .map(&mut Renumber { next: 0 })
    };
    let step_config = StepConfig::new(config.alpha, &config.attack.train)
        .map_err(TrainError::Attack)?
        .with_precision(config.precision()?);
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
    let use_ema = o.ema_decay > 0.0;
    let mut ema = use_ema.then(|| module.model().valid());
    let mut state = State::default();
    if options.resume
        && let Some((m, opt, e, s)) =
            load_checkpoint::<B, R, _>(&run, module.clone(), optim.clone(), ema.clone(), device)?
    {
        tracing::info!(epoch = s.epoch, step = s.global_step, "resuming");
        module = R::wrap(m.into_model(), step_config.clone());
        optim = opt;
        ema = e;
        state = s;
    }
    if peer.world > 1 {
        // Every peer starts from rank 0's parameters, at the same step.
        let model = peer.broadcast_module::<B, _>(module.into_model())?;
        module = R::wrap(model, step_config.clone());
        let steps = peer.sum::<B::InnerBackend>(&[state.global_step as f64], device)?;
        if steps[0] != (state.global_step * peer.world) as f64 {
            return Err(TrainError::Collective(format!(
                "peer {} resumes at step {} but the peers' steps sum to {}: the run directory must be shared by all nodes",
                peer.rank, state.global_step, steps[0]
            )));
        }
        if let Some(e) = ema.take() {
            let e = AdaptedVit::<B>::from_inner(e);
            ema = Some(peer.broadcast_module::<B, _>(e)?.valid());
        }
    }

    let augment = config.augment()?;
    let num_classes = module.model().vit.num_classes();
    let train_data = Arc::new(splits.train.clone());
    let batcher = Arc::new(ImageBatcher::new(augment, num_classes, config.seed));
    // The loader only serves the epoch's sample order; this peer's micro-batches come from it.
    let order_loader = ImageLoader::<B>::new(
        train_data.clone(),
        ImageBatcher::eval(num_classes),
        LoaderConfig {
            batch_size: plan.global_batch,
            num_workers: 0,
            shuffle: true,
            drop_last: true,
            seed: config.seed,
        },
        device.clone(),
    );
    let steps_per_epoch = plan.steps_per_epoch;
    let n_train = splits.train.num_samples() as u64;
    let eval_attack = eval_pgd(config)?;
    let mut steps_this_process = 0usize;
    let mut step_losses = Vec::new();
    let total_steps = plan.total_steps;
    let bar = (options.progress && peer.leader()).then(|| {
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

    if step_config.precision.needs_loss_scaling() && state.loss_scale.is_none() {
        state.loss_scale = Some(o.loss_scale);
    }
    while state.epoch < o.epochs {
        let epoch = state.epoch;
        let started = Instant::now();
        let mut seen = 0usize;
        let order = Arc::new(order_loader.order(epoch as u64));
        let steps = crate::shard::epoch_steps::<B>(
            train_data.clone(),
            batcher.clone(),
            order,
            epoch as u64,
            &plan,
            peer.rank,
            state.step_in_epoch,
            config.data.workers,
            device.clone(),
        );
        for micro_batches in steps {
            let step = state.global_step;
            B::seed(device, step_seed_for(config, peer, step));
            let lr = learning_rate(config, step, steps_per_epoch);
            let mut loss = 0.0;
            let mut single = None;
            let mut accumulator = GradientsAccumulator::<R>::new();
            for batch in micro_batches {
                let soft_targets = match batch.soft_targets {
                    Some(s) => s,
                    None => batch.targets.clone().one_hot::<2>(num_classes).float(),
                };
                let ids = batch
                    .indices
                    .iter()
                    .map(|i| epoch as u64 * n_train + *i as u64)
                    .collect();
                let out = module.step(TrainBatch {
                    images: batch.images,
                    targets: batch.targets,
                    soft_targets,
                    ids,
                    seed: step_seed(config.seed ^ 0x00A7_7AC4, step),
                    loss_scale: state.loss_scale.unwrap_or(1.0) as f32,
                });
                loss += out.item.loss;
                if plan.accumulation == 1 {
                    single = Some(out.grads);
                } else {
                    accumulator.accumulate::<B>(&module, out.grads);
                }
            }
            let mut grads = single.unwrap_or_else(|| accumulator.grads());
            // One pass: the mean over accumulation steps, and f16's loss scale taken back out.
            let factor = 1.0 / (plan.accumulation as f64 * state.loss_scale.unwrap_or(1.0));
            if factor != 1.0 {
                module.visit(&mut ScaleGrads {
                    grads: &mut grads,
                    factor,
                });
            }
            loss /= plan.accumulation as f64;
            let mut interrupted = options.stop.load(Ordering::SeqCst);
            if peer.world > 1 {
                let (g, r) = peer.mean_grads_and_sum::<B, _>(
                    &module,
                    grads,
                    &[loss, f64::from(u8::from(interrupted))],
                    device,
                )?;
                grads = g;
                loss = r[0] / peer.world as f64;
                interrupted = r[1] > 0.0;
            }
            if !loss.is_finite() {
                return Err(TrainError::NonFinite {
                    step,
                    epoch,
                    loss,
                    dir: checkpoint_dir(&run),
                });
            }
            // f16: the peers hold the same (all-reduced) gradients, so they decide alike.
            let scale = state.loss_scale;
            let apply =
                scale.is_none() || state.update_loss_scale(grads_finite::<B, _>(&module, &grads));
            if !apply {
                tracing::warn!(
                    step,
                    scale,
                    next = state.loss_scale,
                    "f16 gradients overflowed: step skipped, loss scale halved"
                );
            }
            if apply {
                if o.weight_decay > 0.0 {
                    module = module.map(&mut WeightDecay {
                        factor: 1.0 - lr * o.weight_decay,
                    });
                }
                module = module.optimize(&mut optim, lr, grads);
                if let Some(e) = ema.take() {
                    ema = Some(ema_update(e, &module.model().valid(), o.ema_decay));
                }
            }
            state.global_step += 1;
            state.step_in_epoch += 1;
            state.loss_sum += loss;
            state.loss_count += 1;
            step_losses.push(loss);
            seen += plan.global_batch;
            steps_this_process += 1;
            if let Some(bar) = &bar {
                let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
                bar.set_position(state.global_step as u64);
                bar.set_message(format!(
                    "epoch {}/{} loss {:.4} lr {:.2e} {:.0} img/s",
                    epoch + 1,
                    o.epochs,
                    loss,
                    lr,
                    rate
                ));
            }
            let limit = options.max_steps.is_some_and(|m| steps_this_process >= m);
            let periodic = options.checkpoint_every > 0
                && state.step_in_epoch.is_multiple_of(options.checkpoint_every);
            if (interrupted || limit || periodic) && state.step_in_epoch < steps_per_epoch {
                let mut snapshot = state.clone();
                snapshot.train_seconds += started.elapsed().as_secs_f64();
                if peer.leader() {
                    save_checkpoint::<B, R, _>(&run, &module, &optim, ema.as_ref(), &snapshot)?;
                }
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
                        step_losses,
                    });
                }
            }
        }
        let train_time = started.elapsed().as_secs_f64();
        state.train_seconds += train_time;
        // End of epoch: held-out metrics (sharded over the peers), one metrics line, a
        // checkpoint.
        let inner = module.model().valid();
        let held = &splits.held_out;
        let bs = config.eval.batch_size;
        let clean_range = shard_range(held.num_samples(), peer);
        let n_robust = config.eval.held_out_robust.min(held.num_samples());
        let correct = correct_count(
            &inner,
            held,
            clean_range,
            &Route::mode(Mode::Clean),
            None,
            bs,
            device,
        );
        let robust = robust_count::<B>(
            &inner,
            Mode::Adversarial,
            &eval_attack,
            held,
            shard_range(n_robust, peer),
            bs,
            device,
        );
        let sums = peer.sum::<B::InnerBackend>(&[correct as f64, robust as f64], device)?;
        let ratio = |k: f64, n: usize| if n == 0 { 0.0 } else { k / n as f64 };
        let (clean_acc, robust_acc) =
            (ratio(sums[0], held.num_samples()), ratio(sums[1], n_robust));
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            step: state.global_step,
            loss: state.loss_sum / state.loss_count.max(1) as f64,
            clean_acc,
            robust_acc,
            lr: learning_rate(config, state.global_step.saturating_sub(1), steps_per_epoch),
            images_per_s: seen as f64 / train_time.max(1e-9),
            loss_scale: state.loss_scale,
            skipped_steps: state.loss_scale.map(|_| state.skipped_steps),
        };
        if peer.leader() {
            tracing::info!(
                "epoch {}: loss {:.4} held-out clean {:.2}% robust {:.2}% ({:.0} img/s)",
                metrics.epoch,
                metrics.loss,
                100.0 * clean_acc,
                100.0 * robust_acc,
                metrics.images_per_s
            );
        }
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
        if peer.leader() {
            let lines: String = state
                .epochs
                .iter()
                .map(|m| serde_json::to_string(m).unwrap_or_default() + "\n")
                .collect();
            write_atomic(&run.join("metrics.jsonl"), lines.as_bytes())?;
        }
        if peer.leader() {
            save_checkpoint::<B, R, _>(&run, &module, &optim, ema.as_ref(), &state)?;
        }
        let limit = options.max_steps.is_some_and(|m| steps_this_process >= m);
        if limit && state.epoch < o.epochs {
            return Ok(RunSummary {
                dir: run,
                epochs: state.epochs,
                report: None,
                step_losses,
            });
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let model = module.into_model();
    if peer.leader() {
        advsoup_adapters::io::save_model(&model, &run.join("model.safetensors"))
            .map_err(TrainError::Adapter)?;
        advsoup_adapters::io::save_adapter(&model, &run.join("adapter.safetensors"))
            .map_err(TrainError::Adapter)?;
        if let Some(ema) = &ema {
            advsoup_adapters::io::save_model(ema, &run.join("model_ema.safetensors"))
                .map_err(TrainError::Adapter)?;
        }
    }
    let mut report = final_report_peer::<B>(
        config,
        &model.valid(),
        splits,
        state.train_seconds,
        device,
        peer,
    )?;
    if let Some(ema) = &ema {
        let ema_report =
            final_report_peer::<B>(config, ema, splits, state.train_seconds, device, peer)?;
        report.ema = Some(Box::new(ema_report));
    }
    if peer.leader() {
        let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
        write_atomic(&run.join("final.json"), &json)?;
        write_atomic(&run.join("final.md"), report.table().as_bytes())?;
    }
    Ok(RunSummary {
        dir: run,
        epochs: state.epochs,
        report: Some(report),
        step_losses,
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
    final_report_peer::<B>(config, model, splits, train_seconds, device, Peer::SOLO)
}

/// [`final_report`] with every peer evaluating its shard of the test split.
fn final_report_peer<B: AutodiffBackend>(
    config: &TrainConfig,
    model: &AdaptedVit<B::InnerBackend>,
    splits: &Splits,
    train_seconds: f64,
    device: &B::Device,
    peer: Peer,
) -> Result<FinalReport, TrainError> {
    let e = &config.eval;
    let eps = config.attack.eval.eps;
    let evaluator = Evaluator::preset(&e.test_attack, ThreatModel::Linf, eps, config.seed)
        .map_err(TrainError::Attack)?;
    let test = &splits.test;
    let n_clean = test.num_samples();
    let n_robust = e.test_robust.min(n_clean);
    let acc = |mode| {
        correct_count(
            model,
            test,
            shard_range(n_clean, peer),
            &Route::mode(mode),
            None,
            e.batch_size,
            device,
        ) as f64
    };
    let rob = |mode| {
        robust_count::<B>(
            model,
            mode,
            &evaluator,
            test,
            shard_range(n_robust, peer),
            e.batch_size,
            device,
        ) as f64
    };
    let counts = [
        acc(Mode::Clean),
        acc(Mode::Adversarial),
        rob(Mode::Clean),
        rob(Mode::Adversarial),
    ];
    let s = peer.sum::<B::InnerBackend>(&counts, device)?;
    let ratio = |k: f64, n: usize| if n == 0 { 0.0 } else { k / n as f64 };
    let mut shifts = Vec::new();
    if !e.shifts.is_empty() {
        let index = crate::class_index(config)?;
        let vit = config.vit()?;
        for section in &e.shifts {
            for (name, data, mask) in
                crate::eval::load_shift(section, &index, vit.in_chans, vit.img_size)?
            {
                let n = data.num_samples();
                let count = |mode| {
                    correct_count(
                        model,
                        &data,
                        shard_range(n, peer),
                        &Route::mode(mode),
                        mask.as_ref(),
                        e.batch_size,
                        device,
                    ) as f64
                };
                let c = peer.sum::<B::InnerBackend>(
                    &[count(Mode::Clean), count(Mode::Adversarial)],
                    device,
                )?;
                shifts.push(crate::eval::ShiftResult {
                    name,
                    n,
                    classes: mask.as_ref().map_or(index.len(), |m| m.indices().len()),
                    clean_mode_acc: ratio(c[0], n),
                    robust_mode_acc: ratio(c[1], n),
                });
            }
        }
    }
    Ok(FinalReport {
        n_clean,
        n_robust,
        attack: e.test_attack.clone(),
        eps,
        clean_mode_clean_acc: ratio(s[0], n_clean),
        robust_mode_clean_acc: ratio(s[1], n_clean),
        clean_mode_robust_acc: ratio(s[2], n_robust),
        robust_mode_robust_acc: ratio(s[3], n_robust),
        train_seconds,
        seed: config.seed,
        shifts,
        ema: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_f16_loss_scale_halves_on_overflow_and_doubles_after_a_finite_run() {
        let mut s = State {
            loss_scale: Some(8.0),
            ..State::default()
        };
        assert!(!s.update_loss_scale(false), "an overflow skips the step");
        assert_eq!((s.loss_scale, s.skipped_steps), (Some(4.0), 1));
        for _ in 0..LOSS_SCALE_GROWTH_INTERVAL - 1 {
            assert!(s.update_loss_scale(true));
        }
        assert_eq!(s.loss_scale, Some(4.0));
        assert!(s.update_loss_scale(true));
        assert_eq!((s.loss_scale, s.finite_steps), (Some(8.0), 0));
        // An overflow resets the run of finite steps; the scale never drops below 1.
        for _ in 0..10 {
            s.update_loss_scale(false);
        }
        assert_eq!((s.loss_scale, s.skipped_steps), (Some(1.0), 11));
        // Without a scale (f32, bf16) every step applies.
        assert!(State::default().update_loss_scale(false));
    }
}
