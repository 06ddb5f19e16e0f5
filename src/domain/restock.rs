//! Restocking at simulated midnight: once per simulated UTC day, every (store, product) below
//! the configured level is raised to it.

use chrono::{DateTime, Utc};

use crate::store::{Backend, Tx};

use super::{DomainResult, Shop};

impl Shop {
    /// Restocks once per simulated UTC day: `Some(rows raised)` when this call did it, `None`
    /// when that day was already done. Concurrent callers agree: the day's `sim_restocks` row
    /// is the claim, and only its inserter updates the inventory.
    pub async fn restock_if_due(&self, tx: &Tx, now: DateTime<Utc>) -> DomainResult<Option<u64>> {
        let codec = tx.codec();
        let level = self.config().restock_level.max(0);
        let day = codec.date(now.date_naive());
        let claimed = tx
            .exec(
                "INSERT INTO sim_restocks (day, level, rows_restocked, done_at) \
                 VALUES ($1, $2, 0, $3) ON CONFLICT (day) DO NOTHING",
                vec![day.clone(), level.into(), codec.ts(now)],
            )
            .await?;
        if claimed == 0 {
            return Ok(None);
        }
        // PostgreSQL: the rows are locked in (product, store) order first, the order in which
        // checkouts lock theirs (one store, products in order), so a restock running next to
        // checkouts waits for them instead of deadlocking. SQLite has a single writer.
        let sql = match codec.backend() {
            Backend::Postgres => {
                "UPDATE store_inventory AS i SET quantity = $1 \
                 FROM (SELECT store_id, product_id FROM store_inventory WHERE quantity < $1 \
                       ORDER BY product_id, store_id FOR UPDATE) AS l \
                 WHERE i.store_id = l.store_id AND i.product_id = l.product_id"
            }
            Backend::Sqlite => "UPDATE store_inventory SET quantity = $1 WHERE quantity < $1",
        };
        let rows = tx.exec(sql, vec![level.into()]).await?;
        tx.exec(
            "UPDATE sim_restocks SET rows_restocked = $1 WHERE day = $2",
            vec![(rows as i64).into(), day],
        )
        .await?;
        Ok(Some(rows))
    }
}
