//! Attack any model through a logits closure: four attacks behind one trait, then the
//! AutoAttack-style ensemble with its per-sample verdicts and sanity flags.
//!
//! ```sh
//! cargo run -p advsoup-attacks --example attack_a_closure
//! ```
//! The "model" here is a fixed random linear classifier on 1x8x8 images, so the example needs
//! no model crate, no files and no network. Replace the closure with your model's forward
//! (a frozen copy: `M::from_inner(model.valid()).no_grad()`, dropout off) to attack it.
//! Copy this into your project with `advsoup-attacks` as a dependency; burn comes from
//! `advsoup_attacks::burn`.

use advsoup_attacks::burn::backend::{Autodiff, Flex};
use advsoup_attacks::burn::prelude::*;
use advsoup_attacks::burn::tensor::Distribution;
use advsoup_attacks::{
    ApgdConfig, Attack, Evaluator, FgsmConfig, PgdConfig, SquareConfig, ThreatModel,
};

type AD = Autodiff<Flex>;

/// Robust accuracy of one attack: the share of samples still classified correctly.
fn robust_accuracy<A: Attack>(
    attack: &A,
    f: &impl Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
    x: &Tensor<Flex, 4>,
    y: &Tensor<Flex, 1, Int>,
    ids: &[u64],
) -> f32 {
    let out = attack.attack::<AD, _>(f, x, y, ids, 0);
    let logits = f(Tensor::from_inner(out.x_adv)).inner();
    let correct = logits.argmax(1).reshape([ids.len()]).equal(y.clone());
    correct.int().sum().into_scalar().elem::<f32>() / ids.len() as f32
}

fn main() -> Result<(), advsoup_attacks::AttackError> {
    let device = Default::default();
    <Flex as Backend>::seed(&device, 0);
    let n = 64;
    let w = Tensor::<AD, 2>::random([64, 10], Distribution::Normal(0.0, 1.0), &device);
    let f = |x: Tensor<AD, 4>| x.reshape([0, 64]).matmul(w.clone());
    let x = Tensor::<Flex, 4>::random([n, 1, 8, 8], Distribution::Uniform(0.0, 1.0), &device);
    // Label every image with the model's own prediction, so clean accuracy is 100%.
    let y = f(Tensor::from_inner(x.clone()))
        .inner()
        .argmax(1)
        .reshape([n]);
    let ids: Vec<u64> = (0..n as u64).collect();
    let eps = 0.03;

    let threat = ThreatModel::Linf;
    println!("robust accuracy at eps = {eps} (clean 100%):");
    let fgsm = FgsmConfig::new(threat, eps).init()?;
    println!("  fgsm     {:.3}", robust_accuracy(&fgsm, &f, &x, &y, &ids));
    let pgd = PgdConfig::new(threat, eps, 10).init()?;
    println!("  pgd-10   {:.3}", robust_accuracy(&pgd, &f, &x, &y, &ids));
    let apgd = ApgdConfig::ce(threat, eps).with_n_iter(20).init()?;
    println!("  apgd-ce  {:.3}", robust_accuracy(&apgd, &f, &x, &y, &ids));
    let square = SquareConfig::new(threat, eps).with_n_queries(100).init()?;
    println!(
        "  square   {:.3}",
        robust_accuracy(&square, &f, &x, &y, &ids)
    );

    // The ensemble: a sample is robust only if every attack fails on it.
    let report = Evaluator::preset("standard", threat, eps, 0)?
        .evaluate::<AD, _>(&f, &x, &y, &ids)
        .report;
    println!(
        "standard ensemble: clean {:.3}, robust {:.3}, {} forward passes",
        report.clean_accuracy, report.robust_accuracy, report.cost.sample_forwards
    );
    for w in report.sanity.warnings() {
        println!("sanity: {w}");
    }
    Ok(())
}
