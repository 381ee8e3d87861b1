//! One training run's page: the final table (`final.json`), the training curves
//! (`metrics.jsonl`), the model card (`config.toml`, `run.json`, `params.json` when present),
//! the evaluation reports in the directory (`eval-*.json`, with their sanity flags) and the
//! commands that rerun it.

use std::path::Path;

use advsoup_records::eval_report::EvalSummary;
use advsoup_records::params::ParamCounts;
use advsoup_records::run::{EpochMetrics, FinalReport, RunMeta};
use advsoup_records::{parse_json, read_json};

use crate::{Page, ReportError, training_curves};

fn pct(v: f64) -> String {
    format!("{:.2}", 100.0 * v)
}

fn read_text(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The epochs of a `metrics.jsonl` (one record per line; blank lines skipped).
///
/// # Errors
/// The file cannot be read, or a line is not an [`EpochMetrics`] (naming the file).
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>, ReportError> {
    read_text(path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_json(l, path).map_err(ReportError::from))
        .collect()
}

/// The page of the run directory `dir` (`advsoup report --run DIR` writes it to
/// `DIR/report.html`). `run.json` and `config.toml` are required; a run without `final.json`
/// or epochs yet says so.
///
/// # Errors
/// A required file is missing, or a record does not parse (naming the file), or a plot fails.
pub fn run_page(dir: &Path) -> Result<String, ReportError> {
    let meta: RunMeta = read_json(&dir.join("run.json"))?;
    let config = read_text(&dir.join("config.toml"))?;
    let name = dir
        .file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
    let mut page = Page::new(&format!("advsoup run {name}"));
    page.paragraph(&format!(
        "Run directory {}: every number on this page is read from its files (final.json, \
         metrics.jsonl, run.json, config.toml, params.json, eval-*.json).",
        dir.display()
    ));
    page.heading("final", "Final table (test split)");
    let final_path = dir.join("final.json");
    let fin: Option<FinalReport> = if final_path.is_file() {
        Some(read_json(&final_path)?)
    } else {
        None
    };
    match &fin {
        Some(f) => {
            let head = [
                "mode".to_string(),
                format!("clean acc % (n={})", f.n_clean),
                format!("robust acc % {} eps={} (n={})", f.attack, f.eps, f.n_robust),
            ];
            let head: Vec<&str> = head.iter().map(String::as_str).collect();
            page.table(
                "final-table",
                &head,
                &[
                    vec![
                        "clean".into(),
                        pct(f.clean_mode_clean_acc),
                        pct(f.clean_mode_robust_acc),
                    ],
                    vec![
                        "robust".into(),
                        pct(f.robust_mode_clean_acc),
                        pct(f.robust_mode_robust_acc),
                    ],
                ],
            );
            page.paragraph(&format!("Training time: {:.0} s.", f.train_seconds));
        }
        None => {
            page.paragraph("No final.json yet: the run has not finished.");
        }
    }
    let metrics_path = dir.join("metrics.jsonl");
    let metrics = if metrics_path.is_file() {
        read_metrics(&metrics_path)?
    } else {
        vec![]
    };
    page.heading("curves", "Training curves");
    if metrics.is_empty() {
        page.paragraph("No epoch has finished yet (metrics.jsonl is empty or missing).");
    } else {
        let svg = training_curves(&metrics, &format!("{name}: per epoch"))?;
        page.figure(
            "training-curves",
            &svg,
            "training loss; held-out clean accuracy (clean mode) and robust accuracy (robust \
             mode, the config's eval PGD); learning rate at the end of each epoch",
        );
        let rows: Vec<Vec<String>> = metrics
            .iter()
            .map(|m| {
                vec![
                    m.epoch.to_string(),
                    m.step.to_string(),
                    format!("{:.4}", m.loss),
                    pct(m.clean_acc),
                    pct(m.robust_acc),
                    format!("{:.3e}", m.lr),
                    format!("{:.0}", m.images_per_s),
                ]
            })
            .collect();
        page.table(
            "epochs",
            &[
                "epoch",
                "step",
                "loss",
                "held-out clean %",
                "held-out robust %",
                "lr",
                "images/s",
            ],
            &rows,
        );
    }
    evals(&mut page, dir)?;
    model_card(&mut page, dir, &meta, &config)?;
    page.heading("rerun", "Commands to rerun");
    let eps = fin
        .as_ref()
        .map_or_else(|| "EPS".to_string(), |f| f.eps.to_string());
    let parent = dir
        .parent()
        .map_or_else(|| ".".into(), |p| p.display().to_string());
    page.pre(&format!(
        "# retrain from the resolved config (same seed, data order and budget), into a new directory\n\
         advsoup train --config {d}/config.toml --runs-dir runs-rerun\n\
         # finish this run after an interruption\n\
         advsoup train --config {d}/config.toml --runs-dir {parent} --resume\n\
         # the strongest evaluation: the standard ensemble on the robust mode\n\
         advsoup eval --run {d} --attack standard --eps {eps} --n 1000 --mode robust\n\
         # this page\n\
         advsoup report --run {d}",
        d = dir.display()
    ));
    Ok(page.finish())
}

/// The `eval-*.json` reports in `dir`, sorted by name.
fn evals(page: &mut Page, dir: &Path) -> Result<(), ReportError> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| ReportError::Io {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "json")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("eval-"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Ok(());
    }
    page.heading("evaluations", "Evaluations (advsoup eval)");
    let mut rows = Vec::new();
    for f in &files {
        let e: EvalSummary = read_json(f)?;
        let flags = e.sanity.warnings();
        rows.push(vec![
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            e.n.to_string(),
            e.eps.to_string(),
            pct(e.clean_accuracy),
            pct(e.robust_accuracy),
            e.per_attack
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if flags.is_empty() {
                "none".into()
            } else {
                flags.join("; ")
            },
        ]);
    }
    page.table(
        "eval-reports",
        &[
            "report",
            "n",
            "eps",
            "clean %",
            "robust %",
            "attacks",
            "sanity flags",
        ],
        &rows,
    );
    Ok(())
}

/// The model card: run.json, params.json (when present) and the resolved config.
fn model_card(
    page: &mut Page,
    dir: &Path,
    meta: &RunMeta,
    config: &str,
) -> Result<(), ReportError> {
    page.heading("model-card", "Model card");
    let mut rows = vec![
        vec!["seed".into(), meta.seed.to_string()],
        vec![
            "git revision".into(),
            meta.git_revision
                .clone()
                .unwrap_or_else(|| "unknown".into()),
        ],
        vec!["backend".into(), meta.backend.clone()],
        vec!["burn".into(), meta.burn.clone()],
        vec![
            "devices × nodes".into(),
            format!("{} × {}", meta.devices, meta.nodes),
        ],
        vec![
            "global batch (accumulation)".into(),
            format!("{} ({})", meta.global_batch, meta.accumulation),
        ],
    ];
    let params = dir.join("params.json");
    if params.is_file() {
        let p: ParamCounts = read_json(&params)?;
        rows.push(vec!["adapter".into(), p.adapter.clone()]);
        rows.push(vec!["parameters".into(), p.total_params.to_string()]);
        rows.push(vec![
            "domain-specific parameters per domain".into(),
            p.params_per_domain.to_string(),
        ]);
    }
    page.table("run-meta", &["field", "value"], &rows);
    page.paragraph("config.toml (the resolved config the run trained with):");
    page.pre(config);
    Ok(())
}
