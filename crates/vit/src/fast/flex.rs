//! The fused ops on burn-flex tensors, and their autodiff nodes.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::{TensorData, TensorPrimitive};
use rayon::prelude::*;

use super::buffer::{Fresh, par_filled, par_gelu, par_gelu_with_grad, par_mul, par_rows};
use super::gemm::{self, View};
use super::math;
use super::{Ad, Flex};

/// Elements per parallel task of the element-wise kernels (fixed, so results never depend on
/// the number of threads).
const CHUNK: usize = 1 << 14;
/// Rows per parallel task of the row kernels.
const ROWS: usize = 64;

fn primitive<const D: usize>(x: Tensor<Flex, D>) -> FlexTensor {
    x.into_primitive().tensor()
}

fn tensor<const D: usize>(x: FlexTensor) -> Tensor<Flex, D> {
    Tensor::from_primitive(TensorPrimitive::Float(x))
}

/// A contiguous `f32` copy-free view when possible.
fn contiguous(x: FlexTensor) -> FlexTensor {
    if x.as_slice::<f32>().is_some() {
        x
    } else {
        x.to_contiguous()
    }
}

/// The primitive of an `Autodiff<Flex>` float tensor: the Flex tensor and its graph node.
type AdPrimitive = burn::tensor::ops::FloatTensor<Ad>;

/// Puts `op` on the autodiff graph as the child of `parents`. `forward(tracked)` computes the
/// output and, when `tracked` (some parent needs a gradient), the state `op`'s backward reads;
/// untracked, the state may be skipped.
fn record<O: Backward<Flex, N>, const N: usize, const D: usize>(
    op: O,
    parents: [&AdPrimitive; N],
    forward: impl FnOnce(bool) -> (FlexTensor, Option<O::State>),
) -> Tensor<Ad, D> {
    let out = match op
        .prepare::<NoCheckpointing>(parents.map(|p| p.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, state) = forward(true);
            prep.finish(
                state.expect("a tracked forward returns its backward's state"),
                y,
            )
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(false).0),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

fn slice(x: &FlexTensor) -> &[f32] {
    x.as_slice::<f32>()
        .expect("fast kernels: a contiguous f32 tensor")
}

fn new_tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

fn shape(x: &FlexTensor) -> Vec<usize> {
    x.layout().shape().iter().copied().collect()
}

// ---------------------------------------------------------------------------------------------
// GELU

fn gelu_forward(x: &FlexTensor) -> FlexTensor {
    new_tensor(par_gelu(slice(x), CHUNK), shape(x))
}

/// `(gelu(x), gelu'(x))`: the forward of a tracked GELU keeps the derivative, so the backward
/// is one multiply.
fn gelu_forward_with_grad(x: &FlexTensor) -> (FlexTensor, FlexTensor) {
    let (out, grad) = par_gelu_with_grad(slice(x), CHUNK);
    (new_tensor(out, shape(x)), new_tensor(grad, shape(x)))
}

fn mul(a: &FlexTensor, b: FlexTensor) -> FlexTensor {
    let b = contiguous(b);
    new_tensor(par_mul(slice(a), slice(&b), CHUNK), shape(a))
}

pub(super) fn gelu_inner<const D: usize>(x: Tensor<Flex, D>) -> Tensor<Flex, D> {
    tensor(gelu_forward(&contiguous(primitive(x))))
}

#[derive(Debug)]
struct GeluOp;

impl Backward<Flex, 1> for GeluOp {
    /// `gelu'(x)`.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let derivative = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| mul(&derivative, g));
    }
}

pub(super) fn gelu_autodiff<const D: usize>(x: Tensor<Ad, D>) -> Tensor<Ad, D> {
    let x = x.into_primitive().tensor();
    let input = contiguous(x.primitive.clone());
    record(GeluOp, [&x], |tracked| {
        if tracked {
            let (out, derivative) = gelu_forward_with_grad(&input);
            (out, Some(derivative))
        } else {
            (gelu_forward(&input), None)
        }
    })
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

/// What the backward needs: `x̂`, `1/σ` per row and `γ`.
#[derive(Debug, Clone)]
struct NormState {
    xhat: FlexTensor,
    rstd: Vec<f32>,
    gamma: FlexTensor,
}

fn layer_norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f64,
) -> (FlexTensor, NormState) {
    let (xs, gs, bs) = (slice(x), slice(gamma), slice(beta));
    let d = gs.len();
    let rows = xs.len() / d;
    let (mut y, mut xhat, mut rstd) = (Fresh::new(xs.len()), Fresh::new(xs.len()), vec![0.0; rows]);
    y.par_chunks_mut(ROWS * d)
        .zip(xhat.par_chunks_mut(ROWS * d))
        .zip(rstd.par_chunks_mut(ROWS))
        .zip(xs.par_chunks(ROWS * d))
        .for_each(|(((y, h), r), x)| math::layer_norm_rows(x, gs, bs, eps as f32, y, h, r));
    let shape = shape(x);
    (
        new_tensor(y.into_vec(), shape.clone()),
        NormState {
            xhat: new_tensor(xhat.into_vec(), shape),
            rstd,
            gamma: gamma.clone(),
        },
    )
}

/// `(dx, dγ, dβ)`; the parameter sums are per block of [`ROWS`] rows, then added in block
/// order, so they do not depend on the number of threads.
fn layer_norm_backward(state: &NormState, dy: FlexTensor) -> (FlexTensor, Vec<f32>, Vec<f32>) {
    let dy = contiguous(dy);
    let (gs, hs, dys) = (slice(&state.gamma), slice(&state.xhat), slice(&dy));
    let d = gs.len();
    let mut dx = Fresh::new(hs.len());
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(ROWS * d)
        .zip(hs.par_chunks(ROWS * d))
        .zip(dys.par_chunks(ROWS * d))
        .zip(state.rstd.par_chunks(ROWS))
        .map(|(((dx, h), g), r)| {
            let (mut dg, mut db) = (vec![0.0; d], vec![0.0; d]);
            math::layer_norm_backward_rows(g, h, r, gs, dx, &mut dg, &mut db);
            (dg, db)
        })
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0.0; d], vec![0.0; d]);
    for (dg, db) in partial {
        dgamma.iter_mut().zip(dg).for_each(|(a, b)| *a += b);
        dbeta.iter_mut().zip(db).for_each(|(a, b)| *a += b);
    }
    (new_tensor(dx.into_vec(), shape(&state.xhat)), dgamma, dbeta)
}

pub(super) fn layer_norm_inner(
    x: Tensor<Flex, 3>,
    gamma: Tensor<Flex, 1>,
    beta: Tensor<Flex, 1>,
    eps: f64,
) -> Tensor<Flex, 3> {
    let (x, g, b) = (
        contiguous(primitive(x)),
        contiguous(primitive(gamma)),
        contiguous(primitive(beta)),
    );
    tensor(layer_norm_forward(&x, &g, &b, eps).0)
}

#[derive(Debug)]
struct LayerNormOp;

impl Backward<Flex, 3> for LayerNormOp {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let [node_x, node_gamma, node_beta] = ops.parents;
        let (dx, dgamma, dbeta) = layer_norm_backward(&ops.state, dy);
        let d = dgamma.len();
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, new_tensor(dgamma, vec![d]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, new_tensor(dbeta, vec![d]));
        }
    }
}

pub(super) fn layer_norm_autodiff(
    x: Tensor<Ad, 3>,
    gamma: Tensor<Ad, 1>,
    beta: Tensor<Ad, 1>,
    eps: f64,
) -> Tensor<Ad, 3> {
    let (x, gamma, beta) = (
        x.into_primitive().tensor(),
        gamma.into_primitive().tensor(),
        beta.into_primitive().tensor(),
    );
    record(LayerNormOp, [&x, &gamma, &beta], |_| {
        let (y, state) = layer_norm_forward(
            &contiguous(x.primitive.clone()),
            &contiguous(gamma.primitive.clone()),
            &contiguous(beta.primitive.clone()),
            eps,
        );
        (y, Some(state))
    })
}

// ---------------------------------------------------------------------------------------------
// Attention

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    n: usize,
    t: usize,
    h: usize,
    hd: usize,
}

impl Dims {
    fn of(qkv: &FlexTensor, heads: usize) -> Self {
        let s = shape(qkv);
        let (n, t, d3) = (s[0], s[1], s[2]);
        assert!(
            d3 % (3 * heads) == 0,
            "attention: qkv width {d3} is not 3 x heads ({heads}) x head_dim"
        );
        Dims {
            n,
            t,
            h: heads,
            hd: d3 / 3 / heads,
        }
    }

    fn d(self) -> usize {
        self.h * self.hd
    }

    fn scale(self) -> f32 {
        (self.hd as f32).powf(-0.5)
    }
}

/// q, k and v of one head in one sample's `[t, 3d]` qkv rows: `[t, hd]` views, no copy.
fn qkv_views(qkv: &[f32], dims: Dims, head: usize) -> [View<'_>; 3] {
    let (t, hd, d) = (dims.t, dims.hd, dims.d());
    [0, 1, 2].map(|part| View::new(&qkv[part * d + head * hd..], t, hd, 3 * d, 1))
}

/// Forward: `(out [n, t, d], probabilities [n, h, t, t])`, in parallel over the batch; each
/// sample's products run on one thread (they are small: `t x hd` by `hd x t`).
fn attention_forward(qkv: &FlexTensor, dims: Dims) -> (FlexTensor, Vec<f32>) {
    let Dims { n, t, h, hd } = dims;
    let d = dims.d();
    let scale = dims.scale();
    let (mut out, mut p) = (Fresh::new(n * t * d), Fresh::new(n * h * t * t));
    out.par_chunks_mut(t * d)
        .zip(p.par_chunks_mut(h * t * t))
        .zip(slice(qkv).par_chunks(t * 3 * d))
        .for_each(|((out, p), qkv)| {
            for (head, p) in p.chunks_exact_mut(t * t).enumerate() {
                let [q, k, v] = qkv_views(qkv, dims, head);
                gemm::matmul_into(p, t, q, k.t(), false, false);
                math::softmax_rows(p, t, scale);
                let p = View::rows(p, t, t, t);
                gemm::matmul_into(&mut out[head * hd..], d, p, v, false, false);
            }
        });
    (new_tensor(out.into_vec(), vec![n, t, d]), p.into_vec())
}

/// Backward: `d qkv [n, t, 3d]` from `d out [n, t, d]`.
fn attention_backward(state: &AttentionState, grad: FlexTensor) -> FlexTensor {
    let AttentionState { qkv, p, dims } = state;
    let Dims { n, t, h, hd } = *dims;
    let d = dims.d();
    let scale = dims.scale();
    let grad = contiguous(grad);
    let mut dqkv = Fresh::new(n * t * 3 * d);
    dqkv.par_chunks_mut(t * 3 * d)
        .zip(slice(&grad).par_chunks(t * d))
        .zip(
            slice(qkv)
                .par_chunks(t * 3 * d)
                .zip(p.par_chunks(h * t * t)),
        )
        .for_each_init(
            || vec![0.0; t * t],
            |ds, ((dqkv, dout), (qkv, p))| {
                for (head, p) in p.chunks_exact(t * t).enumerate() {
                    let [q, k, v] = qkv_views(qkv, *dims, head);
                    let dout = View::new(&dout[head * hd..], t, hd, d, 1);
                    let pv = View::rows(p, t, t, t);
                    let at = |part: usize| part * d + head * hd;
                    gemm::matmul_into(&mut dqkv[at(2)..], 3 * d, pv.t(), dout, false, false);
                    gemm::matmul_into(ds, t, dout, v.t(), false, false);
                    math::softmax_backward_rows(p, ds, t, scale);
                    let dsv = View::rows(ds, t, t, t);
                    gemm::matmul_into(&mut dqkv[at(0)..], 3 * d, dsv, k, false, false);
                    gemm::matmul_into(&mut dqkv[at(1)..], 3 * d, dsv.t(), q, false, false);
                }
            },
        );
    new_tensor(dqkv.into_vec(), vec![n, t, 3 * d])
}

// ---------------------------------------------------------------------------------------------
// Pixel normalization and position add: the same one or two IEEE operations per element as
// burn's broadcast ops (bit for bit), in parallel by image plane or sample; burn-flex 0.21 walks
// a broadcast operand element by element on one thread.

/// `f(channel, plane, out)` for every image plane of `x` (`[n, c, h, w]`), one task each.
fn map_planes(x: &FlexTensor, f: impl Fn(usize, &[f32], &mut [f32]) + Sync + Send) -> FlexTensor {
    let dims = shape(x);
    let (channels, plane) = (dims[1], dims[2] * dims[3]);
    let xs = slice(x);
    let out = par_filled(xs.len(), plane, |i, o| {
        let len = o.len();
        f(i % channels, &xs[i * plane..][..len], o);
    });
    new_tensor(out, dims)
}

/// `(x − mean[c])·inv_std[c]`.
fn normalize_forward(x: &FlexTensor, mean: &[f32], inv_std: &[f32]) -> FlexTensor {
    map_planes(x, |c, xs, o| {
        let (m, s) = (mean[c], inv_std[c]);
        o.iter_mut().zip(xs).for_each(|(o, &v)| *o = (v - m) * s);
    })
}

/// `dy·inv_std[c]`: burn's `mul` backward (the `sub` before it passes the gradient through).
fn normalize_backward(dy: FlexTensor, inv_std: &[f32]) -> FlexTensor {
    map_planes(&contiguous(dy), |c, dys, o| {
        let s = inv_std[c];
        o.iter_mut().zip(dys).for_each(|(o, &g)| *o = g * s);
    })
}

pub(super) fn normalize_inner(
    x: Tensor<Flex, 4>,
    mean: Tensor<Flex, 4>,
    inv_std: Tensor<Flex, 4>,
) -> Tensor<Flex, 4> {
    let x = contiguous(primitive(x));
    let (mean, inv_std) = (contiguous(primitive(mean)), contiguous(primitive(inv_std)));
    tensor(normalize_forward(&x, slice(&mean), slice(&inv_std)))
}

#[derive(Debug)]
struct NormalizeOp;

impl Backward<Flex, 1> for NormalizeOp {
    /// `inv_std`, one value per channel.
    type State = Vec<f32>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let inv_std = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            normalize_backward(g, &inv_std)
        });
    }
}

/// Whether `t` is on the autodiff graph (it, or a tensor it was computed from, requires a
/// gradient).
pub(super) fn is_tracked<const D: usize>(t: &Tensor<Ad, D>) -> bool {
    !t.clone()
        .into_primitive()
        .tensor()
        .node
        .requirement
        .is_none()
}

/// The pixel normalization on the autodiff graph, with `mean` and `inv_std` as constants (the
/// caller checks that they are not [tracked](is_tracked): their gradients are not computed).
pub(super) fn normalize_autodiff(
    x: Tensor<Ad, 4>,
    mean: Tensor<Ad, 4>,
    inv_std: Tensor<Ad, 4>,
) -> Tensor<Ad, 4> {
    let x = x.into_primitive().tensor();
    let mean = contiguous(primitive(mean.inner()));
    let inv_std = slice(&contiguous(primitive(inv_std.inner()))).to_vec();
    let input = contiguous(x.primitive.clone());
    record(NormalizeOp, [&x], |_| {
        let y = normalize_forward(&input, slice(&mean), &inv_std);
        (y, Some(inv_std))
    })
}

/// `x + pos` over `[n, t, d]` with `pos` one `[t, d]` block, one task per sample.
fn add_positions_forward(x: &FlexTensor, pos: &[f32]) -> FlexTensor {
    let xs = slice(x);
    let out = par_filled(xs.len(), pos.len(), |i, o| {
        let sample = &xs[i * pos.len()..][..o.len()];
        o.iter_mut()
            .zip(sample.iter().zip(pos))
            .for_each(|(o, (&a, &b))| *o = a + b);
    });
    new_tensor(out, shape(x))
}

/// `Σ_n dy[n]` as `[1, t, d]`: burn-flex's first-dim sum (each element `0 + dy[0] + dy[1] + …`,
/// in sample order, so bit for bit burn's), in parallel over blocks of elements.
fn sum_over_samples(dy: &FlexTensor) -> FlexTensor {
    let dims = shape(dy);
    let block = dims[1] * dims[2];
    let dys = slice(dy);
    let sums = par_filled(block, CHUNK, |i, o| {
        let len = o.len();
        for sample in dys.chunks_exact(block) {
            o.iter_mut()
                .zip(&sample[i * CHUNK..][..len])
                .for_each(|(acc, &g)| *acc += g);
        }
    });
    new_tensor(sums, vec![1, dims[1], dims[2]])
}

pub(super) fn add_positions_inner(x: Tensor<Flex, 3>, pos: Tensor<Flex, 3>) -> Tensor<Flex, 3> {
    let (x, pos) = (contiguous(primitive(x)), contiguous(primitive(pos)));
    tensor(add_positions_forward(&x, slice(&pos)))
}

#[derive(Debug)]
struct AddPositionsOp;

impl Backward<Flex, 2> for AddPositionsOp {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let [node_x, node_pos] = ops.parents;
        if let Some(node) = node_pos {
            grads.register::<Flex>(node.id, sum_over_samples(&dy));
        }
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, dy);
        }
    }
}

pub(super) fn add_positions_autodiff(x: Tensor<Ad, 3>, pos: Tensor<Ad, 3>) -> Tensor<Ad, 3> {
    let (x, pos) = (x.into_primitive().tensor(), pos.into_primitive().tensor());
    let (xs, ps) = (
        contiguous(x.primitive.clone()),
        contiguous(pos.primitive.clone()),
    );
    record(AddPositionsOp, [&x, &pos], |_| {
        (add_positions_forward(&xs, slice(&ps)), Some(()))
    })
}

pub(super) fn attention_inner(qkv: Tensor<Flex, 3>, heads: usize) -> Tensor<Flex, 3> {
    let qkv = contiguous(primitive(qkv));
    let dims = Dims::of(&qkv, heads);
    tensor(attention_forward(&qkv, dims).0)
}

#[derive(Debug, Clone)]
struct AttentionState {
    /// The (contiguous) input `[n, t, 3d]`.
    qkv: FlexTensor,
    /// The attention probabilities `[n, h, t, t]`, shared by clones of the state.
    p: std::sync::Arc<Vec<f32>>,
    dims: Dims,
}

#[derive(Debug)]
struct AttentionOp;

impl Backward<Flex, 1> for AttentionOp {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            attention_backward(&state, g)
        });
    }
}

pub(super) fn attention_autodiff(qkv: Tensor<Ad, 3>, heads: usize) -> Tensor<Ad, 3> {
    let qkv = qkv.into_primitive().tensor();
    let input = contiguous(qkv.primitive.clone());
    let dims = Dims::of(&input, heads);
    record(AttentionOp, [&qkv], |_| {
        let (out, p) = attention_forward(&input, dims);
        let state = AttentionState {
            qkv: input,
            p: std::sync::Arc::new(p),
            dims,
        };
        (out, Some(state))
    })
}

// ---------------------------------------------------------------------------------------------
// Linear

/// `[rows, in] · [in, out] + bias`: the bias rows are written first (in parallel) and gemm
/// accumulates onto them.
fn linear_forward(x: &[f32], w: &[f32], b: &[f32], rows: usize) -> Vec<f32> {
    let out = b.len();
    let inp = w.len() / out;
    let mut y = par_rows(b, rows, ROWS);
    gemm::matmul_into(
        &mut y,
        out,
        View::rows(x, rows, inp, inp),
        View::rows(w, inp, out, out),
        true,
        true,
    );
    y
}

/// Column sums of a `[rows, cols]` matrix, by fixed blocks of [`ROWS`] rows added in order
/// (independent of the number of threads).
fn column_sums(m: &[f32], cols: usize) -> Vec<f32> {
    let partial: Vec<Vec<f32>> = m
        .par_chunks(ROWS * cols)
        .map(|block| {
            let mut s = vec![0.0; cols];
            for row in block.chunks_exact(cols) {
                s.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
            s
        })
        .collect();
    let mut sums = vec![0.0; cols];
    for s in partial {
        sums.iter_mut().zip(s).for_each(|(a, b)| *a += b);
    }
    sums
}

pub(super) fn linear_inner(
    x: Tensor<Flex, 3>,
    weight: Tensor<Flex, 2>,
    bias: Tensor<Flex, 1>,
) -> Tensor<Flex, 3> {
    let [n, t, _] = x.dims();
    let (x, w, b) = (
        contiguous(primitive(x)),
        contiguous(primitive(weight)),
        contiguous(primitive(bias)),
    );
    let out = slice(&b).len();
    let y = linear_forward(slice(&x), slice(&w), slice(&b), n * t);
    tensor(new_tensor(y, vec![n, t, out]))
}

#[derive(Debug, Clone)]
struct LinearState {
    /// The input `[n, t, in]` (needed for the weight gradient), if the weight is tracked.
    x: Option<FlexTensor>,
    /// The weight `[in, out]` (needed for the input gradient), if the input is tracked.
    w: Option<FlexTensor>,
}

#[derive(Debug)]
struct LinearOp;

impl Backward<Flex, 3> for LinearOp {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let dy_shape = shape(&dy);
        let out = dy_shape[2];
        let rows = dy_shape[0] * dy_shape[1];
        let dys = slice(&dy);
        let [node_x, node_w, node_b] = ops.parents;
        if let (Some(node), Some(w)) = (node_x, ops.state.w.as_ref()) {
            let ws = slice(w);
            let inp = ws.len() / out;
            let dx = gemm::matmul(
                View::rows(dys, rows, out, out),
                View::rows(ws, inp, out, out).t(),
                true,
            );
            grads.register::<Flex>(node.id, new_tensor(dx, vec![dy_shape[0], dy_shape[1], inp]));
        }
        if let (Some(node), Some(x)) = (node_w, ops.state.x.as_ref()) {
            let xs = slice(x);
            let inp = xs.len() / rows;
            let dw = gemm::matmul(
                View::rows(xs, rows, inp, inp).t(),
                View::rows(dys, rows, out, out),
                true,
            );
            grads.register::<Flex>(node.id, new_tensor(dw, vec![inp, out]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, new_tensor(column_sums(dys, out), vec![out]));
        }
    }
}

pub(super) fn linear_autodiff(
    x: Tensor<Ad, 3>,
    weight: Tensor<Ad, 2>,
    bias: Tensor<Ad, 1>,
) -> Tensor<Ad, 3> {
    let [n, t, _] = x.dims();
    let (x, w, b) = (
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.into_primitive().tensor(),
    );
    let (xs, ws, bs) = (
        contiguous(x.primitive.clone()),
        contiguous(w.primitive.clone()),
        contiguous(b.primitive.clone()),
    );
    let out = slice(&bs).len();
    let y = new_tensor(
        linear_forward(slice(&xs), slice(&ws), slice(&bs), n * t),
        vec![n, t, out],
    );
    let (x_tracked, w_tracked) = (!x.node.requirement.is_none(), !w.node.requirement.is_none());
    record(LinearOp, [&x, &w, &b], |_| {
        let state = LinearState {
            x: w_tracked.then_some(xs),
            w: x_tracked.then_some(ws),
        };
        (y, Some(state))
    })
}
