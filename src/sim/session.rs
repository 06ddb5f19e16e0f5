//! One shopping session: the script's plan carried out through the actions, step by step, at
//! the simulated times the plan gives.
//!
//! Order of a session: select the planned store; refresh offers when due (and read the wallet);
//! the planned views and adds (each after its think time; an out-of-stock add is reported to
//! the script, which skips, retries, substitutes or abandons); with a non-empty cart, look at the
//! eligible offers and apply the ones the script chooses; then check out or abandon as the
//! script decides. An empty cart abandons.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use uuid::Uuid;

use crate::behavior::calendar::Calendar;
use crate::behavior::inputs::{CartLine, CartState, HeldOffer, History, Wallet};
use crate::behavior::outputs::{PlannedSession, ReactionAction, StepAction};
use crate::behavior::persona::Persona;
use crate::behavior::{Agent, BehaviorError, Outcome as ScriptOutcome, PersonaSet};
use crate::domain::{RejectCode, price_cart};
use crate::sim::actions::{ActionError, Actions, SessionActions, SessionInfo, Step};
use crate::sim::clock::PacedClock;
use crate::sim::metrics::{Counter, Metrics};
use crate::sim::records::SessionStatus;
use crate::sim::world::World;

/// Most times a script may retry or substitute one add.
const MAX_REACTIONS_PER_STEP: u32 = 3;

/// An agent as the engine holds it between sessions: compact, no per-agent client or thread.
#[derive(Debug, Clone)]
pub struct AgentState {
    /// Natural key (`agent_001`).
    pub key: Arc<str>,
    /// The agent's user.
    pub user_id: Uuid,
    /// The persona.
    pub persona: Persona,
    /// What the agent has done.
    pub history: Arc<History>,
    /// Active offers as last read.
    pub wallet: Wallet,
    /// When the next offer refresh is due (unknown until the first refresh).
    pub next_refresh: Option<DateTime<Utc>>,
    /// Simulated time the agent's last session ended: the next one never starts before it.
    pub busy_until: Option<DateTime<Utc>>,
}

impl AgentState {
    /// Applies what a finished session did to the agent's own state: the offer refresh it
    /// asked for, the session and order in its history, and when it ended. A resumed run
    /// rebuilds agents with this from the recorded outcomes; a live session applies its
    /// history and end the same way.
    pub fn replay(&mut self, report: &SessionReport, date: NaiveDate, world: &World) {
        if let Some(r) = &report.effects.refresh {
            self.next_refresh = r.next_refresh_at;
            if let Some(wallet) = &r.wallet {
                self.wallet = wallet
                    .iter()
                    .filter_map(|(c, until)| world.held(*c, *until))
                    .collect();
            }
        }
        self.finish(report, date);
    }

    /// The session's history and end (not the refresh, which a live session applies when it
    /// happens because later decisions of the same session see the new wallet).
    fn finish(&mut self, report: &SessionReport, date: NaiveDate) {
        if matches!(report.end, SessionEnd::Interrupted) {
            self.busy_until = Some(report.ended_at);
            return;
        }
        let history = Arc::make_mut(&mut self.history);
        if let Some(o) = &report.effects.order {
            history.record_order(o.date, &o.basket, crate::money::Money::cents(o.total_cents));
        }
        history.record_session(date);
        self.busy_until = Some(report.ended_at);
    }
}

/// What a session changed in its agent's own state, kept with its outcome so that a resumed
/// run rebuilds every agent exactly as the uninterrupted run had it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentEffects {
    /// The offer refresh the session asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshNote>,
    /// The order it placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderNote>,
}

/// An offer refresh as the agent saw it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RefreshNote {
    /// When the next refresh is due.
    pub next_refresh_at: Option<DateTime<Utc>>,
    /// The active offers read after a refresh that assigned new ones: (script coupon index,
    /// last usable date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet: Option<Vec<(u32, NaiveDate)>>,
}

/// An order as the agent's history records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrderNote {
    /// The date the history records.
    pub date: NaiveDate,
    /// Script product indexes of the basket, in cart order.
    pub basket: Vec<u32>,
    /// What was paid, in cents.
    pub total_cents: i64,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SessionEnd {
    /// Checked out.
    Completed {
        /// The order.
        order_id: Uuid,
        /// What was paid, in cents.
        final_total_cents: i64,
    },
    /// Abandoned (by decision, empty cart or script reaction).
    Abandoned,
    /// A step failed after the retries allowed, or a script error stopped the session.
    Failed {
        /// Why.
        reason: String,
    },
    /// Interrupted by shutdown; reconciled on resume.
    Interrupted,
}

/// What one session did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SessionReport {
    /// How it ended.
    pub end: SessionEnd,
    /// Steps sent.
    pub steps: u32,
    /// Offers applied.
    pub offers_applied: u32,
    /// Simulated time of the last step.
    pub ended_at: DateTime<Utc>,
    /// What it changed in the agent's own state.
    #[serde(default)]
    pub effects: AgentEffects,
    /// The actions recorded the outcome with the work (in-process, one transaction per
    /// session): the recorder has nothing left to write.
    #[serde(skip)]
    pub recorded: bool,
}

impl SessionReport {
    /// The run-record status of this end (`None`: interrupted, still to be run).
    pub fn status(&self) -> Option<SessionStatus> {
        match &self.end {
            SessionEnd::Completed { .. } => Some(SessionStatus::Completed),
            SessionEnd::Abandoned => Some(SessionStatus::Abandoned),
            SessionEnd::Failed { .. } => Some(SessionStatus::Failed),
            SessionEnd::Interrupted => None,
        }
    }
}

/// What a session needs from the run.
pub struct SessionContext<'a> {
    /// The persona set (the version current when the session started).
    pub set: &'a PersonaSet,
    /// The catalog cache.
    pub world: &'a World,
    /// The run's metrics.
    pub metrics: &'a Metrics,
    /// Run seed.
    pub seed: u64,
    /// The paced clock, or `None` in `max` mode.
    pub pacer: Option<&'a PacedClock>,
    /// Cancelled on graceful stop: no further step is sent.
    pub cancel: &'a tokio_util::sync::CancellationToken,
}

struct Runner<'a, 'b> {
    cx: &'b SessionContext<'a>,
    agent: &'b mut AgentState,
    actions: Box<dyn SessionActions>,
    cal: Calendar,
    number: u32,
    at: DateTime<Utc>,
    seq: u32,
    reactions: u32,
    effects: AgentEffects,
}

enum Stop {
    Abandon,
    Fail(String),
    Interrupted,
}

impl Runner<'_, '_> {
    fn agent(&self) -> Agent<'_> {
        Agent {
            seed: self.cx.seed,
            key: &self.agent.key,
            persona: &self.agent.persona,
            history: &self.agent.history,
            wallet: &self.agent.wallet,
        }
    }

    /// The next step, `think` simulated seconds (at least one, so every step and every event
    /// has its own time) after the previous one; waits for its release in paced mode.
    async fn step(&mut self, think: u32) -> Result<Step, Stop> {
        if self.cx.cancel.is_cancelled() {
            return Err(Stop::Interrupted);
        }
        self.at += Duration::seconds(i64::from(think.max(1)));
        let step = Step {
            seq: self.seq,
            at: self.at,
        };
        if let Some(p) = self.cx.pacer {
            tokio::select! {
                lag = p.wait_until(self.at) => {
                    self.cx.metrics.record_lag(lag);
                    // Latency counts from the scheduled release, so queueing is not hidden.
                    let released = tokio::time::Instant::now().checked_sub(lag).unwrap_or_else(tokio::time::Instant::now);
                    self.actions.set_scheduled(released);
                }
                _ = self.cx.cancel.cancelled() => return Err(Stop::Interrupted),
            }
        }
        self.seq += 1;
        Ok(step)
    }

    fn script_error(&self, e: &BehaviorError) {
        self.cx.metrics.script_error(format!(
            "{} {}: {e}",
            self.at.format("%Y-%m-%d %H:%M"),
            self.agent.key
        ));
        tracing::warn!(agent = %self.agent.key, error = %e, "behaviour script error; the session goes on without that decision");
    }

    fn fail(e: ActionError) -> Stop {
        match e {
            ActionError::Interrupted(_) => Stop::Interrupted,
            other => Stop::Fail(other.to_string()),
        }
    }

    async fn prepare(&mut self, store: Uuid) -> Result<(), Stop> {
        let step = self.step(0).await?;
        self.actions
            .select_store(step, store)
            .await
            .map_err(Self::fail)?;
        let due = self.agent.next_refresh.is_none_or(|t| t <= self.at);
        if due {
            let step = self.step(0).await?;
            let refreshed = self
                .actions
                .refresh_offers(step)
                .await
                .map_err(Self::fail)?;
            self.agent.next_refresh = refreshed.next_refresh_at;
            self.effects.refresh = Some(RefreshNote {
                next_refresh_at: refreshed.next_refresh_at,
                wallet: None,
            });
            if refreshed.refreshed {
                self.cx
                    .metrics
                    .add(Counter::OffersAssigned, refreshed.assigned_count);
                let step = self.step(0).await?;
                let active = self.actions.active_offers(step).await.map_err(Self::fail)?;
                let offers: Vec<HeldOffer> = active
                    .iter()
                    .filter_map(|o| {
                        let until = o.eligible_until.map_or(NaiveDate::MAX, |t| t.date_naive());
                        self.cx.world.held_for(o.coupon_id, until)
                    })
                    .collect();
                if let Some(note) = &mut self.effects.refresh {
                    note.wallet = Some(
                        offers
                            .iter()
                            .map(|o| (o.coupon, o.eligible_until))
                            .collect(),
                    );
                }
                self.agent.wallet = offers.into();
            }
        }
        Ok(())
    }

    /// Carries out one add; reacts to out-of-stock as the script says.
    async fn add(
        &mut self,
        cart: &mut CartState,
        product: u32,
        qty: u32,
        think: u32,
    ) -> Result<(), Stop> {
        let (mut product, mut qty, mut think) = (product, qty, think);
        let mut tries = 0;
        loop {
            let Some(product_id) = self.cx.world.product_id(product) else {
                return Err(Stop::Fail(format!(
                    "script product {product} is not in the catalog"
                )));
            };
            let step = self.step(think).await?;
            match self
                .actions
                .add_to_cart(step, product_id, i64::from(qty))
                .await
            {
                Ok(_) => {
                    match cart.lines.iter_mut().find(|l| l.product == product) {
                        Some(l) => l.qty += qty,
                        None => cart.lines.push(CartLine { product, qty }),
                    }
                    return Ok(());
                }
                Err(ActionError::Rejected {
                    code: RejectCode::InsufficientInventory,
                    ..
                }) => {
                    let outcome = ScriptOutcome::OutOfStock {
                        product,
                        requested: qty,
                        available: 0,
                    };
                    let reaction = self.cx.set.on_outcome(
                        &self.agent(),
                        &self.cal,
                        self.cx.world.view(),
                        self.number,
                        &outcome,
                        self.reactions,
                    );
                    self.reactions += 1;
                    tries += 1;
                    let reaction = match reaction {
                        Ok(r) => r.value,
                        Err(e) => {
                            self.script_error(&e);
                            return Ok(());
                        }
                    };
                    think = reaction.think;
                    match reaction.action {
                        ReactionAction::Skip => return Ok(()),
                        ReactionAction::Abandon => return Err(Stop::Abandon),
                        _ if tries > MAX_REACTIONS_PER_STEP => return Ok(()),
                        ReactionAction::Retry => {}
                        ReactionAction::Substitute { product: p, qty: q } => {
                            product = p;
                            qty = q;
                        }
                    }
                }
                Err(ActionError::Rejected { code, message }) => {
                    return Err(Stop::Fail(format!(
                        "add refused ({}): {message}",
                        code.as_str()
                    )));
                }
                Err(e) => return Err(Self::fail(e)),
            }
        }
    }

    async fn offers(&mut self, cart: &mut CartState) -> Result<u32, Stop> {
        let step = self.step(0).await?;
        let eligible = self
            .actions
            .eligible_coupons(step)
            .await
            .map_err(Self::fail)?;
        cart.eligible = eligible
            .eligible
            .iter()
            .filter_map(|c| {
                let until = self
                    .agent
                    .wallet
                    .iter()
                    .find(|o| self.cx.world.coupon_id(o.coupon) == Some(c.id))
                    .map(|o| o.eligible_until);
                self.cx
                    .world
                    .offer_for(c.id, until.unwrap_or(self.cal.date))
            })
            .collect();
        if cart.eligible.is_empty() {
            return Ok(0);
        }
        let choice = match self.cx.set.choose_offers(
            &self.agent(),
            &self.cal,
            self.cx.world.view(),
            self.number,
            cart,
        ) {
            Ok(c) => c.value,
            Err(e) => {
                self.script_error(&e);
                return Ok(0);
            }
        };
        let mut applied = 0;
        for i in choice.apply {
            let offer = cart.eligible[i].clone();
            let Some(coupon_id) = self.cx.world.coupon_id(offer.coupon) else {
                continue;
            };
            let step = self.step(choice.think).await?;
            match self.actions.apply_coupon(step, coupon_id).await {
                Ok(_) => {
                    cart.applied.push(offer);
                    applied += 1;
                }
                Err(ActionError::Rejected { message, .. }) => {
                    let outcome = ScriptOutcome::OfferRejected {
                        offer,
                        index: i,
                        reason: message,
                    };
                    let r = self.cx.set.on_outcome(
                        &self.agent(),
                        &self.cal,
                        self.cx.world.view(),
                        self.number,
                        &outcome,
                        self.reactions,
                    );
                    self.reactions += 1;
                    match r {
                        Ok(r) if r.value.action == ReactionAction::Abandon => {
                            return Err(Stop::Abandon);
                        }
                        Ok(_) => {}
                        Err(e) => self.script_error(&e),
                    }
                }
                Err(e) => return Err(Self::fail(e)),
            }
        }
        Ok(applied)
    }

    fn price(&self, cart: &mut CartState) {
        let lines = self.cx.world.priced(&cart.lines);
        let coupons: Vec<_> = cart
            .applied
            .iter()
            .filter_map(|o| {
                self.cx
                    .world
                    .coupon_id(o.coupon)
                    .and_then(|id| self.cx.world.coupon_by_id(id))
                    .cloned()
            })
            .collect();
        let summary = price_cart(&lines, &coupons);
        cart.subtotal = summary.subtotal;
        cart.discount = summary.discount_total;
    }

    /// Runs the plan; returns how it ended (the caller closes the actions).
    async fn run(&mut self, planned: PlannedSession, applied: &mut u32) -> SessionEnd {
        let Some(store) = self.cx.world.store_id(planned.store) else {
            return SessionEnd::Failed {
                reason: format!("script store {} is not in the catalog", planned.store),
            };
        };
        if let Err(stop) = self.prepare(store).await {
            return self.stopped(stop).await;
        }
        let plan = match self.cx.set.plan_session(
            &self.agent(),
            &self.cal,
            self.cx.world.view(),
            self.number,
            planned,
        ) {
            Ok(p) => p.value,
            Err(e) => {
                self.script_error(&e);
                return SessionEnd::Failed {
                    reason: format!("plan_session: {e}"),
                };
            }
        };
        let adds = plan.steps.iter().filter_map(|s| match s.action {
            StepAction::Add { product, .. } => self.cx.world.product_id(product),
            StepAction::View { .. } => None,
        });
        self.actions.expect_adds(adds.collect());
        let mut cart = CartState::default();
        for s in &plan.steps {
            let r = match s.action {
                StepAction::View { product } => match self.cx.world.product_id(product) {
                    Some(id) => match self.step(s.think).await {
                        Ok(step) => self
                            .actions
                            .view_product(step, id)
                            .await
                            .map(|_| ())
                            .map_err(Self::fail),
                        Err(stop) => Err(stop),
                    },
                    None => Err(Stop::Fail(format!(
                        "script product {product} is not in the catalog"
                    ))),
                },
                StepAction::Add { product, qty } => {
                    self.add(&mut cart, product, qty, s.think).await
                }
            };
            if let Err(stop) = r {
                return self.stopped(stop).await;
            }
        }
        if cart.lines.is_empty() {
            return self.stopped(Stop::Abandon).await;
        }
        match self.offers(&mut cart).await {
            Ok(n) => *applied = n,
            Err(stop) => return self.stopped(stop).await,
        }
        self.price(&mut cart);
        let decision = match self.cx.set.decide_checkout(
            &self.agent(),
            &self.cal,
            self.cx.world.view(),
            self.number,
            &cart,
        ) {
            Ok(d) => d.value,
            Err(e) => {
                self.script_error(&e);
                return self.stopped(Stop::Abandon).await;
            }
        };
        if !decision.checkout {
            // The decision's think time passes before the abandonment.
            self.at += Duration::seconds(i64::from(decision.think.saturating_sub(1)));
            return self.stopped(Stop::Abandon).await;
        }
        let step = match self.step(decision.think).await {
            Ok(step) => step,
            Err(stop) => return self.stopped(stop).await,
        };
        match self.actions.checkout(step).await {
            Ok(done) => {
                self.effects.order = Some(OrderNote {
                    date: step.at.date_naive(),
                    basket: cart.lines.iter().map(|l| l.product).collect(),
                    total_cents: done.order.totals.final_total.as_cents(),
                });
                SessionEnd::Completed {
                    order_id: done.order.id,
                    final_total_cents: done.order.totals.final_total.as_cents(),
                }
            }
            Err(ActionError::Rejected { .. }) => self.stopped(Stop::Abandon).await,
            Err(e) => self.stopped(Self::fail(e)).await,
        }
    }

    /// Ends a session that did not check out: abandon (empties the cart, marks the session
    /// abandoned); a failure still tries to abandon so the cart does not leak into the next
    /// session.
    async fn stopped(&mut self, stop: Stop) -> SessionEnd {
        match stop {
            Stop::Interrupted => SessionEnd::Interrupted,
            Stop::Abandon => {
                let Ok(step) = self.step(0).await else {
                    return SessionEnd::Interrupted;
                };
                match self.actions.abandon(step).await {
                    Ok(_) => SessionEnd::Abandoned,
                    Err(ActionError::Interrupted(_)) => SessionEnd::Interrupted,
                    Err(e) => SessionEnd::Failed {
                        reason: format!("abandon: {e}"),
                    },
                }
            }
            Stop::Fail(reason) => {
                if let Ok(step) = self.step(0).await
                    && let Err(e) = self.actions.abandon(step).await
                {
                    tracing::debug!(agent = %self.agent.key, error = %e, "could not abandon after a failed step");
                }
                SessionEnd::Failed { reason }
            }
        }
    }
}

/// Runs one planned session of `agent` through `actions`, starting at simulated time `start`.
#[allow(clippy::too_many_arguments)]
pub async fn run_session(
    cx: &SessionContext<'_>,
    actions: &dyn Actions,
    agent: &mut AgentState,
    info: SessionInfo,
    cal: &Calendar,
    number: u32,
    planned: PlannedSession,
    start: DateTime<Utc>,
) -> SessionReport {
    cx.metrics.add(Counter::SessionsStarted, 1);
    let info_id = info.session_id;
    let session_actions = match actions.open_session(info).await {
        Ok(a) => a,
        Err(e) => {
            cx.metrics.add(Counter::SessionsFailed, 1);
            let end = match e {
                ActionError::Interrupted(_) => SessionEnd::Interrupted,
                other => {
                    tracing::warn!(agent = %agent.key, session = %info_id, error = %other, "session failed to open");
                    SessionEnd::Failed {
                        reason: other.to_string(),
                    }
                }
            };
            let report = SessionReport {
                end,
                steps: 0,
                offers_applied: 0,
                ended_at: start,
                effects: AgentEffects::default(),
                recorded: false,
            };
            agent.finish(&report, cal.date);
            return report;
        }
    };
    let mut runner = Runner {
        cx,
        agent,
        actions: session_actions,
        cal: cal.at_minute(planned.minute),
        number,
        at: start,
        seq: 0,
        reactions: 0,
        effects: AgentEffects::default(),
    };
    let mut applied = 0;
    let end = runner.run(planned, &mut applied).await;
    let (steps, ended_at) = (runner.seq, runner.at);
    let Runner {
        actions,
        agent,
        mut effects,
        ..
    } = runner;
    if !matches!(end, SessionEnd::Completed { .. }) {
        effects.order = None;
    }
    let mut report = SessionReport {
        end,
        steps,
        offers_applied: applied,
        ended_at,
        effects,
        recorded: false,
    };
    match actions.close(&report).await {
        Ok(recorded) => report.recorded = recorded,
        Err(e) => {
            report.end = match e {
                ActionError::Interrupted(_) => SessionEnd::Interrupted,
                other => SessionEnd::Failed {
                    reason: format!("closing the session: {other}"),
                },
            };
            // Nothing of the session was kept (in-process) or it failed late (HTTP); either
            // way no order enters the agent's history.
            report.effects.order = None;
        }
    }
    match &report.end {
        SessionEnd::Completed {
            final_total_cents, ..
        } => {
            cx.metrics.add(Counter::SessionsCompleted, 1);
            cx.metrics.add(Counter::Orders, 1);
            cx.metrics.add(
                Counter::RevenueCents,
                u64::try_from(*final_total_cents).unwrap_or(0),
            );
            cx.metrics.add(Counter::OffersApplied, u64::from(applied));
        }
        SessionEnd::Abandoned => {
            cx.metrics.add(Counter::SessionsAbandoned, 1);
            cx.metrics.add(Counter::OffersApplied, u64::from(applied));
        }
        SessionEnd::Failed { reason } => {
            cx.metrics.add(Counter::SessionsFailed, 1);
            tracing::warn!(agent = %agent.key, session = %info_id, %reason, "session failed");
        }
        SessionEnd::Interrupted => {}
    }
    agent.finish(&report, cal.date);
    report
}
