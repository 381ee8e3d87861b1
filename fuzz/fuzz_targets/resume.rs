//! The resume guard's readers (`advsoup_train::resume::check`): arbitrary bytes as a run's
//! `fingerprint.json`, `config.toml`, checkpoint `state.json` and `history.jsonl`, checked
//! against the tiny experiment. The input is the four files joined by `FF FF FF FF`; an empty
//! part is an absent file. Also feeds each part to the records' own parsers.
//!
//! Oracle: no panic; an accepted resume records only fields on the resumable list, and every
//! refusal is one line.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use advsoup_records::resume::{parse_fingerprint, parse_history};
use advsoup_train::TrainConfig;
use advsoup_train::resume::{RecordedRun, check, is_resumable};
use libfuzzer_sys::fuzz_target;

fn config() -> &'static TrainConfig {
    static CONFIG: OnceLock<TrainConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let text = include_str!("../../crates/train/fixtures/tiny.toml");
        TrainConfig::parse(text, Path::new("tiny.toml"), &[]).expect("the tiny config")
    })
}

fuzz_target!(|data: &[u8]| {
    let parts = split(data);
    let part = |i: usize| parts.get(i).copied().filter(|p| !p.is_empty());
    let files = RecordedRun {
        fingerprint: part(0),
        config: part(1),
        state: part(2),
        history: part(3),
    };
    let run = Path::new("runs/tiny");
    for p in parts.iter().filter_map(|p| std::str::from_utf8(p).ok()) {
        let _ = parse_fingerprint(p, &run.join("fingerprint.json"));
        let _ = parse_history(p, &run.join("history.jsonl"));
    }
    match check(run, &run.join("checkpoint/state.json"), &files, config()) {
        Ok(resume) => {
            for c in resume.record.iter().flat_map(|r| &r.changed) {
                assert!(is_resumable(&c.field), "recorded a fingerprinted field: {c}");
            }
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "not one line: {line}");
        }
    }
});

/// `data` cut at every `FF FF FF FF`.
fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(4).position(|w| w == [0xff; 4]) {
        out.push(&rest[..at]);
        rest = &rest[at + 4..];
    }
    out.push(rest);
    out
}
