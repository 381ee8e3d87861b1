//! One model, two modes: route a mixed batch through the clean and adversarial adapters in one
//! forward pass, switch modes with one token, and sweep soups between them.
//!
//! ```sh
//! cargo run -p advsoup-adapters --example modes
//! ```
//! Copy this into your project with `advsoup-adapters` and `advsoup-vit` as dependencies; burn
//! comes from `advsoup_adapters::burn`.

use advsoup_adapters::burn::backend::Flex;
use advsoup_adapters::burn::module::Param;
use advsoup_adapters::burn::prelude::*;
use advsoup_adapters::burn::tensor::Distribution;
use advsoup_adapters::{AdaptedVitConfig, AdapterKind, Mode, Route};
use advsoup_vit::VitConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let vit = VitConfig::new()
        .with_img_size(28)
        .with_patch_size(7)
        .with_in_chans(1)
        .with_num_classes(10)
        .with_embed_dim(32)
        .with_depth(2)
        .with_num_heads(4)
        .with_mean(vec![0.286])
        .with_std(vec![0.353]);
    for adapter in [AdapterKind::ClsToken, AdapterKind::DualLayerNorm] {
        let model = AdaptedVitConfig {
            vit: vit.clone(),
            adapter,
        }
        .try_init::<Flex>(&device)?;
        println!(
            "{adapter}: {} domain-specific parameters per domain",
            model.params_per_domain()
        );
    }

    let mut model = AdaptedVitConfig {
        vit,
        adapter: AdapterKind::ClsToken,
    }
    .try_init::<Flex>(&device)?;
    // At initialization the adversarial token is a copy of the clean one; give it its own
    // values, as co-training would (here: random), so the two modes differ.
    model.adapter.cls_token_adv = Some(Param::from_tensor(Tensor::random(
        [1, 1, 32],
        Distribution::Normal(0.0, 1.0),
        &device,
    )));
    let x = Tensor::<Flex, 4>::random([4, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);

    // Co-training's mixed batch: samples 0-1 clean, 2-3 adversarial, ONE forward pass.
    let mixed = model.forward(x.clone(), &Route::split(2, 2, &device));
    println!("mixed batch logits {:?}", mixed.dims());

    // The soup endpoints are the two modes exactly; in between, one model per beta.
    let clean = model.forward_mode(x.clone(), Mode::Clean);
    let robust = model.forward_mode(x.clone(), Mode::Adversarial);
    for beta in [0.0f32, 0.25, 0.5, 0.75, 1.0] {
        let soup = model.forward_mode(x.clone(), Mode::Soup(beta));
        let to = |t: &Tensor<Flex, 2>| -> f32 {
            (soup.clone() - t.clone()).abs().max().into_scalar().elem()
        };
        println!(
            "beta {beta:.2}: max |soup - clean| {:.3e}, max |soup - robust| {:.3e}",
            to(&clean),
            to(&robust)
        );
    }
    Ok(())
}
