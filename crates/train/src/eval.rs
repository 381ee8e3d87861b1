//! Evaluation of an adapted model: clean accuracy in a mode, robust accuracy of a mode under an
//! attack ensemble from `advsoup-attacks`, batched and merged, counts over a shard of a split
//! (data-parallel runs sum them), and distribution-shift sets in ImageFolder layouts
//! (ImageNet-C/-R/-A/-Sketch) with logits masked to the classes a set holds.

use advsoup_adapters::{AdaptedVit, Mode, Route};
use advsoup_attacks::{EvalReport, Evaluation, Evaluator};
use advsoup_data::folder::{
    ClassIndex, ClassSubset, FolderOptions, load_image_folder, load_imagenet_c,
};
use advsoup_data::{ImageBatch, ImageBatcher, ImageDataset, ImageLoader, LoaderConfig};

use crate::config::{ShiftLayout, ShiftSection};
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

/// The slice of `0..n` that `peer` evaluates (contiguous, as even as possible).
pub(crate) fn shard_range(n: usize, peer: crate::parallel::Peer) -> std::ops::Range<usize> {
    n * peer.rank / peer.world..n * (peer.rank + 1) / peer.world
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

/// Accuracy of both modes on one distribution-shift test set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShiftResult {
    /// `name` or `name/corruption/severity`.
    pub name: String,
    /// Samples.
    pub n: usize,
    /// Classes present (logits of the others are masked when fewer than the model's).
    pub classes: usize,
    /// Top-1 of the clean mode.
    pub clean_mode_acc: f64,
    /// Top-1 of the robust mode.
    pub robust_mode_acc: f64,
}

/// A loaded shifted set: its report name, the images (labels in the full class index) and the
/// class subset to mask to, if it holds fewer classes than the index.
pub type ShiftSet = (String, ImageDataset, Option<ClassSubset>);

/// Loads the sets of one shift section (every corruption x severity of an ImageNet-C tree),
/// decoded as the validation split is (shorter side 8/7 of `img_size`, center crop).
pub fn load_shift(
    section: &ShiftSection,
    index: &ClassIndex,
    channels: usize,
    img_size: usize,
) -> Result<Vec<ShiftSet>, crate::TrainError> {
    let img = img_size as u32;
    let opts = FolderOptions {
        channels,
        resize_shorter: Some((img * 8).div_ceil(7)),
        center_crop: Some(img),
    };
    let mut out = Vec::new();
    match section.layout {
        ShiftLayout::Folder => {
            let subset = ClassSubset::from_folder(&section.dir, index)?;
            let data = load_image_folder(&section.dir, index, &opts)?;
            let mask = (subset.indices().len() < index.len()).then_some(subset);
            out.push((section.name.clone(), data, mask));
        }
        ShiftLayout::ImagenetC => {
            for c in &section.corruptions {
                for &sev in &section.severities {
                    let data = load_imagenet_c(&section.dir, c, sev, index, &opts)?;
                    out.push((format!("{}/{c}/{sev}", section.name), data, None));
                }
            }
        }
    }
    Ok(out)
}

/// Samples of `data[range]` that stay correct under `evaluator` (ids are dataset indices, so a
/// sample's random start does not depend on the shard it is evaluated in).
pub fn robust_count<AD: AutodiffBackend>(
    model: &AdaptedVit<AD::InnerBackend>,
    mode: Mode,
    evaluator: &Evaluator,
    data: &ImageDataset,
    range: std::ops::Range<usize>,
    batch_size: usize,
    device: &AD::Device,
) -> usize {
    robust_eval_range_each::<AD>(
        model,
        mode,
        evaluator,
        data,
        range,
        batch_size,
        device,
        |_| {},
    )
    .map_or(0, |r| r.robust)
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

/// Robust accuracy of `model` in `mode` on the first `n` samples of `data`, under `evaluator`,
/// attacking a frozen deterministic copy (sample ids are dataset indices).
pub fn robust_eval<AD: AutodiffBackend>(
    model: &AdaptedVit<AD::InnerBackend>,
    mode: Mode,
    evaluator: &Evaluator,
    data: &ImageDataset,
    n: usize,
    batch_size: usize,
    device: &AD::Device,
) -> Option<EvalReport> {
    robust_eval_each::<AD>(model, mode, evaluator, data, n, batch_size, device, |_| {})
}

/// [`robust_eval`], also handing every batch's [`Evaluation`] (with its adversarial examples) to
/// `on_batch` as it is produced, so callers can keep x_adv without holding the whole set.
#[allow(clippy::too_many_arguments)]
pub fn robust_eval_each<AD: AutodiffBackend>(
    model: &AdaptedVit<AD::InnerBackend>,
    mode: Mode,
    evaluator: &Evaluator,
    data: &ImageDataset,
    n: usize,
    batch_size: usize,
    device: &AD::Device,
    on_batch: impl FnMut(&Evaluation<AD::InnerBackend>),
) -> Option<EvalReport> {
    robust_eval_range_each::<AD>(
        model,
        mode,
        evaluator,
        data,
        0..n,
        batch_size,
        device,
        on_batch,
    )
}

/// [`robust_eval_each`] on the samples `range` of `data` (clamped to its size). Sample ids stay
/// dataset indices, so evaluating `0..a` and `a..n` separately and merging equals evaluating
/// `0..n` (the attacks' random starts are keyed by id): evaluations can be chunked, resumed
/// and sharded.
#[allow(clippy::too_many_arguments)]
pub fn robust_eval_range_each<AD: AutodiffBackend>(
    model: &AdaptedVit<AD::InnerBackend>,
    mode: Mode,
    evaluator: &Evaluator,
    data: &ImageDataset,
    range: std::ops::Range<usize>,
    batch_size: usize,
    device: &AD::Device,
    mut on_batch: impl FnMut(&Evaluation<AD::InnerBackend>),
) -> Option<EvalReport> {
    let end = range.end.min(data.num_samples());
    let start = range.start.min(end);
    if start == end {
        return None;
    }
    let subset = data.subset(&(start..end).collect::<Vec<_>>());
    let frozen = AdaptedVit::<AD>::from_inner(model.clone())
        .deterministic()
        .no_grad();
    let route = Route::mode(mode);
    let f = |x: Tensor<AD, 4>| frozen.forward(x, &route);
    let mut merged: Option<EvalReport> = None;
    for batch in eval_batches::<AD::InnerBackend>(&subset, batch_size, device) {
        let ids: Vec<u64> = batch.indices.iter().map(|i| (start + *i) as u64).collect();
        let evaluation = evaluator.evaluate::<AD, _>(&f, &batch.images, &batch.targets, &ids);
        on_batch(&evaluation);
        match merged.as_mut() {
            Some(m) => m.merge(evaluation.report),
            None => merged = Some(evaluation.report),
        }
    }
    merged
}

/// The inner (evaluation) model of a training model.
pub fn inner<AD: AutodiffBackend>(model: &AdaptedVit<AD>) -> AdaptedVit<AD::InnerBackend> {
    model.valid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use advsoup_adapters::{AdaptedVitConfig, AdapterKind};
    use advsoup_vit::VitConfig;
    use burn::backend::Flex;

    #[test]
    fn masked_counts_predict_only_the_subset_and_shards_add_up() {
        let _rng = crate::test_support::serial();
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
        let peers = (0..3).map(|rank| crate::parallel::Peer { rank, world: 3 });
        let parts: usize = peers
            .map(|p| correct_count(&model, &data, shard_range(n, p), &route, None, 2, &device))
            .sum();
        assert_eq!(whole, parts);
    }
}
