//! Agent users: `users` + `agents` rows named `agent_001`, `agent_002`, …, and their personas.
//!
//! Agents are created in batches (one write transaction per batch, multi-row statements of at
//! most 500 rows), so a million agents take a few thousand statements and report progress as
//! they go. Creation is idempotent: agents that already exist are kept as they are, and a rerun
//! inserts nothing. Ids are `ids::stable_uuid(seed, "user" | "agent", "agent_001")`; timestamps
//! are a simulated instant passed in, never the wall clock.
//!
//! When a persona source is given (the behaviour host generates personas from a persona set),
//! the contract's persona columns of `agents` are filled from the persona's JSON keys of the
//! same names, and the whole JSON is kept in `sim_personas` as ground truth.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::Value;
use uuid::Uuid;

use crate::ids;
use crate::money::Money;
use crate::store::batch::{insert_ignore, insert_ignore_returning};
use crate::store::{Codec, Db, StoreError, Tx};

/// Default number of agents per write transaction.
pub const DEFAULT_BATCH: usize = 5_000;

/// One agent's persona, as produced by a persona set.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonaRecord {
    /// The persona set's name (e.g. `voiceoffers-original`).
    pub persona_set: String,
    /// Version of the script that produced it (e.g. a content hash).
    pub script_version: String,
    /// The persona's attributes: a JSON object. Keys named like `agents` columns (`age`,
    /// `income_bracket`, `preferred_categories`, …) fill those columns.
    pub attributes: serde_json::Value,
}

/// Where personas come from: called once per agent with its `agent_id` (`agent_001`).
pub type PersonaSource<'a> = &'a (dyn Fn(&str) -> Option<PersonaRecord> + Send + Sync);

/// What to create.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentOptions {
    /// Seed of the ids.
    pub seed: u64,
    /// Number of agents: `agent_001` … up to this number.
    pub count: u64,
    /// The simulated instant stamped as `created_at` / `updated_at`.
    pub created_at: DateTime<Utc>,
    /// Agents per write transaction (and per progress report).
    pub batch_size: usize,
}

impl AgentOptions {
    /// `count` agents under `seed`, created at `created_at`, in default-sized batches.
    pub fn new(seed: u64, count: u64, created_at: DateTime<Utc>) -> Self {
        Self {
            seed,
            count,
            created_at,
            batch_size: DEFAULT_BATCH,
        }
    }
}

/// What [`create_agents`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct AgentsReport {
    /// Agents asked for.
    pub requested: u64,
    /// `users` rows inserted.
    pub users_inserted: u64,
    /// `agents` rows inserted.
    pub agents_inserted: u64,
    /// Agents that already existed (kept unchanged).
    pub agents_existing: u64,
    /// `sim_personas` rows inserted.
    pub personas_inserted: u64,
}

/// Why agents could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A persona's attributes are not a JSON object.
    #[error(
        "persona of {agent_id} (set {persona_set}) is not a JSON object; a persona script must return a map of attributes"
    )]
    PersonaNotObject {
        /// The agent.
        agent_id: String,
        /// The persona set.
        persona_set: String,
    },
    /// A persona attribute has the wrong type for its column.
    #[error(
        "persona of {agent_id}: attribute `{key}` is {found}, expected {expected}; fix the persona script"
    )]
    PersonaAttribute {
        /// The agent.
        agent_id: String,
        /// The attribute.
        key: &'static str,
        /// The type its column needs.
        expected: &'static str,
        /// What was found.
        found: String,
    },
}

/// The name of the `n`-th agent (1-based), zero-padded to at least three digits:
/// `agent_001` … `agent_999`, `agent_1000` ….
pub fn agent_name(n: u64) -> String {
    format!("agent_{n:03}")
}

/// The `users.id` of agent `agent_id` under `seed`.
pub fn agent_user_id(seed: u64, agent_id: &str) -> Uuid {
    ids::stable_uuid(seed, "user", agent_id)
}

/// The `agents.id` of agent `agent_id` under `seed`.
pub fn agent_row_id(seed: u64, agent_id: &str) -> Uuid {
    ids::stable_uuid(seed, "agent", agent_id)
}

/// The e-mail of agent `agent_id`.
pub fn agent_email(agent_id: &str) -> String {
    format!("{agent_id}@agents.shopsim.local")
}

/// How a persona attribute is stored.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bool,
    Float,
    Money,
    /// Text, or a JSON array of texts joined with commas (`preferred_categories`).
    List,
}

/// The contract's persona columns of `agents`, filled from persona keys of the same name.
const PERSONA_COLUMNS: &[(&str, Kind)] = &[
    ("age", Kind::Int),
    ("age_group", Kind::Text),
    ("gender", Kind::Text),
    ("income_bracket", Kind::Text),
    ("household_size", Kind::Int),
    ("has_children", Kind::Bool),
    ("location_region", Kind::Text),
    ("price_sensitivity", Kind::Float),
    ("brand_loyalty", Kind::Float),
    ("impulsivity", Kind::Float),
    ("tech_savviness", Kind::Float),
    ("coupon_affinity", Kind::Float),
    ("preferred_categories", Kind::List),
    ("weekly_budget", Kind::Money),
    ("shopping_frequency", Kind::Text),
    ("avg_cart_value", Kind::Money),
    ("pref_day_weekday", Kind::Float),
    ("pref_day_saturday", Kind::Float),
    ("pref_day_sunday", Kind::Float),
    ("pref_time_morning", Kind::Float),
    ("pref_time_afternoon", Kind::Float),
    ("pref_time_evening", Kind::Float),
    ("deal_seeking_behavior", Kind::Text),
    ("backstory", Kind::Text),
];

fn json_type(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "null".into(),
        serde_json::Value::Bool(b) => format!("the boolean {b}"),
        serde_json::Value::Number(n) => format!("the number {n}"),
        serde_json::Value::String(s) => format!("the text {s:?}"),
        serde_json::Value::Array(_) => "a list".into(),
        serde_json::Value::Object(_) => "a map".into(),
    }
}

/// Encodes one persona attribute for its column (absent or null → SQL NULL of the right type).
fn persona_value(
    codec: Codec,
    agent_id: &str,
    key: &'static str,
    kind: Kind,
    v: Option<&serde_json::Value>,
) -> Result<Value, AgentError> {
    use serde_json::Value as J;
    let v = v.filter(|v| !v.is_null());
    let wrong = |expected: &'static str, v: &J| AgentError::PersonaAttribute {
        agent_id: agent_id.to_string(),
        key,
        expected,
        found: json_type(v),
    };
    Ok(match kind {
        Kind::Int => match v {
            None => Option::<i64>::None.into(),
            Some(j) => {
                let n = j
                    .as_i64()
                    .or_else(|| j.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                    .filter(|n| i32::try_from(*n).is_ok())
                    .ok_or_else(|| wrong("a whole number", j))?;
                Some(n).into()
            }
        },
        Kind::Float => match v {
            None => Option::<f64>::None.into(),
            Some(j) => Some(j.as_f64().ok_or_else(|| wrong("a number", j))?).into(),
        },
        Kind::Bool => match v {
            None => Option::<bool>::None.into(),
            Some(j) => Some(j.as_bool().ok_or_else(|| wrong("true or false", j))?).into(),
        },
        Kind::Text => match v {
            None => Option::<String>::None.into(),
            Some(J::String(s)) => Some(s.clone()).into(),
            Some(j) => return Err(wrong("text", j)),
        },
        Kind::List => match v {
            None => Option::<String>::None.into(),
            Some(J::String(s)) => Some(s.clone()).into(),
            Some(J::Array(items)) => {
                let parts = items
                    .iter()
                    .map(|i| i.as_str().ok_or_else(|| wrong("a list of texts", i)))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(parts.join(",")).into()
            }
            Some(j) => return Err(wrong("a list of texts", j)),
        },
        Kind::Money => match v {
            None => codec.opt_money(None),
            Some(j) => {
                let m: Option<Money> = match j {
                    J::Number(n) => n.to_string().parse().ok(),
                    J::String(s) => s.parse().ok(),
                    _ => None,
                };
                codec.money(m.ok_or_else(|| wrong("an amount of money", j))?)
            }
        },
    })
}

/// Creates agents `agent_001` … `agent_<count>` (and their users), keeping any that exist.
/// `progress(done, total)` is called after every committed batch.
pub async fn create_agents(
    db: &Db,
    opts: &AgentOptions,
    personas: Option<PersonaSource<'_>>,
    progress: &dyn Fn(u64, u64),
) -> Result<AgentsReport, AgentError> {
    let mut report = AgentsReport {
        requested: opts.count,
        ..AgentsReport::default()
    };
    let batch = opts.batch_size.max(1) as u64;
    let mut next = 1u64;
    while next <= opts.count {
        let last = (next + batch - 1).min(opts.count);
        let tx = db.write().await?;
        insert_batch(&tx, opts, next, last, personas, &mut report).await?;
        tx.commit().await?;
        progress(last, opts.count);
        next = last + 1;
    }
    report.agents_existing = report.requested - report.agents_inserted;
    Ok(report)
}

async fn insert_batch(
    tx: &Tx,
    opts: &AgentOptions,
    first: u64,
    last: u64,
    personas: Option<PersonaSource<'_>>,
    report: &mut AgentsReport,
) -> Result<(), AgentError> {
    let codec = tx.codec();
    let created = codec.ts(opts.created_at);
    let names: Vec<String> = (first..=last).map(agent_name).collect();

    let user_rows = names
        .iter()
        .map(|n| {
            vec![
                codec.uuid(agent_user_id(opts.seed, n)),
                agent_email(n).into(),
                format!("Agent {}", &n["agent_".len()..]).into(),
                created.clone(),
                created.clone(),
            ]
        })
        .collect::<Vec<_>>();
    let inserted = insert_ignore(
        tx,
        "users",
        &["id", "email", "full_name", "created_at", "updated_at"],
        user_rows,
    )
    .await?;
    report.users_inserted += inserted;
    // A user with an agent's e-mail may exist under another id (seeded with another seed, or
    // created by hand): link the agent to the user that is actually there.
    let mut user_of: HashMap<String, Uuid> = HashMap::new();
    if (inserted as usize) < names.len() {
        let emails: Vec<Value> = names.iter().map(|n| agent_email(n).into()).collect();
        for chunk in emails.chunks(crate::store::batch::MAX_ROWS) {
            let placeholders = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT id, email FROM users WHERE email IN ({placeholders})");
            for r in tx.query(&sql, chunk.to_vec()).await? {
                user_of.insert(r.string("email")?, r.uuid("id")?);
            }
        }
    }

    // Without personas the persona columns stay at their NULL default: leaving them out of
    // the statement binds 6 instead of 30 parameters per agent (a million-agent seed is
    // dominated by parameter binding).
    let with_personas = personas.is_some();
    let mut columns = vec!["id", "agent_id", "user_id", "is_active"];
    if with_personas {
        columns.extend(PERSONA_COLUMNS.iter().map(|(c, _)| *c));
    }
    columns.extend(["created_at", "updated_at"]);
    let mut persona_of: HashMap<&str, PersonaRecord> = HashMap::new();
    let mut agent_rows = Vec::with_capacity(names.len());
    for n in &names {
        let user_id = user_of
            .get(&agent_email(n))
            .copied()
            .unwrap_or_else(|| agent_user_id(opts.seed, n));
        let mut row = vec![
            codec.uuid(agent_row_id(opts.seed, n)),
            n.clone().into(),
            codec.uuid(user_id),
            true.into(),
        ];
        let persona = personas.and_then(|p| p(n));
        let attrs = match &persona {
            None => None,
            Some(p) => {
                Some(
                    p.attributes
                        .as_object()
                        .ok_or_else(|| AgentError::PersonaNotObject {
                            agent_id: n.clone(),
                            persona_set: p.persona_set.clone(),
                        })?,
                )
            }
        };
        for &(key, kind) in PERSONA_COLUMNS.iter().filter(|_| with_personas) {
            row.push(persona_value(
                codec,
                n,
                key,
                kind,
                attrs.and_then(|a| a.get(key)),
            )?);
        }
        row.extend([created.clone(), created.clone()]);
        agent_rows.push(row);
        if let Some(p) = persona {
            persona_of.insert(n, p);
        }
    }
    let inserted = insert_ignore_returning(tx, "agents", &columns, agent_rows, "agent_id").await?;
    report.agents_inserted += inserted.len() as u64;

    // Personas only of agents created now: an existing agent keeps its persona columns, so
    // its ground truth must not change either.
    if !persona_of.is_empty() {
        let mut rows = Vec::new();
        for r in &inserted {
            let agent_id = r.string("agent_id")?;
            if let Some(p) = persona_of.get(agent_id.as_str()) {
                rows.push(vec![
                    agent_id.clone().into(),
                    p.persona_set.clone().into(),
                    // Stored as the seed's bit pattern: BIGINT is signed.
                    (opts.seed as i64).into(),
                    p.script_version.clone().into(),
                    codec.json(&p.attributes),
                    created.clone(),
                ]);
            }
        }
        report.personas_inserted += insert_ignore(
            tx,
            "sim_personas",
            &[
                "agent_id",
                "persona_set",
                "seed",
                "script_version",
                "attributes",
                "created_at",
            ],
            rows,
        )
        .await?;
    }
    Ok(())
}

/// Number of rows in `agents`.
pub async fn count_agents(db: &Db) -> Result<u64, StoreError> {
    let tx = db.read().await?;
    let n = tx
        .query_one("SELECT COUNT(*) AS n FROM agents", vec![])
        .await?
        .i64("n")?;
    tx.commit().await?;
    Ok(n.max(0) as u64)
}

/// One agent, as listed by [`list_agents`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentSummary {
    /// `agents.id`.
    pub id: Uuid,
    /// `agent_001` …
    pub agent_id: String,
    /// The agent's user.
    pub user_id: Uuid,
    /// Active.
    pub is_active: bool,
}

/// The first `limit` agents in numeric order (`agent_999` before `agent_1000`).
pub async fn list_agents(db: &Db, limit: u64) -> Result<Vec<AgentSummary>, StoreError> {
    let tx = db.read().await?;
    let rows = tx
        .query(
            "SELECT id, agent_id, user_id, is_active FROM agents \
             ORDER BY LENGTH(agent_id), agent_id LIMIT $1",
            vec![(limit.min(i64::MAX as u64) as i64).into()],
        )
        .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| -> Result<AgentSummary, StoreError> {
            Ok(AgentSummary {
                id: r.uuid("id")?,
                agent_id: r.string("agent_id")?,
                user_id: r.uuid("user_id")?,
                is_active: r.bool("is_active")?,
            })
        })
        .collect()
}

/// Agents read per query by [`agent_keys`].
const KEYS_PAGE: usize = 10_000;

/// The first `limit` agents in numeric order (as [`list_agents`]) as (agent id, user id): read
/// a page at a time along the unique index on `agent_id`, then sorted, so that a million
/// agents' rows never sit in memory at once and no query sorts the whole table.
pub async fn agent_keys(db: &Db, limit: u64) -> Result<Vec<(Arc<str>, Uuid)>, StoreError> {
    let mut keys: Vec<(Arc<str>, Uuid)> = Vec::new();
    let mut after = String::new();
    loop {
        let tx = db.read().await?;
        let rows = tx
            .query(
                "SELECT agent_id, user_id FROM agents WHERE agent_id > $1 \
                 ORDER BY agent_id LIMIT $2",
                vec![after.clone().into(), (KEYS_PAGE as i64).into()],
            )
            .await?;
        tx.commit().await?;
        let n = rows.len();
        for r in rows {
            let agent_id = r.string("agent_id")?;
            keys.push((agent_id.as_str().into(), r.uuid("user_id")?));
            after = agent_id;
        }
        if n < KEYS_PAGE {
            break;
        }
    }
    keys.sort_unstable_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
    keys.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    keys.shrink_to_fit();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Backend;
    use serde_json::json;

    #[test]
    fn names_are_zero_padded_to_three_digits() {
        assert_eq!(agent_name(1), "agent_001");
        assert_eq!(agent_name(999), "agent_999");
        assert_eq!(agent_name(1000), "agent_1000");
        assert_eq!(agent_email("agent_007"), "agent_007@agents.shopsim.local");
        assert_eq!(
            agent_user_id(42, "agent_001"),
            ids::stable_uuid(42, "user", "agent_001")
        );
        assert_ne!(
            agent_user_id(42, "agent_001"),
            agent_user_id(43, "agent_001")
        );
    }

    #[test]
    fn persona_values_are_typed_and_checked() {
        let c = Codec::new(Backend::Sqlite);
        let v = persona_value(c, "a", "age", Kind::Int, Some(&json!(34))).unwrap();
        assert_eq!(v, Value::from(Some(34i64)));
        let v = persona_value(c, "a", "age", Kind::Int, Some(&json!(34.0))).unwrap();
        assert_eq!(v, Value::from(Some(34i64)));
        let v = persona_value(c, "a", "x", Kind::List, Some(&json!(["Snacks", "Bakery"]))).unwrap();
        assert_eq!(v, Value::from(Some("Snacks,Bakery".to_string())));
        let v = persona_value(c, "a", "w", Kind::Money, Some(&json!(42.5))).unwrap();
        assert_eq!(v, Value::from(4250i64));
        let v = persona_value(c, "a", "w", Kind::Money, None).unwrap();
        assert_eq!(v, Value::from(Option::<i64>::None));
        let e = persona_value(c, "agent_009", "age", Kind::Int, Some(&json!("old")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("agent_009") && e.contains("`age`") && e.contains("whole number"),
            "{e}"
        );
        assert!(persona_value(c, "a", "age", Kind::Int, Some(&json!(3.5))).is_err());
        assert!(persona_value(c, "a", "g", Kind::Text, Some(&json!(1))).is_err());
        assert!(persona_value(c, "a", "h", Kind::Bool, Some(&json!("yes"))).is_err());
    }
}
