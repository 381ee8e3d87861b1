//! Timing helpers for the bench crate (no timed tests live here).

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::Attack;
use crate::pgd::{PgdConfig, Selection};

/// Images per second of one PGD step and of one training forward+backward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepThroughput {
    /// Batch size used.
    pub batch: usize,
    /// Timed repetitions.
    pub iters: usize,
    /// One PGD step (forward + input backward + update) on the frozen closure.
    pub pgd_step_images_per_s: f64,
    /// One forward + backward through the trainable closure (parameter gradients).
    pub forward_backward_images_per_s: f64,
}

/// Measures [`StepThroughput`]: `attack_f` is the frozen copy the attack uses, `train_f` the
/// same model with trainable parameters. One warm-up repetition of each is not timed. Reading
/// the result back to the host after each repetition forces lazy backends to finish.
///
/// # Shapes
/// - `x`: `[n, c, h, w]`; `y`: `[n]`.
pub fn step_throughput<AD, F, G>(
    attack_f: &F,
    train_f: &G,
    x: &Tensor<AD::InnerBackend, 4>,
    y: &Tensor<AD::InnerBackend, 1, Int>,
    eps: f64,
    iters: usize,
) -> StepThroughput
where
    AD: AutodiffBackend,
    F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
    G: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
{
    let n = x.dims()[0];
    let ids: Vec<u64> = (0..n as u64).collect();
    let pgd = PgdConfig::new(crate::ThreatModel::Linf, eps, 1)
        .with_select(Selection::Last)
        .init();
    let pgd = match pgd {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "bad eps for the benchmark");
            return StepThroughput {
                batch: n,
                iters,
                pgd_step_images_per_s: 0.0,
                forward_backward_images_per_s: 0.0,
            };
        }
    };
    let time = |f: &dyn Fn()| {
        f();
        let t0 = Instant::now();
        for _ in 0..iters {
            f();
        }
        (n * iters) as f64 / t0.elapsed().as_secs_f64()
    };
    let pgd_rate = time(&|| {
        let out = pgd.attack::<AD, F>(attack_f, x, y, &ids, 0);
        let _ = out.x_adv.sum().into_data();
    });
    let fb_rate = time(&|| {
        let logits = train_f(Tensor::from_inner(x.clone()));
        let loss = crate::Loss::CrossEntropy
            .per_sample(logits, Tensor::from_inner(y.clone()), None)
            .mean();
        let grads = loss.backward();
        drop(grads);
    });
    StepThroughput {
        batch: n,
        iters,
        pgd_step_images_per_s: pgd_rate,
        forward_backward_images_per_s: fb_rate,
    }
}
