//! Shared machinery: the counted logits oracle, attack goals and best-point tracking.

use std::cell::Cell;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::loss::Loss;
use crate::threat::expand_mask;

/// What an attack or evaluation cost, in calls of the logits closure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Calls of the closure (batched forward passes).
    pub forward_calls: u64,
    /// Backward passes (input gradients).
    pub backward_calls: u64,
    /// Forward passes counted per sample (sum of batch sizes).
    pub sample_forwards: u64,
    /// Backward passes counted per sample.
    pub sample_backwards: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Self) {
        self.forward_calls += o.forward_calls;
        self.backward_calls += o.backward_calls;
        self.sample_forwards += o.sample_forwards;
        self.sample_backwards += o.sample_backwards;
    }
}

/// What an attack returns.
#[derive(Debug, Clone)]
pub struct AttackOutput<B: Backend> {
    /// The adversarial batch, in the ε-ball around the input and in [0, 1]. `[n, c, h, w]`.
    pub x_adv: Tensor<B, 4>,
    /// Per sample, whether the attack reached its goal at `x_adv` (misclassification, or the
    /// target class for targeted PGD) as seen inside the attack. `None` when the attack did not
    /// evaluate its final iterate (PGD with [`crate::Selection::Last`] and one restart, the
    /// training fast path). Evaluators re-check with a fresh forward pass.
    pub success: Option<Tensor<B, 1, Bool>>,
    /// Closure calls spent.
    pub cost: Cost,
}

/// Logits `[n, classes]`, per-sample objective `[n]` and input gradient `[n, c, h, w]`.
pub(crate) type ValueAndGrad<B> = (Tensor<B, 2>, Tensor<B, 1>, Tensor<B, 4>);

/// The logits closure with call counting. Everything it returns lives on the inner backend.
pub(crate) struct Oracle<'a, AD: AutodiffBackend, F> {
    f: &'a F,
    cost: Cell<Cost>,
    _backend: std::marker::PhantomData<AD>,
}

impl<'a, AD, F> Oracle<'a, AD, F>
where
    AD: AutodiffBackend,
    F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
{
    pub(crate) fn new(f: &'a F) -> Self {
        Self {
            f,
            cost: Cell::new(Cost::default()),
            _backend: std::marker::PhantomData,
        }
    }

    pub(crate) fn cost(&self) -> Cost {
        self.cost.get()
    }

    fn count(&self, n: usize, backward: bool) {
        let mut c = self.cost.get();
        c.forward_calls += 1;
        c.sample_forwards += n as u64;
        if backward {
            c.backward_calls += 1;
            c.sample_backwards += n as u64;
        }
        self.cost.set(c);
    }

    /// Logits without a graph.
    pub(crate) fn logits(&self, x: Tensor<AD::InnerBackend, 4>) -> Tensor<AD::InnerBackend, 2> {
        self.count(x.dims()[0], false);
        (self.f)(Tensor::from_inner(x)).inner()
    }

    /// Logits, per-sample objective and its input gradient at `x` (one forward + one backward;
    /// the graph is dropped before returning). A loss that does not depend on `x` gives a zero
    /// gradient.
    pub(crate) fn value_and_grad(
        &self,
        x: Tensor<AD::InnerBackend, 4>,
        objective: &Objective<AD::InnerBackend>,
    ) -> ValueAndGrad<AD::InnerBackend> {
        self.count(x.dims()[0], true);
        let xa = Tensor::<AD, 4>::from_inner(x.clone()).require_grad();
        let logits = (self.f)(xa.clone());
        let loss = objective.loss_ad::<AD>(logits.clone());
        let grads = loss.clone().sum().backward();
        let g = xa.grad(&grads).unwrap_or_else(|| x.zeros_like());
        (logits.inner(), loss.inner(), g)
    }
}

/// An attack objective: loss, labels, optional target and what counts as success.
#[derive(Clone, Debug)]
pub(crate) struct Objective<B: Backend> {
    pub(crate) loss: Loss,
    pub(crate) labels: Tensor<B, 1, Int>,
    pub(crate) target: Option<Tensor<B, 1, Int>>,
    /// Success means predicting `target` (targeted PGD) instead of "not `labels`".
    pub(crate) success_is_target: bool,
}

impl<B: Backend> Objective<B> {
    pub(crate) fn loss_ad<AD: AutodiffBackend<InnerBackend = B>>(
        &self,
        logits: Tensor<AD, 2>,
    ) -> Tensor<AD, 1> {
        self.loss.per_sample(
            logits,
            Tensor::from_inner(self.labels.clone()),
            self.target.clone().map(Tensor::from_inner),
        )
    }

    pub(crate) fn loss(&self, logits: Tensor<B, 2>) -> Tensor<B, 1> {
        self.loss
            .per_sample(logits, self.labels.clone(), self.target.clone())
    }

    pub(crate) fn success(&self, logits: Tensor<B, 2>) -> Tensor<B, 1, Bool> {
        let n = logits.dims()[0];
        let pred = logits.argmax(1).reshape([n]);
        match (&self.target, self.success_is_target) {
            (Some(t), true) => pred.equal(t.clone()),
            _ => pred.not_equal(self.labels.clone()),
        }
    }
}

/// Per-sample best iterate under the lexicographic order (success, loss): a successful point
/// beats any unsuccessful one, ties go to the larger loss.
#[derive(Clone, Debug)]
pub(crate) struct Best<B: Backend> {
    pub(crate) x: Tensor<B, 4>,
    pub(crate) success: Tensor<B, 1, Bool>,
    pub(crate) loss: Tensor<B, 1>,
}

impl<B: Backend> Best<B> {
    pub(crate) fn offer(
        self,
        x: Tensor<B, 4>,
        success: Tensor<B, 1, Bool>,
        loss: Tensor<B, 1>,
    ) -> Self {
        let same = success.clone().bool_xor(self.success.clone()).bool_not();
        let better = success
            .clone()
            .bool_and(self.success.clone().bool_not())
            .bool_or(same.bool_and(loss.clone().greater(self.loss.clone())));
        let dims = x.dims();
        Self {
            x: self.x.mask_where(expand_mask(better.clone(), dims), x),
            success: self.success.bool_or(success),
            loss: self.loss.mask_where(better, loss),
        }
    }
}

/// Class ranked `rank` (0 = most likely) among the classes other than `labels`, per sample.
pub(crate) fn ranked_other_class<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    rank: usize,
) -> Tensor<B, 1, Int> {
    let [n, c] = logits.dims();
    let mask = labels.one_hot::<2>(c).bool();
    let order = logits.mask_fill(mask, -1.0e30).argsort_descending(1);
    order.slice([0..n, rank..rank + 1]).reshape([n])
}

/// Rows `idx` of `full` replaced by `rows` (exact: zero the rows, then add).
pub(crate) fn assign_rows<B: Backend>(
    full: Tensor<B, 4>,
    idx: Tensor<B, 1, Int>,
    rows: Tensor<B, 4>,
) -> Tensor<B, 4> {
    use burn::tensor::IndexingUpdateOp;
    let old = full.clone().select(0, idx.clone());
    full.select_assign(0, idx.clone(), -old, IndexingUpdateOp::Add)
        .select_assign(0, idx, rows, IndexingUpdateOp::Add)
}

/// Indices of the `true` entries of a host mask, as a device tensor.
pub(crate) fn indices<B: Backend>(
    mask: &[bool],
    device: &B::Device,
) -> (Vec<usize>, Tensor<B, 1, Int>) {
    let idx: Vec<usize> = mask
        .iter()
        .enumerate()
        .filter(|(_, m)| **m)
        .map(|(i, _)| i)
        .collect();
    let data: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    let t = Tensor::from_data(TensorData::new(data, [idx.len()]), device);
    (idx, t)
}

/// A bool tensor on the host.
pub(crate) fn to_host_bools<B: Backend>(t: Tensor<B, 1, Bool>) -> Vec<bool> {
    t.into_data()
        .convert::<bool>()
        .to_vec::<bool>()
        .unwrap_or_default()
}
