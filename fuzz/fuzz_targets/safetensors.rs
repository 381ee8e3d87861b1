//! The weight-file loaders: advsoup model files and adapter-only files (burn names, tagged
//! metadata) and timm imports (PyTorch layout), all safetensors read by burn-store.
//!
//! Input: byte 0 picks the loader (model / adapter / timm) and the adapter kind; bit 7 of byte 1
//! picks the file: clear = the rest of the input is the file, set = the rest is a list of
//! `(offset: u16 big-endian, byte)` edits applied to a valid file written by this model (so
//! the fuzzer reaches the header's keys, dtypes, shapes and offsets from the first run), with
//! a trailing odd byte truncating the file to that fraction of its length.
//!
//! Oracle: no panic; a file that loads gives a model whose forward pass runs with the right output shape.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use advsoup_adapters::{AdaptedVit, AdaptedVitConfig, AdapterKind, Mode, io};
use advsoup_vit::VitConfig;
use burn::backend::Flex;
use burn::prelude::*;
use libfuzzer_sys::fuzz_target;

type B = Flex;

const KINDS: [AdapterKind; 6] = [
    AdapterKind::None,
    AdapterKind::ClsToken,
    AdapterKind::DualLayerNorm,
    AdapterKind::Bias,
    AdapterKind::Prompt { tokens: 2 },
    AdapterKind::Lora { rank: 2 },
];

fn vit_config() -> VitConfig {
    VitConfig::new().with_img_size(8).with_patch_size(4).with_in_chans(1).with_num_classes(3).with_embed_dim(8).with_depth(1).with_num_heads(2)
        .with_mean(vec![0.5])
        .with_std(vec![0.5])
}

fn model(kind: AdapterKind) -> AdaptedVit<B> {
    AdaptedVitConfig {
        vit: vit_config(),
        adapter: kind,
    }
    .try_init::<B>(&Default::default())
    .expect("valid tiny config")
}

/// Valid files: per kind, (model file, adapter file); then the timm file.
fn bases() -> &'static (Vec<(Vec<u8>, Vec<u8>)>, Vec<u8>) {
    static BASES: OnceLock<(Vec<(Vec<u8>, Vec<u8>)>, Vec<u8>)> = OnceLock::new();
    BASES.get_or_init(|| {
        let per_kind = KINDS
            .iter()
            .map(|&k| {
                let m = model(k);
                (
                    io::to_safetensors(&m, false).expect("model bytes"),
                    io::to_safetensors(&m, true).expect("adapter bytes"),
                )
            })
            .collect();
        let vit = vit_config().init::<B>(&Default::default());
        let timm = advsoup_vit::io::timm_bytes(&vit, Path::new("base")).expect("timm bytes");
        (per_kind, timm)
    })
}

fn edited(base: &[u8], script: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    let mut edits = script.chunks_exact(3);
    for e in &mut edits {
        let at = u16::from_be_bytes([e[0], e[1]]) as usize;
        if !out.is_empty() {
            let i = at % out.len();
            out[i] = e[2];
        }
    }
    if let [cut] = edits.remainder() {
        out.truncate(out.len() * (*cut as usize) / 256);
    }
    out
}

fn check_forward(m: &AdaptedVit<B>) {
    let x = Tensor::<B, 4>::zeros([2, 1, 8, 8], &Default::default());
    let y = m.forward_mode(x, Mode::Soup(0.5));
    assert_eq!(y.dims(), [2, 3]);
}

fuzz_target!(|data: &[u8]| {
    let [sel, mode, rest @ ..] = data else {
        return;
    };
    let (per_kind, timm) = bases();
    let kind_i = (*sel as usize / 3) % KINDS.len();
    let loader = *sel % 3;
    let base: &[u8] = match loader {
        0 => &per_kind[kind_i].0,
        1 => &per_kind[kind_i].1,
        _ => timm,
    };
    let bytes = if mode & 0x80 == 0 {
        rest.to_vec()
    } else {
        edited(base, rest)
    };
    let path = Path::new("fuzz.safetensors");
    match loader {
        0 => {
            if let Ok(m) = io::load_model_bytes(model(KINDS[kind_i]), path, bytes) {
                check_forward(&m);
            }
        }
        1 => {
            if let Ok(m) = io::load_adapter_bytes(model(KINDS[kind_i]), path, bytes) {
                check_forward(&m);
            }
        }
        _ => {
            let config = vit_config();
            // Half the inputs take the normalization from the file's metadata (parsed too).
            let norm = if kind_i % 2 == 0 {
                advsoup_vit::io::NormalizationSource::FromFile
            } else {
                advsoup_vit::io::NormalizationSource::Given(advsoup_vit::io::Normalization::new(
                    vec![0.5],
                    vec![0.5],
                ))
            };
            if let Ok(v) = advsoup_vit::io::load_timm_bytes::<B>(
                path,
                bytes,
                &config,
                &norm,
                &Default::default(),
            ) {
                let x = Tensor::<B, 4>::zeros([2, 1, 8, 8], &Default::default());
                assert_eq!(v.forward(x).dims(), [2, 3]);
            }
        }
    }
});
