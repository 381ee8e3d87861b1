//! The exit codes of `advsoup`, in one place, and the one error line a failure prints.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | internal error: a panic, i.e. a bug in advsoup (the panic message is printed above) |
//! | 2 | bad input or a refusal (an unreadable file, a wrong value, a directory in use) |
//! | 130 | stopped by SIGINT (Ctrl-C); `train` saved a checkpoint first |
//! | 143 | stopped by SIGTERM (`timeout`, `docker stop`, Kubernetes, Slurm); `train` saved a checkpoint first |
//!
//! Clap's own usage errors exit 2 too.

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::signals::Stopped;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what it was asked.
    Ok,
    /// A bug: a panic reached the command line.
    Internal,
    /// Bad input or a refusal, reported in one `error:` line.
    BadInput,
    /// SIGINT (Ctrl-C).
    Interrupted,
    /// SIGTERM.
    Terminated,
}

impl Exit {
    /// The process exit code.
    pub const fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Internal => 1,
            Exit::BadInput => 2,
            Exit::Interrupted => 128 + SIGINT,
            Exit::Terminated => 128 + SIGTERM,
        }
    }

    /// The exit of a process stopped by signal `signal` (SIGTERM, else SIGINT).
    pub const fn of_signal(signal: i32) -> Exit {
        if signal == SIGTERM {
            Exit::Terminated
        } else {
            Exit::Interrupted
        }
    }
}

/// The signal's conventional name, for messages.
pub(crate) fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// The error and its causes on one line, `outer: inner: ...`, each text once: a cause whose
/// text the line already holds (an OS error that a path error displays and also returns as
/// its source) is left out.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Prints what a failed command has to say (one line on stderr) and returns its exit: a stop
/// requested by a signal exits 128 + the signal, anything else is bad input (2).
pub fn report(err: &anyhow::Error) -> Exit {
    if let Some(stopped) = err.downcast_ref::<Stopped>() {
        eprintln!("stopped by {}: {stopped}", signal_name(stopped.signal));
        return Exit::of_signal(stopped.signal);
    }
    eprintln!("error: {}", error_line(err));
    Exit::BadInput
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_are_the_documented_ones() {
        let codes: Vec<i32> = [
            Exit::Ok,
            Exit::Internal,
            Exit::BadInput,
            Exit::Interrupted,
            Exit::Terminated,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 130, 143]);
        assert_eq!(Exit::of_signal(SIGTERM), Exit::Terminated);
        assert_eq!(Exit::of_signal(SIGINT), Exit::Interrupted);
    }

    #[test]
    fn an_os_error_is_printed_once() {
        let os = std::io::Error::from_raw_os_error(2);
        let path_error = advsoup_io::PathError {
            path: "runs/x/config.toml".into(),
            source: os,
        };
        let err = anyhow::Error::new(path_error).context("reading the run");
        let line = error_line(&err);
        assert_eq!(
            line,
            format!(
                "reading the run: runs/x/config.toml: {}",
                std::io::Error::from_raw_os_error(2)
            )
        );
        assert_eq!(line.matches("os error 2").count(), 1, "{line}");
        // Distinct causes all stay.
        let err = Err::<(), _>(std::io::Error::other("disk on fire"))
            .context("writing final.json")
            .unwrap_err();
        assert_eq!(error_line(&err), "writing final.json: disk on fire");
    }
}
