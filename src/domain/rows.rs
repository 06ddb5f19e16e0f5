//! Reading catalog rows and building multi-row statements: shared by the domain modules.

use sea_orm::Value;
use uuid::Uuid;

use crate::catalog::{Coupon, CouponKind, DiscountType, Product};
use crate::store::{Backend, Row, StoreError, Tx};

/// Product columns, for `FROM products p`.
pub(crate) const PRODUCT_COLS: &str = "p.id AS p_id, p.sku AS p_sku, p.name AS p_name, \
     p.description AS p_description, p.price AS p_price, p.rating AS p_rating, \
     p.review_count AS p_review_count, p.category AS p_category, p.brand AS p_brand, \
     p.in_stock AS p_in_stock";

/// Coupon columns, for `FROM coupons c`.
pub(crate) const COUPON_COLS: &str = "c.id AS c_id, c.code AS c_code, c.type AS c_type, \
     c.discount_details AS c_details, c.category_or_brand AS c_target, \
     c.discount_type AS c_discount_type, c.discount_value AS c_value, \
     c.min_purchase_amount AS c_min, c.max_discount AS c_max, \
     c.expiration_date AS c_expires, c.is_active AS c_active";

/// SQL condition (on `c` and `uc`) for "an active offer in the wallet at `$now`", where `$now`
/// is the placeholder given.
pub(crate) fn active_offer_condition(now: &str) -> String {
    format!(
        "uc.status = 'active' AND (uc.eligible_until IS NULL OR uc.eligible_until > {now}) \
         AND c.is_active AND (c.expiration_date IS NULL OR c.expiration_date > {now})"
    )
}

fn decode(column: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Decode {
        column: column.to_string(),
        reason: reason.into(),
    }
}

/// A product from a row selected with [`PRODUCT_COLS`].
pub(crate) fn product(row: &Row) -> Result<Product, StoreError> {
    Ok(Product {
        id: row.uuid("p_id")?,
        sku: row.opt_string("p_sku")?.unwrap_or_default(),
        name: row.string("p_name")?,
        description: row.opt_string("p_description")?.unwrap_or_default(),
        price: row.money("p_price")?,
        rating: row.opt_f64("p_rating")?.unwrap_or(0.0),
        review_count: row.opt_i64("p_review_count")?.unwrap_or(0),
        category: row.string("p_category")?,
        brand: row.opt_string("p_brand")?.unwrap_or_default(),
        in_stock: row.bool("p_in_stock")?,
    })
}

/// A coupon from a row selected with [`COUPON_COLS`].
pub(crate) fn coupon(row: &Row) -> Result<Coupon, StoreError> {
    let kind = row.string("c_type")?;
    let discount_type = row.string("c_discount_type")?;
    Ok(Coupon {
        id: row.uuid("c_id")?,
        code: row.opt_string("c_code")?.unwrap_or_default(),
        kind: CouponKind::parse(&kind)
            .ok_or_else(|| decode("coupons.type", format!("unknown coupon type `{kind}`")))?,
        discount_details: row.opt_string("c_details")?.unwrap_or_default(),
        category_or_brand: row.opt_string("c_target")?,
        discount_type: DiscountType::parse(&discount_type).ok_or_else(|| {
            decode(
                "coupons.discount_type",
                format!("unknown discount type `{discount_type}`"),
            )
        })?,
        discount_value: row.money("c_value")?,
        min_purchase_amount: row.opt_money("c_min")?,
        max_discount: row.opt_money("c_max")?,
        expiration_date: row.opt_ts("c_expires")?,
        is_active: row.bool("c_active")?,
    })
}

/// `($k, $k+1, …), (…)` placeholders for `rows` rows of `width` values, numbered from `first`.
/// Written into one string: every statement a session writes builds some, and a string per
/// placeholder was the host's most frequent allocation.
pub(crate) fn placeholders(rows: usize, width: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * width * 6);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        push_numbered(&mut out, width, first + r * width);
        out.push(')');
    }
    out
}

/// `$first, $first+1, …` for an `IN (…)` list of `n` values.
pub(crate) fn in_list(n: usize, first: usize) -> String {
    let mut out = String::with_capacity(n * 5);
    push_numbered(&mut out, n, first);
    out
}

/// Appends `$first, …, $(first + n - 1)`.
fn push_numbered(out: &mut String, n: usize, first: usize) {
    use std::fmt::Write;
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "${}", first + i);
    }
}

/// Uuids as statement values.
pub(crate) fn uuid_values(tx: &Tx, ids: &[Uuid]) -> Vec<Value> {
    let codec = tx.codec();
    ids.iter().map(|id| codec.uuid(*id)).collect()
}

/// How many rows a multi-row statement (or `IN` list) of `n` rows is written for: on
/// PostgreSQL `n` rounded up to a power of two, the rest being NULL rows the statement skips
/// ([`pad_rows`]). PostgreSQL connections keep prepared statements by their text, and a text
/// per row count made most of a `grocery` run's multi-row statements miss that cache: each
/// miss costs a round trip to prepare the statement and a plan. SQLite (in-process, no round
/// trips) writes the rows as they are.
pub(crate) fn padded_rows(n: usize, backend: Backend) -> usize {
    match backend {
        Backend::Postgres => n.max(1).next_power_of_two(),
        Backend::Sqlite => n,
    }
}

/// Pads `values` — rows of `width` values — with NULL rows (each value the NULL of the first
/// row's type) up to [`padded_rows`]; returns the number of rows to write placeholders for.
/// The statement must skip the NULL rows: an insert selects `FROM (VALUES …) AS v WHERE
/// v.column1 IS NOT NULL` ([`NOT_PADDING`]); `x IN (…)` never matches a NULL.
pub(crate) fn pad_rows(values: &mut Vec<Value>, width: usize, backend: Backend) -> usize {
    let rows = values.len() / width.max(1);
    let padded = padded_rows(rows, backend);
    if padded > rows && rows > 0 {
        let nulls: Vec<Value> = values[..width].iter().map(Value::as_null).collect();
        values.reserve((padded - rows) * width);
        for _ in rows..padded {
            values.extend(nulls.iter().cloned());
        }
    }
    padded.max(rows)
}

/// The condition that skips [`pad_rows`]' NULL rows in `SELECT … FROM (VALUES …) AS v`: the
/// first value of every real row is never NULL.
pub(crate) const NOT_PADDING: &str = "v.column1 IS NOT NULL";

/// `ids` as values for an `IN` list, padded with NULLs (see [`padded_rows`]).
pub(crate) fn padded_uuid_values(tx: &Tx, ids: &[Uuid]) -> Vec<Value> {
    let mut values = uuid_values(tx, ids);
    pad_rows(&mut values, 1, tx.backend());
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(placeholders(2, 3, 2), "($2, $3, $4), ($5, $6, $7)");
        assert_eq!(in_list(3, 4), "$4, $5, $6");
        assert_eq!(placeholders(1, 1, 10), "($10)");
        assert_eq!(placeholders(0, 3, 1), "");
        assert_eq!(in_list(0, 1), "");
    }

    #[test]
    fn rows_are_padded_to_a_power_of_two_on_postgres_only() {
        let row = |n: i64| [Value::from(n), Value::from(format!("r{n}"))];
        let mut values: Vec<Value> = (1..=3).flat_map(row).collect();
        assert_eq!(pad_rows(&mut values, 2, Backend::Postgres), 4);
        assert_eq!(values.len(), 8);
        assert_eq!(values[6], Value::BigInt(None));
        assert_eq!(values[7], Value::String(None));
        let mut values: Vec<Value> = (1..=3).flat_map(row).collect();
        assert_eq!(pad_rows(&mut values, 2, Backend::Sqlite), 3);
        assert_eq!(values.len(), 6);
        let mut values: Vec<Value> = (1..=4).flat_map(row).collect();
        assert_eq!(pad_rows(&mut values, 2, Backend::Postgres), 4);
        assert_eq!(values.len(), 8);
        assert_eq!(padded_rows(1, Backend::Postgres), 1);
        assert_eq!(padded_rows(5, Backend::Postgres), 8);
        assert_eq!(padded_rows(17, Backend::Postgres), 32);
    }
}
