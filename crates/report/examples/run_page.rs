//! Writes the page of a training run: `cargo run -p advsoup-report --example run_page --
//! runs/<name>` (writes runs/<name>/report.html; `advsoup report --run` does the same).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: run_page <run directory>");
        return ExitCode::from(2);
    };
    match advsoup_report::run_page(&dir) {
        Ok(html) => {
            let out = dir.join("report.html");
            if let Err(e) = std::fs::write(&out, html) {
                eprintln!("error: cannot write {}: {e}", out.display());
                return ExitCode::from(2);
            }
            println!("{}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
