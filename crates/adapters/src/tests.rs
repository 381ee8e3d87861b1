use super::*;
use advsoup_vit::VitConfig;
use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};

type TestBackend = Flex;

const ALL: [AdapterKind; 6] = [
    AdapterKind::None,
    AdapterKind::ClsToken,
    AdapterKind::DualLayerNorm,
    AdapterKind::Bias,
    AdapterKind::Prompt { tokens: 2 },
    AdapterKind::Lora { rank: 2 },
];

fn tiny() -> VitConfig {
    VitConfig::new()
        .with_img_size(8)
        .with_patch_size(4)
        .with_in_chans(1)
        .with_num_classes(3)
        .with_embed_dim(16)
        .with_depth(2)
        .with_num_heads(2)
        .with_mean(vec![0.5])
        .with_std(vec![0.25])
}

/// Adds noise to every parameter so that φ_clean ≠ φ_adv and LoRA updates are non-zero.
struct Perturb;
impl<B: Backend> ModuleMapper<B> for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|t| {
            let noise = t.random_like(Distribution::Normal(0.0, 0.3));
            t + noise
        })
    }
}

/// Runs `draw` with Flex's one process-wide generator seeded with `seed` and held for the
/// duration: tests run on parallel threads, and a draw of another test between `seed` and
/// `draw` would change what `draw` gets (two models meant to differ came out equal, a tolerance
/// met for one draw failed for another). Every draw of this binary goes through here.
fn seeded<T>(seed: u64, draw: impl FnOnce(&Device<TestBackend>) -> T) -> T {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    TestBackend::seed(&device, seed);
    draw(&device)
}

fn model(kind: AdapterKind, seed: u64) -> AdaptedVit<TestBackend> {
    seeded(seed, |device| {
        AdaptedVitConfig {
            vit: tiny(),
            adapter: kind,
        }
        .try_init::<TestBackend>(device)
        .expect("valid config")
        .map(&mut Perturb)
    })
}

fn input(n: usize, seed: u64) -> Tensor<TestBackend, 4> {
    seeded(seed, |device| {
        Tensor::random([n, 1, 8, 8], Distribution::Default, device)
    })
}

#[test]
fn paper_parameter_counts_for_vit_base() {
    let base = VitConfig::vit_base_patch16_224();
    assert_eq!(base.num_params(), 86_567_656);
    assert_eq!(AdapterKind::ClsToken.params_per_domain(&base), 768);
    assert_eq!(
        AdapterKind::DualLayerNorm.params_per_domain(&base),
        2 * 768 * (2 * 12 + 1)
    );
    assert_eq!(AdapterKind::None.params_per_domain(&base), 0);
    assert_eq!(
        AdapterKind::Prompt { tokens: 4 }.params_per_domain(&base),
        4 * 768
    );
    // bias: per block qkv 2304 + proj 768 + fc1 3072 + fc2 768, plus the head's 1000
    assert_eq!(AdapterKind::Bias.params_per_domain(&base), 12 * 6912 + 1000);
    // LoRA rank 4 on qkv (768 -> 2304) and proj (768 -> 768) of 12 blocks
    assert_eq!(
        AdapterKind::Lora { rank: 4 }.params_per_domain(&base),
        12 * (4 * (768 + 2304) + 4 * (768 + 768))
    );
}

/// The counts `cargo xtask sweep-adapters` reports for configs/sweep-fmnist.toml's model (28x28
/// gray, patch 7, dim 64, depth 4, 4 heads, MLP 128, 10 classes), pinned by hand and counted
/// from the initialized tensors.
#[test]
fn sweep_fmnist_parameter_counts() {
    let vit = VitConfig::new()
        .with_img_size(28)
        .with_patch_size(7)
        .with_in_chans(1)
        .with_num_classes(10)
        .with_embed_dim(64)
        .with_depth(4)
        .with_num_heads(4)
        .with_mlp_ratio(2.0)
        .with_mean(vec![0.286])
        .with_std(vec![0.353]);
    let device = Default::default();
    for (kind, want) in [
        (AdapterKind::None, 0),
        (AdapterKind::ClsToken, 64),
        // 2 LayerNorms (γ, β) per block and the final one
        (AdapterKind::DualLayerNorm, (2 * 4 + 1) * 2 * 64),
        // per block qkv 192 + proj 64 + fc1 128 + fc2 64, and the head's 10
        (AdapterKind::Bias, 4 * 448 + 10),
        (AdapterKind::Prompt { tokens: 4 }, 4 * 64),
        // rank 4 on qkv (64 -> 192) and proj (64 -> 64) of 4 blocks
        (
            AdapterKind::Lora { rank: 4 },
            4 * (4 * (64 + 192) + 4 * (64 + 64)),
        ),
    ] {
        assert_eq!(kind.params_per_domain(&vit), want, "{kind}: formula");
        let m = AdaptedVitConfig {
            vit: vit.clone(),
            adapter: kind,
        }
        .try_init::<TestBackend>(&device)
        .expect("valid config");
        assert_eq!(m.params_per_domain(), want, "{kind}: tensors");
    }
}

#[test]
fn counted_tensors_match_the_formulas() {
    for kind in ALL {
        let m = model(kind, 1);
        let config = tiny();
        assert_eq!(
            m.params_per_domain(),
            kind.params_per_domain(&config),
            "{kind}"
        );
        let total = AdaptedVitConfig {
            vit: config.clone(),
            adapter: kind,
        }
        .num_params();
        assert_eq!(m.num_params(), total, "{kind}");
    }
}

#[test]
fn mixed_batch_routing_equals_separate_forwards() {
    let device = Default::default();
    for kind in ALL {
        let m = model(kind, 2);
        let x = input(5, 3);
        // samples 0, 2, 3 clean; 1, 4 adversarial
        let domains = [
            Domain::Clean,
            Domain::Adversarial,
            Domain::Clean,
            Domain::Clean,
            Domain::Adversarial,
        ];
        let mixed = m.forward(x.clone(), &Route::domains(&domains, &device));
        let clean = m.forward_mode(x.clone(), Mode::Clean);
        let adv = m.forward_mode(x, Mode::Adversarial);
        for (i, d) in domains.iter().enumerate() {
            let want = match d {
                Domain::Clean => clean.clone(),
                Domain::Adversarial => adv.clone(),
            };
            mixed
                .clone()
                .narrow(0, i, 1)
                .into_data()
                .assert_approx_eq::<f32>(
                    &want.narrow(0, i, 1).into_data(),
                    Tolerance::rel_abs(1e-5, 1e-5),
                );
        }
    }
}

#[test]
fn modes_differ_exactly_when_the_adapter_has_parameters() {
    for kind in ALL {
        let m = model(kind, 4);
        let x = input(3, 5);
        let clean = m.forward_mode(x.clone(), Mode::Clean).into_data();
        let adv = m.forward_mode(x, Mode::Adversarial).into_data();
        if kind == AdapterKind::None {
            assert_eq!(clean, adv);
        } else {
            assert_ne!(clean, adv, "{kind}: the two modes should differ");
        }
    }
}

#[test]
fn soup_endpoints_are_the_two_modes_bit_for_bit() {
    for kind in ALL {
        let m = model(kind, 6);
        let x = input(3, 7);
        let run = |mode| m.forward_mode(x.clone(), mode).into_data();
        assert_eq!(run(Mode::Soup(1.0)), run(Mode::Clean), "{kind}");
        assert_eq!(run(Mode::Soup(0.0)), run(Mode::Adversarial), "{kind}");
        // per-sample weights of all ones compute the same mixture through another path
        let device = Default::default();
        let ones = m.forward(x.clone(), &Route::PerSample(Tensor::ones([3], &device)));
        ones.into_data()
            .assert_approx_eq::<f32>(&run(Mode::Clean), Tolerance::rel_abs(1e-5, 1e-5));
        if kind != AdapterKind::None {
            assert_ne!(run(Mode::Soup(0.5)), run(Mode::Clean), "{kind}");
        }
    }
}

#[test]
fn soup_uses_the_interpolated_parameters() {
    // Soup(β) must equal a plain model whose domain-specific parameters were interpolated.
    for kind in [
        AdapterKind::ClsToken,
        AdapterKind::DualLayerNorm,
        AdapterKind::Bias,
    ] {
        let m = model(kind, 8);
        let x = input(3, 9);
        for beta in [0.25f32, 0.7] {
            let mut plain = m.vit.clone();
            let mix1 = |c: Tensor<TestBackend, 1>, a: Tensor<TestBackend, 1>| {
                Param::from_tensor(c * beta + a * (1.0 - beta))
            };
            match kind {
                AdapterKind::ClsToken => {
                    let a = m.adapter.cls_token_adv.as_ref().expect("token").val();
                    plain.cls_token =
                        Param::from_tensor(m.vit.cls_token.val() * beta + a * (1.0 - beta));
                }
                AdapterKind::DualLayerNorm => {
                    let mut norms: Vec<_> = plain
                        .blocks
                        .iter_mut()
                        .flat_map(|b| [&mut b.norm1, &mut b.norm2])
                        .collect();
                    norms.push(&mut plain.norm);
                    for (n, a) in norms.into_iter().zip(&m.adapter.norms_adv) {
                        n.gamma = mix1(n.gamma.val(), a.gamma.val());
                        let (bc, ba) = (
                            n.beta.as_ref().expect("beta"),
                            a.beta.as_ref().expect("beta"),
                        );
                        n.beta = Some(mix1(bc.val(), ba.val()));
                    }
                }
                AdapterKind::Bias => {
                    let mut linears: Vec<_> = plain
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
                        .collect();
                    linears.push(&mut plain.head);
                    for (l, a) in linears.into_iter().zip(&m.adapter.biases_adv) {
                        let c = l.bias.as_ref().expect("bias").val();
                        l.bias = Some(mix1(c, a.val()));
                    }
                }
                _ => unreachable!(),
            }
            let soup = m.forward_mode(x.clone(), Mode::Soup(beta));
            soup.into_data().assert_approx_eq::<f32>(
                &plain.forward(x.clone()).into_data(),
                Tolerance::absolute(1e-5),
            );
        }
    }
}

#[test]
fn gradients_reach_only_the_routed_domain() {
    type AD = Autodiff<Flex>;
    let (m, x) = seeded(5, |device| {
        let m = AdaptedVitConfig {
            vit: tiny(),
            adapter: AdapterKind::ClsToken,
        }
        .try_init::<AD>(device)
        .expect("valid");
        let x = Tensor::<AD, 4>::random([2, 1, 8, 8], Distribution::Default, device);
        (m, x)
    });
    let grads = m.forward_mode(x.clone(), Mode::Clean).sum().backward();
    let adv = m.adapter.cls_token_adv.as_ref().expect("token").val();
    assert!(m.vit.cls_token.val().grad(&grads).is_some());
    let g_adv = adv.grad(&grads).map(|g| g.abs().sum().into_scalar());
    assert!(g_adv.is_none() || g_adv == Some(0.0));
    let grads = m.forward_mode(x, Mode::Adversarial).sum().backward();
    let g = adv
        .grad(&grads)
        .expect("adversarial token is used in robust mode");
    assert!(g.abs().sum().into_scalar() > 0.0);
}

#[test]
fn parse_and_name_round_trip() {
    for kind in ALL {
        assert_eq!(AdapterKind::parse(&kind.name()), Some(kind));
    }
    assert_eq!(
        AdapterKind::parse("prompt"),
        Some(AdapterKind::Prompt { tokens: 4 })
    );
    assert_eq!(AdapterKind::parse("cls-token"), None);
    assert_eq!(AdapterKind::parse("lora:0"), None);
}

#[test]
fn adapter_files_are_small_and_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in ALL {
        let m = model(kind, 9);
        let path = dir
            .path()
            .join(format!("{}.safetensors", kind.name().replace(':', "_")));
        io::save_adapter(&m, &path).expect("save");
        let whole = dir.path().join("whole.safetensors");
        io::save_model(&m, &whole).expect("save model");
        let small = std::fs::metadata(&path).expect("exists").len();
        let big = std::fs::metadata(&whole).expect("exists").len();
        assert!(
            small < big / 2,
            "{kind}: adapter file {small} vs model {big}"
        );

        // load the adapter into a model with other shared weights: modes follow the adapter
        let other = model(kind, 10);
        let loaded = io::load_adapter(other, &path).expect("load adapter");
        let x = input(2, 11);
        assert_eq!(
            io::canonical_bytes(&loaded, true),
            io::canonical_bytes(&m, true),
            "{kind}"
        );
        if kind != AdapterKind::None {
            assert_ne!(
                io::canonical_bytes(&loaded, false),
                io::canonical_bytes(&m, false),
                "{kind}: shared weights kept"
            );
        }
        // whole-model round trip is exact
        let back = io::load_model(model(kind, 12), &whole).expect("load model");
        for mode in [Mode::Clean, Mode::Adversarial] {
            assert_eq!(
                back.forward_mode(x.clone(), mode).into_data(),
                m.forward_mode(x.clone(), mode).into_data(),
                "{kind}"
            );
        }
        assert!(std::fs::read_dir(dir.path()).expect("dir").all(|e| {
            !e.expect("entry")
                .file_name()
                .to_string_lossy()
                .contains(".tmp")
        }));
    }
}

#[test]
fn adapter_file_of_another_kind_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token.safetensors");
    io::save_adapter(&model(AdapterKind::ClsToken, 1), &path).expect("save");
    let err = io::load_adapter(model(AdapterKind::DualLayerNorm, 1), &path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("token.safetensors"), "{msg}");
    assert!(
        msg.contains("cls_token") && msg.contains("dual_layer_norm"),
        "{msg}"
    );
    let err = io::load_model(model(AdapterKind::ClsToken, 1), &path).unwrap_err();
    assert!(
        err.to_string().contains("expected an advsoup model file"),
        "{err}"
    );
}

/// A diverged model: the log of every weight (NaN where negative, -inf at zero).
struct Poison;
impl<B: Backend> ModuleMapper<B> for Poison {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|t| t.log())
    }
}

#[test]
fn weights_holding_nan_or_inf_are_refused_at_load_naming_file_and_parameter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (whole, adapter) = (
        dir.path().join("m.safetensors"),
        dir.path().join("a.safetensors"),
    );
    let bad = model(AdapterKind::ClsToken, 1).map(&mut Poison);
    io::save_model(&bad, &whole).expect("save");
    io::save_adapter(&bad, &adapter).expect("save");
    let e = io::load_model(model(AdapterKind::ClsToken, 2), &whole)
        .expect_err("nan model")
        .to_string();
    assert!(
        e.contains("m.safetensors") && e.contains("non-finite") && e.contains("parameter `"),
        "{e}"
    );
    let e = io::load_adapter(model(AdapterKind::ClsToken, 2), &adapter)
        .expect_err("nan adapter")
        .to_string();
    assert!(
        e.contains("a.safetensors") && e.contains("non-finite"),
        "{e}"
    );
    // A finite model still loads.
    io::save_model(&model(AdapterKind::ClsToken, 3), &whole).expect("save");
    io::load_model(model(AdapterKind::ClsToken, 2), &whole).expect("finite model");
}

#[test]
fn model_of_another_architecture_names_the_key_and_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.safetensors");
    io::save_model(&model(AdapterKind::ClsToken, 1), &path).expect("save");
    let device = Default::default();
    let wider = AdaptedVitConfig {
        vit: VitConfig {
            embed_dim: 24,
            ..tiny()
        },
        adapter: AdapterKind::ClsToken,
    }
    .try_init::<TestBackend>(&device)
    .expect("valid");
    let err = io::load_model(wider, &path).unwrap_err().to_string();
    assert!(
        err.contains("m.safetensors") && err.contains("mismatch"),
        "{err}"
    );
    assert!(err.contains("24") && err.contains("16"), "{err}");
}

#[test]
fn baked_modes_equal_routed_modes() {
    for kind in [
        AdapterKind::None,
        AdapterKind::ClsToken,
        AdapterKind::DualLayerNorm,
        AdapterKind::Bias,
    ] {
        let m = model(kind, 13);
        let x = input(3, 14);
        for mode in [Mode::Clean, Mode::Adversarial, Mode::Soup(0.4)] {
            let plain = m.bake(mode).expect("bakeable");
            plain
                .forward(x.clone())
                .into_data()
                .assert_approx_eq::<f32>(
                    &m.forward_mode(x.clone(), mode).into_data(),
                    Tolerance::absolute(1e-5),
                );
        }
    }
    assert!(
        model(AdapterKind::Lora { rank: 2 }, 1)
            .bake(Mode::Clean)
            .is_none()
    );
}

#[test]
fn saved_files_do_not_depend_on_header_order() {
    let m = model(AdapterKind::ClsToken, 12);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("m.safetensors");
    io::save_model(&m, &p).expect("save");
    let bytes = std::fs::read(&p).expect("read");
    // the same file with its header keys in another order
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + len]).expect("header");
    let mut shuffled = String::from("{");
    for (i, (k, v)) in header.iter().rev().enumerate() {
        if i > 0 {
            shuffled.push(',');
        }
        shuffled.push_str(&format!("{}:{v}", serde_json::Value::String(k.clone())));
    }
    shuffled.push('}');
    let mut other = (shuffled.len() as u64).to_le_bytes().to_vec();
    other.extend_from_slice(shuffled.as_bytes());
    other.extend_from_slice(&bytes[8 + len..]);
    assert_ne!(other, bytes, "the shuffled header must differ as bytes");
    assert_eq!(io::reproducible(other), bytes);
    // and what was written loads back to the same outputs
    let back = io::load_model(model(AdapterKind::ClsToken, 13), &p).expect("load");
    let x = input(2, 1);
    assert_eq!(
        back.forward_mode(x.clone(), Mode::Adversarial).into_data(),
        m.forward_mode(x, Mode::Adversarial).into_data()
    );
}

/// Mixed precision with every adapter: a bf16 compute copy routes a mixed clean/adversarial
/// batch (and a soup) like the f32 model, with f32 logits, and the gradients land on the f32
/// master parameters as f32. As in a training step, each forward gets a fresh copy and one
/// backward (burn's backward consumes the graph, the copy's casts included).
///
/// "Routes like" is measured against the same route flipped (every sample's clean weight w
/// replaced by 1 − w): the bf16 logits must be at least 2.5 times closer (in L2) to the f32
/// logits of their own route than to those of the flipped one, and within 15% of them. The
/// bounds hold whatever the draw: over seeds 0..60 for every adapter and route, bf16's relative
/// error reached 4.9% and the ratio never fell below 5.8 (a random tiny model amplifies bf16's
/// rounding; an element-wise bound of 5% failed on a draw of 5.4%).
#[test]
fn bf16_compute_copies_route_like_the_f32_model() {
    use advsoup_vit::Precision;
    use burn::module::AutodiffModule;
    use burn::tensor::DType;
    type Ad = Autodiff<TestBackend>;
    let l2 = |t: Tensor<TestBackend, 2>| t.powi_scalar(2).sum().sqrt().into_scalar();
    for kind in ALL {
        let master = tracked(model(kind, 3));
        let device = Default::default();
        let x = input(4, 4);
        for (route, flipped) in [
            (Route::<Ad>::split(2, 2, &device), [0.0, 0.0, 1.0, 1.0]),
            (Route::Uniform(0.3), [0.7; 4]),
            (Route::mode(Mode::Adversarial), [1.0; 4]),
        ] {
            let inner_route = match &route {
                Route::Uniform(w) => Route::Uniform(*w),
                Route::PerSample(w) => Route::PerSample(w.clone().inner()),
            };
            let y32 = master.valid().forward(x.clone(), &inner_route);
            let half = Precision::Bf16.cast(master.clone());
            let y16 = half.forward(Tensor::from_inner(x.clone()), &route);
            assert_eq!(y16.dtype(), DType::F32, "{kind}");
            let error = l2(y32.clone() - y16.clone().inner());
            let relative = error / l2(y32.clone()).max(1e-6);
            assert!(relative < 0.15, "{kind}: relative error {relative}");
            if kind != AdapterKind::None {
                let other = master.valid().forward(
                    x.clone(),
                    &Route::PerSample(Tensor::from_floats(flipped, &device)),
                );
                let ratio = l2(other - y16.clone().inner()) / error.max(1e-9);
                assert!(
                    ratio > 2.5,
                    "{kind}: bf16 logits only {ratio}x closer to their route than to its flip"
                );
            }
            let grads = y16.sum().backward();
            let mut seen = GradDtypes {
                grads: &grads,
                f32: 0,
                other: 0,
            };
            master.visit(&mut seen);
            assert!(
                seen.f32 > 0 && seen.other == 0,
                "{kind}: {} / {}",
                seen.f32,
                seen.other
            );
        }
    }
}

/// `m` on the autodiff backend with every parameter tracked (a model built there would be).
fn tracked(m: AdaptedVit<TestBackend>) -> AdaptedVit<Autodiff<TestBackend>> {
    struct Track;
    impl ModuleMapper<Autodiff<TestBackend>> for Track {
        fn map_float<const D: usize>(
            &mut self,
            p: Param<Tensor<Autodiff<TestBackend>, D>>,
        ) -> Param<Tensor<Autodiff<TestBackend>, D>> {
            p.map(|t| t.set_require_grad(true))
        }
    }
    <AdaptedVit<Autodiff<TestBackend>> as burn::module::AutodiffModule<_>>::from_inner(m)
        .map(&mut Track)
}

struct GradDtypes<'a> {
    grads: &'a <Autodiff<TestBackend> as burn::tensor::backend::AutodiffBackend>::Gradients,
    f32: usize,
    other: usize,
}

impl burn::module::ModuleVisitor<Autodiff<TestBackend>> for GradDtypes<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Autodiff<TestBackend>, D>>) {
        if let Some(g) = p.val().grad(self.grads) {
            if g.dtype() == burn::tensor::DType::F32 {
                self.f32 += 1;
            } else {
                self.other += 1;
            }
        }
    }
}
