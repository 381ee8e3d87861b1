//! The speed harness: images/s of the steps advsoup spends its time in, measured through the
//! real training code ([`advsoup_train::step`]).
//!
//! Steps ([`BenchStep`]), for each preset:
//! - `forward`: evaluation forward (inner backend, no autodiff), clean mode;
//! - `train_step`: the nominal regime's [`TrainStep::step`](burn::train::TrainStep::step)
//!   (forward + backward) and [`TrainStep::optimize`](burn::train::TrainStep::optimize) (AdamW);
//! - `pgd_step`: one PGD step as training crafts it ([`advsoup_train::step::craft`]: a frozen,
//!   deterministic copy, input gradient only, random start, projection);
//! - `co_training_step`: the co-training regime's step (PGD-K against the robust mode, one mixed
//!   clean/adversarial forward/backward) plus AdamW. Its images/s counts the `batch` clean
//!   images of a step (each also attacked), not the 2·batch rows of the mixed pass.
//!
//! [`run_suite`] measures a [`SuitePlan`] on one backend and, unless the plan has no
//! [`MemoryPlan`], the peak memory of PGD in child processes ([`crate::child`]). Progress goes
//! to stderr, like [`measure`]'s per-call times.

use advsoup_adapters::{AdaptedVit, AdaptedVitConfig, AdapterKind, Mode};
use advsoup_train::config::PgdSection;
use advsoup_train::step::{CoTraining, Nominal, Regime, StepConfig, TrainBatch, craft};
use advsoup_vit::Precision;
use burn::module::AutodiffModule;
use burn::optim::AdamWConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;

use crate::child::{self, MemoryPlan};
use crate::presets::BenchPreset;
use crate::suite::{BenchReport, PresetReport};
use crate::{BenchError, BenchRecord, measure};

/// A measured step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchStep {
    /// Evaluation forward, clean mode.
    Forward,
    /// The nominal regime's step plus AdamW.
    TrainStep,
    /// One PGD step as training crafts it.
    PgdStep,
    /// The co-training regime's step (PGD-K, one mixed pass) plus AdamW.
    CoTrainingStep,
}

impl BenchStep {
    /// Every step, in the order they are measured.
    pub const ALL: [BenchStep; 4] = [
        BenchStep::Forward,
        BenchStep::TrainStep,
        BenchStep::PgdStep,
        BenchStep::CoTrainingStep,
    ];

    /// The record name (`forward`, `train_step`, `pgd_step`, `co_training_step`).
    pub fn name(self) -> &'static str {
        match self {
            BenchStep::Forward => "forward",
            BenchStep::TrainStep => "train_step",
            BenchStep::PgdStep => "pgd_step",
            BenchStep::CoTrainingStep => "co_training_step",
        }
    }

    /// The step whose record name is `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Measurement settings shared by every preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Measured calls per step (at least 1).
    pub iters: usize,
    /// Untimed calls before measuring.
    pub warmup: usize,
    /// PGD steps K inside the co-training step (at least 1).
    pub pgd_steps: usize,
    /// Attack radius (ℓ∞, pixels in [0, 1]): 8/255.
    pub eps: f64,
    /// PGD step size: 2/255.
    pub step_size: f64,
    /// AdamW learning rate of the train and co-training steps: 1e-4.
    pub lr: f64,
    /// Steps to measure (all when empty).
    pub only: Vec<BenchStep>,
    /// Compute precision of the measured steps.
    pub precision: Precision,
}

impl Settings {
    /// `iters` measured calls after `warmup` untimed ones, co-training with PGD-`pgd_steps`
    /// (`iters` and `pgd_steps` are raised to 1), every step, f32.
    pub fn new(iters: usize, warmup: usize, pgd_steps: usize) -> Self {
        Self {
            iters: iters.max(1),
            warmup,
            pgd_steps: pgd_steps.max(1),
            eps: 8.0 / 255.0,
            step_size: 2.0 / 255.0,
            lr: 1e-4,
            only: Vec::new(),
            precision: Precision::F32,
        }
    }

    /// The same, measuring only `only` (all steps when empty).
    pub fn with_only(self, only: Vec<BenchStep>) -> Self {
        Self { only, ..self }
    }

    /// The same in another compute precision.
    pub fn with_precision(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }

    fn wants(&self, step: BenchStep) -> bool {
        self.only.is_empty() || self.only.contains(&step)
    }

    /// The training attack with `steps` PGD steps.
    pub(crate) fn pgd(&self, steps: usize) -> PgdSection {
        PgdSection {
            eps: self.eps,
            num_steps: steps,
            step_size: self.step_size,
            random_start: true,
        }
    }
}

/// What [`run_suite`] measures: resolved once from the command line.
#[derive(Debug, Clone)]
pub struct SuitePlan {
    /// The presets, in order.
    pub presets: Vec<BenchPreset>,
    /// Batch size for every preset (`None`: each preset's own).
    pub batch: Option<usize>,
    /// Measurement settings.
    pub settings: Settings,
    /// PGD peak memory in child processes (`None`: not measured).
    pub memory: Option<MemoryPlan>,
}

/// CPU threads of the benchmark: `RAYON_NUM_THREADS` when set to a positive number (the size
/// of the rayon pool burn's CPU backend runs on), else the cores available to this process.
/// The report's `threads` field; `cargo xtask bench` sets `RAYON_NUM_THREADS` and gives
/// PyTorch the same count.
pub fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Measures every preset of `plan` on backend `B` (`device_label`, e.g. `flex-cpu`, names it in
/// the report; a precision other than f32 is appended: `cuda:0 bf16`).
pub fn run_suite<B: AutodiffBackend>(
    plan: &SuitePlan,
    device: &B::Device,
    device_label: &str,
) -> Result<BenchReport, BenchError> {
    let mut presets = Vec::new();
    for p in &plan.presets {
        let n = plan.batch.unwrap_or(p.batch);
        let mut report = bench_preset::<B>(p, n, &plan.settings, device)?;
        if let Some(memory) = &plan.memory {
            for &k in &memory.steps {
                eprintln!("bench {}: PGD peak memory (K = {k}, child process)", p.name);
                report.memory.push(child::spawn_memory_child(
                    memory,
                    plan.settings.precision,
                    p,
                    n,
                    k,
                )?);
            }
        }
        presets.push(report);
    }
    Ok(BenchReport {
        tool: "advsoup".into(),
        // The compute precision travels with the device ("cuda:0 bf16"); f32 is unmarked.
        device: match plan.settings.precision {
            Precision::F32 => device_label.into(),
            p => format!("{device_label} {p}"),
        },
        threads: threads(),
        cpu: Some(advsoup_train::machine::this_cpu()),
        presets,
    })
}

/// A fixed batch: uniform pixels, labels cycling over the classes, one-hot targets.
pub(crate) fn batch<B: AutodiffBackend>(
    p: &BenchPreset,
    n: usize,
    device: &B::Device,
) -> TrainBatch<B> {
    let v = &p.vit;
    let images = Tensor::<B, 4>::random(
        [n, v.in_chans, v.img_size, v.img_size],
        Distribution::Uniform(0.0, 1.0),
        device,
    );
    let labels: Vec<i64> = (0..n).map(|i| (i % v.num_classes) as i64).collect();
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [n]), device);
    let soft_targets = targets.clone().one_hot::<2>(v.num_classes).float();
    TrainBatch {
        images,
        targets,
        soft_targets,
        ids: (0..n as u64).collect(),
        seed: 7,
        loss_scale: 1.0,
    }
}

/// The preset's model with the cls-token adapter, seeded with 0 and materialized.
pub(crate) fn model<B: AutodiffBackend>(
    p: &BenchPreset,
    device: &B::Device,
) -> Result<AdaptedVit<B>, BenchError> {
    B::seed(device, 0);
    let model = AdaptedVitConfig {
        vit: p.vit.clone(),
        adapter: AdapterKind::ClsToken,
    }
    .try_init::<B>(device)
    .map_err(|source| BenchError::Model {
        preset: p.name.to_string(),
        source,
    })?;
    advsoup_vit::materialize(&model);
    Ok(model)
}

/// Forces a lazy backend to finish by reading one number back.
pub(crate) fn settle<B: Backend, const D: usize>(t: Tensor<B, D>) {
    let _ = t.sum().into_data();
}

/// Times `step` + `optimize` of a regime with AdamW, the way the training loop calls them.
fn regime_record<B: AutodiffBackend, R: Regime<B>>(
    name: &str,
    module: R,
    batch: &TrainBatch<B>,
    o: &Settings,
) -> BenchRecord {
    let mut optim = AdamWConfig::new().with_epsilon(1e-8).init::<B, R>();
    let mut module = Some(module);
    measure(name, batch.images.dims()[0], o.warmup, o.iters, || {
        let m = module
            .take()
            .expect("the module is put back after every step");
        let out = m.step(batch.clone());
        module = Some(m.optimize(&mut optim, o.lr, out.grads));
    })
}

/// The throughput records of one preset at batch `n` (memory is left empty).
pub fn bench_preset<B: AutodiffBackend>(
    p: &BenchPreset,
    n: usize,
    o: &Settings,
    device: &B::Device,
) -> Result<PresetReport, BenchError> {
    if n == 0 {
        return Err(BenchError::ZeroBatch {
            preset: p.name.to_string(),
        });
    }
    let model = model::<B>(p, device)?;
    let batch = batch::<B>(p, n, device);
    let mut records = Vec::new();

    if o.wants(BenchStep::Forward) {
        eprintln!("bench {}: forward", p.name);
        let inner = o.precision.cast(model.valid());
        let x = batch.images.clone().inner();
        records.push(measure("forward", n, o.warmup, o.iters, || {
            settle(inner.forward_mode(x.clone(), Mode::Clean));
        }));
    }

    if p.train && o.wants(BenchStep::TrainStep) {
        eprintln!("bench {}: train_step", p.name);
        let config = StepConfig::new(0.5, &o.pgd(o.pgd_steps))?.with_precision(o.precision);
        records.push(regime_record(
            "train_step",
            Nominal::wrap(model.clone(), config),
            &batch,
            o,
        ));
    }

    if o.wants(BenchStep::PgdStep) {
        eprintln!("bench {}: pgd_step", p.name);
        let one = StepConfig::new(0.5, &o.pgd(1))?;
        let compute = o.precision.cast(model.clone());
        records.push(measure("pgd_step", n, o.warmup, o.iters, || {
            settle(craft(&compute, &one.attack, &batch));
        }));
    }

    if p.train && o.wants(BenchStep::CoTrainingStep) {
        eprintln!("bench {}: co_training_step (K = {})", p.name, o.pgd_steps);
        let config = StepConfig::new(0.5, &o.pgd(o.pgd_steps))?.with_precision(o.precision);
        records.push(regime_record(
            "co_training_step",
            CoTraining::wrap(model, config),
            &batch,
            o,
        ));
    }

    Ok(PresetReport {
        preset: p.name.to_string(),
        model: p.model.to_string(),
        batch: n,
        pgd_steps: o.pgd_steps,
        eps: o.eps,
        step_size: o.step_size,
        records,
        memory: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};

    use super::*;

    type TestBackend = Autodiff<Flex>;

    #[test]
    fn steps_round_trip_their_names() {
        for s in BenchStep::ALL {
            assert_eq!(BenchStep::from_name(s.name()), Some(s));
        }
        assert_eq!(BenchStep::from_name("backward"), None);
        let names: Vec<_> = BenchStep::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            ["forward", "train_step", "pgd_step", "co_training_step"]
        );
    }

    #[test]
    fn settings_raise_counts_to_one() {
        let s = Settings::new(0, 0, 0);
        assert_eq!((s.iters, s.warmup, s.pgd_steps), (1, 0, 1));
        assert_eq!((s.eps, s.step_size, s.lr), (8.0 / 255.0, 2.0 / 255.0, 1e-4));
        assert!(s.wants(BenchStep::PgdStep));
        let s = s.with_only(vec![BenchStep::Forward]);
        assert!(s.wants(BenchStep::Forward) && !s.wants(BenchStep::PgdStep));
    }

    #[test]
    fn test_preset_measures_all_four_steps() {
        let plan = SuitePlan {
            presets: vec![BenchPreset::test()],
            batch: None,
            settings: Settings::new(1, 0, 2),
            memory: None,
        };
        let report =
            run_suite::<TestBackend>(&plan, &Default::default(), "flex-cpu").expect("runs");
        assert_eq!(
            (report.tool.as_str(), report.device.as_str()),
            ("advsoup", "flex-cpu")
        );
        assert_eq!(report.threads, threads());
        let cpu = report.cpu.as_ref().expect("the report names the CPU");
        assert_eq!(cpu.arch, std::env::consts::ARCH);
        let [p] = report.presets.as_slice() else {
            panic!("one preset: {report:?}")
        };
        assert_eq!(
            (p.preset.as_str(), p.model.as_str()),
            ("test", "test_patch4_8")
        );
        assert_eq!((p.batch, p.pgd_steps), (2, 2));
        let names: Vec<&str> = p.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["forward", "train_step", "pgd_step", "co_training_step"]
        );
        for r in &p.records {
            assert_eq!((r.batch, r.iters), (2, 1), "{r:?}");
            assert!(r.images_per_s.is_finite() && r.images_per_s > 0.0, "{r:?}");
        }
        assert!(p.memory.is_empty());
    }

    #[test]
    fn only_and_precision_and_batch_are_honoured() {
        let plan = SuitePlan {
            presets: vec![BenchPreset::test()],
            batch: Some(3),
            settings: Settings::new(1, 0, 1)
                .with_only(vec![BenchStep::PgdStep])
                .with_precision(Precision::Bf16),
            memory: None,
        };
        let report =
            run_suite::<TestBackend>(&plan, &Default::default(), "flex-cpu").expect("runs");
        assert_eq!(report.device, "flex-cpu bf16");
        let p = &report.presets[0];
        let names: Vec<&str> = p.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["pgd_step"]);
        assert_eq!(p.records[0].batch, 3);
        let zero = SuitePlan {
            batch: Some(0),
            ..plan
        };
        let err =
            run_suite::<TestBackend>(&zero, &Default::default(), "flex-cpu").expect_err("batch 0");
        assert_eq!(err.to_string(), "preset test: batch must be > 0");
    }
}
