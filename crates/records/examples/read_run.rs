//! Prints the final table of a training run: `cargo run -p advsoup-records --example read_run
//! -- runs/<name>/final.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use advsoup_records::run::FinalReport;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: read_run <run directory>/final.json");
        return ExitCode::from(2);
    };
    match advsoup_records::read_json::<FinalReport>(&path) {
        Ok(report) => {
            print!("{}", report.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
