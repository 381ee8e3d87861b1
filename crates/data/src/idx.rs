//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), gzip-compressed or raw.
//!
//! A file is a 4-byte big-endian magic number `0x0000_08DD` (`08` = unsigned bytes, `DD` = the
//! number of dimensions), `DD` big-endian `u32` dimension sizes, then the data. Images are
//! `[N, H, W]` (3 dims) or, for the multi-channel sets this crate writes, `[N, C, H, W]`;
//! labels are `[N]`.

use std::io::Read;
use std::path::Path;

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result, io_err};

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimension sizes, outermost first.
    pub dims: Vec<usize>,
    /// Row-major data, `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

/// Largest decompressed IDX file accepted, bytes (MNIST's largest file is 47 MB): a gzip bomb
/// fails with a clear error instead of filling the memory.
pub const MAX_IDX_BYTES: u64 = 1 << 30;

/// Read a whole file, gunzipping it when it starts with the gzip magic bytes.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(io_err(path))?;
    decode_maybe_gz(path, raw, MAX_IDX_BYTES)
}

/// Gunzip `raw` when it starts with the gzip magic bytes (else return it as is), failing once
/// more than `max_bytes` come out; `path` is only used in error messages.
pub fn decode_maybe_gz(path: &Path, raw: Vec<u8>, max_bytes: u64) -> Result<Vec<u8>> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            what: format!(
                "gzip stream is corrupt or truncated after {} decompressed bytes: {e}",
                out.len()
            ),
        })?;
    if out.len() as u64 > max_bytes {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            what: format!(
                "gzip stream decompresses to more than {max_bytes} bytes: expected an idx file of at most that size"
            ),
        });
    }
    Ok(out)
}

/// Parse IDX bytes; `path` is only used in error messages. `expected_dims`, when given, is the
/// number of dimensions the caller requires (checked through the magic number).
pub fn parse_idx(path: &Path, bytes: &[u8], expected_dims: Option<usize>) -> Result<IdxArray> {
    let found_len = bytes.len() as u64;
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.into(),
            offset: found_len,
            expected: 4,
            found: found_len,
        });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let ndims = bytes[3] as usize;
    let want_dims = expected_dims.unwrap_or(ndims.max(1));
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || ndims != want_dims {
        return Err(DataError::BadMagic {
            path: path.into(),
            expected: 0x0800 | want_dims as u32,
            found: magic,
        });
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.into(),
            offset: found_len,
            expected: header as u64,
            found: found_len,
        });
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let n: usize = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| DataError::Format {
            path: path.into(),
            what: format!("header dims {dims:?} overflow"),
        })?;
    // `header + n` overflows for headers such as [6700417, 42009217, 65535] (product 2^64 - 1).
    let expected = (n as u64)
        .checked_add(header as u64)
        .ok_or_else(|| DataError::Format {
            path: path.into(),
            what: format!("header dims {dims:?} promise more than 2^64 bytes"),
        })?;
    if found_len < expected {
        return Err(DataError::Truncated {
            path: path.into(),
            offset: found_len,
            expected,
            found: found_len,
        });
    }
    if found_len > expected {
        return Err(DataError::Format {
            path: path.into(),
            what: format!(
                "{} unexpected trailing bytes at byte offset {expected}: header dims {dims:?} promise {expected} bytes in total",
                found_len - expected
            ),
        });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Read an IDX file (gzip or raw).
pub fn read_idx(path: &Path, expected_dims: Option<usize>) -> Result<IdxArray> {
    let bytes = read_maybe_gz(path)?;
    parse_idx(path, &bytes, expected_dims)
}

/// Serialize an array as raw (uncompressed) IDX bytes.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    assert_eq!(
        dims.iter().product::<usize>(),
        data.len(),
        "idx dims {dims:?} do not match {} bytes",
        data.len()
    );
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, 0x08, dims.len() as u8]);
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Write a raw IDX file atomically (temp file in the same directory, then rename).
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> Result<()> {
    crate::error::write_atomic(path, &encode_idx(dims, data))
}

/// Load an image IDX file and its label IDX file into a dataset with `num_classes` classes.
///
/// Images may be `[N, H, W]` (one channel) or `[N, C, H, W]`.
///
/// # Errors
/// Wrong magic, truncation, trailing bytes, an image/label count mismatch (named against the
/// label file) or a label `>= num_classes` (named with its entry and byte offset).
pub fn load_idx_pair(images: &Path, labels: &Path, num_classes: usize) -> Result<ImageDataset> {
    let img_bytes = read_maybe_gz(images)?;
    let lab_bytes = read_maybe_gz(labels)?;
    parse_idx_pair(images, &img_bytes, labels, &lab_bytes, num_classes)
}

/// [`load_idx_pair`] on decompressed bytes already read (the paths only name them in errors).
pub fn parse_idx_pair(
    images: &Path,
    img_bytes: &[u8],
    labels: &Path,
    lab_bytes: &[u8],
    num_classes: usize,
) -> Result<ImageDataset> {
    let img = match img_bytes.get(3) {
        Some(4) => parse_idx(images, img_bytes, Some(4))?,
        _ => parse_idx(images, img_bytes, Some(3))?,
    };
    let shape = match img.dims.as_slice() {
        [_, h, w] => [1, *h, *w],
        [_, c, h, w] => [*c, *h, *w],
        _ => unreachable!("parse_idx checked the number of dims"),
    };
    // With zero images the data is empty whatever c x h x w is, so check it here.
    let image_len = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&len| len > 0);
    if image_len.is_none() {
        return Err(DataError::Format {
            path: images.into(),
            what: format!(
                "header dims {:?}: expected a positive image size c x h x w that fits in memory",
                img.dims
            ),
        });
    }
    let lab = parse_idx(labels, lab_bytes, Some(1))?;
    let n = img.dims[0];
    if lab.dims[0] != n {
        return Err(DataError::CountMismatch {
            path: labels.into(),
            expected: n,
            found: lab.dims[0],
            what: format!("the image count in {}", images.display()),
        });
    }
    if let Some((i, &l)) = lab
        .data
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= num_classes)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels.into(),
            entry: i,
            offset: 8 + i as u64,
            label: l as u64,
            num_classes,
        });
    }
    let labels = lab.data.iter().map(|&l| l as u32).collect();
    ImageDataset::new(shape, img.data, labels, num_classes)
}

/// Write a dataset as an image IDX file and a label IDX file (raw, atomically). One-channel
/// images are written `[N, H, W]` (magic `0x803`), others `[N, C, H, W]` (magic `0x804`).
pub fn save_idx_pair(data: &ImageDataset, images: &Path, labels: &Path) -> Result<()> {
    let [c, h, w] = data.shape();
    let n = data.num_samples();
    if c == 1 {
        write_idx(images, &[n, h, w], data.pixels())?;
    } else {
        write_idx(images, &[n, c, h, w], data.pixels())?;
    }
    let l: Vec<u8> = data.labels().iter().map(|&l| l as u8).collect();
    if data.num_classes() > 256 {
        return Err(DataError::Invalid(format!(
            "{}: idx labels are bytes; {} classes do not fit",
            labels.display(),
            data.num_classes()
        )));
    }
    write_idx(labels, &[n], &l)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).expect("gzip to memory");
        e.finish().expect("gzip to memory")
    }

    fn pair(n: usize, classes: u8) -> (Vec<u8>, Vec<u8>) {
        let img: Vec<u8> = (0..n * 4 * 4).map(|i| (i * 7 % 256) as u8).collect();
        let lab: Vec<u8> = (0..n).map(|i| i as u8 % classes).collect();
        (encode_idx(&[n, 4, 4], &img), encode_idx(&[n], &lab))
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("write test file");
        p
    }

    #[test]
    fn reads_raw_and_gzip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (img, lab) = pair(6, 3);
        let a = load_idx_pair(
            &write(dir.path(), "i", &img),
            &write(dir.path(), "l", &lab),
            3,
        )
        .expect("raw");
        let b = load_idx_pair(
            &write(dir.path(), "i.gz", &gz(&img)),
            &write(dir.path(), "l.gz", &gz(&lab)),
            3,
        )
        .expect("gz");
        assert_eq!(a, b);
        assert_eq!(a.shape(), [1, 4, 4]);
        assert_eq!(a.class_counts(), vec![2, 2, 2]);
        // Round trip, including a 3-channel set.
        let c3 = crate::dataset::tests::toy(5, [3, 2, 2], 4, 9);
        let (pi, pl) = (dir.path().join("c3i"), dir.path().join("c3l"));
        save_idx_pair(&c3, &pi, &pl).expect("save");
        assert_eq!(load_idx_pair(&pi, &pl, 4).expect("load"), c3);
    }

    #[test]
    fn bad_inputs_name_file_offset_and_expectation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (img, lab) = pair(6, 3);
        let li = write(dir.path(), "labels", &lab);

        let t = write(dir.path(), "trunc-images", &img[..img.len() - 5]);
        let e = load_idx_pair(&t, &li, 3)
            .expect_err("truncated")
            .to_string();
        assert!(
            e.contains("trunc-images") && e.contains("offset 107") && e.contains("expected 112"),
            "{e}"
        );

        let mut m = img.clone();
        m[3] = 1;
        let e = load_idx_pair(&write(dir.path(), "magic-images", &m), &li, 3)
            .expect_err("magic")
            .to_string();
        assert!(
            e.contains("magic-images") && e.contains("0x00000803") && e.contains("0x00000801"),
            "{e}"
        );

        let (_, lab5) = pair(5, 3);
        let ii = write(dir.path(), "images", &img);
        let e = load_idx_pair(&ii, &write(dir.path(), "labels5", &lab5), 3)
            .expect_err("count")
            .to_string();
        assert!(
            e.contains("labels5") && e.contains("expected 6") && e.contains("found 5"),
            "{e}"
        );

        let mut bad = lab.clone();
        bad[8 + 4] = 9;
        let e = load_idx_pair(&ii, &write(dir.path(), "badlabel", &bad), 3)
            .expect_err("label")
            .to_string();
        assert!(
            e.contains("badlabel")
                && e.contains("entry 4")
                && e.contains("offset 12")
                && e.contains("below 3"),
            "{e}"
        );

        let mut trailing = lab.clone();
        trailing.push(0);
        let e = load_idx_pair(&ii, &write(dir.path(), "trail", &trailing), 3)
            .expect_err("trail")
            .to_string();
        assert!(e.contains("trail") && e.contains("offset 14"), "{e}");

        let g = gz(&img);
        let e = load_idx_pair(&write(dir.path(), "cut.gz", &g[..g.len() / 2]), &li, 3)
            .expect_err("gz")
            .to_string();
        assert!(e.contains("cut.gz") && e.contains("gzip"), "{e}");

        let e = load_idx_pair(&write(dir.path(), "tiny", &[0, 0]), &li, 3)
            .expect_err("tiny")
            .to_string();
        assert!(e.contains("tiny") && e.contains("truncated"), "{e}");
    }

    /// Raw idx bytes with an arbitrary header (no check that the data matches).
    fn header(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        let p = Path::new("hostile-images");
        let (_, lab) = pair(0, 3);
        let l = Path::new("labels");
        // Dims whose product is exactly 2^64 - 1: `header + n` used to overflow (a panic in
        // debug builds, a wrapped size in release builds).
        let e = parse_idx(p, &header(&[6_700_417, 42_009_217, 65_535], &[]), Some(3))
            .expect_err("overflowing size")
            .to_string();
        assert!(
            e.contains("hostile-images") && e.contains("more than 2^64 bytes"),
            "{e}"
        );
        // A product that overflows usize is named too.
        let e = parse_idx(p, &header(&[u32::MAX; 4], &[]), Some(4))
            .expect_err("overflowing dims")
            .to_string();
        assert!(e.contains("overflow"), "{e}");
        // Zero images of an overflowing or empty shape: no panic, a clear error.
        for dims in [[0, u32::MAX, u32::MAX, u32::MAX], [0, 3, 0, 4]] {
            let e = parse_idx_pair(p, &header(&dims, &[]), l, &lab, 3)
                .expect_err("bad shape")
                .to_string();
            assert!(
                e.contains("hostile-images") && e.contains("positive image size"),
                "{e}"
            );
        }
        // A huge declared size fails as truncated without allocating it.
        let e = parse_idx(p, &header(&[u32::MAX, 28, 28], &[1, 2, 3]), Some(3))
            .expect_err("huge")
            .to_string();
        assert!(
            e.contains("truncated") && e.contains("expected 3367254359296"),
            "{e}"
        );
    }

    #[test]
    fn gzip_bomb_is_capped() {
        let bomb = gz(&vec![0u8; 1 << 16]);
        let e = decode_maybe_gz(Path::new("bomb.gz"), bomb.clone(), 1000)
            .expect_err("over the cap")
            .to_string();
        assert!(
            e.contains("bomb.gz") && e.contains("more than 1000 bytes"),
            "{e}"
        );
        let ok = decode_maybe_gz(Path::new("bomb.gz"), bomb, 1 << 16).expect("at the cap");
        assert_eq!(ok.len(), 1 << 16);
    }
}
