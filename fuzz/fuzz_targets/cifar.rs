//! The CIFAR-10 / CIFAR-100 binary reader, in all three label formats.
//!
//! Oracle: no panic; a file that parses has whole records and labels below the class count.
#![no_main]

use std::path::Path;

use advsoup_data::cifar::{CifarFormat, parse_cifar};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [
        CifarFormat::Cifar10,
        CifarFormat::Cifar100Fine,
        CifarFormat::Cifar100Coarse,
    ] {
        if let Ok(d) = parse_cifar(Path::new("fuzz.bin"), data, format) {
            assert_eq!(d.num_samples() * format.record_len(), data.len());
            assert_eq!(d.shape(), [3, 32, 32]);
            assert!(
                d.labels()
                    .iter()
                    .all(|&l| (l as usize) < format.num_classes())
            );
        }
    }
});
