//! The `shopsim` binary: see the library's `cli` module.

use std::process::ExitCode;

/// jemalloc rather than the C library's malloc: the host allocates and frees small objects at
/// a high rate (statements, rows, script values), and glibc's allocator was about a fifth of
/// its CPU time; jemalloc cuts the host's CPU by 15–25% at the same growth of the peak memory
/// per agent (BENCHMARKS.md, step 16).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    shopsim::cli::main().await
}
