//! The evaluation functions callers used before [`EvalJob`] existed, re-expressed over it with
//! the same results. Kept until every caller (train's run loop, the cli's soup commands) builds
//! an [`EvalJob`]; new code should not use them.

use std::ops::Range;

use advsoup_adapters::{AdaptedVit, Mode};
use advsoup_attacks::{EvalReport, Evaluator};
use advsoup_data::ImageDataset;
use burn::tensor::backend::AutodiffBackend;

use crate::EvalJob;

/// Samples of `data[range]` that stay correct under `evaluator`:
/// `EvalJob::new(evaluator, mode).batch_size(batch_size).range(range).count(..)`.
pub fn robust_count<AD: AutodiffBackend>(
    model: &AdaptedVit<AD::InnerBackend>,
    mode: Mode,
    evaluator: &Evaluator,
    data: &ImageDataset,
    range: Range<usize>,
    batch_size: usize,
    device: &AD::Device,
) -> usize {
    EvalJob::new(evaluator.clone(), mode)
        .batch_size(batch_size)
        .range(range)
        .count::<AD>(model, data, device)
}

/// Robust accuracy of `model` in `mode` on the first `n` samples of `data`:
/// `EvalJob::new(evaluator, mode).batch_size(batch_size).first(n).run(..)`.
pub fn robust_eval<AD: AutodiffBackend>(
    model: &AdaptedVit<AD::InnerBackend>,
    mode: Mode,
    evaluator: &Evaluator,
    data: &ImageDataset,
    n: usize,
    batch_size: usize,
    device: &AD::Device,
) -> Option<EvalReport> {
    EvalJob::new(evaluator.clone(), mode)
        .batch_size(batch_size)
        .first(n)
        .run::<AD>(model, data, device)
}
