//! The binary's entry point: parse, set up logs and signals, run, print one line, exit with the
//! code of [`crate::exit`].

use std::ffi::OsString;
use std::io::IsTerminal;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;

use crate::exit::Exit;
use crate::signals::{self, OnSignal};
use crate::{Cli, Command};

/// Entry point of the binary: parses `std::env::args`, runs, prints `error: ...` and exits 2 on
/// failure, 130 / 143 when SIGINT / SIGTERM stopped it, 1 on a panic ([`crate::exit`]).
/// `ADVSOUP_REFERENCE_KERNELS=1` runs burn's own ops instead of the fused CPU kernels (read by
/// [`advsoup_vit::fast`] itself, so library users get the same switch).
pub fn main_entry() -> ! {
    let cli = Cli::parse();
    init_logs();
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = match cli.command {
        Command::Train(_) => OnSignal::Stop(stop.clone()),
        _ => OnSignal::Exit,
    };
    if let Err(e) = signals::install(on_signal) {
        tracing::warn!("SIGINT/SIGTERM handlers not installed: {e}");
    }
    let exit = match std::panic::catch_unwind(AssertUnwindSafe(|| crate::run_with(cli, stop))) {
        Ok(Ok(())) => Exit::Ok,
        Ok(Err(e)) => crate::exit::report(&e),
        Err(_) => {
            eprintln!("error: internal error (a bug in advsoup; please report the panic above)");
            Exit::Internal
        }
    };
    std::process::exit(exit.code())
}

/// tracing to stderr, filtered by `ADVSOUP_LOG` (default `warn,advsoup_train=info`), coloured
/// only on a terminal and without `NO_COLOR`.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ADVSOUP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,advsoup_train=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr)
        .init();
}

/// Whether logs use ANSI colours: only on a terminal, and not when `NO_COLOR` is set to a
/// non-empty value (<https://no-color.org>).
fn ansi(terminal: bool, no_color: Option<OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(ansi(true, None));
        assert!(ansi(true, Some("".into())));
        assert!(!ansi(true, Some("1".into())));
        assert!(!ansi(false, None));
    }
}
