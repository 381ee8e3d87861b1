//! Robust evaluation: accuracy of a mode under an attack ensemble from `advsoup-attacks`,
//! attacking a frozen deterministic copy batch by batch and merging the reports. Sample ids are
//! dataset indices, so chunks, shards and resumed runs merge to the one-pass report.

use advsoup_adapters::{AdaptedVit, Mode, Route};
use advsoup_attacks::{EvalReport, Evaluation, Evaluator};
use advsoup_data::ImageDataset;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::eval_batches;

/// Samples of `data[range]` that stay correct under `evaluator` (ids are dataset indices, so a
/// sample's random start does not depend on the shard it is evaluated in).
pub fn robust_count<AD: AutodiffBackend>(
    model: &AdaptedVit<AD::InnerBackend>,
    mode: Mode,
    evaluator: &Evaluator,
    data: &ImageDataset,
    range: std::ops::Range<usize>,
    batch_size: usize,
    device: &AD::Device,
) -> usize {
    robust_eval_range_each::<AD>(
        model,
        mode,
        evaluator,
        data,
        range,
        batch_size,
        device,
        |_| {},
    )
    .map_or(0, |r| r.robust)
}

/// Robust accuracy of `model` in `mode` on the first `n` samples of `data`, under `evaluator`,
/// attacking a frozen deterministic copy (sample ids are dataset indices).
pub fn robust_eval<AD: AutodiffBackend>(
    model: &AdaptedVit<AD::InnerBackend>,
    mode: Mode,
    evaluator: &Evaluator,
    data: &ImageDataset,
    n: usize,
    batch_size: usize,
    device: &AD::Device,
) -> Option<EvalReport> {
    robust_eval_each::<AD>(model, mode, evaluator, data, n, batch_size, device, |_| {})
}

/// [`robust_eval`], also handing every batch's [`Evaluation`] (with its adversarial examples) to
/// `on_batch` as it is produced, so callers can keep x_adv without holding the whole set.
#[allow(clippy::too_many_arguments)]
pub fn robust_eval_each<AD: AutodiffBackend>(
    model: &AdaptedVit<AD::InnerBackend>,
    mode: Mode,
    evaluator: &Evaluator,
    data: &ImageDataset,
    n: usize,
    batch_size: usize,
    device: &AD::Device,
    on_batch: impl FnMut(&Evaluation<AD::InnerBackend>),
) -> Option<EvalReport> {
    robust_eval_range_each::<AD>(
        model,
        mode,
        evaluator,
        data,
        0..n,
        batch_size,
        device,
        on_batch,
    )
}

/// [`robust_eval_each`] on the samples `range` of `data` (clamped to its size). Sample ids stay
/// dataset indices, so evaluating `0..a` and `a..n` separately and merging equals evaluating
/// `0..n` (the attacks' random starts are keyed by id): evaluations can be chunked, resumed
/// and sharded.
#[allow(clippy::too_many_arguments)]
pub fn robust_eval_range_each<AD: AutodiffBackend>(
    model: &AdaptedVit<AD::InnerBackend>,
    mode: Mode,
    evaluator: &Evaluator,
    data: &ImageDataset,
    range: std::ops::Range<usize>,
    batch_size: usize,
    device: &AD::Device,
    mut on_batch: impl FnMut(&Evaluation<AD::InnerBackend>),
) -> Option<EvalReport> {
    let end = range.end.min(data.num_samples());
    let start = range.start.min(end);
    if start == end {
        return None;
    }
    let subset = data.subset(&(start..end).collect::<Vec<_>>());
    let frozen = AdaptedVit::<AD>::from_inner(model.clone())
        .deterministic()
        .no_grad();
    let route = Route::mode(mode);
    let f = |x: Tensor<AD, 4>| frozen.forward(x, &route);
    let mut merged: Option<EvalReport> = None;
    for batch in eval_batches::<AD::InnerBackend>(&subset, batch_size, device) {
        let ids: Vec<u64> = batch.indices.iter().map(|i| (start + *i) as u64).collect();
        let evaluation = evaluator.evaluate::<AD, _>(&f, &batch.images, &batch.targets, &ids);
        on_batch(&evaluation);
        match merged.as_mut() {
            Some(m) => m.merge(evaluation.report),
            None => merged = Some(evaluation.report),
        }
    }
    merged
}
