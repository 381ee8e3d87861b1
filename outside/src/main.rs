//! Calls each advsoup library crate once, through its public API only, with burn taken from
//! `advsoup_vit::burn` (the re-export), as a user's project would. Prints one line per crate and
//! exits non-zero on the first failure.

use std::error::Error;

use advsoup_adapters::{AdaptedVit, AdaptedVitConfig, AdapterKind, Mode, Route};
use advsoup_attacks::{Attack, PgdConfig, ThreatModel};
use advsoup_vit::VitConfig;
use advsoup_vit::burn::backend::{Autodiff, Flex};
use advsoup_vit::burn::module::AutodiffModule;
use advsoup_vit::burn::prelude::*;
use advsoup_vit::io::{NormalizationSource, load_timm, save_timm};

type B = Flex;
type AD = Autodiff<Flex>;
type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn tiny_vit() -> VitConfig {
    VitConfig::new()
        .with_img_size(8)
        .with_patch_size(4)
        .with_in_chans(1)
        .with_num_classes(3)
        .with_embed_dim(16)
        .with_depth(1)
        .with_num_heads(2)
        .with_mean(vec![0.5])
        .with_std(vec![0.5])
}

/// vit: build, forward, export to timm's layout and load it back (normalization from the file).
fn vit(dir: &std::path::Path) -> Result<()> {
    let device = Default::default();
    let model = tiny_vit().try_init::<B>(&device)?;
    let x = Tensor::<B, 4>::full([2, 1, 8, 8], 0.25, &device);
    let logits = model.forward(x.clone());
    let path = dir.join("vit.safetensors");
    save_timm(&model, &path)?;
    let back = load_timm::<B>(&path, &tiny_vit(), &NormalizationSource::FromFile, &device)?;
    let again = back.forward(x);
    logits.into_data().assert_eq(&again.into_data(), true);
    println!("vit: forward, timm export and import agree");
    Ok(())
}

fn adapted(device: &Device<AD>) -> Result<AdaptedVit<AD>> {
    Ok(AdaptedVitConfig {
        vit: tiny_vit(),
        adapter: AdapterKind::ClsToken,
    }
    .try_init::<AD>(device)?)
}

/// adapters: one mixed batch routed per sample; a soup's endpoints are the two modes.
fn adapters() -> Result<()> {
    let device = Default::default();
    let model = adapted(&device)?.valid();
    let x = Tensor::<B, 4>::full([4, 1, 8, 8], 0.5, &device);
    let mixed = model.forward(x.clone(), &Route::split(2, 2, &device));
    assert_eq!(mixed.dims(), [4, 3]);
    let clean = model.forward_mode(x.clone(), Mode::Clean);
    model
        .forward_mode(x, Mode::Soup(1.0))
        .into_data()
        .assert_eq(&clean.into_data(), true);
    println!(
        "adapters: {} domain-specific parameters per domain",
        model.params_per_domain()
    );
    Ok(())
}

/// attacks: PGD on the robust mode through a logits closure stays in the eps-ball.
fn attacks() -> Result<()> {
    let device = Default::default();
    let model = adapted(&device)?;
    let frozen = AdaptedVit::<AD>::from_inner(model.valid()).no_grad();
    let f = |x: Tensor<AD, 4>| frozen.forward_mode(x, Mode::Adversarial);
    let x = Tensor::<B, 4>::full([2, 1, 8, 8], 0.5, &device);
    let y = Tensor::<B, 1, Int>::from_ints([0, 1], &device);
    let eps = 0.1;
    let pgd = PgdConfig::new(ThreatModel::Linf, eps, 3).init()?;
    let out = pgd.attack::<AD, _>(&f, &x, &y, &[0, 1], 7);
    let linf: f32 = (out.x_adv - x).abs().max().into_scalar().elem();
    assert!(linf <= eps as f32 + 1e-6, "|delta| = {linf}");
    println!("attacks: PGD-3 perturbation {linf:.4} <= eps {eps}");
    Ok(())
}

/// soup: interpolating two models half-way gives the mean of their parameters.
fn soup() -> Result<()> {
    let device = Default::default();
    let a = adapted(&device)?.valid();
    let b = adapted(&device)?.valid();
    let mid = advsoup_soup::interpolate(&a, &b, 0.5);
    let expect = (a.vit.cls_token.val() + b.vit.cls_token.val()) / 2.0;
    mid.vit
        .cls_token
        .val()
        .into_data()
        .assert_approx_eq::<f32>(&expect.into_data(), Default::default());
    println!("soup: interpolate(a, b, 0.5) is the mean of a and b");
    Ok(())
}

/// data: an IDX pair written and read back; io: an atomic write and its hash.
fn data_and_io(dir: &std::path::Path) -> Result<()> {
    let pixels: Vec<u8> = (0..4 * 8 * 8).map(|i| (i % 251) as u8).collect();
    let (images, labels) = (dir.join("images.idx"), dir.join("labels.idx"));
    advsoup_data::idx::write_idx(&images, &[4, 8, 8], &pixels)?;
    advsoup_data::idx::write_idx(&labels, &[4], &[0, 1, 2, 1])?;
    let data = advsoup_data::idx::load_idx_pair(&images, &labels, 3)?;
    assert_eq!((data.num_samples(), data.labels()), (4, &[0, 1, 2, 1][..]));
    println!(
        "data: read {} IDX images of {:?}",
        data.num_samples(),
        data.shape()
    );

    let path = dir.join("note.txt");
    advsoup_io::write_atomic(&path, b"abc")?;
    let hash = advsoup_io::sha256_file(&path)?;
    assert_eq!(hash, advsoup_io::sha256_hex(b"abc"));
    println!("io: atomic write, sha256 {}", &hash[..12]);
    Ok(())
}

/// eval: one evaluation job (PGD-2 on the robust mode) over a small dataset.
fn eval() -> Result<()> {
    let device = Default::default();
    let model = adapted(&device)?.valid();
    let data = advsoup_data::ImageDataset::new([1, 8, 8], vec![100; 4 * 64], vec![0, 1, 2, 0], 3)?;
    let evaluator = advsoup_attacks::Evaluator::preset("pgd-2", ThreatModel::Linf, 0.1, 0)?;
    let report = advsoup_eval::EvalJob::new(evaluator, Mode::Adversarial)
        .batch_size(2)
        .run::<AD>(&model, &data, &device)?
        .ok_or("no samples evaluated")?;
    assert!(report.robust_accuracy <= report.clean_accuracy);
    println!(
        "eval: clean {:.2} robust {:.2} on {} samples",
        report.clean_accuracy, report.robust_accuracy, report.n
    );
    Ok(())
}

/// train: two co-training steps on synthetic images; records: its final.json read back typed.
fn train_and_records(dir: &std::path::Path) -> Result<()> {
    let text = r#"
name = "outside"
seed = 1
regime = "co_training"
[model]
preset = "vit_mini_patch4_28"
adapter = "cls_token"
patch_size = 7
embed_dim = 16
depth = 1
num_heads = 2
[data]
dataset = "fashion-mnist"
held_out = 4
workers = 0
[attack.train]
eps = 0.1
num_steps = 1
step_size = 0.1
[attack.eval]
eps = 0.1
num_steps = 1
step_size = 0.1
[optim]
epochs = 1
batch_size = 4
lr = 1e-3
[eval]
held_out_robust = 2
test_robust = 2
test_attack = "pgd-2"
batch_size = 4
"#;
    let config = advsoup_train::TrainConfig::parse(text, "outside.toml".as_ref(), &[])?;
    let images = |n: usize| {
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
        let pixels = (0..n * 28 * 28).map(|i| (i % 7 * 30) as u8).collect();
        advsoup_data::ImageDataset::new([1, 28, 28], pixels, labels, 10)
    };
    let splits = advsoup_data::Splits::from_train_test(images(12)?, images(4)?, 4, 1)?;
    let options = advsoup_train::RunOptions::new(dir.join("runs"));
    let summary = advsoup_train::train::<AD>(&config, &splits, &options, &Default::default())?;
    let report: advsoup_records::run::FinalReport =
        advsoup_records::read_json(&summary.dir.join("final.json"))?;
    println!(
        "train: {} steps; records: final.json says clean mode {:.2} on {} images",
        summary.step_losses.len(),
        report.clean_mode_clean_acc,
        report.n_clean
    );
    let page = advsoup_report::run_page(&summary.dir)?;
    println!(
        "report: the run's page is {} bytes of self-contained HTML",
        page.len()
    );
    Ok(())
}

/// bench: time a forward pass with the harness's `measure`.
fn bench() -> Result<()> {
    let device = Default::default();
    let model = tiny_vit().try_init::<B>(&device)?;
    let x = Tensor::<B, 4>::zeros([2, 1, 8, 8], &device);
    let record = advsoup_bench::measure("forward", 2, 1, 2, || {
        let _ = model.forward(x.clone()).sum().into_data();
    });
    println!("bench: forward {:.0} images/s", record.images_per_s);
    Ok(())
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    vit(dir.path())?;
    adapters()?;
    attacks()?;
    soup()?;
    data_and_io(dir.path())?;
    eval()?;
    train_and_records(dir.path())?;
    bench()?;
    println!("outside project: every crate imported and called");
    Ok(())
}
