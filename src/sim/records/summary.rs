//! The run summary: business counts read FROM THE DATABASE (so they equal what the database
//! holds), request figures and errors from the run's metrics, rendered as `summary.md` and
//! `metadata.json` in `<run-dir>/<run_id>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RecordsError;
use super::runs::{RunRecord, RunStatus, require_run};
use super::scope::{run_session_ids, run_user_ids};
use super::shopping::{OrdersByDate, ShoppingStats, Totals};
use crate::money::Money;
use crate::sim::clock::TimeScale;
use crate::sim::metrics::{Counter, LatencySummary, Outcome, Snapshot};
use crate::sim::thresholds::ThresholdResult;
use crate::store::Db;

/// Wall-clock facts the database does not hold exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WallInfo {
    /// How long the run took (this process; for a resumed run, this part).
    pub wall: Duration,
    /// The time scale asked for.
    pub target: Option<TimeScale>,
}

impl WallInfo {
    /// Best knowledge from the record alone: wall time from creation to the end (or the last
    /// update), and the target scale from the config's `time_scale` key if it has one.
    pub fn from_record(run: &RunRecord) -> WallInfo {
        let end = run.finished_at.unwrap_or(run.updated_at);
        let wall = (end - run.created_at).to_std().unwrap_or_default();
        let target = match run.config.get("time_scale") {
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            Some(serde_json::Value::Number(n)) => n
                .as_f64()
                .and_then(|f| (f.is_finite() && f > 0.0).then_some(TimeScale::Scaled(f))),
            _ => None,
        };
        WallInfo { wall, target }
    }
}

/// Requests of one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointLine {
    /// Requests.
    pub requests: u64,
    /// Latency percentiles (ms).
    #[serde(flatten)]
    pub latency: LatencySummary,
    /// Requests by outcome.
    pub outcomes: BTreeMap<Outcome, u64>,
}

/// Errors by class (business rejections are not errors).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// API 5xx.
    pub api_5xx: u64,
    /// Other 4xx.
    pub other_4xx: u64,
    /// 429 Too Many Requests.
    pub rate_limited_429: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Connection errors.
    pub connection: u64,
    /// Database errors.
    pub db: u64,
    /// Behaviour script errors.
    pub script: u64,
}

impl ErrorCounts {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.api_5xx
            + self.other_4xx
            + self.rate_limited_429
            + self.timeouts
            + self.connection
            + self.db
            + self.script
    }
}

/// A run's summary (`metadata.json` is this, serialised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run.
    pub run_id: String,
    /// Where it stands.
    pub status: RunStatus,
    /// Persona set.
    pub persona_set: String,
    /// Seed.
    pub seed: u64,
    /// Wall duration in seconds.
    pub wall_seconds: f64,
    /// Simulated start.
    pub sim_start: DateTime<Utc>,
    /// Simulated end as configured.
    pub sim_end: DateTime<Utc>,
    /// Simulated time reached (the end for a finished run, else the last checkpoint).
    pub sim_reached: DateTime<Utc>,
    /// Simulated hours covered.
    pub simulated_hours: f64,
    /// Target time scale (`max`, `96x`), when known.
    pub time_scale_target: Option<String>,
    /// Simulated seconds per wall second actually achieved.
    pub time_scale_achieved: Option<f64>,
    /// Agents with at least one recorded day.
    pub agents: u64,
    /// Agent-days recorded.
    pub agent_days: u64,
    /// Sessions planned.
    pub sessions_planned: u64,
    /// Sessions started (not `planned`).
    pub sessions: u64,
    /// Sessions that ended in an order.
    pub sessions_completed: u64,
    /// Sessions abandoned.
    pub abandoned: u64,
    /// Sessions ended by a failed step.
    pub sessions_failed: u64,
    /// abandoned / (completed + abandoned + failed); 0 with no ended session.
    pub abandon_rate: f64,
    /// Orders placed in the run's sessions.
    pub orders: u64,
    /// Sum of their final totals.
    pub revenue: Money,
    /// Offers assigned to the run's agents within the run's window.
    pub offers_assigned: u64,
    /// `coupon_apply` events in the run's sessions.
    pub offers_applied: u64,
    /// Of the offers assigned, those redeemed by an order.
    pub offers_redeemed: u64,
    /// Session events of the run.
    pub events: u64,
    /// Events by type.
    pub events_by_type: BTreeMap<String, u64>,
    /// Requests per endpoint (from the metrics).
    pub requests: BTreeMap<String, EndpointLine>,
    /// Business rejections by kind (outcomes, not errors): out_of_stock, offer_refused,
    /// other_rejection.
    pub business_rejections: BTreeMap<String, u64>,
    /// Errors by class.
    pub errors: ErrorCounts,
    /// Release lag in paced mode (absent in `max` mode or with no samples).
    pub lag: Option<LatencySummary>,
    /// Versions (content hashes) of the persona set's scripts that made the day decisions.
    pub script_versions: Vec<String>,
    /// How the shoppers shopped (the statistics `shopsim check` prints).
    pub shopping: ShoppingStats,
    /// The last warnings of the run (script errors first of all); empty when re-rendered
    /// from the database, where only their count is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The run's thresholds, checked at its end (`--threshold`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<ThresholdResult>,
    /// The crossed threshold that stopped the run early (`--abort-on-threshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_by_threshold: Option<String>,
}

impl RunSummary {
    /// Builds the summary of `run_id`: business counts from the database, requests, errors
    /// and lag from `metrics` (the live snapshot at the end of a run, or
    /// [`super::stored_snapshot`] when re-rendering).
    pub async fn from_database(
        db: &Db,
        run_id: &str,
        metrics: &Snapshot,
        wall: &WallInfo,
    ) -> Result<RunSummary, RecordsError> {
        Ok(Self::with_orders_by_date(db, run_id, metrics, wall)
            .await?
            .0)
    }

    /// [`RunSummary::from_database`], with the run's orders per local date, counted in the
    /// same pass over its orders as the shopping statistics (the report charts them).
    pub async fn with_orders_by_date(
        db: &Db,
        run_id: &str,
        metrics: &Snapshot,
        wall: &WallInfo,
    ) -> Result<(RunSummary, OrdersByDate), RecordsError> {
        let run = require_run(db, run_id).await?;
        let tx = db.read().await?;
        let c = tx.codec();
        let run_v = || sea_orm::Value::from(run_id.to_string());
        let sessions_sql = run_session_ids("$1");

        let days = tx
            .query_one(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT agent_id) AS agents \
                 FROM sim_agent_days WHERE run_id = $1",
                vec![run_v()],
            )
            .await?;
        let agent_days = days.i64("n")?.max(0) as u64;
        let agents = days.i64("agents")?.max(0) as u64;

        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        for r in tx
            .query(
                "SELECT status, COUNT(*) AS n FROM sim_sessions WHERE run_id = $1 GROUP BY status",
                vec![run_v()],
            )
            .await?
        {
            by_status.insert(r.string("status")?, r.i64("n")?.max(0) as u64);
        }
        let st = |s: &str| by_status.get(s).copied().unwrap_or(0);
        let sessions_planned: u64 = by_status.values().sum();
        let (completed, abandoned, failed) = (st("completed"), st("abandoned"), st("failed"));

        let orders_row = tx
            .query_one(
                &format!(
                    "SELECT COUNT(*) AS n, COALESCE(SUM(final_total), 0) AS revenue FROM orders \
                     WHERE shopping_session_id IN ({sessions_sql})"
                ),
                vec![run_v()],
            )
            .await?;
        let orders = orders_row.i64("n")?.max(0) as u64;
        let revenue = orders_row.money("revenue")?;

        let mut events_by_type: BTreeMap<String, u64> = BTreeMap::new();
        for r in tx
            .query(
                &format!(
                    "SELECT event_type, COUNT(*) AS n FROM shopping_session_events \
                     WHERE session_id IN ({sessions_sql}) GROUP BY event_type"
                ),
                vec![run_v()],
            )
            .await?
        {
            events_by_type.insert(r.string("event_type")?, r.i64("n")?.max(0) as u64);
        }
        let events = events_by_type.values().sum();

        let offers_row = tx
            .query_one(
                &format!(
                    "SELECT COUNT(*) AS n, \
                       COALESCE(SUM(CASE WHEN status = 'used' THEN 1 ELSE 0 END), 0) AS used \
                     FROM user_coupons WHERE user_id IN ({}) \
                     AND assigned_at >= $2 AND assigned_at <= $3",
                    run_user_ids("$1")
                ),
                vec![run_v(), c.ts(run.sim_start), c.ts(run.sim_end)],
            )
            .await?;
        let offers_assigned = offers_row.i64("n")?.max(0) as u64;
        let offers_redeemed = offers_row.i64("used")?.max(0) as u64;
        let mut script_versions = Vec::new();
        for r in tx
            .query(
                "SELECT script_version, MIN(created_at) AS first FROM sim_agent_days \
                 WHERE run_id = $1 GROUP BY script_version ORDER BY first, script_version",
                vec![run_v()],
            )
            .await?
        {
            script_versions.push(r.string("script_version")?);
        }
        let sessions = sessions_planned - st("planned");
        let offers_applied = events_by_type.get("coupon_apply").copied().unwrap_or(0);
        let (shopping, orders_by_date) = ShoppingStats::from_database(
            &tx,
            run_id,
            run.timezone(),
            Totals {
                agent_days,
                sessions,
                events,
                offers_applied,
            },
        )
        .await?;
        tx.commit().await?;

        let sim_reached = match run.status {
            RunStatus::Finished => run.sim_end,
            _ => run.checkpoint_at.unwrap_or(run.sim_start).min(run.sim_end),
        };
        let simulated = (sim_reached - run.sim_start).num_milliseconds().max(0) as f64 / 1000.0;
        let wall_seconds = wall.wall.as_secs_f64();
        let ended = completed + abandoned + failed;

        let mut requests = BTreeMap::new();
        for (e, s) in &metrics.endpoints {
            let n: u64 = s.outcomes.values().sum();
            if n == 0 && s.latency.count == 0 {
                continue;
            }
            requests.insert(
                e.name().to_string(),
                EndpointLine {
                    requests: n,
                    latency: s.latency,
                    outcomes: s.outcomes.clone(),
                },
            );
        }
        let business_rejections = [
            Outcome::OutOfStock,
            Outcome::OfferRefused,
            Outcome::OtherRejection,
        ]
        .into_iter()
        .map(|o| (o.name().to_string(), metrics.outcome_total(o)))
        .collect();
        let errors = ErrorCounts {
            api_5xx: metrics.outcome_total(Outcome::Api5xx),
            other_4xx: metrics.outcome_total(Outcome::Other4xx),
            rate_limited_429: metrics.outcome_total(Outcome::RateLimited),
            timeouts: metrics.outcome_total(Outcome::Timeout),
            connection: metrics.outcome_total(Outcome::Connection),
            db: metrics.outcome_total(Outcome::Db),
            script: metrics
                .counters
                .get(&Counter::ScriptErrors)
                .copied()
                .unwrap_or(0),
        };
        let paced = matches!(wall.target, Some(TimeScale::Scaled(_)));
        let summary = RunSummary {
            run_id: run.run_id.clone(),
            status: run.status,
            persona_set: run.persona_set.clone(),
            seed: run.seed,
            wall_seconds,
            sim_start: run.sim_start,
            sim_end: run.sim_end,
            sim_reached,
            simulated_hours: simulated / 3600.0,
            time_scale_target: wall.target.map(|t| t.to_string()),
            time_scale_achieved: (wall_seconds > 0.0).then(|| simulated / wall_seconds),
            agents,
            agent_days,
            sessions_planned,
            sessions,
            sessions_completed: completed,
            abandoned,
            sessions_failed: failed,
            abandon_rate: if ended == 0 {
                0.0
            } else {
                abandoned as f64 / ended as f64
            },
            orders,
            revenue,
            offers_assigned,
            offers_applied,
            offers_redeemed,
            events,
            events_by_type,
            requests,
            business_rejections,
            errors,
            lag: (paced && metrics.lag.count > 0).then_some(metrics.lag),
            script_versions,
            shopping,
            warnings: Vec::new(),
            thresholds: Vec::new(),
            aborted_by_threshold: None,
        };
        Ok((summary, orders_by_date))
    }

    /// The Markdown rendering (`summary.md`).
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let push = |s: &mut String, line: String| {
            s.push_str(&line);
            s.push('\n');
        };
        push(&mut s, format!("# Run `{}`", self.run_id));
        push(&mut s, String::new());
        push(&mut s, "| | |".into());
        push(&mut s, "|---|---|".into());
        let rows: Vec<(&str, String)> = vec![
            ("status", self.status.to_string()),
            ("persona set", self.persona_set.clone()),
            ("seed", self.seed.to_string()),
            ("wall duration", format!("{:.1} s", self.wall_seconds)),
            (
                "simulated span",
                format!(
                    "{} → {} ({:.1} h)",
                    self.sim_start.format("%Y-%m-%d %H:%M"),
                    self.sim_reached.format("%Y-%m-%d %H:%M"),
                    self.simulated_hours
                ),
            ),
            (
                "time scale (target / achieved)",
                format!(
                    "{} / {}",
                    self.time_scale_target.as_deref().unwrap_or("unknown"),
                    self.time_scale_achieved
                        .map_or("n/a".to_string(), |a| format!("{a:.0}x"))
                ),
            ),
            ("agents", self.agents.to_string()),
            ("agent-days", self.agent_days.to_string()),
            (
                "sessions (started / planned)",
                format!("{} / {}", self.sessions, self.sessions_planned),
            ),
            ("orders", self.orders.to_string()),
            ("revenue", self.revenue.to_string()),
            ("abandoned", self.abandoned.to_string()),
            ("abandon rate", format!("{:.1}%", self.abandon_rate * 100.0)),
            ("failed sessions", self.sessions_failed.to_string()),
            (
                "offers (assigned / applied / redeemed)",
                format!(
                    "{} / {} / {}",
                    self.offers_assigned, self.offers_applied, self.offers_redeemed
                ),
            ),
            ("events", self.events.to_string()),
        ];
        for (k, v) in rows {
            push(&mut s, format!("| {k} | {v} |"));
        }
        push(&mut s, String::new());
        push(&mut s, "## Shopping".into());
        push(&mut s, String::new());
        let sh = &self.shopping;
        for (k, v) in [
            (
                "sessions per agent-hour",
                format!("{:.3}%", 100.0 * sh.sessions_per_agent_hour),
            ),
            (
                "events per session",
                format!("{:.2}", sh.events_per_session),
            ),
            (
                "products per order (mean / median)",
                format!("{:.2} / {}", sh.mean_basket_items, sh.median_basket_items),
            ),
            ("mean order total", format!("${:.2}", sh.mean_order_total)),
            (
                "offers applied per session",
                format!("{:.3}", sh.offers_per_session),
            ),
            ("orders by hour (0–23)", format!("{:?}", sh.orders_by_hour)),
            (
                "orders by weekday (Mon–Sun)",
                format!("{:?}", sh.orders_by_weekday),
            ),
            ("script versions", self.script_versions.join(", ")),
        ] {
            push(&mut s, format!("- {k}: {v}"));
        }
        push(&mut s, String::new());
        push(&mut s, "## Requests".into());
        push(&mut s, String::new());
        if self.requests.is_empty() {
            push(&mut s, "No requests recorded.".into());
        } else {
            push(
                &mut s,
                "| endpoint | requests | p50 ms | p95 ms | p99 ms | max ms |".into(),
            );
            push(&mut s, "|---|---:|---:|---:|---:|---:|".into());
            for (name, e) in &self.requests {
                push(
                    &mut s,
                    format!(
                        "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                        e.requests,
                        e.latency.p50_ms,
                        e.latency.p95_ms,
                        e.latency.p99_ms,
                        e.latency.max_ms
                    ),
                );
            }
        }
        push(&mut s, String::new());
        push(
            &mut s,
            "## Business rejections (outcomes, not errors)".into(),
        );
        push(&mut s, String::new());
        for (k, v) in &self.business_rejections {
            push(&mut s, format!("- {k}: {v}"));
        }
        push(&mut s, String::new());
        push(&mut s, "## Errors".into());
        push(&mut s, String::new());
        let e = &self.errors;
        for (k, v) in [
            ("API 5xx", e.api_5xx),
            ("other 4xx", e.other_4xx),
            ("429 rate limited", e.rate_limited_429),
            ("timeouts", e.timeouts),
            ("connection", e.connection),
            ("database", e.db),
            ("script", e.script),
        ] {
            push(&mut s, format!("- {k}: {v}"));
        }
        if !self.thresholds.is_empty() || self.aborted_by_threshold.is_some() {
            push(&mut s, String::new());
            push(&mut s, "## Thresholds".into());
            push(&mut s, String::new());
            if let Some(why) = &self.aborted_by_threshold {
                push(&mut s, format!("The run was stopped early: {why}."));
                push(&mut s, String::new());
            }
            push(&mut s, "| threshold | value | verdict |".into());
            push(&mut s, "|---|---:|---|".into());
            for t in &self.thresholds {
                let verdict = if t.passed { "passed" } else { "**crossed**" };
                push(
                    &mut s,
                    format!("| `{}` | {} | {verdict} |", t.threshold, t.shown),
                );
            }
        }
        if let Some(lag) = &self.lag {
            push(&mut s, String::new());
            push(&mut s, "## Lag (paced mode)".into());
            push(&mut s, String::new());
            push(
                &mut s,
                format!(
                    "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events)",
                    lag.p50_ms, lag.p95_ms, lag.p99_ms, lag.max_ms, lag.count
                ),
            );
        }
        s
    }
}

impl RunSummary {
    /// The thresholds that were crossed (and why the run stopped early, if it did).
    pub fn crossed_thresholds(&self) -> Vec<String> {
        let mut crossed: Vec<String> = self
            .thresholds
            .iter()
            .filter(|t| !t.passed)
            .map(|t| format!("{} (measured {})", t.threshold, t.shown))
            .collect();
        if crossed.is_empty()
            && let Some(why) = &self.aborted_by_threshold
        {
            crossed.push(why.clone());
        }
        crossed
    }
}

/// Writes `summary.md` and `metadata.json` into `<run_dir>/<run_id>/` (created if missing)
/// and returns that folder.
pub fn write_renderings(run_dir: &Path, summary: &RunSummary) -> Result<PathBuf, RecordsError> {
    let dir = run_dir.join(&summary.run_id);
    std::fs::create_dir_all(&dir).map_err(|e| RecordsError::io(&dir, e))?;
    let md = dir.join("summary.md");
    std::fs::write(&md, summary.to_markdown()).map_err(|e| RecordsError::io(&md, e))?;
    let meta = dir.join("metadata.json");
    let json = serde_json::to_string_pretty(summary)
        .map_err(|e| RecordsError::Invalid(format!("cannot serialise the summary: {e}")))?;
    std::fs::write(&meta, json + "\n").map_err(|e| RecordsError::io(&meta, e))?;
    Ok(dir)
}
