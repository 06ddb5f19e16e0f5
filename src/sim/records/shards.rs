//! The shards of a run (`sim_shards`): one row per shard holding its lease — the process that
//! owns the slice, a fencing number raised by every takeover, a heartbeat and the instant the
//! lease lapses — and its progress (checkpoint, simulated clock, lag, sessions ended).
//!
//! A lease is a row, not an advisory lock, because advisory locks belong to a session and a
//! transaction-mode pooler (PgBouncer, Supabase's pooler) hands sessions around. Every write a
//! shard makes for its slice checks its fencing number inside the write's own transaction
//! ([`Fence::check`]), so a process that lost its lease (paused, partitioned, presumed dead)
//! cannot write once another took over: the takeover's `UPDATE` and the check take the same
//! row lock, so one of them sees the other's result.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::RecordsError;
use super::runs::{RunStatus, write_run_status};
use crate::store::combine::writes_then;
use crate::store::{Backend, Db, Row, Stmt, Tx};

/// One shard's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardRecord {
    /// The run.
    pub run_id: String,
    /// The shard's index (0-based).
    pub shard: u32,
    /// The run's number of shards.
    pub shards: u32,
    /// Where the shard stands (`running` while a process holds or held it without saying
    /// goodbye).
    pub status: RunStatus,
    /// The process that holds (or last held) the lease: `host:pid`.
    pub owner: String,
    /// The fencing number: raised by one at every acquisition.
    pub fence: i64,
    /// The owner's last heartbeat (wall clock).
    pub heartbeat_at: DateTime<Utc>,
    /// The lease lapses at this wall instant unless renewed.
    pub lease_until: DateTime<Utc>,
    /// The shard's last checkpoint (simulated).
    pub checkpoint_at: Option<DateTime<Utc>>,
    /// The shard's simulated clock at its last heartbeat.
    pub sim_time: Option<DateTime<Utc>>,
    /// p99 of the lag of its paced events, at its last heartbeat.
    pub lag_p99_ms: Option<f64>,
    /// Sessions the shard has ended (this process's count, at its last heartbeat).
    pub sessions_ended: u64,
    /// When the shard was first started (wall clock).
    pub started_at: DateTime<Utc>,
}

impl ShardRecord {
    /// True while the lease has not lapsed at `now` and the shard is running.
    pub fn is_held(&self, now: DateTime<Utc>) -> bool {
        self.status == RunStatus::Running && self.lease_until > now
    }
}

const SHARD_COLS: &str = "run_id, shard, shards, status, owner, fence, heartbeat_at, lease_until, \
     checkpoint_at, sim_time, lag_p99_ms, sessions_ended, started_at";

fn shard_from_row(r: &Row) -> Result<ShardRecord, RecordsError> {
    let status = r.string("status")?;
    Ok(ShardRecord {
        run_id: r.string("run_id")?,
        shard: u32::try_from(r.i64("shard")?).unwrap_or(0),
        shards: u32::try_from(r.i64("shards")?).unwrap_or(1),
        status: RunStatus::parse(&status).ok_or_else(|| {
            RecordsError::Invalid(format!("sim_shards: unknown status `{status}`"))
        })?,
        owner: r.string("owner")?,
        fence: r.i64("fence")?,
        heartbeat_at: r.ts("heartbeat_at")?,
        lease_until: r.ts("lease_until")?,
        checkpoint_at: r.opt_ts("checkpoint_at")?,
        sim_time: r.opt_ts("sim_time")?,
        lag_p99_ms: r.opt_f64("lag_p99_ms")?,
        sessions_ended: r.i64("sessions_ended")?.max(0) as u64,
        started_at: r.ts("started_at")?,
    })
}

/// Every shard row of a run, by shard.
pub async fn load_shards(db: &Db, run_id: &str) -> Result<Vec<ShardRecord>, RecordsError> {
    let tx = db.read().await?;
    let rows = tx
        .query(
            &format!("SELECT {SHARD_COLS} FROM sim_shards WHERE run_id = $1 ORDER BY shard"),
            vec![run_id.to_string().into()],
        )
        .await?;
    tx.commit().await?;
    rows.iter().map(shard_from_row).collect()
}

/// What an attempt to take a shard's lease found.
#[derive(Debug, Clone)]
pub enum Acquire {
    /// The lease is ours with this fencing number; `previous` is the row as it was (its
    /// checkpoint is where the slice resumes), `None` for a shard's first start.
    Acquired {
        /// Our fencing number.
        fence: i64,
        /// The row before the takeover.
        previous: Option<ShardRecord>,
    },
    /// Another process holds the lease.
    Held(ShardRecord),
    /// The shard already finished: nothing to do.
    Finished(ShardRecord),
}

/// The lease's identity: who takes it, for how long, and whether a holder is known dead.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// The run.
    pub run_id: &'a str,
    /// The shard.
    pub shard: u32,
    /// The run's shard count.
    pub shards: u32,
    /// Our owner name (`host:pid`).
    pub owner: &'a str,
    /// How long a lease lasts without a heartbeat.
    pub ttl: chrono::Duration,
}

/// Tries once to take the lease of a shard: it is free when the shard has no row yet, when its
/// holder let it go (stopped cleanly), when it lapsed, or when `holder_gone` says its owner is
/// known dead (a process on this host that no longer exists). A shard recorded with another
/// shard count is an error.
pub async fn try_acquire(
    db: &Db,
    claim: &Claim<'_>,
    holder_gone: impl Fn(&str) -> bool,
) -> Result<Acquire, RecordsError> {
    let now = Utc::now();
    let tx = db.write().await?;
    let c = tx.codec();
    let others = tx
        .query(
            "SELECT DISTINCT shards FROM sim_shards WHERE run_id = $1",
            vec![claim.run_id.to_string().into()],
        )
        .await?;
    for r in &others {
        let n = r.i64("shards")?;
        if n != i64::from(claim.shards) {
            return Err(RecordsError::Invalid(format!(
                "run `{}` runs as {n} shards; this process was started as shard {} of {} (every shard of a run needs the same shard count)",
                claim.run_id, claim.shard, claim.shards
            )));
        }
    }
    let row = tx
        .query_opt(
            &format!(
                "SELECT {SHARD_COLS} FROM sim_shards WHERE run_id = $1 AND shard = $2{}",
                c.for_update()
            ),
            vec![
                claim.run_id.to_string().into(),
                i64::from(claim.shard).into(),
            ],
        )
        .await?;
    let until = now + claim.ttl;
    let Some(row) = row else {
        let inserted = tx
            .exec(
                &format!(
                    "INSERT INTO sim_shards ({SHARD_COLS}) \
                     VALUES ($1, $2, $3, 'running', $4, 1, $5, $6, NULL, NULL, NULL, 0, $5) \
                     ON CONFLICT DO NOTHING"
                ),
                vec![
                    claim.run_id.to_string().into(),
                    i64::from(claim.shard).into(),
                    i64::from(claim.shards).into(),
                    claim.owner.to_string().into(),
                    c.ts(now),
                    c.ts(until),
                ],
            )
            .await?;
        tx.commit().await?;
        return Ok(if inserted == 1 {
            Acquire::Acquired {
                fence: 1,
                previous: None,
            }
        } else {
            // Another process inserted it first: it holds the lease now.
            let rows = load_shards(db, claim.run_id).await?;
            match rows.into_iter().find(|r| r.shard == claim.shard) {
                Some(r) => Acquire::Held(r),
                None => {
                    return Err(RecordsError::Invalid(format!(
                        "the lease row of shard {} of run `{}` vanished while it was taken",
                        claim.shard, claim.run_id
                    )));
                }
            }
        });
    };
    let current = shard_from_row(&row)?;
    if current.status == RunStatus::Finished {
        tx.commit().await?;
        return Ok(Acquire::Finished(current));
    }
    if current.is_held(now) && !holder_gone(&current.owner) {
        tx.commit().await?;
        return Ok(Acquire::Held(current));
    }
    let fence = current.fence + 1;
    let n = tx
        .exec(
            "UPDATE sim_shards SET fence = $1, owner = $2, status = 'running', heartbeat_at = $3, \
             lease_until = $4 WHERE run_id = $5 AND shard = $6 AND fence = $7",
            vec![
                fence.into(),
                claim.owner.to_string().into(),
                c.ts(now),
                c.ts(until),
                claim.run_id.to_string().into(),
                i64::from(claim.shard).into(),
                current.fence.into(),
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(if n == 1 {
        Acquire::Acquired {
            fence,
            previous: Some(current),
        }
    } else {
        Acquire::Held(current)
    })
}

/// A shard's progress as its heartbeat reports it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardProgress {
    /// The shard's simulated clock now (paced) or its last checkpoint (`max`).
    pub sim_time: Option<DateTime<Utc>>,
    /// p99 lag of paced events so far.
    pub lag_p99_ms: Option<f64>,
    /// Sessions ended by this process.
    pub sessions_ended: u64,
}

/// The right to write for one shard: checked inside every write transaction.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The run.
    pub run_id: String,
    /// The shard.
    pub shard: u32,
    /// Our fencing number.
    pub fence: i64,
}

impl Fence {
    /// Fails with [`RecordsError::LeaseLost`] unless the shard's fencing number is still ours.
    /// On PostgreSQL the row is share-locked until the transaction ends, so a takeover waits
    /// for this write to commit (and a write after a takeover sees the new number).
    pub async fn check(&self, tx: &Tx) -> Result<(), RecordsError> {
        let s = self.check_stmt(tx.backend());
        let row = tx.query_opt(&s.sql, s.values).await?;
        self.checked(row.as_ref())
    }

    /// Like [`Fence::check`], after `writes` in the same round trip on PostgreSQL (see
    /// [`crate::store::combine`]). The writes are made either way: on
    /// [`RecordsError::LeaseLost`] the caller must roll the transaction back.
    pub async fn check_after(&self, tx: &Tx, writes: Vec<Stmt>) -> Result<(), RecordsError> {
        let rows = writes_then(tx, writes, self.check_stmt(tx.backend())).await?;
        self.checked(rows.first())
    }

    /// The query reading (and on PostgreSQL share-locking) the shard's row; judge its answer
    /// with [`Fence::checked`].
    pub fn check_stmt(&self, backend: Backend) -> Stmt {
        let lock = match backend {
            Backend::Postgres => " FOR SHARE",
            Backend::Sqlite => "",
        };
        Stmt::new(
            format!("SELECT fence, owner FROM sim_shards WHERE run_id = $1 AND shard = $2{lock}"),
            vec![self.run_id.clone().into(), i64::from(self.shard).into()],
        )
    }

    /// The verdict on the shard's row as [`Fence::check_stmt`] read it.
    pub fn checked(&self, row: Option<&Row>) -> Result<(), RecordsError> {
        match row {
            Some(r) if r.i64("fence")? == self.fence => Ok(()),
            Some(r) => Err(RecordsError::LeaseLost {
                run_id: self.run_id.clone(),
                shard: self.shard,
                owner: r.string("owner")?,
                fence: r.i64("fence")?,
            }),
            None => Err(RecordsError::LeaseLost {
                run_id: self.run_id.clone(),
                shard: self.shard,
                owner: "nobody (the shard's row was deleted)".into(),
                fence: 0,
            }),
        }
    }

    /// Renews the lease until `now + ttl` and reports progress; [`RecordsError::LeaseLost`]
    /// when another process took the shard over.
    pub async fn renew(
        &self,
        db: &Db,
        ttl: chrono::Duration,
        progress: &ShardProgress,
    ) -> Result<(), RecordsError> {
        let now = Utc::now();
        let tx = db.write().await?;
        let c = tx.codec();
        let n = tx
            .exec(
                "UPDATE sim_shards SET heartbeat_at = $1, lease_until = $2, sim_time = $3, \
                 lag_p99_ms = $4, sessions_ended = $5 \
                 WHERE run_id = $6 AND shard = $7 AND fence = $8",
                vec![
                    c.ts(now),
                    c.ts(now + ttl),
                    c.opt_ts(progress.sim_time),
                    progress.lag_p99_ms.into(),
                    (progress.sessions_ended.min(i64::MAX as u64) as i64).into(),
                    self.run_id.clone().into(),
                    i64::from(self.shard).into(),
                    self.fence.into(),
                ],
            )
            .await?;
        if n == 0 {
            // Says who holds it now.
            let err = self.check(&tx).await.err();
            tx.rollback().await?;
            return Err(err.unwrap_or_else(|| RecordsError::LeaseLost {
                run_id: self.run_id.clone(),
                shard: self.shard,
                owner: "another process".into(),
                fence: self.fence + 1,
            }));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records the shard's checkpoint in the caller's transaction (which checked the fence),
    /// and the run's as the earliest of its shards'.
    pub async fn checkpoint_in(
        &self,
        tx: &Tx,
        sim_time: DateTime<Utc>,
    ) -> Result<(), RecordsError> {
        let c = tx.codec();
        tx.exec(
            "UPDATE sim_shards SET checkpoint_at = $1 WHERE run_id = $2 AND shard = $3",
            vec![
                c.ts(sim_time),
                self.run_id.clone().into(),
                i64::from(self.shard).into(),
            ],
        )
        .await?;
        tx.exec(
            "UPDATE sim_runs SET checkpoint_at = \
               (SELECT MIN(checkpoint_at) FROM sim_shards WHERE run_id = $1), updated_at = $2 \
             WHERE run_id = $1",
            vec![self.run_id.clone().into(), c.ts(Utc::now())],
        )
        .await?;
        Ok(())
    }

    /// Lets the lease go with the shard's final status (a later process may take it at once)
    /// and sets the run's status from all its shards' ([`run_status_of`]), in one transaction
    /// that locks the run's row, so the last shard to end always leaves the run finished.
    /// Returns the run's status; [`RecordsError::LeaseLost`] when another process holds the
    /// shard by now (nothing is written then).
    pub async fn finish(
        &self,
        db: &Db,
        status: RunStatus,
        shards: u32,
    ) -> Result<RunStatus, RecordsError> {
        let now = Utc::now();
        let tx = db.write().await?;
        let c = tx.codec();
        lock_run(&tx, &self.run_id).await?;
        self.check(&tx).await?;
        tx.exec(
            "UPDATE sim_shards SET status = $1, lease_until = $2, heartbeat_at = $2 \
             WHERE run_id = $3 AND shard = $4",
            vec![
                status.as_str().into(),
                c.ts(now),
                self.run_id.clone().into(),
                i64::from(self.shard).into(),
            ],
        )
        .await?;
        let run_status = settled_status(&tx, &self.run_id, shards, self.shard, status, now).await?;
        write_run_status(&tx, &self.run_id, run_status, now).await?;
        tx.commit().await?;
        Ok(run_status)
    }
}

/// Locks the run's row for the rest of the transaction: shards settling the run's status
/// one after another each see the others' final rows.
async fn lock_run(tx: &Tx, run_id: &str) -> Result<(), RecordsError> {
    let found = tx
        .query_opt(
            &format!(
                "SELECT run_id FROM sim_runs WHERE run_id = $1{}",
                tx.codec().for_update()
            ),
            vec![run_id.to_string().into()],
        )
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(RecordsError::UnknownRun(run_id.to_string())),
    }
}

/// The run's status from its shards' rows as the transaction sees them (the caller holds the
/// run row's lock).
async fn settled_status(
    tx: &Tx,
    run_id: &str,
    shards: u32,
    me: u32,
    own: RunStatus,
    now: DateTime<Utc>,
) -> Result<RunStatus, RecordsError> {
    let rows = tx
        .query(
            &format!("SELECT {SHARD_COLS} FROM sim_shards WHERE run_id = $1 ORDER BY shard"),
            vec![run_id.to_string().into()],
        )
        .await?
        .iter()
        .map(shard_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(run_status_of(&rows, shards, me, own, now))
}

/// For a shard that found its slice already finished: marks the run finished if every shard
/// is (under the run row's lock, as [`Fence::finish`] does). Returns the run's status as the
/// shards' rows give it.
pub async fn settle_finished_run(
    db: &Db,
    run_id: &str,
    shards: u32,
    me: u32,
) -> Result<RunStatus, RecordsError> {
    let now = Utc::now();
    let tx = db.write().await?;
    lock_run(&tx, run_id).await?;
    let status = settled_status(&tx, run_id, shards, me, RunStatus::Finished, now).await?;
    if status == RunStatus::Finished {
        write_run_status(&tx, run_id, status, now).await?;
    }
    tx.commit().await?;
    Ok(status)
}

/// The run's status from its shards': finished when every one of `shards` finished, running
/// while another shard's lease is held, else `own` (how this shard ended).
pub fn run_status_of(
    rows: &[ShardRecord],
    shards: u32,
    me: u32,
    own: RunStatus,
    now: DateTime<Utc>,
) -> RunStatus {
    let finished = rows
        .iter()
        .filter(|r| r.status == RunStatus::Finished)
        .count();
    if finished as u64 >= u64::from(shards) {
        return RunStatus::Finished;
    }
    if rows.iter().any(|r| r.shard != me && r.is_held(now)) {
        return RunStatus::Running;
    }
    if own == RunStatus::Finished {
        // This slice is done; others are not running now: resumable, not finished.
        return RunStatus::Interrupted;
    }
    own
}
