//! Handing the allocator's free memory back to the system between simulated days.
//!
//! A day's transient allocations (its plans, jobs, sessions' carts and statements) are freed
//! when the day ends, but glibc keeps the freed pages of its arenas wherever long-lived
//! allocations made during the day (wallets, histories) sit above them, so the resident set
//! grows with each day by memory nobody uses. `malloc_trim(0)` returns every whole free page of
//! every arena to the system (`madvise(MADV_DONTNEED)`): the peak resident set of 10,000
//! `grocery` agents × 7 days went from 81 to 66 MiB (BENCHMARKS.md, step 11). Elsewhere (other
//! C libraries) it does nothing.

use std::time::{Duration, Instant};

/// How often memory is handed back while a day's sessions run (a `max` day of a million agents
/// lasts many minutes, a paced one hours; their sessions' transients fragment the arenas
/// meanwhile).
pub const RELEASE_EVERY: Duration = Duration::from_secs(10);

/// Calls [`release_free_pages`] at most once per [`RELEASE_EVERY`] of wall time.
pub struct PeriodicRelease(Instant);

impl PeriodicRelease {
    /// Starts counting now.
    pub fn new() -> Self {
        Self(Instant::now())
    }

    /// Hands free pages back if the last time was [`RELEASE_EVERY`] ago or more.
    pub fn tick(&mut self) {
        if self.0.elapsed() >= RELEASE_EVERY {
            release_free_pages();
            self.0 = Instant::now();
        }
    }
}

impl Default for PeriodicRelease {
    fn default() -> Self {
        Self::new()
    }
}

/// Returns the allocator's whole free pages to the system: a walk of the arenas' free lists,
/// cheap next to a simulated day (`--log-level shopsim::sim::heap=debug` logs each call's time).
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = Instant::now();
        // SAFETY: `malloc_trim` only reads and updates glibc's own allocator state, under its
        // locks; it frees nothing that is in use.
        let released = unsafe { libc::malloc_trim(0) } == 1;
        tracing::debug!(
            released,
            elapsed_us = started.elapsed().as_micros() as u64,
            "free heap pages handed back"
        );
    }
}
