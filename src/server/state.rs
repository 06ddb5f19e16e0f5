//! What every handler shares.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use parking_lot::RwLock;
use uuid::Uuid;

use super::ServerConfig;
use super::faults::Faults;
use super::hints::Hints;
use super::metrics::ServerMetrics;
use crate::domain::Shop;
use crate::store::Db;

/// Shared server state (cheap to clone).
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
pub(crate) struct Inner {
    /// The database.
    pub db: Db,
    /// The shop's rules.
    pub shop: Shop,
    /// Settings.
    pub config: ServerConfig,
    /// Agent id → user id, filled on first use.
    pub agents: RwLock<HashMap<String, Uuid>>,
    /// Last simulated day (days from CE) this process restocked.
    pub restocked_day: AtomicI64,
    /// Serialises restocks within this process.
    pub restock_lock: tokio::sync::Mutex<()>,
    /// Fault injection, rate limit and counters.
    pub faults: Arc<Faults>,
    /// The server's own request metrics (`/metrics`).
    pub metrics: Arc<ServerMetrics>,
    /// Events per open session, the guess its next request's events are numbered from.
    pub event_counts: Hints<i64>,
    /// The store each user last selected through this server (a hint for adding to the cart).
    pub store_hints: Hints<Uuid>,
}

impl AppState {
    /// State over `db`.
    pub fn new(db: Db, config: ServerConfig, faults: Arc<Faults>) -> Self {
        AppState(Arc::new(Inner {
            db,
            shop: Shop::new(config.shop.clone()),
            config,
            agents: RwLock::new(HashMap::new()),
            restocked_day: AtomicI64::new(i64::MIN),
            restock_lock: tokio::sync::Mutex::new(()),
            faults,
            metrics: Arc::new(ServerMetrics::new()),
            event_counts: Hints::default(),
            store_hints: Hints::default(),
        }))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl axum::extract::FromRef<AppState> for Arc<Faults> {
    fn from_ref(s: &AppState) -> Arc<Faults> {
        s.faults.clone()
    }
}
