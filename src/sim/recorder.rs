//! Run records in the database: day plans before anything acts on them, session outcomes,
//! and per-hour checkpoints with the interval's metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use crate::sim::clock::PacedClock;
use crate::sim::engine::{DayDecision, Recorder, SessionDone};
use crate::sim::metrics::{Metrics, Snapshot};
use crate::sim::records::{
    AgentDayRecord, IntervalCounters, SessionRecord, SessionStatus, record_agent_days,
    record_metrics_interval, record_sessions, update_checkpoint, update_session,
};
use crate::sim::session::SessionEnd;
use crate::store::Db;

/// Writes the run's records to its database.
pub struct DbRecorder {
    db: Db,
    run_id: String,
    shard: u32,
    metrics: Arc<Metrics>,
    pacer: Option<PacedClock>,
    seq: AtomicU64,
    last: Mutex<Snapshot>,
    checkpoint: Arc<Mutex<Option<DateTime<Utc>>>>,
}

impl DbRecorder {
    /// A recorder for `run_id` (shard 0 until runs are sharded).
    pub fn new(db: Db, run_id: &str, metrics: Arc<Metrics>, pacer: Option<PacedClock>) -> Self {
        Self {
            db,
            run_id: run_id.to_string(),
            shard: 0,
            metrics,
            pacer,
            seq: AtomicU64::new(0),
            last: Mutex::new(Snapshot::default()),
            checkpoint: Arc::new(Mutex::new(None)),
        }
    }

    /// The simulated time of the last checkpoint (for status lines).
    pub fn checkpoint(&self) -> Arc<Mutex<Option<DateTime<Utc>>>> {
        self.checkpoint.clone()
    }
}

#[async_trait::async_trait]
impl Recorder for DbRecorder {
    async fn day_planned(&self, decisions: &[DayDecision]) -> anyhow::Result<()> {
        let now = Utc::now();
        let mut days = Vec::with_capacity(decisions.len());
        let mut sessions = Vec::new();
        for d in decisions {
            days.push(AgentDayRecord {
                run_id: self.run_id.clone(),
                agent_id: d.agent_id.to_string(),
                sim_date: d.date,
                shops: !d.sessions.is_empty(),
                plan: serde_json::to_value(&d.plan)?,
                script_version: d.script_version.to_string(),
                created_at: now,
            });
            for r in &d.sessions {
                sessions.push(SessionRecord {
                    session_id: r.id,
                    run_id: self.run_id.clone(),
                    agent_id: d.agent_id.to_string(),
                    sim_date: d.date,
                    seq: r.seq,
                    planned_at: r.at,
                    status: SessionStatus::Planned,
                    steps_done: 0,
                    outcome: None,
                    updated_at: now,
                });
            }
        }
        let tx = self.db.write().await?;
        record_agent_days(&tx, &days).await?;
        record_sessions(&tx, &sessions).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session_ended(&self, done: &SessionDone) -> anyhow::Result<()> {
        let status = match &done.report.end {
            SessionEnd::Completed { .. } => SessionStatus::Completed,
            SessionEnd::Abandoned => SessionStatus::Abandoned,
            SessionEnd::Failed { .. } => SessionStatus::Failed,
            // Left in its current state: resumed later with the same idempotency keys.
            SessionEnd::Interrupted => return Ok(()),
        };
        let outcome = serde_json::to_value(&done.report)?;
        let tx = self.db.write().await?;
        update_session(
            &tx,
            done.session_id,
            status,
            done.report.steps,
            Some(&outcome),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn hour_done(&self, end: DateTime<Utc>) -> anyhow::Result<()> {
        let now = self.metrics.snapshot();
        let counters = {
            let mut last = self.last.lock();
            let c = IntervalCounters::between(&last, &now);
            *last = now;
            c
        };
        let histograms = self.metrics.take_interval()?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        record_metrics_interval(
            &self.db,
            &self.run_id,
            self.shard,
            seq,
            end,
            Utc::now(),
            &counters.to_json(),
            &histograms,
        )
        .await?;
        let clock = match &self.pacer {
            Some(p) => serde_json::to_value(p.schedule())?,
            None => serde_json::json!({ "time_scale": "max" }),
        };
        update_checkpoint(&self.db, &self.run_id, end, &clock).await?;
        *self.checkpoint.lock() = Some(end);
        Ok(())
    }
}
