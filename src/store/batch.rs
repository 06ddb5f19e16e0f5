//! Batched multi-row `INSERT … ON CONFLICT DO NOTHING`, portable to SQLite and PostgreSQL.
//!
//! One statement carries at most [`MAX_ROWS`] rows and at most [`MAX_PARAMS`] parameters,
//! well under PostgreSQL's 65,535-parameter limit and SQLite's 32,766.

use sea_orm::Value;

use super::codec::Row;
use super::db::Tx;
use super::error::StoreError;

/// Most rows in one statement.
pub const MAX_ROWS: usize = 500;
/// Most bound parameters in one statement.
pub const MAX_PARAMS: usize = 30_000;

/// Rows per statement for a table with `columns` columns.
pub fn rows_per_statement(columns: usize) -> usize {
    (MAX_PARAMS / columns.max(1)).clamp(1, MAX_ROWS)
}

/// Inserts `rows` (each exactly `columns.len()` values, already encoded with the
/// transaction's codec) into `table`, skipping rows that conflict with an existing one on any
/// unique key. Returns how many rows were inserted.
pub async fn insert_ignore(
    tx: &Tx,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) -> Result<u64, StoreError> {
    let mut inserted = 0;
    for (sql, values) in statements(table, columns, rows, "") {
        inserted += tx.exec(&sql, values).await?;
    }
    Ok(inserted)
}

/// Like [`insert_ignore`], returning the `returning` columns of the rows actually inserted.
pub async fn insert_ignore_returning(
    tx: &Tx,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
    returning: &str,
) -> Result<Vec<Row>, StoreError> {
    let mut out = Vec::new();
    for (sql, values) in statements(table, columns, rows, returning) {
        out.extend(tx.query(&sql, values).await?);
    }
    Ok(out)
}

/// The statements (SQL and values) inserting `rows` in chunks.
fn statements(
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
    returning: &str,
) -> Vec<(String, Vec<Value>)> {
    let per = rows_per_statement(columns.len());
    let col_list = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Vec::with_capacity(rows.len().div_ceil(per));
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(per).collect();
        let mut sql = String::with_capacity(64 + chunk.len() * columns.len() * 6);
        sql.push_str(&format!("INSERT INTO {table} ({col_list}) VALUES "));
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * columns.len());
        for (r, row) in chunk.into_iter().enumerate() {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..row.len() {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", values.len() + c + 1));
            }
            sql.push(')');
            values.extend(row);
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        if !returning.is_empty() {
            sql.push_str(" RETURNING ");
            sql.push_str(returning);
        }
        out.push((sql, values));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_stay_under_parameter_limits() {
        assert_eq!(rows_per_statement(3), 500);
        assert_eq!(rows_per_statement(31), 500);
        assert_eq!(rows_per_statement(100), 300);
        assert_eq!(rows_per_statement(0), 500);
        assert!(rows_per_statement(1000) * 1000 <= 65_535);
    }

    #[test]
    fn chunks_rows_and_numbers_placeholders() {
        let rows: Vec<Vec<Value>> = (0..1001i64).map(|i| vec![i.into(), i.into()]).collect();
        let st = statements("t", &["a", "b"], rows, "a");
        assert_eq!(st.len(), 3);
        assert_eq!(st[0].1.len(), 1000);
        assert_eq!(st[2].1.len(), 2);
        assert!(
            st[0]
                .0
                .starts_with("INSERT INTO t (\"a\", \"b\") VALUES ($1, $2), ($3, $4)")
        );
        assert!(
            st[2]
                .0
                .ends_with("VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING a")
        );
    }
}
