//! One peer's share of an epoch: for every optimizer step, its `accumulation` micro-batches of the
//! global batch ([`Plan::shard_positions`]), prepared on worker threads in a fixed order.
//!
//! Per-sample augmentation is keyed by (seed, epoch, sample index) and the batch-level mix by the
//! whole global batch, so a micro-batch's pixels do not depend on how the batch is split.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use advsoup_data::batcher::PreparedBatch;
use advsoup_data::{ImageBatch, ImageBatcher, ImageDataset, ImageItem};
use burn::data::dataset::Dataset;
use burn::prelude::Backend;

use crate::plan::Plan;

/// Iterator over the steps of one epoch for one peer; each item is the step's micro-batches.
pub(crate) struct StepIter<B: Backend> {
    make: Arc<dyn Fn(usize) -> PreparedBatch + Send + Sync>,
    receivers: Vec<Receiver<PreparedBatch>>,
    next_job: usize,
    jobs: usize,
    accumulation: usize,
    device: B::Device,
}

/// The steps `skip..steps_per_epoch` of `epoch` for peer `rank`, in the sample `order` of the
/// epoch (the loader's shuffled order).
#[allow(clippy::too_many_arguments)]
pub(crate) fn epoch_steps<B: Backend>(
    data: Arc<ImageDataset>,
    batcher: Arc<ImageBatcher>,
    order: Arc<Vec<usize>>,
    epoch: u64,
    plan: &Plan,
    rank: usize,
    skip: usize,
    workers: usize,
    device: B::Device,
) -> StepIter<B> {
    let a = plan.accumulation;
    let n = plan.global_batch;
    let shards: Arc<Vec<Vec<usize>>> =
        Arc::new((0..a).map(|m| plan.shard_positions(rank, m)).collect());
    let jobs = plan.steps_per_epoch.saturating_sub(skip) * a;
    let make: Arc<dyn Fn(usize) -> PreparedBatch + Send + Sync> = Arc::new(move |j: usize| {
        let step = skip + j / a;
        let base = step * n;
        let items: Vec<ImageItem> = shards[j % a]
            .iter()
            .map(|&p| {
                let i = order[base + p];
                let mut it = data
                    .get(i)
                    .unwrap_or_else(|| panic!("dataset index {i} out of range"));
                it.epoch = epoch;
                it
            })
            .collect();
        batcher.prepare_keyed(&items, order[base] as u64, n as u64)
    });
    let workers = workers.min(jobs);
    let mut receivers = Vec::with_capacity(workers);
    for w in 0..workers {
        let (tx, rx) = sync_channel::<PreparedBatch>(2);
        let make = make.clone();
        std::thread::Builder::new()
            .name(format!("advsoup-shard-{w}"))
            .spawn(move || {
                for j in (w..jobs).step_by(workers) {
                    if tx.send(make(j)).is_err() {
                        break; // iterator dropped
                    }
                }
            })
            .unwrap_or_else(|e| panic!("cannot spawn data worker: {e}"));
        receivers.push(rx);
    }
    StepIter {
        make,
        receivers,
        next_job: 0,
        jobs,
        accumulation: a,
        device,
    }
}

impl<B: Backend> Iterator for StepIter<B> {
    type Item = Vec<ImageBatch<B>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next_job >= self.jobs {
            return None;
        }
        let mut out = Vec::with_capacity(self.accumulation);
        for _ in 0..self.accumulation {
            let j = self.next_job;
            self.next_job += 1;
            let prepared = if self.receivers.is_empty() {
                (self.make)(j)
            } else {
                self.receivers[j % self.receivers.len()]
                    .recv()
                    .unwrap_or_else(|_| panic!("data worker for micro-batch {j} died (see above)"))
            };
            out.push(prepared.into_batch(&self.device));
        }
        Some(out)
    }
}
