//! Fetch a dataset into the cache, verify it and print the counts.
//!
//! `cargo run --release -p advsoup-data --example fetch -- [fashion-mnist|mnist|cifar10|cifar100] [DATA_DIR]`

use advsoup_data::{DatasetKind, fetch, resolve_data_dir};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let kind: DatasetKind = args.next().as_deref().unwrap_or("fashion-mnist").parse()?;
    let dir = resolve_data_dir(args.next().as_deref().map(std::path::Path::new))?;
    let start = std::time::Instant::now();
    let report = fetch(kind, &dir)?;
    println!(
        "{kind}: from {} in {:.1}s into {}",
        report.source,
        start.elapsed().as_secs_f64(),
        report.info.dir.display()
    );
    for f in &report.failed {
        println!("  (failed first: {f})");
    }
    for f in &report.info.files {
        println!(
            "  {} {} bytes sha256 {} {}",
            f.name,
            f.bytes,
            f.sha256,
            if f.pinned {
                "(matches pinned)"
            } else {
                "(not pinned)"
            }
        );
    }
    for s in &report.info.splits {
        println!(
            "  {}: {} images, per class {:?}",
            s.split, s.count, s.per_class
        );
    }
    Ok(())
}
