//! The final table of a trained model on the test split: clean and robust accuracy of both
//! modes, and the distribution-shift sets; every peer evaluates its shard and the counts are
//! summed.

use advsoup_adapters::{AdaptedVit, Mode, Route};
use advsoup_attacks::{Evaluator, ThreatModel};
use advsoup_data::Splits;
use burn::tensor::backend::AutodiffBackend;

use crate::TrainError;
use crate::config::TrainConfig;
use crate::data::class_index_from;
use advsoup_eval::{EvalJob, correct_count};

use crate::eval::shard_range;
use crate::parallel::Peer;
use crate::plan::EvalPlan;
use crate::records::FinalReport;

/// Where a peer's failure in the final evaluation is reported ([`TrainError::PeerDataFailed`]).
const FINAL: &str = "the final evaluation";

/// The final table of a trained model on the test split.
pub fn final_report<B: AutodiffBackend>(
    config: &TrainConfig,
    model: &AdaptedVit<B::InnerBackend>,
    splits: &Splits,
    train_seconds: f64,
    device: &B::Device,
) -> Result<FinalReport, TrainError> {
    let eval = EvalPlan::new(config)?;
    let go_on = || Ok(());
    final_report_peer::<B>(
        &eval,
        model,
        splits,
        train_seconds,
        device,
        Peer::SOLO,
        &go_on,
    )
}

/// [`final_report`] with every peer evaluating its shard of the test split. `go_on` is asked
/// before each part (each mode's clean accuracy, each mode's attack, each shift set): an error
/// from it (a stop request, [`TrainError::Interrupted`]) ends the evaluation there. Every peer
/// asks it at the same places, so it may all-reduce.
pub(crate) fn final_report_peer<B: AutodiffBackend>(
    e: &EvalPlan,
    model: &AdaptedVit<B::InnerBackend>,
    splits: &Splits,
    train_seconds: f64,
    device: &B::Device,
    peer: Peer,
    go_on: &dyn Fn() -> Result<(), TrainError>,
) -> Result<FinalReport, TrainError> {
    let eps = e.eps;
    let evaluator = Evaluator::preset(&e.test_attack, ThreatModel::Linf, eps, e.seed)
        .map_err(TrainError::Attack)?;
    let test = &splits.test;
    let n_clean = test.num_samples();
    let n_robust = e.test_robust.min(n_clean);
    let acc = |mode| -> Result<f64, TrainError> {
        let c = correct_count(
            model,
            test,
            shard_range(n_clean, peer),
            &Route::mode(mode),
            None,
            e.batch_size,
            device,
        )?;
        Ok(c as f64)
    };
    let rob = |mode| -> Result<f64, TrainError> {
        let c = EvalJob::new(evaluator.clone(), mode)
            .batch_size(e.batch_size)
            .range(shard_range(n_robust, peer))
            .count::<B>(model, test, device)?;
        Ok(c as f64)
    };
    // Each part: the stop check (every peer asks it at the same place), then this peer's
    // count unless an earlier part failed here; a peer's failure stops every peer at the sum.
    let parts: [&dyn Fn() -> Result<f64, TrainError>; 4] = [
        &|| acc(Mode::Clean),
        &|| acc(Mode::Adversarial),
        &|| rob(Mode::Clean),
        &|| rob(Mode::Adversarial),
    ];
    let mut local: Result<Vec<f64>, TrainError> = Ok(Vec::with_capacity(parts.len()));
    for part in parts {
        go_on()?;
        local = local.and_then(|mut counts| {
            counts.push(part()?);
            Ok(counts)
        });
    }
    let s = peer.sum_agreed::<B::InnerBackend>(local, 4, FINAL, device)?;
    let ratio = |k: f64, n: usize| if n == 0 { 0.0 } else { k / n as f64 };
    let mut shifts = Vec::new();
    if !e.shifts.is_empty() {
        let index = class_index_from(e.class_index.as_deref(), e.train_dir.as_deref())?;
        for section in &e.shifts {
            for (name, data, mask) in
                crate::eval::load_shift(section, &index, e.in_chans, e.img_size)?
            {
                go_on()?;
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
                    )
                    .map(|c| c as f64)
                };
                let local = (|| Ok(vec![count(Mode::Clean)?, count(Mode::Adversarial)?]))();
                let c = peer.sum_agreed::<B::InnerBackend>(local, 2, FINAL, device)?;
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
        seed: e.seed,
        shifts,
        ema: None,
    })
}
