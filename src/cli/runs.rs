//! `shopsim runs list|show|purge`: the runs recorded in the database.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::common::DbArgs;
use crate::sim::records::{self, RunSummary, WallInfo};

/// List, show or delete recorded runs.
#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    command: RunsCommand,
}

/// The `runs` subcommands.
#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// List every run, newest first: id, status, persona set, agents, simulated span,
    /// created, orders.
    List(ListArgs),
    /// Show one run: its record and its totals (counts from the database, requests and
    /// errors from its stored metrics).
    Show(ShowArgs),
    /// Delete every row the run created, in one transaction, and report counts per table.
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    db: DbArgs,

    /// Print the runs as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ShowArgs {
    #[command(flatten)]
    db: DbArgs,

    /// The run to show.
    run_id: String,

    /// Also (re)write `summary.md` and `metadata.json` into `<DIR>/<RUN_ID>/`.
    #[arg(long, value_name = "DIR")]
    render: Option<PathBuf>,

    /// Print the record and the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PurgeArgs {
    #[command(flatten)]
    db: DbArgs,

    /// The run to delete.
    run_id: String,

    /// Purge even a run still marked `running` (only when its process is gone).
    #[arg(long)]
    force: bool,

    /// Print the counts as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: RunsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RunsCommand::List(a) => list(a).await,
        RunsCommand::Show(a) => show(a).await,
        RunsCommand::Purge(a) => purge(a).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.connect().await?;
    records::ensure_run_tables(&db).await?;
    let runs = records::list_runs(&db).await?;
    let orders = records::orders_by_run(&db).await?;
    if args.json {
        let v: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "run_id": r.run_id,
                    "status": r.status,
                    "persona_set": r.persona_set,
                    "agents": r.agents,
                    "sim_start": r.sim_start,
                    "sim_end": r.sim_end,
                    "created_at": r.created_at,
                    "orders": orders.get(&r.run_id).copied().unwrap_or(0),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("no runs recorded in {}", db.url());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<11} {:<20} {:>8} {:<33} {:<20} {:>8}",
        "RUN", "STATUS", "PERSONA SET", "AGENTS", "SIMULATED SPAN", "CREATED", "ORDERS"
    );
    for r in &runs {
        println!(
            "{:<24} {:<11} {:<20} {:>8} {:<33} {:<20} {:>8}",
            r.run_id,
            r.status.as_str(),
            r.persona_set,
            r.agents,
            format!(
                "{} → {}",
                r.sim_start.format("%Y-%m-%d %H:%M"),
                r.sim_end.format("%Y-%m-%d %H:%M")
            ),
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            orders.get(&r.run_id).copied().unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.connect().await?;
    records::ensure_run_tables(&db).await?;
    let run = records::require_run(&db, &args.run_id).await?;
    let metrics = records::stored_snapshot(&db, &args.run_id).await?;
    let summary =
        RunSummary::from_database(&db, &args.run_id, &metrics, &WallInfo::from_record(&run))
            .await?;
    let rendered = match &args.render {
        Some(dir) => Some(records::write_renderings(dir, &summary)?),
        None => None,
    };
    if args.json {
        let v = serde_json::json!({"record": run, "summary": summary});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", summary.to_markdown());
        println!();
        println!("## Record");
        println!();
        println!("- created: {}", run.created_at.to_rfc3339());
        println!("- updated: {}", run.updated_at.to_rfc3339());
        if let Some(f) = run.finished_at {
            println!("- finished: {}", f.to_rfc3339());
        }
        if let Some(c) = run.checkpoint_at {
            println!("- last checkpoint (simulated): {}", c.to_rfc3339());
        }
        println!("- config: {}", serde_json::to_string(&run.config)?);
        if let Some(dir) = rendered {
            println!();
            println!("renderings written to {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn purge(args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.connect().await?;
    records::ensure_run_tables(&db).await?;
    let report = records::purge_run(&db, &args.run_id, args.force).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("purged run {}", report.run_id);
        for (table, n) in &report.tables {
            println!("  {table:<24} {n:>10} row(s)");
        }
        println!("deleted {} row(s) in one transaction", report.total());
    }
    Ok(ExitCode::SUCCESS)
}
