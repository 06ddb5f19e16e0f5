//! The command line: `shopsim <command>`. Thin: parses, sets up logging, calls the library.
//!
//! Precedence for every setting: flag > environment variable > default.

pub mod check;
pub mod common;
mod export;
mod loadtest;
mod migrate;
mod report;
mod run;
mod runs;
mod seed;
mod serve;
mod status;

pub use run::check_config_text;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Simulate a population of shoppers against a retail backend (VoiceOffers or shopsim's own
/// reference server) on an accelerated simulated clock.
#[derive(Debug, Parser)]
#[command(name = "shopsim", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log verbosity: error, warn, info, debug or trace (or a tracing filter such as
    /// `shopsim=debug,sqlx=warn`). Overrides RUST_LOG.
    #[arg(long, global = true, env = "SHOPSIM_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create missing tables (never drops or alters existing ones), or check compatibility.
    Migrate(migrate::MigrateArgs),
    /// Simulate shoppers on a simulated clock (the main job; see `shopsim run --help`).
    Run(Box<run::RunArgs>),
    /// Write the catalog (generated from --seed, or products from a CSV file) and agent users;
    /// creates missing tables first. Idempotent.
    Seed(seed::SeedArgs),
    /// Serve the VoiceOffers API (the reference server) until Ctrl-C or SIGTERM.
    Serve(serve::ServeArgs),
    /// Compile a persona set and run it through the engine in process on an in-memory
    /// database (no server, no files): prints sessions, baskets, abandonment, offers and
    /// timing statistics, equal to those of `run --actions inprocess` with the same seed.
    Check(check::CheckArgs),
    /// Write a run's dataset (agents with personas, sessions, events, orders, order items,
    /// offers) as CSV or JSON lines, byte-identical for the same dataset on any backend.
    Export(export::ExportArgs),
    /// List, show or purge the runs recorded in the database.
    Runs(runs::RunsArgs),
    /// Show where a run stands, shard by shard: progress, simulated clock, lag, sessions
    /// ended and lease (owner, fencing number, heartbeat age).
    Status(status::StatusArgs),
    /// Render a run's report as one self-contained HTML file (charts as inline SVG) from its
    /// records in the database, or compare two runs with --compare.
    Report(report::ReportArgs),
    /// Load one read endpoint (`GET /api/products/{id}`) with N connections through the
    /// host's own HTTP path: requests/s, latency and the host's CPU time per request, to
    /// compare with wrk or oha on the same request (see `scripts/bench-http`).
    Loadtest(loadtest::LoadtestArgs),
}

/// Parses the command line, runs the command and turns its result into an exit code.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let targets = match &cli.command {
        Command::Run(args) => args.log_targets(),
        _ => crate::logging::LogTargets {
            stderr: true,
            file: None,
        },
    };
    if let Err(e) = crate::logging::init(&cli.log_level, &targets) {
        eprintln!("error: {e}; choose another --log-file");
        return ExitCode::from(1);
    }
    let result = match cli.command {
        Command::Migrate(args) => migrate::run(args).await,
        Command::Run(args) => run::run(*args).await,
        Command::Seed(args) => seed::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Export(args) => export::run(args).await,
        Command::Runs(args) => runs::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Report(args) => report::run(args).await,
        Command::Loadtest(args) => loadtest::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", common::format_error(&err));
            ExitCode::from(1)
        }
    }
}
