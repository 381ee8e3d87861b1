//! Time a small ViT's forward pass with [`advsoup_bench::measure`] on burn's CPU backend (Flex)
//! and print the record, the way `advsoup bench` measures its steps.
//!
//! ```sh
//! cargo run -p advsoup-bench --example measure
//! ```
//!
//! A few seconds. To measure your own computation, replace the closure: `measure` runs it
//! `warmup` times untimed, then `iters` times, and reports images/s for `batch` images a call.

use advsoup_bench::{BenchPreset, measure, table};
use advsoup_vit::Vit;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::Distribution;

fn main() {
    type B = Flex;
    let device: Device<B> = Default::default();
    B::seed(&device, 0);

    // The ViT-Tiny-like CIFAR model `advsoup bench --preset tiny32` measures.
    let config = BenchPreset::tiny32().vit;
    let model: Vit<B> = config.init(&device);
    let batch = 8;
    let images = Tensor::<B, 4>::random(
        [batch, config.in_chans, config.img_size, config.img_size],
        Distribution::Uniform(0.0, 1.0),
        &device,
    );

    let record = measure("forward", batch, 1, 3, || {
        let logits = model.forward(images.clone());
        // Reading a number back makes a lazy backend finish the work inside the timed call.
        let _ = logits.sum().into_data();
    });

    println!("{}", table(std::slice::from_ref(&record)));
    println!(
        "{}",
        serde_json::to_string_pretty(&record).expect("a record serializes")
    );
}
