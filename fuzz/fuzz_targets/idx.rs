//! The IDX reader (MNIST / Fashion-MNIST): gunzip with a cap, header parsing, the image/label
//! pair checks. The input is split at the first `0xFF 0xFF 0xFF 0xFF` run into an image file and
//! a label file (no run: the same bytes serve as both); each part may be gzip or raw.
//!
//! Oracle: no panic, and a dataset that loads is consistent with the headers.
#![no_main]

use std::path::Path;

use advsoup_data::idx::{decode_maybe_gz, parse_idx, parse_idx_pair};
use libfuzzer_sys::fuzz_target;

const SEP: [u8; 4] = [0xFF; 4];
/// Small cap so that a gzip bomb in the input is exercised without using the memory.
const CAP: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let (img, lab) = match data.windows(4).position(|w| w == SEP) {
        Some(i) => (&data[..i], &data[i + 4..]),
        None => (data, data),
    };
    let (pi, pl) = (Path::new("fuzz-images"), Path::new("fuzz-labels"));
    let Ok(img) = decode_maybe_gz(pi, img.to_vec(), CAP) else {
        return;
    };
    let Ok(lab) = decode_maybe_gz(pl, lab.to_vec(), CAP) else {
        return;
    };
    for dims in [None, Some(1), Some(3), Some(4)] {
        if let Ok(a) = parse_idx(pi, &img, dims) {
            let n: usize = a.dims.iter().product();
            assert_eq!(a.data.len(), n, "data length disagrees with the header");
        }
    }
    for classes in [1, 10, 256] {
        if let Ok(d) = parse_idx_pair(pi, &img, pl, &lab, classes) {
            assert_eq!(d.pixels().len(), d.num_samples() * d.image_len());
            assert!(d.labels().iter().all(|&l| (l as usize) < classes));
            assert_eq!(d.class_counts().iter().sum::<usize>(), d.num_samples());
        }
    }
});
