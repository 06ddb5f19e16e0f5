//! [`InProcessActions`]: the session steps through [`Shop`] directly on a [`Db`] — no HTTP, for
//! generating data fast. The domain writes the same rows and session events as the reference
//! server, and restocks at the first step of a new simulated day as the server does.
//!
//! Transactions ([`TxMode`]):
//! - `PerSession` (default, for `max` runs): one write transaction from
//!   [`Actions::open_session`] to [`SessionActions::close`]. Rejections leave it usable (the
//!   domain validates before writing); a database error rolls the whole session back and fails
//!   it. The session's events, and on PostgreSQL its row, are written at the close in one
//!   statement with the outcome and the fence check. Its cart is held in memory
//!   ([`SessionCart`]): nobody else sees it, and it is empty again before the commit. Such a
//!   session is atomic ([`Actions::sessions_are_atomic`]), so it is not marked in progress.
//! - `PerStep` (for paced runs, where a session lasts minutes and must not hold a write lock):
//!   one transaction per step.
//!
//! Round trips saved where the host knows the answer already: a product view takes the SKU
//! and price from the run's catalog copy ([`InProcessConfig::products`]); adding to a
//! session cart reads every product the session's plan will add at its first add
//! ([`SessionActions::expect_adds`]), and the later adds read nothing; adding to the database's
//! cart passes the store the session selected, so that the checks and the new line are one
//! statement.
//!
//! An unreachable database is an outage: requests wait at a gate while one task probes the
//! database with backoff. In `PerStep` mode the step is then re-run (its transaction was rolled
//! back, so nothing applies twice). In `PerSession` mode the session's open transaction is lost
//! with its connection: once the database is back, the steps done so far are redone in a new
//! transaction at their simulated times, then the step runs again; if a redone step no longer
//! succeeds (another session took the last unit meanwhile), the session fails (`db`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use chrono::Datelike;
use futures::TryFutureExt;
use futures::future::BoxFuture;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::config::{ActionsSetupError, OutageConfig};
use super::known_users::KnownUsers;
use super::outage::{OutageGate, OutageInfo, Probe};
use super::{ActionError, ActionResult, Actions, SessionActions, SessionInfo, Step, outcome_of};
use crate::domain::{
    ActiveOffer, AddToCartResult, ApplyCouponResult, CartSummary, CheckoutResult, ClearCartResult,
    Ctx, DomainError, DomainResult, EligibleCoupons, HeldOutcome, KnownCatalog, RefreshResult,
    Refreshed, RejectCode, SelectStoreResult, SessionCart, SessionEvents, Shop, ShopConfig,
    WalletView,
};
use crate::sim::metrics::{Endpoint, Metrics, Outcome};
use crate::sim::records::runs::{SessionStatus, session_status};
use crate::sim::records::shards::Fence;
use crate::sim::records::{RecordsError, update_session_stmt};
use crate::sim::session::SessionReport;
use crate::store::{Db, Stmt, StoreError, Tx};

/// How in-process sessions use transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxMode {
    /// One write transaction per session (fast; holds a write lock for the session).
    #[default]
    PerSession,
    /// One transaction per step (paced runs).
    PerStep,
}

/// Settings of [`InProcessActions`].
#[derive(Debug, Clone, Default)]
pub struct InProcessConfig {
    /// The shop's rules (the same as the reference server's in an HTTP run).
    pub shop: ShopConfig,
    /// Transactions per session or per step.
    pub tx_mode: TxMode,
    /// Probing of an unreachable database.
    pub outage: OutageConfig,
    /// The catalog's products and coupons as the run loaded them: a product view takes the
    /// SKU and price from here instead of reading them, and a refresh knows the terms of the
    /// offers it assigns (the catalog does not change during a run).
    pub catalog: Option<Arc<KnownCatalog>>,
    /// The shard's lease: a session's work commits only while it holds (checked in the
    /// session's transaction, so a process that lost its slice cannot apply a session the
    /// new owner runs again).
    pub fence: Option<Fence>,
}

/// The in-process actions: shared by every session. Cheap to clone.
#[derive(Clone)]
pub struct InProcessActions {
    shared: Arc<Shared>,
}

struct Shared {
    db: Db,
    shop: Shop,
    tx_mode: TxMode,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    outage: Arc<OutageGate>,
    fence: Option<Fence>,
    /// The agents' active offers and store selections between their sessions (sessions per
    /// transaction with a catalog copy only: see [`KnownUsers`]).
    known: Option<KnownUsers>,
    /// Last simulated day (days from CE) whose restock this process has committed.
    restocked_day: AtomicI64,
}

impl std::fmt::Debug for InProcessActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessActions")
            .field("tx_mode", &self.shared.tx_mode)
            .finish()
    }
}

impl InProcessActions {
    /// Actions on `db`. `cancel` ends outage waits with [`ActionError::Interrupted`].
    pub fn new(
        db: Db,
        config: InProcessConfig,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> Result<Self, ActionsSetupError> {
        config.outage.validate()?;
        let h = config.shop.holdout_share;
        if !h.is_finite() || !(0.0..=1.0).contains(&h) || config.shop.restock_level < 0 {
            return Err(ActionsSetupError::Invalid(format!(
                "shop settings out of range (holdout share {h} must be 0–1, restock level {} \
                 must be ≥ 0)",
                config.shop.restock_level
            )));
        }
        // This process is the only writer of its agents' wallets, selections and carts, whose
        // every change is a session of theirs that is one transaction here.
        let known = match (&config.catalog, config.tx_mode) {
            (Some(catalog), TxMode::PerSession) => Some(KnownUsers::new(catalog.clone())),
            _ => None,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                db,
                shop: match config.catalog {
                    Some(known) => Shop::new(config.shop).with_known_catalog(known),
                    None => Shop::new(config.shop),
                },
                known,
                tx_mode: config.tx_mode,
                metrics,
                outage: Arc::new(OutageGate::new("database", config.outage, cancel.clone())),
                cancel,
                fence: config.fence,
                restocked_day: AtomicI64::new(i64::MIN),
            }),
        })
    }

    /// The ongoing database outage, if any.
    pub fn outage(&self) -> Option<OutageInfo> {
        self.shared.outage.current()
    }

    /// The transaction mode.
    pub fn tx_mode(&self) -> TxMode {
        self.shared.tx_mode
    }

    /// A session driver (the concrete type behind [`Actions::open_session`]). In `PerSession`
    /// mode the session's write transaction begins at its first statement (after waiting out
    /// an outage here): steps answered from memory hold no connection, and a session whose
    /// only statement is its close sends it alone (see `close`).
    pub async fn session(&self, info: SessionInfo) -> ActionResult<InProcessSession> {
        let tx = match self.shared.tx_mode {
            TxMode::PerSession => {
                self.shared.wait_gate().await?;
                Some(self.shared.db.write_lazily())
            }
            TxMode::PerStep => None,
        };
        let cart = SessionCart::new();
        if let Some(known) = &self.shared.known {
            known.lend(info.user_id, &cart);
        }
        Ok(InProcessSession {
            shared: self.shared.clone(),
            info,
            tx,
            broken: None,
            restock_day: None,
            scheduled: None,
            done: Vec::new(),
            // PostgreSQL: the session row too waits for the close (see `close`).
            events: SessionEvents::deferred(),
            cart,
            store: None,
            refreshed: None,
        })
    }
}

#[async_trait]
impl Actions for InProcessActions {
    async fn open_session(&self, session: SessionInfo) -> ActionResult<Box<dyn SessionActions>> {
        Ok(Box::new(self.session(session).await?))
    }

    fn mode(&self) -> &'static str {
        "inprocess"
    }

    fn sessions_are_atomic(&self) -> bool {
        self.shared.tx_mode == TxMode::PerSession
    }

    fn current_outage(&self) -> Option<OutageInfo> {
        self.outage()
    }

    fn outage_gave_up(&self) -> Option<String> {
        self.shared.outage.gave_up()
    }

    /// Restocks in a short transaction of its own when `at` opens a simulated day. Inside the
    /// first session's transaction (where a session would otherwise do it) the claim row and
    /// inventory updates would hold every other session of the day waiting until that one
    /// ends.
    async fn day_starts(&self, at: chrono::DateTime<chrono::Utc>) -> ActionResult<()> {
        let shared = &self.shared;
        if !shared.restock_due(at) {
            return Ok(());
        }
        loop {
            let tx = shared.begin(true).await?;
            let done = async {
                let rows = shared.shop.restock_if_due(&tx, at).await?;
                tx.commit().await?;
                Ok::<_, DomainError>(rows)
            };
            match done.await {
                Ok(rows) => {
                    shared.restocked(Some(sim_day(at)));
                    if let Some(rows) = rows {
                        tracing::info!(day = %at.date_naive(), rows, "restocked inventory at simulated midnight");
                    }
                    return Ok(());
                }
                Err(DomainError::Store(e)) if e.is_unavailable() => {
                    shared.report_outage(&e);
                    shared.wait_gate().await?;
                }
                Err(e) => return Err(db_failure(format!("restocking failed: {e}"))),
            }
        }
    }
}

fn db_failure(reason: String) -> ActionError {
    ActionError::Failed {
        class: Outcome::Db,
        reason,
        attempts: 1,
    }
}

impl Shared {
    /// Begins a transaction, waiting out outages.
    async fn begin(self: &Arc<Self>, write: bool) -> ActionResult<Tx> {
        loop {
            self.wait_gate().await?;
            let r = if write {
                self.db.write().await
            } else {
                self.db.read().await
            };
            match r {
                Ok(tx) => return Ok(tx),
                Err(e) if e.is_unavailable() => self.report_outage(&e),
                Err(e) => return Err(db_failure(format!("cannot begin a transaction: {e}"))),
            }
        }
    }

    async fn wait_gate(&self) -> ActionResult<()> {
        self.outage.wait_open(&self.cancel).await.map_err(|_| {
            ActionError::Interrupted("not run: shutting down during a database outage".into())
        })
    }

    fn report_outage(self: &Arc<Self>, e: &StoreError) {
        let db = self.db.clone();
        let probe: Probe = Box::new(move || {
            let db = db.clone();
            Box::pin(async move {
                match db.read().await {
                    Ok(tx) => tx.commit().await.is_ok(),
                    Err(e) => !e.is_unavailable(),
                }
            })
        });
        self.outage.report(e.to_string(), probe);
    }

    /// Restocks in `tx` if `now` opens a simulated day this process has not restocked; the
    /// day to mark as done once `tx` commits.
    async fn restock(
        &self,
        tx: &Tx,
        now: chrono::DateTime<chrono::Utc>,
    ) -> DomainResult<Option<i64>> {
        if !self.restock_due(now) {
            return Ok(None);
        }
        let day = sim_day(now);
        if let Some(rows) = self.shop.restock_if_due(tx, now).await? {
            tracing::info!(day = %now.date_naive(), rows, "restocked inventory at simulated midnight");
        }
        Ok(Some(day))
    }

    /// True when `now` falls on a simulated day this process has not restocked yet.
    fn restock_due(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        sim_day(now) > self.restocked_day.load(Ordering::Acquire)
    }

    fn restocked(&self, day: Option<i64>) {
        if let Some(day) = day {
            self.restocked_day.fetch_max(day, Ordering::AcqRel);
        }
    }
}

/// Days from CE of a simulated instant (UTC), as the server counts restock days.
fn sim_day(now: chrono::DateTime<chrono::Utc>) -> i64 {
    i64::from(now.date_naive().num_days_from_ce())
}

/// One domain call of a step.
trait DomainOp: Copy + Send + Sync + 'static {
    type Output: Send + serde::Serialize + serde::de::DeserializeOwned;
    const ENDPOINT: Endpoint;
    fn call<'a>(
        self,
        shop: &'a Shop,
        tx: &'a Tx,
        ctx: &'a Ctx,
    ) -> BoxFuture<'a, DomainResult<Self::Output>>;
}

macro_rules! domain_op {
    ($name:ident { $($field:ident : $ty:ty),* } -> $out:ty, $endpoint:expr,
     |$shop:ident, $tx:ident, $ctx:ident| $body:expr) => {
        #[derive(Clone, Copy)]
        struct $name { $($field: $ty),* }
        impl DomainOp for $name {
            type Output = $out;
            const ENDPOINT: Endpoint = $endpoint;
            fn call<'a>(self, $shop: &'a Shop, $tx: &'a Tx, $ctx: &'a Ctx)
                -> BoxFuture<'a, DomainResult<$out>> {
                let Self { $($field),* } = self;
                Box::pin(async move { $body.await })
            }
        }
    };
}

domain_op!(SelectStore { store_id: Uuid } -> SelectStoreResult, Endpoint::SelectStore,
    |shop, tx, ctx| shop.select_store(tx, ctx, store_id));
domain_op!(Refresh {} -> RefreshResult, Endpoint::RefreshOffers,
    |shop, tx, ctx| shop.refresh_offers(tx, ctx));
domain_op!(RefreshDrawn {} -> Refreshed, Endpoint::RefreshOffers,
    |shop, tx, ctx| shop.refresh_offers_drawn(tx, ctx));
domain_op!(Wallet {} -> WalletView, Endpoint::Wallet,
    |shop, tx, ctx| shop.wallet(tx, ctx.user_id, ctx.now));
// The answer is not needed (`null`); any stored JSON (an older version kept the detail)
// replays.
domain_op!(ViewProduct { product_id: Uuid } -> serde_json::Value, Endpoint::ViewProduct,
    |shop, tx, ctx| shop.view_product(tx, ctx, product_id).map_ok(|()| serde_json::Value::Null));
domain_op!(AddToCart { product_id: Uuid, quantity: i64, store: Option<Uuid> } -> AddToCartResult,
    Endpoint::AddToCart,
    |shop, tx, ctx| shop.add_to_cart_in(tx, ctx, product_id, quantity, store));
domain_op!(Eligible {} -> EligibleCoupons, Endpoint::EligibleCoupons,
    |shop, tx, ctx| shop.eligible_coupons(tx, ctx));
domain_op!(ApplyCoupon { coupon_id: Uuid } -> ApplyCouponResult, Endpoint::ApplyCoupon,
    |shop, tx, ctx| shop.apply_coupon(tx, ctx, coupon_id));
domain_op!(Summary {} -> CartSummary, Endpoint::CartSummary,
    |shop, tx, ctx| shop.cart_summary(tx, ctx));
domain_op!(Checkout {} -> CheckoutResult, Endpoint::Checkout,
    |shop, tx, ctx| shop.checkout(tx, ctx));
domain_op!(Abandon {} -> ClearCartResult, Endpoint::Abandon,
    |shop, tx, ctx| shop.clear_cart(tx, ctx));

/// The driver of one session in-process.
pub struct InProcessSession {
    shared: Arc<Shared>,
    info: SessionInfo,
    /// The session's transaction (`PerSession` mode, until a database error drops it).
    tx: Option<Tx>,
    /// Why the session's transaction was rolled back, if it was.
    broken: Option<String>,
    /// Restocked day to mark as done when the session's transaction commits.
    restock_day: Option<i64>,
    scheduled: Option<Instant>,
    /// The steps done in the session's transaction (`PerSession`), to redo after an outage.
    done: Vec<(Ctx, Box<dyn ReplayOp>)>,
    /// Session events held back until the session's transaction commits (`PerSession`).
    events: SessionEvents,
    /// The session's cart, which nobody else sees in its transaction (`PerSession`).
    cart: SessionCart,
    /// The store this session selected (a hint that saves adding to the cart a round trip).
    store: Option<Uuid>,
    /// The active offers left by a refresh that was due, when it was the last step
    /// (`PerSession`): the wallet need not be read for them.
    refreshed: Option<Vec<ActiveOffer>>,
}

/// A step that can be redone in a new transaction (its result is not needed again).
trait ReplayOp: Send + Sync {
    fn replay<'a>(
        &self,
        shop: &'a Shop,
        tx: &'a Tx,
        ctx: &'a Ctx,
    ) -> BoxFuture<'a, DomainResult<()>>;
}

impl<O: DomainOp> ReplayOp for O {
    fn replay<'a>(
        &self,
        shop: &'a Shop,
        tx: &'a Tx,
        ctx: &'a Ctx,
    ) -> BoxFuture<'a, DomainResult<()>> {
        let op = *self;
        Box::pin(async move { op.call(shop, tx, ctx).await.map(|_| ()) })
    }
}

impl std::fmt::Debug for InProcessSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessSession")
            .field("info", &self.info)
            .field("open_tx", &self.tx.is_some())
            .field("broken", &self.broken)
            .finish()
    }
}

/// How one domain call ended, before mapping to an [`ActionError`].
enum Ran<T> {
    Done(T),
    Failed(DomainError),
    Unavailable(StoreError),
}

impl InProcessSession {
    /// The session.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    fn ctx(&self, step: Step) -> Ctx {
        Ctx {
            user_id: self.info.user_id,
            now: step.at,
            session_id: Some(self.info.session_id),
            simulated: true,
            events: (self.shared.tx_mode == TxMode::PerSession).then(|| self.events.clone()),
            cart: (self.shared.tx_mode == TxMode::PerSession).then(|| self.cart.clone()),
        }
    }

    async fn run<O: DomainOp>(&mut self, step: Step, op: O) -> ActionResult<O::Output> {
        // Any step may change the wallet.
        self.refreshed = None;
        let shared = self.shared.clone();
        let ctx = self.ctx(step);
        let mut from = self.scheduled.take();
        loop {
            let started = Instant::now();
            let ran = match shared.tx_mode {
                TxMode::PerSession => self.in_session_tx(op, &ctx).await?,
                TxMode::PerStep => {
                    let key = self.info.idempotency_key(step);
                    self.in_own_tx(op, &ctx, &key).await?
                }
            };
            let latency = Instant::now().saturating_duration_since(from.take().unwrap_or(started));
            let record = |o: Outcome| shared.metrics.record_request(O::ENDPOINT, latency, o);
            match ran {
                Ran::Done(v) => {
                    record(Outcome::Ok);
                    return Ok(v);
                }
                Ran::Unavailable(e) => {
                    record(Outcome::Db);
                    shared.report_outage(&e);
                    shared.wait_gate().await?;
                    if shared.tx_mode == TxMode::PerSession {
                        // The session's transaction died with its connection: redo its steps
                        // in a new one, then run this step again.
                        self.replay().await?;
                    }
                    // PerStep: the step's transaction was rolled back; run it again.
                }
                Ran::Failed(e) => return Err(self.map_error(e, record)),
            }
        }
    }

    fn map_error(&mut self, e: DomainError, record: impl Fn(Outcome)) -> ActionError {
        match e {
            DomainError::Rejected { code, message } => {
                record(outcome_of(code));
                ActionError::Rejected { code, message }
            }
            DomainError::NotFound { code, what } => {
                record(Outcome::Other4xx);
                ActionError::Failed {
                    class: Outcome::Other4xx,
                    reason: format!("{code}: {what} not found"),
                    attempts: 1,
                }
            }
            DomainError::Invalid { code, message } => {
                record(Outcome::Other4xx);
                ActionError::Failed {
                    class: Outcome::Other4xx,
                    reason: format!("{code}: {message}"),
                    attempts: 1,
                }
            }
            DomainError::Store(e) => {
                record(Outcome::Db);
                let reason = e.to_string();
                if self.tx.take().is_some() {
                    // Dropping the transaction rolls the session back.
                    self.events.reset();
                    self.cart.reset();
                    self.broken = Some(reason.clone());
                    self.restock_day = None;
                    return db_failure(format!("{reason}; the session was rolled back"));
                }
                db_failure(reason)
            }
        }
    }

    /// After an outage: begins a new session transaction and redoes the steps done so far (at
    /// their simulated times). A step that no longer succeeds (e.g. the stock it took is gone)
    /// fails the session.
    async fn replay(&mut self) -> ActionResult<()> {
        let shared = self.shared.clone();
        loop {
            let tx = shared.begin(true).await?;
            // The held events died with the old transaction; the redone steps hold them again.
            self.events.reset();
            self.cart.reset();
            let mut day = None;
            let mut result = Ok(());
            for (ctx, op) in &self.done {
                let step = async {
                    let d = shared.restock(&tx, ctx.now).await?;
                    op.replay(&shared.shop, &tx, ctx).await?;
                    Ok::<_, DomainError>(d)
                };
                match step.await {
                    Ok(d) => day = day.max(d),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            match result {
                Ok(()) => {
                    tracing::debug!(steps = self.done.len(), session = %self.info.session_id, "session redone after an outage");
                    self.tx = Some(tx);
                    self.broken = None;
                    self.restock_day = day;
                    return Ok(());
                }
                Err(DomainError::Store(e)) if e.is_unavailable() => {
                    shared.report_outage(&e);
                    shared.wait_gate().await?;
                }
                Err(e) => {
                    let reason = format!(
                        "redoing the session after a database outage failed ({e}); the session \
                         was rolled back"
                    );
                    self.broken = Some(reason.clone());
                    return Err(db_failure(reason));
                }
            }
        }
    }

    /// Runs `op` in the session's transaction.
    async fn in_session_tx<O: DomainOp>(
        &mut self,
        op: O,
        ctx: &Ctx,
    ) -> ActionResult<Ran<O::Output>> {
        let Some(tx) = self.tx.as_ref() else {
            let why = self.broken.as_deref().unwrap_or("the session is closed");
            return Err(db_failure(format!("no open transaction: {why}")));
        };
        let result = async {
            // Restocked earlier in this (uncommitted) session: nothing to claim again.
            let day = if self.restock_day >= Some(sim_day(ctx.now)) {
                None
            } else {
                self.shared.restock(tx, ctx.now).await?
            };
            let out = op.call(&self.shared.shop, tx, ctx).await?;
            Ok::<_, DomainError>((day, out))
        }
        .await;
        Ok(match result {
            Ok((day, out)) => {
                self.restock_day = self.restock_day.max(day);
                self.done.push((ctx.clone(), Box::new(op)));
                Ran::Done(out)
            }
            Err(DomainError::Store(e)) if e.is_unavailable() => {
                self.tx = None;
                self.events.reset();
                self.cart.reset();
                self.broken = Some(e.to_string());
                self.restock_day = None;
                Ran::Unavailable(e)
            }
            Err(e) => Ran::Failed(e),
        })
    }

    /// Runs `op` in a transaction of its own and commits it.
    async fn in_own_tx<O: DomainOp>(
        &mut self,
        op: O,
        ctx: &Ctx,
        key: &str,
    ) -> ActionResult<Ran<O::Output>> {
        let shared = self.shared.clone();
        // Every step writes its answer under the step's idempotency key in its own
        // transaction (reads included: a resumed session must see what it saw), so a step
        // re-run after a crash replays its first answer instead of applying twice.
        let tx = shared.begin(true).await?;
        let result = async {
            if let Some(stored) = stored_answer(&tx, ctx.user_id, key).await? {
                return Ok((None, stored));
            }
            // The server restocks before any request that opens a new simulated day.
            let day = shared.restock(&tx, ctx.now).await?;
            let answer = match op.call(&shared.shop, &tx, ctx).await {
                Ok(out) => StepAnswer::Ok(out),
                Err(DomainError::Rejected { code, message }) => {
                    StepAnswer::Rejected { code, message }
                }
                Err(e) => return Err(e),
            };
            // Only while this process holds the slice (see `InProcessConfig::fence`).
            if let Some(fence) = &shared.fence {
                fence.check(&tx).await.map_err(|e| match e {
                    RecordsError::Store(e) => DomainError::Store(e),
                    e => DomainError::Invalid {
                        code: "lease_lost",
                        message: e.to_string(),
                    },
                })?;
            }
            store_answer(&tx, ctx, key, &answer).await?;
            Ok::<_, DomainError>((day, answer))
        }
        .await;
        match result {
            Ok((day, answer)) => match tx.commit().await {
                Ok(()) => {
                    shared.restocked(day);
                    Ok(match answer {
                        StepAnswer::Ok(out) => Ran::Done(out),
                        StepAnswer::Rejected { code, message } => {
                            Ran::Failed(DomainError::Rejected { code, message })
                        }
                    })
                }
                // The commit may have landed before the database went away: running the step
                // again is safe, it finds its stored answer under its key if it did.
                Err(e) if e.is_unavailable() => Ok(Ran::Unavailable(e)),
                Err(e) => Ok(Ran::Failed(DomainError::Store(e))),
            },
            Err(DomainError::Store(e)) if e.is_unavailable() => Ok(Ran::Unavailable(e)),
            Err(e) => Ok(Ran::Failed(e)),
        }
    }
}

impl InProcessSession {
    /// The session's first selection, answered from memory when it is the store the user's
    /// last session left selected with an empty database cart (see [`KnownUsers`]): the
    /// database would change nothing and answer the store with nothing cleared. The step is
    /// kept for a redo after an outage, which runs it against the database.
    fn selected_before(&mut self, step: Step, store_id: Uuid) -> Option<SelectStoreResult> {
        if self.store.is_some() || self.tx.is_none() {
            return None;
        }
        let store = self
            .shared
            .known
            .as_ref()?
            .selected(self.info.user_id, store_id)?;
        let started = Instant::now();
        // As any step: the wallet is read again after it.
        self.refreshed = None;
        let ctx = self.ctx(step);
        let cart_cleared = self.cart.selected(&store, true);
        self.done.push((ctx, Box::new(SelectStore { store_id })));
        let from = self.scheduled.take().unwrap_or(started);
        self.shared.metrics.record_request(
            Endpoint::SelectStore,
            Instant::now().saturating_duration_since(from),
            Outcome::Ok,
        );
        Some(SelectStoreResult {
            success: true,
            store,
            cart_cleared,
        })
    }
}

/// A step's answer as kept under its idempotency key (`PerStep` mode).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum StepAnswer<T> {
    Ok(T),
    Rejected { code: RejectCode, message: String },
}

async fn stored_answer<T: serde::de::DeserializeOwned>(
    tx: &Tx,
    user_id: Uuid,
    key: &str,
) -> DomainResult<Option<StepAnswer<T>>> {
    let row = tx
        .query_opt(
            "SELECT response FROM sim_idempotency WHERE user_id = $1 AND idem_key = $2",
            vec![tx.codec().uuid(user_id), key.into()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let text = row.opt_string("response")?.unwrap_or_default();
    serde_json::from_str(&text).map(Some).map_err(|e| {
        DomainError::Store(StoreError::Decode {
            column: "sim_idempotency.response".into(),
            reason: format!("stored answer of step {key} does not parse: {e}"),
        })
    })
}

async fn store_answer<T: serde::Serialize>(
    tx: &Tx,
    ctx: &Ctx,
    key: &str,
    answer: &StepAnswer<T>,
) -> DomainResult<()> {
    let text = serde_json::to_string(answer).map_err(|e| {
        DomainError::Store(StoreError::Decode {
            column: "sim_idempotency.response".into(),
            reason: format!("answer of step {key} does not serialise: {e}"),
        })
    })?;
    let c = tx.codec();
    tx.exec(
        "INSERT INTO sim_idempotency \
           (user_id, idem_key, request_hash, state, status_code, response, created_at) \
         VALUES ($1, $2, 'inprocess', 'done', 200, $3, $4)",
        vec![c.uuid(ctx.user_id), key.into(), text.into(), c.ts(ctx.now)],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl SessionActions for InProcessSession {
    async fn select_store(
        &mut self,
        step: Step,
        store_id: Uuid,
    ) -> ActionResult<SelectStoreResult> {
        let selected = match self.selected_before(step, store_id) {
            Some(selected) => selected,
            None => self.run(step, SelectStore { store_id }).await?,
        };
        self.store = Some(selected.store.id);
        Ok(selected)
    }

    async fn refresh_offers(&mut self, step: Step) -> ActionResult<RefreshResult> {
        // Paced runs store each step's answer for a redo: their refresh keeps its own.
        if self.shared.tx_mode == TxMode::PerStep {
            return self.run(step, Refresh {}).await;
        }
        let drawn = self.run(step, RefreshDrawn {}).await?;
        self.refreshed = drawn.active_offers();
        Ok(drawn.result)
    }

    async fn wallet(&mut self, step: Step) -> ActionResult<WalletView> {
        self.run(step, Wallet {}).await
    }

    async fn active_offers(&mut self, step: Step) -> ActionResult<Vec<ActiveOffer>> {
        match self.refreshed.take() {
            Some(offers) => Ok(offers),
            None => Ok(self.wallet(step).await?.active_offers()),
        }
    }

    async fn view_product(&mut self, step: Step, product_id: Uuid) -> ActionResult<()> {
        self.run(step, ViewProduct { product_id }).await.map(|_| ())
    }

    async fn add_to_cart(
        &mut self,
        step: Step,
        product_id: Uuid,
        quantity: i64,
    ) -> ActionResult<AddToCartResult> {
        self.run(
            step,
            AddToCart {
                product_id,
                quantity,
                store: self.store,
            },
        )
        .await
    }

    async fn eligible_coupons(&mut self, step: Step) -> ActionResult<EligibleCoupons> {
        self.run(step, Eligible {}).await
    }

    async fn apply_coupon(
        &mut self,
        step: Step,
        coupon_id: Uuid,
    ) -> ActionResult<ApplyCouponResult> {
        self.run(step, ApplyCoupon { coupon_id }).await
    }

    async fn cart_summary(&mut self, step: Step) -> ActionResult<CartSummary> {
        self.run(step, Summary {}).await
    }

    async fn checkout(&mut self, step: Step) -> ActionResult<CheckoutResult> {
        self.run(step, Checkout {}).await
    }

    async fn abandon(&mut self, step: Step) -> ActionResult<ClearCartResult> {
        self.run(step, Abandon {}).await
    }

    fn set_scheduled(&mut self, release: Instant) {
        self.scheduled = Some(release);
    }

    fn expect_adds(&mut self, products: Vec<Uuid>) {
        self.cart.expect(products);
    }

    async fn close(mut self: Box<Self>, report: &SessionReport) -> ActionResult<bool> {
        if self.tx.is_none() {
            // PerStep mode, or already rolled back (the failing step reported why).
            return Ok(false);
        }
        let Some(status) = report.status() else {
            // Interrupted: dropping the transaction rolls the session back; a resumed run
            // runs it again from its first step.
            return Ok(false);
        };
        // The outcome commits with the work: after a crash a session is either wholly
        // applied and recorded, or not applied at all.
        let outcome = serde_json::to_value(report)
            .map_err(|e| db_failure(format!("the session outcome is not serialisable: {e}")))?;
        // No step sent a statement: the close is the session's only one, sent alone where
        // that saves `BEGIN` and `COMMIT` (see `Db::single_statement`).
        let mut alone = self.tx.as_ref().is_some_and(|tx| !tx.begun());
        loop {
            let tx = match self.tx.take() {
                Some(_) if alone => {
                    alone = false;
                    match self.shared.db.single_statement().await {
                        Ok(tx) => tx,
                        Err(e) if e.is_unavailable() => {
                            // Redone below, in a transaction, once the database is back.
                            self.shared.report_outage(&e);
                            self.shared.wait_gate().await?;
                            continue;
                        }
                        Err(e) => {
                            return Err(db_failure(format!("cannot record the session: {e}")));
                        }
                    }
                }
                Some(tx) => tx,
                None => {
                    // The database went away at the end of the session: redo its steps in a
                    // new transaction and record the outcome again.
                    self.replay().await?;
                    self.tx
                        .take()
                        .ok_or_else(|| db_failure("the redone session has no transaction".into()))?
                }
            };
            // The held events, the session row (written here on PostgreSQL, with the events
            // numbered from the count it finds), the outcome and the fence check: one round
            // trip, then the commit.
            let outcome_row = update_session_stmt(
                tx.codec(),
                self.info.session_id,
                status,
                report.steps,
                Some(&outcome),
            );
            let committed = commit_outcome(
                tx,
                &self.shared.shop,
                self.info.session_id,
                &self.events,
                self.shared.fence.as_ref(),
                outcome_row,
            )
            .await;
            match committed {
                Ok(()) => break,
                Err(CloseError::Unavailable(e)) => {
                    self.shared.report_outage(&e);
                    self.shared.wait_gate().await?;
                    // A commit cut off by the outage may have landed: the session's own row
                    // says so (its final status is written only in this transaction).
                    if self.committed().await? {
                        break;
                    }
                }
                Err(CloseError::Failed(why)) => {
                    return Err(db_failure(format!("{why}; its steps were not kept")));
                }
            }
        }
        self.shared.restocked(self.restock_day);
        if let Some(known) = &self.shared.known {
            known.remember(self.info.user_id, &self.cart);
        }
        Ok(true)
    }
}

/// Why recording a session's outcome in its transaction failed.
enum CloseError {
    /// The database went away (the commit may or may not have landed).
    Unavailable(StoreError),
    /// Any other failure: the session was rolled back.
    Failed(String),
}

/// Writes the session's held events and row with its outcome (`outcome_row`), checks the
/// shard's fence in the same round trip, and commits.
async fn commit_outcome(
    tx: Tx,
    shop: &Shop,
    session_id: Uuid,
    events: &SessionEvents,
    fence: Option<&Fence>,
    outcome_row: Stmt,
) -> Result<(), CloseError> {
    let check = fence.map(|f| f.check_stmt(tx.backend()));
    let recorded = match shop
        .write_held_then(&tx, session_id, events, 0, vec![outcome_row], check)
        .await
    {
        Ok((HeldOutcome::Written { .. }, row)) => match fence {
            Some(f) => f.checked(row.as_ref()),
            None => Ok(()),
        },
        Ok((HeldOutcome::OtherUsersSession, _)) => {
            return Err(CloseError::Failed(format!(
                "shopping session {session_id} belongs to another user"
            )));
        }
        Err(e) => Err(RecordsError::from(e)),
    };
    if let Err(e) = recorded {
        return Err(match e {
            RecordsError::Store(e) if e.is_unavailable() => CloseError::Unavailable(e),
            e => CloseError::Failed(format!("recording the session failed ({e})")),
        });
    }
    tx.commit().await.map_err(|e| {
        if e.is_unavailable() {
            CloseError::Unavailable(e)
        } else {
            CloseError::Failed(format!("committing the session failed ({e})"))
        }
    })
}

impl InProcessSession {
    /// Whether this session's outcome is recorded in the database (asked after a commit was
    /// cut off by an outage), waiting out further outages.
    async fn committed(&self) -> ActionResult<bool> {
        loop {
            match session_status(&self.shared.db, self.info.session_id).await {
                Ok(status) => return Ok(status.is_some_and(SessionStatus::is_final)),
                Err(RecordsError::Store(e)) if e.is_unavailable() => {
                    self.shared.report_outage(&e);
                    self.shared.wait_gate().await?;
                }
                Err(e) => {
                    return Err(db_failure(format!(
                        "cannot tell whether the session was recorded: {e}"
                    )));
                }
            }
        }
    }
}
