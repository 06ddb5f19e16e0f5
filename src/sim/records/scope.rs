//! Which rows belong to a run (see the module docs of [`super`]), and the natural keys that
//! replace generated ids in exports.

use std::collections::HashMap;

use sea_orm::Value;
use uuid::Uuid;

use crate::catalog::load::detect_columns;
use crate::store::{Codec, StoreError, Tx};

/// SQL: the run's agents (`agent_id`s with a recorded day), for `$run`.
pub fn run_agent_ids(run: &str) -> String {
    format!("SELECT d.agent_id FROM sim_agent_days d WHERE d.run_id = {run}")
}

/// SQL: the users of the run's agents, for `$run`.
pub fn run_user_ids(run: &str) -> String {
    format!(
        "SELECT a.user_id FROM agents a WHERE a.agent_id IN ({})",
        run_agent_ids(run)
    )
}

/// SQL: the run's shopping session ids, for `$run`.
pub fn run_session_ids(run: &str) -> String {
    format!("SELECT s.session_id FROM sim_sessions s WHERE s.run_id = {run}")
}

/// SQL: the ids of the orders placed in the run's sessions, for `$run`.
pub fn run_order_ids(run: &str) -> String {
    format!(
        "SELECT o.id FROM orders o WHERE o.shopping_session_id IN ({})",
        run_session_ids(run)
    )
}

/// One agent of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAgent {
    /// Natural key (`agent_001`).
    pub agent_id: String,
    /// Its user.
    pub user_id: Uuid,
}

/// Canonical agent order: by length, then bytewise (`agent_999` before `agent_1000`), the
/// same on every backend and locale.
pub fn agent_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The run's agents in canonical order. Sorted here, not in SQL: text order in PostgreSQL
/// depends on the database's collation.
pub async fn run_agents(tx: &Tx, run_id: &str) -> Result<Vec<RunAgent>, StoreError> {
    let rows = tx
        .query(
            &format!(
                "SELECT a.agent_id, a.user_id FROM agents a WHERE a.agent_id IN ({})",
                run_agent_ids("$1")
            ),
            vec![run_id.to_string().into()],
        )
        .await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(RunAgent {
                agent_id: r.string("agent_id")?,
                user_id: r.uuid("user_id")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.sort_by(|a, b| agent_order(&a.agent_id, &b.agent_id));
    Ok(out)
}

/// `WITH k(pos, agent_id, user_id) AS (VALUES …)` for a chunk of agents whose first has
/// position `first_pos`, with placeholders numbered from `first_param`. Joining on `k` and
/// ordering by `k.pos` gives canonical agent order without sorting text in SQL.
pub fn agents_cte(
    codec: Codec,
    agents: &[RunAgent],
    first_pos: usize,
    first_param: usize,
) -> (String, Vec<Value>) {
    let mut sql = String::from("WITH k(pos, agent_id, user_id) AS (VALUES ");
    let mut values = Vec::with_capacity(agents.len() * 3);
    for (i, a) in agents.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let p = first_param + i * 3;
        sql.push_str(&format!("(${p}, ${}, ${})", p + 1, p + 2));
        values.push(((first_pos + i) as i64).into());
        values.push(a.agent_id.clone().into());
        values.push(codec.uuid(a.user_id));
    }
    sql.push_str(") ");
    (sql, values)
}

/// Natural keys of catalog rows: product SKU, coupon code, store name. Where the database
/// lacks `products.sku` or `coupons.code` (a real VoiceOffers database), the id text stands in,
/// as `catalog::load` does.
#[derive(Debug, Default)]
pub struct NaturalKeys {
    /// Product id → SKU.
    pub sku: HashMap<Uuid, String>,
    /// Coupon id → code.
    pub code: HashMap<Uuid, String>,
    /// Coupon id → type (`frontstore`, `category`, `brand`).
    pub coupon_type: HashMap<Uuid, String>,
    /// Store id → name.
    pub store: HashMap<Uuid, String>,
}

impl NaturalKeys {
    /// Reads the keys of every product, coupon and store.
    pub async fn load(tx: &Tx) -> Result<NaturalKeys, StoreError> {
        let cols = detect_columns(tx).await?;
        let mut keys = NaturalKeys::default();
        let sku = if cols.product_sku {
            "sku"
        } else {
            "NULL AS sku"
        };
        for r in tx
            .query(&format!("SELECT id, {sku} FROM products"), vec![])
            .await?
        {
            let id = r.uuid("id")?;
            let sku = r.opt_string("sku")?.unwrap_or_else(|| id.to_string());
            keys.sku.insert(id, sku);
        }
        let code = if cols.coupon_code {
            "code"
        } else {
            "NULL AS code"
        };
        for r in tx
            .query(&format!("SELECT id, type, {code} FROM coupons"), vec![])
            .await?
        {
            let id = r.uuid("id")?;
            let code = r.opt_string("code")?.unwrap_or_else(|| id.to_string());
            keys.code.insert(id, code);
            keys.coupon_type.insert(id, r.string("type")?);
        }
        for r in tx.query("SELECT id, name FROM stores", vec![]).await? {
            keys.store.insert(r.uuid("id")?, r.string("name")?);
        }
        Ok(keys)
    }

    /// A product's SKU (the id text when unknown).
    pub fn sku_of(&self, id: Uuid) -> String {
        self.sku.get(&id).cloned().unwrap_or_else(|| id.to_string())
    }

    /// A coupon's code (the id text when unknown).
    pub fn code_of(&self, id: Uuid) -> String {
        self.code
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// A store's name (the id text when unknown).
    pub fn store_of(&self, id: Uuid) -> String {
        self.store
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_sort_by_number() {
        let mut v = vec!["agent_1000", "agent_101", "agent_002", "agent_100"];
        v.sort_by(|a, b| agent_order(a, b));
        assert_eq!(v, ["agent_002", "agent_100", "agent_101", "agent_1000"]);
    }
}
