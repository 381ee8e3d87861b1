//! Tests across the crate's rooms: whole runs on tiny ImageFolder trees, and the ImageNet
//! config from file to plan to one training step.

/// ImageFolder runs end to end: streamed equals loaded, bf16 and f16 mixed precision.
mod folder {
    use crate::{RunOptions, RunSummary, TrainConfig, load_data, test_support, train};
    use burn::backend::{Autodiff, Flex};

    /// `<root>/<split>/c<k>/<i>.png`: 28x28 grey images whose class k has a bright band.
    fn tree(root: &std::path::Path, split: &str, per_class: usize) {
        for k in 0..2u32 {
            let dir = root.join(split).join(format!("c{k}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            for i in 0..per_class as u32 {
                image::GrayImage::from_fn(28, 28, |x, y| {
                    let band = y / 4 == k * 3 + 1;
                    image::Luma([if band {
                        200
                    } else {
                        ((x * 7 + y * 3 + i) % 40) as u8
                    }])
                })
                .save(dir.join(format!("{i}.png")))
                .expect("png");
            }
        }
    }

    fn config(root: &std::path::Path, stream: bool) -> TrainConfig {
        let text = format!(
            r#"
name = "folder"
seed = 3
regime = "co_training"
[model]
preset = "vit_mini_patch4_28"
adapter = "cls_token"
num_classes = 2
patch_size = 7
embed_dim = 16
depth = 1
num_heads = 2
mlp_ratio = 2.0
[data]
dataset = "image-folder"
train_dir = "{train}"
val_dir = "{val}"
held_out = 4
stream = {stream}
workers = 2
[attack.train]
eps = 0.1
num_steps = 1
step_size = 0.1
[attack.eval]
eps = 0.1
num_steps = 1
step_size = 0.1
[optim]
epochs = 1
batch_size = 8
lr = 1e-3
[eval]
held_out_robust = 4
test_robust = 4
test_attack = "pgd-3"
batch_size = 8
"#,
            train = root.join("train").display(),
            val = root.join("val").display(),
        );
        TrainConfig::parse(&text, "folder.toml".as_ref(), &[]).expect("config")
    }

    /// Two class folders, 10 training and 3 validation images each.
    fn folders() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        tree(dir.path(), "train", 10);
        tree(dir.path(), "val", 3);
        dir
    }

    /// Trains `cfg` on CPU into `<dir>/runs-<tag>`.
    fn run(
        cfg: &TrainConfig,
        splits: &advsoup_data::Splits,
        dir: &std::path::Path,
        tag: &str,
    ) -> RunSummary {
        let out = dir.join(format!("runs-{tag}"));
        train::<Autodiff<Flex>>(cfg, splits, &RunOptions::new(out), &Default::default())
            .expect("train")
    }

    #[test]
    fn a_streamed_image_folder_trains_exactly_like_a_loaded_one() {
        let _rng = test_support::serial();
        let dir = folders();
        let mut runs = Vec::new();
        for stream in [false, true] {
            let cfg = config(dir.path(), stream);
            let splits = load_data(&cfg, false).expect("data");
            assert_eq!(splits.train.is_streamed(), stream);
            assert_eq!(splits.test.is_streamed(), stream);
            assert_eq!(
                (splits.train.num_samples(), splits.held_out.num_samples()),
                (16, 4)
            );
            runs.push(run(&cfg, &splits, dir.path(), &stream.to_string()));
        }
        assert_eq!(runs[0].step_losses.len(), 2);
        assert_eq!(runs[0].step_losses, runs[1].step_losses);
        let (a, b) = (
            runs[0].report.as_ref().expect("report"),
            runs[1].report.as_ref().expect("report"),
        );
        assert_eq!(a.table(), b.table());
    }

    /// A streamed training image whose header is fine but whose pixels do not decode ends
    /// the run with the data crate's error naming the file, whether a data worker or the
    /// held-out evaluation reads it; no thread panics. (A file that is not an image at all is
    /// refused when the folder is opened: advsoup-data's own tests.)
    #[test]
    fn an_undecodable_streamed_image_is_an_error_naming_it_not_a_worker_panic() {
        let _rng = test_support::serial();
        let dir = folders();
        let cfg = config(dir.path(), true);
        for bad in ["train/c0/3.png", "train/c1/7.png"] {
            advsoup_data::testing::damage_png_body(&dir.path().join(bad));
        }
        let splits = load_data(&cfg, false).expect("streamed: headers read, pixels not");
        let out = RunOptions::new(dir.path().join("runs"));
        let e = train::<Autodiff<Flex>>(&cfg, &splits, &out, &Default::default())
            .expect_err("an undecodable image")
            .to_string();
        assert!(e.contains("3.png") || e.contains("7.png"), "{e}");
    }

    /// Two data-parallel peers, one damaged image: the peer that reads it returns the error
    /// naming the file, and the other stops at the same place instead of going on alone
    /// (burn's local all-reduce carries on with the peers left) or waiting for it. Once in a
    /// training step, once in the final evaluation (the second test image of class 1, in rank
    /// 1's shard: before the peers agreed, rank 0 summed its own counts alone and wrote a
    /// wrong final table). A watchdog turns a hang into a failure.
    #[cfg(feature = "collective")]
    #[test]
    fn a_data_error_on_one_peer_stops_every_peer_naming_the_file() {
        let _rng = test_support::serial();
        for bad in ["train/c0/5.png", "val/c1/1.png"] {
            let dir = folders();
            let cfg = config(dir.path(), true);
            advsoup_data::testing::damage_png_body(&dir.path().join(bad));
            let splits = load_data(&cfg, false).expect("streamed: headers read, pixels not");
            let runs = dir.path().join("runs");
            let run = runs.join("folder");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let out = RunOptions::new(runs);
                let device = Default::default();
                let r = crate::train_parallel::<Autodiff<Flex>>(
                    &cfg,
                    &splits,
                    &out,
                    &[device, device],
                    &crate::plan::Topology::local(2),
                );
                let _ = tx.send(r.map(|_| ()).map_err(|e| e.to_string()));
            });
            let r = rx
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("both peers return (a peer waiting for the failed one hangs)");
            let e = r.expect_err("a damaged image");
            let file = bad.rsplit('/').next().unwrap_or(bad);
            assert!(e.contains(file), "{bad}: the failing peer's own error: {e}");
            assert!(
                !run.join("final.json").exists(),
                "{bad}: no peer finishes a run whose data failed"
            );
        }
    }

    /// `optim.precision = "bf16"`: the run trains (co-training, attack included) with losses
    /// close to the f32 run's, and what it saves is the f32 master weights.
    #[test]
    fn a_bf16_run_follows_the_f32_run_and_keeps_f32_weights() {
        let _rng = test_support::serial();
        let dir = folders();
        let mut runs = Vec::new();
        for precision in ["f32", "bf16"] {
            let mut cfg = config(dir.path(), false);
            cfg.optim.precision = precision.into();
            cfg.validate().expect("valid");
            let splits = load_data(&cfg, false).expect("data");
            runs.push(run(&cfg, &splits, dir.path(), precision));
        }
        let (f32_run, bf16_run) = (&runs[0], &runs[1]);
        assert_eq!(bf16_run.step_losses.len(), 2);
        for (a, b) in f32_run.step_losses.iter().zip(&bf16_run.step_losses) {
            assert!(
                b.is_finite() && (a - b).abs() <= 0.02 * a.abs().max(1.0),
                "{a} vs {b}"
            );
        }
        // bf16 really computed: its losses round differently from f32's.
        assert_ne!(f32_run.step_losses, bf16_run.step_losses);
        let bytes = std::fs::read(bf16_run.dir.join("model.safetensors")).expect("model");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let dtypes: Vec<_> = st.tensors().into_iter().map(|(_, t)| t.dtype()).collect();
        assert!(!dtypes.is_empty());
        assert!(
            dtypes.iter().all(|d| *d == safetensors::Dtype::F32),
            "{dtypes:?}"
        );

        let mut cfg = config(dir.path(), false);
        cfg.optim.precision = "f8".into();
        let e = cfg.validate().expect_err("f8 refused").to_string();
        assert!(
            e.contains("optim.precision") && e.contains("\"f16\""),
            "{e}"
        );
    }

    /// `optim.precision = "f16"` with dynamic loss scaling: at the default scale the run follows
    /// the f32 run and reports the scale; at a scale that overflows f16 every step is skipped,
    /// the scale halves each time, and the weights stay where they started.
    #[test]
    fn an_f16_run_scales_its_loss_and_skips_overflowing_steps() {
        let _rng = test_support::serial();
        let dir = folders();
        let f16 = |scale: f64| {
            let mut cfg = config(dir.path(), false);
            cfg.optim.precision = "f16".into();
            cfg.optim.loss_scale = scale;
            cfg.validate().expect("valid");
            cfg
        };
        let base = config(dir.path(), false);
        let splits = load_data(&base, false).expect("data");
        let f32_run = run(&base, &splits, dir.path(), "f32");
        let scaled = run(&f16(65536.0), &splits, dir.path(), "f16");
        assert_eq!(scaled.step_losses.len(), 2);
        assert_ne!(f32_run.step_losses, scaled.step_losses, "f16 really ran");
        for (a, b) in f32_run.step_losses.iter().zip(&scaled.step_losses) {
            assert!((a - b).abs() <= 0.02 * a.abs().max(1.0), "{a} vs {b}");
        }
        let last = scaled.epochs.last().expect("epoch");
        assert_eq!(
            (last.loss_scale, last.skipped_steps),
            (Some(65536.0), Some(0))
        );
        assert_eq!(f32_run.epochs.last().expect("epoch").loss_scale, None);

        let overflow = run(&f16(1e30), &splits, dir.path(), "f16-overflow");
        let last = overflow.epochs.last().expect("epoch");
        assert_eq!(
            (last.loss_scale, last.skipped_steps),
            (Some(1e30 / 4.0), Some(2))
        );
        // The initial weights: an f32 run whose learning rate rounds to 0 in f32 (AdamW's and
        // the weight decay's updates are then exactly 0).
        let mut frozen = config(dir.path(), false);
        frozen.optim.lr = 1e-46;
        let frozen = run(&frozen, &splits, dir.path(), "lr0");
        let bytes = |r: &RunSummary| std::fs::read(r.dir.join("model.safetensors")).expect("model");
        assert_ne!(bytes(&scaled), bytes(&frozen), "the scaled f16 run trained");
        assert_eq!(
            bytes(&overflow),
            bytes(&frozen),
            "skipped steps leave the weights untouched"
        );
    }
}

/// The ImageNet config: the paper's recipe, its plan, and one ViT-B/16 co-training step.
mod imagenet {
    use std::path::Path;

    use crate::config::{EvalSection, TrainConfig};
    use crate::plan::{Plan, Topology};
    use crate::step::{CoTraining, Regime as _, StepConfig, TrainBatch};
    use advsoup_adapters::AdaptedVitConfig;
    use burn::backend::{Autodiff, Flex};
    use burn::optim::{AdamWConfig, Optimizer};
    use burn::prelude::*;
    use burn::train::TrainStep;

    type TestBackend = Autodiff<Flex>;

    fn imagenet() -> TrainConfig {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/imagenet-vit-b16-cls.toml");
        TrainConfig::load(&path, &[]).expect("the ImageNet config validates")
    }

    #[test]
    fn imagenet_config_resolves_to_the_paper_recipe_and_plans() {
        let c = imagenet();
        let vit = c.vit().expect("vit");
        assert_eq!(
            (vit.img_size, vit.patch_size, vit.embed_dim, vit.depth),
            (224, 16, 768, 12)
        );
        assert!((c.attack.train.eps - 4.0 / 255.0).abs() < 1e-12);
        assert_eq!(
            (c.optim.beta1, c.optim.beta2, c.optim.weight_decay),
            (0.9, 0.95, 0.3)
        );
        let a = c.augment().expect("augment");
        assert_eq!(a.resized_crop.as_ref().map(|r| r.size), Some(224));
        assert_eq!(a.rand_augment.as_ref().map(|r| r.magnitude), Some(9.0));
        let samples = crate::planned_train_samples(&c).expect("samples");
        assert_eq!(samples, 1_281_167 - 10_000);
        let one = Plan::new(&c, &Topology::single(), samples).expect("plan");
        assert_eq!(
            (one.per_device_batch, one.micro_batch, one.accumulation),
            (4096, 64, 64)
        );
        assert_eq!(one.steps_per_epoch, 310);
        let t = Topology {
            nodes: 4,
            coordinator: Some("node0:7000".into()),
            ..Topology::local(8)
        };
        let many = Plan::new(&c, &t, samples).expect("plan");
        assert_eq!(
            (many.world, many.per_device_batch, many.accumulation),
            (32, 128, 2)
        );
        let text = many.to_string();
        assert!(
            text.contains("accumulation") && text.contains("PGD-2"),
            "{text}"
        );
        assert!(text.contains("precision: f32"), "{text}");
        let mut bf16 = c.clone();
        bf16.optim.precision = "bf16".into();
        let text = Plan::new(&bf16, &t, samples).expect("plan").to_string();
        assert!(
            text.contains("precision: bf16 compute, f32 master") && !text.contains("loss scaling"),
            "{text}"
        );
        bf16.optim.precision = "f16".into();
        let text = Plan::new(&bf16, &t, samples).expect("plan").to_string();
        assert!(text.contains("dynamic loss scaling from 65536"), "{text}");
        assert_eq!(c.eval.shifts.len(), 4);
        assert_eq!(
            c.eval.shifts[3].corruptions.len() * c.eval.shifts[3].severities.len(),
            75
        );
        let e = crate::trainer::check_shift_dirs(&c.eval.shifts)
            .expect_err("no ImageNet-R here")
            .to_string();
        assert!(
            e.contains("eval.shifts[0].dir") && e.contains("eval.shifts=[]"),
            "{e}"
        );
        let none = TrainConfig {
            eval: EvalSection {
                shifts: vec![],
                ..c.eval.clone()
            },
            ..c.clone()
        };
        assert!(crate::trainer::check_shift_dirs(&none.eval.shifts).is_ok());
        // 4096 over 3 devices does not split.
        let e = Plan::new(&c, &Topology::local(3), samples)
            .expect_err("3")
            .to_string();
        assert!(e.contains("optim.batch_size"), "{e}");
        // Misspelt and invalid fields name themselves.
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/imagenet-vit-b16-cls.toml"),
        )
        .expect("read");
        for (o, needle) in [
            ("data.rand_augment=\"rand-m9-mstd0.5\"", "inc1"),
            ("optim.ema_decay=1.0", "optim.ema_decay"),
            ("optim.micro_batch_size=0", "optim.micro_batch_size"),
            ("data.random_resized_crop.scale=[0.5, 0.1]", "scale"),
            ("data.train_dir_typo=\"x\"", "unknown field"),
        ] {
            let e = TrainConfig::parse(&text, "in.toml".as_ref(), &[o.to_string()])
                .expect_err(o)
                .to_string();
            assert!(e.contains(needle) && !e.contains('\n'), "{o}: {e}");
        }
    }

    #[test]
    fn vit_b16_takes_one_co_training_step_on_two_images() {
        let _rng = crate::test_support::serial();
        let c = imagenet();
        let device = Default::default();
        TestBackend::seed(&device, 0);
        let model = AdaptedVitConfig {
            vit: c.vit().expect("vit"),
            adapter: c.model.adapter,
        }
        .try_init::<TestBackend>(&device)
        .expect("ViT-B/16");
        let step = StepConfig::new(c.alpha, &c.attack.train).expect("attack");
        let module = CoTraining::wrap(model, step);
        let images = Tensor::<TestBackend, 4>::random(
            [2, 3, 224, 224],
            burn::tensor::Distribution::Uniform(0.0, 1.0),
            &device,
        );
        let targets = Tensor::<TestBackend, 1, Int>::from_ints([3, 997], &device);
        let eps = c.data.label_smoothing;
        let soft = targets.clone().one_hot::<2>(1000).float() * (1.0 - eps) + eps / 1000.0;
        let out = module.step(TrainBatch {
            images,
            targets,
            soft_targets: soft,
            ids: vec![0, 1],
            seed: 1,
            loss_scale: 1.0,
        });
        // ln(1000) = 6.9 at initialization.
        assert!(
            out.item.loss.is_finite() && (4.0..10.0).contains(&out.item.loss),
            "{}",
            out.item.loss
        );
        assert_eq!(out.item.samples, 4);
        let before = module.model.vit.cls_token.val().into_data();
        let mut optim = AdamWConfig::new()
            .with_beta_2(c.optim.beta2)
            .init::<TestBackend, CoTraining<TestBackend>>();
        let module = optim.step(c.optim.lr, module, out.grads);
        let after = module.model.vit.cls_token.val().into_data();
        assert_ne!(before, after, "the optimizer step moved the clean token");
    }
}
