//! Tiny model for this crate's tests (28x28 grey images, 10 classes, embed_dim 16); the data is
//! the shared fixture, `advsoup_data::testing::tiny_data`.

use advsoup_adapters::{AdaptedVit, AdaptedVitConfig, AdapterKind, Mode};
use advsoup_data::ImageDataset;
use advsoup_vit::VitConfig;
use burn::backend::Flex;
use burn::module::Param;
use burn::prelude::*;

/// A one-block cls-token model whose two tokens differ, so that β matters.
pub(crate) fn tiny_model(device: &Device<Flex>) -> AdaptedVit<Flex> {
    <Flex as Backend>::seed(device, 3);
    let config = AdaptedVitConfig {
        vit: VitConfig::new()
            .with_img_size(28)
            .with_patch_size(7)
            .with_in_chans(1)
            .with_num_classes(10)
            .with_embed_dim(16)
            .with_depth(1)
            .with_num_heads(2)
            .with_mean(vec![0.5])
            .with_std(vec![0.5]),
        adapter: AdapterKind::ClsToken,
    };
    let mut model = config.try_init::<Flex>(device).expect("tiny model");
    // Make the two tokens differ so that β matters.
    model.adapter.cls_token_adv = Some(Param::from_tensor(Tensor::random(
        [1, 1, 16],
        burn::tensor::Distribution::Normal(0.0, 2.0),
        device,
    )));
    model
}

pub(crate) use advsoup_data::testing::tiny_data;

/// `data` relabelled with `model`'s predictions in `mode` (so that mode scores 100%).
pub(crate) fn labelled_by(
    model: &AdaptedVit<Flex>,
    mode: Mode,
    data: &ImageDataset,
    device: &Device<Flex>,
) -> ImageDataset {
    let mut labels = Vec::new();
    for batch in advsoup_eval::eval_batches::<Flex>(data, 64, device) {
        let pred = model
            .forward_mode(batch.expect("batch").images, mode)
            .argmax(1);
        labels.extend(
            pred.into_data()
                .iter::<i64>()
                .map(|p| u32::try_from(p).expect("class")),
        );
    }
    ImageDataset::new(data.shape(), data.pixels().to_vec(), labels, 10).expect("relabel")
}
