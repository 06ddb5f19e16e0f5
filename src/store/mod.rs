//! The data layer: one schema on SQLite and PostgreSQL, pooler-safe transactions, exact money.
//!
//! Nothing here knows about HTTP or the simulation; the domain layer, the reference server and
//! the simulation host all go through [`Db`] and [`Tx`].

pub mod batch;
mod codec;
pub mod combine;
mod config;
mod db;
mod error;
mod migrate;
mod url;

pub use codec::{Codec, Row, sqlite_timestamp};
pub use combine::Stmt;
pub use config::{DbConfig, PoolerMode};
pub use db::{Db, Tx};
pub use error::{StoreError, db_err_is_unavailable};
pub use migrate::{CheckReport, MigrateReport, SchemaProblem, check, migrate};
pub use url::{Backend, DEFAULT_DATABASE_URL, DatabaseUrl, redact};
