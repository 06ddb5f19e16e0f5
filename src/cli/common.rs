//! Options and helpers shared by several subcommands.

use std::time::Duration;

use clap::Args;

use crate::store::{DEFAULT_DATABASE_URL, DatabaseUrl, Db, DbConfig, PoolerMode, redact};

/// How to reach the database. Shared by every command that touches it.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Database URL: `sqlite://FILE` (created if missing) or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
    /// (add `?sslmode=require` or `verify-full` for TLS; a server on this machine is reached
    /// without TLS unless the URL or PGSSLMODE sets `sslmode`). The password is never printed.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// Largest number of pooled database connections.
    #[arg(long, env = "SHOPSIM_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// Connections kept open while idle.
    #[arg(long, env = "SHOPSIM_DB_MIN_CONNECTIONS", default_value_t = 0)]
    pub db_min_connections: u32,

    /// How long to wait for a pooled connection before failing (e.g. `30s`, `500ms`).
    #[arg(long, env = "SHOPSIM_DB_ACQUIRE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,

    /// Longest a single PostgreSQL statement may run (sent as `SET LOCAL statement_timeout`
    /// behind a pooler, as a connection option otherwise).
    #[arg(long, env = "SHOPSIM_DB_STATEMENT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,

    /// Transaction-mode pooler in front of PostgreSQL: `auto` detects it from port 6543
    /// (Supabase's pooler port), `none` is a direct connection, `transaction` forces pooler-safe
    /// mode (every unit of work an explicit transaction, no prepared statements kept).
    #[arg(long, env = "SHOPSIM_DB_POOLER", value_enum, default_value = "auto")]
    pub db_pooler: PoolerMode,
}

impl DbArgs {
    /// The connection configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<DbConfig> {
        let url = DatabaseUrl::parse(&self.database_url)?;
        if self.db_max_connections == 0 {
            anyhow::bail!("--db-max-connections must be at least 1");
        }
        let mut cfg = DbConfig::new(url);
        cfg.max_connections = self.db_max_connections;
        cfg.min_connections = self.db_min_connections;
        cfg.acquire_timeout = self.db_acquire_timeout;
        cfg.statement_timeout = self.db_statement_timeout;
        cfg.pooler = self.db_pooler;
        Ok(cfg)
    }

    /// Opens the pool, with an error that names the (redacted) URL.
    pub async fn connect(&self) -> anyhow::Result<Db> {
        let cfg = self.config()?;
        let url = cfg.url.redacted();
        if !cfg.url.is_local()
            && cfg.url.backend() == crate::store::Backend::Postgres
            && !self.database_url.contains("sslmode=require")
            && !self.database_url.contains("sslmode=verify")
        {
            tracing::warn!(url = %url, "connecting to a remote database without sslmode=require or verify-full; the connection may be unencrypted");
        }
        Ok(Db::connect(&cfg).await?)
    }
}

/// Parses `30s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(Duration::from_secs_f64(secs));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("`{s}` is not a duration ({e}); use e.g. 30s, 500ms or 2m"))
}

/// One line per cause, password-free.
pub fn format_error(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = redact(&cause.to_string());
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
