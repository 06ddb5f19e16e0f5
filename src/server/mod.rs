//! The reference VoiceOffers HTTP server (`shopsim serve`, or in-process from the simulation
//! host).
//!
//! Layout:
//! - [`routes`]: the endpoints (thin: extract, call [`crate::domain::Shop`], answer JSON);
//! - `extract`: extractors whose rejections are JSON 4xx, never 500;
//! - `auth`: `Bearer dev:<agent_id>` → user, cached;
//! - `simtime`: `X-Sim-Time`, `X-Shopping-Session-Id`, restocking at simulated midnight;
//! - `idempotency`: `Idempotency-Key` on every write (replay, 409, 422);
//! - `hints`: bounded guesses that save round trips (events per session, store per user);
//! - [`faults`] and `ratelimit`: fault injection, latency, the server-wide 429 limit, counters;
//! - `admin`: loopback-only `/admin/faults`;
//! - [`metrics`]: the server's own Prometheus `/metrics` (requests by route and status);
//! - [`error`]: the JSON error shape.
//!
//! Start it in-process with [`start`] (bind `127.0.0.1:0` and read
//! [`RunningServer::local_addr`]), stop it with [`RunningServer::shutdown`]:
//!
//! ```text
//! let server = shopsim::server::start(db.clone(), ServerConfig::default()).await?; // 127.0.0.1:0
//! let base = server.base_url();                    // http://127.0.0.1:<port>
//! server.faults().update(FaultPatch { fail_rate: Some(0.05), ..Default::default() })?;
//! let counters = server.faults().counters();       // requests, injected_*, replays, …
//! server.shutdown().await?;                        // in-flight requests finish first
//! ```
//!
//! Request headers: `Authorization: Bearer dev:<agent_id>`, `X-Sim-Time` (RFC 3339; absent =
//! wall clock), `X-Shopping-Session-Id` (UUID), `Idempotency-Key` (writes). Answers of a
//! replayed write carry `Idempotent-Replayed: true`.

mod admin;
mod auth;
pub mod error;
mod extract;
pub mod faults;
mod hints;
mod idempotency;
pub mod metrics;
mod ratelimit;
pub mod routes;
mod simtime;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post, put};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::ShopConfig;
use crate::store::Db;

pub use error::ApiError;
pub use extract::IDEMPOTENCY_HEADER;
pub use faults::{FailMode, FaultCounters, FaultPatch, FaultSettings, Faults, LatencyRange};
pub use idempotency::REPLAYED_HEADER;
pub use simtime::{SESSION_HEADER, SIM_TIME_HEADER};

use state::AppState;

/// Everything the server needs besides the database.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port (see [`RunningServer::local_addr`]).
    pub addr: SocketAddr,
    /// The shop's rules (offer seed, restock level, holdout share, …).
    pub shop: ShopConfig,
    /// Fault injection and rate limit at start (changeable at runtime).
    pub faults: FaultSettings,
    /// Seed of the fault stream.
    pub fault_seed: u64,
    /// How long (PostgreSQL) a duplicate request waits for a running one with the same
    /// `Idempotency-Key` before it is answered 409.
    pub idempotency_lock_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let shop = ShopConfig::default();
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            fault_seed: shop.seed,
            shop,
            faults: FaultSettings::default(),
            idempotency_lock_timeout: Duration::from_millis(2000),
        }
    }
}

impl ServerConfig {
    /// Checks the settings, naming the bad one.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |m: String| Err(ServerError::Config(m));
        if self.shop.restock_level < 0 {
            return bad(format!(
                "restock level {} must be 0 or more",
                self.shop.restock_level
            ));
        }
        let h = self.shop.holdout_share;
        if !h.is_finite() || !(0.0..=1.0).contains(&h) {
            return bad(format!(
                "holdout share {h} is out of range; use a number from 0.0 to 1.0"
            ));
        }
        if self.idempotency_lock_timeout < Duration::from_millis(1) {
            return bad("idempotency lock timeout must be at least 1ms".into());
        }
        self.faults.validate().map_err(ServerError::Config)
    }
}

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is out of range.
    #[error("invalid server setting: {0}")]
    Config(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another server using it? pick another --addr)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server task panicked or was cancelled.
    #[error("server task ended abnormally: {0}")]
    Task(String),
}

/// The router over `db` (without a listener; peers are unknown, so admin endpoints answer
/// 403 unless served with connect info as [`start`] does). Returns the fault handle too.
pub fn build_router(db: Db, config: ServerConfig) -> Result<(Router, Arc<Faults>), ServerError> {
    config.validate()?;
    let faults = Arc::new(
        Faults::new(config.faults.clone(), config.fault_seed).map_err(ServerError::Config)?,
    );
    let state = AppState::new(db, config, faults.clone());
    Ok((router(state), faults))
}

fn router(state: AppState) -> Router {
    use routes as r;
    let api = Router::new()
        .route("/api/stores", get(r::list_stores))
        .route("/api/user/store", put(r::select_store))
        .route("/api/products", get(r::list_products))
        .route("/api/products/{id}", get(r::get_product))
        .route("/api/cart", get(r::get_cart).delete(r::clear_cart))
        .route("/api/cart/items", post(r::add_to_cart))
        .route("/api/cart/add", post(r::add_to_cart))
        .route("/api/coupons/eligible", get(r::eligible_coupons))
        .route("/api/cart/coupons", post(r::apply_coupon))
        .route("/api/cart/summary", get(r::cart_summary))
        .route("/api/orders", post(r::checkout).get(r::list_orders))
        .route("/api/orders/checkout", post(r::checkout))
        .route("/api/offers/wallet/{user_id}", get(r::wallet))
        .route("/api/offers/refresh", post(r::refresh_offers))
        .route("/api/offers/assign", post(r::refresh_offers))
        // Rate limit and faults apply to the API only (not /health, not /admin).
        .route_layer(axum::middleware::from_fn_with_state(
            state.faults.clone(),
            faults::middleware,
        ))
        // Outermost: injected faults and 429s are counted as the clients saw them.
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ));
    let registry = state.metrics.clone();
    Router::new()
        .route("/health", get(r::health))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { registry.render() }
            }),
        )
        .route(
            "/admin/faults",
            get(admin::get_faults).put(admin::put_faults),
        )
        .route("/admin/faults/reset", post(admin::reset_faults))
        .merge(api)
        .fallback(r::not_found)
        .method_not_allowed_fallback(r::method_not_allowed)
        .with_state(state)
}

/// A server running on a background task.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    faults: Arc<Faults>,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<local_addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The fault injector: read counters, change settings at runtime.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits for the end.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.stop.cancel();
        self.wait().await
    }

    /// Waits until the server stops (after [`RunningServer::shutdown`] or a fatal error).
    async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(r) => r.map_err(ServerError::Io),
            Err(e) => Err(ServerError::Task(e.to_string())),
        }
    }
}

/// Binds `config.addr` and serves on a background task.
pub async fn start(db: Db, config: ServerConfig) -> Result<RunningServer, ServerError> {
    let addr = config.addr;
    let (app, faults) = build_router(db, config)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local_addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stopped.cancelled().await })
        .await
    });
    Ok(RunningServer {
        local_addr,
        faults,
        stop,
        task,
    })
}

/// Serves until Ctrl-C or SIGTERM, then shuts down gracefully (in-flight requests finish).
pub async fn serve(db: Db, config: ServerConfig) -> Result<(), ServerError> {
    let server = start(db, config).await?;
    tracing::info!(addr = %server.local_addr(), "shopsim reference server listening on http://{}", server.local_addr());
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.shutdown().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No Ctrl-C handler possible: rely on SIGTERM only.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
