//! The optional progress bar (`RunOptions::progress`, rank 0 only): position, loss, learning
//! rate and throughput per step, one line per epoch.

/// A progress bar, or nothing.
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A bar over `total_steps` at `position` when `show`, else nothing.
    pub(crate) fn new(show: bool, total_steps: usize, position: usize) -> Self {
        let bar = show.then(|| {
            let bar = indicatif::ProgressBar::new(total_steps as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_position(position as u64);
            bar
        });
        Self { bar }
    }

    /// Whether a bar is drawn (asked for, and stderr is a terminal): its lines then replace
    /// the log's. indicatif hides a bar on a non-terminal, and drops the lines printed above it.
    pub(crate) fn is_shown(&self) -> bool {
        self.bar.as_ref().is_some_and(|b| !b.is_hidden())
    }

    /// After a step: the position and a status message.
    pub(crate) fn step(&self, position: usize, message: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_position(position as u64);
            bar.set_message(message());
        }
    }

    /// A line above the bar.
    pub(crate) fn println(&self, line: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.println(line());
        }
    }

    /// Leaves the bar where it is (the run stopped early).
    pub(crate) fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }

    /// Removes the bar (the run finished).
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
