//! The collective operations of a data-parallel peer (burn's `collective`, feature
//! `collective`): the mean of the peers' gradients and the sums of a few scalars in ONE
//! all-reduce per step, the start from rank 0's parameters, and summed evaluation counts. A run
//! on one device is [`Peer::SOLO`], for which every operation is the identity.
//!
//! Peers start from rank 0's parameters (a sum to which the others add zeros: burn 0.21 has no
//! multi-node broadcast). How peers are started is [`crate::launch`]'s job.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::TrainError;

/// This peer's place in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    /// Global rank.
    pub rank: usize,
    /// Peers in all.
    pub world: usize,
}

#[cfg(not(feature = "collective"))]
fn unsupported() -> TrainError {
    TrainError::Collective("this build has no `collective` feature".into())
}

#[cfg(feature = "collective")]
pub(crate) fn cerr(e: burn::collective::CollectiveError) -> TrainError {
    TrainError::Collective(format!("{e:?}"))
}

impl Peer {
    /// A run on one device.
    pub(crate) const SOLO: Peer = Peer { rank: 0, world: 1 };

    /// Rank 0 writes files and shows progress.
    pub(crate) fn leader(&self) -> bool {
        self.rank == 0
    }

    /// Element-wise sums of `values` over all peers (f32 on the wire: exact for counts below
    /// 2^24).
    pub(crate) fn sum<B: Backend>(
        &self,
        values: &[f64],
        device: &B::Device,
    ) -> Result<Vec<f64>, TrainError> {
        if self.world == 1 {
            return Ok(values.to_vec());
        }
        let flat = self.all_reduce_sum::<B>(vec![scalars::<B>(values, device)])?;
        Ok(flat.into_data().iter::<f32>().map(f64::from).collect())
    }

    /// [`Peer::sum`] of the `len` values each peer computed, when every peer computed them;
    /// else this peer's own error, or [`TrainError::PeerDataFailed`] naming `at` when another
    /// peer's failed. A peer whose work failed still takes part in the sum (with a failure
    /// flag), so no peer waits for it at an all-reduce or goes on without it.
    pub(crate) fn sum_agreed<B: Backend>(
        &self,
        local: Result<Vec<f64>, TrainError>,
        len: usize,
        at: &str,
        device: &B::Device,
    ) -> Result<Vec<f64>, TrainError> {
        if self.world == 1 {
            return local;
        }
        let mut flagged = vec![f64::from(u8::from(local.is_err()))];
        match &local {
            Ok(values) => flagged.extend_from_slice(values),
            Err(_) => flagged.resize(len + 1, 0.0),
        }
        let sums = self.sum::<B>(&flagged, device)?;
        match local {
            Err(e) => Err(e),
            Ok(_) if sums[0] > 0.0 => Err(TrainError::PeerDataFailed { at: at.to_string() }),
            Ok(_) => Ok(sums[1..].to_vec()),
        }
    }

    /// The mean of every peer's gradients of `module`'s parameters, and the element-wise sums of
    /// `values` over the peers, in ONE all-reduce: the gradients go flattened into one vector.
    ///
    /// One collective call per step instead of one per parameter: a multi-node run pays one
    /// network round trip, and no tensor is too small for burn's ring (which needs a dimension
    /// of at least the node count). A parameter whose gradient is missing on one peer but not
    /// another makes the lengths differ, which burn refuses (shape mismatch), never a silent
    /// misalignment.
    pub(crate) fn mean_grads_and_sum<B: AutodiffBackend, M: Module<B>>(
        &self,
        module: &M,
        mut grads: GradientsParams,
        values: &[f64],
        device: &burn::prelude::Device<B::InnerBackend>,
    ) -> Result<(GradientsParams, Vec<f64>), TrainError> {
        if self.world == 1 {
            return Ok((grads, values.to_vec()));
        }
        let mut take = TakeGrads::<B> {
            grads: &mut grads,
            taken: Vec::new(),
            parts: Vec::new(),
        };
        module.visit(&mut take);
        let (taken, mut parts) = (take.taken, take.parts);
        let grad_len: usize = parts.iter().map(|t| t.dims()[0]).sum();
        parts.push(scalars::<B::InnerBackend>(values, device));
        let flat = self.all_reduce_sum::<B::InnerBackend>(parts)?;
        let sums = flat
            .clone()
            .slice(grad_len..)
            .into_data()
            .iter::<f32>()
            .map(f64::from)
            .collect();
        let mut put = PutGrads::<B> {
            grads: &mut grads,
            taken: &taken,
            flat: flat.slice(0..grad_len).div_scalar(self.world as f64),
            offset: 0,
            next: 0,
        };
        module.visit(&mut put);
        Ok((grads, sums))
    }

    /// Every peer gets rank 0's parameters (values only; ids and `require_grad` are kept).
    /// Rank 0 sends its values and the others zeros into one flattened sum (burn 0.21 has no
    /// multi-node broadcast), which is exact.
    pub(crate) fn broadcast_module<B: AutodiffBackend, M: Module<B>>(
        &self,
        module: M,
    ) -> Result<M, TrainError> {
        if self.world == 1 {
            return Ok(module);
        }
        let mut gather = GatherParams::<B> {
            leader: self.leader(),
            parts: Vec::new(),
        };
        module.visit(&mut gather);
        let flat = self.all_reduce_sum::<B::InnerBackend>(gather.parts)?;
        Ok(module.map(&mut ScatterParams::<B> { flat, offset: 0 }))
    }

    /// The element-wise sum over all peers of the concatenation of `parts`.
    ///
    /// The vector is zero-padded to at least `world` elements: burn's global ring all-reduce
    /// splits it into one slice per node.
    fn all_reduce_sum<B: Backend>(
        &self,
        parts: Vec<Tensor<B, 1>>,
    ) -> Result<Tensor<B, 1>, TrainError> {
        #[cfg(feature = "collective")]
        {
            use burn::collective::{PeerId, ReduceOperation, all_reduce};
            use burn::tensor::TensorPrimitive;
            let Some(first) = parts.first() else {
                return Ok(Tensor::empty([0], &Default::default()));
            };
            let device = first.device();
            let len: usize = parts.iter().map(|t| t.dims()[0]).sum();
            let mut parts = parts;
            if len < self.world {
                parts.push(Tensor::zeros([self.world - len], &device));
            }
            let out = all_reduce::<B>(
                PeerId::from(self.rank),
                Tensor::cat(parts, 0).into_primitive().tensor(),
                ReduceOperation::Sum,
            )
            .map_err(cerr)?;
            Ok(Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(out)).slice(0..len))
        }
        #[cfg(not(feature = "collective"))]
        {
            let _ = parts;
            Err(unsupported())
        }
    }
}

/// `values` as an f32 vector on `device`.
fn scalars<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 1> {
    let v: Vec<f32> = values.iter().map(|x| *x as f32).collect();
    Tensor::from_data(TensorData::new(v, [values.len()]), device)
}

/// The next `shape`-sized piece of `flat` from `offset` (advanced past it), in that shape.
fn next_slice<B: Backend, const D: usize>(
    flat: &Tensor<B, 1>,
    offset: &mut usize,
    shape: burn::tensor::Shape,
) -> Tensor<B, D> {
    let n = shape.num_elements();
    let piece = flat.clone().slice(*offset..*offset + n).reshape(shape);
    *offset += n;
    piece
}

/// Takes the gradients out, flattened, in the module's parameter order.
struct TakeGrads<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    taken: Vec<ParamId>,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for TakeGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.taken.push(param.id);
            self.parts.push(g.flatten::<1>(0, D - 1));
        }
    }
}

/// Puts the reduced gradients back, for the parameters [`TakeGrads`] took, in its order.
struct PutGrads<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    taken: &'a [ParamId],
    flat: Tensor<B::InnerBackend, 1>,
    offset: usize,
    next: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for PutGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.taken.get(self.next) != Some(&param.id) {
            return;
        }
        self.next += 1;
        let g = next_slice(&self.flat, &mut self.offset, param.shape());
        self.grads.register::<B::InnerBackend, D>(param.id, g);
    }
}

/// Rank 0's parameter values (zeros on the other peers), flattened in the module's order.
struct GatherParams<B: AutodiffBackend> {
    leader: bool,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GatherParams<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let v = param.val().inner().flatten::<1>(0, D - 1);
        self.parts
            .push(if self.leader { v } else { v.zeros_like() });
    }
}

/// Gives every parameter its slice of the summed vector, in [`GatherParams`]' order.
struct ScatterParams<B: AutodiffBackend> {
    flat: Tensor<B::InnerBackend, 1>,
    offset: usize,
}

impl<B: AutodiffBackend> ModuleMapper<B> for ScatterParams<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|t| {
            let rg = t.is_require_grad();
            let v = next_slice(&self.flat, &mut self.offset, t.shape());
            Tensor::from_inner(v).set_require_grad(rg)
        })
    }
}
