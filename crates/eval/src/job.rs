//! One evaluation job: the robust accuracy of a model mode under an attack ensemble, over a
//! range of a split, batched, and optionally chunked and resumable.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use advsoup_adapters::{AdaptedVit, Mode, Route};
use advsoup_attacks::{EvalReport, Evaluation, Evaluator};
use advsoup_data::ImageDataset;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::{EvalError, Resumable, eval_batches};

/// The batch size of a job built without [`EvalJob::batch_size`].
pub const DEFAULT_BATCH_SIZE: usize = 64;

/// A robust evaluation: `mode` of a model under `evaluator` on the samples `range` of a split,
/// `batch_size` samples per attacked batch.
///
/// The model is attacked as a frozen deterministic copy on the autodiff backend `AD` (only the
/// input is lifted; dropout off). Sample ids are dataset indices, so evaluating `0..a` and
/// `a..n` separately and merging equals evaluating `0..n` (the attacks' random starts are keyed
/// by id): a job can be chunked ([`EvalJob::run_chunked`]), resumed and sharded.
///
/// ```
/// use advsoup_adapters::Mode;
/// use advsoup_attacks::{Evaluator, ThreatModel};
/// use advsoup_eval::EvalJob;
///
/// let evaluator = Evaluator::preset("pgd-10", ThreatModel::Linf, 8.0 / 255.0, 0)?;
/// let job = EvalJob::new(evaluator, Mode::Adversarial).batch_size(32).first(1000);
/// assert_eq!(job.samples(), 0..1000);
/// // job.run::<Autodiff<Flex>>(&model.valid(), &splits.test, &device) -> Option<EvalReport>
/// # Ok::<(), advsoup_attacks::AttackError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct EvalJob {
    evaluator: Evaluator,
    mode: Mode,
    batch_size: usize,
    range: Range<usize>,
    progress: OnProgress,
}

/// How far a job has come, in samples: what [`EvalJob::on_progress`] callbacks receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Samples evaluated so far (read from a resumed store included).
    pub done: usize,
    /// Samples the job evaluates in all.
    pub total: usize,
}

/// A progress callback; jobs compare equal when they share the same one (or have none).
#[derive(Clone, Default)]
struct OnProgress(Option<Arc<dyn Fn(Progress) + Send + Sync>>);

impl OnProgress {
    fn report(&self, done: usize, total: usize) {
        if let Some(f) = &self.0 {
            f(Progress { done, total });
        }
    }
}

impl std::fmt::Debug for OnProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

impl PartialEq for OnProgress {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        }
    }
}

/// The name of a mode in file names and resume keys: `clean`, `robust`, `soup<β>`.
pub fn mode_tag(mode: Mode) -> String {
    match mode {
        Mode::Clean => "clean".to_string(),
        Mode::Adversarial => "robust".to_string(),
        Mode::Soup(b) => format!("soup{b}"),
    }
}

impl EvalJob {
    /// A job over every sample, [`DEFAULT_BATCH_SIZE`] per batch.
    pub fn new(evaluator: Evaluator, mode: Mode) -> Self {
        Self {
            evaluator,
            mode,
            batch_size: DEFAULT_BATCH_SIZE,
            range: 0..usize::MAX,
            progress: OnProgress::default(),
        }
    }

    /// Calls `f` after every attacked batch (and every chunk read back when resuming) with
    /// the samples done so far. Library code never draws; the caller decides how to show it.
    pub fn on_progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = OnProgress(Some(Arc::new(f)));
        self
    }

    /// Attacks `batch_size` samples at a time (also the chunk of [`EvalJob::run_chunked`]).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Evaluates the first `n` samples.
    pub fn first(self, n: usize) -> Self {
        self.range(0..n)
    }

    /// Evaluates the samples `range` (clamped to the split's size when run).
    pub fn range(mut self, range: Range<usize>) -> Self {
        self.range = range;
        self
    }

    /// The attack ensemble.
    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    /// The model mode evaluated.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The samples asked for (before clamping to a split).
    pub fn samples(&self) -> Range<usize> {
        self.range.clone()
    }

    /// The samples of `data` this job evaluates: its range clamped to `data`.
    fn clamped(&self, data: &ImageDataset) -> Range<usize> {
        let end = self.range.end.min(data.num_samples());
        self.range.start.min(end)..end
    }

    /// The merged report of every batch; `None` when the range holds no sample of `data`.
    ///
    /// # Errors
    /// A sample that cannot be read (a damaged streamed image); non-finite logits of the model
    /// on the first batch ([`crate::check_finite`]), checked before anything is attacked.
    pub fn run<AD: AutodiffBackend>(
        &self,
        model: &AdaptedVit<AD::InnerBackend>,
        data: &ImageDataset,
        device: &AD::Device,
    ) -> Result<Option<EvalReport>, EvalError> {
        self.run_each::<AD>(model, data, device, |_| {})
    }

    /// Samples that stay correct under the ensemble (0 for an empty range).
    ///
    /// # Errors
    /// As [`EvalJob::run`].
    pub fn count<AD: AutodiffBackend>(
        &self,
        model: &AdaptedVit<AD::InnerBackend>,
        data: &ImageDataset,
        device: &AD::Device,
    ) -> Result<usize, EvalError> {
        Ok(self.run::<AD>(model, data, device)?.map_or(0, |r| r.robust))
    }

    /// [`EvalJob::run`], also handing every batch's [`Evaluation`] (with its adversarial
    /// examples) to `on_batch` as it is produced, so callers can keep x_adv without holding the
    /// whole set.
    ///
    /// # Errors
    /// As [`EvalJob::run`].
    pub fn run_each<AD: AutodiffBackend>(
        &self,
        model: &AdaptedVit<AD::InnerBackend>,
        data: &ImageDataset,
        device: &AD::Device,
        mut on_batch: impl FnMut(&Evaluation<AD::InnerBackend>),
    ) -> Result<Option<EvalReport>, EvalError> {
        let Range { start, end } = self.clamped(data);
        if start == end {
            return Ok(None);
        }
        let subset = data.subset(&(start..end).collect::<Vec<_>>());
        let frozen = AdaptedVit::<AD>::from_inner(model.clone())
            .deterministic()
            .no_grad();
        let route = Route::mode(self.mode);
        let f = |x: Tensor<AD, 4>| frozen.forward(x, &route);
        let mut merged: Option<EvalReport> = None;
        let mut done = 0;
        for batch in eval_batches::<AD::InnerBackend>(&subset, self.batch_size, device) {
            let batch = batch?;
            if merged.is_none() {
                let logits = model.forward(batch.images.clone(), &Route::mode(self.mode));
                crate::check_finite(&logits, "the model's logits on the first batch")?;
            }
            let ids: Vec<u64> = batch.indices.iter().map(|i| (start + *i) as u64).collect();
            let evaluation =
                self.evaluator
                    .evaluate::<AD, _>(&f, &batch.images, &batch.targets, &ids);
            on_batch(&evaluation);
            done += ids.len();
            self.progress.report(done, end - start);
            match merged.as_mut() {
                Some(m) => m.merge(evaluation.report),
                None => merged = Some(evaluation.report),
            }
        }
        Ok(merged)
    }

    /// [`EvalJob::run`] in chunks of one batch, each kept in `store` once finished, so a
    /// killed evaluation continues where it stopped; chunks already in `store` are read, not
    /// recomputed. The chunks merge to exactly the one-pass report. `None` for an empty range.
    ///
    /// # Errors
    /// When a stored chunk cannot be read or a new one cannot be written; as [`EvalJob::run`].
    pub fn run_chunked<AD: AutodiffBackend>(
        &self,
        model: &AdaptedVit<AD::InnerBackend>,
        data: &ImageDataset,
        device: &AD::Device,
        store: &Resumable,
    ) -> Result<Option<EvalReport>, EvalError> {
        let Range { start, end } = self.clamped(data);
        let chunk = self.batch_size.max(1);
        let mut report: Option<EvalReport> = None;
        for (i, from) in (start..end).step_by(chunk).enumerate() {
            let to = (from + chunk).min(end);
            let part = match store.get(i)? {
                Some(r) => {
                    tracing::debug!(chunk = i, from, "read a finished chunk");
                    r
                }
                None => {
                    let mut piece = self.clone().range(from..to);
                    piece.progress = OnProgress::default();
                    let r = piece
                        .run::<AD>(model, data, device)?
                        .ok_or(EvalError::NoSamples)?;
                    store.put(i, &r)?;
                    r
                }
            };
            self.progress.report(to - start, end - start);
            match report.as_mut() {
                Some(m) => m.merge(part),
                None => report = Some(part),
            }
        }
        Ok(report)
    }

    /// What a stored chunk depends on: the model's parameters (SHA-256 of its canonical bytes),
    /// the ensemble, the mode, the samples and the batch size. A store opened under another key
    /// starts afresh.
    pub fn resume_key<B: Backend>(
        &self,
        model: &AdaptedVit<B>,
        data: &ImageDataset,
    ) -> serde_json::Value {
        let Range { start, end } = self.clamped(data);
        let mut key = serde_json::json!({
            "model": advsoup_io::sha256_hex(&advsoup_adapters::io::canonical_bytes(model, false)),
            "evaluator": self.evaluator,
            "mode": mode_tag(self.mode),
            "n": end,
            "batch_size": self.batch_size,
        });
        if start > 0 {
            key["start"] = start.into();
        }
        key
    }

    /// Runs the job resumably and writes its report to `out` (pretty JSON, atomically): the
    /// chunks live in `<out>.partial/` until the report is written, then are removed. A job
    /// that fails before finishing a chunk (an unreadable first batch, non-finite logits)
    /// leaves no `<out>.partial/` behind.
    ///
    /// # Errors
    /// [`EvalError::NoSamples`] for an empty range; a chunk or `out` that cannot be written.
    pub fn run_to_file<AD: AutodiffBackend>(
        &self,
        model: &AdaptedVit<AD::InnerBackend>,
        data: &ImageDataset,
        device: &AD::Device,
        out: &Path,
    ) -> Result<EvalReport, EvalError> {
        let store = Resumable::open(out, &self.resume_key(model, data))?;
        let report = match self.run_chunked::<AD>(model, data, device, &store) {
            Ok(Some(report)) => report,
            Ok(None) => {
                store.discard_if_empty();
                return Err(EvalError::NoSamples);
            }
            Err(e) => {
                store.discard_if_empty();
                return Err(e);
            }
        };
        crate::write_json(out, &report)?;
        store.finish()?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use advsoup_adapters::{AdaptedVitConfig, AdapterKind};
    use advsoup_attacks::ThreatModel;
    use advsoup_vit::VitConfig;
    use burn::backend::{Autodiff, Flex};

    type AD = Autodiff<Flex>;

    fn setup() -> (AdaptedVit<Flex>, ImageDataset, EvalJob) {
        let device = Default::default();
        let vit = VitConfig::new()
            .with_img_size(8)
            .with_patch_size(4)
            .with_in_chans(1)
            .with_num_classes(3)
            .with_embed_dim(16)
            .with_depth(1)
            .with_num_heads(2)
            .with_mean(vec![0.5])
            .with_std(vec![0.5]);
        let model = AdaptedVitConfig {
            vit,
            adapter: AdapterKind::ClsToken,
        }
        .try_init::<Flex>(&device)
        .expect("model");
        // burn initializes parameters lazily, and a clone of an uninitialized parameter draws
        // its own values: materialize them once, as loading a file does.
        let _ = advsoup_adapters::io::canonical_bytes(&model, false);
        let n = 7;
        let pixels = (0..n * 64).map(|i| (i * 37 % 251) as u8).collect();
        let labels = (0..n as u32).map(|i| i % 3).collect();
        let data = ImageDataset::new([1, 8, 8], pixels, labels, 3).expect("data");
        let evaluator = Evaluator::preset("pgd-2", ThreatModel::Linf, 0.1, 5).expect("preset");
        let job = EvalJob::new(evaluator, Mode::Adversarial).batch_size(3);
        (model, data, job)
    }

    #[test]
    fn chunks_ranges_and_the_old_functions_give_the_one_pass_report() {
        let (model, data, job) = setup();
        let device = Default::default();
        let whole = job
            .run::<AD>(&model, &data, &device)
            .expect("run")
            .expect("report");
        assert_eq!((whole.n, whole.samples.len()), (7, 7));
        let ids: Vec<u64> = whole.samples.iter().map(|s| s.id).collect();
        assert_eq!(ids, (0..7).collect::<Vec<u64>>(), "ids are dataset indices");
        // Two ranges merged, and a range past the end clamped.
        let run = |job: EvalJob| job.run::<AD>(&model, &data, &device).expect("run");
        let mut parts = run(job.clone().range(0..4));
        let rest = run(job.clone().range(4..100));
        parts
            .as_mut()
            .expect("first part")
            .merge(rest.expect("second part"));
        assert_eq!(parts.as_ref(), Some(&whole));
        assert!(run(job.clone().range(7..9)).is_none());
        // The count is the report's robust count.
        let count = job.clone().range(2..6).count::<AD>(&model, &data, &device);
        let part = run(job.clone().range(2..6));
        assert_eq!(count.expect("count"), part.expect("range 2..6").robust);
        // Every batch's adversarial examples reach `on_batch`.
        let mut seen = 0;
        job.run_each::<AD>(&model, &data, &device, |e| seen += e.x_adv.dims()[0])
            .expect("run");
        assert_eq!(seen, 7);
    }

    #[test]
    fn a_resumed_chunked_run_equals_the_one_pass_run_and_cleans_up() {
        let (model, data, job) = setup();
        let device = Default::default();
        let whole = job
            .run::<AD>(&model, &data, &device)
            .expect("run")
            .expect("report");
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("eval.json");
        let key = job.resume_key(&model, &data);
        assert_eq!(key["mode"], "robust");
        assert_eq!(
            (key["n"].as_u64(), key["batch_size"].as_u64()),
            (Some(7), Some(3))
        );
        let store = Resumable::open(&out, &key).expect("store");
        let fresh = job
            .run_chunked::<AD>(&model, &data, &device, &store)
            .expect("run");
        assert_eq!(fresh.as_ref(), Some(&whole));
        // A second run reads the three stored chunks instead of attacking.
        let store = Resumable::open(&out, &key).expect("reopen");
        assert!(store.get::<EvalReport>(2).expect("chunk").is_some());
        let resumed = job
            .run_chunked::<AD>(&model, &data, &device, &store)
            .expect("resume");
        let resumed = resumed.expect("report");
        assert_eq!(resumed.samples, whole.samples);
        assert_eq!((resumed.n, resumed.robust), (whole.n, whole.robust));
        assert_eq!(resumed.cost, whole.cost);
        let written = job
            .run_to_file::<AD>(&model, &data, &device, &out)
            .expect("file");
        assert_eq!(written.samples, whole.samples);
        let back: EvalReport =
            serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("json");
        assert_eq!(back.samples, whole.samples);
        assert!(!dir.path().join("eval.json.partial").exists());
        let empty = job.clone().range(7..7);
        assert!(matches!(
            empty.run_to_file::<AD>(&model, &data, &device, &out),
            Err(EvalError::NoSamples)
        ));
    }

    /// Multiplies every weight by NaN: a diverged model.
    struct Diverge;
    impl<B: Backend> burn::module::ModuleMapper<B> for Diverge {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<B, D>>,
        ) -> burn::module::Param<Tensor<B, D>> {
            param.map(|t| t.mul_scalar(f32::NAN))
        }
    }

    #[test]
    fn progress_is_reported_and_bad_samples_or_nan_logits_are_errors_leaving_nothing() {
        use std::sync::Mutex;
        let (model, data, job) = setup();
        let device = Default::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let watched = job.clone().on_progress(move |p| {
            sink.lock().expect("lock").push((p.done, p.total));
        });
        watched.run::<AD>(&model, &data, &device).expect("run");
        assert_eq!(*seen.lock().expect("lock"), vec![(3, 7), (6, 7), (7, 7)]);
        // A streamed sample whose file is not an image: an error naming it, no partial store.
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"not a png").expect("write");
        let opts = advsoup_data::folder::FolderOptions {
            channels: 1,
            resize_shorter: None,
            center_crop: Some(8),
        };
        let streamed =
            ImageDataset::from_files([1, 8, 8], vec![bad], opts, vec![0], 3).expect("streamed");
        let out = dir.path().join("eval.json");
        let e = job
            .run_to_file::<AD>(&model, &streamed, &device, &out)
            .expect_err("damaged");
        assert!(
            matches!(e, EvalError::Data(_)) && e.to_string().contains("bad.png"),
            "{e}"
        );
        assert!(!dir.path().join("eval.json.partial").exists() && !out.exists());
        // NaN weights: refused on the first batch, before any attack.
        use burn::module::Module;
        let nan = model.map(&mut Diverge);
        let e = job
            .run_to_file::<AD>(&nan, &data, &device, &out)
            .expect_err("nan");
        assert!(matches!(e, EvalError::NonFinite { .. }), "{e}");
        assert!(!dir.path().join("eval.json.partial").exists() && !out.exists());
        let e =
            crate::accuracy(&nan, &data, &Route::mode(Mode::Clean), 3, &device).expect_err("nan");
        assert!(e.to_string().contains("not finite"), "{e}");
    }

    #[test]
    fn adversarial_examples_are_written_with_labels_and_status() {
        let (model, data, job) = setup();
        let device = Default::default();
        let dir = tempfile::tempdir().expect("tempdir");
        let set = job
            .clone()
            .first(5)
            .write_adversarial::<AD>(&model, &data, &device, &dir.path().join("adv"))
            .expect("write");
        assert_eq!(set.report.n, 5);
        let bytes = std::fs::read(&set.safetensors).expect("safetensors");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
        assert_eq!(st.tensor("x_adv").expect("x_adv").shape(), [5, 1, 8, 8]);
        let floats = |name: &str| -> Vec<f32> {
            st.tensor(name)
                .expect(name)
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        assert_eq!(floats("label"), vec![0.0, 1.0, 2.0, 0.0, 1.0]);
        let robust: Vec<f32> = set
            .report
            .samples
            .iter()
            .map(|s| f32::from(u8::from(s.robust)))
            .collect();
        assert_eq!(floats("robust"), robust);
        let json: EvalReport =
            serde_json::from_slice(&std::fs::read(&set.json).expect("json")).expect("report");
        assert_eq!(json.samples, set.report.samples);
    }
}
