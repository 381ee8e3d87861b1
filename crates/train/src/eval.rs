//! Evaluation of an adapted model: clean accuracy in a mode, and robust accuracy of a mode under
//! an attack ensemble from `advsoup-attacks`, batched and merged.

use advsoup_adapters::{AdaptedVit, Mode, Route};
use advsoup_attacks::{EvalReport, Evaluation, Evaluator};
use advsoup_data::{ImageBatch, ImageBatcher, ImageDataset, ImageLoader, LoaderConfig};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// The batches of `data` in order, without augmentation.
pub fn eval_batches<B: Backend>(
    data: &ImageDataset,
    batch_size: usize,
    device: &B::Device,
) -> impl Iterator<Item = ImageBatch<B>> {
    let loader = ImageLoader::<B>::new(
        data.clone(),
        ImageBatcher::eval(data.num_classes()),
        LoaderConfig {
            batch_size,
            num_workers: 0,
            shuffle: false,
            drop_last: false,
            seed: 0,
        },
        device.clone(),
    );
    loader.epoch(0)
}

/// Top-1 accuracy of `model` in `mode` on `data`.
pub fn accuracy<B: Backend>(
    model: &AdaptedVit<B>,
    data: &ImageDataset,
    route: &Route<B>,
    batch_size: usize,
    device: &B::Device,
) -> f64 {
    let mut correct = 0i64;
    let mut total = 0usize;
    for batch in eval_batches::<B>(data, batch_size, device) {
        let n = batch.targets.dims()[0];
        let pred = model.forward(batch.images, route).argmax(1).reshape([n]);
        correct += pred
            .equal(batch.targets)
            .int()
            .sum()
            .into_scalar()
            .elem::<i64>();
        total += n;
    }
    if total == 0 {
        0.0
    } else {
        correct as f64 / total as f64
    }
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
    mut on_batch: impl FnMut(&Evaluation<AD::InnerBackend>),
) -> Option<EvalReport> {
    let n = n.min(data.num_samples());
    if n == 0 {
        return None;
    }
    let subset = data.subset(&(0..n).collect::<Vec<_>>());
    let frozen = AdaptedVit::<AD>::from_inner(model.clone())
        .deterministic()
        .no_grad();
    let route = Route::mode(mode);
    let f = |x: Tensor<AD, 4>| frozen.forward(x, &route);
    let mut merged: Option<EvalReport> = None;
    for batch in eval_batches::<AD::InnerBackend>(&subset, batch_size, device) {
        let ids: Vec<u64> = batch.indices.iter().map(|i| *i as u64).collect();
        let evaluation = evaluator.evaluate::<AD, _>(&f, &batch.images, &batch.targets, &ids);
        on_batch(&evaluation);
        match merged.as_mut() {
            Some(m) => m.merge(evaluation.report),
            None => merged = Some(evaluation.report),
        }
    }
    merged
}

/// The inner (evaluation) model of a training model.
pub fn inner<AD: AutodiffBackend>(model: &AdaptedVit<AD>) -> AdaptedVit<AD::InnerBackend> {
    model.valid()
}
