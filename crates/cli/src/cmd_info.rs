//! `advsoup info`: parameter counts of a preset with an adapter, or of a trained run's model
//! (from the config's formulas and from the tensors of its `model.safetensors`).

use advsoup_train::plan::group;
use std::path::Path;

use advsoup_adapters::{AdaptedVitConfig, AdapterKind};
use advsoup_vit::VitConfig;
use anyhow::{Context, Result, bail};
use burn::backend::Flex;

use crate::load_run;

/// `advsoup info`: the counts of `run`, or of `preset` with `adapter`, as text or JSON.
pub(crate) fn run(
    preset: Option<&str>,
    adapter: &str,
    run: Option<&Path>,
    json: bool,
) -> Result<()> {
    let counts = match (run, preset) {
        (Some(run), _) => run_counts(run)?,
        (None, Some(preset)) => counts(preset, adapter)?,
        (None, None) => bail!("info: give --preset or --run"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&counts)?);
    } else {
        print!("{}", counts_text(&counts));
    }
    Ok(())
}

pub(crate) fn preset(name: &str) -> Result<VitConfig> {
    VitConfig::preset(name).with_context(|| {
        format!(
            "unknown preset `{name}`, expected one of {}",
            VitConfig::PRESETS.join(", ")
        )
    })
}

pub(crate) fn adapter(name: &str) -> Result<AdapterKind> {
    AdapterKind::parse(name).with_context(|| {
        format!("unknown adapter `{name}`, expected none, cls_token, dual_layer_norm, bias, prompt[:K] or lora[:R]")
    })
}

pub use advsoup_records::params::ParamCounts;

/// The text form of [`ParamCounts`] (`advsoup info`).
pub fn counts_text(c: &ParamCounts) -> String {
    format!(
        "model: {}\nadapter: {}\ntotal parameters (no adapter): {}\ntotal parameters (with adapter): {}\ndomain-specific parameters per domain: {}\n",
        c.model,
        c.adapter,
        group(c.total_params_no_adapter),
        group(c.total_params),
        group(c.params_per_domain),
    )
}

fn counts_of(model: String, vit: &VitConfig, kind: AdapterKind) -> ParamCounts {
    ParamCounts {
        model,
        adapter: kind.name(),
        total_params_no_adapter: vit.num_params(),
        total_params: AdaptedVitConfig {
            vit: vit.clone(),
            adapter: kind,
        }
        .num_params(),
        params_per_domain: kind.params_per_domain(vit),
    }
}

/// Counts of a preset with an adapter, from the formulas.
pub fn counts(preset_name: &str, adapter_name: &str) -> Result<ParamCounts> {
    Ok(counts_of(
        preset_name.to_string(),
        &preset(preset_name)?,
        adapter(adapter_name)?,
    ))
}

/// Counts of a trained run's model: the formulas for its config, checked against the tensors
/// of its `model.safetensors`.
pub fn run_counts(run: &Path) -> Result<ParamCounts> {
    let device = Default::default();
    let (config, model) = load_run::<Flex>(run, &device)?;
    let counts = counts_of(
        run.display().to_string(),
        &config.vit()?,
        config.model.adapter,
    );
    let (tensors_total, tensors_domain) = (
        burn::module::Module::num_params(&model),
        model.params_per_domain(),
    );
    if (tensors_total, tensors_domain) != (counts.total_params, counts.params_per_domain) {
        bail!(
            "{}: the model holds {tensors_total} parameters ({tensors_domain} per domain) but its \
             config implies {} ({} per domain)",
            run.join("model.safetensors").display(),
            counts.total_params,
            counts.params_per_domain
        );
    }
    Ok(counts)
}

/// The text of `advsoup info --preset P --adapter A`.
pub fn info(preset_name: &str, adapter_name: &str) -> Result<String> {
    Ok(counts_text(&counts(preset_name, adapter_name)?))
}
