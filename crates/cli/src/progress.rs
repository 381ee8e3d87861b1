//! Progress of the long commands (`eval`, `attack`, `soup sweep`, `export-timm`): a bar with an
//! ETA (indicatif) when stderr is a terminal, plain periodic lines otherwise, e.g.
//! `eval: 400/1000 images, 1m12s elapsed, ~1m48s left` at every tenth of the work or every 30 s,
//! so a log file shows the job is alive without carrying terminal control codes. `NO_COLOR`
//! turns the bar's colours off. The library crates only report counts (callbacks such as
//! `EvalJob::on_progress`); drawing happens here.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// At most this long between two plain lines while work is being done.
const PLAIN_EVERY: Duration = Duration::from_secs(30);

/// A progress display for one piece of work of `total` units.
#[derive(Clone)]
pub(crate) struct Progress {
    inner: Arc<Mutex<State>>,
}

struct State {
    label: &'static str,
    unit: &'static str,
    total: usize,
    start: Instant,
    bar: Option<ProgressBar>,
    /// Plain mode: the next tenth of `total` that prints a line, and when the last line was.
    next_tenth: usize,
    last_line: Instant,
    done: usize,
}

impl Progress {
    /// A bar on a terminal, plain lines otherwise; nothing is shown until the first update.
    pub(crate) fn start(label: &'static str, unit: &'static str, total: usize) -> Self {
        let bar = std::io::stderr()
            .is_terminal()
            .then(|| terminal_bar(label, unit, total));
        let now = Instant::now();
        Self {
            inner: Arc::new(Mutex::new(State {
                label,
                unit,
                total,
                start: now,
                bar,
                next_tenth: 1,
                last_line: now,
                done: 0,
            })),
        }
    }

    /// `done` of the total units are finished.
    pub(crate) fn update(&self, done: usize) {
        let mut s = self.lock();
        s.done = done.min(s.total);
        if let Some(bar) = &s.bar {
            bar.set_position(s.done as u64);
            return;
        }
        let tenth_reached = s.total > 0 && s.done * 10 >= s.next_tenth * s.total;
        if tenth_reached || s.last_line.elapsed() >= PLAIN_EVERY {
            eprintln!("{}", s.line());
            s.last_line = Instant::now();
            while s.next_tenth <= 10 && s.done * 10 >= s.next_tenth * s.total {
                s.next_tenth += 1;
            }
        }
    }

    /// Prints a line of its own (above the bar on a terminal).
    pub(crate) fn println(&self, line: &str) {
        match &self.lock().bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar (the command prints its result next).
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.lock().bar {
            bar.finish_and_clear();
        }
    }

    /// The callback form of [`Progress::update`], for the library crates.
    pub(crate) fn callback(&self) -> impl Fn(usize) + Send + Sync + use<> {
        let this = self.clone();
        move |done| this.update(done)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// `eval: 400/1000 images, 1m12s elapsed, ~1m48s left`.
    fn line(&self) -> String {
        let elapsed = self.start.elapsed();
        let left = (self.done > 0)
            .then(|| elapsed.mul_f64((self.total - self.done) as f64 / self.done as f64));
        let left = left.map_or(String::new(), |d| format!(", ~{} left", duration(d)));
        format!(
            "{}: {}/{} {}, {} elapsed{left}",
            self.label,
            self.done,
            self.total,
            self.unit,
            duration(elapsed)
        )
    }
}

/// `45s`, `1m12s`, `2h03m`.
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn terminal_bar(label: &str, unit: &str, total: usize) -> ProgressBar {
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let bar = if colour {
        "{bar:30.cyan/blue}"
    } else {
        "{bar:30}"
    };
    let template =
        format!("{label}: {bar} {{pos}}/{{len}} {unit}, {{elapsed}} elapsed, ~{{eta}} left");
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let pb = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    pb.set_style(style);
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_plain_lines() {
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(72)), "1m12s");
        assert_eq!(duration(Duration::from_secs(7380)), "2h03m");
        let s = State {
            label: "eval",
            unit: "images",
            total: 1000,
            start: Instant::now() - Duration::from_secs(72),
            bar: None,
            next_tenth: 1,
            last_line: Instant::now(),
            done: 400,
        };
        assert_eq!(
            s.line(),
            "eval: 400/1000 images, 1m12s elapsed, ~1m48s left"
        );
    }
}
