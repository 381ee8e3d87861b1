//! The on-disk store of materialized "-C" sets: IDX image files per corruption and severity,
//! one label file, and a manifest with the SHA-256 of every image file, written last.

use std::path::{Path, PathBuf};

use super::{Corruption, corrupt_dataset};
use crate::dataset::ImageDataset;
use crate::error::{DataError, Result, io_err};
use crate::idx::{load_idx_pair, read_idx, write_idx};

/// One materialized corruption/severity.
#[derive(Clone, Debug, PartialEq)]
pub struct CorruptedEntry {
    /// The corruption.
    pub corruption: Corruption,
    /// Its severity.
    pub severity: u8,
    /// Number of images.
    pub count: usize,
    /// SHA-256 of the image file.
    pub sha256: String,
    /// Mean absolute pixel change against the clean images, in [0, 1] units.
    pub mean_abs_change: f32,
}

/// The manifest of a materialized "-C" directory.
#[derive(Clone, Debug, PartialEq)]
pub struct CorruptedManifest {
    /// Seed used.
    pub seed: u64,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// One entry per (corruption, severity).
    pub entries: Vec<CorruptedEntry>,
}

const MANIFEST: &str = "manifest.txt";
const LABELS: &str = "labels-idx1-ubyte";

fn images_path(dir: &Path, c: Corruption, severity: u8) -> PathBuf {
    dir.join(c.name())
        .join(severity.to_string())
        .join("images-idx-ubyte")
}

/// Write a "-C" set: `<out>/labels-idx1-ubyte`, `<out>/<corruption>/<severity>/images-idx-ubyte`
/// (IDX, `[N, H, W]` or `[N, C, H, W]`) and `<out>/manifest.txt` (written last, listing the
/// SHA-256 of every image file). Every file is placed atomically.
pub fn materialize_corrupted(
    data: &ImageDataset,
    corruptions: &[Corruption],
    severities: &[u8],
    seed: u64,
    out: &Path,
    threads: usize,
) -> Result<CorruptedManifest> {
    let n = data.num_samples();
    let labels: Vec<u8> = data.labels().iter().map(|&l| l as u8).collect();
    if data.num_classes() > 256 {
        return Err(DataError::Invalid(format!(
            "{}: idx labels are bytes; {} classes do not fit",
            out.display(),
            data.num_classes()
        )));
    }
    write_idx(&out.join(LABELS), &[n], &labels)?;
    let [c, h, w] = data.shape();
    let dims: Vec<usize> = if c == 1 {
        vec![n, h, w]
    } else {
        vec![n, c, h, w]
    };
    let mut entries = Vec::new();
    for &corruption in corruptions {
        for &severity in severities {
            let cd = corrupt_dataset(data, corruption, severity, seed, threads)?;
            let path = images_path(out, corruption, severity);
            write_idx(&path, &dims, cd.pixels())?;
            let file = std::fs::read(&path).map_err(io_err(&path))?;
            let mad = cd
                .pixels()
                .iter()
                .zip(data.pixels())
                .map(|(a, b)| (*a as f32 - *b as f32).abs())
                .sum::<f32>()
                / (255.0 * data.pixels().len().max(1) as f32);
            tracing::info!(
                corruption = corruption.name(),
                severity,
                mean_abs_change = mad,
                "materialized"
            );
            entries.push(CorruptedEntry {
                corruption,
                severity,
                count: n,
                sha256: advsoup_io::sha256_hex(&file),
                mean_abs_change: mad,
            });
        }
    }
    let m = CorruptedManifest {
        seed,
        shape: data.shape(),
        num_classes: data.num_classes(),
        entries,
    };
    crate::error::write_atomic(&out.join(MANIFEST), manifest_text(&m).as_bytes())?;
    Ok(m)
}

fn manifest_text(m: &CorruptedManifest) -> String {
    let mut s = format!(
        "advsoup-c 1\nseed {}\nshape {} {} {}\nclasses {}\n",
        m.seed, m.shape[0], m.shape[1], m.shape[2], m.num_classes
    );
    for e in &m.entries {
        s += &format!(
            "{} {} {} {} {}\n",
            e.corruption.name(),
            e.severity,
            e.count,
            e.sha256,
            e.mean_abs_change
        );
    }
    s
}

/// Read `<dir>/manifest.txt`.
pub fn read_manifest(dir: &Path) -> Result<CorruptedManifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let bad = |line: usize, what: &str| DataError::Format {
        path: path.clone(),
        what: format!("line {line}: expected {what}"),
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.first() != Some(&"advsoup-c 1") {
        return Err(bad(1, "\"advsoup-c 1\""));
    }
    let field = |i: usize, key: &str| -> Result<Vec<usize>> {
        let l = lines
            .get(i)
            .and_then(|l| l.strip_prefix(key))
            .ok_or_else(|| bad(i + 1, key))?;
        l.split_whitespace()
            .map(|t| t.parse::<usize>().map_err(|_| bad(i + 1, key)))
            .collect()
    };
    let seed = lines
        .get(1)
        .and_then(|l| l.strip_prefix("seed "))
        .and_then(|t| t.trim().parse::<u64>().ok())
        .ok_or_else(|| bad(2, "seed <u64>"))?;
    let shape = field(2, "shape ")?;
    let classes = field(3, "classes ")?;
    let (Ok(shape), [num_classes]) = (<[usize; 3]>::try_from(shape), classes.as_slice()) else {
        return Err(bad(3, "shape <c> <h> <w> and classes <k>"));
    };
    let mut entries = Vec::new();
    for (i, l) in lines.iter().enumerate().skip(4) {
        let t: Vec<&str> = l.split_whitespace().collect();
        let what = "<corruption> <severity> <count> <sha256> <mean abs change>";
        let [name, sev, count, sha, mad] = t.as_slice() else {
            return Err(bad(i + 1, what));
        };
        entries.push(CorruptedEntry {
            corruption: name.parse().map_err(|_| bad(i + 1, what))?,
            severity: sev.parse().map_err(|_| bad(i + 1, what))?,
            count: count.parse().map_err(|_| bad(i + 1, what))?,
            sha256: sha.to_string(),
            mean_abs_change: mad.parse().map_err(|_| bad(i + 1, what))?,
        });
    }
    Ok(CorruptedManifest {
        seed,
        shape,
        num_classes: *num_classes,
        entries,
    })
}

/// Load one corruption/severity of a materialized "-C" set, verifying its SHA-256 against the
/// manifest.
pub fn load_corrupted(dir: &Path, corruption: Corruption, severity: u8) -> Result<ImageDataset> {
    let m = read_manifest(dir)?;
    let path = images_path(dir, corruption, severity);
    let entry = m
        .entries
        .iter()
        .find(|e| e.corruption == corruption && e.severity == severity)
        .ok_or_else(|| DataError::Format {
            path: dir.join(MANIFEST),
            what: format!("no entry for {} severity {severity}", corruption.name()),
        })?;
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let found = advsoup_io::sha256_hex(&bytes);
    if found != entry.sha256 {
        return Err(DataError::Checksum {
            path,
            expected: entry.sha256.clone(),
            found,
        });
    }
    let _ = read_idx; // the pair loader below re-reads and validates the header
    load_idx_pair(&path, &dir.join(LABELS), m.num_classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn materialize_and_load_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = crate::dataset::tests::toy(6, [3, 8, 8], 3, 4);
        let cs = [Corruption::Contrast, Corruption::ShotNoise];
        let m = materialize_corrupted(&data, &cs, &[1, 5], 1, dir.path(), 2).expect("materialize");
        assert_eq!(m.entries.len(), 4);
        assert_eq!(
            read_manifest(dir.path()).expect("manifest").entries.len(),
            4
        );
        let back = load_corrupted(dir.path(), Corruption::ShotNoise, 5).expect("load");
        assert_eq!(back.labels(), data.labels());
        assert_eq!(
            back,
            corrupt_dataset(&data, Corruption::ShotNoise, 5, 1, 1).expect("corrupt")
        );
        assert_ne!(back.pixels(), data.pixels());
        // Tampering is caught by the checksum.
        let p = images_path(dir.path(), Corruption::Contrast, 1);
        let mut bytes = std::fs::read(&p).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, bytes).expect("write");
        let e = load_corrupted(dir.path(), Corruption::Contrast, 1)
            .expect_err("tampered")
            .to_string();
        assert!(
            e.contains("images-idx-ubyte") && e.contains("sha-256 mismatch"),
            "{e}"
        );
        assert!(load_corrupted(dir.path(), Corruption::Fog, 1).is_err());
    }
}
