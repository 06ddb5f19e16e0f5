//! Remote actions: what an agent does to the shop, behind one interface with two
//! implementations — HTTP against the VoiceOffers API (or the reference server), and in-process
//! through the domain layer.
//!
//! The engine opens one [`SessionActions`] per shopping session and drives its steps; every step
//! carries its simulated time and its number, from which the HTTP implementation derives the
//! `Idempotency-Key` (run, agent, simulated day, session, step), so a retried or resumed step can
//! never apply twice.
//!
//! ## Layout
//! - [`http`]: [`HttpActions`] — one shared client, retries within a budget, a circuit breaker
//!   per endpoint, an outage gate.
//! - [`inprocess`]: [`InProcessActions`] — the same steps through [`crate::domain::Shop`] on a
//!   [`crate::store::Db`], one transaction per session (or per step).
//! - [`config`]: settings of both (URL, auth, paths, timeouts, retry, breaker, outage).
//! - `breaker`, `retry`, `outage`: the circuit breaker, the retry budget and backoff, the
//!   outage gate.
//! - [`jwt`]: HS256 tokens for `--auth jwt`.
//!
//! ## Driving a session
//! ```text
//! let actions = HttpActions::new(HttpConfig::new(base_url), metrics.clone(), cancel.clone())?;
//! let mut s = actions.open_session(info).await?;      // Box<dyn SessionActions>
//! s.set_scheduled(release);                            // paced mode: latency from release
//! match s.add_to_cart(Step { seq: 2, at }, product, 1).await {
//!     Ok(view) => …,
//!     Err(ActionError::Rejected { code, .. }) => …,    // the script reacts
//!     Err(ActionError::Failed { .. }) => …,            // end the session, record the reason
//!     Err(ActionError::Interrupted(_)) => …,           // Ctrl-C
//! }
//! s.close(&report).await?;                             // always, once
//! actions.breaker_states(); actions.outage();          // for the dashboard
//! ```

pub mod breaker;
pub mod config;
pub mod http;
pub mod inprocess;
pub mod jwt;
mod known_users;
mod outage;
mod retry;
mod transport;

pub use breaker::BreakerState;
pub use config::{
    ActionsSetupError, Auth, BreakerConfig, EndpointPaths, HttpConfig, OutageConfig, RetryPolicy,
};
pub use http::{HttpActions, HttpSession};
pub use inprocess::{InProcessActions, InProcessConfig, InProcessSession, TxMode};
pub use outage::OutageInfo;
pub use transport::{TransportError, get_once};

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::domain::{
    ActiveOffer, AddToCartResult, ApplyCouponResult, CartSummary, CheckoutResult, ClearCartResult,
    EligibleCoupons, RefreshResult, RejectCode, SelectStoreResult, WalletView,
};
use crate::sim::metrics::Outcome;
use crate::sim::session::SessionReport;

/// The metrics outcome of a business rejection.
pub fn outcome_of(code: RejectCode) -> Outcome {
    match code {
        RejectCode::InsufficientInventory => Outcome::OutOfStock,
        RejectCode::OfferNotInWallet => Outcome::OfferRefused,
        RejectCode::NoStoreSelected | RejectCode::EmptyCart => Outcome::OtherRejection,
    }
}

/// One shopping session as the actions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The run.
    pub run_id: Arc<str>,
    /// The agent's natural key (`agent_001`).
    pub agent_id: Arc<str>,
    /// The agent's user.
    pub user_id: Uuid,
    /// The shopping session (client-supplied id, deterministic).
    pub session_id: Uuid,
    /// Simulated day the session belongs to (the run's calendar).
    pub sim_date: NaiveDate,
    /// Number of the session within the agent's day (0, 1, …).
    pub session_seq: u32,
    /// The session was in progress when its run stopped: it is run again from its first step
    /// with the same keys, and its checkout is reconciled with the database first.
    pub resumed: bool,
}

/// One step of a session: its number within the session and its simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// 0, 1, … in the order the session performs them.
    pub seq: u32,
    /// Simulated time of the step (from the session plan, not a moving clock).
    pub at: DateTime<Utc>,
}

impl SessionInfo {
    /// The `Idempotency-Key` of a step: `run/agent/day/session/step`.
    pub fn idempotency_key(&self, step: Step) -> String {
        format!("{}{}", self.idempotency_key_prefix(), step.seq)
    }

    /// What the keys of all the session's steps start with: `run/agent/day/session/`.
    pub fn idempotency_key_prefix(&self) -> String {
        format!(
            "{}/{}/{}/{}/",
            self.run_id, self.agent_id, self.sim_date, self.session_seq
        )
    }
}

/// Why an action did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActionError {
    /// A business rejection (out of stock, offer refused, empty cart): an outcome the script
    /// reacts to, not an error.
    #[error("rejected ({}): {message}", code.as_str())]
    Rejected {
        /// The rejection.
        code: RejectCode,
        /// The server's explanation.
        message: String,
    },
    /// The step failed after the retries allowed (5xx, timeouts, 4xx that are not rejections,
    /// an open circuit breaker): the session ends cleanly with this reason.
    #[error("{} after {attempts} attempt(s): {reason}", class.name())]
    Failed {
        /// The error class (never `Ok` or a rejection).
        class: Outcome,
        /// What happened, for the run record.
        reason: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The host is shutting down (Ctrl-C): the step was not sent, or its outcome is unknown and
    /// will be reconciled on resume with the same Idempotency-Key.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

/// Result of an action.
pub type ActionResult<T> = Result<T, ActionError>;

/// Opens sessions. One implementation per mode; shared by all agents (no per-agent clients).
#[async_trait]
pub trait Actions: Send + Sync {
    /// Starts driving one shopping session.
    async fn open_session(&self, session: SessionInfo) -> ActionResult<Box<dyn SessionActions>>;

    /// Short name for logs and records (`http`, `inprocess`).
    fn mode(&self) -> &'static str;
    /// True when a session either commits whole, with its outcome, or leaves nothing behind
    /// (in-process, one transaction per session): a session cut off by a crash is then as
    /// good as never started, and marking sessions `in_progress` before they run tells a
    /// resumed run nothing (it is one row written per session).
    fn sessions_are_atomic(&self) -> bool {
        false
    }
    /// Circuit-breaker state per endpoint (HTTP; none in-process), for the dashboard.
    fn breakers(&self) -> Vec<(crate::sim::metrics::Endpoint, BreakerState)> {
        Vec::new()
    }
    /// The outage being waited out, if any, for the dashboard.
    fn current_outage(&self) -> Option<OutageInfo> {
        None
    }
    /// Why an outage stopped the run (it outlasted `--max-outage`), if one did.
    fn outage_gave_up(&self) -> Option<String> {
        None
    }
    /// A simulated day starts at `at` and no session is running: the place for once-a-day
    /// work (in-process restocking). The reference server does its own.
    async fn day_starts(&self, _at: chrono::DateTime<chrono::Utc>) -> ActionResult<()> {
        Ok(())
    }
}

/// The steps of one session, in order. Each returns the contract's JSON view.
#[async_trait]
pub trait SessionActions: Send {
    /// Selects the store (switching store empties the cart).
    async fn select_store(&mut self, step: Step, store_id: Uuid)
    -> ActionResult<SelectStoreResult>;
    /// Refreshes the agent's offers if due (a refresh that is not due changes nothing).
    async fn refresh_offers(&mut self, step: Step) -> ActionResult<RefreshResult>;
    /// The agent's offer wallet (after a refresh, so scripts see the offers they hold).
    async fn wallet(&mut self, step: Step) -> ActionResult<WalletView>;
    /// The agent's active offers as (coupon, eligible until), in the wallet's order (newest
    /// assignment first, then by coupon id), right after a refresh that was due. By default
    /// read from the wallet; actions that know what the refresh assigned answer from that.
    async fn active_offers(&mut self, step: Step) -> ActionResult<Vec<ActiveOffer>> {
        Ok(self.wallet(step).await?.active_offers())
    }
    /// Views a product (records a `view_product` event). The detail is not returned: the
    /// session does not use it, and in-process views of catalog products need no read.
    async fn view_product(&mut self, step: Step, product_id: Uuid) -> ActionResult<()>;
    /// Adds units of a product to the cart.
    async fn add_to_cart(
        &mut self,
        step: Step,
        product_id: Uuid,
        quantity: i64,
    ) -> ActionResult<AddToCartResult>;
    /// Lists eligible and ineligible wallet offers for the cart.
    async fn eligible_coupons(&mut self, step: Step) -> ActionResult<EligibleCoupons>;
    /// Applies a wallet offer to the cart.
    async fn apply_coupon(
        &mut self,
        step: Step,
        coupon_id: Uuid,
    ) -> ActionResult<ApplyCouponResult>;
    /// Prices the cart.
    async fn cart_summary(&mut self, step: Step) -> ActionResult<CartSummary>;
    /// Checks out (an order; completes the session).
    async fn checkout(&mut self, step: Step) -> ActionResult<CheckoutResult>;
    /// Abandons: empties the cart and marks the session abandoned.
    async fn abandon(&mut self, step: Step) -> ActionResult<ClearCartResult>;
    /// Tells when the engine released the next step (paced mode), so its latency is measured
    /// from then and queueing is not hidden. Applies to the next step only; without it latency
    /// is measured from when the request is sent.
    fn set_scheduled(&mut self, _release: tokio::time::Instant) {}
    /// Tells which products the session's plan will add (before its first step), so that
    /// actions that can read them together do. A hint: adds of other products still work.
    fn expect_adds(&mut self, _products: Vec<Uuid>) {}
    /// Ends the session. Called once, after the last step, whatever the outcome (a failed
    /// session is closed too). In-process work in one session transaction commits here
    /// together with the session's run record (`report`), so a crash can never leave work
    /// applied without its outcome; an interrupted session is rolled back instead, to be run
    /// again on resume. Returns true when the outcome was recorded here.
    async fn close(self: Box<Self>, report: &SessionReport) -> ActionResult<bool>;
}
