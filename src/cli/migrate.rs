//! `shopsim migrate [--check]`.

use std::process::ExitCode;

use clap::Args;

use super::common::DbArgs;
use crate::store;

/// Create missing tables, or check an existing database.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    db: DbArgs,

    /// Change nothing: report whether the database is compatible and what is missing
    /// (exit code 0 when compatible, 2 when not).
    #[arg(long)]
    check: bool,

    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.connect().await?;
    if args.check {
        let report = store::check(&db).await?;
        if args.json {
            let mut v = serde_json::to_value(&report)?;
            v["compatible"] = serde_json::Value::Bool(report.compatible());
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!("database: {}", db.url());
            for p in &report.problems {
                println!("  problem: {p}");
            }
            for m in &report.pending_migrations {
                println!("  pending migration: {m}");
            }
            for e in &report.missing_extensions {
                println!(
                    "  note: optional extension column {e} is absent (exports fall back to names)"
                );
            }
            if report.compatible() {
                println!("compatible: yes");
            } else {
                println!("compatible: no (run `shopsim migrate` to create what is missing)");
            }
        }
        return Ok(if report.compatible() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    let report = store::migrate(&db).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.created.is_empty() {
        println!("{}: schema up to date, nothing created", db.url());
    } else {
        println!(
            "{}: created {} table(s): {}",
            db.url(),
            report.created.len(),
            report.created.join(", ")
        );
        if !report.kept.is_empty() {
            println!("left unchanged: {}", report.kept.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
