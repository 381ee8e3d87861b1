//! Read a cached dataset: train / held-out / test splits, their class counts, and one epoch of
//! augmented batches through the deterministic loader (no network; fetch first with the `fetch`
//! example or `advsoup data fetch`).
//!
//! `cargo run -p advsoup-data --example read_dataset -- [fashion-mnist|mnist|cifar10|cifar100] [DATA_DIR]`

use advsoup_data::{DatasetKind, ImageBatcher, ImageLoader, LoaderConfig, load_splits};
use burn::backend::Flex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let kind: DatasetKind = args.next().as_deref().unwrap_or("fashion-mnist").parse()?;
    let dir = advsoup_data::resolve_data_dir(args.next().as_deref().map(std::path::Path::new))?;
    let held_out = kind.default_held_out();
    let splits = load_splits(kind, &dir, held_out, 0)?;
    for (name, split) in [
        ("train", &splits.train),
        ("held-out", &splits.held_out),
        ("test", &splits.test),
    ] {
        println!(
            "{kind} {name}: {} images of {:?}, per class {:?}",
            split.num_samples(),
            split.shape(),
            split.class_counts()
        );
    }
    let batcher = ImageBatcher::new(kind.default_augment(), kind.num_classes(), 0);
    let config = LoaderConfig {
        batch_size: 256,
        num_workers: 2,
        ..LoaderConfig::default()
    };
    let loader = ImageLoader::<Flex>::new(splits.train, batcher, config, Default::default());
    let (mut batches, mut images, mut sum) = (0usize, 0usize, 0f64);
    for batch in loader.epoch(0) {
        batches += 1;
        images += batch.indices.len();
        sum += f64::from(batch.images.mean().into_scalar());
    }
    println!(
        "epoch 0: {batches} batches, {images} images, mean pixel {:.4} (in [0, 1]; not normalized)",
        sum / batches.max(1) as f64
    );
    Ok(())
}
