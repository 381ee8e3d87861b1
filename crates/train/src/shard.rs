//! One peer's share of an epoch: for every optimizer step, its `accumulation` micro-batches of the
//! global batch ([`Plan::shard_positions`]), prepared on worker threads in a fixed order.
//!
//! A sample that cannot be read (a streamed image that fails to decode) ends the epoch with the
//! data crate's error, sent back from the worker; no worker panics.
//!
//! Per-sample augmentation is keyed by (seed, epoch, sample index) and the batch-level mix by the
//! whole global batch, so a micro-batch's pixels do not depend on how the batch is split.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use advsoup_data::batcher::PreparedBatch;
use advsoup_data::{DataError, ImageBatch, ImageBatcher, ImageDataset, ImageItem};
use burn::prelude::Backend;

use crate::TrainError;
use crate::plan::Plan;

/// A micro-batch as a worker prepares it.
type Prepared = Result<PreparedBatch, DataError>;

/// Sample `i` of `data`, read fallibly (a streamed file may fail to decode).
fn item(data: &ImageDataset, i: usize, epoch: u64) -> Result<ImageItem, DataError> {
    let label = *data.labels().get(i).ok_or_else(|| {
        DataError::Invalid(format!(
            "sample index {i} is out of range ({} samples)",
            data.num_samples()
        ))
    })? as usize;
    Ok(ImageItem {
        image: data.try_image(i)?.into_owned(),
        shape: data.shape(),
        label,
        index: i,
        epoch,
    })
}

/// Iterator over the steps of one epoch for one peer; each item is the step's micro-batches.
pub(crate) struct StepIter<B: Backend> {
    make: Arc<dyn Fn(usize) -> Prepared + Send + Sync>,
    receivers: Vec<Receiver<Prepared>>,
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
    let make: Arc<dyn Fn(usize) -> Prepared + Send + Sync> = Arc::new(move |j: usize| {
        let step = skip + j / a;
        let base = step * n;
        let items = shards[j % a]
            .iter()
            .map(|&p| item(&data, order[base + p], epoch))
            .collect::<Result<Vec<ImageItem>, DataError>>()?;
        Ok(batcher.prepare_keyed(&items, order[base] as u64, n as u64))
    });
    let workers = workers.min(jobs);
    let mut receivers = Vec::with_capacity(workers);
    for w in 0..workers {
        let (tx, rx) = sync_channel::<Prepared>(2);
        let make = make.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("advsoup-shard-{w}"))
            .spawn(move || {
                for j in (w..jobs).step_by(workers) {
                    let prepared = make(j);
                    let failed = prepared.is_err();
                    if tx.send(prepared).is_err() || failed {
                        break; // iterator dropped, or the error is sent
                    }
                }
            });
        if spawned.is_err() {
            // No threads to be had: prepare every micro-batch on the loop's thread instead
            // (the workers already started stop when their receivers go).
            receivers.clear();
            break;
        }
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
    type Item = Result<Vec<ImageBatch<B>>, TrainError>;

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
                match self.receivers[j % self.receivers.len()].recv() {
                    Ok(p) => p,
                    Err(_) => {
                        self.next_job = self.jobs;
                        return Some(Err(TrainError::Worker(format!(
                            "the data worker preparing micro-batch {j} stopped"
                        ))));
                    }
                }
            };
            match prepared {
                Ok(p) => out.push(p.into_batch(&self.device)),
                Err(e) => {
                    // The epoch ends here: no later micro-batch is waited for.
                    self.next_job = self.jobs;
                    return Some(Err(TrainError::Data(e)));
                }
            }
        }
        Some(Ok(out))
    }
}
