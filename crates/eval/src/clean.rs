//! Clean evaluation: the batches of a split in order, and top-1 counts and accuracy of a model
//! in one route (optionally masked to a class subset).

use advsoup_adapters::{AdaptedVit, Route};
use advsoup_data::folder::ClassSubset;
use advsoup_data::{DataError, ImageBatch, ImageBatcher, ImageDataset, ImageLoader, LoaderConfig};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::EvalError;

/// The batches of `data` in order, without augmentation; a batch holding a sample that cannot
/// be read (a damaged streamed image) is that error, naming the file, and ends the iteration.
pub fn eval_batches<B: Backend>(
    data: &ImageDataset,
    batch_size: usize,
    device: &B::Device,
) -> impl Iterator<Item = Result<ImageBatch<B>, DataError>> {
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
    loader.try_epoch(0)
}

/// Refuses logits holding NaN or ±inf: a model whose weights are not finite would otherwise
/// "evaluate" to the accuracy of a constant prediction.
///
/// # Errors
/// [`EvalError::NonFinite`] naming `what`.
pub fn check_finite<B: Backend>(logits: &Tensor<B, 2>, what: &str) -> Result<(), EvalError> {
    let finite = logits
        .clone()
        .into_data()
        .iter::<f32>()
        .all(|v| v.is_finite());
    if finite {
        Ok(())
    } else {
        Err(EvalError::NonFinite {
            what: what.to_string(),
        })
    }
}

/// Correct top-1 predictions of `model` on `data[range]`; with `mask`, classes outside the
/// subset are never predicted (ImageNet-R/-A's 200 of 1000 classes).
///
/// # Errors
/// A sample that cannot be read; non-finite logits on the first batch ([`check_finite`]).
pub fn correct_count<B: Backend>(
    model: &AdaptedVit<B>,
    data: &ImageDataset,
    range: std::ops::Range<usize>,
    route: &Route<B>,
    mask: Option<&ClassSubset>,
    batch_size: usize,
    device: &B::Device,
) -> Result<usize, EvalError> {
    if range.is_empty() {
        return Ok(0);
    }
    let part;
    let data = if range == (0..data.num_samples()) {
        data
    } else {
        part = data.subset(&range.collect::<Vec<_>>());
        &part
    };
    Ok(top1(model, data, route, mask, batch_size, device)?.0)
}

/// Top-1 accuracy of `model` in `mode` on `data` (0 for an empty set).
///
/// # Errors
/// As [`correct_count`].
pub fn accuracy<B: Backend>(
    model: &AdaptedVit<B>,
    data: &ImageDataset,
    route: &Route<B>,
    batch_size: usize,
    device: &B::Device,
) -> Result<f64, EvalError> {
    let (correct, total) = top1(model, data, route, None, batch_size, device)?;
    Ok(if total == 0 {
        0.0
    } else {
        correct as f64 / total as f64
    })
}

/// `(correct, total)` top-1 predictions on every sample of `data`.
fn top1<B: Backend>(
    model: &AdaptedVit<B>,
    data: &ImageDataset,
    route: &Route<B>,
    mask: Option<&ClassSubset>,
    batch_size: usize,
    device: &B::Device,
) -> Result<(usize, usize), EvalError> {
    let (mut correct, mut total) = (0i64, 0usize);
    for (b, batch) in eval_batches::<B>(data, batch_size, device).enumerate() {
        let batch = batch?;
        let n = batch.targets.dims()[0];
        let logits = model.forward(batch.images, route);
        if b == 0 {
            check_finite(&logits, "the model's logits on the first batch")?;
        }
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
        total += n;
    }
    Ok((correct as usize, total))
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
        let masked =
            correct_count(&model, &data, 0..n, &route, Some(&subset), 3, &device).expect("count");
        assert_eq!(masked, data.labels().iter().filter(|l| **l == 3).count());
        let whole = correct_count(&model, &data, 0..n, &route, None, 3, &device).expect("count");
        // Three contiguous shards (train's `shard_range` for 3 peers).
        let parts: usize = (0..3)
            .map(|rank| n * rank / 3..n * (rank + 1) / 3)
            .map(|r| correct_count(&model, &data, r, &route, None, 2, &device).expect("count"))
            .sum();
        assert_eq!(whole, parts);
    }
}
