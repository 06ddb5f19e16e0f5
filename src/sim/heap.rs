//! Handing the allocator's free memory back to the system between simulated days.
//!
//! A day's transient allocations (its plans, jobs, sessions' carts and statements) are freed
//! when the day ends, but an allocator keeps freed pages wherever long-lived allocations made
//! during the day (wallets, histories) sit near them, so the resident set grows with each day
//! by memory nobody uses. The binary allocates with jemalloc (`src/main.rs`), whose arenas are
//! purged here (`arena.<all>.purge`: every unused dirty page goes back at once instead of
//! after its decay time); glibc's `malloc_trim(0)` returns the free pages of the C library's
//! heap (SQLite's page cache, and everything in builds without jemalloc, such as the tests'):
//! with glibc alone, the peak resident set of 10,000 `grocery` agents × 7 days went from 81 to
//! 66 MiB (BENCHMARKS.md, step 11).

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

/// Returns the allocators' unused pages to the system: cheap next to a simulated day
/// (`--log-level shopsim::sim::heap=debug` logs each call's time).
pub fn release_free_pages() {
    let started = Instant::now();
    #[cfg(not(target_env = "msvc"))]
    {
        // 4096 is jemalloc's MALLCTL_ARENAS_ALL. In a process whose global allocator is not
        // jemalloc (the tests) its arenas are empty and this does nothing.
        // SAFETY: a documented control that neither reads nor writes a value: no pointers
        // are passed.
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                c"arena.4096.purge".as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        if status != 0 {
            tracing::debug!(status, "jemalloc's arenas were not purged");
        }
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` only reads and updates glibc's own allocator state, under its
        // locks; it frees nothing that is in use.
        unsafe { libc::malloc_trim(0) };
    }
    tracing::debug!(
        elapsed_us = started.elapsed().as_micros() as u64,
        "free heap pages handed back"
    );
}
