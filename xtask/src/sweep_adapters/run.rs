//! Running one row of an adapter sweep: each step calls the `advsoup` cli and leaves its own
//! file in the row's run directory; a step whose file exists is skipped, so an interrupted
//! sweep resumes without retraining finished runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use advsoup_records::adapter_sweep::{RowSettings, SweepConfig};
use anyhow::{Context, Result, bail};

use super::plan::RowSpec;

/// How the cli is called.
pub(super) struct Advsoup {
    pub(super) binary: PathBuf,
}

impl Advsoup {
    pub(super) fn run(&self, args: &[String]) -> Result<()> {
        let shown = format!("advsoup {}", args.join(" "));
        println!("$ {shown}");
        let s = Command::new(&self.binary)
            .args(args)
            .current_dir(crate::workspace_root())
            .status()
            .with_context(|| format!("running {}", self.binary.display()))?;
        if !s.success() {
            bail!("`{shown}` failed ({s})");
        }
        Ok(())
    }

    fn output(&self, args: &[String]) -> Result<String> {
        let out = Command::new(&self.binary)
            .args(args)
            .current_dir(crate::workspace_root())
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        if !out.status.success() {
            bail!(
                "`advsoup {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Builds `advsoup` and copies it into `dir`: a rebuild of target/ during a long job (another
/// engineer's `cargo build`) must not change the code that runs its later steps.
pub fn private_binary(dev: bool, dir: &Path) -> Result<PathBuf> {
    let built = build_advsoup_binary(dev)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let private = dir.join("advsoup");
    let tmp = dir.join("advsoup.tmp");
    std::fs::copy(&built, &tmp)
        .with_context(|| format!("copying {} to {}", built.display(), tmp.display()))?;
    std::fs::rename(&tmp, &private).with_context(|| format!("writing {}", private.display()))?;
    Ok(private)
}

/// Builds the `advsoup` binary (release, or the dev profile with `dev`) and returns its path.
pub fn build_advsoup_binary(dev: bool) -> Result<PathBuf> {
    let mut c = crate::cargo();
    c.args(["build", "--quiet", "-p", "advsoup-cli"]);
    if !dev {
        c.arg("--release");
    }
    crate::status(c)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        crate::workspace_root().join(target)
    };
    let binary = target
        .join(if dev { "debug" } else { "release" })
        .join("advsoup");
    if !binary.exists() {
        bail!("built advsoup but found no binary at {}", binary.display());
    }
    Ok(binary)
}

pub(super) fn s(v: impl ToString) -> String {
    v.to_string()
}

pub(super) fn exists(p: &Path) -> bool {
    p.is_file()
}

/// Writes `bytes` to `path` with the project's one atomic write ([`advsoup_io::write_atomic`]).
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(advsoup_io::write_atomic(path, bytes)?)
}

/// The run directories of one seed: `<out>/runs/seed-<seed>`.
pub(super) fn seed_dir(runs: &Path, seed: u64) -> PathBuf {
    runs.join(format!("seed-{seed}"))
}

/// Removes a row's run directory and settings (`--force`).
fn remove_row(runs: &Path, name: &str) -> Result<()> {
    let run_dir = runs.join(name);
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("--force: removing {}", run_dir.display()))?;
    }
    let _ = std::fs::remove_file(runs.join(format!("{name}.settings.json")));
    Ok(())
}

/// Trains, sweeps β, selects β per shift, runs the `standard` ensemble (rows the claims rest
/// on), counts the parameters and writes the run's page (`report.html`) of one row at `config.seed` under `runs` (the seed's
/// directory), skipping each step whose file exists (`force`: the row's run directory and
/// settings are removed first). A finished (row, seed) is never retrained.
pub(super) fn run_row(
    advsoup: &Advsoup,
    config: &SweepConfig,
    base: &Path,
    runs: &Path,
    row: &RowSpec,
    force: bool,
) -> Result<()> {
    let run_dir = runs.join(&row.name);
    if force {
        remove_row(runs, &row.name)?;
    }
    train(advsoup, config, base, runs, row, &[])?;
    let soup_dir = run_dir.join("soup");
    soup_sweep(advsoup, config, row, &run_dir, &soup_dir)?;
    select_per_shift(advsoup, config, row, &run_dir, &soup_dir)?;
    if config.eval.n_standard > 0 && config.eval.standard_rows.contains(&row.name) {
        standard_eval(advsoup, config, &run_dir)?;
    }
    param_counts(advsoup, &run_dir)?;
    run_page(advsoup, &run_dir)
}

/// Step 6, the run's page (`report.html`), rewritten every time: cheap, and it shows every
/// evaluation the directory holds by now.
fn run_page(advsoup: &Advsoup, run_dir: &Path) -> Result<()> {
    advsoup.output(&[s("report"), s("--run"), run_dir.display().to_string()])?;
    Ok(())
}

/// The budget axis's run of `row` (named `budget-<row>`): trained with the budget's
/// overrides after the sweep's; no soups (the claim it serves needs the final table only).
pub(super) fn run_budget_row(
    advsoup: &Advsoup,
    config: &SweepConfig,
    base: &Path,
    runs: &Path,
    row: &RowSpec,
    budget: &[String],
    force: bool,
) -> Result<()> {
    let spec = budget_spec(row);
    if force {
        remove_row(runs, &spec.name)?;
    }
    train(advsoup, config, base, runs, &spec, budget)?;
    run_page(advsoup, &runs.join(&spec.name))
}

/// The budget axis's name for `row`.
pub(super) fn budget_spec(row: &RowSpec) -> RowSpec {
    RowSpec {
        name: format!("budget-{}", row.name),
        ..row.clone()
    }
}

/// The file of the `standard` ensemble on a row's robust mode.
pub(super) fn standard_path(run_dir: &Path) -> PathBuf {
    run_dir.join("eval-standard-robust.json")
}

/// Step 4, the `standard` ensemble on the robust mode (at the run's final ε), resumable by the
/// cli (`<out>.partial/`); skipped when its report exists.
fn standard_eval(advsoup: &Advsoup, config: &SweepConfig, run_dir: &Path) -> Result<()> {
    let out = standard_path(run_dir);
    if exists(&out) {
        println!("standard ensemble: {} (skipped)", out.display());
        return Ok(());
    }
    let fin: advsoup_records::run::FinalReport =
        advsoup_records::read_json(&run_dir.join("final.json"))?;
    advsoup.run(&[
        s("eval"),
        s("--run"),
        run_dir.display().to_string(),
        s("--attack"),
        s("standard"),
        s("--eps"),
        s(fin.eps),
        s("--n"),
        s(config.eval.n_standard),
        s("--mode"),
        s("robust"),
        s("--seed"),
        s(config.seed),
        s("--out"),
        out.display().to_string(),
    ])
}

/// Step 1, train: resumes an interrupted run; skipped when final.json exists. The row's exact
/// settings are kept beside it, so results of other settings are never reused silently.
fn train(
    advsoup: &Advsoup,
    config: &SweepConfig,
    base: &Path,
    runs: &Path,
    row: &RowSpec,
    extra: &[String],
) -> Result<()> {
    let run_dir = runs.join(&row.name);
    let mut a = vec![s("train"), s("--config"), base.display().to_string()];
    for o in config.set.iter().chain(extra) {
        a.extend([s("--set"), o.clone()]);
    }
    a.extend([
        s("--set"),
        format!("name=\"{}\"", row.name),
        s("--set"),
        format!("seed={}", config.seed),
        s("--set"),
        format!("model.adapter={}", row.adapter),
        s("--regime"),
        row.regime.clone(),
        s("--runs-dir"),
        runs.display().to_string(),
    ]);
    let settings = RowSettings {
        train: a.clone(),
        eval: config.eval.clone(),
        soup: config.soup.clone(),
    };
    let settings_path = runs.join(format!("{}.settings.json", row.name));
    if exists(&settings_path) {
        let old: RowSettings = advsoup_records::read_json(&settings_path)?;
        if !old.same_run(&settings, &config.base) {
            bail!(
                "{}: row `{}` was run with other settings (sweep file or --quick \
                 changed); rerun with --force to retrain it or pick another --out",
                settings_path.display(),
                row.name
            );
        }
    } else {
        // The json! value sorts its keys, as the first version of this file did.
        let value = serde_json::to_value(&settings)?;
        write_atomic(
            &settings_path,
            serde_json::to_string_pretty(&value)?.as_bytes(),
        )?;
    }
    if exists(&run_dir.join("final.json")) {
        println!("trained: {} (skipped)", run_dir.display());
    } else {
        a.extend([s("--resume"), s("--fetch"), s("--quiet")]);
        advsoup.run(&a)?;
    }
    Ok(())
}

/// Step 2, soup sweep: clean, PGD-20 and APGD-CE along β (β is moot without an adapter).
fn soup_sweep(
    advsoup: &Advsoup,
    config: &SweepConfig,
    row: &RowSpec,
    run_dir: &Path,
    soup_dir: &Path,
) -> Result<()> {
    let betas = if row.has_adapter() {
        config.soup.betas.clone()
    } else {
        s("0")
    };
    if exists(&soup_dir.join("soup.json")) {
        println!("soup sweep: {} (skipped)", soup_dir.display());
        return Ok(());
    }
    advsoup.run(&[
        s("soup"),
        s("sweep"),
        s("--run"),
        run_dir.display().to_string(),
        s("--betas"),
        betas,
        s("--n-clean"),
        s(config.soup.n_clean),
        s("--n-robust"),
        s(config.eval.n_robust),
        s("--n-shift"),
        s(config.soup.n_shift),
        s("--attacks"),
        s("pgd-20,apgd-ce"),
        s("--apgd-iter"),
        s(config.eval.apgd_iter),
        s("--corruptions"),
        config.soup.corruptions.clone(),
        s("--severity"),
        s(config.soup.severity),
        s("--seed"),
        s(config.seed),
        s("--out"),
        soup_dir.display().to_string(),
    ])
}

/// The file `advsoup soup select` writes for corruption `c` of a row.
pub(super) fn select_path(soup_dir: &Path, config: &SweepConfig, c: &str) -> PathBuf {
    soup_dir.join(format!("select-{c}-{}.json", config.soup.severity))
}

/// Step 3, β per shift, chosen on held-out data.
fn select_per_shift(
    advsoup: &Advsoup,
    config: &SweepConfig,
    row: &RowSpec,
    run_dir: &Path,
    soup_dir: &Path,
) -> Result<()> {
    for c in config.corruption_list() {
        let path = select_path(soup_dir, config, &c);
        if exists(&path) {
            continue;
        }
        advsoup.run(&[
            s("soup"),
            s("select"),
            s("--run"),
            run_dir.display().to_string(),
            s("--shift"),
            format!("{c}:{}", config.soup.severity),
            s("--betas"),
            if row.has_adapter() {
                config.soup.betas.clone()
            } else {
                s("1")
            },
            s("--n-held-out"),
            s(config.soup.n_held_out),
            s("--n-test"),
            s(config.soup.n_test),
            s("--seed"),
            s(config.seed),
            s("--out"),
            path.display().to_string(),
        ])?;
    }
    Ok(())
}

/// Step 5, parameter counts (formula checked against the tensors).
fn param_counts(advsoup: &Advsoup, run_dir: &Path) -> Result<()> {
    let counts = run_dir.join("params.json");
    if !exists(&counts) {
        let text = advsoup.output(&[
            s("info"),
            s("--run"),
            run_dir.display().to_string(),
            s("--json"),
        ])?;
        write_atomic(&counts, text.as_bytes())?;
    }
    Ok(())
}
