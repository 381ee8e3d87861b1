//! The CIFAR-10 / CIFAR-100 binary formats (Krizhevsky 2009).
//!
//! CIFAR-10: 3073-byte records, `<label><3072 pixels>`. CIFAR-100: 3074-byte records,
//! `<coarse label><fine label><3072 pixels>`. Pixels are 1024 red, 1024 green, 1024 blue bytes
//! of a 32x32 image, row-major: exactly the `[C, H, W]` layout of [`ImageDataset`].

use std::path::Path;

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result, io_err};

const PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR binary format and, for CIFAR-100, which label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarFormat {
    /// 10 classes, 3073-byte records.
    Cifar10,
    /// 100 fine classes (second label byte), 3074-byte records.
    Cifar100Fine,
    /// 20 coarse classes (first label byte), 3074-byte records.
    Cifar100Coarse,
}

impl CifarFormat {
    /// Bytes per record.
    pub fn record_len(self) -> usize {
        match self {
            Self::Cifar10 => PIXELS + 1,
            Self::Cifar100Fine | Self::Cifar100Coarse => PIXELS + 2,
        }
    }

    /// Number of classes of the chosen label.
    pub fn num_classes(self) -> usize {
        match self {
            Self::Cifar10 => 10,
            Self::Cifar100Fine => 100,
            Self::Cifar100Coarse => 20,
        }
    }

    fn label_offset(self) -> usize {
        match self {
            Self::Cifar10 | Self::Cifar100Coarse => 0,
            Self::Cifar100Fine => 1,
        }
    }

    fn label_bytes(self) -> usize {
        self.record_len() - PIXELS
    }
}

/// Parse the bytes of one CIFAR binary file; `path` is used in error messages.
pub fn parse_cifar(path: &Path, bytes: &[u8], format: CifarFormat) -> Result<ImageDataset> {
    let rec = format.record_len();
    let whole = bytes.len() / rec;
    if !bytes.len().is_multiple_of(rec) || bytes.is_empty() {
        let offset = (whole * rec) as u64;
        return Err(DataError::Truncated {
            path: path.into(),
            offset,
            expected: ((whole + 1) * rec) as u64,
            found: bytes.len() as u64,
        });
    }
    let mut pixels = Vec::with_capacity(whole * PIXELS);
    let mut labels = Vec::with_capacity(whole);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        // Check every label byte of the record (coarse < 20 and fine < 100 for CIFAR-100).
        let limits: &[usize] = match format {
            CifarFormat::Cifar10 => &[10],
            _ => &[20, 100],
        };
        for (k, &lim) in limits.iter().enumerate() {
            if r[k] as usize >= lim {
                return Err(DataError::LabelOutOfRange {
                    path: path.into(),
                    entry: i,
                    offset: (i * rec + k) as u64,
                    label: r[k] as u64,
                    num_classes: lim,
                });
            }
        }
        labels.push(r[format.label_offset()] as u32);
        pixels.extend_from_slice(&r[format.label_bytes()..]);
    }
    ImageDataset::new([3, 32, 32], pixels, labels, format.num_classes())
}

/// Read and concatenate CIFAR binary files (e.g. `data_batch_1.bin` .. `data_batch_5.bin`).
/// `expected_records`, when given, is the total the files must hold.
pub fn load_cifar(
    paths: &[&Path],
    format: CifarFormat,
    expected_records: Option<usize>,
) -> Result<ImageDataset> {
    let mut parts = Vec::with_capacity(paths.len());
    for p in paths {
        let bytes = std::fs::read(p).map_err(io_err(*p))?;
        parts.push(parse_cifar(p, &bytes, format)?);
    }
    let all = ImageDataset::concat(parts)?;
    if let (Some(want), Some(last)) = (expected_records, paths.last())
        && all.num_samples() != want
    {
        return Err(DataError::CountMismatch {
            path: last.to_path_buf(),
            expected: want,
            found: all.num_samples(),
            what: "the dataset's published record count".into(),
        });
    }
    Ok(all)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn records(n: usize, format: CifarFormat) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            if format != CifarFormat::Cifar10 {
                out.push((i % 20) as u8);
            }
            out.push((i % format.num_classes().min(10)) as u8);
            out.extend((0..PIXELS).map(|p| ((p + i) % 251) as u8));
        }
        out
    }

    #[test]
    fn parses_cifar10_and_100() {
        let d = parse_cifar(
            Path::new("b"),
            &records(4, CifarFormat::Cifar10),
            CifarFormat::Cifar10,
        )
        .expect("c10");
        assert_eq!(
            (d.num_samples(), d.shape(), d.labels()),
            (4, [3, 32, 32], &[0, 1, 2, 3][..])
        );
        assert_eq!(d.image(1)[0], 1);
        let r = records(3, CifarFormat::Cifar100Fine);
        let fine = parse_cifar(Path::new("t"), &r, CifarFormat::Cifar100Fine).expect("fine");
        let coarse = parse_cifar(Path::new("t"), &r, CifarFormat::Cifar100Coarse).expect("coarse");
        assert_eq!(fine.num_classes(), 100);
        assert_eq!(coarse.num_classes(), 20);
        assert_eq!(fine.pixels(), coarse.pixels());
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("1.bin"), dir.path().join("2.bin"));
        std::fs::write(&a, records(2, CifarFormat::Cifar10)).expect("write");
        std::fs::write(&b, records(3, CifarFormat::Cifar10)).expect("write");
        assert_eq!(
            load_cifar(&[&a, &b], CifarFormat::Cifar10, Some(5))
                .expect("load")
                .num_samples(),
            5
        );
        let e = load_cifar(&[&a, &b], CifarFormat::Cifar10, Some(6))
            .expect_err("count")
            .to_string();
        assert!(
            e.contains("2.bin") && e.contains("expected 6") && e.contains("found 5"),
            "{e}"
        );
    }

    #[test]
    fn bad_records_are_named() {
        let mut r = records(3, CifarFormat::Cifar10);
        let e = parse_cifar(
            Path::new("data_batch_1.bin"),
            &r[..r.len() - 1],
            CifarFormat::Cifar10,
        )
        .expect_err("truncated")
        .to_string();
        assert!(
            e.contains("data_batch_1.bin")
                && e.contains("offset 6146")
                && e.contains("expected 9219"),
            "{e}"
        );
        r[3073 * 2] = 10;
        let e = parse_cifar(Path::new("x.bin"), &r, CifarFormat::Cifar10)
            .expect_err("label")
            .to_string();
        assert!(
            e.contains("x.bin")
                && e.contains("entry 2")
                && e.contains("offset 6146")
                && e.contains("below 10"),
            "{e}"
        );
        let mut r = records(2, CifarFormat::Cifar100Fine);
        r[3074 + 1] = 100;
        let e = parse_cifar(Path::new("train.bin"), &r, CifarFormat::Cifar100Fine)
            .expect_err("fine")
            .to_string();
        assert!(
            e.contains("entry 1") && e.contains("offset 3075") && e.contains("below 100"),
            "{e}"
        );
    }
}
