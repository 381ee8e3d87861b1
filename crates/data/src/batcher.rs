//! The burn [`Batcher`] and a deterministic multi-worker epoch loader.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use advsoup_io::prefetch::OrderedPool;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::Dataset;
use burn::prelude::{Backend, Int, Tensor, TensorData};

use crate::augment::{AugmentConfig, Mix, augment_sample, mix_batch, soft_targets};
use crate::dataset::{ImageDataset, ImageItem};
use crate::error::DataError;
use crate::rng::Rng;

/// A batch ready for a model.
#[derive(Clone, Debug)]
pub struct ImageBatch<B: Backend> {
    /// `[N, C, H, W]`, f32 in [0, 1] (not normalized).
    pub images: Tensor<B, 4>,
    /// `[N]` class indices (of the unmixed sample).
    pub targets: Tensor<B, 1, Int>,
    /// `[N, K]` soft targets when the batcher's augmentation mixes or smooths labels.
    pub soft_targets: Option<Tensor<B, 2>>,
    /// The dataset index of every sample, in batch order.
    pub indices: Vec<usize>,
}

/// Turns [`ImageItem`]s into an [`ImageBatch`], applying seeded augmentation.
///
/// Sample `i` of epoch `e` is augmented with `Rng(seed, e, i)`, the batch mix with
/// `Rng(seed, e, first index, len)`, so a batch depends only on its items, never on threads.
#[derive(Clone, Debug)]
pub struct ImageBatcher {
    augment: AugmentConfig,
    num_classes: usize,
    seed: u64,
}

impl ImageBatcher {
    /// A batcher for `num_classes` classes; `augment` may be [`AugmentConfig::none`].
    pub fn new(augment: AugmentConfig, num_classes: usize, seed: u64) -> Self {
        Self {
            augment,
            num_classes,
            seed,
        }
    }

    /// An evaluation batcher (no augmentation, hard targets only).
    pub fn eval(num_classes: usize) -> Self {
        Self::new(AugmentConfig::none(), num_classes, 0)
    }

    /// The augmentation settings.
    pub fn augment(&self) -> &AugmentConfig {
        &self.augment
    }

    /// The host-side part of batching: pixels `[N, C, H, W]` in [0, 1], labels, soft targets.
    /// Cheap to drive from a benchmark. Panics on an empty batch or mixed shapes (a contract).
    pub fn prepare(&self, items: &[ImageItem]) -> PreparedBatch {
        assert!(!items.is_empty(), "ImageBatcher: empty batch");
        self.prepare_keyed(items, items[0].index as u64, items.len() as u64)
    }

    /// [`ImageBatcher::prepare`] for a shard of a larger batch: the batch-level choices (mix or
    /// not, λ, the CutMix box) come from `Rng(seed, epoch, first_index, batch_len)` of the WHOLE
    /// batch, so every shard of it makes the same choice. Mixing pairs item `i` with item
    /// `len - 1 - i` of `items`, so a shard must hold mirrored pairs of the whole batch.
    pub fn prepare_keyed(
        &self,
        items: &[ImageItem],
        first_index: u64,
        batch_len: u64,
    ) -> PreparedBatch {
        assert!(!items.is_empty(), "ImageBatcher: empty batch");
        let in_shape = items[0].shape;
        let shape = self.augment.output_shape(in_shape);
        let per: usize = shape.iter().product();
        let n = items.len();
        let mut pixels = Vec::with_capacity(n * per);
        let augment_samples = self.augment.augments_samples();
        for it in items {
            assert_eq!(
                it.shape, in_shape,
                "ImageBatcher: mixed image shapes in one batch"
            );
            let img = it.image.iter().map(|&p| p as f32 / 255.0);
            if augment_samples {
                let mut rng = Rng::from_keys(&[self.seed, it.epoch, it.index as u64]);
                let (img, _) = augment_sample(img.collect(), in_shape, &self.augment, &mut rng);
                pixels.extend_from_slice(&img);
            } else {
                pixels.extend(img);
            }
        }
        let labels: Vec<usize> = items.iter().map(|it| it.label).collect();
        let mix = if self.augment.mixup_alpha > 0.0 || self.augment.cutmix_alpha > 0.0 {
            let mut rng =
                Rng::from_keys(&[self.seed, items[0].epoch, 0xBA7C, first_index, batch_len]);
            mix_batch(&mut pixels, n, shape, &self.augment, &mut rng)
        } else {
            Mix::None
        };
        let soft = self.augment.soft_targets().then(|| {
            soft_targets(
                &labels,
                self.num_classes,
                &mix,
                self.augment.label_smoothing,
            )
        });
        PreparedBatch {
            shape: [n, shape[0], shape[1], shape[2]],
            pixels,
            labels,
            soft,
            mix,
            indices: items.iter().map(|i| i.index).collect(),
        }
    }
}

/// Host-side batch produced by [`ImageBatcher::prepare`].
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedBatch {
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// Pixels in [0, 1].
    pub pixels: Vec<f32>,
    /// Labels.
    pub labels: Vec<usize>,
    /// Soft targets `[N, K]`, row-major.
    pub soft: Option<Vec<f32>>,
    /// The mix applied.
    pub mix: Mix,
    /// Dataset indices.
    pub indices: Vec<usize>,
}

impl PreparedBatch {
    /// Move to tensors on `device`.
    pub fn into_batch<B: Backend>(self, device: &B::Device) -> ImageBatch<B> {
        let n = self.shape[0];
        let images = Tensor::<B, 4>::from_data(TensorData::new(self.pixels, self.shape), device);
        let labels: Vec<i64> = self.labels.iter().map(|&l| l as i64).collect();
        let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [n]), device);
        let soft_targets = self.soft.map(|s| {
            let k = s.len() / n;
            Tensor::<B, 2>::from_data(TensorData::new(s, [n, k]), device)
        });
        ImageBatch {
            images,
            targets,
            soft_targets,
            indices: self.indices,
        }
    }
}

impl<B: Backend> Batcher<B, ImageItem, ImageBatch<B>> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &B::Device) -> ImageBatch<B> {
        self.prepare(&items).into_batch(device)
    }
}

/// Loader settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Worker threads preparing batches (0 = on the caller's thread).
    pub num_workers: usize,
    /// Shuffle with `Rng(seed, epoch)`; otherwise dataset order.
    pub shuffle: bool,
    /// Drop the last incomplete batch.
    pub drop_last: bool,
    /// Seed of the shuffle order.
    pub seed: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            num_workers: 2,
            shuffle: true,
            drop_last: false,
            seed: 0,
        }
    }
}

/// A [`Dataset`] of [`ImageItem`]s that can report why a sample cannot be read: what an
/// [`ImageLoader`] serves from.
pub trait TryDataset: Dataset<ImageItem> {
    /// Sample `i`, or why it cannot be read (out of range, a damaged streamed file).
    ///
    /// # Errors
    /// As [`ImageDataset::try_item`].
    fn try_item(&self, i: usize) -> Result<ImageItem, DataError>;
}

impl TryDataset for ImageDataset {
    fn try_item(&self, i: usize) -> Result<ImageItem, DataError> {
        ImageDataset::try_item(self, i)
    }
}

impl<D: TryDataset> TryDataset for Arc<D> {
    fn try_item(&self, i: usize) -> Result<ImageItem, DataError> {
        D::try_item(self, i)
    }
}

/// A deterministic multi-worker loader: for a given `(seed, epoch)` the sequence of batches is
/// identical whatever the number of workers.
///
/// Worker `w` prepares batches `w, w + W, w + 2W, ...` and the iterator reads them round-robin,
/// so batches come out in order without a reorder buffer (an [`OrderedPool`]). It also
/// implements burn's
/// [`DataLoader`] (each call of `iter()` serves the next epoch, starting at 0) so it can be
/// handed to burn-train.
pub struct ImageLoader<B: Backend> {
    dataset: Arc<dyn TryDataset>,
    batcher: Arc<ImageBatcher>,
    config: LoaderConfig,
    device: B::Device,
    next_epoch: Arc<AtomicU64>,
    range: (usize, usize),
}

impl<B: Backend> std::fmt::Debug for ImageLoader<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageLoader")
            .field("config", &self.config)
            .field("range", &self.range)
            .finish()
    }
}

impl<B: Backend> Clone for ImageLoader<B> {
    fn clone(&self) -> Self {
        Self {
            dataset: self.dataset.clone(),
            batcher: self.batcher.clone(),
            config: self.config.clone(),
            device: self.device.clone(),
            next_epoch: self.next_epoch.clone(),
            range: self.range,
        }
    }
}

impl<B: Backend> ImageLoader<B> {
    /// A loader over `dataset`.
    pub fn new(
        dataset: impl TryDataset + 'static,
        batcher: ImageBatcher,
        config: LoaderConfig,
        device: B::Device,
    ) -> Self {
        assert!(
            config.batch_size > 0,
            "LoaderConfig::batch_size must be > 0"
        );
        let len = dataset.len();
        Self {
            dataset: Arc::new(dataset),
            batcher: Arc::new(batcher),
            config,
            device,
            next_epoch: Arc::new(AtomicU64::new(0)),
            range: (0, len),
        }
    }

    /// Sample indices in the order served in `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (self.range.0..self.range.1).collect();
        if self.config.shuffle {
            Rng::from_keys(&[self.config.seed, epoch, 0x5_4FF1E]).shuffle(&mut idx);
        }
        idx
    }

    /// Number of samples served per epoch.
    pub fn num_samples(&self) -> usize {
        let n = self.range.1 - self.range.0;
        if self.config.drop_last {
            n / self.config.batch_size * self.config.batch_size
        } else {
            n
        }
    }

    /// Number of batches per epoch.
    pub fn num_batches(&self) -> usize {
        self.num_samples().div_ceil(self.config.batch_size)
    }

    /// Set the epoch the next `DataLoader::iter()` call serves (e.g. when resuming).
    pub fn set_next_epoch(&self, epoch: u64) {
        self.next_epoch.store(epoch, Ordering::SeqCst);
    }

    /// The batches of `epoch`, in order.
    ///
    /// # Panics
    /// On the consumer's thread, with the error's message, when a sample cannot be read (a
    /// damaged streamed image); use [`ImageLoader::try_epoch`] to get the error instead.
    pub fn epoch(&self, epoch: u64) -> EpochIter<B> {
        EpochIter {
            inner: self.try_epoch(epoch),
        }
    }

    /// The batches of `epoch`, in order, each `Err` when one of its samples cannot be read (a
    /// streamed image that fails to decode or to be read, named). Workers never panic on data:
    /// the error travels back to the caller's thread, and the iterator ends after it.
    pub fn try_epoch(&self, epoch: u64) -> TryEpochIter<B> {
        let order = self.order(epoch);
        let order = Arc::new(order[..self.num_samples()].to_vec());
        let bs = self.config.batch_size;
        let num_batches = self.num_batches();
        let total = order.len();
        let make = {
            let dataset = self.dataset.clone();
            let batcher = self.batcher.clone();
            let order = order.clone();
            move |b: usize| -> Result<PreparedBatch, DataError> {
                let items = order[b * bs..((b + 1) * bs).min(order.len())]
                    .iter()
                    .map(|&i| {
                        let mut it = dataset.try_item(i)?;
                        it.epoch = epoch;
                        Ok(it)
                    })
                    .collect::<Result<Vec<ImageItem>, DataError>>()?;
                Ok(batcher.prepare(&items))
            }
        };
        let pool = OrderedPool::spawn(
            "advsoup-data",
            num_batches,
            self.config.num_workers,
            PREFETCH_PER_WORKER,
            make,
        )
        .unwrap_or_else(|e| panic!("cannot spawn data worker: {e}"));
        TryEpochIter {
            pool: Some(pool),
            items_done: 0,
            total,
            bs,
            device: self.device.clone(),
        }
    }
}

/// Batches each worker prepares ahead of the consumer.
const PREFETCH_PER_WORKER: usize = 2;

/// Iterator over one epoch's batches, or the error that stopped it (see
/// [`ImageLoader::try_epoch`]).
pub struct TryEpochIter<B: Backend> {
    /// `None` once an error was returned (the workers are then stopped).
    pool: Option<OrderedPool<Result<PreparedBatch, DataError>>>,
    items_done: usize,
    total: usize,
    bs: usize,
    device: B::Device,
}

impl<B: Backend> Iterator for TryEpochIter<B> {
    type Item = Result<ImageBatch<B>, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let pool = self.pool.as_mut()?;
        let b = OrderedPool::position(pool);
        let prepared = pool
            .next()?
            .unwrap_or_else(|_| panic!("data worker for batch {b} died (it panicked; see above)"));
        match prepared {
            Ok(prepared) => {
                self.items_done = (self.items_done + self.bs).min(self.total);
                Some(Ok(prepared.into_batch(&self.device)))
            }
            Err(e) => {
                self.pool = None;
                Some(Err(e))
            }
        }
    }
}

/// Iterator over one epoch's batches (see [`ImageLoader::epoch`]).
pub struct EpochIter<B: Backend> {
    inner: TryEpochIter<B>,
}

impl<B: Backend> Iterator for EpochIter<B> {
    type Item = ImageBatch<B>;

    fn next(&mut self) -> Option<ImageBatch<B>> {
        self.inner
            .next()
            .map(|batch| batch.unwrap_or_else(|e| panic!("{e}")))
    }
}

impl<B: Backend> DataLoaderIterator<ImageBatch<B>> for EpochIter<B> {
    fn progress(&self) -> Progress {
        Progress::new(self.inner.items_done, self.inner.total)
    }
}

impl<B: Backend> DataLoader<B, ImageBatch<B>> for ImageLoader<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<ImageBatch<B>> + 'a> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        Box::new(self.epoch(epoch))
    }

    fn num_items(&self) -> usize {
        self.num_samples()
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, ImageBatch<B>>> {
        Arc::new(Self {
            device: device.clone(),
            ..self.clone()
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, ImageBatch<B>>> {
        let s = (self.range.0 + start).min(self.range.1);
        let e = (self.range.0 + end).min(self.range.1).max(s);
        Arc::new(Self {
            range: (s, e),
            next_epoch: Arc::new(AtomicU64::new(self.next_epoch.load(Ordering::SeqCst))),
            ..self.clone()
        })
    }
}

/// Measure the loader's throughput (images/s) over `epochs` epochs, tensors included.
pub fn bench_loader<B: Backend>(loader: &ImageLoader<B>, epochs: u64) -> f64 {
    let start = std::time::Instant::now();
    let mut n = 0usize;
    for e in 0..epochs {
        for b in loader.epoch(e) {
            n += b.indices.len();
        }
    }
    n as f64 / start.elapsed().as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::tests::toy;
    use burn::backend::Flex;

    type TestBackend = Flex;

    fn loader(workers: usize, aug: AugmentConfig) -> ImageLoader<TestBackend> {
        let d = toy(10, [1, 6, 6], 3, 2);
        let cfg = LoaderConfig {
            batch_size: 4,
            num_workers: workers,
            shuffle: true,
            drop_last: false,
            seed: 11,
        };
        ImageLoader::new(d, ImageBatcher::new(aug, 3, 5), cfg, Default::default())
    }

    fn host(b: &ImageBatch<TestBackend>) -> (Vec<f32>, Vec<i64>, Option<Vec<f32>>) {
        (
            b.images.to_data().to_vec::<f32>().expect("f32"),
            b.targets
                .to_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .expect("i64"),
            b.soft_targets
                .as_ref()
                .map(|s| s.to_data().to_vec::<f32>().expect("f32")),
        )
    }

    #[test]
    fn shapes_range_and_targets() {
        let aug = AugmentConfig::digits()
            .with_mixing(0.2, 1.0)
            .with_label_smoothing(0.1);
        let l = loader(0, aug);
        let batches: Vec<_> = l.epoch(0).collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].images.dims(), [4, 1, 6, 6]);
        assert_eq!(batches[2].images.dims(), [2, 1, 6, 6]);
        assert_eq!(
            batches[0].soft_targets.as_ref().map(|s| s.dims()),
            Some([4, 3])
        );
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        for b in &batches {
            let (px, t, _) = host(b);
            assert!(px.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(t.iter().all(|&t| (0..3).contains(&t)));
        }
        // No augmentation: the pixels are the dataset's bytes / 255 and there are no soft targets.
        let plain = loader(0, AugmentConfig::none());
        let b = plain.epoch(0).next().expect("batch");
        let d = toy(10, [1, 6, 6], 3, 2);
        let (px, t, s) = host(&b);
        assert!(s.is_none());
        assert_eq!(
            px[..36],
            d.image(b.indices[0])
                .iter()
                .map(|&p| p as f32 / 255.0)
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(t[0] as u32, d.labels()[b.indices[0]]);
    }

    #[test]
    fn deterministic_for_seed_and_epoch_across_workers() {
        let aug = AugmentConfig::cifar().with_mixing(0.4, 1.0);
        let run = |workers: usize, epoch: u64| -> Vec<_> {
            loader(workers, aug.clone())
                .epoch(epoch)
                .map(|b| host(&b))
                .collect()
        };
        let a = run(0, 1);
        assert_eq!(a, run(3, 1));
        assert_eq!(a, run(2, 1));
        assert_ne!(a, run(2, 2));
        // burn's DataLoader trait serves consecutive epochs.
        let l = loader(2, aug.clone());
        let e0: Vec<_> = DataLoader::iter(&l).map(|b| host(&b)).collect();
        let e1: Vec<_> = DataLoader::iter(&l).map(|b| host(&b)).collect();
        assert_eq!(e0, run(0, 0));
        assert_eq!(e1, a);
        assert_eq!(l.slice(0, 5).num_items(), 5);
    }
}
