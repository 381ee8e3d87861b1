//! The fused ops on burn-flex tensors, and their autodiff nodes.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{TensorData, TensorPrimitive};
use rayon::prelude::*;

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
    if x.as_slice::<f32>().is_some() && x.layout().start_offset() == 0 {
        x
    } else {
        x.to_contiguous()
    }
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
    let xs = slice(x);
    let mut out = vec![0.0; xs.len()];
    out.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK))
        .for_each(|(o, s)| math::gelu_slice(s, o));
    new_tensor(out, shape(x))
}

fn gelu_backward(x: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    let grad = contiguous(grad);
    let (xs, gs) = (slice(x), slice(&grad));
    let mut out = vec![0.0; xs.len()];
    out.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK).zip(gs.par_chunks(CHUNK)))
        .for_each(|(o, (s, g))| math::gelu_backward_slice(s, g, o));
    new_tensor(out, shape(x))
}

pub(super) fn gelu_inner<const D: usize>(x: Tensor<Flex, D>) -> Tensor<Flex, D> {
    tensor(gelu_forward(&contiguous(primitive(x))))
}

#[derive(Debug)]
struct GeluOp;

impl Backward<Flex, 1> for GeluOp {
    /// The (contiguous) input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| gelu_backward(&x, g));
    }
}

pub(super) fn gelu_autodiff<const D: usize>(x: Tensor<Ad, D>) -> Tensor<Ad, D> {
    let x = x.into_primitive().tensor();
    let input = contiguous(x.primitive.clone());
    let out = gelu_forward(&input);
    let out = match GeluOp
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(input, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
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
    let (mut y, mut xhat, mut rstd) = (vec![0.0; xs.len()], vec![0.0; xs.len()], vec![0.0; rows]);
    y.par_chunks_mut(ROWS * d)
        .zip(xhat.par_chunks_mut(ROWS * d))
        .zip(rstd.par_chunks_mut(ROWS))
        .zip(xs.par_chunks(ROWS * d))
        .for_each(|(((y, h), r), x)| math::layer_norm_rows(x, gs, bs, eps as f32, y, h, r));
    let shape = shape(x);
    (
        new_tensor(y, shape.clone()),
        NormState {
            xhat: new_tensor(xhat, shape),
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
    let mut dx = vec![0.0; hs.len()];
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
    (new_tensor(dx, shape(&state.xhat)), dgamma, dbeta)
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
    let (y, state) = layer_norm_forward(
        &contiguous(x.primitive.clone()),
        &contiguous(gamma.primitive.clone()),
        &contiguous(beta.primitive.clone()),
        eps,
    );
    let out = match LayerNormOp
        .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
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

/// `part` (0 = q, 1 = k, 2 = v) of a contiguous `[n, t, 3, h, hd]` qkv as a strided
/// `[1, n, h, t, hd]` view (no copy; matmul reads it in place).
fn head_view(qkv: &FlexTensor, dims: Dims, part: usize) -> FlexTensor {
    let Dims { n, t, h, hd } = dims;
    qkv.reshape(Shape::from(vec![n, t, 3, h, hd]))
        .permute(&[2, 0, 3, 1, 4])
        .narrow(0, part, 1)
}

/// `[1, n, h, t, hd]` contiguous → rows of `[n, t, width]` at column offset `col`: the head
/// merge, one block of `hd` floats at a time, in parallel over the batch.
fn merge_heads(src: &[f32], dst: &mut [f32], dims: Dims, width: usize, col: usize) {
    let Dims { t, h, hd, .. } = dims;
    dst.par_chunks_mut(t * width)
        .zip(src.par_chunks(h * t * hd))
        .for_each(|(out, heads)| {
            for (head, block) in heads.chunks_exact(t * hd).enumerate() {
                for (row, vals) in block.chunks_exact(hd).enumerate() {
                    let at = row * width + col + head * hd;
                    out[at..at + hd].copy_from_slice(vals);
                }
            }
        });
}

/// Softmax of the (unscaled) scores in place, in parallel over rows.
fn softmax_in_place(scores: &mut FlexTensor, cols: usize, scale: f32) {
    let s = scores
        .try_storage_mut::<f32>()
        .expect("fresh matmul output is uniquely owned");
    s.par_chunks_mut(ROWS * cols)
        .for_each(|rows| math::softmax_rows(rows, cols, scale));
}

/// Forward: `(out [n, t, d], probabilities [1, n, h, t, t])`.
fn attention_forward(qkv: &FlexTensor, dims: Dims) -> (FlexTensor, FlexTensor) {
    let (q, k, v) = (
        head_view(qkv, dims, 0),
        head_view(qkv, dims, 1),
        head_view(qkv, dims, 2),
    );
    let mut p = Flex::float_matmul(q, k.transpose(3, 4));
    softmax_in_place(&mut p, dims.t, dims.scale());
    let o = contiguous(Flex::float_matmul(p.clone(), v));
    let mut out = vec![0.0; dims.n * dims.t * dims.d()];
    merge_heads(slice(&o), &mut out, dims, dims.d(), 0);
    (new_tensor(out, vec![dims.n, dims.t, dims.d()]), p)
}

/// Backward: `d qkv [n, t, 3d]` from `d out [n, t, d]`.
fn attention_backward(state: &AttentionState, grad: FlexTensor) -> FlexTensor {
    let AttentionState { qkv, p, dims } = state;
    let Dims { n, t, h, hd } = *dims;
    let d = dims.d();
    let grad = contiguous(grad);
    // d out as `[1, n, h, t, hd]` (a strided view of `[n, t, h, hd]`).
    let dout = grad
        .reshape(Shape::from(vec![1, n, t, h, hd]))
        .permute(&[0, 1, 3, 2, 4]);
    let (q, k, v) = (
        head_view(qkv, *dims, 0),
        head_view(qkv, *dims, 1),
        head_view(qkv, *dims, 2),
    );
    let dv = Flex::float_matmul(p.transpose(3, 4), dout.clone());
    let mut ds = Flex::float_matmul(dout, v.transpose(3, 4));
    {
        let ps = slice(p);
        let dss = ds
            .try_storage_mut::<f32>()
            .expect("fresh matmul output is uniquely owned");
        let scale = dims.scale();
        dss.par_chunks_mut(ROWS * t)
            .zip(ps.par_chunks(ROWS * t))
            .for_each(|(dsr, pr)| math::softmax_backward_rows(pr, dsr, t, scale));
    }
    let dq = Flex::float_matmul(ds.clone(), k);
    let dk = Flex::float_matmul(ds.transpose(3, 4), q);
    let mut out = vec![0.0; n * t * 3 * d];
    for (part, g) in [dq, dk, dv].into_iter().enumerate() {
        merge_heads(slice(&contiguous(g)), &mut out, *dims, 3 * d, part * d);
    }
    new_tensor(out, vec![n, t, 3 * d])
}

pub(super) fn attention_inner(qkv: Tensor<Flex, 3>, heads: usize) -> Tensor<Flex, 3> {
    let qkv = contiguous(primitive(qkv));
    let dims = Dims::of(&qkv, heads);
    tensor(attention_forward(&qkv, dims).0)
}

#[derive(Debug, Clone)]
struct AttentionState {
    qkv: FlexTensor,
    p: FlexTensor,
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
    let (out, p) = attention_forward(&input, dims);
    let out = match AttentionOp
        .prepare::<NoCheckpointing>([qkv.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            AttentionState {
                qkv: input,
                p,
                dims,
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
