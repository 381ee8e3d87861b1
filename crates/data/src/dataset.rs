//! The image dataset (in memory, or streamed from image files), its items, and train /
//! held-out / test splits.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use burn::data::dataset::Dataset;

use crate::folder::{FolderOptions, decode_image};

use crate::error::{DataError, Result};
use crate::rng::Rng;

/// One sample: an image stored as `u8` in [0, 255], channel-major `[C, H, W]`, and its label.
///
/// `index` is the sample's position in the dataset it came from and `epoch` the epoch a loader
/// is serving it for; the batcher seeds augmentation from `(seed, epoch, index)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageItem {
    /// Pixels, `C * H * W` bytes in `[C, H, W]` order.
    pub image: Vec<u8>,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Class index.
    pub label: usize,
    /// Position in the source dataset.
    pub index: usize,
    /// The epoch this item is served for (0 outside a loader).
    pub epoch: u64,
}

/// A labelled image dataset of `u8` pixels: held in memory, or streamed (one image file per
/// sample, decoded on every access, so an ImageNet-sized train set needs no RAM for pixels).
///
/// Implements burn's [`Dataset`] trait with [`ImageItem`]s. Pixels stay raw bytes; the batcher
/// turns them into `f32` in [0, 1] (never normalized).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageDataset {
    shape: [usize; 3],
    storage: Storage,
    labels: Vec<u32>,
    num_classes: usize,
    class_names: Vec<String>,
}

/// Where the pixels of an [`ImageDataset`] are.
#[derive(Clone, Debug, PartialEq)]
enum Storage {
    /// `[N, C, H, W]` bytes.
    Memory(Vec<u8>),
    /// One file per sample, decoded with these options on every access.
    Files {
        paths: Arc<Vec<PathBuf>>,
        options: FolderOptions,
    },
}

impl ImageDataset {
    /// Build a dataset from contiguous `[N, C, H, W]` pixels and labels.
    ///
    /// # Errors
    /// When the pixel buffer does not hold `labels.len()` images of `shape`, or a label is not
    /// below `num_classes`.
    pub fn new(
        shape: [usize; 3],
        pixels: Vec<u8>,
        labels: Vec<u32>,
        num_classes: usize,
    ) -> Result<Self> {
        // Checked: a header can declare sizes whose product overflows (with zero images, the
        // pixel buffer is empty whatever the shape).
        let holds = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&per| per > 0)
            .and_then(|per| per.checked_mul(labels.len()))
            .is_some_and(|total| total == pixels.len());
        if !holds {
            return Err(DataError::Invalid(format!(
                "pixel buffer of {} bytes does not hold {} images of shape {shape:?}",
                pixels.len(),
                labels.len()
            )));
        }
        Self::with_storage(shape, Storage::Memory(pixels), labels, num_classes)
    }

    /// A streamed dataset: sample `i` is `paths[i]` decoded with `options` whenever it is read,
    /// and must decode to `shape` (checked on every read).
    ///
    /// # Errors
    /// When `paths` and `labels` differ in length, or a label is not below `num_classes`.
    pub fn from_files(
        shape: [usize; 3],
        paths: Vec<PathBuf>,
        options: FolderOptions,
        labels: Vec<u32>,
        num_classes: usize,
    ) -> Result<Self> {
        if paths.len() != labels.len() {
            return Err(DataError::Invalid(format!(
                "{} image files but {} labels",
                paths.len(),
                labels.len()
            )));
        }
        if shape.contains(&0) {
            return Err(DataError::Invalid(format!(
                "image shape {shape:?} has an empty dimension"
            )));
        }
        let storage = Storage::Files {
            paths: Arc::new(paths),
            options,
        };
        Self::with_storage(shape, storage, labels, num_classes)
    }

    /// The dataset, once every label is checked to be below `num_classes`.
    fn with_storage(
        shape: [usize; 3],
        storage: Storage,
        labels: Vec<u32>,
        num_classes: usize,
    ) -> Result<Self> {
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= num_classes)
        {
            return Err(DataError::Invalid(format!(
                "label {l} of entry {i} out of range: expected a class index below {num_classes}"
            )));
        }
        Ok(Self {
            shape,
            storage,
            labels,
            num_classes,
            class_names: (0..num_classes).map(|c| c.to_string()).collect(),
        })
    }

    /// Whether images are decoded from files on every read ([`ImageDataset::from_files`]).
    pub fn is_streamed(&self) -> bool {
        matches!(self.storage, Storage::Files { .. })
    }

    /// Attach human-readable class names (must be `num_classes` long, else ignored with a warning).
    pub fn with_class_names(mut self, names: Vec<String>) -> Self {
        if names.len() == self.num_classes {
            self.class_names = names;
        } else {
            tracing::warn!(
                got = names.len(),
                expected = self.num_classes,
                "class name list has the wrong length; keeping numeric names"
            );
        }
        self
    }

    /// `[C, H, W]` of every image.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Number of classes (labels are below this).
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Class names, `num_classes` long.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of samples.
    pub fn num_samples(&self) -> usize {
        self.labels.len()
    }

    /// All labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// All pixels, `[N, C, H, W]`.
    ///
    /// # Panics
    /// On a streamed dataset, which has no pixel buffer (read it with [`ImageDataset::image`]
    /// or [`Dataset::get`]).
    pub fn pixels(&self) -> &[u8] {
        match &self.storage {
            Storage::Memory(p) => p,
            Storage::Files { .. } => panic!(
                "a streamed image dataset has no pixel buffer: read it with image(i) or get(i)"
            ),
        }
    }

    /// The pixels of sample `i`: borrowed in memory, decoded from its file when streamed.
    ///
    /// # Errors
    /// A streamed file that cannot be read or decoded, or decodes to another shape, named.
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn try_image(&self, i: usize) -> Result<Cow<'_, [u8]>> {
        match &self.storage {
            Storage::Memory(p) => {
                let per = self.image_len();
                Ok(Cow::Borrowed(&p[i * per..(i + 1) * per]))
            }
            Storage::Files { paths, options } => {
                let path = &paths[i];
                let (px, shape) = decode_image(path, options)?;
                if shape != self.shape {
                    return Err(DataError::ShapeMismatch {
                        path: path.clone(),
                        expected: self.shape,
                        found: shape,
                    });
                }
                Ok(Cow::Owned(px))
            }
        }
    }

    /// The pixels of sample `i`.
    ///
    /// # Panics
    /// When `i` is out of range, or (streamed) its file fails as in
    /// [`ImageDataset::try_image`], with that message.
    pub fn image(&self, i: usize) -> Cow<'_, [u8]> {
        self.try_image(i).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sample `i` as an [`ImageItem`] (epoch 0): the fallible [`Dataset::get`], for callers
    /// that must report a damaged streamed file instead of panicking.
    ///
    /// # Errors
    /// `i` out of range, or (streamed) its file fails as in [`ImageDataset::try_image`].
    pub fn try_item(&self, i: usize) -> Result<ImageItem> {
        let Some(&label) = self.labels.get(i) else {
            return Err(DataError::Invalid(format!(
                "sample index {i} out of range: the dataset has {} samples",
                self.labels.len()
            )));
        };
        Ok(ImageItem {
            image: self.try_image(i)?.into_owned(),
            shape: self.shape,
            label: label as usize,
            index: i,
            epoch: 0,
        })
    }

    /// Bytes per image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of samples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// A new dataset with the samples at `indices` (in that order); a streamed dataset stays
    /// streamed (nothing is decoded).
    pub fn subset(&self, indices: &[usize]) -> Self {
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        let storage = match &self.storage {
            Storage::Memory(_) => {
                let per = self.image_len();
                let mut pixels = Vec::with_capacity(indices.len() * per);
                for &i in indices {
                    pixels.extend_from_slice(&self.image(i));
                }
                Storage::Memory(pixels)
            }
            Storage::Files { paths, options } => Storage::Files {
                paths: Arc::new(indices.iter().map(|&i| paths[i].clone()).collect()),
                options: options.clone(),
            },
        };
        Self {
            shape: self.shape,
            storage,
            labels,
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }

    /// Split off a fixed, seeded held-out slice of `held_out` samples: returns
    /// `(rest, held_out)`. Both keep the original relative order. The same `(seed, held_out)`
    /// always selects the same samples.
    ///
    /// # Errors
    /// When `held_out` exceeds the number of samples.
    pub fn split_held_out(&self, held_out: usize, seed: u64) -> Result<(Self, Self)> {
        let n = self.num_samples();
        if held_out > n {
            return Err(DataError::Invalid(format!(
                "held-out size {held_out} exceeds the {n} training samples"
            )));
        }
        let mut order: Vec<usize> = (0..n).collect();
        Rng::from_keys(&[seed, 0x4845_4C44]).shuffle(&mut order);
        let mut is_held = vec![false; n];
        for &i in &order[..held_out] {
            is_held[i] = true;
        }
        let rest: Vec<usize> = (0..n).filter(|&i| !is_held[i]).collect();
        let held: Vec<usize> = (0..n).filter(|&i| is_held[i]).collect();
        Ok((self.subset(&rest), self.subset(&held)))
    }

    /// Concatenate datasets with the same shape and classes (all in memory, or all streamed
    /// with the same decoding options).
    ///
    /// # Errors
    /// When shapes or class counts differ, or storages do not match.
    pub fn concat(parts: Vec<Self>) -> Result<Self> {
        let mut iter = parts.into_iter();
        let Some(mut first) = iter.next() else {
            return Err(DataError::Invalid(
                "cannot concatenate zero datasets".into(),
            ));
        };
        for p in iter {
            if p.shape != first.shape || p.num_classes != first.num_classes {
                return Err(DataError::Invalid(format!(
                    "cannot concatenate datasets of shape {:?}/{} classes and {:?}/{} classes",
                    first.shape, first.num_classes, p.shape, p.num_classes
                )));
            }
            match (&mut first.storage, p.storage) {
                (Storage::Memory(a), Storage::Memory(b)) => a.extend_from_slice(&b),
                (
                    Storage::Files { paths, options },
                    Storage::Files {
                        paths: more,
                        options: o,
                    },
                ) if *options == o => Arc::make_mut(paths).extend(more.iter().cloned()),
                _ => {
                    return Err(DataError::Invalid(
                        "cannot concatenate an in-memory and a streamed dataset, or streamed \
                         datasets decoded differently"
                            .into(),
                    ));
                }
            }
            first.labels.extend_from_slice(&p.labels);
        }
        Ok(first)
    }
}

/// The infallible view burn's loaders use: `None` past the end, and a panic naming the file
/// when a streamed image fails to decode. Code that can report errors reads samples with
/// [`ImageDataset::try_item`] (as [`crate::ImageLoader::try_epoch`] does).
impl Dataset<ImageItem> for ImageDataset {
    fn get(&self, index: usize) -> Option<ImageItem> {
        (index < self.labels.len()).then(|| self.try_item(index).unwrap_or_else(|e| panic!("{e}")))
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// Which part of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training samples minus the held-out slice.
    Train,
    /// A fixed, seeded slice of the training set, for choosing soup weights and
    /// hyper-parameters. Never choose anything on [`Split::Test`].
    HeldOut,
    /// The official test set.
    Test,
}

impl std::str::FromStr for Split {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Self::Train),
            "held-out" | "heldout" | "held_out" | "val" => Ok(Self::HeldOut),
            "test" => Ok(Self::Test),
            _ => Err(DataError::Invalid(format!(
                "unknown split {s:?}: expected train, held-out or test"
            ))),
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Train => "train",
            Self::HeldOut => "held-out",
            Self::Test => "test",
        })
    }
}

/// The three splits of a dataset.
#[derive(Clone, Debug)]
pub struct Splits {
    /// Training set without the held-out slice.
    pub train: ImageDataset,
    /// Held-out slice of the training set.
    pub held_out: ImageDataset,
    /// Test set.
    pub test: ImageDataset,
}

impl Splits {
    /// Build from the official train and test sets by holding out `held_out` training samples
    /// chosen by `seed`.
    ///
    /// # Errors
    /// When `held_out` exceeds the training set.
    pub fn from_train_test(
        train: ImageDataset,
        test: ImageDataset,
        held_out: usize,
        seed: u64,
    ) -> Result<Self> {
        let (train, held_out) = train.split_held_out(held_out, seed)?;
        Ok(Self {
            train,
            held_out,
            test,
        })
    }

    /// The split by name.
    pub fn get(&self, split: Split) -> &ImageDataset {
        match split {
            Split::Train => &self.train,
            Split::HeldOut => &self.held_out,
            Split::Test => &self.test,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny deterministic dataset: `n` images of `shape`, labels `i % classes`.
    pub(crate) fn toy(n: usize, shape: [usize; 3], classes: usize, seed: u64) -> ImageDataset {
        let per: usize = shape.iter().product();
        let mut r = Rng::from_keys(&[seed]);
        let pixels = (0..n * per).map(|_| (r.next_u64() & 0xff) as u8).collect();
        let labels = (0..n).map(|i| (i % classes) as u32).collect();
        ImageDataset::new(shape, pixels, labels, classes).expect("valid toy dataset")
    }

    #[test]
    fn held_out_split_is_seeded_disjoint_and_complete() {
        let d = toy(50, [1, 2, 2], 5, 1);
        let (a, b) = d.split_held_out(10, 3).expect("split");
        let (a2, b2) = d.split_held_out(10, 3).expect("split");
        let (_, b3) = d.split_held_out(10, 4).expect("split");
        assert_eq!((a.num_samples(), b.num_samples()), (40, 10));
        assert_eq!(b, b2);
        assert_eq!(a, a2);
        assert_ne!(b, b3);
        assert!(d.split_held_out(51, 0).is_err());
        let mut counts = a.class_counts();
        for (c, k) in b.class_counts().into_iter().enumerate() {
            counts[c] += k;
        }
        assert_eq!(counts, d.class_counts());
    }

    #[test]
    fn dataset_trait_items() {
        let d = toy(3, [1, 2, 2], 2, 1);
        let item = d.get(2).expect("item");
        assert_eq!((item.label, item.index, item.shape), (0, 2, [1, 2, 2]));
        assert_eq!(item.image, &*d.image(2));
        assert!(d.get(3).is_none());
        assert!(ImageDataset::new([1, 2, 2], vec![0; 4], vec![3], 2).is_err());
        assert!(ImageDataset::new([1, 2, 2], vec![0; 5], vec![1], 2).is_err());
        // Regression (found writing the idx fuzz target): an overflowing shape with zero images
        // used to panic in debug builds and to give a dataset with a wrapped image size in
        // release builds.
        let e = ImageDataset::new([usize::MAX, 2, 2], Vec::new(), Vec::new(), 2)
            .expect_err("overflowing shape")
            .to_string();
        assert!(e.contains("does not hold 0 images"), "{e}");
    }
}
