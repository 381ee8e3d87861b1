//! Clean evaluation: the batches of a split in order, and top-1 counts and accuracy of a model
//! in one route (optionally masked to a class subset).

use advsoup_adapters::{AdaptedVit, Route};
use advsoup_data::folder::ClassSubset;
use advsoup_data::{ImageBatch, ImageBatcher, ImageDataset, ImageLoader, LoaderConfig};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// The batches of `data` in order, without augmentation.
pub fn eval_batches<B: Backend>(
    data: &ImageDataset,
    batch_size: usize,
    device: &B::Device,
) -> impl Iterator<Item = ImageBatch<B>> {
    let loader = ImageLoader::<B>::new(
        data.clone(),
        ImageBatcher::eval(data.num_classes()),
        LoaderConfig {
            batch_size,
            num_workers: 0,
            shuffle: false,
            drop_last: false,
            seed: 0,
        },
        device.clone(),
    );
    loader.epoch(0)
}

/// Correct top-1 predictions of `model` on `data[range]`; with `mask`, classes outside the
/// subset are never predicted (ImageNet-R/-A's 200 of 1000 classes).
pub fn correct_count<B: Backend>(
    model: &AdaptedVit<B>,
    data: &ImageDataset,
    range: std::ops::Range<usize>,
    route: &Route<B>,
    mask: Option<&ClassSubset>,
    batch_size: usize,
    device: &B::Device,
) -> usize {
    if range.is_empty() {
        return 0;
    }
    let part;
    let data = if range == (0..data.num_samples()) {
        data
    } else {
        part = data.subset(&range.collect::<Vec<_>>());
        &part
    };
    let mut correct = 0i64;
    for batch in eval_batches::<B>(data, batch_size, device) {
        let n = batch.targets.dims()[0];
        let logits = model.forward(batch.images, route);
        let logits = match mask {
            Some(m) => m.mask_logits(logits),
            None => logits,
        };
        let pred = logits.argmax(1).reshape([n]);
        correct += pred
            .equal(batch.targets)
            .int()
            .sum()
            .into_scalar()
            .elem::<i64>();
    }
    correct as usize
}

/// Top-1 accuracy of `model` in `mode` on `data`.
pub fn accuracy<B: Backend>(
    model: &AdaptedVit<B>,
    data: &ImageDataset,
    route: &Route<B>,
    batch_size: usize,
    device: &B::Device,
) -> f64 {
    let mut correct = 0i64;
    let mut total = 0usize;
    for batch in eval_batches::<B>(data, batch_size, device) {
        let n = batch.targets.dims()[0];
        let pred = model.forward(batch.images, route).argmax(1).reshape([n]);
        correct += pred
            .equal(batch.targets)
            .int()
            .sum()
            .into_scalar()
            .elem::<i64>();
        total += n;
    }
    if total == 0 {
        0.0
    } else {
        correct as f64 / total as f64
    }
}

/// The inner (evaluation) model of a training model.
pub fn inner<AD: AutodiffBackend>(model: &AdaptedVit<AD>) -> AdaptedVit<AD::InnerBackend> {
    model.valid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use advsoup_adapters::{AdaptedVitConfig, AdapterKind, Mode};
    use advsoup_data::folder::ClassIndex;
    use advsoup_vit::VitConfig;
    use burn::backend::Flex;

    #[test]
    fn masked_counts_predict_only_the_subset_and_shards_add_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names: String = (0..10).map(|c| format!("n{c:02}\n")).collect();
        std::fs::write(dir.path().join("classes.txt"), names).expect("index");
        let index = ClassIndex::read(&dir.path().join("classes.txt")).expect("index");
        std::fs::create_dir_all(dir.path().join("r/n03")).expect("mkdir");
        let subset = ClassSubset::from_folder(&dir.path().join("r"), &index).expect("subset");
        let device = Default::default();
        let vit = VitConfig::new()
            .with_img_size(8)
            .with_patch_size(4)
            .with_in_chans(1)
            .with_num_classes(10)
            .with_embed_dim(16)
            .with_depth(1)
            .with_num_heads(2)
            .with_mean(vec![0.5])
            .with_std(vec![0.5]);
        let model = AdaptedVitConfig {
            vit,
            adapter: AdapterKind::ClsToken,
        }
        .try_init::<Flex>(&device)
        .expect("model");
        let n = 7;
        let pixels = (0..n * 64).map(|i| (i * 37 % 251) as u8).collect();
        let labels = (0..n as u32).map(|i| [3, 1, 3][i as usize % 3]).collect();
        let data = ImageDataset::new([1, 8, 8], pixels, labels, 10).expect("data");
        let route = Route::mode(Mode::Clean);
        // Only class 3 can be predicted, so exactly the samples labelled 3 are correct.
        let masked = correct_count(&model, &data, 0..n, &route, Some(&subset), 3, &device);
        assert_eq!(masked, data.labels().iter().filter(|l| **l == 3).count());
        let whole = correct_count(&model, &data, 0..n, &route, None, 3, &device);
        // Three contiguous shards (train's `shard_range` for 3 peers).
        let parts: usize = (0..3)
            .map(|rank| n * rank / 3..n * (rank + 1) / 3)
            .map(|r| correct_count(&model, &data, r, &route, None, 2, &device))
            .sum();
        assert_eq!(whole, parts);
    }
}
