//! Adversarial examples of an evaluation job, written for later inspection or transfer attacks.

use std::path::{Path, PathBuf};

use advsoup_adapters::AdaptedVit;
use advsoup_attacks::EvalReport;
use advsoup_data::ImageDataset;
use burn::tensor::backend::AutodiffBackend;

use crate::{EvalError, EvalJob};

/// The files [`EvalJob::write_adversarial`] wrote, and the report they hold.
#[derive(Clone, Debug)]
pub struct AdversarialSet {
    /// The evaluation report.
    pub report: EvalReport,
    /// `<out>.safetensors`: `x_adv` `[n, c, h, w]`, `label` `[n]`, `robust` `[n]` (all f32).
    pub safetensors: PathBuf,
    /// `<out>.json`: the report, pretty JSON.
    pub json: PathBuf,
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn view(
    d: &[u8],
    shape: Vec<usize>,
) -> Result<safetensors::tensor::TensorView<'_>, safetensors::SafeTensorError> {
    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, d)
}

impl EvalJob {
    /// Runs the job in one pass, keeping every batch's adversarial examples, and writes them
    /// with the per-sample labels and robustness to `<out>.safetensors` and the report to
    /// `<out>.json` (both atomically).
    ///
    /// # Errors
    /// [`EvalError::NoSamples`] when no batch was attacked; a file that cannot be written; as
    /// [`EvalJob::run`].
    pub fn write_adversarial<AD: AutodiffBackend>(
        &self,
        model: &AdaptedVit<AD::InnerBackend>,
        data: &ImageDataset,
        device: &AD::Device,
        out: &Path,
    ) -> Result<AdversarialSet, EvalError> {
        let mut images: Vec<f32> = Vec::new();
        let mut shape = [0usize; 3];
        let report = self.run_each::<AD>(model, data, device, |e| {
            let [_, c, h, w] = e.x_adv.dims();
            shape = [c, h, w];
            images.extend(e.x_adv.clone().into_data().iter::<f32>());
        })?;
        let report = report.ok_or(EvalError::NoSamples)?;
        let n = report.samples.len();
        let labels: Vec<f32> = report.samples.iter().map(|s| s.label as f32).collect();
        let robust: Vec<f32> = report
            .samples
            .iter()
            .map(|s| f32::from(u8::from(s.robust)))
            .collect();
        let (xb, lb, rb) = (le_bytes(&images), le_bytes(&labels), le_bytes(&robust));
        let st_path = out.with_extension("safetensors");
        let failed = |e: safetensors::SafeTensorError| EvalError::Safetensors {
            path: st_path.clone(),
            message: e.to_string(),
        };
        let tensors = vec![
            (
                "x_adv",
                view(&xb, vec![n, shape[0], shape[1], shape[2]]).map_err(failed)?,
            ),
            ("label", view(&lb, vec![n]).map_err(failed)?),
            ("robust", view(&rb, vec![n]).map_err(failed)?),
        ];
        let st = safetensors::serialize(tensors, None).map_err(failed)?;
        advsoup_io::write_atomic(&st_path, &st)?;
        let json_path = out.with_extension("json");
        crate::write_json(&json_path, &report)?;
        Ok(AdversarialSet {
            report,
            safetensors: st_path,
            json: json_path,
        })
    }
}
