//! One optimizer step: the micro-batches' gradients accumulated, their mean taken and f16's loss
//! scale taken back out in one pass, the all-reduce over the peers, the non-finite checks, the
//! dynamic loss scale, decoupled weight decay, the AdamW update and the EMA update. The
//! whole-model transforms are burn `ModuleMapper`s / `ModuleVisitor`s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use advsoup_adapters::AdaptedVit;
use advsoup_data::ImageBatch;
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::TrainError;
use crate::parallel::Peer;
use crate::plan::Plan;
use crate::schedule::{attack_seed, peer_step_seed};
use crate::state::{Learner, State};
use crate::step::{Regime, TrainBatch};

/// The settings of every step of a run on one peer.
pub(crate) struct Update<'a, B: AutodiffBackend> {
    /// The plan (accumulation, schedule, seed, weight decay, EMA decay).
    pub(crate) plan: &'a Plan,
    /// This peer.
    pub(crate) peer: Peer,
    /// Its device.
    pub(crate) device: &'a B::Device,
    /// Classes of the model (one-hot targets when a batch has no soft ones).
    pub(crate) num_classes: usize,
    /// Training samples (the attack's per-sample keys are unique per epoch).
    pub(crate) train_samples: u64,
    /// Named by the error when the loss is not finite.
    pub(crate) checkpoint_dir: PathBuf,
}

/// What one step reports.
pub(crate) struct Stepped {
    /// The step's loss (mean over the micro-batches and the peers).
    pub(crate) loss: f64,
    /// Its learning rate.
    pub(crate) lr: f64,
    /// Whether any peer was asked to stop.
    pub(crate) interrupted: bool,
}

impl<B: AutodiffBackend> Update<'_, B> {
    /// Runs optimizer step `state.global_step` of `epoch` on this peer's `micro_batches`:
    /// reseeds the backend from (seed, rank, step), so that a resumed run draws what an
    /// uninterrupted one does. Updates the loss scale in `state`, not its position.
    pub(crate) fn step<R: Regime<B>, O: Optimizer<R, B>>(
        &self,
        learner: Learner<B, R, O>,
        state: &mut State,
        micro_batches: Vec<ImageBatch<B>>,
        epoch: usize,
        stop: &AtomicBool,
    ) -> Result<(Learner<B, R, O>, Stepped), TrainError> {
        let Learner {
            mut module,
            mut optim,
            mut ema,
        } = learner;
        let step = state.global_step;
        B::seed(
            self.device,
            peer_step_seed(self.plan.seed, self.peer.rank, step),
        );
        let lr = self.plan.schedule.lr(step);
        let (mut grads, mut loss) = self.accumulate(&module, micro_batches, epoch, step, state);
        let mut interrupted = stop.load(Ordering::SeqCst);
        if self.peer.world > 1 {
            let (g, r) = self.peer.mean_grads_and_sum::<B, _>(
                &module,
                grads,
                &[loss, f64::from(u8::from(interrupted))],
                self.device,
            )?;
            grads = g;
            loss = r[0] / self.peer.world as f64;
            interrupted = r[1] > 0.0;
        }
        if !loss.is_finite() {
            return Err(TrainError::NonFinite {
                step,
                epoch,
                loss,
                dir: self.checkpoint_dir.clone(),
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
            let o = &self.plan.optimizer;
            if o.weight_decay > 0.0 {
                module = module.map(&mut WeightDecay {
                    factor: 1.0 - lr * o.weight_decay,
                });
            }
            module = module.optimize(&mut optim, lr, grads);
            if let Some(e) = ema.take() {
                ema = Some(ema_update(e, &module.model().valid(), self.plan.ema_decay));
            }
        }
        let learner = Learner { module, optim, ema };
        Ok((
            learner,
            Stepped {
                loss,
                lr,
                interrupted,
            },
        ))
    }

    /// The micro-batches' forward/backward passes: their gradients summed, then scaled in one
    /// pass to the mean over accumulation steps with f16's loss scale taken back out; and the
    /// mean loss.
    fn accumulate<R: Regime<B>>(
        &self,
        module: &R,
        micro_batches: Vec<ImageBatch<B>>,
        epoch: usize,
        step: usize,
        state: &State,
    ) -> (GradientsParams, f64) {
        let accumulation = self.plan.accumulation;
        let mut loss = 0.0;
        let mut single = None;
        let mut accumulator = GradientsAccumulator::<R>::new();
        for batch in micro_batches {
            let module = for_backward(module);
            let soft_targets = match batch.soft_targets {
                Some(s) => s,
                None => batch.targets.clone().one_hot::<2>(self.num_classes).float(),
            };
            let ids = batch
                .indices
                .iter()
                .map(|i| epoch as u64 * self.train_samples + *i as u64)
                .collect();
            let out = module.step(TrainBatch {
                images: batch.images,
                targets: batch.targets,
                soft_targets,
                ids,
                seed: attack_seed(self.plan.seed, step),
                loss_scale: state.loss_scale.unwrap_or(1.0) as f32,
            });
            loss += out.item.loss;
            if accumulation == 1 {
                single = Some(out.grads);
            } else {
                accumulator.accumulate::<B>(&module, out.grads);
            }
        }
        let mut grads = single.unwrap_or_else(|| accumulator.grads());
        // One pass: the mean over accumulation steps, and f16's loss scale taken back out.
        let factor = 1.0 / (accumulation as f64 * state.loss_scale.unwrap_or(1.0));
        if factor != 1.0 {
            module.visit(&mut ScaleGrads {
                grads: &mut grads,
                factor,
            });
        }
        loss /= accumulation as f64;
        (grads, loss)
    }
}

/// `module` with a fresh autodiff leaf for every parameter: the same values and parameter ids
/// (so gradients land where they would), new graph nodes. Every forward that ends in a backward
/// starts from it, because in burn 0.21 a graph built on leaves that an earlier backward
/// consumed can lose gradient to a concurrent backward on another thread (tracel-ai/burn#5573;
/// see this module's test). Shallow: the values are shared, not copied.
fn for_backward<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M) -> M {
    module.clone().map(&mut Retrack)
}

struct Retrack;

impl<B: AutodiffBackend> ModuleMapper<B> for Retrack {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|t| {
            let rg = t.is_require_grad();
            t.detach().set_require_grad(rg)
        })
    }
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
pub(crate) fn ema_update<B: Backend>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};

    type Ad = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Net<B: Backend> {
        a: Linear<B>,
        b: Linear<B>,
    }

    impl<B: Backend> Net<B> {
        fn new(device: &B::Device) -> Self {
            Net {
                a: LinearConfig::new(8, 8).init(device),
                b: LinearConfig::new(16, 4).init(device),
            }
        }

        fn loss(&self, x: Tensor<B, 2>) -> Tensor<B, 1> {
            let h = self.a.forward(x);
            let h = Tensor::cat(vec![h.clone(), h.tanh()], 1);
            self.b.forward(h).powi_scalar(2).sum()
        }
    }

    /// The weights' gradients, flattened; NaN where one is missing.
    fn gradient(net: &Net<Ad>, x: Tensor<Ad, 2>) -> Vec<f32> {
        let grads = GradientsParams::from_grads(net.loss(x).backward(), net);
        let mut out = Vec::new();
        for id in [net.a.weight.id, net.b.weight.id] {
            match grads.get::<Flex, 2>(id) {
                Some(g) => out.extend(g.into_data().to_vec::<f32>().expect("f32")),
                None => out.push(f32::NAN),
            }
        }
        out
    }

    /// burn 0.21's autodiff (tracel-ai/burn#5573): a backward pass finishing on one thread can
    /// free steps of a graph another thread is building on leaves that went through an earlier
    /// backward, so that graph's backward silently loses gradient. A micro-batch after the first
    /// reuses the leaves of the one before; data-parallel peers on threads of one process
    /// finish backward passes (their attacks' and their own) meanwhile. Measured: 25 wrong or
    /// missing gradients in these 2,000 rounds with `for_backward` taken out, 38 to 98 in 3,000
    /// rounds of a first version with it taken out of the second pass only; with it, none. (In
    /// training, 2 peers accumulating 2 micro-batches drifted from the one-device loss curve in
    /// 10 runs of 300.)
    #[test]
    fn leaves_reused_after_a_backward_keep_exact_gradients_while_another_thread_runs_backward() {
        let _rng = crate::test_support::serial();
        let device = Default::default();
        let net = Net::<Ad>::new(&device);
        let x = Tensor::<Ad, 2>::ones([3, 8], &device);
        let done = AtomicBool::new(false);
        let wrong = std::thread::scope(|s| {
            s.spawn(|| {
                let other = Net::<Ad>::new(&device);
                while !done.load(Ordering::Relaxed) {
                    let _ = other.loss(Tensor::ones([1, 8], &device)).backward();
                }
            });
            let wrong = (0..2_000)
                .filter(|_| {
                    let first = for_backward(&net);
                    let expected = gradient(&first, x.clone());
                    gradient(&for_backward(&first), x.clone()) != expected
                })
                .count();
            done.store(true, Ordering::Relaxed);
            wrong
        });
        assert_eq!(wrong, 0, "rounds of 2,000 with a wrong or missing gradient");
    }
}
