//! Build a ViT by name, run it, and move its weights to and from timm's layout.
//!
//! ```sh
//! cargo run -p advsoup-vit --example timm_roundtrip            # a small random ViT
//! cargo run -p advsoup-vit --example timm_roundtrip -- vit.safetensors 0.5,0.5,0.5 0.5,0.5,0.5
//! ```
//! With a file (timm's `vit_base_patch16_224` weights saved with safetensors) and its mean and
//! std (timm's `pretrained_cfg`), it loads those instead; timm files carry no normalization, so
//! it must be given.
//!
//! Copy this into your project with `advsoup-vit` as a dependency; burn comes from
//! `advsoup_vit::burn`.

use advsoup_vit::VitConfig;
use advsoup_vit::burn::backend::Flex;
use advsoup_vit::burn::prelude::*;
use advsoup_vit::io::{Normalization, NormalizationSource, load_timm, save_timm};

fn list(s: &str) -> Vec<f64> {
    s.split(',').filter_map(|v| v.trim().parse().ok()).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, model) = if let [file, mean, std] = &args[..] {
        let config = VitConfig::vit_base_patch16_224();
        let norm = NormalizationSource::Given(Normalization::new(list(mean), list(std)));
        let model = load_timm::<Flex>(file.as_ref(), &config, &norm, &device)?;
        (config, model)
    } else {
        // A ViT for 32x32 colour images, every size named.
        let config = VitConfig::new()
            .with_img_size(32)
            .with_patch_size(8)
            .with_num_classes(10)
            .with_embed_dim(64)
            .with_depth(2)
            .with_num_heads(4);
        let model = config.try_init::<Flex>(&device)?;
        (config, model)
    };
    println!("{} parameters", config.num_params());

    // Pixels in [0, 1]: the model normalizes inside.
    let size = config.img_size;
    let x = Tensor::<Flex, 4>::random(
        [2, config.in_chans, size, size],
        advsoup_vit::burn::tensor::Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let logits = model.forward(x.clone());
    println!("logits {:?}", logits.dims());

    // Back to timm's layout (with the normalization recorded), and in again from the file alone.
    let dir = std::env::temp_dir().join(format!("advsoup-example-{}", std::process::id()));
    let path = dir.join("model.safetensors");
    save_timm(&model, &path)?;
    let back = load_timm::<Flex>(&path, &config, &NormalizationSource::FromFile, &device)?;
    let diff: f32 = (back.forward(x) - logits).abs().max().into_scalar().elem();
    println!(
        "re-imported from {}: max logit difference {diff}",
        path.display()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
