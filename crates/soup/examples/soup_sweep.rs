//! A β sweep of a tiny random adapted ViT on synthetic data: three soups, each evaluated clean
//! and under PGD-2 attacking the soup itself, and under one corruption; prints the table.
//!
//! `cargo run -p advsoup-soup --example soup_sweep` (a few seconds). A real sweep loads a
//! trained model (`advsoup soup sweep --run RUN`); everything else is the same call.
use advsoup_adapters::{AdaptedVitConfig, AdapterKind};
use advsoup_data::ImageDataset;
use advsoup_data::corrupt::Corruption;
use advsoup_soup::{Subject, SweepOptions, build_attacks, sweep};
use advsoup_vit::VitConfig;
use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    type AD = Autodiff<Flex>;
    let device = Default::default();
    <Flex as Backend>::seed(&device, 0);
    // 16x16 grey images, patch 4, embed_dim 16, one block: a soup of two cls tokens.
    let vit = VitConfig::new()
        .with_img_size(16)
        .with_patch_size(4)
        .with_in_chans(1)
        .with_num_classes(10)
        .with_embed_dim(16)
        .with_depth(1)
        .with_num_heads(2)
        .with_mean(vec![0.5])
        .with_std(vec![0.5]);
    let mut model = AdaptedVitConfig {
        vit,
        adapter: AdapterKind::ClsToken,
    }
    .try_init::<Flex>(&device)?;
    // A fresh model's two tokens are equal; make the adversarial one differ so that β matters
    // (a trained model's differ by training).
    model.adapter.cls_token_adv = Some(Param::from_tensor(Tensor::random(
        [1, 1, 16],
        Distribution::Normal(0.0, 2.0),
        &device,
    )));

    // 32 synthetic images: brightness by class plus a little pattern.
    let n = 32;
    let labels: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let pixels: Vec<u8> = labels
        .iter()
        .enumerate()
        .flat_map(|(i, &l)| {
            (0..256).map(move |p| ((20 * l as usize + (p * 7 + i) % 40) % 256) as u8)
        })
        .collect();
    let test = ImageDataset::new([1, 16, 16], pixels, labels, 10)?;

    let opts = SweepOptions {
        betas: vec![0.0, 0.5, 1.0],
        n_clean: n,
        n_robust: 8,
        n_shift: 16,
        attacks: build_attacks("pgd-2", 8.0 / 255.0, 0, 10)?,
        corruptions: vec![Corruption::Contrast],
        severity: 3,
        seed: 0,
        batch_size: 16,
        threads: 1,
    };
    let subject = Subject {
        model: &model,
        name: "tiny-random",
        dataset: "synthetic/test",
    };
    let (records, _cards) = sweep::<AD>(subject, &test, &opts, &device, None, &mut |row| {
        eprintln!("β={} done", row.beta);
    })?;
    print!("{}", records.table());
    Ok(())
}
