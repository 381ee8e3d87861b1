//! `cargo xtask sweep-adapters`: the paper's adapter comparison (Rebuffi et al. 2023, Table 1 at
//! small scale) as one resumable command.
//!
//! Every row trains from the same base config with the same seed, data order and budget
//! (`advsoup train`), then is evaluated by the cli (`advsoup soup sweep` for clean/PGD-20/APGD-CE
//! accuracy along β, `advsoup soup select` per corruption with β chosen on held-out data,
//! `advsoup info --run` for the parameter counts). Each step leaves its own file in the row's run
//! directory; a step whose file exists is skipped, so an interrupted sweep resumes without
//! retraining finished runs. This module only orchestrates and aggregates: every number comes
//! from a file the cli wrote.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `cargo xtask sweep-adapters`.
#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// The sweep file.
    #[arg(long, default_value = "configs/sweep-fmnist.toml")]
    pub config: PathBuf,
    /// Only these rows (comma list of nominal, adversarial, none, cls_token, dual_layer_norm,
    /// bias, prompt, lora). The report covers every row that has results on disk.
    #[arg(long)]
    pub only: Option<String>,
    /// The sweep file's `[quick]` variant: tiny model, small subsets, two epochs (CI size).
    #[arg(long)]
    pub quick: bool,
    /// Retrain and re-evaluate the selected rows even when their results exist.
    #[arg(long)]
    pub force: bool,
    /// Override the sweep file's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Use a debug build of advsoup (dependencies are optimized in dev builds too; this skips
    /// the release build, e.g. in CI where the tests already built the debug one).
    #[arg(long)]
    pub dev: bool,
    /// Output directory (default: reports/sweep-<name>[-quick]-<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A sweep file (`configs/sweep-*.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Names the report directory.
    pub name: String,
    /// The training config every row starts from (relative to the workspace root).
    pub base: PathBuf,
    /// Seed of every run, attack and corruption.
    #[serde(default)]
    pub seed: u64,
    /// `key=value` overrides applied to every row's training config.
    #[serde(default)]
    pub set: Vec<String>,
    /// Prompt tokens of the `prompt` row.
    pub prompt_tokens: usize,
    /// Rank of the `lora` row.
    pub lora_rank: usize,
    /// Robust evaluation.
    pub eval: EvalSpec,
    /// Soup sweep and per-shift selection.
    pub soup: SoupSpec,
    /// The `--quick` variant.
    #[serde(default)]
    pub quick: Option<QuickSpec>,
}

/// Robust evaluation of each row (in the soup sweep, at every β).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Test images attacked (PGD-20 and APGD-CE on the same images).
    pub n_robust: usize,
    /// APGD-CE iterations.
    pub apgd_iter: usize,
}

/// Soup sweep and β selection.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SoupSpec {
    /// Soup weights, `start:end:step` or a comma list.
    pub betas: String,
    /// Test images for the sweep's clean accuracy.
    pub n_clean: usize,
    /// Test images per corruption in the sweep.
    pub n_shift: usize,
    /// Corruptions (comma list of names or `all`).
    pub corruptions: String,
    /// Their severity.
    pub severity: u8,
    /// Held-out images β is chosen on, per corruption.
    pub n_held_out: usize,
    /// Test images the chosen β is reported on, per corruption.
    pub n_test: usize,
}

/// What `--quick` changes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuickSpec {
    /// Extra overrides after the sweep's own.
    #[serde(default)]
    pub set: Vec<String>,
    /// Replaces `eval.n_robust`.
    pub n_robust: Option<usize>,
    /// Replaces `eval.apgd_iter`.
    pub apgd_iter: Option<usize>,
    /// Replaces `soup.betas`.
    pub betas: Option<String>,
    /// Replaces `soup.n_clean`.
    pub n_clean: Option<usize>,
    /// Replaces `soup.n_shift`.
    pub n_shift: Option<usize>,
    /// Replaces `soup.corruptions`.
    pub corruptions: Option<String>,
    /// Replaces `soup.n_held_out`.
    pub n_held_out: Option<usize>,
    /// Replaces `soup.n_test`.
    pub n_test: Option<usize>,
}

impl SweepConfig {
    /// Reads and checks a sweep file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
        config
            .check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            bail!(
                "name: expected letters, digits, '-' or '_', got `{}`",
                self.name
            );
        }
        if self.prompt_tokens == 0 || self.lora_rank == 0 {
            bail!("prompt_tokens and lora_rank: expected positive numbers");
        }
        if !(1..=5).contains(&self.soup.severity) {
            bail!("soup.severity: expected 1..=5, got {}", self.soup.severity);
        }
        for (field, v) in [
            ("eval.n_robust", self.eval.n_robust),
            ("eval.apgd_iter", self.eval.apgd_iter),
            ("soup.n_clean", self.soup.n_clean),
            ("soup.n_held_out", self.soup.n_held_out),
            ("soup.n_test", self.soup.n_test),
        ] {
            if v == 0 {
                bail!("{field}: expected a positive number");
            }
        }
        if self.corruption_list().is_empty() {
            bail!("soup.corruptions: expected at least one corruption (per-shift soups need one)");
        }
        Ok(())
    }

    /// The config with its `[quick]` changes applied.
    pub fn quick(mut self) -> Result<Self> {
        let Some(q) = self.quick.take() else {
            bail!("--quick: the sweep file has no [quick] section");
        };
        self.set.extend(q.set);
        let e = &mut self.eval;
        e.n_robust = q.n_robust.unwrap_or(e.n_robust);
        e.apgd_iter = q.apgd_iter.unwrap_or(e.apgd_iter);
        let s = &mut self.soup;
        s.betas = q.betas.unwrap_or_else(|| s.betas.clone());
        s.n_clean = q.n_clean.unwrap_or(s.n_clean);
        s.n_shift = q.n_shift.unwrap_or(s.n_shift);
        s.corruptions = q.corruptions.unwrap_or_else(|| s.corruptions.clone());
        s.n_held_out = q.n_held_out.unwrap_or(s.n_held_out);
        s.n_test = q.n_test.unwrap_or(s.n_test);
        self.check()?;
        Ok(self)
    }

    fn corruption_list(&self) -> Vec<String> {
        self.soup
            .corruptions
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty() && c != "none")
            .collect()
    }

    /// The 8 rows of the comparison, in report order.
    pub fn rows(&self) -> Vec<RowSpec> {
        let co = |name: &str, adapter: String, label: String| RowSpec {
            name: name.into(),
            regime: "co_training".into(),
            adapter,
            label,
        };
        vec![
            RowSpec {
                name: "nominal".into(),
                regime: "nominal".into(),
                adapter: "\"none\"".into(),
                label: "nominal training".into(),
            },
            RowSpec {
                name: "adversarial".into(),
                regime: "adversarial".into(),
                adapter: "\"none\"".into(),
                label: "adversarial training (Madry)".into(),
            },
            co("none", "\"none\"".into(), "co-training, no adapter".into()),
            co(
                "cls_token",
                "\"cls_token\"".into(),
                "co-training + cls token".into(),
            ),
            co(
                "dual_layer_norm",
                "\"dual_layer_norm\"".into(),
                "co-training + dual LayerNorm".into(),
            ),
            co("bias", "\"bias\"".into(), "co-training + biases".into()),
            co(
                "prompt",
                format!("{{ prompt = {{ tokens = {} }} }}", self.prompt_tokens),
                format!("co-training + prompt ({} tokens)", self.prompt_tokens),
            ),
            co(
                "lora",
                format!("{{ lora = {{ rank = {} }} }}", self.lora_rank),
                format!("co-training + LoRA (rank {})", self.lora_rank),
            ),
        ]
    }
}

/// One row: a regime and an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSpec {
    /// Short name (`--only`, run directory).
    pub name: String,
    /// nominal, adversarial or co_training.
    pub regime: String,
    /// The `model.adapter` value as TOML.
    pub adapter: String,
    /// Human label.
    pub label: String,
}

impl RowSpec {
    /// Whether the two modes differ (only then is a soup more than one model).
    pub fn has_adapter(&self) -> bool {
        self.adapter != "\"none\""
    }
}

/// Parses `--only` against the known rows.
pub fn select_rows(all: Vec<RowSpec>, only: Option<&str>) -> Result<Vec<RowSpec>> {
    let Some(only) = only else { return Ok(all) };
    let names: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if let Some(bad) = names.iter().find(|n| !all.iter().any(|r| r.name == **n)) {
        bail!(
            "--only: unknown row `{bad}`, expected some of {}",
            all.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|r| names.contains(&r.name.as_str()))
        .collect())
}

/// How the cli is called.
struct Advsoup {
    binary: PathBuf,
}

impl Advsoup {
    fn run(&self, args: &[String]) -> Result<()> {
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

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// Runs the sweep and writes the report.
pub fn run(args: SweepArgs) -> Result<()> {
    let root = crate::workspace_root();
    let config_path = if args.config.is_absolute() {
        args.config.clone()
    } else {
        root.join(&args.config)
    };
    let mut config = SweepConfig::load(&config_path)?;
    if args.quick {
        config = config.quick()?;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    let rows = select_rows(config.rows(), args.only.as_deref())?;
    let out = args.out.clone().unwrap_or_else(|| {
        root.join("reports").join(format!(
            "sweep-{}{}-{}",
            config.name,
            if args.quick { "-quick" } else { "" },
            config.seed
        ))
    });
    let runs = out.join("runs");
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let advsoup = Advsoup {
        binary: private_binary(args.dev, &out.join("bin"))?,
    };
    let base = root.join(&config.base);
    let t0 = Instant::now();
    for (i, row) in rows.iter().enumerate() {
        println!(
            "\n== [{}/{}] {} ({}) [{:.0}s]",
            i + 1,
            rows.len(),
            row.name,
            row.label,
            t0.elapsed().as_secs_f64()
        );
        run_row(&advsoup, &config, &base, &runs, row, args.force)?;
    }
    let results = collect(&config, &runs, args.quick)?;
    if results.rows.is_empty() {
        bail!("no row has results under {}", runs.display());
    }
    let fronts: Vec<String> = results
        .rows
        .iter()
        .filter(|r| r.has_adapter)
        .map(|r| format!("{}={}", r.name, r.soup_json.display()))
        .collect();
    if !fronts.is_empty() {
        let mut a = vec![
            s("soup"),
            s("fronts"),
            s("--title"),
            format!(
                "sweep {}{}: soup fronts per adapter (eps {})",
                config.name,
                if args.quick { " (quick)" } else { "" },
                results.eps
            ),
            s("--out"),
            out.join("fronts.svg").display().to_string(),
        ];
        a.extend(fronts);
        advsoup.run(&a)?;
    }
    let json = serde_json::to_string_pretty(&results)?;
    write_atomic(&out.join("results.json"), json.as_bytes())?;
    let report = report_md(&results);
    write_atomic(&out.join("REPORT.md"), report.as_bytes())?;
    println!("\n{}", table(&results));
    println!(
        "sweep done in {:.0}s: {} (REPORT.md, results.json, fronts.svg)",
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn exists(p: &Path) -> bool {
    p.is_file()
}

fn run_row(
    advsoup: &Advsoup,
    config: &SweepConfig,
    base: &Path,
    runs: &Path,
    row: &RowSpec,
    force: bool,
) -> Result<()> {
    let run_dir = runs.join(&row.name);
    if force && run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("--force: removing {}", run_dir.display()))?;
    }
    if force {
        let _ = std::fs::remove_file(runs.join(format!("{}.settings.json", row.name)));
    }
    // 1. train (resumes an interrupted run; skipped when final.json exists). The row's exact
    // settings are kept beside it, so results of other settings are never reused silently.
    let mut a = vec![s("train"), s("--config"), base.display().to_string()];
    for o in &config.set {
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
    let settings = serde_json::json!({
        "train": a,
        "eval": config.eval,
        "soup": config.soup,
    });
    let settings_path = runs.join(format!("{}.settings.json", row.name));
    if let Ok(old) = read_json(&settings_path) {
        if old != settings {
            bail!(
                "{}: row `{}` was run with other settings (sweep file, --quick or --seed \
                 changed); rerun with --force to retrain it or pick another --out",
                settings_path.display(),
                row.name
            );
        }
    } else {
        write_atomic(
            &settings_path,
            serde_json::to_string_pretty(&settings)?.as_bytes(),
        )?;
    }
    if exists(&run_dir.join("final.json")) {
        println!("trained: {} (skipped)", run_dir.display());
    } else {
        a.extend([s("--resume"), s("--fetch"), s("--quiet")]);
        advsoup.run(&a)?;
    }
    // 2. soup sweep: clean, PGD-20 and APGD-CE along β (β is moot without an adapter)
    let soup_dir = run_dir.join("soup");
    let betas = if row.has_adapter() {
        config.soup.betas.clone()
    } else {
        s("0")
    };
    if exists(&soup_dir.join("soup.json")) {
        println!("soup sweep: {} (skipped)", soup_dir.display());
    } else {
        advsoup.run(&[
            s("soup"),
            s("sweep"),
            s("--run"),
            run_dir.display().to_string(),
            s("--betas"),
            betas.clone(),
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
        ])?;
    }
    // 3. β per shift, chosen on held-out data
    for c in config.corruption_list() {
        let path = soup_dir.join(format!("select-{c}-{}.json", config.soup.severity));
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
    // 4. parameter counts (formula checked against the tensors)
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

/// Per-shift soup result of one row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShiftResult {
    /// `corruption:severity`.
    pub shift: String,
    /// β chosen on the corrupted held-out split.
    pub chosen_beta: f64,
    /// Corrupted-test accuracy at that β.
    pub soup_acc: f64,
    /// ... in the clean mode (β = 1).
    pub clean_mode_acc: f64,
    /// ... in the robust mode (β = 0).
    pub robust_mode_acc: f64,
    /// Test images.
    pub n_test: usize,
}

/// One row of the report, every number read from the cli's files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RowResult {
    /// Row name.
    pub name: String,
    /// Human label.
    pub label: String,
    /// Regime.
    pub regime: String,
    /// Adapter (cli spelling).
    pub adapter: String,
    /// Whether the two modes differ.
    pub has_adapter: bool,
    /// Domain-specific parameters per domain.
    pub params_per_domain: usize,
    /// Total parameters.
    pub total_params: usize,
    /// Clean accuracy of the clean mode on the test split.
    pub clean_acc: f64,
    /// Its test images.
    pub n_clean: usize,
    /// Robust accuracy of the robust mode under the run's final attack (PGD-20).
    pub robust_acc_pgd20: f64,
    /// Its attacked test images.
    pub n_robust_pgd20: usize,
    /// The final attack's name as the run recorded it.
    pub final_attack: String,
    /// Robust accuracy of the robust mode under APGD-CE.
    pub robust_acc_apgd_ce: f64,
    /// Its attacked test images.
    pub n_robust_apgd: usize,
    /// Mean over shifts of the clean mode's corrupted-test accuracy.
    pub mean_corruption_acc: f64,
    /// Mean over shifts of the soup's corrupted-test accuracy at the β chosen on held-out.
    pub mean_soup_acc: f64,
    /// Shifts where the chosen soup beats both modes.
    pub soup_beats_both: usize,
    /// Per shift.
    pub shifts: Vec<ShiftResult>,
    /// Training wall time (s).
    pub train_seconds: f64,
    /// Soup sweep wall time (s).
    pub sweep_seconds: f64,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Its soup sweep.
    pub soup_json: PathBuf,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepResults {
    /// The sweep file's settings as run.
    pub config: SweepConfig,
    /// `--quick`.
    pub quick: bool,
    /// ε (ℓ∞) of the evaluations.
    pub eps: f64,
    /// Rows with results.
    pub rows: Vec<RowResult>,
    /// The paper's claims checked against these numbers.
    pub claims: Vec<Claim>,
}

/// A claim of the paper and whether these numbers support it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claim {
    /// The claim.
    pub claim: String,
    /// `holds`, `does not hold`, `inconclusive (too few test images)` or `not measured`.
    pub verdict: String,
    /// The numbers behind the verdict.
    pub evidence: String,
}

fn read_json(path: &Path) -> Result<Value> {
    crate::read_json(path)
}

fn num(v: &Value, key: &str, path: &Path) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("{}: missing number `{key}`", path.display()))
}

fn collect(config: &SweepConfig, runs: &Path, quick: bool) -> Result<SweepResults> {
    let mut rows = Vec::new();
    let mut eps = f64::NAN;
    for spec in config.rows() {
        let dir = runs.join(&spec.name);
        let final_path = dir.join("final.json");
        let soup_path = dir.join("soup/soup.json");
        let params_path = dir.join("params.json");
        if !(exists(&final_path) && exists(&soup_path) && exists(&params_path)) {
            continue;
        }
        let fin = read_json(&final_path)?;
        let soup = read_json(&soup_path)?;
        let params = read_json(&params_path)?;
        eps = num(&soup, "eps", &soup_path)?;
        let robust_row = soup["rows"]
            .as_array()
            .and_then(|r| {
                r.iter()
                    .find(|r| r["beta"].as_f64() == Some(0.0))
                    .or_else(|| r.first())
            })
            .with_context(|| format!("{}: no β = 0 row", soup_path.display()))?;
        let apgd = robust_row["attacks"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["name"] == "apgd-ce"))
            .and_then(|a| a["acc"].as_f64())
            .with_context(|| format!("{}: no apgd-ce result at β = 0", soup_path.display()))?;
        let mut shifts = Vec::new();
        for c in config.corruption_list() {
            let p = dir.join(format!("soup/select-{c}-{}.json", config.soup.severity));
            if !exists(&p) {
                continue;
            }
            let v = read_json(&p)?;
            shifts.push(ShiftResult {
                shift: v["shift"].as_str().unwrap_or(&c).to_string(),
                chosen_beta: num(&v, "chosen_beta", &p)?,
                soup_acc: num(&v, "test_acc_chosen", &p)?,
                clean_mode_acc: num(&v, "test_acc_clean_mode", &p)?,
                robust_mode_acc: num(&v, "test_acc_robust_mode", &p)?,
                n_test: v["n_test"].as_u64().unwrap_or(0) as usize,
            });
        }
        let mean = |f: fn(&ShiftResult) -> f64| {
            if shifts.is_empty() {
                f64::NAN
            } else {
                shifts.iter().map(f).sum::<f64>() / shifts.len() as f64
            }
        };
        let n_u = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0) as usize;
        rows.push(RowResult {
            name: spec.name.clone(),
            label: spec.label.clone(),
            regime: spec.regime.clone(),
            adapter: params["adapter"].as_str().unwrap_or("?").to_string(),
            has_adapter: spec.has_adapter(),
            params_per_domain: n_u(&params, "params_per_domain"),
            total_params: n_u(&params, "total_params"),
            clean_acc: num(&fin, "clean_mode_clean_acc", &final_path)?,
            n_clean: n_u(&fin, "n_clean"),
            robust_acc_pgd20: num(&fin, "robust_mode_robust_acc", &final_path)?,
            n_robust_pgd20: n_u(&fin, "n_robust"),
            final_attack: fin["attack"].as_str().unwrap_or("?").to_string(),
            robust_acc_apgd_ce: apgd,
            n_robust_apgd: n_u(&soup, "n_robust"),
            mean_corruption_acc: mean(|s| s.clean_mode_acc),
            mean_soup_acc: mean(|s| s.soup_acc),
            soup_beats_both: shifts
                .iter()
                .filter(|s| s.soup_acc > s.clean_mode_acc && s.soup_acc > s.robust_mode_acc)
                .count(),
            shifts,
            train_seconds: num(&fin, "train_seconds", &final_path)?,
            sweep_seconds: soup["wall_seconds"].as_f64().unwrap_or(f64::NAN),
            run_dir: dir.clone(),
            soup_json: soup_path,
        });
    }
    let claims = claims(&rows);
    Ok(SweepResults {
        config: config.clone(),
        quick,
        eps,
        rows,
        claims,
    })
}

/// Two binomial standard errors of the difference of two accuracies, in [0, 1] units: the
/// margin within which two numbers are called "the same" here.
fn margin(p1: f64, n1: usize, p2: f64, n2: usize) -> f64 {
    let var = |p: f64, n: usize| {
        if n == 0 {
            0.0
        } else {
            p * (1.0 - p) / n as f64
        }
    };
    2.0 * (var(p1, n1) + var(p2, n2)).sqrt()
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}", 100.0 * v)
    } else {
        "-".into()
    }
}

/// Checks the paper's claims on the rows (each claim needs its rows; else `not measured`).
pub fn claims(rows: &[RowResult]) -> Vec<Claim> {
    let get = |n: &str| rows.iter().find(|r| r.name == n);
    let mut out = Vec::new();
    let verdict = |ok: bool| if ok { "holds" } else { "does not hold" }.to_string();
    // "at least as good, up to noise": better or equal holds; behind by less than the margin
    // holds only when the margin itself is moderate (≤ 7 points), else the sample is too small
    let close = |ours: f64, theirs: f64, margin: f64| -> Option<bool> {
        if ours >= theirs {
            Some(true)
        } else if theirs - ours > margin {
            Some(false)
        } else if margin <= 0.07 {
            Some(true)
        } else {
            None
        }
    };
    let graded = |r: Option<bool>| match r {
        Some(ok) => verdict(ok),
        None => "inconclusive (too few test images)".to_string(),
    };
    let both = |a: Option<bool>, b: Option<bool>| match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    };
    let missing = |claim: &str, need: &str| Claim {
        claim: claim.into(),
        verdict: "not measured".into(),
        evidence: format!("needs the rows {need}"),
    };

    let c1 = "Co-training with the cls-token adapter keeps nominal training's clean accuracy in \
              its clean mode (within 2 standard errors or better)";
    match (get("cls_token"), get("nominal")) {
        (Some(c), Some(n)) => {
            let m = margin(c.clean_acc, c.n_clean, n.clean_acc, n.n_clean);
            out.push(Claim {
                claim: c1.into(),
                verdict: graded(close(c.clean_acc, n.clean_acc, m)),
                evidence: format!(
                    "cls_token clean mode {}% vs nominal {}% (margin {} pt, n={})",
                    pct(c.clean_acc),
                    pct(n.clean_acc),
                    pct(m),
                    c.n_clean
                ),
            });
        }
        _ => out.push(missing(c1, "cls_token, nominal")),
    }

    let c2 = "... and adversarial training's robust accuracy in its robust mode (PGD-20 and \
              APGD-CE, within 2 standard errors or better)";
    match (get("cls_token"), get("adversarial")) {
        (Some(c), Some(a)) => {
            let m1 = margin(
                c.robust_acc_pgd20,
                c.n_robust_pgd20,
                a.robust_acc_pgd20,
                a.n_robust_pgd20,
            );
            let m2 = margin(
                c.robust_acc_apgd_ce,
                c.n_robust_apgd,
                a.robust_acc_apgd_ce,
                a.n_robust_apgd,
            );
            out.push(Claim {
                claim: c2.into(),
                verdict: graded(both(
                    close(c.robust_acc_pgd20, a.robust_acc_pgd20, m1),
                    close(c.robust_acc_apgd_ce, a.robust_acc_apgd_ce, m2),
                )),
                evidence: format!(
                    "PGD-20: cls_token robust mode {}% vs adversarial {}% (margin {} pt); \
                     APGD-CE: {}% vs {}% (margin {} pt)",
                    pct(c.robust_acc_pgd20),
                    pct(a.robust_acc_pgd20),
                    pct(m1),
                    pct(c.robust_acc_apgd_ce),
                    pct(a.robust_acc_apgd_ce),
                    pct(m2)
                ),
            });
        }
        _ => out.push(missing(c2, "cls_token, adversarial")),
    }

    let c3 = "Without domain-specific parameters co-training is a compromise: lower clean \
              accuracy than the cls-token model's clean mode and lower robust accuracy than its \
              robust mode";
    match (get("none"), get("cls_token")) {
        (Some(z), Some(c)) => out.push(Claim {
            claim: c3.into(),
            verdict: verdict(z.clean_acc < c.clean_acc && z.robust_acc_pgd20 < c.robust_acc_pgd20),
            evidence: format!(
                "no adapter: clean {}%, PGD-20 {}%; cls_token: clean {}%, PGD-20 {}%",
                pct(z.clean_acc),
                pct(z.robust_acc_pgd20),
                pct(c.clean_acc),
                pct(c.robust_acc_pgd20)
            ),
        }),
        _ => out.push(missing(c3, "none, cls_token")),
    }

    let c4 = "A few domain-specific parameters suffice: the cls token (the fewest) is within 2 \
              standard errors of the best adapter on clean and on PGD-20 accuracy";
    let adapters: Vec<&RowResult> = rows
        .iter()
        .filter(|r| r.has_adapter && r.regime == "co_training")
        .collect();
    match get("cls_token") {
        Some(c) if adapters.len() >= 2 => {
            let best_clean = adapters
                .iter()
                .max_by(|a, b| a.clean_acc.total_cmp(&b.clean_acc))
                .copied()
                .unwrap_or(c);
            let best_rob = adapters
                .iter()
                .max_by(|a, b| a.robust_acc_pgd20.total_cmp(&b.robust_acc_pgd20))
                .copied()
                .unwrap_or(c);
            let m1 = margin(
                c.clean_acc,
                c.n_clean,
                best_clean.clean_acc,
                best_clean.n_clean,
            );
            let m2 = margin(
                c.robust_acc_pgd20,
                c.n_robust_pgd20,
                best_rob.robust_acc_pgd20,
                best_rob.n_robust_pgd20,
            );
            out.push(Claim {
                claim: c4.into(),
                verdict: graded(both(
                    close(c.clean_acc, best_clean.clean_acc, m1),
                    close(c.robust_acc_pgd20, best_rob.robust_acc_pgd20, m2),
                )),
                evidence: format!(
                    "cls_token ({} params/domain): clean {}%, PGD-20 {}%; best clean {} ({} \
                     params) {}%; best PGD-20 {} ({} params) {}%",
                    c.params_per_domain,
                    pct(c.clean_acc),
                    pct(c.robust_acc_pgd20),
                    best_clean.name,
                    best_clean.params_per_domain,
                    pct(best_clean.clean_acc),
                    best_rob.name,
                    best_rob.params_per_domain,
                    pct(best_rob.robust_acc_pgd20)
                ),
            });
        }
        _ => out.push(missing(c4, "cls_token and at least one other adapter")),
    }

    let c5 = "Adversarial soups adapt to distribution shifts: with β chosen per shift on \
              held-out data, the cls-token soup beats both of its modes on average over the \
              shifts";
    match get("cls_token") {
        Some(c) if !c.shifts.is_empty() => {
            let robust_mean =
                c.shifts.iter().map(|s| s.robust_mode_acc).sum::<f64>() / c.shifts.len() as f64;
            out.push(Claim {
                claim: c5.into(),
                verdict: verdict(
                    c.mean_soup_acc > c.mean_corruption_acc && c.mean_soup_acc > robust_mean,
                ),
                evidence: format!(
                    "mean over {} shifts: soup {}%, clean mode {}%, robust mode {}%; the soup \
                     beats both modes on {} of {} shifts",
                    c.shifts.len(),
                    pct(c.mean_soup_acc),
                    pct(c.mean_corruption_acc),
                    pct(robust_mean),
                    c.soup_beats_both,
                    c.shifts.len()
                ),
            });
        }
        _ => out.push(missing(c5, "cls_token with per-shift selections")),
    }
    out
}

/// The one table of the report.
pub fn table(r: &SweepResults) -> String {
    let first = r.rows.first();
    let mut t = format!(
        "| regime / adapter | domain-specific params | clean acc % (n={}) | robust acc PGD-20 % \
         (n={}) | robust acc APGD-CE % (n={}) | mean corruption acc % | best per-shift soup acc \
         % | train time |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        first.map_or(0, |f| f.n_clean),
        first.map_or(0, |f| f.n_robust_pgd20),
        first.map_or(0, |f| f.n_robust_apgd),
    );
    for row in &r.rows {
        let soup = if row.has_adapter {
            format!(
                "{} ({}/{} beat both)",
                pct(row.mean_soup_acc),
                row.soup_beats_both,
                row.shifts.len()
            )
        } else {
            format!("{} (one model)", pct(row.mean_soup_acc))
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} s |",
            row.label,
            row.params_per_domain,
            pct(row.clean_acc),
            pct(row.robust_acc_pgd20),
            pct(row.robust_acc_apgd_ce),
            pct(row.mean_corruption_acc),
            soup,
            row.train_seconds
        );
    }
    t
}

fn report_md(r: &SweepResults) -> String {
    let c = &r.config;
    let mut m = format!(
        "# Adapter sweep `{}`{} (seed {})\n\nWritten by `cargo xtask sweep-adapters{}`; every \
         number below is read from the files the `advsoup` commands wrote under `runs/` \
         (results.json has them all).\n\n",
        c.name,
        if r.quick { " — quick" } else { "" },
        c.seed,
        if r.quick { " --quick" } else { "" },
    );
    let _ = writeln!(
        m,
        "- Every row trains `{}` with the same seed, data order and budget; overrides: `{}`.",
        c.base.display(),
        c.set.join("`, `")
    );
    let _ = writeln!(
        m,
        "- Clean accuracy: the clean mode (β = 1) on the test split. Robust accuracy: the robust \
         mode (β = 0), ℓ∞ ε = {}: PGD-20 from the run's final evaluation, APGD-CE ({} \
         iterations) from the soup sweep, on the first test images.",
        r.eps, c.eval.apgd_iter
    );
    let _ = writeln!(
        m,
        "- Corruptions (severity {}): {}. Mean corruption accuracy: the clean mode on the first \
         {} corrupted test images. Best per-shift soup: β ∈ {{{}}} chosen per corruption on {} \
         corrupted held-out (training) images, reported on the same test images; without an \
         adapter both modes are one model.",
        c.soup.severity,
        c.corruption_list().join(", "),
        c.soup.n_test,
        c.soup.betas,
        c.soup.n_held_out
    );
    let _ = writeln!(
        m,
        "- Domain-specific parameters per domain: the adapter's formula, checked against the \
         tensors of each saved model (`advsoup info --run`).\n"
    );
    m.push_str(&table(r));
    m.push_str("\n![soup fronts](fronts.svg)\n\n## The paper's claims at this scale\n\n");
    for cl in &r.claims {
        let _ = writeln!(m, "- **{}** — {}. {}", cl.verdict, cl.claim, cl.evidence);
    }
    m.push_str("\n## Per-shift soups\n\n| row | shift | chosen β | soup % | clean mode % | robust mode % |\n|---|---|---:|---:|---:|---:|\n");
    for row in r.rows.iter().filter(|r| r.has_adapter) {
        for s in &row.shifts {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} |",
                row.name,
                s.shift,
                s.chosen_beta,
                pct(s.soup_acc),
                pct(s.clean_mode_acc),
                pct(s.robust_mode_acc)
            );
        }
    }
    let _ = writeln!(
        m,
        "\nRegenerate: `cargo xtask sweep-adapters --config <this sweep file>{} --seed {}` \
         (finished rows are skipped; `--force` retrains).",
        if r.quick { " --quick" } else { "" },
        c.seed
    );
    m
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SweepConfig {
        let path = crate::workspace_root().join("configs/sweep-fmnist.toml");
        SweepConfig::load(&path).expect("the shipped sweep file loads")
    }

    #[test]
    fn shipped_sweep_file_has_eight_rows_and_a_quick_variant() {
        let c = config();
        let rows = c.rows();
        assert_eq!(rows.len(), 8);
        let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "nominal",
                "adversarial",
                "none",
                "cls_token",
                "dual_layer_norm",
                "bias",
                "prompt",
                "lora"
            ]
        );
        assert_eq!(rows.iter().filter(|r| r.has_adapter()).count(), 5);
        assert!(rows[6].adapter.contains("tokens = 4"), "{:?}", rows[6]);
        let q = c.clone().quick().expect("quick");
        assert!(q.set.len() > c.set.len());
        assert!(q.eval.n_robust <= c.eval.n_robust);
    }

    #[test]
    fn only_selects_known_rows_and_names_the_unknown_one() {
        let rows = config().rows();
        let picked = select_rows(rows.clone(), Some("lora, nominal")).expect("known");
        assert_eq!(
            picked.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["nominal", "lora"]
        );
        let e = select_rows(rows, Some("cls"))
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("`cls`") && e.contains("cls_token"), "{e}");
    }

    #[test]
    fn bad_sweep_files_name_the_field() {
        let dir = std::env::temp_dir().join(format!("xtask-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good =
            std::fs::read_to_string(crate::workspace_root().join("configs/sweep-fmnist.toml"))
                .expect("read");
        for (edit, want) in [
            (
                good.replace("severity = 3", "severity = 9"),
                "soup.severity",
            ),
            (good.replace("lora_rank = 4", "lora_rank = 0"), "lora_rank"),
            (format!("{good}\nbogus = 1\n"), "bogus"),
        ] {
            let p = dir.join("s.toml");
            std::fs::write(&p, edit).expect("write");
            let e = format!("{:#}", SweepConfig::load(&p).expect_err("invalid"));
            assert!(e.contains("s.toml") && e.contains(want), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn row(name: &str, clean: f64, robust: f64, apgd: f64, params: usize) -> RowResult {
        RowResult {
            name: name.into(),
            label: name.into(),
            regime: if ["nominal", "adversarial"].contains(&name) {
                name.into()
            } else {
                "co_training".into()
            },
            adapter: name.into(),
            has_adapter: !["nominal", "adversarial", "none"].contains(&name),
            params_per_domain: params,
            total_params: 1000,
            clean_acc: clean,
            n_clean: 10_000,
            robust_acc_pgd20: robust,
            n_robust_pgd20: 1000,
            final_attack: "pgd-20".into(),
            robust_acc_apgd_ce: apgd,
            n_robust_apgd: 500,
            mean_corruption_acc: 0.6,
            mean_soup_acc: 0.65,
            soup_beats_both: 1,
            shifts: vec![ShiftResult {
                shift: "contrast:3".into(),
                chosen_beta: 0.5,
                soup_acc: 0.65,
                clean_mode_acc: 0.6,
                robust_mode_acc: 0.5,
                n_test: 1000,
            }],
            train_seconds: 10.0,
            sweep_seconds: 1.0,
            run_dir: PathBuf::from("r"),
            soup_json: PathBuf::from("r/soup/soup.json"),
        }
    }

    #[test]
    fn claims_follow_the_numbers() {
        let rows = vec![
            row("nominal", 0.88, 0.01, 0.0, 0),
            row("adversarial", 0.76, 0.62, 0.60, 0),
            row("none", 0.80, 0.55, 0.53, 0),
            row("cls_token", 0.875, 0.61, 0.60, 64),
            row("bias", 0.86, 0.60, 0.58, 1802),
        ];
        let c = claims(&rows);
        assert_eq!(c.len(), 5);
        assert!(c.iter().all(|c| c.verdict == "holds"), "{c:#?}");
        // the robust mode far below adversarial training: claim 2 fails
        let mut worse = rows.clone();
        worse[3].robust_acc_pgd20 = 0.50;
        let c = claims(&worse);
        assert_eq!(c[1].verdict, "does not hold", "{:?}", c[1]);
        assert_eq!(c[2].verdict, "does not hold", "no-adapter beats it now");
        // behind by less than a wide margin (few attacked images): inconclusive, not "holds"
        let mut few = rows.clone();
        for r in &mut few {
            r.n_robust_pgd20 = 100;
            r.n_robust_apgd = 100;
        }
        few[3].robust_acc_pgd20 = 0.57;
        let c = claims(&few);
        assert!(c[1].verdict.starts_with("inconclusive"), "{:?}", c[1]);
        // a claim whose rows are missing is not measured, never guessed
        let c = claims(&rows[..2]);
        assert!(c.iter().all(|c| c.verdict == "not measured"), "{c:#?}");
    }

    #[test]
    fn table_has_one_line_per_row_with_counts() {
        let r = SweepResults {
            config: config(),
            quick: false,
            eps: 0.1,
            rows: vec![
                row("nominal", 0.88, 0.01, 0.0, 0),
                row("cls_token", 0.875, 0.61, 0.60, 64),
            ],
            claims: vec![],
        };
        let t = table(&r);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(
            t.contains(
                "| cls_token | 64 | 87.50 | 61.00 | 60.00 | 60.00 | 65.00 (1/1 beat both) | 10 s |"
            ),
            "{t}"
        );
        assert!(t.contains("(n=10000)") && t.contains("(n=500)"), "{t}");
        assert!(report_md(&r).contains("![soup fronts](fronts.svg)"));
    }
}
