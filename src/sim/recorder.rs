//! Run records in the database: day plans before anything acts on them, sessions released
//! and ended, and per-hour checkpoints with the interval's metrics.
//!
//! An unreachable database is an outage, not an error: every write is retried with backoff
//! (the run waits, shows it, and goes on when the database is back) for up to
//! `max_outage`; after that the run stops with a message, resumable from its last records.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::behavior::outputs::DayPlan;
use crate::sim::clock::PacedClock;
use crate::sim::engine::{DayDecision, RecordedPlans, Recorder, SessionDone};
use crate::sim::metrics::{Metrics, Snapshot};
use crate::sim::records::{
    AgentDayRecord, IntervalCounters, MetricsInterval, RecordsError, RunStatus, SessionRecord,
    SessionStatus, load_agent_days, load_shards, mark_in_progress, next_metrics_seq,
    record_agent_days, record_checkpoint, record_sessions, update_session_stmt,
};
use crate::sim::shard::Lease;
use crate::store::Db;

/// Writes the run's records to its database.
pub struct DbRecorder {
    db: Db,
    run_id: String,
    shard: u32,
    /// The shard's lease: every write checks its fence in its own transaction.
    lease: Arc<Lease>,
    metrics: Arc<Metrics>,
    pacer: Option<PacedClock>,
    seq: AtomicU64,
    last: Mutex<Snapshot>,
    checkpoint: Arc<Mutex<Option<DateTime<Utc>>>>,
    cancel: CancellationToken,
    max_outage: Duration,
    checkpoints: AtomicU64,
    checkpoint_nanos: AtomicU64,
    /// Ended sessions not written yet, and when the oldest of them ended.
    ended: Mutex<(Vec<EndedSession>, Option<std::time::Instant>)>,
    /// One batch of ended sessions is written at a time.
    writing: tokio::sync::Mutex<()>,
}

/// A session outcome waiting to be written.
struct EndedSession {
    id: uuid::Uuid,
    status: SessionStatus,
    steps: u32,
    outcome: serde_json::Value,
}

/// Ended sessions are written in batches of at most this many…
const ENDED_BATCH: usize = 256;
/// …or when the oldest waited this long. One lost on a crash is run again with its keys (its
/// writes are not applied twice), so batching costs a resume a little work, never data.
const ENDED_MAX_AGE: Duration = Duration::from_millis(100);

impl DbRecorder {
    /// A recorder for the shard of `run_id` that `lease` holds. A resumed shard continues its
    /// metrics intervals after the last one stored.
    pub async fn new(
        db: Db,
        run_id: &str,
        lease: Arc<Lease>,
        metrics: Arc<Metrics>,
        pacer: Option<PacedClock>,
        cancel: CancellationToken,
        max_outage: Duration,
    ) -> anyhow::Result<Self> {
        let shard = lease.spec().index;
        let seq = next_metrics_seq(&db, run_id, shard).await?;
        Ok(Self {
            db,
            run_id: run_id.to_string(),
            shard,
            lease,
            metrics,
            pacer,
            seq: AtomicU64::new(seq),
            last: Mutex::new(Snapshot::default()),
            checkpoint: Arc::new(Mutex::new(None)),
            cancel,
            max_outage,
            checkpoints: AtomicU64::new(0),
            checkpoint_nanos: AtomicU64::new(0),
            ended: Mutex::new((Vec::new(), None)),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// Checkpoints taken by this process and the wall time they took (metrics interval and
    /// checkpoint row): what `BENCHMARKS.md` reports as their cost.
    pub fn checkpoint_cost(&self) -> (u64, Duration) {
        (
            self.checkpoints.load(Ordering::Relaxed),
            Duration::from_nanos(self.checkpoint_nanos.load(Ordering::Relaxed)),
        )
    }

    /// Runs one write (or read of the run's records), waiting out database outages: retried
    /// with backoff while the database is unreachable, for up to `max_outage`.
    pub async fn retrying<T, F, Fut>(&self, what: &str, mut write: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RecordsError>>,
    {
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(100);
        let mut down = false;
        loop {
            match write().await {
                Ok(v) => {
                    if down {
                        tracing::warn!(what, waited = ?started.elapsed(), "the database is back; the run goes on");
                    }
                    return Ok(v);
                }
                Err(RecordsError::Store(e)) if e.is_unavailable() => {
                    if started.elapsed() >= self.max_outage {
                        anyhow::bail!(
                            "the database has been unreachable for {} while {what} ({e}); the run stopped and resumes from its last records with the same command (or `shopsim run --run-id {}`)",
                            humantime::format_duration(Duration::from_secs(
                                started.elapsed().as_secs()
                            )),
                            self.run_id
                        );
                    }
                    if !down {
                        down = true;
                        let msg = format!("database unreachable while {what}: {e}; waiting for it");
                        tracing::warn!("{msg}");
                        self.metrics.warn(msg);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.cancel.cancelled() => anyhow::bail!(
                            "stopped during a database outage while {what}; resume with `shopsim run --run-id {}`",
                            self.run_id
                        ),
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e @ RecordsError::LeaseLost { .. }) => {
                    // Fenced off: another process took the shard over. Stop the run.
                    self.lease.mark_lost(e.to_string());
                    self.cancel.cancel();
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes the buffered session outcomes (one transaction).
    async fn write_ended(&self) -> anyhow::Result<()> {
        let _one_at_a_time = self.writing.lock().await;
        let batch = {
            let mut ended = self.ended.lock();
            ended.1 = None;
            std::mem::take(&mut ended.0)
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.retrying("recording sessions' outcomes", || async {
            let tx = self.db.write().await?;
            // One round trip on PostgreSQL: the outcomes, then the fence check (a lost lease
            // rolls them back with the transaction).
            let codec = tx.codec();
            let mut seen = HashSet::with_capacity(batch.len());
            let writes = batch
                .iter()
                // A session recorded twice keeps its first outcome, as one update after
                // another would (a final status is never overwritten).
                .filter(|e| seen.insert(e.id))
                .map(|e| update_session_stmt(codec, e.id, e.status, e.steps, Some(&e.outcome)))
                .collect();
            self.lease.fence().check_after(&tx, writes).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
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
        self.retrying("recording day plans", || async {
            let tx = self.db.write().await?;
            self.lease.fence().check(&tx).await?;
            record_agent_days(&tx, &days).await?;
            record_sessions(&tx, &sessions).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn sessions_started(&self, ids: &[uuid::Uuid]) -> anyhow::Result<()> {
        self.retrying("marking sessions in progress", || async {
            let tx = self.db.write().await?;
            self.lease.fence().check(&tx).await?;
            mark_in_progress(&tx, ids).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn recorded_plans(&self, date: NaiveDate) -> anyhow::Result<RecordedPlans> {
        let rows = self
            .retrying("reading recorded day plans", || {
                load_agent_days(&self.db, &self.run_id, date)
            })
            .await?;
        let mut plans = RecordedPlans::with_capacity(rows.len());
        for r in rows {
            let plan: DayPlan = serde_json::from_value(r.plan).map_err(|e| {
                anyhow::anyhow!(
                    "the recorded day plan of {} on {date} in run {} does not parse ({e}); the run's records are damaged",
                    r.agent_id,
                    self.run_id
                )
            })?;
            plans.insert(r.agent_id.into(), (plan, r.script_version.into()));
        }
        Ok(plans)
    }

    async fn session_ended(&self, done: &SessionDone) -> anyhow::Result<()> {
        // An interrupted session stays as it is: resumed later with the same idempotency
        // keys. One the actions recorded with its work needs nothing more.
        let Some(status) = done.report.status() else {
            return Ok(());
        };
        if done.report.recorded {
            return Ok(());
        }
        let outcome = serde_json::to_value(&done.report)?;
        let due = {
            let mut ended = self.ended.lock();
            ended.0.push(EndedSession {
                id: done.session_id,
                status,
                steps: done.report.steps,
                outcome,
            });
            let oldest = *ended.1.get_or_insert_with(std::time::Instant::now);
            ended.0.len() >= ENDED_BATCH || oldest.elapsed() >= ENDED_MAX_AGE
        };
        if due {
            self.write_ended().await
        } else {
            Ok(())
        }
    }

    async fn flush(&self) -> anyhow::Result<()> {
        self.write_ended().await
    }

    async fn before_day(&self, start: DateTime<Utc>) -> anyhow::Result<()> {
        let spec = self.lease.spec();
        if !spec.is_sharded() {
            return Ok(());
        }
        // Every shard has checkpointed the previous day (or finished): the day's restock and
        // plans then see what a single process would.
        let mut told = std::time::Instant::now();
        loop {
            let rows = self
                .retrying("reading the other shards' progress", || {
                    load_shards(&self.db, &self.run_id)
                })
                .await?;
            let behind: Vec<u32> = (0..spec.count)
                .filter(|i| {
                    !rows.iter().any(|r| {
                        r.shard == *i
                            && (r.status == RunStatus::Finished
                                || r.checkpoint_at.is_some_and(|c| c >= start))
                    })
                })
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if told.elapsed() >= Duration::from_secs(30) {
                tracing::warn!(?behind, day = %start, "waiting for other shards to finish the previous simulated day (`shopsim status {}` shows them)", self.run_id);
                told = std::time::Instant::now();
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = self.cancel.cancelled() => return Ok(()),
            }
        }
    }

    async fn hour_done(&self, end: DateTime<Utc>) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        // The sessions behind the checkpoint are on record before it.
        self.write_ended().await?;
        let now = self.metrics.snapshot();
        let counters = {
            let mut last = self.last.lock();
            let c = IntervalCounters::between(&last, &now);
            *last = now;
            c
        };
        let histograms = self.metrics.take_interval()?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (counters, wall) = (counters.to_json(), Utc::now());
        // Shards share the clock through its own task; checkpoints must not overwrite a change
        // another shard just made.
        let clock = match &self.pacer {
            _ if self.lease.spec().is_sharded() => None,
            Some(p) => Some(serde_json::to_value(p.schedule())?),
            None => Some(serde_json::json!({ "time_scale": "max" })),
        };
        let interval = MetricsInterval {
            shard: self.shard,
            seq,
            sim_time: end,
            wall_time: wall,
            counters: &counters,
            histograms: &histograms,
        };
        self.retrying("recording a checkpoint", || {
            record_checkpoint(&self.db, self.lease.fence(), &interval, clock.as_ref())
        })
        .await?;
        *self.checkpoint.lock() = Some(end);
        crate::logging::set_sim_time(end);
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.checkpoint_nanos.fetch_add(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(())
    }
}
