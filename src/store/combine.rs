//! Several independent statements in one round trip.
//!
//! Every statement on a loopback connection costs both processes a round trip (a send, a
//! wake-up of the other side, a reply), which is most of what a small indexed write costs. On
//! PostgreSQL, writes that do not depend on each other can share one statement as
//! data-modifying `WITH` queries; SQLite (in-process, no round trips) runs them one after
//! another. Either way they run in the caller's transaction, so they commit or roll back
//! together as before.
//!
//! The contract (PostgreSQL's rules for data-modifying `WITH` queries): the statements all see
//! the same snapshot, so none may read what another one writes, and no two may change the same
//! row. Writes to different tables, or to different rows of one table, qualify.

use sea_orm::Value;

use super::batch::MAX_PARAMS;
use super::codec::Row;
use super::db::Tx;
use super::error::StoreError;
use super::url::Backend;

/// One statement with its values (placeholders `$1`, `$2`, … numbered from 1).
#[derive(Debug, Clone)]
pub struct Stmt {
    /// The SQL, with `$n` placeholders.
    pub sql: String,
    /// The values of the placeholders, in order.
    pub values: Vec<Value>,
}

impl Stmt {
    /// A statement from its SQL and values.
    pub fn new(sql: impl Into<String>, values: Vec<Value>) -> Self {
        Self {
            sql: sql.into(),
            values,
        }
    }
}

/// Runs `writes` (`INSERT`/`UPDATE`/`DELETE` without `RETURNING`, independent of each other
/// and of `last`, see the module docs), then `last`, and returns the rows of `last`. On
/// PostgreSQL this is one statement (`WITH w0 AS (…), w1 AS (…) <last>`) unless the values
/// are more than one statement may carry ([`MAX_PARAMS`]); on SQLite the statements run one
/// after another.
pub async fn writes_then(tx: &Tx, writes: Vec<Stmt>, last: Stmt) -> Result<Vec<Row>, StoreError> {
    if writes.is_empty() {
        return tx.query(&last.sql, last.values).await;
    }
    let params: usize = writes.iter().map(|w| w.values.len()).sum::<usize>() + last.values.len();
    if tx.backend() == Backend::Sqlite || params > MAX_PARAMS {
        for w in writes {
            tx.exec(&w.sql, w.values).await?;
        }
        return tx.query(&last.sql, last.values).await;
    }
    let combined = combine(writes, last);
    tx.query(&combined.sql, combined.values).await
}

/// Runs `writes` (independent of each other, see the module docs) in as few round trips as
/// the backend allows: one on PostgreSQL, the last write being the main statement.
pub async fn exec_all(tx: &Tx, mut writes: Vec<Stmt>) -> Result<(), StoreError> {
    let Some(last) = writes.pop() else {
        return Ok(());
    };
    writes_then(tx, writes, last).await.map(|_| ())
}

/// `WITH w0 AS (writes[0]), … <last>`, each statement's placeholders shifted past the values
/// before it. A `last` that has `WITH` queries of its own (starts with `WITH `) adds them to
/// the list (its names must not be `w0`, `w1`, …).
fn combine(writes: Vec<Stmt>, last: Stmt) -> Stmt {
    let mut sql = String::from("WITH ");
    let mut values = Vec::new();
    for (n, w) in writes.into_iter().enumerate() {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("w{n} AS ("));
        sql.push_str(&shift_placeholders(&w.sql, values.len()));
        sql.push(')');
        values.extend(w.values);
    }
    let last_sql = shift_placeholders(&last.sql, values.len());
    match last_sql.strip_prefix("WITH ") {
        Some(own_queries) => {
            sql.push_str(", ");
            sql.push_str(own_queries);
        }
        None => {
            sql.push(' ');
            sql.push_str(&last_sql);
        }
    }
    values.extend(last.values);
    Stmt { sql, values }
}

/// `sql` with every placeholder `$n` outside quotes renumbered `$(n + by)`.
pub(crate) fn shift_placeholders(sql: &str, by: usize) -> String {
    if by == 0 {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    let mut quote: Option<char> = None;
    while let Some((_, c)) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                // A doubled quote inside a literal closes and reopens it: same result.
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) => {
                let mut n: usize = 0;
                while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                    n = n * 10 + (d as usize - '0' as usize);
                    chars.next();
                }
                // Writing to a String cannot fail.
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!("${}", n + by));
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_shift_outside_quotes_only() {
        assert_eq!(
            shift_placeholders("UPDATE t SET a = $1, b = '$2' WHERE c = $12", 3),
            "UPDATE t SET a = $4, b = '$2' WHERE c = $15"
        );
        assert_eq!(
            shift_placeholders(r#"SELECT "$1", 'it''s $1', $1"#, 10),
            r#"SELECT "$1", 'it''s $1', $11"#
        );
        assert_eq!(
            shift_placeholders("SELECT $ AS x, $1", 1),
            "SELECT $ AS x, $2"
        );
        assert_eq!(shift_placeholders("SELECT $1", 0), "SELECT $1");
    }

    #[test]
    fn writes_become_with_queries_numbered_in_order() {
        let s = combine(
            vec![
                Stmt::new(
                    "INSERT INTO a (x, y) VALUES ($1, $2)",
                    vec![1.into(), 2.into()],
                ),
                Stmt::new("DELETE FROM b WHERE z = $1", vec![3.into()]),
            ],
            Stmt::new(
                "SELECT q FROM c WHERE k = $1 AND j = $2",
                vec![4.into(), 5.into()],
            ),
        );
        assert_eq!(
            s.sql,
            "WITH w0 AS (INSERT INTO a (x, y) VALUES ($1, $2)), \
             w1 AS (DELETE FROM b WHERE z = $3) SELECT q FROM c WHERE k = $4 AND j = $5"
        );
        let v: Vec<Value> = (1..=5).map(Value::from).collect();
        assert_eq!(s.values, v);
    }

    #[test]
    fn a_last_statement_with_queries_of_its_own_joins_the_list() {
        let s = combine(
            vec![Stmt::new("DELETE FROM b WHERE z = $1", vec![1.into()])],
            Stmt::new(
                "WITH r AS (UPDATE c SET q = $1 RETURNING q) SELECT q FROM r WHERE q > $2",
                vec![2.into(), 3.into()],
            ),
        );
        assert_eq!(
            s.sql,
            "WITH w0 AS (DELETE FROM b WHERE z = $1), \
             r AS (UPDATE c SET q = $2 RETURNING q) SELECT q FROM r WHERE q > $3"
        );
    }
}
