//! How to connect: URL, pool sizes, timeouts and pooler mode.

use std::time::Duration;

use super::url::{Backend, DatabaseUrl};

/// Whether a transaction-mode pooler (PgBouncer, Supabase Supavisor on 6543) sits between
/// shopsim and PostgreSQL.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PoolerMode {
    /// Transaction mode when the port is 6543 (Supabase's pooler port), direct otherwise.
    Auto,
    /// A direct connection or a session-mode pooler: session state is kept.
    None,
    /// A transaction-mode pooler: nothing may depend on session state or on prepared
    /// statements surviving between transactions.
    Transaction,
}

/// Everything needed to open a connection pool.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Where the database is.
    pub url: DatabaseUrl,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long to wait for a free pooled connection (and for a new connection).
    pub acquire_timeout: Duration,
    /// Longest a single statement may run on PostgreSQL.
    pub statement_timeout: Duration,
    /// Pooler mode; `Auto` resolves from the port.
    pub pooler: PoolerMode,
}

impl DbConfig {
    /// A configuration with the documented defaults for `url`.
    pub fn new(url: DatabaseUrl) -> Self {
        Self {
            url,
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(30),
            statement_timeout: Duration::from_secs(30),
            pooler: PoolerMode::Auto,
        }
    }

    /// True when statements must be pooler-safe (transaction mode).
    pub fn transaction_pooler(&self) -> bool {
        match self.pooler {
            PoolerMode::Transaction => true,
            PoolerMode::None => false,
            PoolerMode::Auto => {
                self.url.backend() == Backend::Postgres && self.url.port() == Some(6543)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooler_is_detected_from_port_6543() {
        let auto = |u: &str| DbConfig::new(DatabaseUrl::parse(u).unwrap()).transaction_pooler();
        assert!(auto("postgres://u@pooler.example.com:6543/postgres"));
        assert!(!auto("postgres://u@db.example.com:5432/postgres"));
        assert!(!auto("sqlite://x.db"));
        let mut forced = DbConfig::new(DatabaseUrl::parse("postgres://u@h:5432/d").unwrap());
        forced.pooler = PoolerMode::Transaction;
        assert!(forced.transaction_pooler());
    }
}
