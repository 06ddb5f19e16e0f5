//! `shopsim runs purge RUN_ID`: deletes every row the run created, in one transaction.
//!
//! Not restored: stock the run's orders took (restocking refills it at simulated midnight),
//! global `offer_cycles` rows (shared by every run of the same weeks) and the users' store
//! selection (`sim_user_stores`, one row per user, not per run).

use serde::Serialize;

use super::RecordsError;
use super::runs::{RunStatus, require_run};
use super::scope::{run_order_ids, run_session_ids, run_user_ids};
use crate::store::Db;

/// Rows deleted per table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// The run.
    pub run_id: String,
    /// (table, rows deleted), in deletion order.
    pub tables: Vec<(String, u64)>,
}

impl PurgeReport {
    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }

    /// Rows deleted from `table`.
    pub fn deleted(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(t, _)| t == table)
            .map_or(0, |(_, n)| *n)
    }
}

/// Deletes the run and every row attributed to it (see [`super`]). A run still marked
/// `running` is refused unless `force` (its process may still be writing).
pub async fn purge_run(db: &Db, run_id: &str, force: bool) -> Result<PurgeReport, RecordsError> {
    let run = require_run(db, run_id).await?;
    if run.status == RunStatus::Running && !force {
        return Err(RecordsError::StillRunning(run_id.to_string()));
    }
    let tx = db.write().await?;
    let c = tx.codec();
    let run_v = || sea_orm::Value::from(run_id.to_string());
    let window = || vec![run_v(), c.ts(run.sim_start), c.ts(run.sim_end)];
    let users = run_user_ids("$1");
    let sessions = run_session_ids("$1");
    let orders = run_order_ids("$1");
    // Children before parents; user-scoped rows before the agent days that identify the users.
    let statements: Vec<(&str, String, Vec<sea_orm::Value>)> = vec![
        (
            "order_items",
            format!("DELETE FROM order_items WHERE order_id IN ({orders})"),
            vec![run_v()],
        ),
        (
            "user_coupons",
            format!(
                "DELETE FROM user_coupons WHERE user_id IN ({users}) \
                 AND assigned_at >= $2 AND assigned_at <= $3"
            ),
            window(),
        ),
        (
            "orders",
            format!("DELETE FROM orders WHERE shopping_session_id IN ({sessions})"),
            vec![run_v()],
        ),
        (
            "shopping_session_events",
            format!("DELETE FROM shopping_session_events WHERE session_id IN ({sessions})"),
            vec![run_v()],
        ),
        (
            "shopping_sessions",
            format!("DELETE FROM shopping_sessions WHERE id IN ({sessions})"),
            vec![run_v()],
        ),
        (
            "user_offer_cycles",
            format!(
                "DELETE FROM user_offer_cycles WHERE user_id IN ({users}) \
                 AND last_refresh_at >= $2 AND last_refresh_at <= $3"
            ),
            window(),
        ),
        (
            "cart_coupons",
            format!("DELETE FROM cart_coupons WHERE user_id IN ({users})"),
            vec![run_v()],
        ),
        (
            "cart_items",
            format!("DELETE FROM cart_items WHERE user_id IN ({users})"),
            vec![run_v()],
        ),
        (
            // The actions' Idempotency-Keys start with `run_id/`.
            "sim_idempotency",
            format!(
                "DELETE FROM sim_idempotency WHERE user_id IN ({users}) \
                 AND SUBSTR(idem_key, 1, CAST($2 AS INTEGER)) = $3"
            ),
            vec![
                run_v(),
                (run_id.chars().count() as i64 + 1).into(),
                format!("{run_id}/").into(),
            ],
        ),
        (
            "sim_metrics",
            "DELETE FROM sim_metrics WHERE run_id = $1".into(),
            vec![run_v()],
        ),
        (
            "sim_shards",
            "DELETE FROM sim_shards WHERE run_id = $1".into(),
            vec![run_v()],
        ),
        (
            "sim_sessions",
            "DELETE FROM sim_sessions WHERE run_id = $1".into(),
            vec![run_v()],
        ),
        (
            "sim_agent_days",
            "DELETE FROM sim_agent_days WHERE run_id = $1".into(),
            vec![run_v()],
        ),
        (
            "sim_runs",
            "DELETE FROM sim_runs WHERE run_id = $1".into(),
            vec![run_v()],
        ),
    ];
    let mut tables = Vec::with_capacity(statements.len());
    for (table, sql, values) in statements {
        let n = tx.exec(&sql, values).await?;
        tables.push((table.to_string(), n));
    }
    tx.commit().await?;
    Ok(PurgeReport {
        run_id: run_id.to_string(),
        tables,
    })
}
