//! [`AdaptedVit`]: a ViT plus domain-specific parameters, routed per sample.

use advsoup_vit::{
    DomainHooks, LinearSite, NormSite, Vit, VitConfig, VitConfigError, linear_tokens,
};
use burn::module::{Initializer, Param};
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::kind::AdapterKind;

/// An input domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// Clean inputs: the clean adapter φ_clean.
    Clean,
    /// Adversarial inputs: the adversarial adapter φ_adv.
    Adversarial,
}

impl Domain {
    /// Weight of φ_clean for this domain (1 for clean, 0 for adversarial).
    pub fn clean_weight(self) -> f32 {
        match self {
            Domain::Clean => 1.0,
            Domain::Adversarial => 0.0,
        }
    }
}

/// How a whole batch uses the adapters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Clean mode: φ_clean.
    Clean,
    /// Robust mode: φ_adv.
    Adversarial,
    /// An adversarial model soup: φ(β) = β·φ_clean + (1 − β)·φ_adv.
    Soup(f32),
}

impl Mode {
    /// Weight β of φ_clean.
    pub fn clean_weight(self) -> f32 {
        match self {
            Mode::Clean => 1.0,
            Mode::Adversarial => 0.0,
            Mode::Soup(beta) => beta,
        }
    }
}

/// Per-forward routing: which mixture of φ_clean and φ_adv each sample uses.
#[derive(Debug, Clone)]
pub enum Route<B: Backend> {
    /// Every sample uses φ = w·φ_clean + (1 − w)·φ_adv (w = 1 is exactly φ_clean, w = 0 exactly
    /// φ_adv).
    Uniform(f32),
    /// Sample i uses weight `w[i]`: `[batch]`. With weights in {0, 1} this is a mixed
    /// clean/adversarial batch in ONE forward pass.
    PerSample(Tensor<B, 1>),
}

impl<B: Backend> Route<B> {
    /// All samples in `mode`.
    pub fn mode(mode: Mode) -> Self {
        Route::Uniform(mode.clean_weight())
    }

    /// One domain per sample.
    pub fn domains(domains: &[Domain], device: &B::Device) -> Self {
        let w: Vec<f32> = domains.iter().map(|d| d.clean_weight()).collect();
        Route::PerSample(Tensor::from_floats(w.as_slice(), device))
    }

    /// The first `n_clean` samples clean, the next `n_adv` adversarial (co-training's layout).
    pub fn split(n_clean: usize, n_adv: usize, device: &B::Device) -> Self {
        let mut d = vec![Domain::Clean; n_clean];
        d.extend(std::iter::repeat_n(Domain::Adversarial, n_adv));
        Self::domains(&d, device)
    }
}

/// The clean and adversarial parameters of a LoRA-adapted matrix.
#[derive(Module, Debug)]
pub struct LoraPair<B: Backend> {
    /// Clean `A`: `[rank, in]`.
    pub a_clean: Param<Tensor<B, 2>>,
    /// Clean `B`: `[out, rank]` (zero at init, so the update starts at 0).
    pub b_clean: Param<Tensor<B, 2>>,
    /// Adversarial `A`.
    pub a_adv: Param<Tensor<B, 2>>,
    /// Adversarial `B`.
    pub b_adv: Param<Tensor<B, 2>>,
}

/// The domain-specific parameters beyond the model's own. Where a parameter is duplicated
/// (class token, LayerNorms, biases), the model's own copy is φ_clean and this holds φ_adv.
#[derive(Module, Debug)]
pub struct DomainAdapter<B: Backend> {
    /// Which adapter this is.
    #[module(skip)]
    pub kind: AdapterKind,
    /// Adversarial class token `[1, 1, embed_dim]` (cls-token adapter).
    pub cls_token_adv: Option<Param<Tensor<B, 3>>>,
    /// Adversarial copy of every LayerNorm, by [`NormSite::index`] (dual-LayerNorm adapter).
    pub norms_adv: Vec<LayerNorm<B>>,
    /// Adversarial copy of every Linear bias, in block order (qkv, proj, fc1, fc2), then head.
    pub biases_adv: Vec<Param<Tensor<B, 1>>>,
    /// Clean prompt tokens `[1, k, embed_dim]`.
    pub prompt_clean: Option<Param<Tensor<B, 3>>>,
    /// Adversarial prompt tokens `[1, k, embed_dim]`.
    pub prompt_adv: Option<Param<Tensor<B, 3>>>,
    /// LoRA on `blocks.N.attn.qkv`.
    pub lora_qkv: Vec<LoraPair<B>>,
    /// LoRA on `blocks.N.attn.proj`.
    pub lora_proj: Vec<LoraPair<B>>,
    /// LayerNorm epsilon of the model (for per-sample norms).
    pub ln_eps: f64,
    /// Whether the model's qkv projection has a bias (for bias indexing).
    pub qkv_bias: bool,
}

/// A ViT with a domain adapter: the model researchers train, attack and soup.
#[derive(Module, Debug)]
pub struct AdaptedVit<B: Backend> {
    /// The shared model (holding φ_clean where a parameter is duplicated).
    pub vit: Vit<B>,
    /// The domain-specific parameters.
    pub adapter: DomainAdapter<B>,
}

/// A ViT config plus an adapter kind.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptedVitConfig {
    /// The model.
    pub vit: VitConfig,
    /// The adapter.
    pub adapter: AdapterKind,
}

impl AdaptedVitConfig {
    /// Builds a fresh model with its adapter.
    pub fn try_init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<AdaptedVit<B>, VitConfigError> {
        let vit = self.vit.try_init(device)?;
        Ok(AdaptedVit::new(vit, self.adapter, &self.vit))
    }

    /// Parameters of the plain model plus the adapter.
    pub fn num_params(&self) -> usize {
        self.vit.num_params() + self.adapter.added_params(&self.vit)
    }
}

fn copy_param<B: Backend, const D: usize>(p: &Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
    Param::from_tensor(p.val().detach())
}

fn copy_norm<B: Backend>(n: &LayerNorm<B>) -> LayerNorm<B> {
    let mut copy = n.clone();
    copy.gamma = copy_param(&n.gamma);
    copy.beta = n.beta.as_ref().map(copy_param);
    copy
}

fn bias_of<B: Backend>(l: &Linear<B>) -> Option<Param<Tensor<B, 1>>> {
    l.bias.as_ref().map(copy_param)
}

fn lora_pair<B: Backend>(
    rank: usize,
    d_in: usize,
    d_out: usize,
    device: &B::Device,
) -> LoraPair<B> {
    let a = || {
        Initializer::KaimingUniform {
            gain: 1.0 / 3.0f64.sqrt(),
            fan_out_only: false,
        }
        .init_with([rank, d_in], Some(d_in), Some(rank), device)
    };
    let b = || Initializer::Zeros.init([d_out, rank], device);
    LoraPair {
        a_clean: a(),
        b_clean: b(),
        a_adv: a(),
        b_adv: b(),
    }
}

impl<B: Backend> AdaptedVit<B> {
    /// Wraps a model with an adapter. Duplicated parameters (token, norms, biases) start as
    /// copies of the model's own (e.g. of pretrained timm weights); prompts start at N(0, 0.02)
    /// and LoRA updates at zero.
    pub fn new(vit: Vit<B>, kind: AdapterKind, config: &VitConfig) -> Self {
        let device = vit.cls_token.val().device();
        let d = config.embed_dim;
        let mut adapter = DomainAdapter {
            kind,
            cls_token_adv: None,
            norms_adv: Vec::new(),
            biases_adv: Vec::new(),
            prompt_clean: None,
            prompt_adv: None,
            lora_qkv: Vec::new(),
            lora_proj: Vec::new(),
            ln_eps: config.layer_norm_eps,
            qkv_bias: config.qkv_bias,
        };
        match kind {
            AdapterKind::None => {}
            AdapterKind::ClsToken => adapter.cls_token_adv = Some(copy_param(&vit.cls_token)),
            AdapterKind::DualLayerNorm => {
                for b in &vit.blocks {
                    adapter.norms_adv.push(copy_norm(&b.norm1));
                    adapter.norms_adv.push(copy_norm(&b.norm2));
                }
                adapter.norms_adv.push(copy_norm(&vit.norm));
            }
            AdapterKind::Bias => {
                for b in &vit.blocks {
                    for l in [&b.attn.qkv, &b.attn.proj, &b.mlp.fc1, &b.mlp.fc2] {
                        adapter.biases_adv.extend(bias_of(l));
                    }
                }
                adapter.biases_adv.extend(bias_of(&vit.head));
            }
            AdapterKind::Prompt { tokens } => {
                let init = Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                };
                adapter.prompt_clean = Some(init.init([1, tokens, d], &device));
                adapter.prompt_adv = Some(init.init([1, tokens, d], &device));
            }
            AdapterKind::Lora { rank } => {
                for _ in &vit.blocks {
                    adapter.lora_qkv.push(lora_pair(rank, d, 3 * d, &device));
                    adapter.lora_proj.push(lora_pair(rank, d, d, &device));
                }
            }
        }
        Self { vit, adapter }
    }

    /// Logits under a routing.
    ///
    /// # Shapes
    /// - x: `[batch, C, H, W]` pixels in [0, 1] -> `[batch, num_classes]`
    /// - a [`Route::PerSample`] weight vector has `batch` entries
    pub fn forward(&self, x: Tensor<B, 4>, route: &Route<B>) -> Tensor<B, 2> {
        if let Route::PerSample(w) = route {
            assert_eq!(
                w.dims()[0],
                x.dims()[0],
                "adapters: route has {} weights for a batch of {}",
                w.dims()[0],
                x.dims()[0]
            );
        }
        let hooks = Routed {
            adapter: &self.adapter,
            depth: self.vit.blocks.len(),
            route,
        };
        self.vit.forward_with(x, &hooks)
    }

    /// Logits with the whole batch in one mode.
    pub fn forward_mode(&self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 2> {
        self.forward(x, &Route::mode(mode))
    }

    /// The same model with dropout and drop-path off (for attacks).
    pub fn deterministic(self) -> Self {
        Self {
            vit: self.vit.deterministic(),
            adapter: self.adapter,
        }
    }

    /// The adapter kind.
    pub fn kind(&self) -> AdapterKind {
        self.adapter.kind
    }

    /// Domain-specific parameters per domain, counted from the tensors themselves.
    pub fn params_per_domain(&self) -> usize {
        let n = |p: &Param<Tensor<B, 1>>| p.val().dims()[0];
        let a = &self.adapter;
        let mut count = 0;
        if let Some(t) = &a.cls_token_adv {
            count += t.val().shape().num_elements();
        }
        for norm in &a.norms_adv {
            count += n(&norm.gamma) + norm.beta.as_ref().map_or(0, n);
        }
        for b in &a.biases_adv {
            count += n(b);
        }
        if let Some(p) = &a.prompt_clean {
            count += p.val().shape().num_elements();
        }
        for pair in a.lora_qkv.iter().chain(&a.lora_proj) {
            count += pair.a_clean.val().shape().num_elements()
                + pair.b_clean.val().shape().num_elements();
        }
        count
    }
}

struct Routed<'a, B: Backend> {
    adapter: &'a DomainAdapter<B>,
    depth: usize,
    route: &'a Route<B>,
}

/// φ = w·c + (1 − w)·a, exact at w ∈ {0, 1}. Both inputs are rank 3 with a leading 1; a
/// per-sample route broadcasts them to `[batch, ..]`.
fn mix3<B: Backend>(
    clean: Tensor<B, 3>,
    adv: Tensor<B, 3>,
    route: &Route<B>,
    batch: usize,
) -> Tensor<B, 3> {
    match route {
        Route::Uniform(w) => {
            let mixed = if *w == 1.0 {
                clean
            } else if *w == 0.0 {
                adv
            } else {
                clean * *w + adv * (1.0 - *w)
            };
            let [_, a, b] = mixed.dims();
            mixed.expand([batch, a, b])
        }
        Route::PerSample(w) => {
            // The weights are f32; a bf16 compute copy (mixed precision) mixes in bf16.
            let w = w.clone().cast(clean.dtype()).reshape([batch, 1, 1]);
            let one_minus = w.clone().neg() + 1.0;
            clean * w + adv * one_minus
        }
    }
}

/// Uniform weight if the route is uniform.
fn uniform<B: Backend>(route: &Route<B>) -> Option<f32> {
    match route {
        Route::Uniform(w) => Some(*w),
        Route::PerSample(_) => None,
    }
}

fn normalize<B: Backend>(x: Tensor<B, 3>, eps: f64) -> Tensor<B, 3> {
    let mean = x.clone().mean_dim(2);
    let centered = x - mean;
    let var = centered.clone().powi_scalar(2).mean_dim(2);
    centered / (var + eps).sqrt()
}

fn row<B: Backend>(t: Tensor<B, 1>) -> Tensor<B, 3> {
    let [d] = t.dims();
    t.reshape([1, 1, d])
}

impl<B: Backend> Routed<'_, B> {
    fn bias_index(&self, site: LinearSite) -> Option<usize> {
        let per_block = if self.adapter.qkv_bias { 4 } else { 3 };
        let q = usize::from(self.adapter.qkv_bias);
        Some(match site {
            LinearSite::Qkv(b) if self.adapter.qkv_bias => b * per_block,
            LinearSite::Qkv(_) => return None,
            LinearSite::Proj(b) => b * per_block + q,
            LinearSite::Fc1(b) => b * per_block + q + 1,
            LinearSite::Fc2(b) => b * per_block + q + 2,
            LinearSite::Head => self.depth * per_block,
        })
    }

    fn lora(&self, site: LinearSite) -> Option<&LoraPair<B>> {
        match site {
            LinearSite::Qkv(b) => self.adapter.lora_qkv.get(b),
            LinearSite::Proj(b) => self.adapter.lora_proj.get(b),
            _ => None,
        }
    }
}

impl<B: Backend> DomainHooks<B> for Routed<'_, B> {
    fn cls_token(&self, token: &Param<Tensor<B, 3>>, batch: usize) -> Tensor<B, 3> {
        match &self.adapter.cls_token_adv {
            None => {
                let t = token.val();
                let [_, _, d] = t.dims();
                t.expand([batch, 1, d])
            }
            Some(adv) => mix3(token.val(), adv.val(), self.route, batch),
        }
    }

    fn extra_tokens(&self, batch: usize) -> Option<Tensor<B, 3>> {
        let (c, a) = (
            self.adapter.prompt_clean.as_ref()?,
            self.adapter.prompt_adv.as_ref()?,
        );
        Some(mix3(c.val(), a.val(), self.route, batch))
    }

    fn layer_norm(&self, site: NormSite, norm: &LayerNorm<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let Some(adv) = self.adapter.norms_adv.get(site.index(self.depth)) else {
            return advsoup_vit::fast::layer_norm(norm, x);
        };
        match uniform(self.route) {
            Some(1.0) => return advsoup_vit::fast::layer_norm(norm, x),
            Some(0.0) => return advsoup_vit::fast::layer_norm(adv, x),
            _ => {}
        }
        // Normalized in f32 (a no-op cast in f32 runs; mixed precision keeps LayerNorm in f32).
        let (dtype, f32) = (x.dtype(), FloatDType::F32);
        let [n, _, _] = x.dims();
        let gamma = mix3(row(norm.gamma.val()), row(adv.gamma.val()), self.route, n);
        let y = normalize(x.cast(f32), self.adapter.ln_eps) * gamma.cast(f32);
        let y = match (&norm.beta, &adv.beta) {
            (Some(bc), Some(ba)) => y + mix3(row(bc.val()), row(ba.val()), self.route, n).cast(f32),
            _ => y,
        };
        y.cast(dtype)
    }

    fn linear(&self, site: LinearSite, linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if let Some(pair) = self.lora(site) {
            let [n, _, _] = x.dims();
            let lift = |t: Tensor<B, 2>| t.unsqueeze_dim::<3>(0);
            let a = mix3(
                lift(pair.a_clean.val()),
                lift(pair.a_adv.val()),
                self.route,
                n,
            );
            let b = mix3(
                lift(pair.b_clean.val()),
                lift(pair.b_adv.val()),
                self.route,
                n,
            );
            let delta = x
                .clone()
                .matmul(a.swap_dims(1, 2))
                .matmul(b.swap_dims(1, 2));
            return linear_tokens(linear, x) + delta;
        }
        let adv_bias = self
            .bias_index(site)
            .and_then(|i| self.adapter.biases_adv.get(i));
        let (Some(adv), Some(clean)) = (adv_bias, linear.bias.as_ref()) else {
            return linear_tokens(linear, x);
        };
        if uniform(self.route) == Some(1.0) {
            return linear_tokens(linear, x);
        }
        // One flat matmul (see `linear_tokens`), then the per-sample bias.
        let [n, t, d] = x.dims();
        let y = x.reshape([n * t, d]).matmul(linear.weight.val());
        let [_, out] = y.dims();
        y.reshape([n, t, out]) + mix3(row(clean.val()), row(adv.val()), self.route, n)
    }
}

impl<B: Backend> AdaptedVit<B> {
    /// The plain model with `mode`'s domain-specific parameters baked in (φ = β·φ_clean +
    /// (1 − β)·φ_adv written into the model's own parameters), e.g. to export a soup to timm.
    /// Available for the adapters whose parameters duplicate the model's own (`none`,
    /// `cls_token`, `dual_layer_norm`, `bias`); prompts and LoRA add computation a plain ViT
    /// does not have.
    pub fn bake(&self, mode: Mode) -> Option<Vit<B>> {
        let w = mode.clean_weight();
        let mix = |c: Tensor<B, 1>, a: Tensor<B, 1>| -> Param<Tensor<B, 1>> {
            let t = if w == 1.0 {
                c
            } else if w == 0.0 {
                a
            } else {
                c * w + a * (1.0 - w)
            };
            Param::from_tensor(t.detach())
        };
        let mut vit = self.vit.clone();
        let a = &self.adapter;
        match a.kind {
            AdapterKind::None => {}
            AdapterKind::ClsToken => {
                let adv = a.cls_token_adv.as_ref()?.val();
                let [_, _, d] = adv.dims();
                let c = vit.cls_token.val().reshape([d]);
                vit.cls_token =
                    Param::from_tensor(mix(c, adv.reshape([d])).val().reshape([1, 1, d]));
            }
            AdapterKind::DualLayerNorm => {
                let mut norms: Vec<&mut LayerNorm<B>> = vit
                    .blocks
                    .iter_mut()
                    .flat_map(|b| [&mut b.norm1, &mut b.norm2])
                    .collect();
                norms.push(&mut vit.norm);
                for (n, adv) in norms.into_iter().zip(&a.norms_adv) {
                    n.gamma = mix(n.gamma.val(), adv.gamma.val());
                    if let (Some(bc), Some(ba)) = (&n.beta, &adv.beta) {
                        n.beta = Some(mix(bc.val(), ba.val()));
                    }
                }
            }
            AdapterKind::Bias => {
                let mut linears: Vec<&mut Linear<B>> = vit
                    .blocks
                    .iter_mut()
                    .flat_map(|b| {
                        [
                            &mut b.attn.qkv,
                            &mut b.attn.proj,
                            &mut b.mlp.fc1,
                            &mut b.mlp.fc2,
                        ]
                    })
                    .filter(|l| l.bias.is_some())
                    .collect();
                linears.push(&mut vit.head);
                for (l, adv) in linears.into_iter().zip(&a.biases_adv) {
                    let c = l.bias.as_ref()?.val();
                    l.bias = Some(mix(c, adv.val()));
                }
            }
            AdapterKind::Prompt { .. } | AdapterKind::Lora { .. } => return None,
        }
        Some(vit)
    }
}
