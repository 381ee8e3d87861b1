//! The evaluation after every epoch, on the held-out slice of train (never the test split):
//! clean accuracy in clean mode and robust accuracy in robust mode under the eval PGD, each
//! peer counting its shard.

use advsoup_adapters::{AdaptedVit, Mode, Route};
use advsoup_attacks::{AttackSpec, Evaluator, PgdConfig, ThreatModel};
use advsoup_data::ImageDataset;
use burn::tensor::backend::AutodiffBackend;

use crate::TrainError;
use advsoup_eval::{EvalJob, correct_count};

use crate::eval::shard_range;
use crate::parallel::Peer;
use crate::plan::EvalPlan;

/// The held-out evaluation of a run.
pub(crate) struct HeldOutEval {
    attack: Evaluator,
    batch_size: usize,
    robust: usize,
}

impl HeldOutEval {
    /// The eval PGD of `eval` (ℓ∞, `attack.eval`) on `eval.held_out_robust` samples.
    pub(crate) fn new(eval: &EvalPlan) -> Result<Self, TrainError> {
        let e = &eval.held_out_attack;
        let pgd = PgdConfig::new(ThreatModel::Linf, e.eps, e.num_steps)
            .with_step_size(e.step_size)
            .with_random_start(e.random_start);
        let attack =
            Evaluator::new(vec![AttackSpec::Pgd(pgd)], eval.seed).map_err(TrainError::Attack)?;
        Ok(Self {
            attack,
            batch_size: eval.batch_size,
            robust: eval.held_out_robust,
        })
    }

    /// `(clean accuracy, robust accuracy)` of `model` on `held`, summed over the peers.
    pub(crate) fn accuracies<B: AutodiffBackend>(
        &self,
        model: &AdaptedVit<B::InnerBackend>,
        held: &ImageDataset,
        peer: Peer,
        device: &B::Device,
    ) -> Result<(f64, f64), TrainError> {
        let bs = self.batch_size;
        let clean_range = shard_range(held.num_samples(), peer);
        let n_robust = self.robust.min(held.num_samples());
        let local = || -> Result<Vec<f64>, TrainError> {
            let correct = correct_count(
                model,
                held,
                clean_range,
                &Route::mode(Mode::Clean),
                None,
                bs,
                device,
            )?;
            let robust = EvalJob::new(self.attack.clone(), Mode::Adversarial)
                .batch_size(bs)
                .range(shard_range(n_robust, peer))
                .count::<B>(model, held, device)?;
            Ok(vec![correct as f64, robust as f64])
        };
        // a damaged held-out image on one peer stops every peer (no sum of the others alone)
        let sums =
            peer.sum_agreed::<B::InnerBackend>(local(), 2, "the held-out evaluation", device)?;
        let ratio = |k: f64, n: usize| if n == 0 { 0.0 } else { k / n as f64 };
        Ok((ratio(sums[0], held.num_samples()), ratio(sums[1], n_robust)))
    }
}
