//! Throughput of the batcher + loader (images/s) on cached Fashion-MNIST with augmentation.
//!
//! `cargo run --release -p advsoup-data --example bench_batcher -- [WORKERS] [BATCH] [DATA_DIR]`

use advsoup_data::{
    AugmentConfig, DatasetKind, ImageBatcher, ImageLoader, LoaderConfig, bench_loader,
    load_train_test, resolve_data_dir,
};
use burn::backend::Flex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let workers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let batch: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(128);
    let dir = resolve_data_dir(args.next().as_deref().map(std::path::Path::new))?;
    let (train, _) = load_train_test(DatasetKind::FashionMnist, &dir)?;
    for (name, aug) in [
        ("none", AugmentConfig::none()),
        ("crop", AugmentConfig::digits()),
        (
            "crop+mixup/cutmix+ls",
            AugmentConfig::digits()
                .with_mixing(0.8, 1.0)
                .with_label_smoothing(0.1),
        ),
    ] {
        let loader = ImageLoader::<Flex>::new(
            train.clone(),
            ImageBatcher::new(aug, 10, 0),
            LoaderConfig {
                batch_size: batch,
                num_workers: workers,
                shuffle: true,
                drop_last: false,
                seed: 0,
            },
            Default::default(),
        );
        let ips = bench_loader(&loader, 1);
        println!(
            "fashion-mnist train (60000 imgs), batch {batch}, {workers} workers, aug {name}: {ips:.0} images/s"
        );
    }
    Ok(())
}
