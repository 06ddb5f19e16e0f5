//! `shopsim check`: compile a persona set and run it through the simulation engine in
//! process on an in-memory database, printing its statistics.
//!
//! The analyst's loop: no server, no files. The numbers are those of
//! `shopsim run --actions inprocess --time-scale max` with the same seed, persona set, agents,
//! start and days on a fresh database — the same engine, domain and summary code computes them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::Args;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::domain::ShopConfig;
use crate::sim::clock::TimeScale;
use crate::sim::records::{RunSummary, ShoppingStats};
use crate::sim::run::{ActionsMode, AuthMode, RunSettings, simulate};
use crate::store::{DatabaseUrl, Db, DbConfig};

/// Flags of `shopsim check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Persona set: a folder `<behaviors>/<NAME>/` with a `main.rhai`.
    #[arg(long, default_value = "grocery")]
    pub persona_set: String,
    /// The behaviours folder.
    #[arg(long, default_value = "behaviors")]
    pub behaviors: PathBuf,
    /// Agents to simulate.
    #[arg(long, default_value_t = 100)]
    pub agents: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Seed of the catalog, personas and every decision.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First simulated date (YYYY-MM-DD).
    #[arg(long, default_value = "2024-01-01")]
    pub start: NaiveDate,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The statistics `shopsim check` prints. No wall-clock fields: the same seed gives
/// byte-identical JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckReport {
    /// Persona set.
    pub persona_set: String,
    /// Content hash of its scripts.
    pub script_version: String,
    /// Seed.
    pub seed: u64,
    /// Agents simulated.
    pub agents: u64,
    /// Days simulated.
    pub days: u32,
    /// First date.
    pub start: String,
    /// Agent-days.
    pub agent_days: u64,
    /// Sessions started.
    pub sessions: u64,
    /// Sessions that ended in an order.
    pub orders: u64,
    /// Sessions abandoned (including empty carts).
    pub abandoned: u64,
    /// abandoned ÷ sessions that ended.
    pub abandon_rate: f64,
    /// Session events (views, adds, offer views and applies, checkout or abandon).
    pub events: u64,
    /// Offers applied.
    pub offers_applied: u64,
    /// Adds refused for lack of stock.
    pub out_of_stock: u64,
    /// Rates, baskets and timing.
    #[serde(flatten)]
    pub shopping: ShoppingStats,
    /// Decisions that failed (the agent-day or step went on without them).
    pub decision_errors: u64,
    /// The first few decision errors.
    pub errors: Vec<String>,
}

impl CheckReport {
    /// The check's figures from a run summary (a `check`, or a `run` to compare with).
    pub fn from_summary(s: &RunSummary, days: u32, start: NaiveDate) -> CheckReport {
        CheckReport {
            persona_set: s.persona_set.clone(),
            script_version: s.script_versions.join(","),
            seed: s.seed,
            agents: s.agents,
            days,
            start: start.format("%Y-%m-%d").to_string(),
            agent_days: s.agent_days,
            sessions: s.sessions,
            orders: s.orders,
            abandoned: s.abandoned,
            abandon_rate: (s.abandon_rate * 1e6).round() / 1e6,
            events: s.events,
            offers_applied: s.offers_applied,
            out_of_stock: s
                .business_rejections
                .get("out_of_stock")
                .copied()
                .unwrap_or(0),
            shopping: s.shopping.clone(),
            decision_errors: s.errors.script,
            errors: s.warnings.iter().take(5).cloned().collect(),
        }
    }
}

/// Runs the check on a fresh in-memory database and returns the report (what the tests call).
pub async fn check_report(args: &CheckArgs) -> anyhow::Result<CheckReport> {
    if args.agents == 0 || args.days == 0 {
        anyhow::bail!("--agents and --days must be at least 1");
    }
    let db = Db::connect(&DbConfig::new(DatabaseUrl::parse("sqlite::memory:")?))
        .await
        .context("opening the in-memory database")?;
    let settings = RunSettings {
        run_id: "check".into(),
        persona_set: args.persona_set.clone(),
        behaviors: args.behaviors.clone(),
        agents: args.agents as u64,
        seed: args.seed,
        start: Some(args.start),
        days: args.days,
        until: None,
        timezone: "UTC".into(),
        time_scale: TimeScale::Max,
        concurrency: 50,
        ramp_up_hours: 0,
        actions: ActionsMode::Inprocess,
        api_url: None,
        auth: AuthMode::Dev,
        run_dir: PathBuf::from("simulation_runs"),
        restock_level: ShopConfig::default().restock_level,
        max_outage: std::time::Duration::from_secs(60),
        checkpoint_every: crate::sim::run::default_checkpoint_every(),
        thresholds: Vec::new(),
        abort_on_threshold: false,
        metrics_addr: None,
        hot_reload: false,
        status_line: false,
        report: false,
        tui: false,
        sharding: Default::default(),
    };
    let summary = simulate(db.clone(), settings, CancellationToken::new())
        .await?
        .summary;
    db.close().await;
    Ok(CheckReport::from_summary(&summary, args.days, args.start))
}

/// The report as `check --json` prints it.
pub fn to_json(r: &CheckReport) -> anyhow::Result<String> {
    Ok(serde_json::to_string(r)?)
}

/// The report as a table.
pub fn to_text(r: &CheckReport) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<28} {v}\n"));
    line(
        "persona set",
        format!("{} (version {})", r.persona_set, r.script_version),
    );
    line(
        "agents × days",
        format!(
            "{} × {} from {} (seed {})",
            r.agents, r.days, r.start, r.seed
        ),
    );
    line("agent-days", r.agent_days.to_string());
    line("sessions", r.sessions.to_string());
    line(
        "sessions per agent-day",
        format!("{:.4}", r.shopping.sessions_per_agent_day),
    );
    line(
        "sessions per agent-hour",
        format!("{:.4}%", 100.0 * r.shopping.sessions_per_agent_hour),
    );
    line("orders", r.orders.to_string());
    line(
        "abandoned",
        format!("{} ({:.1}%)", r.abandoned, 100.0 * r.abandon_rate),
    );
    line(
        "events per session",
        format!("{:.2}", r.shopping.events_per_session),
    );
    line(
        "products per basket",
        format!(
            "mean {:.2}, median {}",
            r.shopping.mean_basket_items, r.shopping.median_basket_items
        ),
    );
    line(
        "mean order total",
        format!("${:.2}", r.shopping.mean_order_total),
    );
    line(
        "offers applied per session",
        format!("{:.3}", r.shopping.offers_per_session),
    );
    line("out-of-stock adds", r.out_of_stock.to_string());
    line("orders by hour", format!("{:?}", r.shopping.orders_by_hour));
    line(
        "orders by weekday (Mon..)",
        format!("{:?}", r.shopping.orders_by_weekday),
    );
    line(
        "days between orders",
        format!("{:?}", r.shopping.days_between_orders),
    );
    line("decision errors", r.decision_errors.to_string());
    for e in &r.errors {
        line("  error", e.clone());
    }
    s
}

/// Runs `shopsim check`.
pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let report = check_report(&args).await?;
    if args.json {
        println!("{}", to_json(&report)?);
    } else {
        print!("{}", to_text(&report));
    }
    // A set whose decisions fail is broken even if it compiles.
    Ok(if report.decision_errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
