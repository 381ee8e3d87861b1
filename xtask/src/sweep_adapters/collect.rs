//! Gathering the results of an adapter sweep: every number of a row is read, through its
//! record type, from a file the cli wrote (`final.json`, `soup/soup.json`,
//! `soup/select-*.json`, `params.json`). A missing or renamed field is an error naming the
//! file.

use std::path::{Path, PathBuf};

use advsoup_records::adapter_sweep::{
    BudgetResults, BudgetRow, FrontPoint, RowResult, RowSummary, ShiftSoupResult, StandardResult,
    SweepConfig, SweepResults,
};
use advsoup_records::eval_report::EvalSummary;
use advsoup_records::params::ParamCounts;
use advsoup_records::run::{CpuInfo, FinalReport, RunMeta};
use advsoup_records::soup::{SelectReport, SoupSweep, f32_as_json_f64};
use advsoup_records::stats::interval;
use advsoup_records::{claims, read_json};
use anyhow::{Context, Result};

use super::plan::{RowSpec, rows};
use super::run::{budget_spec, exists, seed_dir, select_path, standard_path};

/// The results of every (row, seed) that has all its files under `runs`, the per-row summary
/// over seeds, the budget axis, and the claims checked on them.
pub(super) fn collect(
    config: &SweepConfig,
    runs: &Path,
    seeds: &[u64],
    quick: bool,
) -> Result<SweepResults> {
    let mut results = Vec::new();
    let mut machines = Machines::default();
    let mut eps = f64::NAN;
    for spec in rows(config) {
        for &seed in seeds {
            let dir = seed_dir(runs, seed).join(&spec.name);
            let final_path = dir.join("final.json");
            let soup_path = dir.join("soup/soup.json");
            let params_path = dir.join("params.json");
            if !(exists(&final_path) && exists(&soup_path) && exists(&params_path)) {
                continue;
            }
            let fin: FinalReport = read_json(&final_path)?;
            let soup: SoupSweep = read_json(&soup_path)?;
            let params: ParamCounts = read_json(&params_path)?;
            eps = soup.eps;
            let shifts = shift_results(config, &dir.join("soup"))?;
            let mut row = row_result(&spec, &dir, fin, soup, params, shifts)?;
            row.seed = seed;
            row.standard = standard(&dir)?;
            // paths relative to the sweep directory, so a rerun elsewhere compares equal
            let sweep_dir = runs.parent().unwrap_or(runs);
            row.run_dir = relative(&row.run_dir, sweep_dir);
            row.soup_json = relative(&row.soup_json, sweep_dir);
            if let Some(s) = &mut row.standard {
                s.report = relative(&s.report, sweep_dir);
            }
            results.push(row);
            machines.note(&dir)?;
        }
    }
    let budget = match &config.budget {
        Some(spec) => Some(BudgetResults {
            spec: spec.clone(),
            rows: budget_rows(config, runs, seeds, &mut machines)?,
        }),
        None => None,
    };
    let claims = claims::claims(&results, budget.as_ref());
    Ok(SweepResults {
        config: config.clone(),
        quick,
        eps,
        seeds: seeds.to_vec(),
        summary: summary(config, &results),
        rows: results,
        budget,
        claims,
        machines: machines.cpus,
        runs_without_cpu: machines.unrecorded,
    })
}

/// The CPUs named by the runs' `run.json`, each once, and how many runs name none.
#[derive(Default)]
struct Machines {
    cpus: Vec<CpuInfo>,
    unrecorded: usize,
}

impl Machines {
    /// Notes the CPU in `dir`'s `run.json` (a run written before the CPU was recorded counts
    /// as unrecorded).
    fn note(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join("run.json");
        let cpu = if exists(&path) {
            read_json::<RunMeta>(&path)?.cpu
        } else {
            None
        };
        match cpu {
            Some(cpu) if !self.cpus.contains(&cpu) => self.cpus.push(cpu),
            Some(_) => {}
            None => self.unrecorded += 1,
        }
        Ok(())
    }
}

/// `path` relative to `base` (unchanged when it is not under `base`).
fn relative(path: &Path, base: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

/// The `standard` ensemble's report of a run, when it exists.
fn standard(dir: &Path) -> Result<Option<StandardResult>> {
    let path = standard_path(dir);
    if !exists(&path) {
        return Ok(None);
    }
    let e: EvalSummary = read_json(&path)?;
    Ok(Some(StandardResult {
        n: e.n,
        clean_acc: e.clean_accuracy,
        robust_acc: e.robust_accuracy,
        attacks: e.per_attack.into_iter().map(|a| a.name).collect(),
        sanity_flags: e.sanity.warnings(),
        report: path,
    }))
}

/// The budget axis's finished (row, seed) runs.
fn budget_rows(
    config: &SweepConfig,
    runs: &Path,
    seeds: &[u64],
    machines: &mut Machines,
) -> Result<Vec<BudgetRow>> {
    let mut out = Vec::new();
    for spec in rows(config).iter().filter(|r| is_budget_row(r)) {
        for &seed in seeds {
            let dir = seed_dir(runs, seed).join(budget_spec(spec).name);
            let path = dir.join("final.json");
            if !exists(&path) {
                continue;
            }
            let fin: FinalReport = read_json(&path)?;
            out.push(BudgetRow {
                name: spec.name.clone(),
                seed,
                clean_acc: fin.clean_mode_clean_acc,
                n_clean: fin.n_clean,
                robust_acc: fin.robust_mode_robust_acc,
                n_robust: fin.n_robust,
                train_seconds: fin.train_seconds,
                run_dir: relative(&dir, runs.parent().unwrap_or(runs)),
            });
            machines.note(&dir)?;
        }
    }
    Ok(out)
}

/// The rows the budget axis trains again: those of the paper's main claim.
pub(super) fn is_budget_row(row: &RowSpec) -> bool {
    row.name == "nominal" || row.name == "cls_token"
}

/// Per row (report order) over its seeds: mean and 95% interval of each number.
fn summary(config: &SweepConfig, results: &[RowResult]) -> Vec<RowSummary> {
    rows(config)
        .iter()
        .filter_map(|spec| {
            let rs: Vec<&RowResult> = results.iter().filter(|r| r.name == spec.name).collect();
            let first = rs.first()?;
            let of =
                |f: fn(&RowResult) -> f64| interval(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
            let standard: Option<Vec<f64>> = rs
                .iter()
                .map(|r| r.standard.as_ref().map(|s| s.robust_acc))
                .collect();
            Some(RowSummary {
                name: spec.name.clone(),
                label: spec.label.clone(),
                has_adapter: first.has_adapter,
                params_per_domain: first.params_per_domain,
                seeds: rs.iter().map(|r| r.seed).collect(),
                clean_acc: of(|r| r.clean_acc),
                robust_acc_pgd20: of(|r| r.robust_acc_pgd20),
                robust_acc_apgd_ce: of(|r| r.robust_acc_apgd_ce),
                robust_acc_standard: standard.map(|v| interval(&v)),
                mean_corruption_acc: of(|r| r.mean_corruption_acc),
                mean_soup_acc: of(|r| r.mean_soup_acc),
            })
        })
        .collect()
}

/// The row's per-shift selections that exist, in the order of the sweep file's corruptions.
fn shift_results(config: &SweepConfig, soup_dir: &Path) -> Result<Vec<ShiftSoupResult>> {
    let mut shifts = Vec::new();
    for c in config.corruption_list() {
        let p = select_path(soup_dir, config, &c);
        if !exists(&p) {
            continue;
        }
        let v: SelectReport = read_json(&p)?;
        shifts.push(ShiftSoupResult {
            shift: v.shift,
            // the f64 of the digits the cli wrote, as results.json has always held it
            chosen_beta: f32_as_json_f64(v.chosen_beta)
                .with_context(|| format!("{}: chosen_beta is not a number", p.display()))?,
            soup_acc: v.test_acc_chosen,
            clean_mode_acc: v.test_acc_clean_mode,
            robust_mode_acc: v.test_acc_robust_mode,
            n_test: v.n_test,
        });
    }
    Ok(shifts)
}

fn row_result(
    spec: &RowSpec,
    dir: &Path,
    fin: FinalReport,
    soup: SoupSweep,
    params: ParamCounts,
    shifts: Vec<ShiftSoupResult>,
) -> Result<RowResult> {
    let soup_path = dir.join("soup/soup.json");
    let robust_row = soup
        .rows
        .iter()
        .find(|r| r.beta == 0.0)
        .or_else(|| soup.rows.first())
        .with_context(|| format!("{}: no β = 0 row", soup_path.display()))?;
    let apgd = robust_row
        .attack_acc("apgd-ce")
        .with_context(|| format!("{}: no apgd-ce result at β = 0", soup_path.display()))?;
    let mean = |f: fn(&ShiftSoupResult) -> f64| {
        if shifts.is_empty() {
            f64::NAN
        } else {
            shifts.iter().map(f).sum::<f64>() / shifts.len() as f64
        }
    };
    let front = soup
        .rows
        .iter()
        .map(|r| {
            Ok(FrontPoint {
                beta: f32_as_json_f64(r.beta)
                    .with_context(|| format!("{}: beta is not a number", soup_path.display()))?,
                clean_acc: r.clean_acc,
                robust_acc: r.robust_acc,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RowResult {
        name: spec.name.clone(),
        seed: 0,
        label: spec.label.clone(),
        regime: spec.regime.clone(),
        adapter: params.adapter,
        has_adapter: spec.has_adapter(),
        params_per_domain: params.params_per_domain,
        total_params: params.total_params,
        clean_acc: fin.clean_mode_clean_acc,
        n_clean: fin.n_clean,
        robust_acc_pgd20: fin.robust_mode_robust_acc,
        n_robust_pgd20: fin.n_robust,
        final_attack: fin.attack,
        robust_acc_apgd_ce: apgd,
        n_robust_apgd: soup.n_robust,
        mean_corruption_acc: mean(|s| s.clean_mode_acc),
        mean_soup_acc: mean(|s| s.soup_acc),
        soup_beats_both: shifts
            .iter()
            .filter(|s| s.soup_acc > s.clean_mode_acc && s.soup_acc > s.robust_mode_acc)
            .count(),
        shifts,
        front,
        standard: None,
        train_seconds: fin.train_seconds,
        sweep_seconds: soup.wall_seconds,
        run_dir: dir.to_path_buf(),
        soup_json: soup_path,
    })
}

#[cfg(test)]
mod tests {
    use advsoup_records::adapter_sweep::Verdict;

    use super::*;

    /// Files as the cli writes them, for one row.
    fn write_row(runs: &Path, name: &str, final_json: &str) {
        let dir = runs.join("seed-0").join(name);
        std::fs::create_dir_all(dir.join("soup")).expect("dir");
        std::fs::write(dir.join("final.json"), final_json).expect("final");
        let soup = r#"{"model": "m", "dataset": "d/test", "model_sha256": "a",
            "adapter_sha256": "b", "threat_model": "linf", "eps": 0.1, "seed": 0,
            "n_clean": 20, "n_robust": 8, "n_shift": 10, "severity": 3,
            "attacks": [{"name": "apgd-ce", "evaluator": {"attacks": [], "seed": 0}}],
            "rows": [{"beta": 0.0, "clean_acc": 0.5, "robust_acc": 0.25,
                      "attacks": [{"name": "pgd-20", "acc": 0.375}, {"name": "apgd-ce", "acc": 0.25}],
                      "shifts": [], "forward_passes": 10,
                      "recipe": {"adapter_sha256": "b", "model_sha256": "a", "beta": 0.0}}],
            "wall_seconds": 2.5}"#;
        std::fs::write(dir.join("soup/soup.json"), soup).expect("soup");
        let select = r#"{"model": "m", "shift": "contrast:3", "seed": 0, "n_held_out": 10,
            "n_test": 12, "betas": [0.0, 0.3, 1.0], "held_out_acc": [0.1, 0.5, 0.2],
            "chosen_beta": 0.3, "test_acc_chosen": 0.75, "test_acc_robust_mode": 0.5,
            "test_acc_clean_mode": 0.625, "beats_both_endpoints": true,
            "test_acc_all": [0.5, 0.75, 0.625],
            "recipe": {"adapter_sha256": "b", "model_sha256": "a", "beta": 0.3}}"#;
        std::fs::write(dir.join("soup/select-contrast-3.json"), select).expect("select");
        let params = r#"{"model": "m", "adapter": "cls_token", "total_params_no_adapter": 90,
            "total_params": 100, "params_per_domain": 5}"#;
        std::fs::write(dir.join("params.json"), format!("{params}\n")).expect("params");
    }

    const FINAL: &str = r#"{"n_clean": 20, "n_robust": 8, "attack": "pgd-20", "eps": 0.1,
        "clean_mode_clean_acc": 0.9, "robust_mode_clean_acc": 0.8,
        "clean_mode_robust_acc": 0.0, "robust_mode_robust_acc": 0.375,
        "train_seconds": 12.0, "seed": 0}"#;

    const STANDARD: &str = r#"{"seed": 0, "threat": "linf", "eps": 0.1, "attacks": [], "n": 4,
        "clean_correct": 3, "robust": 2, "clean_accuracy": 0.75, "robust_accuracy": 0.5,
        "per_attack": [{"name": "apgd-ce"}, {"name": "square"}], "samples": [], "cost": {},
        "sanity": {"outputs_look_like_probabilities": false, "nondeterministic_forward": false,
          "max_forward_difference": 0.0, "zero_gradient_samples": [3, 4],
          "black_box_only_breaks": 0, "black_box_beats_white_box": false, "out_of_ball": 0,
          "non_monotone_in_eps": null}}"#;

    fn config() -> SweepConfig {
        let mut c = super::super::plan::tests::config();
        c.soup.corruptions = "contrast".into();
        c.soup.severity = 3;
        c
    }

    #[test]
    fn rows_are_read_through_their_records() {
        let dir = tempfile_dir("collect");
        write_row(&dir, "cls_token", FINAL);
        let r = collect(&config(), &dir, &[0], true).expect("collect");
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.eps, 0.1);
        let row = &r.rows[0];
        assert_eq!(row.name, "cls_token");
        assert_eq!((row.params_per_domain, row.total_params), (5, 100));
        assert_eq!((row.clean_acc, row.n_clean), (0.9, 20));
        assert_eq!((row.robust_acc_pgd20, row.n_robust_pgd20), (0.375, 8));
        assert_eq!((row.robust_acc_apgd_ce, row.n_robust_apgd), (0.25, 8));
        assert_eq!(row.final_attack, "pgd-20");
        assert_eq!(row.sweep_seconds, 2.5);
        // relative to the sweep directory (the parent of runs/)
        assert!(row.run_dir.is_relative(), "{}", row.run_dir.display());
        assert!(row.run_dir.ends_with("seed-0/cls_token"));
        // β as written (0.3), not 0.3f32 widened
        assert_eq!(row.shifts[0].chosen_beta, 0.3);
        assert_eq!(row.shifts[0].n_test, 12);
        assert_eq!((row.mean_soup_acc, row.soup_beats_both), (0.75, 1));
        assert_eq!(row.front.len(), 1);
        assert_eq!((row.front[0].beta, row.front[0].robust_acc), (0.0, 0.25));
        assert!(row.standard.is_none());
        assert_eq!(r.summary.len(), 1);
        assert_eq!(r.summary[0].clean_acc.n, 1);
        // the shipped sweep file has a budget axis: its claim is there, not measured yet
        assert_eq!(r.claims.len(), 8);
        let last = r.claims.last().expect("claims");
        assert_eq!(
            (last.id.as_str(), last.verdict),
            ("1-budget", Verdict::NotMeasured)
        );
        assert_eq!(r.budget.as_ref().map(|b| b.rows.len()), Some(0));
        // a standard-ensemble report and a budget run are read through their records
        let run = dir.join("seed-0").join("cls_token");
        std::fs::write(run.join("eval-standard-robust.json"), STANDARD).expect("standard");
        let budget = dir.join("seed-0").join("budget-nominal");
        std::fs::create_dir_all(&budget).expect("dir");
        std::fs::write(budget.join("final.json"), FINAL).expect("final");
        let r = collect(&config(), &dir, &[0], true).expect("collect");
        let s = r.rows[0].standard.as_ref().expect("standard");
        assert_eq!((s.n, s.robust_acc), (4, 0.5));
        assert_eq!(s.attacks, ["apgd-ce", "square"]);
        assert_eq!(s.sanity_flags, ["2 samples with a zero input gradient"]);
        let b = r.budget.as_ref().expect("budget");
        assert_eq!(b.rows.len(), 1);
        assert_eq!(
            (b.rows[0].name.as_str(), b.rows[0].clean_acc),
            ("nominal", 0.9)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cpus_of_the_runs_are_gathered_once_each() {
        let dir = tempfile_dir("cpus");
        write_row(&dir, "cls_token", FINAL);
        write_row(&dir, "bias", FINAL);
        let run_json = |simd: &str| {
            format!(
                r#"{{"accumulation":1,"backend":"B","burn":"0.21.0","cpu":{{"arch":"x86_64","model":"m","simd":[{simd}]}},"devices":1,"git_revision":null,"global_batch":8,"nodes":1,"seed":0}}"#
            )
        };
        let seed0 = dir.join("seed-0");
        // a run written before the CPU was recorded adds nothing
        let old = r#"{"accumulation":1,"backend":"B","burn":"0.21.0","devices":1,"git_revision":null,"global_batch":8,"nodes":1,"seed":0}"#;
        std::fs::write(seed0.join("bias/run.json"), old).expect("run.json");
        let r = collect(&config(), &dir, &[0], true).expect("collect");
        assert!(r.machines.is_empty(), "{:?}", r.machines);
        assert_eq!(r.runs_without_cpu, 2, "one old run.json, one missing");
        let avx512 = run_json(r#""avx2","avx512f""#);
        std::fs::write(seed0.join("cls_token/run.json"), &avx512).expect("run.json");
        std::fs::write(seed0.join("bias/run.json"), &avx512).expect("run.json");
        let r = collect(&config(), &dir, &[0], true).expect("collect");
        assert_eq!(r.machines.len(), 1, "the same CPU once");
        assert_eq!(r.runs_without_cpu, 0);
        assert!(!r.mixed_machines());
        // a budget run trained on a CPU without AVX-512
        let budget = seed0.join("budget-nominal");
        std::fs::create_dir_all(&budget).expect("dir");
        std::fs::write(budget.join("final.json"), FINAL).expect("final");
        std::fs::write(budget.join("run.json"), run_json(r#""avx2""#)).expect("run.json");
        let r = collect(&config(), &dir, &[0], true).expect("collect");
        assert_eq!(r.machines.len(), 2);
        assert!(r.mixed_machines());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_renamed_field_is_an_error_naming_the_file() {
        let dir = tempfile_dir("renamed");
        write_row(
            &dir,
            "cls_token",
            &FINAL.replace("\"n_robust\"", "\"n_attacked\""),
        );
        let e = format!(
            "{:#}",
            collect(&config(), &dir, &[0], true).expect_err("renamed")
        );
        assert!(
            e.contains("seed-0/cls_token/final.json") && e.contains("n_robust"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
