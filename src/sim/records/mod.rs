//! Run records and what is built from them: the records themselves ([`runs`]), which rows
//! belong to a run ([`scope`]), the analysts' export ([`export`]), deleting a run
//! ([`purge`]), the run summary renderings ([`summary`]) and the shopping statistics in them
//! ([`shopping`]).
//!
//! ## Which rows are a run's
//! A run's rows are its `sim_*` rows; the `shopping_sessions` whose id is one of the run's
//! `sim_sessions`, their events, the orders placed in them and their items; the
//! `user_coupons` and `user_offer_cycles` rows of the run's agents' users assigned (refreshed)
//! within the run's simulated window [sim_start, sim_end]; the cart rows of those users; and
//! the reference server's idempotency records of the run (keys `run_id/…`). The run's agents
//! are those with a recorded day decision (`sim_agent_days`).

pub mod export;
pub mod format;
pub mod purge;
pub mod runs;
pub mod scope;
pub mod shards;
pub mod shopping;
pub mod summary;

pub use export::{ExportOptions, ExportReport, export_run, export_run_with};
pub use format::{Cell, Format};
pub use purge::{PurgeReport, purge_run};
pub use runs::{
    AgentDayRecord, EndedSession, IntervalCounters, MetricsInterval, RunRecord, RunStatus,
    SessionRecord, SessionStatus, create_run, ended_sessions, finish_run, list_runs,
    load_agent_days, load_run, mark_in_progress, next_metrics_seq, orders_by_run,
    record_agent_days, record_checkpoint, record_metrics_interval, record_sessions, require_run,
    stored_snapshot, unfinished_sessions, update_checkpoint, update_session, update_session_stmt,
};
pub use shards::{Acquire, Claim, Fence, ShardProgress, ShardRecord, load_shards};
pub use shopping::{DateOrders, OrdersByDate, ShoppingStats};
pub use summary::{RunSummary, WallInfo, write_renderings};

use crate::sim::metrics::MetricsError;
use crate::store::StoreError;

/// What can go wrong with run records, exports and renderings.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No run has this id.
    #[error("no run with id `{0}` in this database (list them with `shopsim runs list`)")]
    UnknownRun(String),
    /// The run id is taken.
    #[error(
        "a run with id `{0}` already exists; choose another --run-id, or resume or purge that run"
    )]
    RunExists(String),
    /// The run is still running and `--force` was not given.
    #[error(
        "run `{0}` is still marked running; stop it first, or pass --force if its process is gone"
    )]
    StillRunning(String),
    /// The database has no run records at all.
    #[error(
        "this database has no shopsim run tables ({0}); point --database-url at the database the run used, or run `shopsim migrate`"
    )]
    NoRunTables(String),
    /// Another process took this shard over: this one may not write for it any more.
    #[error(
        "shard {shard} of run `{run_id}` was taken over by {owner} (lease fence {fence}); this process stops without writing more for it"
    )]
    LeaseLost {
        /// The run.
        run_id: String,
        /// The shard.
        shard: u32,
        /// Who holds the lease now.
        owner: String,
        /// Their fencing number.
        fence: i64,
    },
    /// A value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Stored metrics are corrupt.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Checks that the database holds shopsim's run tables, so a wrong `--database-url` gets a
/// clear message instead of a driver error about a missing table.
pub async fn ensure_run_tables(db: &crate::store::Db) -> Result<(), RecordsError> {
    let tx = db.read().await?;
    match tx
        .query_opt("SELECT run_id FROM sim_runs LIMIT 1", vec![])
        .await
    {
        Ok(_) => {
            tx.commit().await?;
            Ok(())
        }
        Err(e) if e.is_unavailable() => Err(e.into()),
        Err(_) => Err(RecordsError::NoRunTables(db.url().to_string())),
    }
}

impl RecordsError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        RecordsError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
