//! Checking a directory of dataset files (SHA-256 of every file, structure, item counts) and
//! the size caps that keep a download or a gzip bomb from filling the disk.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::{DatasetInfo, DatasetSpec, FileReport, SplitInfo, load_from_dir};
use crate::dataset::{ImageDataset, Split};
use crate::error::{DataError, Result, io_err, path_err};

/// The SHA-256 (hex) and size of a file.
fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let sha = advsoup_io::sha256_file(path).map_err(path_err)?;
    let bytes = std::fs::metadata(path).map_err(io_err(path))?.len();
    Ok((sha, bytes))
}

/// Checks every file of `spec` in `dir` (present, SHA-256 when pinned), loads the dataset and
/// checks its counts.
pub(super) fn verify_dir(spec: &DatasetSpec, dir: &Path) -> Result<DatasetInfo> {
    let mut files = Vec::new();
    for f in &spec.files {
        let path = dir.join(&f.name);
        if !path.is_file() {
            return Err(DataError::NotCached {
                path: dir.into(),
                dataset: spec.kind.name().into(),
                file: f.name.clone(),
            });
        }
        let (sha, bytes) = sha256_file(&path)?;
        match &f.sha256 {
            Some(want) if *want != sha => {
                return Err(DataError::Checksum {
                    path,
                    expected: want.clone(),
                    found: sha,
                });
            }
            Some(_) => {}
            None => {
                tracing::warn!(file = %path.display(), %sha, "no pinned sha-256; verified structurally only")
            }
        }
        files.push(FileReport {
            name: f.name.clone(),
            bytes,
            sha256: sha,
            pinned: f.sha256.is_some(),
        });
    }
    let (train, test) = load_from_dir(spec.kind, dir)?;
    if let Some((want_train, want_test)) = spec.expected_counts {
        for (d, want, file) in [
            (&train, want_train, &spec.files[0].name),
            (&test, want_test, &spec.files[spec.files.len() - 1].name),
        ] {
            if d.num_samples() != want {
                return Err(DataError::CountMismatch {
                    path: dir.join(file),
                    expected: want,
                    found: d.num_samples(),
                    what: format!("the published size of {}", spec.kind),
                });
            }
        }
    }
    let split_info = |split, d: &ImageDataset| SplitInfo {
        split,
        count: d.num_samples(),
        per_class: d.class_counts(),
    };
    Ok(DatasetInfo {
        kind: spec.kind,
        dir: dir.into(),
        shape: train.shape(),
        splits: vec![
            split_info(Split::Train, &train),
            split_info(Split::Test, &test),
        ],
        class_names: spec.kind.class_names(),
        files,
    })
}

/// A reader that fails once more than `cap` bytes went through.
pub(super) struct Capped<R> {
    inner: R,
    left: u64,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "more than the size cap of {} bytes",
                self.cap
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// `inner`, failing once more than `cap` bytes went through.
pub(super) fn capped<R: Read>(inner: R, cap: u64) -> Capped<R> {
    Capped {
        inner,
        left: cap,
        cap,
    }
}

/// Copy `reader` (gunzipped when it starts with the gzip magic) into `dest`.
pub(super) fn stage_reader(reader: impl Read, dest: &Path, max_file: u64) -> std::io::Result<()> {
    let mut r = BufReader::new(reader);
    let gz = r.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let mut out = std::io::BufWriter::new(std::fs::File::create(dest)?);
    if gz {
        std::io::copy(
            &mut capped(flate2::read::MultiGzDecoder::new(r), max_file),
            &mut out,
        )?;
    } else {
        std::io::copy(&mut capped(r, max_file), &mut out)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}
