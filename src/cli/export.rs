//! `shopsim export RUN_ID`: write a run's dataset as CSV or JSON lines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use super::common::DbArgs;
use crate::sim::records::{self, Format};

/// Write a run's dataset (agents, sessions, events, orders, order items, offers).
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    db: DbArgs,

    /// The run to export (see `shopsim runs list`).
    run_id: String,

    /// File format: `csv` (header row, persona attributes flattened into sorted `persona.*`
    /// columns) or `jsonl` (one JSON object per line).
    #[arg(long, default_value = "csv", value_parser = parse_format)]
    format: Format,

    /// Directory to write into (created if missing; files of the same names are replaced).
    /// Default: `<run-dir>/<RUN_ID>/export`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Folder of run renderings, used for the default --out.
    #[arg(long, env = "SHOPSIM_RUN_DIR", default_value = "simulation_runs")]
    run_dir: PathBuf,

    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

pub async fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join(&args.run_id).join("export"));
    let db = args.db.connect().await?;
    records::ensure_run_tables(&db).await?;
    let started = Instant::now();
    let report = records::export_run(&db, &args.run_id, args.format, &out).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "exported run {} to {} ({})",
            report.run_id,
            report.dir.display(),
            report.format.extension()
        );
        for (name, rows) in &report.files {
            println!("  {name:<12} {rows:>10} row(s)");
        }
        println!("in {:.2}s", started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}
