//! advsoup-data: datasets, batching, augmentation and corruption suites for advsoup.
//!
//! What it is:
//! - readers for IDX (MNIST, Fashion-MNIST; gzip or raw), CIFAR-10/100 binary records and
//!   ImageFolder trees (ImageNet layout with a class index file, ImageNet-C's
//!   `<corruption>/<severity>/<class>/...`, and 200-class subsets such as ImageNet-R/-A mapped to
//!   the 1000 class indices so logits can be masked) — [`idx`], [`cifar`], [`folder`];
//! - [`ImageDataset`], an in-memory `u8` dataset implementing burn's `Dataset`, with train /
//!   held-out / test [`Splits`] (the held-out slice is a fixed, seeded slice of train);
//! - [`ImageBatcher`] (a burn `Batcher`) and [`ImageLoader`], a deterministic multi-worker
//!   loader that also implements burn's `DataLoader`;
//! - seeded augmentation ([`AugmentConfig`]: crop with padding, flip, mixup, CutMix, label
//!   smoothing) and corruptions after Hendrycks & Dietterich 2019 ([`corrupt`]);
//! - [`fetch()`] and [`info()`]: download or unpack the datasets into a cache and verify the
//!   SHA-256 of every decompressed file.
//!
//! What it must not do:
//! - normalize: batches stay in [0, 1]; the model normalizes;
//! - use hidden randomness: every random choice derives from an explicit seed and the
//!   sample's index (and epoch), so results do not depend on threads or worker counts;
//! - touch the network in tests (the fetch tests serve generated files on 127.0.0.1);
//! - leave half-written files in the cache (advsoup-io's synced temp file + rename).
//!
//! Test suites get their fixtures from `advsoup_data::testing` (feature `test-support`): the synthetic
//! Fashion-MNIST IDX cache and a tiny in-memory dataset.
//!
//! # Example
//! ```
//! use advsoup_data::{AugmentConfig, ImageBatcher, ImageDataset, ImageLoader, LoaderConfig};
//! use burn::backend::Flex;
//!
//! // 8 one-channel 4x4 images with labels 0..4 (in practice: `load_splits(..)`).
//! let data = ImageDataset::new([1, 4, 4], vec![128; 8 * 16], (0..8).map(|i| i % 4).collect(), 4)?;
//! let (train, held_out) = data.split_held_out(2, 0)?;
//! assert_eq!(held_out.num_samples(), 2);
//! let batcher = ImageBatcher::new(AugmentConfig::digits(), 4, 42);
//! let config = LoaderConfig { batch_size: 3, num_workers: 2, ..LoaderConfig::default() };
//! let loader = ImageLoader::<Flex>::new(train, batcher, config, Default::default());
//! for batch in loader.epoch(0) {
//!     assert_eq!(batch.images.dims()[1..], [1, 4, 4]);
//! }
//! # Ok::<(), advsoup_data::DataError>(())
//! ```
#![warn(missing_docs)]

/// The burn this crate is built on (`=0.21.0`), so users get the matching version and types.
pub use burn;

pub mod augment;
pub mod batcher;
pub mod cifar;
pub mod corrupt;
pub mod dataset;
pub mod error;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod rng;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use augment::AugmentConfig;
pub use batcher::{
    ImageBatch, ImageBatcher, ImageLoader, LoaderConfig, TryDataset, TryEpochIter, bench_loader,
};

pub use corrupt::{Corruption, load_corrupted, materialize_corrupted};
pub use dataset::{ImageDataset, ImageItem, Split, Splits};
pub use error::{DataError, Result};
pub use fetch::{
    DatasetInfo, DatasetKind, DatasetSpec, FetchOptions, FetchReport, SplitInfo, fetch, fetch_with,
    info, load_split, load_splits, load_train_test, resolve_data_dir,
};
