//! `shopsim check`: compile a persona set and simulate it in memory, printing its statistics.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::Args;

use crate::behavior::PersonaSet;
use crate::behavior::check::{CheckConfig, CheckReport, World, run_check};

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

/// Compiles the set, simulates it and returns the report (what the tests call).
pub fn check_report(args: &CheckArgs) -> anyhow::Result<CheckReport> {
    if args.agents == 0 || args.days == 0 {
        anyhow::bail!("--agents and --days must be at least 1");
    }
    let set = PersonaSet::load(&args.behaviors, &args.persona_set)?;
    let world = World::new(crate::catalog::generate::generate(args.seed));
    let cfg = CheckConfig {
        seed: args.seed,
        agents: args.agents,
        days: args.days,
        start: args.start,
    };
    run_check(&set, &world, &cfg).context("simulating the persona set")
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
        format!("{:.4}", r.sessions_per_agent_day),
    );
    line(
        "sessions per agent-hour",
        format!("{:.4}%", 100.0 * r.sessions_per_agent_hour),
    );
    line("orders", r.orders.to_string());
    line(
        "abandoned",
        format!("{} ({:.1}%)", r.abandoned, 100.0 * r.abandon_rate),
    );
    line("events per session", format!("{:.2}", r.events_per_session));
    line(
        "products per basket",
        format!(
            "mean {:.2}, median {}",
            r.mean_basket_items, r.median_basket_items
        ),
    );
    line("mean order total", format!("${:.2}", r.mean_order_total));
    line(
        "offers applied per session",
        format!("{:.3}", r.offers_per_session),
    );
    line("out-of-stock adds", r.out_of_stock.to_string());
    line("orders by hour", format!("{:?}", r.orders_by_hour));
    line(
        "orders by weekday (Mon..)",
        format!("{:?}", r.orders_by_weekday),
    );
    line(
        "days between orders",
        format!("{:?}", r.days_between_orders),
    );
    line("decision errors", r.decision_errors.to_string());
    for e in &r.errors {
        line("  error", e.clone());
    }
    s
}

/// Runs `shopsim check`.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let report = check_report(&args)?;
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
