//! `cargo xtask soak`: crash safety under SIGKILL and SIGTERM, and concurrent writers.
//!
//! Trains a small run once without interruption, then again while SIGKILLing the process at
//! random moments (`--kills` times, each followed by `--resume`), and requires the same model
//! bytes, final report and metrics. Every resume loads the checkpoint the kill left behind, so
//! each kill also checks that what is on disk loads. `--terms` rounds do the same with SIGTERM,
//! which must stop the run with exit 143 and a complete checkpoint; `--writers` rounds start two
//! trainings of one run at once, of which exactly one may run (the other is refused by the run
//! directory's lock, exit 2). The kills are then repeated for `advsoup soup sweep` and `advsoup
//! eval`, which keep per-β / per-chunk results and continue where they stopped. The data is
//! generated here (no network), the moments are drawn from `--seed`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod rounds;

use advsoup_records::run::{CheckpointState, EpochMetrics, FinalReport};
use advsoup_records::soup::SoupSweep;
use anyhow::{Context, Result, bail};
use serde_json::Value;

use rounds::{WriterJob, soak_eval_writers, soak_terms, soak_train_writers};

/// `cargo xtask soak`.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// SIGKILLs of the training run.
    #[arg(long, default_value_t = 20)]
    pub kills: usize,
    /// SIGKILLs of the soup sweep and of the evaluation (each).
    #[arg(long, default_value_t = 5)]
    pub eval_kills: usize,
    /// SIGTERMs of a training run: each must stop it with exit 143 and a checkpoint.
    #[arg(long, default_value_t = 10)]
    pub terms: usize,
    /// Rounds of two concurrent writers: exactly one runs, the other is refused (exit 2).
    #[arg(long, default_value_t = 3)]
    pub writers: usize,
    /// The command of the writer rounds.
    #[arg(long, value_enum, default_value = "train")]
    pub writer_job: WriterJob,
    /// Seed of the kill moments.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use a debug build of advsoup.
    #[arg(long)]
    pub dev: bool,
    /// Work directory (default: target/soak; emptied first).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// splitmix64: the kill moments only need to be reproducible, not good.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes a 28x28, 10-class IDX dataset (class c: a bright band at rows 2c+4..2c+6 plus noise)
/// under `dir/fashion-mnist`.
///
/// Not `advsoup_data::testing::write_idx`: xtask never links burn (nor advsoup-data), and the
/// soak's set is deliberately noisier (noise up to 60, band at 160+) than the test suites' one, so
/// its bytes, and the soak's numbers, stay as they were.
pub fn write_idx(dir: &Path, train: usize, test: usize) -> Result<()> {
    let d = dir.join("fashion-mnist");
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let images = |n: usize, salt: usize| {
        let mut v = vec![0u8, 0, 8, 3];
        for x in [n as u32, 28, 28] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        for i in 0..n {
            let class = i % 10;
            for r in 0..28 {
                for c in 0..28 {
                    let noise = ((i * 131 + r * 17 + c * 29 + salt) % 61) as u8;
                    v.push(if r / 2 == class + 2 {
                        160 + noise
                    } else {
                        noise * 2
                    });
                }
            }
        }
        v
    };
    let labels = |n: usize| {
        let mut v = vec![0u8, 0, 8, 1];
        v.extend_from_slice(&(n as u32).to_be_bytes());
        v.extend((0..n).map(|i| (i % 10) as u8));
        v
    };
    for (name, bytes) in [
        ("train-images-idx3-ubyte", images(train, 0)),
        ("train-labels-idx1-ubyte", labels(train)),
        ("t10k-images-idx3-ubyte", images(test, 7)),
        ("t10k-labels-idx1-ubyte", labels(test)),
    ] {
        std::fs::write(d.join(name), bytes).with_context(|| format!("writing {name}"))?;
    }
    Ok(())
}

fn config_text(data: &Path) -> String {
    format!(
        r#"name = "soak"
seed = 11
regime = "co_training"
alpha = 0.5

[model]
preset = "vit_mini_patch4_28"
adapter = "cls_token"
patch_size = 7
embed_dim = 64
depth = 4
num_heads = 4
mlp_ratio = 2.0

[data]
dataset = "fashion-mnist"
data_dir = "{}"
held_out = 200
crop_padding = 2
workers = 1

[attack.train]
eps = 0.1
num_steps = 2
step_size = 0.0625

[attack.eval]
eps = 0.1
num_steps = 5
step_size = 0.03

[optim]
epochs = 2
batch_size = 64
lr = 2e-3
warmup_epochs = 0.5
weight_decay = 0.05
grad_clip = 1.0

[eval]
held_out_robust = 100
test_robust = 200
test_attack = "pgd-10"
batch_size = 250
"#,
        data.display()
    )
}

/// An eval report (`advsoup eval --out`): compared whole, field by field, and never read, so it
/// stays opaque JSON here (its type holds the attacks' configurations, which xtask must not
/// link).
fn json(path: &Path) -> Result<Value> {
    crate::read_json(path)
}

/// `final.json` without the wall time, which differs between interrupted and whole runs.
fn final_report(run: &Path) -> Result<FinalReport> {
    let mut report: FinalReport = crate::read_json(&run.join("final.json"))?;
    report.train_seconds = 0.0;
    Ok(report)
}

/// `metrics.jsonl` without the throughput, which differs between interrupted and whole runs.
fn metrics(run: &Path) -> Result<Vec<EpochMetrics>> {
    let p = run.join("metrics.jsonl");
    std::fs::read_to_string(&p)
        .with_context(|| format!("reading {}", p.display()))?
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut m: EpochMetrics = serde_json::from_str(l)
                .with_context(|| format!("{}: line {}", p.display(), i + 1))?;
            m.images_per_s = 0.0;
            Ok(m)
        })
        .collect()
}

/// `soup.json` without the wall time.
fn soup_sweep(path: &Path) -> Result<SoupSweep> {
    let mut sweep: SoupSweep = crate::read_json(path)?;
    sweep.wall_seconds = 0.0;
    Ok(sweep)
}

/// Runs `args` to the end; returns its wall time.
fn complete(bin: &Path, args: &[String]) -> Result<Duration> {
    let t = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "`advsoup {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(t.elapsed())
}

/// Starts `args` and SIGKILLs it after `after`; returns whether it was still running (a kill
/// that lands after the process ended kills nothing).
fn kill_after(bin: &Path, args: &[String], after: Duration) -> Result<bool> {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let t = Instant::now();
    while t.elapsed() < after {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("`advsoup {}` failed on its own ({status})", args.join(" "));
            }
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().context("SIGKILL")?;
    child.wait()?;
    Ok(true)
}

/// `kills` SIGKILLs at moments drawn uniformly in [0, 1.6 · budget / kills] after each start
/// (so that the job does not finish before the kills are spent), then one run to the end.
/// Returns (kills that hit a running process, kills issued).
fn soak_job(
    bin: &Path,
    args: &[String],
    kills: usize,
    budget: Duration,
    rng: &mut Rng,
    mut after_kill: impl FnMut(usize) -> Result<()>,
) -> Result<(usize, usize)> {
    let slice = budget.as_secs_f64() * 1.6 / kills.max(1) as f64;
    let mut hit = 0;
    for k in 0..kills {
        let at = Duration::from_secs_f64(rng.next_f64() * slice);
        if kill_after(bin, args, at)? {
            hit += 1;
            after_kill(k)?;
        }
    }
    complete(bin, args)?;
    Ok((hit, kills))
}

/// The checkpoint left on disk must be complete: a parsable state and both records.
fn check_checkpoint(run: &Path) -> Result<Option<u64>> {
    for d in ["checkpoint", "checkpoint.old"] {
        let dir = run.join(d);
        if !dir.exists() {
            continue;
        }
        let state: CheckpointState = crate::read_json(&dir.join("state.json"))?;
        let step = state.global_step as u64;
        let files = std::fs::read_dir(&dir)?.count();
        if files < 3 {
            bail!(
                "{}: {files} files, expected state, model and optimizer",
                dir.display()
            );
        }
        return Ok(Some(step));
    }
    Ok(None)
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// What a soak compares and counts.
struct Soak {
    bin: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    rng: Rng,
    mismatches: Vec<String>,
    /// SIGKILLs / SIGTERMs issued, and those that hit a running process.
    issued: usize,
    hit: usize,
}

impl Soak {
    /// `advsoup train` of the soak config into `runs`.
    fn train(&self, runs: &Path, resume: bool) -> Vec<String> {
        let mut a = vec![
            s("train"),
            s("--quiet"),
            s("--config"),
            self.config.display().to_string(),
            s("--runs-dir"),
            runs.display().to_string(),
            s("--checkpoint-every"),
            s(2),
        ];
        if resume {
            a.push(s("--resume"));
        }
        a
    }

    /// Records a mismatch of run `b`'s results against the uninterrupted run `a`.
    fn compare_runs(&mut self, what: &str, a: &Path, b: &Path) -> Result<()> {
        let model = |r: &Path| std::fs::read(r.join("model.safetensors"));
        if model(a)? != model(b)? {
            self.mismatches.push(format!("{what}: model.safetensors"));
        }
        if final_report(a)? != final_report(b)? {
            self.mismatches.push(format!("{what}: final.json"));
        }
        if metrics(a)? != metrics(b)? {
            self.mismatches.push(format!("{what}: metrics.jsonl"));
        }
        Ok(())
    }

    fn count(&mut self, (hit, issued): (usize, usize)) -> (usize, usize) {
        self.hit += hit;
        self.issued += issued;
        (hit, issued)
    }
}

/// Runs the soak; errors on any mismatch.
pub fn run(args: SoakArgs) -> Result<()> {
    let root = crate::workspace_root();
    let dir = args.dir.clone().unwrap_or_else(|| root.join("target/soak"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    let data = dir.join("data");
    write_idx(&data, 2200, 400)?;
    let config = dir.join("soak.toml");
    std::fs::write(&config, config_text(&data))?;
    let mut soak = Soak {
        bin: crate::sweep_adapters::private_binary(args.dev, &dir.join("bin"))?,
        dir: dir.clone(),
        config,
        rng: Rng(args.seed),
        mismatches: Vec::new(),
        issued: 0,
        hit: 0,
    };

    // 1. training: SIGKILLs, then SIGTERMs, then concurrent writers, each on its own run
    let a = dir.join("a");
    let base = complete(&soak.bin, &soak.train(&a, false))?;
    println!("uninterrupted training: {:.1}s", base.as_secs_f64());
    let ra = a.join("soak");
    soak_kills(&mut soak, args.kills, base)?;
    let lost = soak_terms(&mut soak, args.terms, base)?;
    match args.writer_job {
        WriterJob::Train => soak_train_writers(&mut soak, args.writers, base)?,
        WriterJob::Eval => soak_eval_writers(&mut soak, args.writers, &ra)?,
    }

    // 2. soup sweep and 3. eval, on the uninterrupted run
    soak_evaluations(&mut soak, args.eval_kills, &ra)?;

    let leftovers = leftover_temporaries(&dir);
    println!(
        "soak: signals {} (hit {}), resumes {}, mismatches {}, lost checkpoints {lost}, \
         leftover temporary files {}",
        soak.issued,
        soak.hit,
        soak.hit,
        soak.mismatches.len(),
        leftovers.len()
    );
    if !soak.mismatches.is_empty() || !leftovers.is_empty() || lost > 0 {
        bail!(
            "soak failed: mismatches {:?}, lost checkpoints {lost}, leftovers {:?}",
            soak.mismatches,
            leftovers
        );
    }
    Ok(())
}

/// SIGKILLs of a training run at random moments, each followed by `--resume`.
fn soak_kills(soak: &mut Soak, kills: usize, base: Duration) -> Result<()> {
    let b = soak.dir.join("b");
    let run_b = b.join("soak");
    let mut steps_at_kill = Vec::new();
    let args = soak.train(&b, true);
    let counted = soak_job(&soak.bin, &args, kills, base, &mut soak.rng, |_| {
        steps_at_kill.push(check_checkpoint(&run_b)?);
        Ok(())
    })?;
    let (hit, issued) = soak.count(counted);
    let before = soak.mismatches.len();
    soak.compare_runs("SIGKILL", &soak.dir.join("a/soak"), &run_b)?;
    let distinct: std::collections::BTreeSet<_> = steps_at_kill.iter().collect();
    println!(
        "training: {issued} SIGKILLs issued, {hit} hit a running process ({} at distinct \
         checkpoints: {:?}), {hit} resumes, mismatches {}",
        distinct.len(),
        steps_at_kill,
        soak.mismatches.len() - before
    );
    Ok(())
}

/// SIGKILLs of `advsoup soup sweep` and `advsoup eval` of the uninterrupted run `ra`.
fn soak_evaluations(soak: &mut Soak, eval_kills: usize, ra: &Path) -> Result<()> {
    let dir = soak.dir.clone();
    let sweep = |out: &Path| sweep_args(ra, out);
    let t = complete(&soak.bin, &sweep(&dir.join("sweep-a")))?;
    let counted = soak_job(
        &soak.bin,
        &sweep(&dir.join("sweep-b")),
        eval_kills,
        t,
        &mut soak.rng,
        |_| Ok(()),
    )?;
    let (hit_s, issued_s) = soak.count(counted);
    let soup = |d: &str| soup_sweep(&dir.join(d).join("soup.json"));
    let equal = soup("sweep-a")? == soup("sweep-b")?;
    if !equal {
        soak.mismatches.push("soup.json".into());
    }
    println!("soup sweep: {issued_s} SIGKILLs issued, {hit_s} hit, result equal: {equal}");

    let eval = |out: &Path| eval_args(ra, out);
    let t = complete(&soak.bin, &eval(&dir.join("eval-a.json")))?;
    let counted = soak_job(
        &soak.bin,
        &eval(&dir.join("eval-b.json")),
        eval_kills,
        t,
        &mut soak.rng,
        |_| Ok(()),
    )?;
    let (hit_e, issued_e) = soak.count(counted);
    let equal = json(&dir.join("eval-a.json"))? == json(&dir.join("eval-b.json"))?;
    if !equal {
        soak.mismatches.push("eval report".into());
    }
    println!("eval: {issued_e} SIGKILLs issued, {hit_e} hit, result equal: {equal}");
    Ok(())
}

/// `advsoup soup sweep` of the run `run` into `out`.
fn sweep_args(run: &Path, out: &Path) -> Vec<String> {
    vec![
        s("soup"),
        s("sweep"),
        s("--run"),
        run.display().to_string(),
        s("--betas"),
        s("0:1:0.25"),
        s("--n-clean"),
        s(400),
        s("--n-robust"),
        s(100),
        s("--attacks"),
        s("pgd-10,apgd-ce"),
        s("--apgd-iter"),
        s(10),
        s("--n-shift"),
        s(200),
        s("--corruptions"),
        s("gaussian_noise,contrast"),
        s("--out"),
        out.display().to_string(),
    ]
}

/// `advsoup eval` of the run `run` into `out`.
fn eval_args(run: &Path, out: &Path) -> Vec<String> {
    vec![
        s("eval"),
        s("--run"),
        run.display().to_string(),
        s("--attack"),
        s("pgd-10"),
        s("--eps"),
        s(0.1),
        s("--n"),
        s(400),
        s("--out"),
        out.display().to_string(),
    ]
}

/// Temporary files a killed process left under `dir` (a finished job leaves none).
fn leftover_temporaries(dir: &Path) -> Vec<String> {
    walk(dir)
        .into_iter()
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            n.ends_with(".tmp") || n.ends_with("tmp~") || n.contains(".partial")
        })
        .map(|p| p.display().to_string())
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_moments_are_reproducible_and_in_range() {
        let draw = |seed| {
            let mut r = Rng(seed);
            (0..100).map(|_| r.next_f64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
        assert!(draw(5).iter().all(|v| (0.0..1.0).contains(v)));
        let mean = draw(6).iter().sum::<f64>() / 100.0;
        assert!((mean - 0.5).abs() < 0.1, "{mean}");
    }

    #[test]
    fn generated_idx_has_the_declared_sizes() {
        let dir = std::env::temp_dir().join(format!("xtask-soak-{}", std::process::id()));
        write_idx(&dir, 30, 10).expect("write");
        let img = std::fs::read(dir.join("fashion-mnist/train-images-idx3-ubyte")).expect("read");
        assert_eq!(img.len(), 16 + 30 * 28 * 28);
        assert_eq!(&img[4..8], &30u32.to_be_bytes());
        let lab = std::fs::read(dir.join("fashion-mnist/t10k-labels-idx1-ubyte")).expect("read");
        assert_eq!(lab.len(), 8 + 10);
        assert_eq!(lab[8 + 3], 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
