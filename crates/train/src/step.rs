//! The training regimes, each a burn [`TrainStep`] over the same batch type, so one loop
//! ([`crate::train`]) drives them all.

use std::borrow::Cow;

use advsoup_adapters::{AdaptedVit, Mode, Route};
use advsoup_attacks::{Pgd, PgdConfig, Selection, ThreatModel};
use advsoup_vit::Precision;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::ItemLazy;
use burn::train::{TrainOutput, TrainStep};

use crate::config::PgdSection;

/// One training batch.
#[derive(Debug, Clone)]
pub struct TrainBatch<B: Backend> {
    /// `[n, c, h, w]` pixels in [0, 1].
    pub images: Tensor<B, 4>,
    /// `[n]` labels (the unmixed ones; attacks use these).
    pub targets: Tensor<B, 1, Int>,
    /// `[n, classes]` target distributions (label smoothing, mixup, CutMix).
    pub soft_targets: Tensor<B, 2>,
    /// Per-sample keys of the attack's random start (unique per sample and epoch).
    pub ids: Vec<u64>,
    /// Seed of the attack's random starts.
    pub seed: u64,
    /// The loss is multiplied by this before the backward pass (f16 loss scaling; 1 otherwise).
    /// The gradients come back scaled by it; the reported loss does not.
    pub loss_scale: f32,
}

/// What a step reports (already read back: the loop needs the loss for its NaN check).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The optimized loss.
    pub loss: f64,
    /// Samples that went into the loss (both halves of a mixed batch).
    pub samples: usize,
}

impl ItemLazy for StepStats {
    type ItemSync = StepStats;
    fn sync(self) -> Self::ItemSync {
        self
    }
}

/// Settings a step needs besides the model.
#[derive(Debug, Clone)]
pub struct StepConfig {
    /// Weight α of the clean loss (co-training).
    pub alpha: f64,
    /// The training attack.
    pub attack: Pgd,
    /// Compute precision of the forward/backward passes and the attack (the model's own
    /// parameters stay f32).
    pub precision: Precision,
}

impl StepConfig {
    /// Builds the training attack (ℓ∞ PGD, last iterate: the fast path with no host reads).
    pub fn new(alpha: f64, pgd: &PgdSection) -> Result<Self, advsoup_attacks::AttackError> {
        let attack = PgdConfig::new(ThreatModel::Linf, pgd.eps, pgd.num_steps)
            .with_step_size(pgd.step_size)
            .with_random_start(pgd.random_start)
            .with_select(Selection::Last)
            .init()?;
        Ok(Self {
            alpha,
            attack,
            precision: Precision::F32,
        })
    }

    /// The same with another compute precision.
    pub fn with_precision(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }
}

/// The model a step computes with, attack included: `model` itself in f32, else a copy whose
/// parameters are cast on the graph (gradients flow back to `model`'s f32 parameters). Cast
/// once per step.
fn compute_model<B: AutodiffBackend>(
    model: &AdaptedVit<B>,
    precision: Precision,
) -> Cow<'_, AdaptedVit<B>> {
    match precision {
        Precision::F32 => Cow::Borrowed(model),
        p => Cow::Owned(p.cast(model.clone())),
    }
}

/// Cross-entropy against target distributions, averaged over the batch.
///
/// # Shapes
/// - logits, targets: `[n, classes]` -> `[1]`
pub fn soft_cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1> {
    (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg()
}

/// A regime: a module that [`TrainStep`]s on [`TrainBatch`]es and wraps an [`AdaptedVit`].
pub trait Regime<B: AutodiffBackend>:
    TrainStep<Input = TrainBatch<B>, Output = StepStats> + AutodiffModule<B> + Sized
{
    /// Wraps a model.
    fn wrap(model: AdaptedVit<B>, config: StepConfig) -> Self;
    /// The model.
    fn model(&self) -> &AdaptedVit<B>;
    /// Unwraps the model.
    fn into_model(self) -> AdaptedVit<B>;
}

/// Crafts x_adv against the robust mode of a frozen, deterministic copy of `model`: only the
/// input is on the autodiff graph, and x_adv stays on the inner backend.
///
/// Under mixed precision `model` is the step's 16-bit compute copy; the pixels, the
/// perturbation and the input gradient stay f32 (the model casts its input and returns f32
/// logits), so the gradient's sign, the step and the projection are computed in f32. The
/// attack's loss is not scaled: in f16, an input-gradient entry below f16's range (about 6e-8)
/// comes back 0 and that pixel does not move in that iteration.
pub fn craft<B: AutodiffBackend>(
    model: &AdaptedVit<B>,
    attack: &Pgd,
    batch: &TrainBatch<B>,
) -> Tensor<B, 4> {
    let frozen = AdaptedVit::<B>::from_inner(model.valid())
        .deterministic()
        .no_grad();
    let route = Route::mode(Mode::Adversarial);
    let f = |x: Tensor<B, 4>| frozen.forward(x, &route);
    let out = attack.attack_sharded::<B, _>(
        &f,
        &batch.images.clone().inner(),
        &batch.targets.clone().inner(),
        &batch.ids,
        batch.seed,
        attack_shards::<B>(&batch.images.device()),
    );
    Tensor::from_inner(out.x_adv)
}

/// Threads the training attack spreads its samples over. burn's CPU backend (Flex) runs the
/// element-wise ops of a small model on one thread, so on the CPU two threads attack one half of
/// the batch each (a fixed count, so that x_adv does not depend on the machine's cores);
/// accelerators get the whole batch at once.
fn attack_shards<B: Backend>(device: &B::Device) -> usize {
    if B::name(device).contains("flex") {
        2
    } else {
        1
    }
}

fn finish<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    loss: Tensor<B, 1>,
    samples: usize,
    loss_scale: f32,
) -> TrainOutput<StepStats> {
    let value: f64 = loss.clone().into_scalar().elem::<f64>();
    let loss = if loss_scale == 1.0 {
        loss
    } else {
        loss * loss_scale
    };
    TrainOutput::new(
        module,
        loss.backward(),
        StepStats {
            loss: value,
            samples,
        },
    )
}

macro_rules! regime {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Module, Debug)]
        pub struct $name<B: Backend> {
            /// The model.
            pub model: AdaptedVit<B>,
            /// Step settings.
            #[module(skip)]
            pub config: Option<StepConfig>,
        }

        impl<B: AutodiffBackend> Regime<B> for $name<B> {
            fn wrap(model: AdaptedVit<B>, config: StepConfig) -> Self {
                // Initialized once here: a lazy parameter would be initialized anew in every
                // clone (the attack's and mixed precision's copies).
                advsoup_vit::materialize(&model);
                Self { model, config: Some(config) }
            }
            fn model(&self) -> &AdaptedVit<B> {
                &self.model
            }
            fn into_model(self) -> AdaptedVit<B> {
                self.model
            }
        }

        impl<B: AutodiffBackend> $name<B> {
            #[allow(dead_code)]
            fn step_config(&self) -> &StepConfig {
                self.config
                    .as_ref()
                    .expect("a regime built by Regime::wrap carries its step config")
            }
        }
    };
}

regime!(
    /// Standard training: clean inputs through the clean adapter.
    Nominal
);
regime!(
    /// Adversarial training (Madry et al. 2018): PGD inputs through the adversarial adapter.
    Adversarial
);
regime!(
    /// Co-training (Rebuffi et al. 2023): α·CE(f(x; φ_clean)) + (1 − α)·CE(f(x_adv; φ_adv)),
    /// both halves in ONE mixed forward pass, each sample routed to its own adapter.
    CoTraining
);

impl<B: AutodiffBackend> TrainStep for Nominal<B> {
    type Input = TrainBatch<B>;
    type Output = StepStats;

    fn step(&self, batch: TrainBatch<B>) -> TrainOutput<StepStats> {
        let n = batch.images.dims()[0];
        let model = compute_model(&self.model, self.step_config().precision);
        let logits = model.forward_mode(batch.images, Mode::Clean);
        let loss = soft_cross_entropy(logits, batch.soft_targets);
        finish(self, loss, n, batch.loss_scale)
    }
}

impl<B: AutodiffBackend> TrainStep for Adversarial<B> {
    type Input = TrainBatch<B>;
    type Output = StepStats;

    fn step(&self, batch: TrainBatch<B>) -> TrainOutput<StepStats> {
        let n = batch.images.dims()[0];
        let config = self.step_config();
        let model = compute_model(&self.model, config.precision);
        let x_adv = craft(&model, &config.attack, &batch);
        let logits = model.forward_mode(x_adv, Mode::Adversarial);
        let loss = soft_cross_entropy(logits, batch.soft_targets);
        finish(self, loss, n, batch.loss_scale)
    }
}

impl<B: AutodiffBackend> TrainStep for CoTraining<B> {
    type Input = TrainBatch<B>;
    type Output = StepStats;

    fn step(&self, batch: TrainBatch<B>) -> TrainOutput<StepStats> {
        let n = batch.images.dims()[0];
        let config = self.step_config();
        let model = compute_model(&self.model, config.precision);
        let x_adv = craft(&model, &config.attack, &batch);
        let device = batch.images.device();
        let mixed = Tensor::cat(vec![batch.images, x_adv], 0);
        let logits = model.forward(mixed, &Route::split(n, n, &device));
        let classes = logits.dims()[1];
        let clean = logits.clone().slice([0..n, 0..classes]);
        let adv = logits.slice([n..2 * n, 0..classes]);
        let alpha = config.alpha;
        let loss = soft_cross_entropy(clean, batch.soft_targets.clone()) * alpha
            + soft_cross_entropy(adv, batch.soft_targets) * (1.0 - alpha);
        finish(self, loss, 2 * n, batch.loss_scale)
    }
}
