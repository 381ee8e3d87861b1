//! `cargo xtask <task>`: developer workflows. clap + std only; it never links burn and shells
//! out to `cargo run -p advsoup-cli` for anything numeric.

mod soak;
mod sweep_adapters;

use std::path::{Path, PathBuf};
use std::process::Command;

use advsoup_records::bench::{BenchReport, PresetReport};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Xtask {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Train the default (or given) config, fetching its data if missing; resumes an
    /// interrupted run of the same name.
    Train {
        /// The experiment file.
        #[arg(long, default_value = "configs/fmnist-cls.toml")]
        config: PathBuf,
        /// Extra arguments for `advsoup train` (e.g. --set optim.epochs=1, --device cuda).
        #[arg(last = true)]
        rest: Vec<String>,
    },
    /// Check the crate graph: only the dependency edges of ARCHITECTURE.md are allowed.
    Tidy,
    /// Run the test suite the way CI does.
    Test,
    /// Benchmark advsoup (release build) and, when `python3 -c "import torch, timm"` works, the
    /// PyTorch reference (crates/bench/reference/torch_bench.py) with the same settings and
    /// threads; prints one side-by-side table with the ratio advsoup/torch. JSON under
    /// target/bench/.
    Bench(BenchArgs),
    /// The paper's adapter comparison: trains nominal, adversarial and co-training with every
    /// adapter under one budget, evaluates each (clean, PGD-20, APGD-CE, corruptions, soups) and
    /// writes reports/sweep-<name>/{REPORT.md,report.html,results.json,fronts.svg}, once per
    /// seed (`--seeds`, default three), claims paired by seed. Resumable per (row, seed).
    SweepAdapters(sweep_adapters::SweepArgs),
    /// Crash safety: SIGKILLs and SIGTERMs a small training run (and SIGKILLs a soup sweep and
    /// an evaluation) at random moments, resumes each time, starts two writers of one run at
    /// once, and requires results identical to uninterrupted runs.
    Soak(soak::SoakArgs),
}

/// `cargo xtask bench`.
#[derive(clap::Args)]
struct BenchArgs {
    /// CI size: a test-sized model, 1 iteration.
    #[arg(long)]
    quick: bool,
    /// tiny32, vitb16, fmnist or all; `data` measures the batcher instead (images/s of the
    /// Fashion-MNIST loader with each augmentation, cached data).
    #[arg(long, default_value = "tiny32")]
    preset: String,
    /// Batch size (default: per preset).
    #[arg(long)]
    batch: Option<usize>,
    /// Measured calls per step.
    #[arg(long)]
    iters: Option<usize>,
    /// Untimed calls before measuring.
    #[arg(long)]
    warmup: Option<usize>,
    /// PGD steps K of the co-training step.
    #[arg(long)]
    steps: Option<usize>,
    /// CPU threads for both (RAYON_NUM_THREADS for advsoup, torch.set_num_threads); default:
    /// all available.
    #[arg(long)]
    threads: Option<usize>,
    /// cpu or cuda (advsoup then needs `--features cuda`; pass it with --cargo-features).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Cargo features for the advsoup build (e.g. cuda).
    #[arg(long)]
    cargo_features: Option<String>,
    /// Skip the PGD peak-memory children.
    #[arg(long)]
    no_memory: bool,
    /// Do not run the PyTorch reference.
    #[arg(long)]
    no_torch: bool,
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn status(mut c: Command) -> Result<()> {
    let shown = format!("{c:?}");
    let s = c.status().with_context(|| format!("running {shown}"))?;
    if !s.success() {
        bail!("{shown} failed ({s})");
    }
    Ok(())
}

/// Allowed workspace-internal dependency edges (normal dependencies; dev-dependencies are free).
// The crate graph (ARCHITECTURE.md): arrows point down only.
//   xtask -> records, io, report        (none links burn)
//   report -> records                   (HTML pages and SVG plots from records)
//   cli -> bench, soup, train, eval, ...  (wiring)
//   bench -> train                      (speed harness over the regimes' steps)
//   soup, train -> eval                 (one evaluation job, report cards, resumable results)
//   eval -> adapters, attacks, data     adapters -> vit
//   io, records: leaves every crate may use
const IO: &str = "advsoup-io";
const RECORDS: &str = "advsoup-records";
const ALLOWED: &[(&str, &[&str])] = &[
    ("advsoup-io", &[]),
    ("advsoup-records", &[]),
    ("advsoup-report", &[RECORDS]),
    ("advsoup-vit", &[IO]),
    ("advsoup-attacks", &[IO]),
    ("advsoup-data", &[IO]),
    ("advsoup-adapters", &["advsoup-vit", IO]),
    (
        "advsoup-eval",
        &[
            "advsoup-vit",
            "advsoup-adapters",
            "advsoup-attacks",
            "advsoup-data",
            IO,
            RECORDS,
        ],
    ),
    (
        "advsoup-soup",
        &[
            "advsoup-vit",
            "advsoup-adapters",
            "advsoup-attacks",
            "advsoup-data",
            "advsoup-eval",
            IO,
            RECORDS,
        ],
    ),
    (
        "advsoup-train",
        &[
            "advsoup-vit",
            "advsoup-adapters",
            "advsoup-attacks",
            "advsoup-data",
            "advsoup-eval",
            IO,
            RECORDS,
        ],
    ),
    (
        "advsoup-bench",
        &[
            "advsoup-vit",
            "advsoup-adapters",
            "advsoup-attacks",
            "advsoup-data",
            "advsoup-eval",
            "advsoup-train",
            IO,
            RECORDS,
        ],
    ),
    (
        "advsoup-cli",
        &[
            "advsoup-vit",
            "advsoup-adapters",
            "advsoup-attacks",
            "advsoup-data",
            "advsoup-eval",
            "advsoup-soup",
            "advsoup-bench",
            "advsoup-train",
            "advsoup-report",
            IO,
            RECORDS,
        ],
    ),
    (
        "advsoup-e2e",
        &["advsoup-cli", "advsoup-train", "advsoup-data"],
    ),
    ("xtask", &[RECORDS, IO, "advsoup-report"]),
];

fn tidy() -> Result<()> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let packages = meta["packages"].as_array().context("metadata: packages")?;
    let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut problems = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default();
        let Some((_, allowed)) = ALLOWED.iter().find(|(n, _)| *n == name) else {
            problems.push(format!("{name}: not listed in xtask's allowed graph"));
            continue;
        };
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let dep = d["name"].as_str().unwrap_or_default();
            let normal = d["kind"].is_null();
            if normal && names.contains(&dep) && !allowed.contains(&dep) {
                problems.push(format!(
                    "{name} -> {dep}: edge not allowed (see ARCHITECTURE.md)"
                ));
            }
            if name == "xtask" && dep.starts_with("burn") {
                problems.push("xtask must not link burn".into());
            }
        }
    }
    problems.extend(heavy_dependencies()?);
    if problems.is_empty() {
        println!(
            "tidy: {} packages, crate graph ok; {} library crates free of {}",
            packages.len(),
            LEAN.len(),
            HEAVY.join(", ")
        );
        Ok(())
    } else {
        bail!("tidy:\n{}", problems.join("\n"))
    }
}

/// Library crates a user imports one by one: their normal dependencies must not pull the
/// training UI and metrics stack (burn-train's defaults), which no library uses and one of
/// which (systemstat 0.2.8) no longer builds with a fresh lockfile.
const LEAN: &[&str] = &[
    "advsoup-io",
    "advsoup-records",
    "advsoup-report",
    "advsoup-vit",
    "advsoup-adapters",
    "advsoup-attacks",
    "advsoup-data",
    "advsoup-eval",
    "advsoup-soup",
];
const HEAVY: &[&str] = &["burn-train", "ratatui", "sysinfo", "systemstat", "burn-rl"];

/// `crate -> package` lines for every [`HEAVY`] package in a [`LEAN`] crate's normal
/// dependency tree (`cargo tree -e normal`).
fn heavy_dependencies() -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for krate in LEAN {
        let out = cargo()
            .args(["tree", "-e", "normal", "--prefix", "none", "-p", krate])
            .output()
            .with_context(|| format!("cargo tree -p {krate}"))?;
        if !out.status.success() {
            bail!(
                "cargo tree -p {krate} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        problems.extend(heavy_in_tree(krate, &String::from_utf8_lossy(&out.stdout)));
    }
    Ok(problems)
}

/// The [`HEAVY`] packages named in a `cargo tree --prefix none` listing.
fn heavy_in_tree(krate: &str, tree: &str) -> Vec<String> {
    let mut found: Vec<String> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| HEAVY.contains(name))
        .map(|name| format!("{krate} -> {name}: a library crate must not depend on it (burn's default features?)"))
        .collect();
    found.sort();
    found.dedup();
    found
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, timm"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Reads the record `T` from a JSON file; the error names the file (and the field).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    Ok(advsoup_records::read_json(path)?)
}

fn bench(args: BenchArgs) -> Result<()> {
    let root = workspace_root();
    if args.preset == "data" {
        let workers = args.threads.unwrap_or(2).to_string();
        let batch = args.batch.unwrap_or(128).to_string();
        let mut c = cargo();
        c.args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "advsoup-data",
            "--example",
            "bench_batcher",
            "--",
            &workers,
            &batch,
        ]);
        return status(c);
    }
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut shared: Vec<String> = vec![
        "--preset".into(),
        args.preset.clone(),
        "--device".into(),
        args.device.clone(),
    ];
    for (flag, v) in [
        ("--batch", args.batch),
        ("--iters", args.iters),
        ("--warmup", args.warmup),
        ("--steps", args.steps),
    ] {
        if let Some(v) = v {
            shared.extend([flag.to_string(), v.to_string()]);
        }
    }
    if args.quick {
        shared.push("--quick".into());
    }
    if args.no_memory {
        shared.push("--no-memory".into());
    }
    let load_before = load_average();

    let ours_path = out_dir.join("advsoup.json");
    let mut c = cargo();
    c.args(["run", "--release", "--quiet", "-p", "advsoup-cli"]);
    if let Some(f) = &args.cargo_features {
        c.args(["--features", f]);
    }
    c.args(["--", "bench"])
        .args(&shared)
        .arg("--json")
        .arg(&ours_path)
        .env("RAYON_NUM_THREADS", threads.to_string());
    status(c)?;
    let ours: BenchReport = read_json(&ours_path)?;

    let torch = if args.no_torch {
        None
    } else if torch_available() {
        let torch_path = out_dir.join("torch.json");
        let mut c = Command::new("python3");
        c.current_dir(&root)
            .arg("crates/bench/reference/torch_bench.py")
            .args(&shared)
            .args(["--threads", &threads.to_string()])
            .arg("--json")
            .arg(&torch_path);
        status(c)?;
        Some(read_json::<BenchReport>(&torch_path)?)
    } else {
        println!(
            "PyTorch reference skipped: `python3 -c \"import torch, timm\"` failed (pip install torch timm)"
        );
        None
    };
    println!();
    println!(
        "threads {threads}; load average (1 min) {load_before} before, {} after",
        load_average()
    );
    print!("{}", side_by_side(&ours, torch.as_ref()));
    let busy = [load_before.as_str(), load_average().as_str()]
        .iter()
        .filter_map(|l| l.parse::<f64>().ok())
        .any(|l| l > threads as f64 + 0.5);
    if busy {
        let hint = if threads > 1 {
            "rerun on a quiet machine or compare at --threads 1"
        } else {
            "rerun on a quiet machine"
        };
        println!(
            "\nwarning: the load average exceeded {threads} thread(s): the figures are contended \
             (OpenMP in PyTorch degrades more than rayon when cores are oversubscribed); {hint}"
        );
    }
    Ok(())
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

/// Peak memory and its growth of `preset` at attack length `k`, if measured.
fn peak(report: Option<&BenchReport>, preset: &str, k: usize) -> Option<(f64, f64)> {
    let m = report?.memory(preset, k)?;
    Some((m.peak_rss_mib, m.peak_rss_mib - m.rss_before_mib))
}

/// The side-by-side tables of an advsoup report and an optional torch report.
fn side_by_side(ours: &BenchReport, torch: Option<&BenchReport>) -> String {
    let mut s = format!(
        "advsoup: {} | torch: {}\n\n| preset | step | batch | advsoup img/s | torch img/s | advsoup/torch |\n|---|---|---|---|---|---|\n",
        ours.device,
        torch.map_or("not run", |t| t.device.as_str()),
    );
    let mut memory = String::new();
    for p in &ours.presets {
        let preset = p.preset.as_str();
        for r in &p.records {
            let step = r.name.as_str();
            let label = if step == "co_training_step" {
                format!("{step} (K={})", p.pgd_steps)
            } else {
                step.to_string()
            };
            let a = r.images_per_s;
            let t = torch.and_then(|t| t.rate(preset, step));
            let ratio = match t {
                Some(t) if t > 0.0 => format!("{:.2}x", a / t),
                _ => "-".into(),
            };
            s.push_str(&format!(
                "| {preset} | {label} | {} | {} | {} | {ratio} |\n",
                r.batch,
                cell(Some(a)),
                cell(t)
            ));
        }
        memory.push_str(&memory_rows(ours, torch, p));
    }
    if !memory.is_empty() {
        s.push_str("\nPGD peak memory (process VmHWM, one fresh process per K; growth = peak - RSS before the attack)\n\n| preset | batch | K | advsoup peak MiB | advsoup growth MiB | torch peak MiB | torch growth MiB |\n|---|---|---|---|---|---|---|\n");
        s.push_str(&memory);
    }
    s
}

/// The memory rows of one preset: one per K, then the peak ratio of the longest to the
/// shortest attack.
fn memory_rows(ours: &BenchReport, torch: Option<&BenchReport>, p: &PresetReport) -> String {
    let preset = p.preset.as_str();
    let mut memory = String::new();
    let ks: Vec<usize> = p.memory.iter().map(|m| m.steps).collect();
    for &k in &ks {
        let a = peak(Some(ours), preset, k);
        let t = peak(torch, preset, k);
        memory.push_str(&format!(
            "| {preset} | {} | {k} | {} | {} | {} | {} |\n",
            p.batch,
            cell(a.map(|a| a.0)),
            cell(a.map(|a| a.1)),
            cell(t.map(|t| t.0)),
            cell(t.map(|t| t.1)),
        ));
    }
    if let (Some(&k0), Some(&k1)) = (ks.first(), ks.last())
        && k0 != k1
    {
        let ratio = |r: Option<&BenchReport>| match (peak(r, preset, k0), peak(r, preset, k1)) {
            (Some(a), Some(b)) if a.0 > 0.0 => format!("{:.3}", b.0 / a.0),
            _ => "-".into(),
        };
        memory.push_str(&format!(
            "| {preset} | peak K={k1} / K={k0} | | {} | | {} | |\n",
            ratio(Some(ours)),
            ratio(torch)
        ));
    }
    memory
}

fn main() -> Result<()> {
    match Xtask::parse().task {
        Task::Train { config, rest } => {
            let mut c = cargo();
            c.args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "advsoup-cli",
                "--",
                "train",
                "--config",
            ])
            .arg(&config)
            .args(["--fetch", "--resume"])
            .args(rest);
            status(c)
        }
        Task::Tidy => tidy(),
        Task::Bench(args) => bench(args),
        Task::SweepAdapters(args) => sweep_adapters::run(args),
        Task::Soak(args) => soak::run(args),
        Task::Test => {
            tidy()?;
            let mut c = cargo();
            c.args(["test", "--workspace"]);
            status(c)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn heavy_packages_in_a_tree_are_named_once() {
        let tree = "advsoup-vit v0.1.0\nburn v0.21.0\nburn-train v0.21.0\nratatui v0.29.0\nburn-train v0.21.0 (*)\nburn-trainer v1.0.0\n";
        assert_eq!(
            heavy_in_tree("advsoup-vit", tree),
            vec![
                "advsoup-vit -> burn-train: a library crate must not depend on it (burn's default features?)".to_string(),
                "advsoup-vit -> ratatui: a library crate must not depend on it (burn's default features?)".to_string(),
            ]
        );
        assert!(heavy_in_tree("advsoup-vit", "advsoup-vit v0.1.0\nburn v0.21.0\n").is_empty());
    }

    use super::*;

    fn report(tool: &str, rates: &[(&str, f64)], peaks: &[(u64, f64)]) -> BenchReport {
        let records: Vec<_> = rates
            .iter()
            .map(|(n, r)| serde_json::json!({"name": n, "batch": 4, "iters": 1, "seconds_per_iter": 4.0 / r, "images_per_s": r}))
            .collect();
        let memory: Vec<_> = peaks
            .iter()
            .map(|(k, p)| serde_json::json!({"name": "pgd", "steps": k, "rss_before_mib": 100.0, "peak_rss_mib": p}))
            .collect();
        serde_json::from_value(serde_json::json!({"tool": tool, "device": tool, "threads": 2, "presets": [
            {"preset": "tiny32", "model": "m", "batch": 4, "pgd_steps": 2, "eps": 0.03, "step_size": 0.01,
             "records": records, "memory": memory}]}))
        .expect("a bench report")
    }

    #[test]
    fn side_by_side_joins_by_preset_and_step() {
        let ours = report(
            "advsoup",
            &[("forward", 50.0), ("co_training_step", 10.0)],
            &[(1, 110.0), (20, 121.0)],
        );
        let torch = report("torch", &[("forward", 100.0)], &[(1, 200.0), (20, 200.0)]);
        let t = side_by_side(&ours, Some(&torch));
        assert!(
            t.contains("| tiny32 | forward | 4 | 50.0 | 100.0 | 0.50x |"),
            "{t}"
        );
        assert!(
            t.contains("| tiny32 | co_training_step (K=2) | 4 | 10.0 | - | - |"),
            "{t}"
        );
        assert!(
            t.contains("| tiny32 | 4 | 20 | 121.0 | 21.0 | 200.0 | 100.0 |"),
            "{t}"
        );
        assert!(
            t.contains("| tiny32 | peak K=20 / K=1 | | 1.100 | | 1.000 | |"),
            "{t}"
        );
        let alone = side_by_side(&ours, None);
        assert!(alone.contains("torch: not run"), "{alone}");
        assert!(
            alone.contains("| tiny32 | forward | 4 | 50.0 | - | - |"),
            "{alone}"
        );
    }
}
