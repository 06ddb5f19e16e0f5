//! `shopsim serve`: the reference VoiceOffers server.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::common::{DbArgs, parse_duration};
use crate::domain::ShopConfig;
use crate::server::{self, FailMode, FaultSettings, LatencyRange, ServerConfig};
use crate::store;

/// Serve the VoiceOffers API on a database.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is logged).
    #[arg(long, env = "SHOPSIM_ADDR", default_value = "127.0.0.1:8000")]
    addr: SocketAddr,

    /// Seed of the offer engine (offer draws and holdout membership).
    #[arg(long, env = "SHOPSIM_SEED", default_value_t = 42)]
    seed: u64,

    #[command(flatten)]
    db: DbArgs,

    /// Server-wide rate limit in requests per second (429 with Retry-After above it);
    /// /health and /admin/* are exempt. Unlimited when absent or 0.
    #[arg(long, env = "SHOPSIM_RATE_LIMIT")]
    rate_limit: Option<u32>,

    /// Share of API requests that fail with 503 `injected_fault`, 0.0–1.0.
    #[arg(long, env = "SHOPSIM_FAIL_RATE", default_value_t = 0.0)]
    fail_rate: f64,

    /// When injected failures happen: `before` (nothing done), `after` (done and committed,
    /// then 503) or `mixed` (50/50).
    #[arg(long, env = "SHOPSIM_FAIL_MODE", default_value = "before")]
    fail_mode: FailMode,

    /// Added latency per API request in milliseconds, `MIN..MAX` (e.g. `5..50`).
    #[arg(long, env = "SHOPSIM_LATENCY_MS")]
    latency_ms: Option<LatencyRange>,

    /// Seed of fault and latency draws (default: --seed).
    #[arg(long, env = "SHOPSIM_FAULT_SEED")]
    fault_seed: Option<u64>,

    /// Units every (store, product) is restocked to at simulated midnight.
    #[arg(long, env = "SHOPSIM_RESTOCK_LEVEL", default_value_t = 500)]
    restock_level: i64,

    /// Share of users in the holdout group that gets no offers, 0.0–1.0.
    #[arg(long, env = "SHOPSIM_HOLDOUT_SHARE", default_value_t = 0.10)]
    holdout_share: f64,

    /// How long (PostgreSQL) a duplicate request waits for a running one with the same
    /// Idempotency-Key before it gets 409 (e.g. `2000ms`, `2s`).
    #[arg(long, env = "SHOPSIM_IDEMPOTENCY_LOCK_TIMEOUT", default_value = "2000ms", value_parser = parse_duration)]
    idempotency_lock_timeout: Duration,

    /// Do not create missing tables at start (fail later if they are missing).
    #[arg(long, env = "SHOPSIM_NO_MIGRATE")]
    no_migrate: bool,
}

impl ServeArgs {
    /// The server configuration these flags describe.
    pub fn config(&self) -> ServerConfig {
        ServerConfig {
            addr: self.addr,
            shop: ShopConfig {
                seed: self.seed,
                restock_level: self.restock_level,
                holdout_share: self.holdout_share,
                ..ShopConfig::default()
            },
            faults: FaultSettings {
                fail_rate: self.fail_rate,
                fail_mode: self.fail_mode,
                latency_ms: self.latency_ms,
                rate_limit: self.rate_limit.filter(|&n| n > 0),
            },
            fault_seed: self.fault_seed.unwrap_or(self.seed),
            idempotency_lock_timeout: self.idempotency_lock_timeout,
        }
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.config();
    // Bad settings fail before touching the database.
    config.validate()?;
    let db = args.db.connect().await?;
    if !args.no_migrate {
        let report = store::migrate(&db).await?;
        if !report.created.is_empty() {
            tracing::info!(tables = ?report.created, "created missing tables");
        }
    }
    tracing::info!(database = %db.url(), "serving the VoiceOffers API");
    server::serve(db, config).await?;
    Ok(ExitCode::SUCCESS)
}
