//! Run records in shopsim's own tables: the run (`sim_runs`), each agent's daily decision
//! (`sim_agent_days`), planned sessions and how far they got (`sim_sessions`), and per-interval
//! metrics with serialised HDR histograms (`sim_metrics`).
//!
//! Decisions are written with batched `INSERT … ON CONFLICT DO NOTHING`: a decision already
//! recorded is never overwritten, so a resumed run reuses what it decided before the crash.
//! Wall-clock stamps (`created_at`, `updated_at`, `finished_at`) are facts about the process,
//! not the simulation: they are taken from the system clock here and never exported.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::Value;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use uuid::Uuid;

use super::RecordsError;
use crate::sim::metrics::{
    self, Counter, Endpoint, EndpointSummary, IntervalHistograms, LatencySummary, Outcome, Snapshot,
};
use crate::store::batch::insert_ignore;
use crate::store::{Backend, Codec, Db, Row, Stmt, StoreError, Tx};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Being simulated now (or crashed without saying so).
    Running,
    /// Reached its simulated end.
    Finished,
    /// Stopped early (Ctrl-C, `q`); resumable.
    Interrupted,
    /// Stopped by an error; resumable once the cause is fixed.
    Failed,
}

impl RunStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Finished,
            RunStatus::Interrupted,
            RunStatus::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run: its identity, immutable configuration and progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id (`--run-id`, or generated).
    pub run_id: String,
    /// Where it stands.
    pub status: RunStatus,
    /// The full configuration as JSON (everything needed to resume or re-render).
    pub config: Json,
    /// The run seed.
    pub seed: u64,
    /// The persona set.
    pub persona_set: String,
    /// Number of agents.
    pub agents: u64,
    /// Simulated start.
    pub sim_start: DateTime<Utc>,
    /// Simulated end.
    pub sim_end: DateTime<Utc>,
    /// Simulated time of the last checkpoint.
    pub checkpoint_at: Option<DateTime<Utc>>,
    /// The clock schedule at the last checkpoint (JSON of `ClockSchedule`).
    pub clock: Option<Json>,
    /// Wall-clock creation.
    pub created_at: DateTime<Utc>,
    /// Wall-clock last update.
    pub updated_at: DateTime<Utc>,
    /// Wall-clock end (finished, interrupted or failed).
    pub finished_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    /// The run's calendar time zone (`timezone` in its configuration; UTC when absent or not
    /// an IANA name, as for runs recorded before the key existed).
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.config
            .get("timezone")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or(chrono_tz::Tz::UTC)
    }
}

/// One agent's decision for one simulated day, recorded before the agent acts on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDayRecord {
    /// The run.
    pub run_id: String,
    /// The agent's natural key (`agent_001`).
    pub agent_id: String,
    /// The simulated date (the run's calendar).
    pub sim_date: NaiveDate,
    /// Whether the agent shops that day.
    pub shops: bool,
    /// The day plan (planned sessions and anything else the script decided), as JSON.
    pub plan: Json,
    /// Version of the behaviour script that decided.
    pub script_version: String,
    /// Wall-clock time of the decision.
    pub created_at: DateTime<Utc>,
}

/// Where a planned session stands: planned → in_progress → completed | abandoned | failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Decided, not started.
    Planned,
    /// Started; some steps may have reached the API.
    InProgress,
    /// Ended in an order.
    Completed,
    /// Ended without an order.
    Abandoned,
    /// Ended by a step that failed.
    Failed,
}

impl SessionStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Planned => "planned",
            SessionStatus::InProgress => "in_progress",
            SessionStatus::Completed => "completed",
            SessionStatus::Abandoned => "abandoned",
            SessionStatus::Failed => "failed",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<SessionStatus> {
        [
            SessionStatus::Planned,
            SessionStatus::InProgress,
            SessionStatus::Completed,
            SessionStatus::Abandoned,
            SessionStatus::Failed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// True for the three outcomes (never changed once recorded).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SessionStatus::Completed | SessionStatus::Abandoned | SessionStatus::Failed
        )
    }
}

/// A planned shopping session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The shopping session id (the `X-Shopping-Session-Id` the actions send).
    pub session_id: Uuid,
    /// The run.
    pub run_id: String,
    /// The agent's natural key.
    pub agent_id: String,
    /// The simulated day it belongs to.
    pub sim_date: NaiveDate,
    /// Its number within the agent's day (0, 1, …).
    pub seq: u32,
    /// Simulated start time from the plan.
    pub planned_at: DateTime<Utc>,
    /// Where it stands.
    pub status: SessionStatus,
    /// Steps that reached the API.
    pub steps_done: u32,
    /// How it ended (JSON), once it has.
    pub outcome: Option<Json>,
    /// Wall-clock last update.
    pub updated_at: DateTime<Utc>,
}

/// What one metrics interval adds: counter and outcome deltas. Stored as the `counters` JSON
/// of `sim_metrics`; summing the intervals of every shard gives the run's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalCounters {
    /// Counter increments during the interval.
    #[serde(default)]
    pub counters: BTreeMap<Counter, u64>,
    /// Requests per endpoint and outcome during the interval.
    #[serde(default)]
    pub outcomes: BTreeMap<Endpoint, BTreeMap<Outcome, u64>>,
}

impl IntervalCounters {
    /// The increments from snapshot `before` to snapshot `now` (zeros left out).
    pub fn between(before: &Snapshot, now: &Snapshot) -> Self {
        let mut out = IntervalCounters::default();
        for (c, n) in &now.counters {
            let d = n.saturating_sub(before.counters.get(c).copied().unwrap_or(0));
            if d > 0 {
                out.counters.insert(*c, d);
            }
        }
        for (e, summary) in &now.endpoints {
            for (o, n) in &summary.outcomes {
                let prev = before
                    .endpoints
                    .get(e)
                    .and_then(|s| s.outcomes.get(o))
                    .copied()
                    .unwrap_or(0);
                let d = n.saturating_sub(prev);
                if d > 0 {
                    out.outcomes.entry(*e).or_default().insert(*o, d);
                }
            }
        }
        out
    }

    /// As stored.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }

    fn add(&mut self, other: &IntervalCounters) {
        for (c, n) in &other.counters {
            *self.counters.entry(*c).or_default() += n;
        }
        for (e, outcomes) in &other.outcomes {
            let mine = self.outcomes.entry(*e).or_default();
            for (o, n) in outcomes {
                *mine.entry(*o).or_default() += n;
            }
        }
    }
}

/// A JSON value, or SQL NULL (not JSON `null`) when absent.
fn opt_json(c: Codec, v: Option<&Json>) -> Value {
    match (v, c.backend()) {
        (Some(v), _) => c.json(v),
        (None, Backend::Postgres) => Value::from(Option::<Json>::None),
        (None, Backend::Sqlite) => Value::from(Option::<String>::None),
    }
}

fn run_from_row(r: &Row) -> Result<RunRecord, RecordsError> {
    let status = r.string("status")?;
    Ok(RunRecord {
        run_id: r.string("run_id")?,
        status: RunStatus::parse(&status).ok_or_else(|| StoreError::Decode {
            column: "sim_runs.status".into(),
            reason: format!("unknown run status `{status}`"),
        })?,
        config: r.json("config")?,
        // Stored as the seed's bit pattern: BIGINT is signed.
        seed: r.i64("seed")? as u64,
        persona_set: r.string("persona_set")?,
        agents: r.i64("agents")?.max(0) as u64,
        sim_start: r.ts("sim_start")?,
        sim_end: r.ts("sim_end")?,
        checkpoint_at: r.opt_ts("checkpoint_at")?,
        clock: match r.json("clock")? {
            Json::Null => None,
            v => Some(v),
        },
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        finished_at: r.opt_ts("finished_at")?,
    })
}

const RUN_COLS: &str = "run_id, status, config, seed, persona_set, agents, sim_start, sim_end, \
     checkpoint_at, clock, created_at, updated_at, finished_at";

/// Records a new run. A run id that already exists is refused ([`RecordsError::RunExists`]).
pub async fn create_run(db: &Db, run: &RunRecord) -> Result<(), RecordsError> {
    if run.run_id.trim().is_empty() {
        return Err(RecordsError::Invalid(
            "a run id must not be empty".to_string(),
        ));
    }
    if run.sim_end < run.sim_start {
        return Err(RecordsError::Invalid(format!(
            "run {}: the simulated end {} is before the start {}",
            run.run_id, run.sim_end, run.sim_start
        )));
    }
    let tx = db.write().await?;
    let c = tx.codec();
    let inserted = tx
        .exec(
            &format!(
                "INSERT INTO sim_runs ({RUN_COLS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (run_id) DO NOTHING"
            ),
            vec![
                run.run_id.clone().into(),
                run.status.as_str().into(),
                c.json(&run.config),
                (run.seed as i64).into(),
                run.persona_set.clone().into(),
                (run.agents.min(i64::MAX as u64) as i64).into(),
                c.ts(run.sim_start),
                c.ts(run.sim_end),
                c.opt_ts(run.checkpoint_at),
                opt_json(c, run.clock.as_ref()),
                c.ts(run.created_at),
                c.ts(run.updated_at),
                c.opt_ts(run.finished_at),
            ],
        )
        .await?;
    tx.commit().await?;
    if inserted == 0 {
        return Err(RecordsError::RunExists(run.run_id.clone()));
    }
    Ok(())
}

/// The run, if it exists.
pub async fn load_run(db: &Db, run_id: &str) -> Result<Option<RunRecord>, RecordsError> {
    let tx = db.read().await?;
    let row = tx
        .query_opt(
            &format!("SELECT {RUN_COLS} FROM sim_runs WHERE run_id = $1"),
            vec![run_id.to_string().into()],
        )
        .await?;
    tx.commit().await?;
    row.as_ref().map(run_from_row).transpose()
}

/// The run, or [`RecordsError::UnknownRun`].
pub async fn require_run(db: &Db, run_id: &str) -> Result<RunRecord, RecordsError> {
    load_run(db, run_id)
        .await?
        .ok_or_else(|| RecordsError::UnknownRun(run_id.to_string()))
}

/// Every run, newest first.
pub async fn list_runs(db: &Db) -> Result<Vec<RunRecord>, RecordsError> {
    let tx = db.read().await?;
    let rows = tx
        .query(
            &format!("SELECT {RUN_COLS} FROM sim_runs ORDER BY created_at DESC, run_id"),
            vec![],
        )
        .await?;
    tx.commit().await?;
    rows.iter().map(run_from_row).collect()
}

/// Records a checkpoint: the simulated time reached and the clock schedule (JSON).
pub async fn update_checkpoint(
    db: &Db,
    run_id: &str,
    sim_time: DateTime<Utc>,
    clock: &Json,
) -> Result<(), RecordsError> {
    let tx = db.write().await?;
    checkpoint_in(&tx, run_id, sim_time, clock).await?;
    tx.commit().await?;
    Ok(())
}

async fn checkpoint_in(
    tx: &Tx,
    run_id: &str,
    sim_time: DateTime<Utc>,
    clock: &Json,
) -> Result<(), RecordsError> {
    let c = tx.codec();
    let n = tx
        .exec(
            "UPDATE sim_runs SET checkpoint_at = $1, clock = $2, updated_at = $3 \
             WHERE run_id = $4",
            vec![
                c.ts(sim_time),
                c.json(clock),
                c.ts(Utc::now()),
                run_id.to_string().into(),
            ],
        )
        .await?;
    if n == 0 {
        return Err(RecordsError::UnknownRun(run_id.to_string()));
    }
    Ok(())
}

/// One hourly checkpoint of a shard in one transaction (one commit, one fsync), written only
/// while `fence` holds: the interval's metrics (as [`record_metrics_interval`]), the shard's
/// simulated time reached (the run's is the earliest of its shards') and, when given, the
/// run's clock schedule (an unsharded run's; shards share theirs through
/// [`crate::sim::shard::clock_sync`]).
pub async fn record_checkpoint(
    db: &Db,
    fence: &super::shards::Fence,
    interval: &MetricsInterval<'_>,
    clock: Option<&Json>,
) -> Result<(), RecordsError> {
    let tx = db.write().await?;
    fence.check(&tx).await?;
    metrics_interval_in(&tx, &fence.run_id, interval).await?;
    fence.checkpoint_in(&tx, interval.sim_time).await?;
    if let Some(clock) = clock {
        let c = tx.codec();
        tx.exec(
            "UPDATE sim_runs SET clock = $1 WHERE run_id = $2",
            vec![c.json(clock), fence.run_id.clone().into()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One metrics interval of one shard, as stored in `sim_metrics`.
#[derive(Debug, Clone, Copy)]
pub struct MetricsInterval<'a> {
    /// The shard (0 until runs are sharded).
    pub shard: u32,
    /// Its number within the shard (a resumed run continues the sequence).
    pub seq: u64,
    /// Simulated end of the interval.
    pub sim_time: DateTime<Utc>,
    /// Wall-clock time it was recorded.
    pub wall_time: DateTime<Utc>,
    /// Counter deltas (JSON of [`IntervalCounters`]).
    pub counters: &'a Json,
    /// The interval's histograms.
    pub histograms: &'a IntervalHistograms,
}

/// Sets the run's status. Any status but `running` stamps `finished_at`; `running` (a
/// resume) clears it.
pub async fn finish_run(db: &Db, run_id: &str, status: RunStatus) -> Result<(), RecordsError> {
    let tx = db.write().await?;
    let n = write_run_status(&tx, run_id, status, Utc::now()).await?;
    tx.commit().await?;
    if n == 0 {
        return Err(RecordsError::UnknownRun(run_id.to_string()));
    }
    Ok(())
}

/// Sets the run's status in the caller's transaction (`finished_at` as [`finish_run`] says);
/// returns the rows changed (0: no such run).
pub(crate) async fn write_run_status(
    tx: &Tx,
    run_id: &str,
    status: RunStatus,
    now: DateTime<Utc>,
) -> Result<u64, RecordsError> {
    let c = tx.codec();
    let finished = (status != RunStatus::Running).then_some(now);
    Ok(tx
        .exec(
            "UPDATE sim_runs SET status = $1, finished_at = $2, updated_at = $3 WHERE run_id = $4",
            vec![
                status.as_str().into(),
                c.opt_ts(finished),
                c.ts(now),
                run_id.to_string().into(),
            ],
        )
        .await?)
}

/// Records agents' day decisions in the caller's transaction. A (run, agent, date) already
/// recorded keeps its first decision. Returns how many were new.
pub async fn record_agent_days(tx: &Tx, days: &[AgentDayRecord]) -> Result<u64, RecordsError> {
    let c = tx.codec();
    let rows = days
        .iter()
        .map(|d| {
            vec![
                d.run_id.clone().into(),
                d.agent_id.clone().into(),
                c.date(d.sim_date),
                d.shops.into(),
                c.json(&d.plan),
                d.script_version.clone().into(),
                c.ts(d.created_at),
            ]
        })
        .collect();
    Ok(insert_ignore(
        tx,
        "sim_agent_days",
        &[
            "run_id",
            "agent_id",
            "sim_date",
            "shops",
            "plan",
            "script_version",
            "created_at",
        ],
        rows,
    )
    .await?)
}

/// Records planned sessions in the caller's transaction. A session already recorded (same
/// id, or same run, agent, date and number) is kept as it is. Returns how many were new.
pub async fn record_sessions(tx: &Tx, sessions: &[SessionRecord]) -> Result<u64, RecordsError> {
    let c = tx.codec();
    let rows = sessions
        .iter()
        .map(|s| {
            vec![
                c.uuid(s.session_id),
                s.run_id.clone().into(),
                s.agent_id.clone().into(),
                c.date(s.sim_date),
                i64::from(s.seq).into(),
                c.ts(s.planned_at),
                s.status.as_str().into(),
                i64::from(s.steps_done).into(),
                opt_json(c, s.outcome.as_ref()),
                c.ts(s.updated_at),
            ]
        })
        .collect();
    Ok(insert_ignore(
        tx,
        "sim_sessions",
        &[
            "session_id",
            "run_id",
            "agent_id",
            "sim_date",
            "seq",
            "planned_at",
            "status",
            "steps_done",
            "outcome",
            "updated_at",
        ],
        rows,
    )
    .await?)
}

/// Moves a session forward: sets its status, raises `steps_done` (never lowers it) and sets
/// the outcome when given. A session that already has a final status is left unchanged, and
/// a final session never goes back to `planned` or `in_progress`. Returns true when the row
/// changed.
pub async fn update_session(
    tx: &Tx,
    session_id: Uuid,
    status: SessionStatus,
    steps_done: u32,
    outcome: Option<&Json>,
) -> Result<bool, RecordsError> {
    let s = update_session_stmt(tx.codec(), session_id, status, steps_done, outcome);
    Ok(tx.exec(&s.sql, s.values).await? > 0)
}

/// The statement of [`update_session`], to share a round trip with other writes (see
/// [`crate::store::combine`]); it reports nothing back.
pub fn update_session_stmt(
    c: Codec,
    session_id: Uuid,
    status: SessionStatus,
    steps_done: u32,
    outcome: Option<&Json>,
) -> Stmt {
    // Allowed predecessors: in_progress may follow planned (or itself, to count steps);
    // a final status may follow planned or in_progress.
    let from: &str = match status {
        SessionStatus::Planned => "'planned'",
        SessionStatus::InProgress => "'planned', 'in_progress'",
        _ => "'planned', 'in_progress'",
    };
    Stmt::new(
        format!(
            "UPDATE sim_sessions SET status = $1, steps_done = {}, \
               outcome = COALESCE($3, outcome), updated_at = $4 \
             WHERE session_id = $5 AND status IN ({from})",
            c.greatest("steps_done", "$2")
        ),
        vec![
            status.as_str().into(),
            i64::from(steps_done).into(),
            opt_json(c, outcome),
            c.ts(Utc::now()),
            c.uuid(session_id),
        ],
    )
}

/// Records one metrics interval of one shard: counter deltas (JSON of [`IntervalCounters`])
/// and the interval's histograms. Recording the same (run, shard, seq) twice keeps the first.
#[allow(clippy::too_many_arguments)]
pub async fn record_metrics_interval(
    db: &Db,
    run_id: &str,
    shard: u32,
    seq: u64,
    sim_time: DateTime<Utc>,
    wall_time: DateTime<Utc>,
    counters: &Json,
    histograms: &IntervalHistograms,
) -> Result<(), RecordsError> {
    let tx = db.write().await?;
    metrics_interval_in(
        &tx,
        run_id,
        &MetricsInterval {
            shard,
            seq,
            sim_time,
            wall_time,
            counters,
            histograms,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn metrics_interval_in(
    tx: &Tx,
    run_id: &str,
    m: &MetricsInterval<'_>,
) -> Result<(), RecordsError> {
    let hist_text = serde_json::to_string(m.histograms)
        .map_err(|e| RecordsError::Invalid(format!("cannot serialise histograms: {e}")))?;
    let c = tx.codec();
    tx.exec(
        "INSERT INTO sim_metrics (run_id, shard, seq, sim_time, wall_time, counters, histograms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        vec![
            run_id.to_string().into(),
            i64::from(m.shard).into(),
            (m.seq.min(i64::MAX as u64) as i64).into(),
            c.ts(m.sim_time),
            c.ts(m.wall_time),
            c.json(m.counters),
            hist_text.into(),
        ],
    )
    .await?;
    Ok(())
}

/// The run's metrics rebuilt from its stored intervals (all shards): counters and outcomes
/// summed, histograms merged exactly. What `runs show` and re-rendered reports use.
pub async fn stored_snapshot(db: &Db, run_id: &str) -> Result<Snapshot, RecordsError> {
    let tx = db.read().await?;
    let rows = tx
        .query(
            "SELECT shard, seq, counters, histograms FROM sim_metrics WHERE run_id = $1 \
             ORDER BY shard, seq",
            vec![run_id.to_string().into()],
        )
        .await?;
    tx.commit().await?;
    let mut totals = IntervalCounters::default();
    let mut latency: BTreeMap<Endpoint, Vec<String>> = BTreeMap::new();
    let mut lag: Vec<String> = Vec::new();
    for r in &rows {
        let at = || {
            format!(
                "sim_metrics row (run {run_id}, shard {}, seq {})",
                r.i64("shard").unwrap_or(-1),
                r.i64("seq").unwrap_or(-1)
            )
        };
        let counters: IntervalCounters = serde_json::from_value(r.json("counters")?)
            .map_err(|e| RecordsError::Invalid(format!("{}: counters: {e}", at())))?;
        totals.add(&counters);
        if let Some(text) = r.opt_string("histograms")? {
            let h: IntervalHistograms = serde_json::from_str(&text)
                .map_err(|e| RecordsError::Invalid(format!("{}: histograms: {e}", at())))?;
            for (e, s) in h.latency {
                latency.entry(e).or_default().push(s);
            }
            lag.extend(h.lag);
        }
    }
    let mut endpoints = BTreeMap::new();
    for e in Endpoint::ALL {
        let merged = metrics::merge(latency.get(&e).into_iter().flatten().map(String::as_str))?;
        endpoints.insert(
            e,
            EndpointSummary {
                latency: LatencySummary::from_histogram(&merged),
                outcomes: totals.outcomes.get(&e).cloned().unwrap_or_default(),
            },
        );
    }
    let counters = Counter::ALL
        .into_iter()
        .map(|c| (c, totals.counters.get(&c).copied().unwrap_or(0)))
        .collect();
    Ok(Snapshot {
        endpoints,
        counters,
        lag: LatencySummary::from_histogram(&metrics::merge(lag.iter().map(String::as_str))?),
    })
}

/// Orders placed in each run's sessions (runs without orders are absent).
pub async fn orders_by_run(db: &Db) -> Result<BTreeMap<String, u64>, RecordsError> {
    let tx = db.read().await?;
    let rows = tx
        .query(
            "SELECT s.run_id, COUNT(*) AS n FROM orders o \
             JOIN sim_sessions s ON s.session_id = o.shopping_session_id GROUP BY s.run_id",
            vec![],
        )
        .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| Ok((r.string("run_id")?, r.i64("n")?.max(0) as u64)))
        .collect()
}

/// The `status` column of a `sim_sessions` row.
fn status_from_row(r: &Row) -> Result<SessionStatus, StoreError> {
    let status = r.string("status")?;
    SessionStatus::parse(&status).ok_or_else(|| StoreError::Decode {
        column: "sim_sessions.status".into(),
        reason: format!("unknown session status `{status}`"),
    })
}

fn session_from_row(r: &Row) -> Result<SessionRecord, RecordsError> {
    Ok(SessionRecord {
        session_id: r.uuid("session_id")?,
        run_id: r.string("run_id")?,
        agent_id: r.string("agent_id")?,
        sim_date: r.date("sim_date")?,
        seq: r.i64("seq")?.clamp(0, i64::from(u32::MAX)) as u32,
        planned_at: r.ts("planned_at")?,
        status: status_from_row(r)?,
        steps_done: r.i64("steps_done")?.clamp(0, i64::from(u32::MAX)) as u32,
        outcome: match r.json("outcome")? {
            Json::Null => None,
            v => Some(v),
        },
        updated_at: r.ts("updated_at")?,
    })
}

/// The day decisions recorded for `sim_date` in a run (a resumed run reuses them instead of
/// deciding again), in no particular order.
pub async fn load_agent_days(
    db: &Db,
    run_id: &str,
    sim_date: NaiveDate,
) -> Result<Vec<AgentDayRecord>, RecordsError> {
    let tx = db.read().await?;
    let rows = tx
        .query(
            "SELECT run_id, agent_id, sim_date, shops, plan, script_version, created_at \
             FROM sim_agent_days WHERE run_id = $1 AND sim_date = $2",
            vec![run_id.to_string().into(), tx.codec().date(sim_date)],
        )
        .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(AgentDayRecord {
                run_id: r.string("run_id")?,
                agent_id: r.string("agent_id")?,
                sim_date: r.date("sim_date")?,
                shops: r.bool("shops")?,
                plan: r.json("plan")?,
                script_version: r.string("script_version")?,
                created_at: r.ts("created_at")?,
            })
        })
        .collect()
}

/// The run's sessions that have no outcome yet (`planned` or `in_progress`), by planned time:
/// what a resumed run must reconcile or still run.
pub async fn unfinished_sessions(
    db: &Db,
    run_id: &str,
) -> Result<Vec<SessionRecord>, RecordsError> {
    let tx = db.read().await?;
    let rows = tx
        .query(
            "SELECT session_id, run_id, agent_id, sim_date, seq, planned_at, status, steps_done, \
               outcome, updated_at FROM sim_sessions \
             WHERE run_id = $1 AND status IN ('planned', 'in_progress') \
             ORDER BY planned_at, session_id",
            vec![run_id.to_string().into()],
        )
        .await?;
    tx.commit().await?;
    rows.iter().map(session_from_row).collect()
}

/// The recorded status of one session, if the session exists.
pub async fn session_status(
    db: &Db,
    session_id: Uuid,
) -> Result<Option<SessionStatus>, RecordsError> {
    let tx = db.read().await?;
    let row = tx
        .query_opt(
            "SELECT status FROM sim_sessions WHERE session_id = $1",
            vec![tx.codec().uuid(session_id)],
        )
        .await?;
    tx.commit().await?;
    Ok(row.as_ref().map(status_from_row).transpose()?)
}

/// The next free metrics interval number of `shard` in a run (a resumed run continues the
/// sequence; recording an existing number would be ignored).
pub async fn next_metrics_seq(db: &Db, run_id: &str, shard: u32) -> Result<u64, RecordsError> {
    let tx = db.read().await?;
    let row = tx
        .query_one(
            "SELECT MAX(seq) AS seq FROM sim_metrics WHERE run_id = $1 AND shard = $2",
            vec![run_id.to_string().into(), i64::from(shard).into()],
        )
        .await?;
    tx.commit().await?;
    Ok(row.opt_i64("seq")?.map_or(0, |s| s.max(-1) as u64 + 1))
}

/// Marks planned sessions as released to run (`in_progress`), in the caller's transaction.
/// Sessions already past `planned` are left as they are.
pub async fn mark_in_progress(tx: &Tx, session_ids: &[Uuid]) -> Result<u64, RecordsError> {
    let c = tx.codec();
    let mut n = 0;
    for chunk in session_ids.chunks(500) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let mut params = vec![c.ts(Utc::now())];
        params.extend(chunk.iter().map(|id| c.uuid(*id)));
        n += tx
            .exec(
                &format!(
                    "UPDATE sim_sessions SET status = 'in_progress', updated_at = $1 \
                     WHERE status = 'planned' AND session_id IN ({})",
                    placeholders.join(", ")
                ),
                params,
            )
            .await?;
    }
    Ok(n)
}

/// One ended session of a run as a resumed run replays it into its agent.
#[derive(Debug, Clone)]
pub struct EndedSession {
    /// The session.
    pub session_id: Uuid,
    /// The agent's natural key.
    pub agent_id: String,
    /// Simulated date of its day plan.
    pub sim_date: NaiveDate,
    /// The recorded outcome (JSON of the engine's session report).
    pub outcome: Json,
}

/// The run's ended sessions (completed, abandoned, failed) with their outcomes, by agent and
/// planned time: what a resumed run replays into its agents and never runs again.
pub async fn ended_sessions(db: &Db, run_id: &str) -> Result<Vec<EndedSession>, RecordsError> {
    let tx = db.read().await?;
    let rows = tx
        .query(
            "SELECT session_id, agent_id, sim_date, outcome FROM sim_sessions \
             WHERE run_id = $1 AND status IN ('completed', 'abandoned', 'failed') \
             ORDER BY agent_id, planned_at, seq",
            vec![run_id.to_string().into()],
        )
        .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(EndedSession {
                session_id: r.uuid("session_id")?,
                agent_id: r.string("agent_id")?,
                sim_date: r.date("sim_date")?,
                outcome: r.json("outcome")?,
            })
        })
        .collect()
}
