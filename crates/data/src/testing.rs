//! Test fixtures shared by the advsoup test suites (feature `test-support`): a synthetic
//! Fashion-MNIST-shaped dataset written as the IDX files of a real cache, and a tiny in-memory
//! [`ImageDataset`]. They exist once, here, so that every suite trains on the same bytes.
//!
//! Not for production code: these functions panic when they cannot write (test support).
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! advsoup_data::testing::write_idx(dir.path(), 30, 10);
//! let splits = advsoup_data::load_splits(
//!     advsoup_data::DatasetKind::FashionMnist, dir.path(), 5, 0)?;
//! assert_eq!(splits.test.num_samples(), 10);
//! # Ok::<(), advsoup_data::DataError>(())
//! ```

use std::path::Path;

use crate::dataset::ImageDataset;

/// The IDX bytes of `n` 28x28 images whose classes are learnable: image `i` has class `i % 10`
/// and class `c` a bright horizontal band at rows `2c + 4` and `2c + 5`, over small noise that
/// `salt` shifts (train and test use different salts).
pub fn idx_images(n: usize, salt: usize) -> Vec<u8> {
    let mut v = vec![0u8, 0, 8, 3];
    for x in [n as u32, 28, 28] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    for i in 0..n {
        let class = i % 10;
        for r in 0..28 {
            for c in 0..28 {
                let band = r / 2 == class + 2;
                let noise = ((i * 31 + r * 7 + c * 13 + salt) % 17) as u8;
                v.push(if band { 200 + noise } else { noise * 3 });
            }
        }
    }
    v
}

/// The IDX bytes of `n` labels `i % 10`.
pub fn idx_labels(n: usize) -> Vec<u8> {
    let mut v = vec![0u8, 0, 8, 1];
    v.extend_from_slice(&(n as u32).to_be_bytes());
    v.extend((0..n).map(|i| (i % 10) as u8));
    v
}

/// Writes a small Fashion-MNIST-shaped cache under `<dir>/fashion-mnist` (28x28, 10 classes,
/// `train` training and `test` test images; see [`idx_images`]), as `fetch` would leave it.
///
/// # Panics
/// When the files cannot be written (test support).
pub fn write_idx(dir: &Path, train: usize, test: usize) {
    let d = dir.join("fashion-mnist");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join("train-images-idx3-ubyte"), idx_images(train, 0)).expect("write");
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(train)).expect("write");
    std::fs::write(d.join("t10k-images-idx3-ubyte"), idx_images(test, 5)).expect("write");
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), idx_labels(test)).expect("write");
}

/// `n` one-channel 28x28 images in 10 classes (label `i % 10`), in memory: class-dependent
/// brightness (`20 * label`) plus noise from a 64-bit LCG seeded by `seed`.
///
/// # Panics
/// Never for valid sizes (test support).
pub fn tiny_data(n: usize, seed: u64) -> ImageDataset {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    let labels: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let pixels: Vec<u8> = labels
        .iter()
        .flat_map(|&l| {
            let base = 20 * l;
            (0..28 * 28)
                .map(|_| (base + next() % 60).min(255) as u8)
                .collect::<Vec<_>>()
        })
        .collect();
    ImageDataset::new([1, 28, 28], pixels, labels, 10).expect("tiny dataset")
}

/// Writes an ImageFolder tree `<root>/c0/0.png, ..., <root>/c{classes-1}/{per_class-1}.png` of
/// 28x28 gray PNGs (class `c` a bright band at rows `2c + 4`), readable by
/// [`crate::folder::load_image_folder`] and [`crate::folder::stream_image_folder`].
///
/// # Panics
/// When the files cannot be written (test support).
pub fn write_png_folder(root: &Path, classes: usize, per_class: usize) {
    for c in 0..classes {
        let dir = root.join(format!("c{c}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for i in 0..per_class {
            image::GrayImage::from_fn(28, 28, |x, y| {
                let band = y as usize / 2 == c + 2;
                image::Luma([if band {
                    220
                } else {
                    ((x * 7 + y * 3) as usize % 40 + i) as u8
                }])
            })
            .save(dir.join(format!("{i}.png")))
            .expect("png");
        }
    }
}

/// Overwrites `path` with a copy of itself whose header is intact but whose pixel data is cut
/// short: it passes [`crate::folder::check_image_header`] and fails to decode.
///
/// # Panics
/// When the file cannot be read or written (test support).
pub fn damage_png_body(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read png");
    bytes.truncate(bytes.len().saturating_sub(20).max(40));
    std::fs::write(path, bytes).expect("write png");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatasetKind, load_train_test};

    /// The written cache loads as Fashion-MNIST, with the band of each class where the docs
    /// say, and the bytes stay those every suite was written against (a change here would move
    /// the numbers the end-to-end tests assert).
    #[test]
    fn written_cache_loads_and_its_bytes_are_pinned() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_idx(dir.path(), 24, 8);
        let (train, test) = load_train_test(DatasetKind::FashionMnist, dir.path()).expect("load");
        assert_eq!((train.num_samples(), test.num_samples()), (24, 8));
        assert_eq!(train.shape(), [1, 28, 28]);
        assert_eq!(train.class_counts(), [3, 3, 3, 3, 2, 2, 2, 2, 2, 2]);
        let img = train.image(3);
        assert!(img[(2 * 3 + 4) * 28] >= 200 && img[(2 * 3 + 6) * 28] < 200);
        // SHA-256 of the bytes tests/src/lib.rs wrote before this module existed (the e2e
        // suites' 84 training / 30 test images).
        assert_eq!(
            advsoup_io::sha256_hex(&idx_images(84, 0)),
            "570b398893536577f23d68ceebf21b97248421e05fc1e7e9deec3431425a03b5"
        );
        assert_eq!(
            advsoup_io::sha256_hex(&idx_images(30, 5)),
            "38d5ac04ece805775f901c2ebcee4f255bea7e206212602d7738bbc43d078ccc"
        );
        assert_eq!(idx_labels(3), [0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2]);
    }

    #[test]
    fn tiny_data_is_seeded() {
        let a = tiny_data(12, 4);
        assert_eq!(a, tiny_data(12, 4));
        assert_ne!(a, tiny_data(12, 5));
        assert_eq!(a.shape(), [1, 28, 28]);
        assert_eq!(a.labels()[11], 1);
        // The pixels of cmd_soup's `tiny_data`, which this replaces.
        assert_eq!(
            advsoup_io::sha256_hex(a.pixels()),
            "be5e5e6b966850701fa377a3c402acfaa09adb7c8c54a902af003b43ebbe86b8"
        );
    }
}
