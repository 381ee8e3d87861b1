//! `cargo xtask <task>`: developer workflows. clap + std only; it never links burn and shells
//! out to `cargo run -p advsoup-cli` for anything numeric.

use std::path::{Path, PathBuf};
use std::process::Command;

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
const ALLOWED: &[(&str, &[&str])] = &[
    ("advsoup-vit", &[]),
    ("advsoup-attacks", &[]),
    ("advsoup-data", &[]),
    ("advsoup-adapters", &["advsoup-vit"]),
    ("advsoup-soup", &[]),
    (
        "advsoup-bench",
        &[
            "advsoup-attacks",
            "advsoup-adapters",
            "advsoup-vit",
            "advsoup-data",
        ],
    ),
    (
        "advsoup-train",
        &[
            "advsoup-vit",
            "advsoup-adapters",
            "advsoup-attacks",
            "advsoup-data",
        ],
    ),
    (
        "advsoup-cli",
        &[
            "advsoup-vit",
            "advsoup-adapters",
            "advsoup-attacks",
            "advsoup-data",
            "advsoup-soup",
            "advsoup-bench",
            "advsoup-train",
        ],
    ),
    ("advsoup-e2e", &[]),
    ("xtask", &[]),
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
    if problems.is_empty() {
        println!("tidy: {} packages, crate graph ok", packages.len());
        Ok(())
    } else {
        bail!("tidy:\n{}", problems.join("\n"))
    }
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
        Task::Test => {
            tidy()?;
            let mut c = cargo();
            c.args(["test", "--workspace"]);
            status(c)
        }
    }
}
