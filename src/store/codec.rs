//! One schema, two engines: how values are written to and read from each backend.
//!
//! PostgreSQL gets the contract's native types (UUID, DECIMAL(10,2), TIMESTAMPTZ, JSONB).
//! SQLite gets text UUIDs, integer cents, fixed-width UTC timestamps (so text order is time
//! order) and JSON text. SQL is written once with `$1…$n` placeholders, which both drivers
//! accept.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sea_orm::{QueryResult, Value};
use uuid::Uuid;

use super::error::StoreError;
use super::url::Backend;
use crate::money::Money;

/// Fixed-width UTC timestamp format used on SQLite.
const SQLITE_TS: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// Encodes Rust values as statement parameters for one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    backend: Backend,
}

impl Codec {
    /// A codec for `backend`.
    pub fn new(backend: Backend) -> Self {
        Self { backend }
    }

    /// The backend it encodes for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A UUID.
    pub fn uuid(&self, id: Uuid) -> Value {
        match self.backend {
            Backend::Postgres => Value::from(id),
            Backend::Sqlite => Value::from(id.to_string()),
        }
    }

    /// An optional UUID.
    pub fn opt_uuid(&self, id: Option<Uuid>) -> Value {
        match (self.backend, id) {
            (_, Some(id)) => self.uuid(id),
            (Backend::Postgres, None) => Value::from(Option::<Uuid>::None),
            (Backend::Sqlite, None) => Value::from(Option::<String>::None),
        }
    }

    /// A money amount (two-decimal fixed point).
    pub fn money(&self, m: Money) -> Value {
        match self.backend {
            Backend::Postgres => Value::from(m.to_decimal()),
            Backend::Sqlite => Value::from(m.as_cents()),
        }
    }

    /// An optional money amount.
    pub fn opt_money(&self, m: Option<Money>) -> Value {
        match (self.backend, m) {
            (_, Some(m)) => self.money(m),
            (Backend::Postgres, None) => Value::from(Option::<Decimal>::None),
            (Backend::Sqlite, None) => Value::from(Option::<i64>::None),
        }
    }

    /// A UTC timestamp.
    pub fn ts(&self, t: DateTime<Utc>) -> Value {
        match self.backend {
            Backend::Postgres => Value::from(t),
            Backend::Sqlite => Value::from(t.format(SQLITE_TS).to_string()),
        }
    }

    /// An optional UTC timestamp.
    pub fn opt_ts(&self, t: Option<DateTime<Utc>>) -> Value {
        match (self.backend, t) {
            (_, Some(t)) => self.ts(t),
            (Backend::Postgres, None) => Value::from(Option::<DateTime<Utc>>::None),
            (Backend::Sqlite, None) => Value::from(Option::<String>::None),
        }
    }

    /// A calendar date.
    pub fn date(&self, d: NaiveDate) -> Value {
        match self.backend {
            Backend::Postgres => Value::from(d),
            Backend::Sqlite => Value::from(d.format("%Y-%m-%d").to_string()),
        }
    }

    /// A JSON document.
    pub fn json(&self, v: &serde_json::Value) -> Value {
        match self.backend {
            Backend::Postgres => Value::from(v.clone()),
            Backend::Sqlite => Value::from(v.to_string()),
        }
    }

    /// `GREATEST(a, b)` in this dialect.
    pub fn greatest(&self, a: &str, b: &str) -> String {
        match self.backend {
            Backend::Postgres => format!("GREATEST({a}, {b})"),
            Backend::Sqlite => format!("MAX({a}, {b})"),
        }
    }

    /// ` FOR UPDATE` on PostgreSQL; nothing on SQLite, where write transactions are serialised.
    pub fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
}

/// A result row with typed, backend-aware getters. Errors name the column.
pub struct Row {
    inner: QueryResult,
    backend: Backend,
}

/// A PostgreSQL integer of any width. PostgreSQL is strict about widths; the column's type
/// picks the decoder (trying widths in turn built and dropped an error per `int4` value).
fn pg_int(row: &sea_orm::sqlx::postgres::PgRow, col: &str) -> Result<Option<i64>, StoreError> {
    use sea_orm::sqlx::postgres::Postgres;
    use sea_orm::sqlx::{Decode, Row as _, TypeInfo as _, ValueRef as _};
    let raw = row.try_get_raw(col).map_err(|e| decode(col, e))?;
    if raw.is_null() {
        return Ok(None);
    }
    let width = match raw.type_info().name() {
        "INT8" => 8,
        "INT4" => 4,
        "INT2" => 2,
        other => return Err(decode(col, format!("expected an integer, found {other}"))),
    };
    let value = match width {
        8 => <i64 as Decode<Postgres>>::decode(raw),
        4 => <i32 as Decode<Postgres>>::decode(raw).map(i64::from),
        _ => <i16 as Decode<Postgres>>::decode(raw).map(i64::from),
    };
    value.map(Some).map_err(|e| decode(col, e))
}

fn decode(column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Decode {
        column: column.to_string(),
        reason: e.to_string(),
    }
}

/// The UUIDs of a comma-separated list; an empty text is an empty list.
fn parse_uuid_list(text: &str) -> Result<Vec<Uuid>, uuid::Error> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',').map(Uuid::parse_str).collect()
}

impl Row {
    pub(crate) fn new(inner: QueryResult, backend: Backend) -> Self {
        Self { inner, backend }
    }

    fn get<T: sea_orm::TryGetable>(&self, col: &str) -> Result<T, StoreError> {
        self.inner.try_get::<T>("", col).map_err(|e| decode(col, e))
    }

    /// A text column.
    pub fn string(&self, col: &str) -> Result<String, StoreError> {
        self.get(col)
    }

    /// A nullable text column.
    pub fn opt_string(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.get(col)
    }

    /// An integer column (any width).
    pub fn i64(&self, col: &str) -> Result<i64, StoreError> {
        self.opt_i64(col)?
            .ok_or_else(|| decode(col, "unexpected NULL"))
    }

    /// A nullable integer column.
    pub fn opt_i64(&self, col: &str) -> Result<Option<i64>, StoreError> {
        match self.inner.try_as_pg_row() {
            Some(pg) => pg_int(pg, col),
            None => self.get::<Option<i64>>(col),
        }
    }

    /// A boolean column.
    pub fn bool(&self, col: &str) -> Result<bool, StoreError> {
        self.get(col)
    }

    /// A floating-point column (statistics and persona traits; never money).
    pub fn f64(&self, col: &str) -> Result<f64, StoreError> {
        self.opt_f64(col)?
            .ok_or_else(|| decode(col, "unexpected NULL"))
    }

    /// A nullable floating-point column.
    pub fn opt_f64(&self, col: &str) -> Result<Option<f64>, StoreError> {
        match self.backend {
            Backend::Sqlite => self.get::<Option<f64>>(col),
            Backend::Postgres => self
                .get::<Option<f64>>(col)
                .or_else(|_| self.get::<Option<f32>>(col).map(|v| v.map(f64::from)))
                .or_else(|_| {
                    self.get::<Option<Decimal>>(col)
                        .map(|v| v.and_then(|d| rust_decimal::prelude::ToPrimitive::to_f64(&d)))
                }),
        }
    }

    /// A UUID column.
    pub fn uuid(&self, col: &str) -> Result<Uuid, StoreError> {
        self.opt_uuid(col)?
            .ok_or_else(|| decode(col, "unexpected NULL"))
    }

    /// A nullable UUID column.
    pub fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>, StoreError> {
        match self.backend {
            Backend::Postgres => self.get::<Option<Uuid>>(col),
            Backend::Sqlite => self
                .get::<Option<String>>(col)?
                .map(|s| Uuid::parse_str(&s).map_err(|e| decode(col, e)))
                .transpose(),
        }
    }

    /// A nullable text column of comma-separated UUIDs (`string_agg(id::text, ',')`): one
    /// value instead of a row per id. NULL (nothing aggregated) is an empty list.
    pub fn uuid_list(&self, col: &str) -> Result<Vec<Uuid>, StoreError> {
        match self.opt_string(col)? {
            Some(text) => parse_uuid_list(&text).map_err(|e| decode(col, e)),
            None => Ok(Vec::new()),
        }
    }

    /// A money column.
    pub fn money(&self, col: &str) -> Result<Money, StoreError> {
        self.opt_money(col)?
            .ok_or_else(|| decode(col, "unexpected NULL"))
    }

    /// A nullable money column.
    pub fn opt_money(&self, col: &str) -> Result<Option<Money>, StoreError> {
        match self.backend {
            Backend::Postgres => self
                .get::<Option<Decimal>>(col)?
                .map(|d| Money::from_decimal(d).ok_or_else(|| decode(col, "amount out of range")))
                .transpose(),
            Backend::Sqlite => Ok(self.opt_i64(col)?.map(Money::cents)),
        }
    }

    /// A timestamp column.
    pub fn ts(&self, col: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_ts(col)?
            .ok_or_else(|| decode(col, "unexpected NULL"))
    }

    /// A nullable timestamp column.
    pub fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.backend {
            Backend::Postgres => self.get::<Option<DateTime<Utc>>>(col),
            Backend::Sqlite => self
                .get::<Option<String>>(col)?
                .map(|s| parse_sqlite_ts(col, &s))
                .transpose(),
        }
    }

    /// A date column.
    pub fn date(&self, col: &str) -> Result<NaiveDate, StoreError> {
        match self.backend {
            Backend::Postgres => self.get::<NaiveDate>(col),
            Backend::Sqlite => {
                let s: String = self.get(col)?;
                NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|e| decode(col, e))
            }
        }
    }

    /// A JSON column (`NULL` reads as JSON null).
    pub fn json(&self, col: &str) -> Result<serde_json::Value, StoreError> {
        match self.backend {
            Backend::Postgres => Ok(self
                .get::<Option<serde_json::Value>>(col)?
                .unwrap_or_default()),
            Backend::Sqlite => match self.get::<Option<String>>(col)? {
                None => Ok(serde_json::Value::Null),
                Some(s) => serde_json::from_str(&s).map_err(|e| decode(col, e)),
            },
        }
    }
}

fn parse_sqlite_ts(col: &str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").map(|n| n.and_utc())
        })
        .map_err(|e| decode(col, e))
}

/// Formats a timestamp the way SQLite rows hold it (exposed for tests and raw SQL).
pub fn sqlite_timestamp(t: DateTime<Utc>) -> String {
    t.format(SQLITE_TS).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn uuid_lists_parse_and_refuse_garbage() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_eq!(parse_uuid_list(""), Ok(vec![]));
        assert_eq!(parse_uuid_list(&a.to_string()), Ok(vec![a]));
        assert_eq!(parse_uuid_list(&format!("{a},{b}")), Ok(vec![a, b]));
        assert!(parse_uuid_list(&format!("{a},")).is_err());
        assert!(parse_uuid_list("not-a-uuid").is_err());
    }

    #[test]
    fn sqlite_timestamps_sort_as_text() {
        let a = Utc.with_ymd_and_hms(2024, 1, 1, 9, 0, 0).unwrap();
        let b = a + chrono::Duration::milliseconds(500);
        let c = a + chrono::Duration::seconds(1);
        let (sa, sb, sc) = (
            sqlite_timestamp(a),
            sqlite_timestamp(b),
            sqlite_timestamp(c),
        );
        assert!(sa < sb && sb < sc, "{sa} {sb} {sc}");
        assert_eq!(parse_sqlite_ts("t", &sb).unwrap(), b);
    }
}
