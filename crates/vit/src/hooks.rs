//! The adapter slot: [`DomainHooks`] lets another crate replace the few places of the forward
//! pass where domain-specific parameters act, without this crate knowing what an adapter is.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

/// A LayerNorm of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NormSite {
    /// `blocks.{block}.norm1` (`second == false`) or `blocks.{block}.norm2` (`second == true`).
    Block {
        /// Block index.
        block: usize,
        /// `false` for `norm1`, `true` for `norm2`.
        second: bool,
    },
    /// The final `norm`.
    Final,
}

impl NormSite {
    /// Dense index in `0..2 * depth + 1` (block norms first, then the final norm).
    pub fn index(self, depth: usize) -> usize {
        match self {
            NormSite::Block { block, second } => 2 * block + usize::from(second),
            NormSite::Final => 2 * depth,
        }
    }
}

/// A Linear layer of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinearSite {
    /// `blocks.N.attn.qkv`.
    Qkv(usize),
    /// `blocks.N.attn.proj`.
    Proj(usize),
    /// `blocks.N.mlp.fc1`.
    Fc1(usize),
    /// `blocks.N.mlp.fc2`.
    Fc2(usize),
    /// `head`.
    Head,
}

/// Hooks called by [`Vit::forward_with`](crate::Vit::forward_with) at every place where a
/// domain adapter may act. Each default is the plain, shared computation.
pub trait DomainHooks<B: Backend> {
    /// The class token for each sample: `[batch, 1, embed_dim]`.
    fn cls_token(&self, token: &Param<Tensor<B, 3>>, batch: usize) -> Tensor<B, 3> {
        let token = token.val();
        let [_, _, d] = token.dims();
        token.expand([batch, 1, d])
    }

    /// Extra learned tokens appended after the position-embedded sequence (prompts):
    /// `[batch, k, embed_dim]`, or `None`.
    fn extra_tokens(&self, _batch: usize) -> Option<Tensor<B, 3>> {
        None
    }

    /// A LayerNorm applied to `x: [batch, tokens, embed_dim]`.
    fn layer_norm(&self, _site: NormSite, norm: &LayerNorm<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        crate::fast::layer_norm(norm, x)
    }

    /// A Linear applied to `x: [batch, tokens, in]` (see [`crate::linear_tokens`]).
    fn linear(&self, _site: LinearSite, linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        crate::linear_tokens(linear, x)
    }
}

/// No adapter: every parameter is shared.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl<B: Backend> DomainHooks<B> for NoHooks {}
