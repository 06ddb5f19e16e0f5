//! `shopsim status RUN_ID`: where a run stands, shard by shard — progress, simulated clock,
//! lag, sessions ended and lease (owner, fencing number, heartbeat age) — read from the
//! database, so it works for shards on any machine.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Args;

use super::common::DbArgs;
use crate::sim::records::{self, RunRecord, RunStatus, ShardRecord};

/// Show a run's progress, shard by shard.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    db: DbArgs,

    /// The run.
    run_id: String,

    /// Print the run and its shards as JSON.
    #[arg(long)]
    json: bool,
}

/// How one shard stands now.
#[derive(Debug, serde::Serialize)]
struct ShardStatus<'a> {
    #[serde(flatten)]
    record: &'a ShardRecord,
    /// `held`, `lapsed` (a holder that stopped heartbeating: it may be taken over), or the
    /// shard's final status.
    lease: &'static str,
    /// Share of the run's simulated span the shard has checkpointed.
    progress: f64,
    /// Seconds since the last heartbeat.
    heartbeat_age_s: f64,
}

fn lease_state(r: &ShardRecord, now: DateTime<Utc>) -> &'static str {
    match r.status {
        RunStatus::Running if r.lease_until > now => "held",
        RunStatus::Running => "lapsed",
        other => other.as_str(),
    }
}

fn progress(run: &RunRecord, checkpoint: Option<DateTime<Utc>>) -> f64 {
    let span = (run.sim_end - run.sim_start).num_seconds().max(1) as f64;
    checkpoint.map_or(0.0, |c| {
        ((c - run.sim_start).num_seconds() as f64 / span).clamp(0.0, 1.0)
    })
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.connect().await?;
    records::ensure_run_tables(&db).await?;
    let run = records::require_run(&db, &args.run_id).await?;
    let rows = records::load_shards(&db, &args.run_id).await?;
    let now = Utc::now();
    let shards: Vec<ShardStatus<'_>> = rows
        .iter()
        .map(|r| ShardStatus {
            record: r,
            lease: lease_state(r, now),
            progress: progress(&run, r.checkpoint_at),
            heartbeat_age_s: (now - r.heartbeat_at).num_milliseconds().max(0) as f64 / 1000.0,
        })
        .collect();
    let count = rows.first().map_or(1, |r| r.shards);
    if args.json {
        let v = serde_json::json!({
            "run_id": run.run_id,
            "status": run.status,
            "sim_start": run.sim_start,
            "sim_end": run.sim_end,
            "checkpoint_at": run.checkpoint_at,
            "shards": count,
            "progress": progress(&run, run.checkpoint_at),
            "shard_status": shards,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "run {}: {} — {} shard(s), simulated {} → {}, checkpoint {} ({:.1}%)",
        run.run_id,
        run.status,
        count,
        run.sim_start.format("%Y-%m-%d %H:%M"),
        run.sim_end.format("%Y-%m-%d %H:%M"),
        run.checkpoint_at.map_or_else(
            || "none".to_string(),
            |c| c.format("%Y-%m-%d %H:%M").to_string()
        ),
        100.0 * progress(&run, run.checkpoint_at)
    );
    if shards.is_empty() {
        println!("no shard has started (runs recorded before shards had rows show none)");
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    println!(
        "{:>5}  {:<11} {:>7}  {:<16}  {:<16}  {:>9}  {:>9}  {:<7} {:>5}  {:>9}  OWNER",
        "SHARD",
        "STATUS",
        "DONE",
        "CHECKPOINT",
        "CLOCK",
        "LAG P99",
        "SESSIONS",
        "LEASE",
        "FENCE",
        "HEARTBEAT"
    );
    let missing: Vec<u32> = (0..count)
        .filter(|i| !rows.iter().any(|r| r.shard == *i))
        .collect();
    for s in &shards {
        let r = s.record;
        let ts = |t: Option<DateTime<Utc>>| {
            t.map_or_else(
                || "-".to_string(),
                |t| t.format("%Y-%m-%d %H:%M").to_string(),
            )
        };
        println!(
            "{:>5}  {:<11} {:>6.1}%  {:<16}  {:<16}  {:>9}  {:>9}  {:<7} {:>5}  {:>8.1}s  {}",
            format!("{}/{}", r.shard, r.shards),
            r.status.as_str(),
            100.0 * s.progress,
            ts(r.checkpoint_at),
            ts(r.sim_time),
            r.lag_p99_ms
                .map_or_else(|| "-".to_string(), |l| format!("{l:.0} ms")),
            r.sessions_ended,
            s.lease,
            r.fence,
            s.heartbeat_age_s,
            r.owner
        );
    }
    for i in missing {
        println!("{:>5}  not started", format!("{i}/{count}"));
    }
    Ok(ExitCode::SUCCESS)
}
