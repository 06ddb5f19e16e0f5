//! Schema migrations (sea-orm-migration). The tables themselves are described once, as data,
//! in [`schema`]; each migration renders its tables for the connected backend.
//!
//! Rules: contract tables are created only where missing and never dropped or altered (a table
//! that already exists is left exactly as it is, indexes included); later migrations may add
//! tables or nullable columns but never `ALTER COLUMN` (SQLite cannot).

pub mod schema;

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

use schema::{Dialect, Table};

/// The ordered list of shopsim migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateContractTables), Box::new(CreateSimTables)]
    }
}

/// Creates the VoiceOffers contract tables that are missing.
pub struct CreateContractTables;

impl MigrationName for CreateContractTables {
    fn name(&self) -> &str {
        "m20261127_000001_contract_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateContractTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_missing(manager, schema::CONTRACT_TABLES).await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Contract tables hold the application's data: never dropped by shopsim.
        Ok(())
    }
}

/// Creates shopsim's own `sim_` tables.
pub struct CreateSimTables;

impl MigrationName for CreateSimTables {
    fn name(&self) -> &str {
        "m20261127_000002_sim_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSimTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_missing(manager, schema::SIM_TABLES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in schema::SIM_TABLES.iter().rev() {
            manager
                .get_connection()
                .execute_unprepared(&format!("DROP TABLE IF EXISTS \"{}\"", t.name))
                .await?;
        }
        Ok(())
    }
}

fn dialect(backend: DbBackend) -> Result<Dialect, DbErr> {
    match backend {
        DbBackend::Postgres => Ok(Dialect::Postgres),
        DbBackend::Sqlite => Ok(Dialect::Sqlite),
        other => Err(DbErr::Custom(format!("shopsim does not support {other:?}"))),
    }
}

async fn create_missing(manager: &SchemaManager<'_>, tables: &[Table]) -> Result<(), DbErr> {
    let dialect = dialect(manager.get_database_backend())?;
    for table in tables {
        if manager.has_table(table.name).await? {
            tracing::debug!(table = table.name, "table exists; left unchanged");
            continue;
        }
        for sql in schema::create_statements(table, dialect) {
            manager.get_connection().execute_unprepared(&sql).await?;
        }
        tracing::debug!(table = table.name, "table created");
    }
    Ok(())
}
