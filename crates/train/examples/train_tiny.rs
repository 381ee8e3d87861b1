//! Trains a tiny co-training model (clean and adversarial adapters, PGD in every step) for two
//! optimizer steps on synthetic in-memory images, and prints the losses and the final table.
//! No dataset files and no network: copy this to start your own experiment.
//!
//! ```sh
//! cargo run -p advsoup-train --example train_tiny
//! ```

use advsoup_data::{ImageDataset, Splits};
use advsoup_train::{RunOptions, TrainConfig, train};
use burn::backend::{Autodiff, Flex};

/// The experiment: a ViT with one block of width 16 on 28x28 grey images, 10 classes.
const CONFIG: &str = r#"
name = "tiny"
seed = 7
regime = "co_training"
alpha = 0.5

[model]
preset = "vit_mini_patch4_28"
adapter = "cls_token"
patch_size = 7
embed_dim = 16
depth = 1
num_heads = 2
mlp_ratio = 2.0

[data]
dataset = "fashion-mnist"   # names the format; the images below are passed in directly
held_out = 8
workers = 1

[attack.train]
eps = 0.1
num_steps = 2
step_size = 0.05

[attack.eval]
eps = 0.1
num_steps = 2
step_size = 0.05

[optim]
epochs = 1
batch_size = 8
lr = 1e-3

[eval]
held_out_robust = 4
test_robust = 4
test_attack = "pgd-3"
batch_size = 8
"#;

/// `n` 28x28 grey images: class `k` has a bright band at rows `2k+4..2k+6`, plus a little noise.
fn images(n: usize, salt: usize) -> ImageDataset {
    let mut pixels = Vec::with_capacity(n * 28 * 28);
    for i in 0..n {
        for r in 0..28 {
            for c in 0..28 {
                let noise = ((i * 31 + r * 7 + c * 13 + salt) % 17) as u8;
                let band = r / 2 == i % 10 + 2;
                pixels.push(if band { 200 + noise } else { noise * 3 });
            }
        }
    }
    let labels = (0..n).map(|i| (i % 10) as u32).collect();
    ImageDataset::new([1, 28, 28], pixels, labels, 10).expect("a valid synthetic dataset")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = TrainConfig::parse(CONFIG, "tiny.toml".as_ref(), &[])?;
    // 24 training images, 8 of them held out for the per-epoch metrics: 16 = 2 steps of 8.
    let splits = Splits::from_train_test(
        images(24, 0),
        images(8, 5),
        config.data.held_out,
        config.seed,
    )?;
    let runs = tempfile::tempdir()?;
    let device = Default::default();
    let summary =
        train::<Autodiff<Flex>>(&config, &splits, &RunOptions::new(runs.path()), &device)?;
    for (step, loss) in summary.step_losses.iter().enumerate() {
        println!("step {step}: loss {loss:.4}");
    }
    if let Some(report) = &summary.report {
        println!("\n{}", report.table());
    }
    println!("run directory (removed on exit): {}", summary.dir.display());
    Ok(())
}
