//! A whole robust evaluation in one file: a tiny random ViT with a CLS-token adapter on burn's
//! CPU backend, a synthetic dataset, clean accuracy and PGD-10 robust accuracy.
//! No files, no network; runs in a few seconds:
//!
//! ```text
//! cargo run -p advsoup-eval --example evaluate
//! ```
//!
//! To evaluate a trained run instead, load its model (`advsoup_adapters::io::load_model`) and
//! its test split, and keep the rest.

use advsoup_adapters::{AdaptedVitConfig, AdapterKind, Mode, Route};
use advsoup_attacks::{Evaluator, ThreatModel};
use advsoup_data::ImageDataset;
use advsoup_eval::EvalJob;
use advsoup_vit::VitConfig;
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::prelude::*;

/// Attacks need input gradients: the autodiff backend over Flex (CPU).
type AD = Autodiff<Flex>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    <Flex as Backend>::seed(&device, 0);

    // 16x16 grey images, patch 4, 4 classes, one block of width 32 with 2 heads.
    let vit = VitConfig::new()
        .with_img_size(16)
        .with_patch_size(4)
        .with_in_chans(1)
        .with_num_classes(4)
        .with_embed_dim(32)
        .with_depth(1)
        .with_num_heads(2)
        .with_mean(vec![0.5])
        .with_std(vec![0.5]);
    let model = AdaptedVitConfig {
        vit,
        adapter: AdapterKind::ClsToken,
    }
    .try_init::<AD>(&device)?;
    // Evaluation runs on the inner backend (no autodiff, dropout off). burn initializes
    // parameters lazily: reading them once fixes their values for every copy the job makes.
    let model = model.valid();
    let _ = advsoup_adapters::io::canonical_bytes(&model, false);

    // 32 synthetic images: class k is a bright horizontal band at rows 4k..4k+4.
    let n = 32;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let class = i % 4;
        for row in 0..16 {
            for col in 0..16 {
                let band = row / 4 == class;
                pixels.push(if band {
                    220
                } else {
                    ((row * 7 + col * 3 + i) % 60) as u8
                });
            }
        }
        labels.push(class as u32);
    }
    let data = ImageDataset::new([1, 16, 16], pixels, labels, 4)?;

    // Clean accuracy of the robust mode, then its accuracy under PGD-10 at eps = 8/255.
    let clean =
        advsoup_eval::accuracy(&model, &data, &Route::mode(Mode::Adversarial), 16, &device)?;
    let evaluator = Evaluator::preset("pgd-10", ThreatModel::Linf, 8.0 / 255.0, 0)?;
    let report = EvalJob::new(evaluator, Mode::Adversarial)
        .batch_size(16)
        .first(n)
        .run::<AD>(&model, &data, &device)?
        .ok_or("no samples")?;

    println!("clean accuracy:  {:.2}%", 100.0 * clean);
    println!(
        "robust accuracy: {:.2}% (pgd-10, eps 8/255, {} samples, {} forward passes per sample)",
        100.0 * report.robust_accuracy,
        report.n,
        report.cost.sample_forwards / report.n as u64
    );
    Ok(())
}
