//! The ViT modules, with timm's parameter names and layout.

use burn::module::{Initializer, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::{Distribution, FloatDType};

use crate::config::{VitConfig, VitConfigError};
use crate::hooks::{DomainHooks, LinearSite, NoHooks, NormSite};

const INIT_STD: f64 = 0.02;

/// Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth"): drops a whole
/// residual branch per sample with probability `prob`, scaling the kept ones by `1 / (1 - prob)`.
///
/// Like burn 0.21's `Dropout`, it is active whenever the backend tracks gradients; set `prob`
/// to 0 (see [`Vit::deterministic`]) for a deterministic forward.
#[derive(Module, Clone, Debug)]
pub struct DropPath {
    /// Probability of dropping the branch.
    pub prob: f64,
}

impl DropPath {
    /// # Shapes
    /// - x: `[batch, tokens, dim]` -> same
    pub fn forward<B: Backend>(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if self.prob == 0.0 || !B::ad_enabled(&x.device()) {
            return x;
        }
        let keep = 1.0 - self.prob;
        let [n, _, _] = x.dims();
        let mask =
            Tensor::<B, 3>::random([n, 1, 1], Distribution::Bernoulli(keep), &x.device()) / keep;
        let dtype = x.dtype();
        x * mask.cast(dtype)
    }
}

/// `patch_embed`: a strided convolution turning an image into a sequence of patch tokens.
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// `patch_embed.proj`: conv with kernel = stride = patch size.
    pub proj: Conv2d<B>,
}

impl<B: Backend> PatchEmbed<B> {
    /// # Shapes
    /// - x: `[batch, channels, height, width]` -> `[batch, patches, embed_dim]`
    ///
    /// Computed as one matmul of the flattened patches with the conv weight (kernel = stride, no
    /// padding), which is the same linear map as the conv but leaves the tokens contiguous and
    /// keeps the input gradient (PGD) a matmul instead of a transposed convolution.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 3> {
        let [n, c, h, w] = x.dims();
        let [d, wc, ph, pw] = self.proj.weight.dims();
        assert_eq!(
            c, wc,
            "patch_embed: input has {c} channels, the conv expects {wc}"
        );
        let (gh, gw) = (h / ph, w / pw);
        // Like the strided conv, trailing rows/columns that do not fill a patch are dropped.
        let x = if gh * ph != h || gw * pw != w {
            x.slice([0..n, 0..c, 0..gh * ph, 0..gw * pw])
        } else {
            x
        };
        let patches = x
            .reshape([n, c, gh, ph, gw, pw])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([n * gh * gw, c * ph * pw]);
        let weight = self.proj.weight.val().reshape([d, c * ph * pw]);
        let y = patches.matmul(weight.transpose());
        let y = match &self.proj.bias {
            Some(b) => y + b.val().unsqueeze_dim::<2>(0),
            None => y,
        };
        y.reshape([n, gh * gw, d])
    }
}

/// A [`Linear`] applied to every token: `[batch, tokens, in] -> [batch, tokens, out]`.
///
/// One matmul each way over the flattened `[batch * tokens, in]` rows (burn 0.21 runs a rank-3
/// Linear as `batch` small matmuls and its weight gradient as a `[batch, in, out]` tensor summed
/// over the batch); fused on Flex ([`crate::fast::linear`]).
pub fn linear_tokens<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    crate::fast::linear(linear, x)
}

/// `blocks.N.attn`: multi-head self-attention with a fused qkv projection.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Fused query/key/value projection, `[dim] -> [3 * dim]`.
    pub qkv: Linear<B>,
    /// Output projection.
    pub proj: Linear<B>,
    /// Dropout after the output projection.
    pub proj_drop: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

/// `blocks.N.mlp`: two Linears with an exact (erf) GELU between them.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `[dim] -> [hidden]`.
    pub fc1: Linear<B>,
    /// `[hidden] -> [dim]`.
    pub fc2: Linear<B>,
    /// Dropout after each Linear.
    pub drop: Dropout,
}

/// One pre-norm transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention.
    pub norm1: LayerNorm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Norm before the MLP.
    pub norm2: LayerNorm<B>,
    /// MLP.
    pub mlp: Mlp<B>,
    /// Stochastic depth on both residual branches.
    pub drop_path: DropPath,
}

/// A Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words") laid out like
/// timm's `VisionTransformer` with a class token, so timm checkpoints load by name.
///
/// Inputs are pixels in [0, 1]; per-channel normalization happens inside [`Vit::forward`].
#[derive(Module, Debug)]
pub struct Vit<B: Backend> {
    /// Patch embedding.
    pub patch_embed: PatchEmbed<B>,
    /// Class token `[1, 1, embed_dim]` (the clean-domain token when an adapter is used).
    pub cls_token: Param<Tensor<B, 3>>,
    /// Learned position embedding `[1, 1 + patches, embed_dim]` (class token first).
    pub pos_embed: Param<Tensor<B, 3>>,
    /// Dropout after adding position embeddings.
    pub pos_drop: Dropout,
    /// Transformer blocks.
    pub blocks: Vec<Block<B>>,
    /// Final norm.
    pub norm: LayerNorm<B>,
    /// Dropout before the head.
    pub head_drop: Dropout,
    /// Classifier head.
    pub head: Linear<B>,
    /// Per-channel mean `[1, C, 1, 1]` (a constant, not a parameter).
    pub mean: Tensor<B, 4>,
    /// Per-channel reciprocal std `[1, C, 1, 1]` (a constant, not a parameter).
    pub inv_std: Tensor<B, 4>,
}

fn linear<B: Backend>(d_in: usize, d_out: usize, bias: bool, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: INIT_STD,
        })
        .init(device)
}

impl VitConfig {
    /// Validates the config, then builds the model with timm-like initialization
    /// (normal(0.02) weights, zero biases, unit norms).
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> Result<Vit<B>, VitConfigError> {
        self.validate()?;
        Ok(self.build(device))
    }

    /// Builds the model.
    ///
    /// # Panics
    /// If the config is invalid; use [`VitConfig::try_init`] for a `Result`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Vit<B> {
        match self.try_init(device) {
            Ok(vit) => vit,
            Err(e) => panic!("invalid ViT config: {e}"),
        }
    }

    fn build<B: Backend>(&self, device: &B::Device) -> Vit<B> {
        let d = self.embed_dim;
        let p = self.patch_size;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let drop = || DropoutConfig::new(self.drop_rate).init();
        let blocks = (0..self.depth)
            .map(|i| {
                let dpr = if self.depth > 1 {
                    self.drop_path_rate * i as f64 / (self.depth - 1) as f64
                } else {
                    self.drop_path_rate
                };
                Block {
                    norm1: norm(),
                    attn: Attention {
                        qkv: linear(d, 3 * d, self.qkv_bias, device),
                        proj: linear(d, d, true, device),
                        proj_drop: drop(),
                        num_heads: self.num_heads,
                    },
                    norm2: norm(),
                    mlp: Mlp {
                        fc1: linear(d, self.mlp_hidden(), true, device),
                        fc2: linear(self.mlp_hidden(), d, true, device),
                        drop: drop(),
                    },
                    drop_path: DropPath { prob: dpr },
                }
            })
            .collect();
        let channel_const = |v: &[f64]| {
            Tensor::<B, 1>::from_floats(
                v.iter().map(|x| *x as f32).collect::<Vec<_>>().as_slice(),
                device,
            )
            .reshape([1, self.in_chans, 1, 1])
        };
        let inv_std: Vec<f64> = self.std.iter().map(|s| 1.0 / s).collect();
        Vit {
            patch_embed: PatchEmbed {
                proj: Conv2dConfig::new([self.in_chans, d], [p, p])
                    .with_stride([p, p])
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: INIT_STD,
                    })
                    .init(device),
            },
            cls_token: Initializer::Normal {
                mean: 0.0,
                std: 1e-6,
            }
            .init([1, 1, d], device),
            pos_embed: Initializer::Normal {
                mean: 0.0,
                std: INIT_STD,
            }
            .init([1, self.num_patches() + 1, d], device),
            pos_drop: drop(),
            blocks,
            norm: norm(),
            head_drop: drop(),
            head: linear(d, self.num_classes, true, device),
            mean: channel_const(&self.mean),
            inv_std: channel_const(&inv_std),
        }
    }
}

impl<B: Backend> Attention<B> {
    /// # Shapes
    /// - x: `[batch, tokens, dim]` -> same
    pub fn forward_with<H: DomainHooks<B>>(
        &self,
        block: usize,
        x: Tensor<B, 3>,
        hooks: &H,
    ) -> Tensor<B, 3> {
        let qkv = hooks.linear(LinearSite::Qkv(block), &self.qkv, x);
        let out = crate::fast::attention(qkv, self.num_heads);
        let out = hooks.linear(LinearSite::Proj(block), &self.proj, out);
        self.proj_drop.forward(out)
    }
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// - x: `[batch, tokens, dim]` -> same
    pub fn forward_with<H: DomainHooks<B>>(
        &self,
        block: usize,
        x: Tensor<B, 3>,
        hooks: &H,
    ) -> Tensor<B, 3> {
        let x = crate::fast::gelu(hooks.linear(LinearSite::Fc1(block), &self.fc1, x));
        let x = self.drop.forward(x);
        let x = hooks.linear(LinearSite::Fc2(block), &self.fc2, x);
        self.drop.forward(x)
    }
}

impl<B: Backend> Block<B> {
    /// # Shapes
    /// - x: `[batch, tokens, dim]` -> same
    pub fn forward_with<H: DomainHooks<B>>(
        &self,
        index: usize,
        x: Tensor<B, 3>,
        hooks: &H,
    ) -> Tensor<B, 3> {
        let site1 = NormSite::Block {
            block: index,
            second: false,
        };
        let site2 = NormSite::Block {
            block: index,
            second: true,
        };
        let y = hooks.layer_norm(site1, &self.norm1, x.clone());
        let x = x + self
            .drop_path
            .forward(self.attn.forward_with(index, y, hooks));
        let y = hooks.layer_norm(site2, &self.norm2, x.clone());
        x.clone()
            + self
                .drop_path
                .forward(self.mlp.forward_with(index, y, hooks))
    }
}

impl<B: Backend> Vit<B> {
    /// Logits for pixels in [0, 1] with every parameter shared.
    ///
    /// # Shapes
    /// - x: `[batch, in_chans, img_size, img_size]` -> `[batch, num_classes]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_with(x, &NoHooks)
    }

    /// Logits with domain hooks (adapters) applied.
    ///
    /// # Shapes
    /// - x: `[batch, in_chans, img_size, img_size]` -> `[batch, num_classes]`
    pub fn forward_with<H: DomainHooks<B>>(&self, x: Tensor<B, 4>, hooks: &H) -> Tensor<B, 2> {
        let features = self.forward_features(x, hooks);
        // f32 logits whatever the compute dtype: losses and attack gradients are f32.
        self.forward_head(features, hooks).cast(FloatDType::F32)
    }

    /// Normalized token sequence after the final norm (class token first).
    ///
    /// # Shapes
    /// - x: `[batch, in_chans, img_size, img_size]` -> `[batch, 1 + patches (+ prompts), embed_dim]`
    pub fn forward_features<H: DomainHooks<B>>(&self, x: Tensor<B, 4>, hooks: &H) -> Tensor<B, 3> {
        let mut x = self.embed(x, hooks);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward_with(i, x, hooks);
        }
        hooks.layer_norm(NormSite::Final, &self.norm, x)
    }

    /// Normalized pixels to the token sequence the blocks read: class token, position-embedded
    /// patches, then prompts if the hooks add any.
    ///
    /// # Shapes
    /// - x: `[batch, in_chans, img_size, img_size]` -> `[batch, 1 + patches (+ prompts), embed_dim]`
    fn embed<H: DomainHooks<B>>(&self, x: Tensor<B, 4>, hooks: &H) -> Tensor<B, 3> {
        let [n, c, hh, ww] = x.dims();
        let [_, expected_c, _, _] = self.mean.dims();
        assert_eq!(
            c, expected_c,
            "vit: input has {c} channels, the model expects {expected_c}"
        );
        let [_, tokens, _] = self.pos_embed.val().dims();
        let p = self.patch_embed.proj.weight.val().dims()[2];
        assert_eq!(
            (hh / p) * (ww / p) + 1,
            tokens,
            "vit: input is {hh}x{ww}, which does not give the model's {} patches",
            tokens - 1
        );
        // Pixels are normalized in f32, then take the weights' dtype (bf16 under mixed
        // precision: `Precision`).
        let x = crate::fast::normalize(x, self.mean.clone(), self.inv_std.clone());
        let x = x.cast(self.patch_embed.proj.weight.val().dtype());
        let x = self.patch_embed.forward(x);
        let cls = hooks.cls_token(&self.cls_token, n);
        let x = crate::fast::add_positions(Tensor::cat(vec![cls, x], 1), self.pos_embed.val());
        let x = self.pos_drop.forward(x);
        match hooks.extra_tokens(n) {
            Some(prompts) => Tensor::cat(vec![x, prompts], 1),
            None => x,
        }
    }

    /// Logits from the class token of [`Vit::forward_features`]'s output.
    ///
    /// # Shapes
    /// - features: `[batch, tokens, embed_dim]` -> `[batch, num_classes]`
    pub fn forward_head<H: DomainHooks<B>>(
        &self,
        features: Tensor<B, 3>,
        hooks: &H,
    ) -> Tensor<B, 2> {
        let [n, _, d] = features.dims();
        let cls = features.slice([0..n, 0..1, 0..d]);
        let cls = self.head_drop.forward(cls);
        let logits = hooks.linear(LinearSite::Head, &self.head, cls);
        logits.squeeze_dim::<2>(1)
    }

    /// The same model with every dropout and drop-path probability at 0, so that its forward is
    /// deterministic on every backend (burn 0.21 applies dropout on any autodiff forward).
    /// Attacks must run on such a copy.
    pub fn deterministic(mut self) -> Self {
        self.pos_drop.prob = 0.0;
        self.head_drop.prob = 0.0;
        for b in &mut self.blocks {
            b.attn.proj_drop.prob = 0.0;
            b.mlp.drop.prob = 0.0;
            b.drop_path.prob = 0.0;
        }
        self
    }

    /// Token width.
    pub fn embed_dim(&self) -> usize {
        self.cls_token.val().dims()[2]
    }

    /// Number of transformer blocks.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.head.weight.val().dims()[1]
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    type TestBackend = Flex;

    fn tiny() -> VitConfig {
        VitConfig::new()
            .with_img_size(8)
            .with_patch_size(4)
            .with_in_chans(2)
            .with_num_classes(3)
            .with_embed_dim(16)
            .with_depth(2)
            .with_num_heads(2)
            .with_mean(vec![0.4, 0.5])
            .with_std(vec![0.3, 0.2])
    }

    fn close<const D: usize>(a: Tensor<TestBackend, D>, b: Tensor<TestBackend, D>) {
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::rel_abs(1e-5, 1e-6));
    }

    #[test]
    fn patch_embed_is_the_strided_conv() {
        let device = Default::default();
        let vit = tiny().init::<TestBackend>(&device);
        // 9x9: the conv drops the last row and column, so must the matmul form.
        let x = Tensor::<TestBackend, 4>::random([3, 2, 9, 9], Distribution::Default, &device);
        let conv = vit
            .patch_embed
            .proj
            .forward(x.clone())
            .flatten::<3>(2, 3)
            .swap_dims(1, 2);
        close(vit.patch_embed.forward(x), conv);
    }
}
