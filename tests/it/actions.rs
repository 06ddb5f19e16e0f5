//! The simulation's remote actions against the real reference server (HTTP) and the domain
//! (in-process): the session flow, faults and retries, 429, the circuit breaker, an outage, and
//! HTTP ≡ in-process.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use shopsim::catalog::{Catalog, Coupon};
use shopsim::domain::{CheckoutResult, KnownCatalog, RejectCode};
use shopsim::server::{self, FailMode, FaultPatch, FaultSettings};
use shopsim::sim::actions::{
    ActionError, Actions, BreakerState, HttpActions, HttpConfig, InProcessActions, InProcessConfig,
    SessionActions, SessionInfo, Step, TxMode,
};
use shopsim::sim::metrics::{Counter, Endpoint, Metrics, Outcome};
use shopsim::store::{Backend, Db, DbConfig};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::{Fixture, at, seed, spawn_app, test_config};
use crate::backend_tests;
use crate::support::TestDb;

backend_tests!(
    http_session_flow_and_rejections,
    http_mixed_faults_complete_without_double_writes,
    http_rate_limit_honours_retry_after,
    http_breaker_opens_and_closes_again,
    http_outage_pauses_and_resumes_with_the_same_keys,
    inprocess_and_http_make_the_same_data,
    http_database_outage_waits_for_the_database,
    inprocess_database_error_rolls_back_the_session,
    inprocess_sessions_pass_their_offers_on,
    inprocess_sessions_pass_their_store_on,
    http_scaling_plan_paths_work,
);

const T0: &str = "2026-01-05T09:00:00Z";

/// A session of `agent` (user `user`), number `seq` of its day.
fn info(agent: &str, user: Uuid, seq: u32) -> SessionInfo {
    SessionInfo {
        run_id: "run-test".into(),
        agent_id: agent.into(),
        user_id: user,
        session_id: shopsim::ids::stable_uuid(1, "session", &format!("{agent}/{seq}")),
        sim_date: NaiveDate::from_ymd_opt(2026, 1, 5).unwrap(),
        session_seq: seq,
        resumed: false,
    }
}

/// Step `seq` of session `session_seq`, 30 simulated seconds apart.
fn step(session_seq: u32, seq: u32) -> Step {
    let base: DateTime<Utc> = at(T0) + chrono::Duration::hours(i64::from(session_seq));
    Step {
        seq,
        at: base + chrono::Duration::seconds(30 * i64::from(seq)),
    }
}

/// Fast retries and probes for tests.
fn fast_config(base: &str) -> HttpConfig {
    let mut c = HttpConfig::new(base);
    c.retry.base_backoff = Duration::from_millis(2);
    c.retry.max_backoff = Duration::from_millis(50);
    c.retry.max_attempts = 10;
    c.retry.budget_floor_per_sec = 1000.0;
    c.retry.budget_max = 1000.0;
    c.breaker.cooldown = Duration::from_millis(100);
    c.outage.probe_initial = Duration::from_millis(20);
    c.outage.probe_max = Duration::from_millis(200);
    c.request_timeout = Duration::from_secs(20);
    c
}

/// The shopping session every test drives: store, offers, two views and adds, coupons, summary,
/// checkout. Returns the order.
async fn shop(
    s: &mut dyn SessionActions,
    fx: &Fixture,
    seq: u32,
    first: u32,
) -> Result<CheckoutResult, ActionError> {
    let st = |n: u32| step(seq, first + n);
    s.select_store(st(0), fx.store_a).await?;
    s.refresh_offers(st(1)).await?;
    let wallet = s.wallet(st(2)).await?;
    if seq == 0 {
        assert!(
            wallet
                .offers
                .iter()
                .any(|o| o.coupon.id == fx.snacks_coupon && o.status == "active"),
            "{wallet:?}"
        );
    }
    s.view_product(st(3), fx.chips).await?;
    s.add_to_cart(st(4), fx.chips, 2).await?;
    s.view_product(st(5), fx.cola).await?;
    s.add_to_cart(st(6), fx.cola, 1).await?;
    let coupons = s.eligible_coupons(st(7)).await?;
    // The snacks offer on a fresh wallet; a later session of the week takes what is left.
    let pick = coupons
        .eligible
        .iter()
        .find(|c| c.id == fx.snacks_coupon)
        .or(coupons.eligible.first());
    if seq == 0 {
        assert!(
            pick.is_some_and(|c| c.id == fx.snacks_coupon),
            "{coupons:?}"
        );
    }
    if let Some(c) = pick {
        s.apply_coupon(st(8), c.id).await?;
    }
    let summary = s.cart_summary(st(9)).await?;
    let order = s.checkout(st(10)).await?;
    assert_eq!(order.order.totals.final_total, summary.final_total);
    Ok(order)
}

/// The scripted day of both agents: a full session each, then agent 1 abandons a cart after a
/// refused offer, then an empty checkout is rejected.
async fn script(actions: &dyn Actions, fx: &Fixture) {
    for (n, (agent, user)) in [("agent_001", fx.user1), ("agent_002", fx.user2)]
        .into_iter()
        .enumerate()
    {
        let mut s = actions
            .open_session(info(agent, user, n as u32))
            .await
            .unwrap();
        shop(s.as_mut(), fx, n as u32, 0).await.unwrap();
        s.close(&closing()).await.unwrap();
    }
    let mut s = actions
        .open_session(info("agent_001", fx.user1, 2))
        .await
        .unwrap();
    s.select_store(step(2, 0), fx.store_b).await.unwrap();
    s.add_to_cart(step(2, 1), fx.vitamins, 1).await.unwrap();
    let refused = s.apply_coupon(step(2, 2), fx.inactive_coupon).await;
    assert!(
        matches!(
            refused,
            Err(ActionError::Rejected {
                code: RejectCode::OfferNotInWallet,
                ..
            })
        ),
        "{refused:?}"
    );
    let cleared = s.abandon(step(2, 3)).await.unwrap();
    assert_eq!(cleared.items_removed, 1);
    let empty = s.checkout(step(2, 4)).await;
    assert!(
        matches!(
            empty,
            Err(ActionError::Rejected {
                code: RejectCode::EmptyCart,
                ..
            })
        ),
        "{empty:?}"
    );
    s.close(&closing()).await.unwrap();
}

async fn count(db: &Db, sql: &str) -> i64 {
    let tx = db.read().await.unwrap();
    let n = tx.query_one(sql, vec![]).await.unwrap().i64("n").unwrap();
    tx.commit().await.unwrap();
    n
}

fn total(m: &Metrics, outcome: Outcome) -> u64 {
    Endpoint::ALL
        .iter()
        .map(|&e| m.outcome_count(e, outcome))
        .sum()
}

fn all_outcomes(m: &Metrics) -> u64 {
    Outcome::ALL.iter().map(|&o| total(m, o)).sum()
}

async fn http_session_flow_and_rejections(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let metrics = Arc::new(Metrics::new());
    let actions = HttpActions::new(
        fast_config(&app.base),
        metrics.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(actions.mode(), "http");
    script(&actions, &app.fx).await;
    let db = &app.t.db;
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM orders").await, 2);
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM order_items WHERE quantity = 2"
        )
        .await,
        2
    );
    // Events: 2 × (2 views, 2 adds, coupons, apply, checkout) + add + abandon.
    assert_eq!(
        count(db, "SELECT COUNT(*) AS n FROM shopping_session_events").await,
        16
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM shopping_sessions WHERE status = 'completed'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM shopping_sessions WHERE status = 'abandoned'"
        )
        .await,
        1
    );
    // Every write carried its key (the server stored one answer per key), and so did each
    // session's two product views and its eligible-offers list, which record events, and the
    // two wallet reads (a resumed session reads the wallet it read the first time).
    assert_eq!(
        count(db, "SELECT COUNT(*) AS n FROM sim_idempotency").await,
        2 * 6 + 5 + 2 * 3 + 2
    );

    // Out of stock is a rejection, counted as such.
    app.set_stock(app.fx.store_a, app.fx.lotion, 1).await;
    let mut s = actions.session(info("agent_002", app.fx.user2, 3)).unwrap();
    s.select_store(step(3, 0), app.fx.store_a).await.unwrap();
    let r = s.add_to_cart(step(3, 1), app.fx.lotion, 5).await;
    assert!(
        matches!(
            r,
            Err(ActionError::Rejected {
                code: RejectCode::InsufficientInventory,
                ..
            })
        ),
        "{r:?}"
    );
    // A 4xx that is not a rejection fails at once.
    let r = s.view_product(step(3, 2), Uuid::new_v4()).await;
    assert!(
        matches!(r, Err(ActionError::Failed { class: Outcome::Other4xx, attempts: 1, ref reason }) if reason.contains("product_not_found")),
        "{r:?}"
    );
    // Paced mode: latency counts from the release time the engine passes.
    s.set_scheduled(tokio::time::Instant::now() - Duration::from_secs(2));
    s.cart_summary(step(3, 3)).await.unwrap();
    let summary = &metrics.snapshot().endpoints[&Endpoint::CartSummary];
    assert!(summary.latency.max_ms >= 2000.0, "{summary:?}");
    assert!(summary.latency.p50_ms < 2000.0, "{summary:?}");
    Box::new(s).close(&closing()).await.unwrap();

    assert_eq!(metrics.outcome_count(Endpoint::Checkout, Outcome::Ok), 2);
    assert_eq!(
        metrics.outcome_count(Endpoint::Checkout, Outcome::OtherRejection),
        1
    );
    assert_eq!(
        metrics.outcome_count(Endpoint::ApplyCoupon, Outcome::OfferRefused),
        1
    );
    assert_eq!(
        metrics.outcome_count(Endpoint::AddToCart, Outcome::OutOfStock),
        1
    );
    assert_eq!(
        metrics.outcome_count(Endpoint::ViewProduct, Outcome::Other4xx),
        1
    );
    assert_eq!(metrics.get(Counter::Retries), 0);
    assert_eq!(
        all_outcomes(&metrics),
        app.server.faults().counters().requests
    );
    assert!(
        actions
            .breaker_states()
            .iter()
            .all(|(_, s)| *s == BreakerState::Closed)
    );
    assert!(actions.outage().is_none());
}

async fn http_mixed_faults_complete_without_double_writes(t: TestDb) {
    let mut config = test_config();
    config.faults = FaultSettings {
        fail_rate: 0.3,
        fail_mode: FailMode::Mixed,
        ..Default::default()
    };
    let app = spawn_app(t, config).await;
    let metrics = Arc::new(Metrics::new());
    let actions = HttpActions::new(
        fast_config(&app.base),
        metrics.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    let sessions = 3u32;
    for seq in 0..sessions {
        for (agent, user) in [("agent_001", app.fx.user1), ("agent_002", app.fx.user2)] {
            let mut s = actions.open_session(info(agent, user, seq)).await.unwrap();
            shop(s.as_mut(), &app.fx, seq, 0).await.unwrap();
            s.close(&closing()).await.unwrap();
        }
    }
    let db = &app.t.db;
    let orders = i64::from(sessions) * 2;
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM orders").await, orders);
    // Each order has chips × 2 and cola × 1: no add applied twice.
    assert_eq!(
        count(
            db,
            "SELECT COALESCE(SUM(quantity), 0) AS n FROM order_items"
        )
        .await,
        orders * 3
    );
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM cart_items").await, 0);
    // Stock was restocked to 500 at the day's first request, then sold exactly.
    assert_eq!(
        app.stock(app.fx.store_a, app.fx.chips).await,
        500 - 2 * orders
    );
    assert_eq!(app.stock(app.fx.store_a, app.fx.cola).await, 500 - orders);

    let server = app.server.faults().counters();
    let client_5xx = total(&metrics, Outcome::Api5xx);
    assert!(
        server.injected_before > 0 && server.injected_after > 0,
        "{server:?}"
    );
    assert_eq!(client_5xx, server.injected_before + server.injected_after);
    assert_eq!(all_outcomes(&metrics), server.requests);
    assert_eq!(metrics.get(Counter::Retries), client_5xx);
    assert_eq!(
        metrics.outcome_count(Endpoint::Checkout, Outcome::Ok),
        u64::from(sessions) * 2
    );
    // Writes that failed after doing their work were answered from the stored response.
    assert!(server.replays > 0, "{server:?}");
}

async fn http_rate_limit_honours_retry_after(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    app.server
        .faults()
        .update(FaultPatch {
            rate_limit: Some(Some(4)),
            ..Default::default()
        })
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let actions = HttpActions::new(
        fast_config(&app.base),
        metrics.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut s = actions
        .open_session(info("agent_001", app.fx.user1, 0))
        .await
        .unwrap();
    shop(s.as_mut(), &app.fx, 0, 0).await.unwrap();
    s.close(&closing()).await.unwrap();
    let server = app.server.faults().counters();
    let limited = total(&metrics, Outcome::RateLimited);
    assert!(limited > 0, "{server:?}");
    assert_eq!(limited, server.rate_limited);
    assert_eq!(metrics.get(Counter::Retries), limited);
    // Retry-After is whole seconds (≥ 1): the client waited instead of hammering.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        limited <= 4,
        "a 429 was retried before Retry-After: {limited}"
    );
    assert_eq!(
        count(&app.t.db, "SELECT COUNT(*) AS n FROM orders").await,
        1
    );
}

async fn http_breaker_opens_and_closes_again(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let metrics = Arc::new(Metrics::new());
    let mut config = fast_config(&app.base);
    config.retry.max_attempts = 3;
    config.breaker.consecutive_failures = 3;
    config.breaker.cooldown = Duration::from_millis(300);
    let actions = HttpActions::new(config, metrics.clone(), CancellationToken::new()).unwrap();
    let mut s = actions.session(info("agent_001", app.fx.user1, 0)).unwrap();
    s.select_store(step(0, 0), app.fx.store_a).await.unwrap();

    app.server
        .faults()
        .update(FaultPatch {
            fail_rate: Some(1.0),
            ..Default::default()
        })
        .unwrap();
    let r = s.cart_summary(step(0, 1)).await;
    assert!(
        matches!(
            r,
            Err(ActionError::Failed {
                class: Outcome::Api5xx,
                attempts: 3,
                ..
            })
        ),
        "{r:?}"
    );
    let state = |e: Endpoint| {
        actions
            .breaker_states()
            .into_iter()
            .find(|(x, _)| *x == e)
            .unwrap()
            .1
    };
    assert_eq!(state(Endpoint::CartSummary), BreakerState::Open);
    assert_eq!(state(Endpoint::SelectStore), BreakerState::Closed);

    // Faults off: the next step waits out the cooldown, its probe succeeds, the breaker closes.
    app.server
        .faults()
        .update(FaultPatch {
            fail_rate: Some(0.0),
            ..Default::default()
        })
        .unwrap();
    let started = std::time::Instant::now();
    s.cart_summary(step(0, 2)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(state(Endpoint::CartSummary), BreakerState::Closed);
    assert_eq!(
        metrics.outcome_count(Endpoint::CartSummary, Outcome::Api5xx),
        3
    );
}

async fn http_outage_pauses_and_resumes_with_the_same_keys(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let crate::app::TestApp {
        t,
        server,
        fx,
        base,
        ..
    } = app;
    let addr = server.local_addr();
    let metrics = Arc::new(Metrics::new());
    let actions = HttpActions::new(
        fast_config(&base),
        metrics.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    let mut s = actions.session(info("agent_001", fx.user1, 0)).unwrap();
    s.select_store(step(0, 0), fx.store_a).await.unwrap();
    s.add_to_cart(step(0, 1), fx.chips, 2).await.unwrap();

    server.shutdown().await.unwrap();
    let fx2 = fx.clone();
    let rest = tokio::spawn(async move {
        s.add_to_cart(step(0, 2), fx2.cola, 1).await?;
        s.checkout(step(0, 3)).await
    });
    let mut waited = 0;
    while actions.outage().is_none() {
        assert!(waited < 100, "no outage detected");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    let outage = actions.outage().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !rest.is_finished(),
        "the step must wait for the API: {outage:?}"
    );

    let mut config = test_config();
    config.addr = addr;
    let server = server::start(t.db.clone(), config).await.unwrap();
    let order = tokio::time::timeout(Duration::from_secs(20), rest)
        .await
        .expect("the session resumes after the outage")
        .unwrap()
        .unwrap();
    assert_eq!(order.order.item_count, 3);
    assert!(actions.outage().is_none());
    assert_eq!(count(&t.db, "SELECT COUNT(*) AS n FROM orders").await, 1);
    // The outage spent no retry budget and failed nothing.
    assert!(total(&metrics, Outcome::Connection) >= 1);
    assert_eq!(total(&metrics, Outcome::Api5xx), 0);
    server.shutdown().await.unwrap();
}

/// A natural-key dump of everything a session writes (no generated ids).
async fn dump(db: &Db) -> Vec<String> {
    let tx = db.read().await.unwrap();
    let mut out = Vec::new();
    let q = |sql: &'static str| sql;
    for row in tx
        .query(
            q(
                "SELECT a.agent_id, s.name, o.subtotal, o.discount_total, o.final_total, o.status, \
               o.item_count, o.created_at FROM orders o JOIN agents a ON a.user_id = o.user_id \
               JOIN stores s ON s.id = o.store_id ORDER BY a.agent_id, o.created_at",
            ),
            vec![],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "order {} {} {} {} {} {} {} {}",
            row.string("agent_id").unwrap(),
            row.string("name").unwrap(),
            row.money("subtotal").unwrap(),
            row.money("discount_total").unwrap(),
            row.money("final_total").unwrap(),
            row.string("status").unwrap(),
            row.i64("item_count").unwrap(),
            row.ts("created_at").unwrap(),
        ));
    }
    for row in tx
        .query(
            q(
                "SELECT a.agent_id, o.created_at, p.sku, oi.quantity, oi.product_price, \
               oi.discount_amount, oi.line_total, c.code FROM order_items oi \
               JOIN orders o ON o.id = oi.order_id JOIN agents a ON a.user_id = o.user_id \
               JOIN products p ON p.id = oi.product_id \
               LEFT JOIN coupons c ON c.id = oi.applied_coupon_id \
               ORDER BY a.agent_id, o.created_at, p.sku",
            ),
            vec![],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "item {} {} {} {} {} {} {} {:?}",
            row.string("agent_id").unwrap(),
            row.ts("created_at").unwrap(),
            row.string("sku").unwrap(),
            row.i64("quantity").unwrap(),
            row.money("product_price").unwrap(),
            row.money("discount_amount").unwrap(),
            row.money("line_total").unwrap(),
            row.opt_string("code").unwrap(),
        ));
    }
    for row in tx
        .query(
            q("SELECT a.agent_id, e.event_type, e.created_at FROM shopping_session_events e \
               JOIN agents a ON a.user_id = e.user_id ORDER BY a.agent_id, e.created_at, e.event_type"),
            vec![],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "event {} {} {}",
            row.string("agent_id").unwrap(),
            row.string("event_type").unwrap(),
            row.ts("created_at").unwrap(),
        ));
    }
    for row in tx
        .query(
            q(
                "SELECT a.agent_id, s.id, s.status, s.started_at, s.last_seen_at, s.ended_at \
               FROM shopping_sessions s JOIN agents a ON a.user_id = s.user_id \
               ORDER BY a.agent_id, s.started_at",
            ),
            vec![],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "session {} {} {} {} {} {:?}",
            row.string("agent_id").unwrap(),
            row.uuid("id").unwrap(),
            row.string("status").unwrap(),
            row.ts("started_at").unwrap(),
            row.ts("last_seen_at").unwrap(),
            row.opt_ts("ended_at").unwrap(),
        ));
    }
    for row in tx
        .query(
            q(
                "SELECT a.agent_id, c.code, uc.status, uc.assigned_at, uc.eligible_until, \
               uc.redeemed_at FROM user_coupons uc JOIN agents a ON a.user_id = uc.user_id \
               JOIN coupons c ON c.id = uc.coupon_id ORDER BY a.agent_id, c.code",
            ),
            vec![],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "offer {} {} {} {} {:?} {:?}",
            row.string("agent_id").unwrap(),
            row.string("code").unwrap(),
            row.string("status").unwrap(),
            row.ts("assigned_at").unwrap(),
            row.opt_ts("eligible_until").unwrap(),
            row.opt_ts("redeemed_at").unwrap(),
        ));
    }
    for row in tx
        .query(
            q("SELECT s.name, p.sku, i.quantity FROM store_inventory i \
               JOIN stores s ON s.id = i.store_id JOIN products p ON p.id = i.product_id \
               ORDER BY s.name, p.sku"),
            vec![],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "stock {} {} {}",
            row.string("name").unwrap(),
            row.string("sku").unwrap(),
            row.i64("quantity").unwrap(),
        ));
    }
    tx.commit().await.unwrap();
    out
}

/// The catalog as a run loads it from `db`.
async fn loaded_catalog(db: &Db) -> Catalog {
    let tx = db.read().await.unwrap();
    let catalog = shopsim::catalog::load_catalog(&tx).await.unwrap();
    tx.commit().await.unwrap();
    catalog
}

/// In-process actions on `db` in `mode`, with a copy of `catalog` as a run has one.
fn inprocess(
    db: &Db,
    mode: TxMode,
    catalog: Option<&Catalog>,
    metrics: Arc<Metrics>,
) -> InProcessActions {
    InProcessActions::new(
        db.clone(),
        InProcessConfig {
            shop: test_config().shop,
            tx_mode: mode,
            catalog: catalog.map(|c| Arc::new(KnownCatalog::from_catalog(c))),
            ..Default::default()
        },
        metrics,
        CancellationToken::new(),
    )
    .unwrap()
}

async fn fresh_like(t: &TestDb) -> TestDb {
    match t.backend() {
        Backend::Sqlite => TestDb::sqlite().await,
        Backend::Postgres => TestDb::postgres().await.expect("PostgreSQL is configured"),
    }
}

async fn inprocess_and_http_make_the_same_data(t: TestDb) {
    let per_session = fresh_like(&t).await;
    let per_step = fresh_like(&t).await;
    let app = spawn_app(t, test_config()).await;
    let http = HttpActions::new(
        fast_config(&app.base),
        Arc::new(Metrics::new()),
        CancellationToken::new(),
    )
    .unwrap();
    script(&http, &app.fx).await;
    let expected = dump(&app.t.db).await;
    assert!(expected.iter().any(|l| l.starts_with("order ")));
    assert!(expected.iter().any(|l| l.starts_with("offer ")));

    for (t, mode) in [
        (&per_session, TxMode::PerSession),
        (&per_step, TxMode::PerStep),
    ] {
        let fx = seed(&t.db).await;
        let metrics = Arc::new(Metrics::new());
        // Views of catalog products come from the run's copy of the catalog, as in a run.
        let catalog = loaded_catalog(&t.db).await;
        let actions = inprocess(&t.db, mode, Some(&catalog), metrics.clone());
        assert_eq!(actions.mode(), "inprocess");
        script(&actions, &fx).await;
        assert_eq!(dump(&t.db).await, expected, "{mode:?}");
        assert_eq!(metrics.outcome_count(Endpoint::Checkout, Outcome::Ok), 2);
        assert_eq!(
            metrics.outcome_count(Endpoint::ApplyCoupon, Outcome::OfferRefused),
            1
        );
        assert_eq!(
            metrics.outcome_count(Endpoint::Checkout, Outcome::OtherRejection),
            1
        );
    }
}

/// With a catalog copy, an agent's session answers its eligibility check from the active
/// offers its previous session left (its refresh's, less those its checkout used) instead of
/// reading the wallet: the same offers as a run without the copy reads.
async fn inprocess_sessions_pass_their_offers_on(t: TestDb) {
    let plain = fresh_like(&t).await;
    let mut seen = Vec::new();
    for (t, copy) in [(&plain, false), (&t, true)] {
        let fx = seed(&t.db).await;
        let mut catalog = loaded_catalog(&t.db).await;
        // The copy's descriptions differ from the database's: they show which one answered.
        for c in &mut catalog.coupons {
            c.discount_details.push_str(" (the copy)");
        }
        let copy = copy.then_some(&catalog);
        let actions = inprocess(&t.db, TxMode::PerSession, copy, Arc::new(Metrics::new()));
        // The first session refreshes, applies the snacks offer and checks out.
        let mut s = actions
            .open_session(info("agent_001", fx.user1, 0))
            .await
            .unwrap();
        shop(s.as_mut(), &fx, 0, 0).await.unwrap();
        s.close(&closing()).await.unwrap();
        // The next one (no refresh due) checks its offers.
        let mut s = actions
            .open_session(info("agent_001", fx.user1, 1))
            .await
            .unwrap();
        s.select_store(step(1, 0), fx.store_a).await.unwrap();
        assert!(!s.refresh_offers(step(1, 1)).await.unwrap().refreshed);
        s.add_to_cart(step(1, 2), fx.chips, 1).await.unwrap();
        let coupons = s.eligible_coupons(step(1, 3)).await.unwrap();
        s.close(&closing()).await.unwrap();
        let offers: Vec<_> = coupons
            .eligible
            .iter()
            .chain(coupons.ineligible.iter().map(|i| &i.coupon))
            .collect();
        assert!(!offers.is_empty());
        // Every offer answered from the copy, or none.
        let from_copy = offers
            .iter()
            .filter(|c| c.discount_details.ends_with(" (the copy)"));
        assert_eq!(
            from_copy.count(),
            if copy.is_some() { offers.len() } else { 0 },
            "{offers:?}"
        );
        assert!(
            !offers.iter().any(|c| c.id == fx.snacks_coupon),
            "used: {offers:?}"
        );
        // The fixture's ids (which order the lists) differ between databases; its codes do not.
        let codes = |list: Vec<&Coupon>| {
            let mut codes: Vec<_> = list.iter().map(|c| c.code.clone()).collect();
            codes.sort();
            codes
        };
        let ids = (
            codes(coupons.eligible.iter().collect()),
            codes(coupons.ineligible.iter().map(|i| &i.coupon).collect()),
        );
        seen.push(ids);
    }
    assert_eq!(seen[0], seen[1]);
}

/// An agent's next session selects the store its last committed one left selected without a
/// read (the catalog copy's store names differ from the database's: they show which one
/// answered); a switch, or a session that rolled back, is answered by the database.
async fn inprocess_sessions_pass_their_store_on(t: TestDb) {
    let fx = seed(&t.db).await;
    let mut catalog = loaded_catalog(&t.db).await;
    for s in &mut catalog.stores {
        s.name.push_str(" (the copy)");
    }
    let metrics = Arc::new(Metrics::new());
    let actions = inprocess(&t.db, TxMode::PerSession, Some(&catalog), metrics.clone());
    let from_copy = |name: &str| name.ends_with(" (the copy)");
    // Each session selects `store` (answered from the copy or not), adds and, when asked,
    // checks out; then it commits, or rolls back when `commit` is false.
    let session = |seq: u32, store: Uuid, copy: bool, checkout: bool, commit: bool| {
        let (actions, fx) = (&actions, &fx);
        async move {
            let mut s = actions
                .open_session(info("agent_001", fx.user1, seq))
                .await
                .unwrap();
            let selected = s.select_store(step(seq, 0), store).await.unwrap();
            assert_eq!(selected.store.id, store);
            assert_eq!(from_copy(&selected.store.name), copy, "session {seq}");
            assert!(!selected.cart_cleared);
            s.add_to_cart(step(seq, 1), fx.chips, 1).await.unwrap();
            if checkout {
                let order = s.checkout(step(seq, 2)).await.unwrap();
                assert_eq!(order.order.store_id, Some(store));
            }
            if commit {
                s.close(&closing()).await.unwrap();
            }
        }
    };
    session(0, fx.store_a, false, false, true).await;
    session(1, fx.store_a, true, true, true).await;
    session(2, fx.store_b, false, false, true).await;
    session(3, fx.store_a, false, false, true).await;
    // Switched to B, then rolled back: the database still says A, and so does the memory.
    session(4, fx.store_b, false, false, false).await;
    session(5, fx.store_a, true, false, true).await;
    let tx = t.db.read().await.unwrap();
    let c = tx.codec();
    let selection = tx
        .query_one(
            "SELECT store_id FROM sim_user_stores WHERE user_id = $1",
            vec![c.uuid(fx.user1)],
        )
        .await
        .unwrap()
        .uuid("store_id")
        .unwrap();
    let cart_rows = tx
        .query_one(
            "SELECT COUNT(*) AS n FROM cart_items WHERE user_id = $1",
            vec![c.uuid(fx.user1)],
        )
        .await
        .unwrap()
        .i64("n")
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!((selection, cart_rows), (fx.store_a, 0));
    // Every selection counts as a request, wherever it was answered.
    assert_eq!(metrics.outcome_count(Endpoint::SelectStore, Outcome::Ok), 6);
}

async fn http_database_outage_waits_for_the_database(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let crate::app::TestApp {
        t,
        server,
        fx,
        base,
        ..
    } = app;
    let addr = server.local_addr();
    let metrics = Arc::new(Metrics::new());
    let actions = HttpActions::new(
        fast_config(&base),
        metrics.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    let mut s = actions.session(info("agent_001", fx.user1, 0)).unwrap();
    s.select_store(step(0, 0), fx.store_a).await.unwrap();
    // The server's pool closes: it answers 503 database_unavailable.
    t.db.clone().close().await;
    let fx2 = fx.clone();
    let rest = tokio::spawn(async move {
        s.add_to_cart(step(0, 1), fx2.cola, 1).await?;
        s.checkout(step(0, 2)).await
    });
    let mut waited = 0;
    while actions.outage().is_none() {
        assert!(waited < 100, "no outage detected");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    assert!(
        actions
            .outage()
            .unwrap()
            .reason
            .contains("database_unavailable"),
        "{:?}",
        actions.outage()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rest.is_finished());
    // The database comes back (a new server process with a fresh pool on the same port).
    server.shutdown().await.unwrap();
    let db = Db::connect(&DbConfig::new(t.url.clone())).await.unwrap();
    let mut config = test_config();
    config.addr = addr;
    let server = server::start(db.clone(), config).await.unwrap();
    let order = tokio::time::timeout(Duration::from_secs(20), rest)
        .await
        .expect("the session resumes after the outage")
        .unwrap()
        .unwrap();
    assert_eq!(order.order.item_count, 1);
    assert!(actions.outage().is_none());
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM orders").await, 1);
    // 503s of an outage are recorded but spend no retry budget and never open a breaker.
    assert!(metrics.outcome_count(Endpoint::AddToCart, Outcome::Api5xx) >= 1);
    assert!(
        actions
            .breaker_states()
            .iter()
            .all(|(_, s)| *s == BreakerState::Closed)
    );
    server.shutdown().await.unwrap();
}

async fn inprocess_database_error_rolls_back_the_session(t: TestDb) {
    let fx = seed(&t.db).await;
    // A table the checkout needs is missing: a database error that is not an outage.
    let tx = t.db.write().await.unwrap();
    tx.exec_unprepared("ALTER TABLE order_items RENAME TO order_items_gone")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for mode in [TxMode::PerSession, TxMode::PerStep] {
        let metrics = Arc::new(Metrics::new());
        let actions = InProcessActions::new(
            t.db.clone(),
            InProcessConfig {
                shop: test_config().shop,
                tx_mode: mode,
                ..Default::default()
            },
            metrics.clone(),
            CancellationToken::new(),
        )
        .unwrap();
        let seq = if mode == TxMode::PerSession { 0 } else { 1 };
        let mut s = actions
            .open_session(info("agent_001", fx.user1, seq))
            .await
            .unwrap();
        s.select_store(step(seq, 0), fx.store_a).await.unwrap();
        // A rejection keeps the session usable.
        let r = s.checkout(step(seq, 1)).await;
        assert!(matches!(r, Err(ActionError::Rejected { .. })), "{r:?}");
        s.add_to_cart(step(seq, 2), fx.chips, 2).await.unwrap();
        let r = s.checkout(step(seq, 3)).await;
        assert!(
            matches!(
                r,
                Err(ActionError::Failed {
                    class: Outcome::Db,
                    ..
                })
            ),
            "{mode:?}: {r:?}"
        );
        assert_eq!(metrics.outcome_count(Endpoint::Checkout, Outcome::Db), 1);
        let later = s.cart_summary(step(seq, 4)).await;
        s.close(&closing()).await.unwrap();
        let lines = count(&t.db, "SELECT COUNT(*) AS n FROM cart_items").await;
        let sessions = count(&t.db, "SELECT COUNT(*) AS n FROM shopping_sessions").await;
        match mode {
            TxMode::PerSession => {
                // The whole session was rolled back, and it stays failed.
                assert!(
                    matches!(
                        later,
                        Err(ActionError::Failed {
                            class: Outcome::Db,
                            ..
                        })
                    ),
                    "{later:?}"
                );
                assert_eq!((lines, sessions), (0, 0));
            }
            TxMode::PerStep => {
                // Earlier steps were committed; the session goes on.
                assert!(later.is_ok(), "{later:?}");
                assert_eq!((lines, sessions), (1, 1));
            }
        }
    }
}

async fn http_scaling_plan_paths_work(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let mut config = fast_config(&app.base);
    config.paths.add_to_cart = "/api/cart/add".into();
    config.paths.checkout = "/api/orders/checkout".into();
    config.paths.refresh_offers = "/api/offers/assign".into();
    let actions =
        HttpActions::new(config, Arc::new(Metrics::new()), CancellationToken::new()).unwrap();
    let mut s = actions
        .open_session(info("agent_002", app.fx.user2, 0))
        .await
        .unwrap();
    let order = shop(s.as_mut(), &app.fx, 0, 0).await.unwrap();
    s.close(&closing()).await.unwrap();
    assert_eq!(order.order.item_count, 3);
    assert_eq!(
        count(&app.t.db, "SELECT COUNT(*) AS n FROM orders").await,
        1
    );
}

/// What a fake API saw of one request.
#[derive(Debug, Clone, Default)]
struct Seen {
    auth: String,
    sim_time: String,
    session: String,
    key: Option<String>,
}

/// A fake API that records headers: `PUT /api/user/store` answers a valid view,
/// `GET /api/cart/summary` an unparseable one.
async fn fake_api() -> (String, Arc<parking_lot::Mutex<Vec<Seen>>>) {
    use axum::http::HeaderMap;
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = |seen: Arc<parking_lot::Mutex<Vec<Seen>>>, h: &HeaderMap| {
        let get = |n: &str| {
            h.get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        seen.lock().push(Seen {
            auth: get("authorization"),
            sim_time: get("x-sim-time"),
            session: get("x-shopping-session-id"),
            key: h
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap().to_string()),
        });
    };
    let (s1, s2) = (seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route(
            "/api/user/store",
            axum::routing::put(move |h: HeaderMap| async move {
                record(s1, &h);
                axum::Json(serde_json::json!({
                    "success": true,
                    "store": { "id": Uuid::nil(), "name": "Fake" },
                    "cart_cleared": false
                }))
            }),
        )
        .route(
            "/api/cart/summary",
            axum::routing::get(move |h: HeaderMap| async move {
                record(s2, &h);
                axum::Json(serde_json::json!({ "unexpected": 1 }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

#[tokio::test]
async fn jwt_auth_and_headers_are_sent_and_bad_views_fail_clearly() {
    let (base, seen) = fake_api().await;
    let mut config = fast_config(&base);
    config.auth = shopsim::sim::actions::Auth::jwt("sim-secret");
    let metrics = Arc::new(Metrics::new());
    let actions = HttpActions::new(config, metrics.clone(), CancellationToken::new()).unwrap();
    let user = Uuid::from_u128(42);
    let session = info("agent_007", user, 0);
    let mut s = actions.session(session.clone()).unwrap();
    let r = s.select_store(step(0, 0), Uuid::nil()).await.unwrap();
    assert_eq!(r.store.name, "Fake");
    let bad = s.cart_summary(step(0, 1)).await;
    assert!(
        matches!(bad, Err(ActionError::Failed { class: Outcome::Other4xx, attempts: 1, ref reason })
            if reason.contains("unparseable response from cart_summary")),
        "{bad:?}"
    );
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 2);
    let token = seen[0].auth.strip_prefix("Bearer ").unwrap();
    let claims = shopsim::sim::actions::jwt::decode(token, b"sim-secret").unwrap();
    assert_eq!(claims.sub, user);
    assert_eq!(
        (claims.aud.as_str(), claims.role.as_str()),
        ("authenticated", "authenticated")
    );
    assert_eq!(claims.exp - claims.iat, 3600);
    assert!((claims.iat - Utc::now().timestamp()).abs() < 60);
    // The token is cached for the agent.
    assert_eq!(seen[1].auth, seen[0].auth);
    assert_eq!(seen[0].sim_time, "2026-01-05T09:00:00Z");
    assert_eq!(seen[1].sim_time, "2026-01-05T09:00:30Z");
    assert_eq!(seen[0].session, session.session_id.to_string());
    // Writes carry the step's key; reads none.
    assert_eq!(
        seen[0].key.as_deref(),
        Some(session.idempotency_key(step(0, 0)).as_str())
    );
    assert_eq!(
        seen[0].key.as_deref(),
        Some("run-test/agent_007/2026-01-05/0/0")
    );
    assert_eq!(seen[1].key, None);
    assert_eq!(
        metrics.outcome_count(Endpoint::CartSummary, Outcome::Other4xx),
        1
    );
}

/// PostgreSQL only: the server can kill the session's connection mid-transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inprocess_session_is_redone_after_its_connection_dies() {
    let Some(t) = TestDb::postgres().await else {
        return;
    };
    let fx = seed(&t.db).await;
    let metrics = Arc::new(Metrics::new());
    let actions = InProcessActions::new(
        t.db.clone(),
        InProcessConfig {
            shop: test_config().shop,
            tx_mode: TxMode::PerSession,
            outage: shopsim::sim::actions::OutageConfig {
                probe_initial: Duration::from_millis(20),
                probe_max: Duration::from_millis(200),
                max: None,
            },
            fence: None,
            catalog: None,
        },
        metrics.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    let mut s = actions
        .open_session(info("agent_001", fx.user1, 0))
        .await
        .unwrap();
    s.select_store(step(0, 0), fx.store_a).await.unwrap();
    s.add_to_cart(step(0, 1), fx.chips, 2).await.unwrap();
    s.view_product(step(0, 2), fx.cola).await.unwrap();

    let admin = Db::connect(&DbConfig::new(t.direct_url.clone()))
        .await
        .unwrap();
    let tx = admin.write().await.unwrap();
    let killed = tx
        .query(
            "SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            vec![],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(!killed.is_empty());

    s.add_to_cart(step(0, 3), fx.cola, 1).await.unwrap();
    let order = s.checkout(step(0, 4)).await.unwrap();
    s.close(&closing()).await.unwrap();
    assert_eq!(order.order.item_count, 3);
    assert!(actions.outage().is_none());
    assert!(metrics.outcome_count(Endpoint::AddToCart, Outcome::Db) >= 1);
    let db = &t.db;
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM orders").await, 1);
    // The redone steps wrote their events once: add, view, add, checkout.
    assert_eq!(
        count(db, "SELECT COUNT(*) AS n FROM shopping_session_events").await,
        4
    );
    admin.close().await;
}

#[tokio::test]
async fn cancelling_during_an_outage_interrupts_the_step() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cancel = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let actions = HttpActions::new(
        fast_config(&format!("http://127.0.0.1:{port}/")),
        metrics.clone(),
        cancel.clone(),
    )
    .unwrap();
    assert_eq!(actions.base_url(), format!("http://127.0.0.1:{port}"));
    let mut s = actions
        .session(info("agent_001", Uuid::new_v4(), 0))
        .unwrap();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.cancel();
    });
    let r = s.cart_summary(step(0, 0)).await;
    assert!(matches!(r, Err(ActionError::Interrupted(_))), "{r:?}");
    let outage = actions.outage().expect("an outage is shown");
    assert!(!outage.reason.is_empty());
    assert_eq!(metrics.get(Counter::Retries), 1);
}

#[test]
fn a_bad_api_url_is_a_clear_error() {
    let e = HttpActions::new(
        HttpConfig::new("localhost:8080"),
        Arc::new(Metrics::new()),
        CancellationToken::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("localhost:8080") && e.contains("http://"), "{e}");
}

/// The report a test session closes with: an abandoned session, so in-process work commits.
fn closing() -> shopsim::sim::session::SessionReport {
    shopsim::sim::session::SessionReport {
        end: shopsim::sim::session::SessionEnd::Abandoned,
        steps: 0,
        offers_applied: 0,
        ended_at: chrono::Utc::now(),
        effects: Default::default(),
        recorded: false,
    }
}
