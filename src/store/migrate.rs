//! `shopsim migrate` and `shopsim migrate --check`.
//!
//! Migrations run inside one explicit transaction (PostgreSQL DDL is transactional), which
//! makes them safe through a transaction-mode pooler and atomic; concurrent migrators (several
//! shards starting at once) serialise on a transaction-scoped advisory lock.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm_migration::MigratorTrait;

use super::db::Db;
use super::error::StoreError;
use super::url::Backend;
use crate::migrations::Migrator;
use crate::migrations::schema::{self, Table};

/// What `migrate` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MigrateReport {
    /// Tables created by this call.
    pub created: Vec<String>,
    /// Tables that already existed and were left unchanged.
    pub kept: Vec<String>,
}

/// Applies pending migrations. Running it twice is a no-op.
pub async fn migrate(db: &Db) -> Result<MigrateReport, StoreError> {
    let before = existing_tables(db).await?;
    let tx = db.write().await?;
    if db.backend() == Backend::Postgres {
        // Released at commit; works through a transaction pooler, unlike session locks.
        tx.exec("SELECT pg_advisory_xact_lock(7402931187)", vec![])
            .await?;
    }
    let conn = tx
        .connection()
        .ok_or_else(|| StoreError::Schema("migrations need a transaction".into()))?;
    Migrator::up(conn, None)
        .await
        .map_err(|e| StoreError::query("applying migrations", e))?;
    tx.commit().await?;
    let after = existing_tables(db).await?;
    let mut report = MigrateReport::default();
    for t in schema::all_tables() {
        if before.contains_key(t.name) {
            report.kept.push(t.name.to_string());
        } else if after.contains_key(t.name) {
            report.created.push(t.name.to_string());
        }
    }
    Ok(report)
}

/// A problem found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SchemaProblem {
    /// A table is missing.
    MissingTable {
        /// Table name.
        table: String,
        /// A contract table (rather than one of shopsim's).
        contract: bool,
    },
    /// A required column is missing.
    MissingColumn {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
    },
    /// A column exists with a type shopsim cannot use.
    IncompatibleType {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
        /// The type found.
        found: String,
        /// The type expected.
        expected: String,
    },
}

impl std::fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaProblem::MissingTable {
                table,
                contract: true,
            } => write!(f, "contract table {table} is missing"),
            SchemaProblem::MissingTable {
                table,
                contract: false,
            } => write!(f, "shopsim table {table} is missing"),
            SchemaProblem::MissingColumn { table, column } => {
                write!(f, "column {table}.{column} is missing")
            }
            SchemaProblem::IncompatibleType {
                table,
                column,
                found,
                expected,
            } => {
                write!(
                    f,
                    "column {table}.{column} has type {found}, expected {expected}"
                )
            }
        }
    }
}

/// The verdict of `migrate --check`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Everything that makes the database unusable as it is.
    pub problems: Vec<SchemaProblem>,
    /// Optional shopsim extension columns a contract table lacks (exports fall back).
    pub missing_extensions: Vec<String>,
    /// Migrations not yet recorded as applied.
    pub pending_migrations: Vec<String>,
}

impl CheckReport {
    /// True when shopsim can run against this database without migrating.
    pub fn compatible(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Compares the database with the schema shopsim expects, changing nothing.
pub async fn check(db: &Db) -> Result<CheckReport, StoreError> {
    let existing = existing_tables(db).await?;
    let mut report = CheckReport::default();
    for t in schema::all_tables() {
        check_table(t, existing.get(t.name), db.backend(), &mut report);
    }
    let applied: BTreeSet<String> = if existing.contains_key("seaql_migrations") {
        let tx = db.read().await?;
        let rows = tx
            .query("SELECT version FROM seaql_migrations", vec![])
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| r.string("version"))
            .collect::<Result<_, _>>()?
    } else {
        BTreeSet::new()
    };
    for m in Migrator::migrations() {
        if !applied.contains(m.name()) {
            report.pending_migrations.push(m.name().to_string());
        }
    }
    Ok(report)
}

fn check_table(
    t: &Table,
    found: Option<&BTreeMap<String, String>>,
    backend: Backend,
    report: &mut CheckReport,
) {
    let Some(cols) = found else {
        report.problems.push(SchemaProblem::MissingTable {
            table: t.name.into(),
            contract: t.contract,
        });
        return;
    };
    for c in t.cols {
        match cols.get(c.name) {
            None if c.extension => report
                .missing_extensions
                .push(format!("{}.{}", t.name, c.name)),
            None => report.problems.push(SchemaProblem::MissingColumn {
                table: t.name.into(),
                column: c.name.into(),
            }),
            Some(found_ty)
                if backend == Backend::Postgres
                    && !c.ty.postgres_compatible().contains(&found_ty.as_str()) =>
            {
                report.problems.push(SchemaProblem::IncompatibleType {
                    table: t.name.into(),
                    column: c.name.into(),
                    found: found_ty.clone(),
                    expected: c.ty.postgres().to_string(),
                });
            }
            Some(_) => {}
        }
    }
}

/// Table name → (column name → type name) for every table in the current schema.
async fn existing_tables(
    db: &Db,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, StoreError> {
    let sql = match db.backend() {
        Backend::Postgres => {
            "SELECT table_name::text AS table_name, column_name::text AS column_name, udt_name::text AS type_name \
             FROM information_schema.columns WHERE table_schema = current_schema()"
        }
        Backend::Sqlite => {
            "SELECT m.name AS table_name, p.name AS column_name, lower(p.type) AS type_name \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'"
        }
    };
    let tx = db.read().await?;
    let rows = tx.query(sql, vec![]).await?;
    tx.commit().await?;
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for r in rows {
        out.entry(r.string("table_name")?)
            .or_default()
            .insert(r.string("column_name")?, r.string("type_name")?);
    }
    Ok(out)
}
