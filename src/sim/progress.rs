//! Progress of the long steps before a run starts (creating and loading a million agents):
//! a progress bar on a terminal, a log line at most every few seconds otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;

/// How often a step logs its progress without a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// The progress of one step (`what`: "creating agents", "loading agents").
pub struct Progress {
    what: &'static str,
    bar: Option<ProgressBar>,
    logged: Mutex<Instant>,
}

impl Progress {
    /// Starts a step of `total` units; `bar` shows a progress bar (on a terminal) instead of
    /// log lines.
    pub fn new(what: &'static str, total: u64, bar: bool) -> Self {
        let bar = bar.then(|| {
            let b = ProgressBar::new(total);
            // The template is a constant: it cannot fail to parse, and a bar without a style
            // still works.
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:>16} [{bar:40}] {human_pos}/{human_len} ({per_sec}, {eta} left)",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(what);
            b
        });
        Self {
            what,
            bar,
            logged: Mutex::new(Instant::now()),
        }
    }

    /// `done` of `total` units are done.
    pub fn set(&self, done: u64, total: u64) {
        match &self.bar {
            Some(b) => b.set_position(done),
            None => {
                let mut logged = self.logged.lock();
                if done == total || logged.elapsed() >= LOG_EVERY {
                    *logged = Instant::now();
                    tracing::info!(done, total, "{}", self.what);
                }
            }
        }
    }

    /// The step is over (the bar is cleared).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The process's resident memory (`VmRSS` of `/proc/self/status`), where the system has one.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_terminal_progress_only_logs() {
        let p = Progress::new("loading agents", 10, false);
        assert!(p.bar.is_none());
        p.set(5, 10);
        p.set(10, 10);
        p.finish();
    }

    #[test]
    fn resident_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = resident_bytes().unwrap_or(0);
            // A test binary with its runtime resides in more than 1 MiB and less than 64 GiB.
            assert!(rss > 1 << 20 && rss < 64 << 30, "{rss}");
        }
    }

    #[test]
    fn a_bar_follows_the_position() {
        let p = Progress::new("creating agents", 10, true);
        p.set(7, 10);
        assert_eq!(p.bar.as_ref().map(ProgressBar::position), Some(7));
        p.finish();
        assert!(p.bar.as_ref().is_some_and(ProgressBar::is_finished));
    }
}
