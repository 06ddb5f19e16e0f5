//! The `shopsim` binary: see the library's `cli` module.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shopsim::cli::main().await
}
