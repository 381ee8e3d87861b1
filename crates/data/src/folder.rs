//! ImageFolder trees: `<root>/<class>/<image>` with a class index file, the ImageNet-C layout
//! `<root>/<corruption>/<severity>/<class>/<image>`, and class subsets (ImageNet-R / -A use 200
//! of the 1000 ImageNet classes) mapped to the full class indices so logits can be masked.
//!
//! Images are decoded with the `image` crate (PNG and JPEG), converted to 1 or 3 channels and,
//! when asked, resized (shorter side) and center-cropped; otherwise every image must have the
//! same size.

use std::path::{Path, PathBuf};

use burn::prelude::{Backend, Tensor, TensorData};

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result, io_err};

/// Class names in index order: class `i` is the `i`-th entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassIndex {
    ids: Vec<String>,
    labels: Vec<String>,
    source: PathBuf,
}

impl ClassIndex {
    /// Read an index file: one class per non-empty line, `<folder name> [human-readable name]`
    /// (e.g. ImageNet's `n01440764 tench`); line order is class order.
    ///
    /// # Errors
    /// On I/O errors, an empty file or a duplicate folder name (named with its line).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let (mut ids, mut labels) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, label) = line.split_once(char::is_whitespace).unwrap_or((line, line));
            if ids.iter().any(|x| x == id) {
                return Err(DataError::Format {
                    path: path.into(),
                    what: format!(
                        "line {}: class {id:?} listed twice: expected unique folder names",
                        i + 1
                    ),
                });
            }
            ids.push(id.to_string());
            labels.push(label.trim().to_string());
        }
        if ids.is_empty() {
            return Err(DataError::Format {
                path: path.into(),
                what: "no classes: expected one class per line".into(),
            });
        }
        Ok(Self {
            ids,
            labels,
            source: path.into(),
        })
    }

    /// The sorted sub-directory names of `root` (torchvision's ImageFolder convention).
    pub fn from_dir(root: &Path) -> Result<Self> {
        let ids = sorted_subdirs(root)?;
        if ids.is_empty() {
            return Err(DataError::Format {
                path: root.into(),
                what: "no class sub-directories".into(),
            });
        }
        Ok(Self {
            labels: ids.clone(),
            ids,
            source: root.into(),
        })
    }

    /// Folder names (ids), in class order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Human-readable names, in class order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no classes (never true for a successfully read index).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The class index of a folder name.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|x| x == id)
    }
}

/// How images are converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderOptions {
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Resize so the shorter side has this length (bilinear), before cropping.
    pub resize_shorter: Option<u32>,
    /// Center-crop to a square of this side.
    pub center_crop: Option<u32>,
}

impl Default for FolderOptions {
    fn default() -> Self {
        Self {
            channels: 3,
            resize_shorter: None,
            center_crop: None,
        }
    }
}

impl FolderOptions {
    /// ImageNet evaluation: resize to 256, center-crop 224, RGB.
    pub fn imagenet_eval() -> Self {
        Self {
            channels: 3,
            resize_shorter: Some(256),
            center_crop: Some(224),
        }
    }
}

fn sorted_subdirs(root: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .map_err(io_err(root))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| matches!(e.as_str(), "png" | "jpg" | "jpeg"))
}

/// Decode one image file to `[C, H, W]` bytes.
pub fn decode_image(path: &Path, opts: &FolderOptions) -> Result<(Vec<u8>, [usize; 3])> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let mut img = image::load_from_memory(&bytes).map_err(|e| DataError::Decode {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if let Some(s) = opts.resize_shorter {
        let (w, h) = (img.width(), img.height());
        let (nw, nh) = if w <= h {
            (s, (h as u64 * s as u64 / w.max(1) as u64) as u32)
        } else {
            ((w as u64 * s as u64 / h.max(1) as u64) as u32, s)
        };
        img = img.resize_exact(nw.max(1), nh.max(1), image::imageops::FilterType::Triangle);
    }
    if let Some(c) = opts.center_crop {
        let (w, h) = (img.width(), img.height());
        let (cw, ch) = (c.min(w), c.min(h));
        img = img.crop_imm((w - cw) / 2, (h - ch) / 2, cw, ch);
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    match opts.channels {
        1 => Ok((img.to_luma8().into_raw(), [1, h, w])),
        3 => {
            let rgb = img.to_rgb8().into_raw();
            let mut chw = vec![0u8; 3 * h * w];
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for k in 0..3 {
                    chw[k * h * w + i] = px[k];
                }
            }
            Ok((chw, [3, h, w]))
        }
        c => Err(DataError::Invalid(format!("{c} channels: expected 1 or 3"))),
    }
}

/// Load `<root>/<class>/<image>` with labels from `index`. Class folders are visited in index
/// order and files in name order; files that are not PNG/JPEG are skipped.
///
/// # Errors
/// A class folder not in the index, an image that fails to decode, an image of another size
/// (without resizing), or a tree without images — each naming the path.
pub fn load_image_folder(
    root: &Path,
    index: &ClassIndex,
    opts: &FolderOptions,
) -> Result<ImageDataset> {
    let (mut pixels, mut labels, mut shape) = (Vec::new(), Vec::new(), None::<[usize; 3]>);
    for (f, label) in list_image_folder(root, index)? {
        let (px, s) = decode_image(&f, opts)?;
        match shape {
            None => shape = Some(s),
            Some(want) if want != s => {
                return Err(DataError::ShapeMismatch {
                    path: f,
                    expected: want,
                    found: s,
                });
            }
            Some(_) => {}
        }
        pixels.extend_from_slice(&px);
        labels.push(label);
    }
    let Some(shape) = shape else {
        return Err(no_images(root));
    };
    Ok(ImageDataset::new(shape, pixels, labels, index.len())?
        .with_class_names(index.labels().to_vec()))
}

/// Reads the header of an image file (format and size, not the pixels).
///
/// # Errors
/// A file that cannot be opened or read, or whose header is not a PNG/JPEG header of a
/// non-empty image, named.
pub fn check_image_header(path: &Path) -> Result<(u32, u32)> {
    let decode = |reason: String| DataError::Decode {
        path: path.into(),
        reason,
    };
    let (w, h) = image::ImageReader::open(path)
        .map_err(io_err(path))?
        .with_guessed_format()
        .map_err(io_err(path))?
        .into_dimensions()
        .map_err(|e| decode(e.to_string()))?;
    if w == 0 || h == 0 {
        return Err(decode(format!(
            "the header declares an empty {w}x{h} image"
        )));
    }
    Ok((w, h))
}

/// [`load_image_folder`] without decoding: the dataset keeps the file list and decodes each
/// image when it is read ([`ImageDataset::try_item`]), so a train set of any size needs memory
/// only for its paths. Every file's header is read here ([`check_image_header`]), so a file
/// that is not an image is named before any work starts; only the first image is decoded, for
/// the shape. `opts.center_crop` must be set so that every image decodes to that shape. A file
/// whose header is valid but whose pixels are damaged is an error naming it when read.
///
/// # Errors
/// As [`load_image_folder`] for the tree, every header and the first image;
/// `opts.center_crop` unset.
pub fn stream_image_folder(
    root: &Path,
    index: &ClassIndex,
    opts: &FolderOptions,
) -> Result<ImageDataset> {
    if opts.center_crop.is_none() {
        return Err(DataError::Invalid(format!(
            "{}: streaming an image folder needs a center crop, so that every image has one \
             shape",
            root.display()
        )));
    }
    let (paths, labels): (Vec<PathBuf>, Vec<u32>) =
        list_image_folder(root, index)?.into_iter().unzip();
    let Some(first) = paths.first() else {
        return Err(no_images(root));
    };
    let (_, shape) = decode_image(first, opts)?;
    for p in &paths[1..] {
        check_image_header(p)?;
    }
    Ok(
        ImageDataset::from_files(shape, paths, opts.clone(), labels, index.len())?
            .with_class_names(index.labels().to_vec()),
    )
}

fn no_images(root: &Path) -> DataError {
    DataError::Format {
        path: root.into(),
        what: "no png/jpeg images: expected <root>/<class>/<image>".into(),
    }
}

/// The `(file, label)` pairs of `<root>/<class>/<image>`: class folders in index order, files
/// in name order, non-PNG/JPEG files skipped.
fn list_image_folder(root: &Path, index: &ClassIndex) -> Result<Vec<(PathBuf, u32)>> {
    let mut dirs: Vec<(usize, String)> = Vec::new();
    for d in sorted_subdirs(root)? {
        let Some(i) = index.index_of(&d) else {
            return Err(DataError::Format {
                path: root.join(&d),
                what: format!(
                    "class folder {d:?} is not listed in the class index {}",
                    index.source.display()
                ),
            });
        };
        dirs.push((i, d));
    }
    dirs.sort();
    let mut out = Vec::new();
    for (label, d) in dirs {
        let dir = root.join(&d);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_image(p))
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|f| (f, label as u32)));
    }
    Ok(out)
}

/// Load one corruption and severity of an ImageNet-C-style tree,
/// `<root>/<corruption>/<severity>/<class>/<image>`.
pub fn load_imagenet_c(
    root: &Path,
    corruption: &str,
    severity: u8,
    index: &ClassIndex,
    opts: &FolderOptions,
) -> Result<ImageDataset> {
    load_image_folder(
        &root.join(corruption).join(severity.to_string()),
        index,
        opts,
    )
}

/// A subset of a larger class index (e.g. the 200 ImageNet-R classes within ImageNet-1k).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassSubset {
    indices: Vec<usize>,
    num_full: usize,
}

impl ClassSubset {
    /// The subset formed by the class folders present under `root`, mapped into `full`.
    ///
    /// # Errors
    /// When a folder is not a class of `full`.
    pub fn from_folder(root: &Path, full: &ClassIndex) -> Result<Self> {
        let names = sorted_subdirs(root)?;
        let mut indices = Vec::with_capacity(names.len());
        for n in &names {
            indices.push(full.index_of(n).ok_or_else(|| DataError::Format {
                path: root.join(n),
                what: format!(
                    "class folder {n:?} is not listed in the class index {}",
                    full.source.display()
                ),
            })?);
        }
        indices.sort_unstable();
        Ok(Self {
            indices,
            num_full: full.len(),
        })
    }

    /// The full-index class numbers in the subset, ascending.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// `true` for the full-index classes in the subset.
    pub fn mask(&self) -> Vec<bool> {
        let mut m = vec![false; self.num_full];
        self.indices.iter().for_each(|&i| m[i] = true);
        m
    }

    /// Mask `[N, num_full]` logits: classes outside the subset get −1e9 added, so an argmax (or
    /// a cross-entropy against full-index labels) only considers the subset.
    pub fn mask_logits<B: Backend>(&self, logits: Tensor<B, 2>) -> Tensor<B, 2> {
        let [_, k] = logits.dims();
        assert_eq!(
            k, self.num_full,
            "logits have {k} classes; the subset maps into {}",
            self.num_full
        );
        let add: Vec<f32> = self
            .mask()
            .into_iter()
            .map(|m| if m { 0.0 } else { -1e9 })
            .collect();
        let add = Tensor::<B, 2>::from_data(TensorData::new(add, [1, k]), &logits.device());
        logits + add
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn png(path: &Path, w: u32, h: u32, v: u8) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([v, (x * 10) as u8, (y * 10) as u8]))
            .save(path)
            .expect("save png");
    }

    fn tree(root: &Path) -> ClassIndex {
        png(&root.join("n01/a.png"), 4, 3, 10);
        png(&root.join("n01/b.png"), 4, 3, 20);
        png(&root.join("n03/c.png"), 4, 3, 30);
        image::RgbImage::from_fn(4, 3, |_, _| image::Rgb([200, 0, 0]))
            .save(root.join("n03/d.jpg"))
            .expect("jpeg");
        std::fs::write(root.join("n03/readme.txt"), "skipped").expect("txt");
        let idx = root.with_extension("classes.txt");
        std::fs::write(&idx, "n01 first class\nn02 second\n\nn03 third\n").expect("index");
        ClassIndex::read(&idx).expect("index")
    }

    #[test]
    fn loads_tree_with_class_index_and_imagenet_c_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("val");
        let index = tree(&root);
        assert_eq!(index.labels()[1], "second");
        let d = load_image_folder(&root, &index, &FolderOptions::default()).expect("load");
        assert_eq!(
            (d.num_samples(), d.shape(), d.labels()),
            (4, [3, 3, 4], &[0, 0, 2, 2][..])
        );
        assert_eq!(d.image(0)[0], 10); // R plane first
        assert_eq!(d.image(0)[12 + 1], 10); // G at x=1
        assert_eq!(d.class_names()[2], "third");
        let gray = load_image_folder(
            &root,
            &index,
            &FolderOptions {
                channels: 1,
                resize_shorter: Some(2),
                center_crop: Some(2),
            },
        )
        .expect("gray");
        assert_eq!(gray.shape(), [1, 2, 2]);
        // ImageNet-C layout.
        let c_root = dir.path().join("c");
        png(&c_root.join("fog/3/n02/x.png"), 4, 3, 5);
        let c = load_imagenet_c(&c_root, "fog", 3, &index, &FolderOptions::default()).expect("c");
        assert_eq!(c.labels(), &[1]);
        // Subset -> full indices and masked logits.
        let sub = ClassSubset::from_folder(&root, &index).expect("subset");
        assert_eq!(sub.indices(), &[0, 2]);
        let logits = Tensor::<Flex, 2>::from_data([[0.0, 5.0, 1.0]], &Default::default());
        let masked = sub
            .mask_logits(logits)
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .expect("i64");
        assert_eq!(masked, vec![2]);
        assert_eq!(
            ClassIndex::from_dir(&root).expect("dir").ids(),
            &["n01", "n03"]
        );
    }

    /// [`tree`] under `<dir>/train`, with options that decode every image to 3x3.
    fn train_tree(dir: &Path) -> (PathBuf, ClassIndex, FolderOptions) {
        let root = dir.join("train");
        let index = tree(&root);
        let opts = FolderOptions {
            channels: 3,
            resize_shorter: Some(3),
            center_crop: Some(3),
        };
        (root, index, opts)
    }

    #[test]
    fn a_streamed_folder_serves_the_same_items_as_a_loaded_one() {
        use burn::data::dataset::Dataset;
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, index, opts) = train_tree(dir.path());
        let loaded = load_image_folder(&root, &index, &opts).expect("load");
        let streamed = stream_image_folder(&root, &index, &opts).expect("stream");
        assert!(streamed.is_streamed() && !loaded.is_streamed());
        assert_eq!(
            (streamed.shape(), streamed.labels(), streamed.class_names()),
            (loaded.shape(), loaded.labels(), loaded.class_names())
        );
        for i in 0..loaded.num_samples() {
            assert_eq!(streamed.get(i), loaded.get(i), "sample {i}");
        }
        // Splits and subsets stay streamed and pick the same samples.
        let (rest_s, held_s) = streamed.split_held_out(1, 7).expect("split");
        let (rest_l, held_l) = loaded.split_held_out(1, 7).expect("split");
        assert!(rest_s.is_streamed() && held_s.is_streamed());
        assert_eq!(held_s.get(0), held_l.get(0));
        assert_eq!(rest_s.labels(), rest_l.labels());
        let both = ImageDataset::concat(vec![rest_s.clone(), held_s]).expect("concat");
        assert_eq!(both.num_samples(), 4);
        assert!(ImageDataset::concat(vec![rest_s, held_l]).is_err());
        // A file that breaks after listing is named when read; no crop is refused up front.
        std::fs::write(root.join("n03/c.png"), b"not a png any more").expect("write");
        let e = streamed.try_image(2).expect_err("broken").to_string();
        assert!(e.contains("c.png"), "{e}");
        let e = stream_image_folder(&root, &index, &FolderOptions::default())
            .expect_err("no crop")
            .to_string();
        assert!(e.contains("center crop"), "{e}");
    }

    #[test]
    fn a_damaged_streamed_image_is_named_at_open_or_by_try_epoch_without_a_worker_panic() {
        use crate::{ImageBatcher, ImageLoader, LoaderConfig};
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, index, opts) = train_tree(dir.path());
        // Not an image at all: refused at open, before any batch.
        std::fs::write(root.join("n03/zz.png"), b"garbage, not a png").expect("write");
        let e = stream_image_folder(&root, &index, &opts)
            .expect_err("bad header")
            .to_string();
        assert!(
            e.contains("zz.png") && e.contains("failed to decode"),
            "{e}"
        );
        // A valid header over a damaged body: opens, then the batch holding it is an error
        // naming the file on the caller's thread, and the epoch ends there.
        std::fs::copy(root.join("n01/b.png"), root.join("n03/zz.png")).expect("copy");
        crate::testing::damage_png_body(&root.join("n03/zz.png"));
        let data = stream_image_folder(&root, &index, &opts).expect("header is valid");
        assert!(data.try_item(4).is_err() && data.try_item(0).is_ok());
        assert!(
            data.try_item(5)
                .expect_err("past the end")
                .to_string()
                .contains("out of range")
        );
        // Corrupting it (soup's shift sets) returns the error from the worker thread.
        let e = crate::corrupt::corrupt_dataset(&data, crate::Corruption::ALL[0], 1, 0, 2)
            .expect_err("damaged")
            .to_string();
        assert!(e.contains("zz.png"), "{e}");
        for workers in [0, 2] {
            let loader = ImageLoader::<Flex>::new(
                data.clone(),
                ImageBatcher::eval(3),
                LoaderConfig {
                    batch_size: 2,
                    num_workers: workers,
                    shuffle: false,
                    drop_last: false,
                    seed: 0,
                },
                Default::default(),
            );
            let got: Vec<_> = loader.try_epoch(0).collect();
            assert_eq!(got.len(), 3, "two good batches, then the error");
            assert!(got[0].is_ok() && got[1].is_ok());
            let e = got[2].as_ref().expect_err("damaged").to_string();
            assert!(e.contains("zz.png"), "{e}");
        }
    }

    #[test]
    fn bad_trees_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("val");
        let index = tree(&root);
        std::fs::write(root.join("n01/broken.png"), b"not a png").expect("write");
        let e = load_image_folder(&root, &index, &FolderOptions::default())
            .expect_err("decode")
            .to_string();
        assert!(
            e.contains("broken.png") && e.contains("failed to decode"),
            "{e}"
        );
        std::fs::remove_file(root.join("n01/broken.png")).expect("rm");
        png(&root.join("n01/big.png"), 5, 5, 1);
        let e = load_image_folder(&root, &index, &FolderOptions::default())
            .expect_err("shape")
            .to_string();
        assert!(
            e.contains("big.png") && e.contains("[3, 5, 5]") && e.contains("[3, 3, 4]"),
            "{e}"
        );
        std::fs::remove_file(root.join("n01/big.png")).expect("rm");
        png(&root.join("n99/z.png"), 4, 3, 1);
        let e = load_image_folder(&root, &index, &FolderOptions::default())
            .expect_err("class")
            .to_string();
        assert!(e.contains("n99") && e.contains("not listed"), "{e}");
        let dup = dir.path().join("dup.txt");
        std::fs::write(&dup, "a\nb\na\n").expect("write");
        let e = ClassIndex::read(&dup).expect_err("dup").to_string();
        assert!(e.contains("dup.txt") && e.contains("line 3"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(empty.join("n01")).expect("mkdir");
        assert!(load_image_folder(&empty, &index, &FolderOptions::default()).is_err());
    }
}
