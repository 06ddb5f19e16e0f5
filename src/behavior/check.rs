//! `shopsim check`: simulate a persona set in memory and print its statistics.
//!
//! The analyst's loop: no server, no database. Agents decide through the same
//! [`PersonaSet`] calls the simulation host makes; the shop is a small in-memory model using
//! the domain's own pricing ([`price_cart`]) and offer draw ([`draw_offers`]): daily restock,
//! weekly wallets of 2 frontstore + 30 targeted offers (a 10% holdout gets none), stock checks
//! on adds. Single-threaded and keyed only on (seed, agent, day, session, purpose), so the same
//! seed prints byte-identical output.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;

use super::calendar::Calendar;
use super::error::BehaviorError;
use super::inputs::{CartLine, CartState, CatalogIndex, CatalogView, History, Offer};
use super::outputs::{ReactionAction, StepAction};
use super::persona::Persona;
use super::set::{Agent, Outcome, PersonaSet, Vocab};
use crate::catalog::{Catalog, Coupon, CouponKind};
use crate::domain::{PricedLine, ShopConfig, draw_offers, ineligibility, price_cart};
use crate::ids;
use crate::money::Money;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// Run seed.
    pub seed: u64,
    /// Number of agents (`agent_001` …).
    pub agents: usize,
    /// Number of simulated days.
    pub days: u32,
    /// First simulated date.
    pub start: NaiveDate,
}

/// Retries of one failed step before the host skips it.
const MAX_RETRIES: u32 = 3;

/// The statistics `shopsim check` prints. No wall-clock fields: the same seed gives
/// byte-identical JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckReport {
    /// Persona set.
    pub persona_set: String,
    /// Content hash of its scripts.
    pub script_version: String,
    /// Seed.
    pub seed: u64,
    /// Agents simulated.
    pub agents: usize,
    /// Days simulated.
    pub days: u32,
    /// First date.
    pub start: String,
    /// agents × days.
    pub agent_days: u64,
    /// Sessions started.
    pub sessions: u64,
    /// Sessions that ended in an order.
    pub orders: u64,
    /// Sessions abandoned (including empty carts).
    pub abandoned: u64,
    /// abandoned ÷ (orders + abandoned).
    pub abandon_rate: f64,
    /// Sessions per agent-day.
    pub sessions_per_agent_day: f64,
    /// Sessions per agent-hour (agent-days × 24).
    pub sessions_per_agent_hour: f64,
    /// Session events (views, adds, offer views and applies, checkout or abandon).
    pub events: u64,
    /// Events per session.
    pub events_per_session: f64,
    /// Distinct products per completed order, mean.
    pub mean_basket_items: f64,
    /// Distinct products per completed order, median.
    pub median_basket_items: f64,
    /// Mean order total after discounts.
    pub mean_order_total: f64,
    /// Offers applied.
    pub offers_applied: u64,
    /// Offers applied per session.
    pub offers_per_session: f64,
    /// Adds refused for lack of stock.
    pub out_of_stock: u64,
    /// Completed orders per hour of day (simulated, 0–23).
    pub orders_by_hour: [u64; 24],
    /// Completed orders per weekday, Monday first.
    pub orders_by_weekday: [u64; 7],
    /// Gaps between an agent's consecutive orders, counted by whole days (index = days).
    pub days_between_orders: Vec<u64>,
    /// Decisions that failed (the agent-day or session was skipped).
    pub decision_errors: u64,
    /// The first few decision errors.
    pub errors: Vec<String>,
}

/// The world of a check: catalog, its index, the vocabulary and the coupon pools.
pub struct World {
    catalog: Arc<Catalog>,
    view: CatalogView,
    vocab: Vocab,
    frontstore: Vec<uuid::Uuid>,
    targeted: Vec<uuid::Uuid>,
    coupon_index: HashMap<uuid::Uuid, u32>,
    stock: HashMap<(u32, u32), i64>,
}

impl World {
    /// Indexes a catalog; persona vocabulary is the shared category vocabulary.
    pub fn new(catalog: Catalog) -> Self {
        let view = CatalogView(Arc::new(CatalogIndex::new(&catalog)));
        let vocab = super::population::vocab(catalog.stores.len());
        let frontstore: Vec<uuid::Uuid> = catalog
            .coupons
            .iter()
            .filter(|c| c.is_active && c.kind == CouponKind::Frontstore)
            .map(|c| c.id)
            .collect();
        let targeted: Vec<uuid::Uuid> = catalog
            .coupons
            .iter()
            .filter(|c| c.is_active && c.kind != CouponKind::Frontstore)
            .map(|c| c.id)
            .collect();
        let coupon_index = catalog
            .coupons
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i as u32))
            .collect();
        let store_pos: HashMap<uuid::Uuid, u32> = catalog
            .stores
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i as u32))
            .collect();
        let product_pos: HashMap<uuid::Uuid, u32> = catalog
            .products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i as u32))
            .collect();
        let stock = catalog
            .inventory
            .iter()
            .filter_map(|r| {
                Some((
                    (
                        *store_pos.get(&r.store_id)?,
                        *product_pos.get(&r.product_id)?,
                    ),
                    r.quantity,
                ))
            })
            .collect();
        World {
            catalog: Arc::new(catalog),
            view,
            vocab,
            frontstore,
            targeted,
            coupon_index,
            stock,
        }
    }

    /// The script-facing catalog.
    pub fn view(&self) -> &CatalogView {
        &self.view
    }

    /// The persona vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Product id of script product `i`.
    pub fn product_id(&self, i: u32) -> Option<uuid::Uuid> {
        self.catalog.products.get(i as usize).map(|p| p.id)
    }

    /// Store id of script store `i`.
    pub fn store_id(&self, i: u32) -> Option<uuid::Uuid> {
        self.catalog.stores.get(i as usize).map(|s| s.id)
    }

    /// Coupon id of script coupon `i`.
    pub fn coupon_id(&self, i: u32) -> Option<uuid::Uuid> {
        self.catalog.coupons.get(i as usize).map(|c| c.id)
    }

    /// A coupon by id.
    pub fn coupon_by_id(&self, id: uuid::Uuid) -> Option<&Coupon> {
        self.coupon_index.get(&id).map(|&i| self.coupon(i))
    }

    /// The script's view of wallet offer `coupon_id` usable until `until`, or `None` for a
    /// coupon not in the catalog.
    pub fn offer_for(&self, coupon_id: uuid::Uuid, until: NaiveDate) -> Option<Offer> {
        self.coupon_index
            .get(&coupon_id)
            .map(|&i| self.offer(i, until))
    }

    fn coupon(&self, i: u32) -> &Coupon {
        &self.catalog.coupons[i as usize]
    }

    fn offer(&self, i: u32, until: NaiveDate) -> Offer {
        let c = self.coupon(i);
        Offer {
            coupon: i,
            kind: c.kind,
            target: c.category_or_brand.clone().unwrap_or_default().into(),
            discount_type: c.discount_type,
            value: c.discount_value,
            min_purchase: c.min_purchase_amount.unwrap_or(Money::ZERO),
            eligible_until: until,
        }
    }

    /// Cart lines (script product indexes) priced for the domain's pricing function.
    pub fn priced(&self, lines: &[CartLine]) -> Vec<PricedLine> {
        lines
            .iter()
            .filter_map(|l| {
                let p = self.catalog.products.get(l.product as usize)?;
                Some(PricedLine {
                    product_id: p.id,
                    category: p.category.clone(),
                    brand: Some(p.brand.clone()),
                    unit_price: p.price,
                    quantity: i64::from(l.qty),
                })
            })
            .collect()
    }
}

struct AgentState {
    key: String,
    user: uuid::Uuid,
    persona: Persona,
    history: Arc<History>,
    wallet: Arc<[Offer]>,
    holdout: bool,
    recent_draws: VecDeque<Vec<u32>>,
    last_order: Option<NaiveDate>,
}

fn median(v: &mut [u64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Rounds for printing: statistics, not money; 6 decimals keep the JSON short and stable.
fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The agent keys of a run: `agent_001` … (three digits at least, like the original).
pub fn agent_key(i: usize) -> String {
    format!("agent_{:03}", i + 1)
}

struct Tally {
    report: CheckReport,
    baskets: Vec<u64>,
    order_total: Money,
}

impl Tally {
    fn error(&mut self, e: BehaviorError) {
        self.report.decision_errors += 1;
        if self.report.errors.len() < 5 {
            self.report.errors.push(e.to_string());
        }
    }
}

/// Runs the check: `agents` agents for `days` days from `start`.
pub fn run_check(
    set: &PersonaSet,
    world: &World,
    cfg: &CheckConfig,
) -> Result<CheckReport, BehaviorError> {
    let shop = ShopConfig {
        seed: cfg.seed,
        ..ShopConfig::default()
    };
    let mut agents = Vec::with_capacity(cfg.agents);
    for i in 0..cfg.agents {
        let key = agent_key(i);
        let persona = set.make_persona(cfg.seed, &key, &world.vocab)?;
        let user = ids::stable_uuid(cfg.seed, "user", &key);
        let holdout =
            ids::unit(shop.seed, &["holdout".into(), (&user).into()]) < shop.holdout_share;
        agents.push(AgentState {
            key,
            user,
            persona,
            history: Arc::new(History::default()),
            wallet: Arc::from(Vec::new()),
            holdout,
            recent_draws: VecDeque::new(),
            last_order: None,
        });
    }
    let mut t = Tally {
        report: CheckReport {
            persona_set: set.name().to_string(),
            script_version: set.version().to_string(),
            seed: cfg.seed,
            agents: cfg.agents,
            days: cfg.days,
            start: cfg.start.format("%Y-%m-%d").to_string(),
            agent_days: cfg.agents as u64 * u64::from(cfg.days),
            sessions: 0,
            orders: 0,
            abandoned: 0,
            abandon_rate: 0.0,
            sessions_per_agent_day: 0.0,
            sessions_per_agent_hour: 0.0,
            events: 0,
            events_per_session: 0.0,
            mean_basket_items: 0.0,
            median_basket_items: 0.0,
            mean_order_total: 0.0,
            offers_applied: 0,
            offers_per_session: 0.0,
            out_of_stock: 0,
            orders_by_hour: [0; 24],
            orders_by_weekday: [0; 7],
            days_between_orders: Vec::new(),
            decision_errors: 0,
            errors: Vec::new(),
        },
        baskets: Vec::new(),
        order_total: Money::ZERO,
    };
    let cycle_days = shop.cycle_days.max(1) as u32;
    for day in 0..cfg.days {
        let date = cfg.start + Duration::days(i64::from(day));
        // Restock at simulated midnight: every (store, product) back to its seeded level.
        let mut stock = world.stock.clone();
        let cal = Calendar::new(date, day, 0);
        for a in agents.iter_mut() {
            if day % cycle_days == 0 {
                refresh_wallet(world, &shop, a, day / cycle_days, date);
            }
            simulate_day(set, world, &cal, cfg.seed, a, &mut stock, &mut t);
        }
    }
    let r = &mut t.report;
    let ended = r.orders + r.abandoned;
    r.abandon_rate = r6(ratio(r.abandoned, ended));
    r.sessions_per_agent_day = r6(ratio(r.sessions, r.agent_days));
    r.sessions_per_agent_hour = r6(ratio(r.sessions, r.agent_days * 24));
    r.events_per_session = r6(ratio(r.events, r.sessions));
    r.offers_per_session = r6(ratio(r.offers_applied, r.sessions));
    r.mean_basket_items = r6(ratio(t.baskets.iter().sum(), t.baskets.len() as u64));
    r.median_basket_items = median(&mut t.baskets);
    r.mean_order_total = r6(if r.orders == 0 {
        0.0
    } else {
        t.order_total.to_f64() / r.orders as f64
    });
    Ok(t.report)
}

fn refresh_wallet(
    world: &World,
    shop: &ShopConfig,
    a: &mut AgentState,
    cycle: u32,
    date: NaiveDate,
) {
    if a.holdout {
        a.wallet = Arc::from(Vec::new());
        return;
    }
    // Coupons assigned in the last `exclusion_days` are not drawn again.
    let keep = (shop.exclusion_days / shop.cycle_days.max(1)).max(0) as usize;
    let excluded: Vec<u32> = a.recent_draws.iter().flatten().copied().collect();
    let free = |pool: &[uuid::Uuid]| -> Vec<uuid::Uuid> {
        pool.iter()
            .copied()
            .filter(|id| !excluded.contains(&world.coupon_index[id]))
            .collect()
    };
    let drawn = draw_offers(
        shop.seed,
        a.user,
        i64::from(cycle),
        &free(&world.frontstore),
        shop.frontstore_offers,
        &free(&world.targeted),
        shop.targeted_offers,
    );
    let idx: Vec<u32> = drawn.iter().map(|id| world.coupon_index[id]).collect();
    let until = date + Duration::days(shop.eligibility_days);
    a.wallet = idx.iter().map(|i| world.offer(*i, until)).collect();
    a.recent_draws.push_back(idx);
    while a.recent_draws.len() > keep {
        a.recent_draws.pop_front();
    }
}

fn simulate_day(
    set: &PersonaSet,
    world: &World,
    cal: &Calendar,
    seed: u64,
    a: &mut AgentState,
    stock: &mut HashMap<(u32, u32), i64>,
    t: &mut Tally,
) {
    let plan = {
        let agent = Agent {
            seed,
            key: &a.key,
            persona: &a.persona,
            history: &a.history,
            wallet: &a.wallet,
        };
        match set.plan_day(&agent, cal, &world.view) {
            Ok(p) => p.value,
            Err(e) => return t.error(e),
        }
    };
    for (n, planned) in plan.sessions.iter().enumerate() {
        simulate_session(set, world, cal, seed, a, n as u32, *planned, stock, t);
    }
}

#[allow(clippy::too_many_arguments)]
fn simulate_session(
    set: &PersonaSet,
    world: &World,
    cal: &Calendar,
    seed: u64,
    a: &mut AgentState,
    number: u32,
    planned: super::outputs::PlannedSession,
    stock: &mut HashMap<(u32, u32), i64>,
    t: &mut Tally,
) {
    let scal = cal.at_minute(planned.minute);
    // Simulated seconds since midnight of the session's day: every step adds its think time.
    let mut clock = u64::from(planned.minute) * 60;
    let agent = Agent {
        seed,
        key: &a.key,
        persona: &a.persona,
        history: &a.history,
        wallet: &a.wallet,
    };
    let plan = match set.plan_session(&agent, cal, &world.view, number, planned) {
        Ok(p) => p.value,
        Err(e) => return t.error(e),
    };
    t.report.sessions += 1;
    let mut cart = CartState::default();
    let mut outcomes = 0u32;
    let mut abandoned_early = false;
    let store = planned.store;
    'steps: for step in &plan.steps {
        clock += u64::from(step.think);
        match step.action {
            StepAction::View { .. } => t.report.events += 1,
            StepAction::Add { product, qty } => {
                let mut attempt_product = product;
                let mut attempt_qty = qty;
                let mut retries = 0;
                loop {
                    let in_cart: u32 = cart
                        .lines
                        .iter()
                        .filter(|l| l.product == attempt_product)
                        .map(|l| l.qty)
                        .sum();
                    let available = stock
                        .get(&(store, attempt_product))
                        .copied()
                        .unwrap_or(i64::MAX);
                    if i64::from(in_cart + attempt_qty) <= available {
                        t.report.events += 1;
                        match cart.lines.iter_mut().find(|l| l.product == attempt_product) {
                            Some(l) => l.qty += attempt_qty,
                            None => cart.lines.push(CartLine {
                                product: attempt_product,
                                qty: attempt_qty,
                            }),
                        }
                        break;
                    }
                    t.report.out_of_stock += 1;
                    let outcome = Outcome::OutOfStock {
                        product: attempt_product,
                        requested: attempt_qty,
                        available: (available - i64::from(in_cart)).max(0) as u32,
                    };
                    let r = match set.on_outcome(
                        &agent,
                        &scal,
                        &world.view,
                        number,
                        &outcome,
                        outcomes,
                    ) {
                        Ok(r) => r.value,
                        Err(e) => {
                            t.error(e);
                            break;
                        }
                    };
                    outcomes += 1;
                    clock += u64::from(r.think);
                    match r.action {
                        ReactionAction::Skip => break,
                        ReactionAction::Abandon => {
                            abandoned_early = true;
                            break 'steps;
                        }
                        ReactionAction::Retry => {
                            retries += 1;
                            if retries > MAX_RETRIES {
                                break;
                            }
                        }
                        ReactionAction::Substitute { product, qty } => {
                            retries += 1;
                            if retries > MAX_RETRIES {
                                break;
                            }
                            attempt_product = product;
                            attempt_qty = qty;
                        }
                    }
                }
            }
        }
    }
    let mut completed = false;
    if !cart.lines.is_empty() && !abandoned_early {
        let lines = world.priced(&cart.lines);
        cart.subtotal = lines.iter().map(PricedLine::amount).sum();
        cart.eligible = a
            .wallet
            .iter()
            .filter(|o| ineligibility(&lines, world.coupon(o.coupon)).is_none())
            .cloned()
            .collect();
        // Looking at the eligible offers is an event (GET /api/coupons/eligible).
        t.report.events += 1;
        if !cart.eligible.is_empty() {
            match set.choose_offers(&agent, &scal, &world.view, number, &cart) {
                Ok(choice) => {
                    let choice = choice.value;
                    if !choice.apply.is_empty() {
                        clock += u64::from(choice.think) * choice.apply.len() as u64;
                    }
                    for i in &choice.apply {
                        cart.applied.push(cart.eligible[*i].clone());
                        t.report.events += 1;
                        t.report.offers_applied += 1;
                    }
                }
                Err(e) => t.error(e),
            }
        }
        let coupons: Vec<Coupon> = cart
            .applied
            .iter()
            .map(|o| world.coupon(o.coupon).clone())
            .collect();
        let summary = price_cart(&lines, &coupons);
        cart.discount = summary.discount_total;
        match set.decide_checkout(&agent, &scal, &world.view, number, &cart) {
            Ok(d) => {
                clock += u64::from(d.value.think);
                if d.value.checkout {
                    completed = true;
                    let day_offset = (clock / 86_400) as i64;
                    let when = cal.date + Duration::days(day_offset);
                    let hour = ((clock % 86_400) / 3600) as usize;
                    t.report.orders_by_hour[hour] += 1;
                    t.report.orders_by_weekday[when.weekday().num_days_from_monday() as usize] += 1;
                    t.baskets.push(cart.lines.len() as u64);
                    t.order_total += summary.final_total;
                    for l in &cart.lines {
                        if let Some(s) = stock.get_mut(&(store, l.product)) {
                            *s -= i64::from(l.qty);
                        }
                    }
                    if let Some(prev) = a.last_order {
                        let gap = (when - prev).num_days().max(0) as usize;
                        let v = &mut t.report.days_between_orders;
                        if v.len() <= gap {
                            v.resize(gap + 1, 0);
                        }
                        v[gap] += 1;
                    }
                    a.last_order = Some(when);
                    let products: Vec<u32> = cart.lines.iter().map(|l| l.product).collect();
                    Arc::make_mut(&mut a.history).record_order(
                        when,
                        &products,
                        summary.final_total,
                    );
                }
            }
            Err(e) => t.error(e),
        }
    }
    // Checkout or abandon is the session's last event.
    t.report.events += 1;
    if completed {
        t.report.orders += 1;
    } else {
        t.report.abandoned += 1;
    }
    Arc::make_mut(&mut a.history).record_session(cal.date);
}

impl World {
    /// A wallet with the first frontstore and targeted coupons (for dry runs and benchmarks).
    pub fn sample_wallet(&self, today: NaiveDate) -> Arc<[Offer]> {
        let until = today + Duration::days(14);
        self.frontstore
            .iter()
            .take(2)
            .chain(self.targeted.iter().take(30))
            .map(|id| self.offer(self.coupon_index[id], until))
            .collect()
    }
}
