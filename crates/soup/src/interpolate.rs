//! Generic model soups: parameter interpolation over any burn [`Module`].
//!
//! Wortsman et al. 2022 ("Model soups") average the weights of fine-tuned models; Rebuffi et al.
//! 2023 interpolate a clean and an adversarial adapter (φ(β) = β·φ_clean + (1 − β)·φ_adv) into
//! one model that is evaluated (and attacked) as itself. This module does the parameter algebra
//! for any module: [`interpolate`] two modules, [`uniform`] over N, [`greedy`] by a held-out
//! score. It knows nothing of data or ViTs (an adapter model's own soups are
//! `advsoup_adapters::Mode::Soup`; this is the generic mechanism and its check).
//!
//! Invariants: parameters equal in both ingredients are copied untouched (so a soup of models
//! that differ only in their adapter changes only the adapter); β = 1 returns the first
//! ingredient's values and β = 0 the second's, bit for bit; results are fresh leaves that keep
//! each parameter's `require_grad`, so training can resume from a soup.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// Every float parameter of a module, flattened, in visit order.
struct Collect<B: Backend> {
    params: Vec<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.params.push(t.reshape([n]));
    }
}

fn flat_params<B: Backend, M: Module<B>>(m: &M) -> Vec<Tensor<B, 1>> {
    let mut c = Collect { params: Vec::new() };
    m.visit(&mut c);
    c.params
}

/// Replaces parameter i by `combine(own_i, others_i)`.
struct Combine<'a, B: Backend, F> {
    others: &'a [Vec<Tensor<B, 1>>],
    index: usize,
    combine: F,
}

impl<B: Backend, F> ModuleMapper<B> for Combine<'_, B, F>
where
    F: FnMut(Tensor<B, 1>, Vec<Tensor<B, 1>>) -> Option<Tensor<B, 1>>,
{
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let i = self.index;
        self.index += 1;
        let others: Vec<Tensor<B, 1>> = self
            .others
            .iter()
            .map(|o| {
                o.get(i)
                    .unwrap_or_else(|| {
                        panic!("soup: ingredients have different parameter lists (parameter {i})")
                    })
                    .clone()
            })
            .collect();
        let combine = &mut self.combine;
        param.map(|t| {
            let shape = t.shape();
            let n = shape.num_elements();
            for o in &others {
                assert_eq!(
                    o.dims()[0],
                    n,
                    "soup: parameter {i} has {n} values in one ingredient and {} in another",
                    o.dims()[0]
                );
            }
            let rg = t.is_require_grad();
            match combine(t.clone().reshape([n]), others) {
                None => t,
                Some(mixed) => mixed.reshape(shape).detach().set_require_grad(rg),
            }
        })
    }
}

fn identical<B: Backend>(a: &Tensor<B, 1>, b: &Tensor<B, 1>) -> bool {
    a.clone()
        .equal(b.clone())
        .all()
        .into_scalar()
        .elem::<bool>()
}

/// β·a + (1 − β)·b parameter by parameter; parameters equal in both are left untouched.
///
/// # Panics
/// If the modules do not have the same parameter shapes (a contract: same architecture).
pub fn interpolate<B: Backend, M: Module<B>>(a: &M, b: &M, beta: f32) -> M {
    // burn initializes parameters lazily: read `a` before cloning it so the clone cannot draw
    // its own values.
    flat_params(a);
    let others = [flat_params(b)];
    let mut mapper = Combine {
        others: &others,
        index: 0,
        combine: |x: Tensor<B, 1>, o: Vec<Tensor<B, 1>>| {
            let y = &o[0];
            if identical(&x, y) || beta == 1.0 {
                None
            } else if beta == 0.0 {
                Some(y.clone())
            } else {
                Some(x * beta + y.clone() * (1.0 - beta))
            }
        },
    };
    a.clone().map(&mut mapper)
}

/// The uniform soup: the mean of every parameter over the ingredients (Wortsman et al. 2022).
///
/// # Panics
/// On an empty list or mismatched architectures.
pub fn uniform<B: Backend, M: Module<B>>(models: &[M]) -> M {
    let (first, rest) = models
        .split_first()
        .expect("soup: a uniform soup needs at least one ingredient");
    flat_params(first); // materialize lazy parameters before cloning (see `interpolate`)
    let others: Vec<Vec<Tensor<B, 1>>> = rest.iter().map(flat_params).collect();
    let k = models.len() as f32;
    let mut mapper = Combine {
        others: &others,
        index: 0,
        combine: |x: Tensor<B, 1>, o: Vec<Tensor<B, 1>>| {
            if o.iter().all(|y| identical(&x, y)) {
                return None;
            }
            Some(o.into_iter().fold(x, |acc, y| acc + y) / k)
        },
    };
    first.clone().map(&mut mapper)
}

/// Greedy soup (Wortsman et al. 2022): sort ingredients by `score` (higher is better, computed
/// on held-out data — never the test split), start from the best, and add each next ingredient
/// to the uniform soup only if the score does not drop. Returns the soup, its score and the
/// indices of the ingredients used. The score is never below the best ingredient's.
pub fn greedy<B: Backend, M: Module<B>>(
    models: &[M],
    mut score: impl FnMut(&M) -> f64,
) -> Option<(M, f64, Vec<usize>)> {
    let mut ranked: Vec<(usize, f64)> = models
        .iter()
        .enumerate()
        .map(|(i, m)| (i, score(m)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (best, best_score) = *ranked.first()?;
    let mut used = vec![best];
    let mut soup = models[best].clone();
    let mut soup_score = best_score;
    for &(i, _) in &ranked[1..] {
        let mut trial: Vec<M> = used.iter().map(|j| models[*j].clone()).collect();
        trial.push(models[i].clone());
        let candidate = uniform(&trial);
        let s = score(&candidate);
        if s >= soup_score {
            soup = candidate;
            soup_score = s;
            used.push(i);
        }
    }
    Some((soup, soup_score, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Tolerance;

    type TestBackend = Flex;

    #[derive(Module, Debug)]
    struct Two<B: Backend> {
        shared: Linear<B>,
        adapter: Linear<B>,
    }

    fn two(seed: u64) -> Two<TestBackend> {
        let device = Default::default();
        TestBackend::seed(&device, seed);
        let m = Two {
            shared: LinearConfig::new(3, 4).init(&device),
            adapter: LinearConfig::new(4, 2).init(&device),
        };
        flat_params(&m); // draw the lazily initialized values now, under this seed
        m
    }

    fn data(m: &Linear<TestBackend>) -> burn::tensor::TensorData {
        m.weight.val().into_data()
    }

    #[test]
    fn endpoints_are_the_ingredients_bit_for_bit() {
        let (a, b) = (two(1), two(2));
        assert_eq!(data(&interpolate(&a, &b, 1.0).adapter), data(&a.adapter));
        assert_eq!(data(&interpolate(&a, &b, 0.0).adapter), data(&b.adapter));
        assert_eq!(data(&interpolate(&a, &a, 0.37).shared), data(&a.shared));
    }

    #[test]
    fn linear_in_beta_and_shared_parameters_untouched() {
        let a = two(1);
        let mut b = two(2);
        b.shared = a.shared.clone();
        for beta in [0.1f32, 0.5, 0.9] {
            let s = interpolate(&a, &b, beta);
            assert_eq!(
                data(&s.shared),
                data(&a.shared),
                "shared must be copied untouched"
            );
            let want = a.adapter.weight.val() * beta + b.adapter.weight.val() * (1.0 - beta);
            data(&s.adapter)
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::rel_abs(1e-6, 1e-6));
        }
    }

    #[test]
    fn uniform_soup_is_the_mean_and_of_one_model_is_that_model() {
        let ms = [two(1), two(2), two(3)];
        let s = uniform(&ms);
        let want =
            (ms[0].shared.weight.val() + ms[1].shared.weight.val() + ms[2].shared.weight.val())
                / 3.0;
        data(&s.shared).assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-6));
        assert_eq!(data(&uniform(&ms[..1]).adapter), data(&ms[0].adapter));
    }

    #[test]
    fn greedy_soup_scores_at_least_its_best_ingredient() {
        let ms: Vec<_> = (0..5).map(two).collect();
        // A held-out score: closeness of the shared weights to a target point.
        let target = two(9).shared.weight.val();
        let score = |m: &Two<TestBackend>| {
            -(m.shared.weight.val() - target.clone())
                .powi_scalar(2)
                .sum()
                .into_scalar()
                .elem::<f64>()
        };
        let best = ms.iter().map(score).fold(f64::MIN, f64::max);
        let (soup, s, used) = greedy(&ms, score).expect("non-empty");
        assert!(s >= best, "{s} < {best}");
        assert!((score(&soup) - s).abs() < 1e-9);
        assert!(!used.is_empty());
    }

    #[test]
    fn soups_are_fresh_trainable_leaves() {
        type AD = Autodiff<Flex>;
        let device = Default::default();
        let a = LinearConfig::new(3, 2).init::<AD>(&device);
        let b = LinearConfig::new(3, 2).init::<AD>(&device);
        flat_params(&b);
        let s = interpolate(&a, &b, 0.5);
        assert!(s.weight.val().is_require_grad());
        let x = Tensor::<AD, 2>::ones([1, 3], &device);
        let grads = s.forward(x).sum().backward();
        assert!(s.weight.val().grad(&grads).is_some());
    }
}
