//! End-to-end runs of the simulation host (`shopsim run`'s library entry point): 372 agents for
//! 14 simulated days, as fast as possible, through HTTP to the embedded reference server and
//! in-process, on SQLite and PostgreSQL.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use shopsim::catalog::{CouponKind, DiscountType};
use shopsim::domain::coupon_discount;
use shopsim::money::Money;
use shopsim::sim::clock::TimeScale;
use shopsim::sim::records::{Format, export_run};
use shopsim::sim::run::{ActionsMode, AuthMode, RunResult, RunSettings, run};
use shopsim::store::{Db, DbConfig};
use tokio_util::sync::CancellationToken;

use crate::backend_tests;
use crate::support::{TestDb, assert_same_export, count, read_dir};

backend_tests!(
    full_run_http_matches_inprocess,
    a_second_run_of_the_same_days_places_its_own_orders
);

/// The settings of the end-to-end runs: 372 `grocery` agents, 14 days from 2024-01-01, `max`.
pub(crate) fn settings(run_id: &str, actions: ActionsMode, run_dir: &Path) -> RunSettings {
    RunSettings {
        run_id: run_id.into(),
        persona_set: "grocery".into(),
        behaviors: concat!(env!("CARGO_MANIFEST_DIR"), "/behaviors").into(),
        agents: 372,
        seed: 42,
        start: Some(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()),
        days: 14,
        until: None,
        timezone: "UTC".into(),
        time_scale: TimeScale::Max,
        concurrency: 50,
        ramp_up_hours: 0,
        actions,
        api_url: None,
        auth: AuthMode::Dev,
        run_dir: run_dir.into(),
        restock_level: 500,
        max_outage: std::time::Duration::from_secs(600),
        // Every simulated hour (as paced runs do): tests count intervals by the hour.
        checkpoint_every: std::time::Duration::ZERO,
        thresholds: Vec::new(),
        abort_on_threshold: false,
        metrics_addr: None,
        hot_reload: false,
        status_line: false,
        report: false,
        tui: false,
        sharding: Default::default(),
    }
}

/// Every order's totals follow the pricing rules from its items and the coupons it used.
async fn orders_follow_pricing(db: &Db) {
    let tx = db.read().await.unwrap();
    let items = tx
        .query("SELECT order_id, product_price, quantity, discount_amount, line_total FROM order_items", vec![])
        .await
        .unwrap();
    let mut lines: HashMap<uuid::Uuid, (Money, Money)> = HashMap::new();
    for r in &items {
        let (price, qty) = (
            r.money("product_price").unwrap(),
            r.i64("quantity").unwrap(),
        );
        let discount = r.money("discount_amount").unwrap();
        assert!(discount >= Money::ZERO && discount <= price * qty);
        assert_eq!(
            r.money("line_total").unwrap(),
            price * qty - discount,
            "line total = price × quantity − discount"
        );
        let e = lines.entry(r.uuid("order_id").unwrap()).or_default();
        e.0 += price * qty;
        e.1 += discount;
    }
    let fronts = tx
        .query(
            "SELECT uc.order_id, c.type, c.discount_type, c.discount_value, c.min_purchase_amount, c.max_discount \
             FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id WHERE uc.order_id IS NOT NULL AND c.type = 'frontstore'",
            vec![],
        )
        .await
        .unwrap();
    let front: HashMap<uuid::Uuid, shopsim::catalog::Coupon> = fronts
        .iter()
        .map(|r| {
            let c = shopsim::catalog::Coupon {
                id: uuid::Uuid::nil(),
                code: String::new(),
                kind: CouponKind::Frontstore,
                discount_details: String::new(),
                category_or_brand: None,
                discount_type: DiscountType::parse(&r.string("discount_type").unwrap()).unwrap(),
                discount_value: r.money("discount_value").unwrap(),
                min_purchase_amount: r.opt_money("min_purchase_amount").unwrap(),
                max_discount: r.opt_money("max_discount").unwrap(),
                expiration_date: None,
                is_active: true,
            };
            (r.uuid("order_id").unwrap(), c)
        })
        .collect();
    let orders = tx
        .query(
            "SELECT id, subtotal, discount_total, final_total FROM orders",
            vec![],
        )
        .await
        .unwrap();
    assert!(!orders.is_empty());
    for o in &orders {
        let id = o.uuid("id").unwrap();
        let (subtotal, line_discounts) = lines[&id];
        assert_eq!(
            o.money("subtotal").unwrap(),
            subtotal,
            "order {id}: subtotal = Σ price × quantity"
        );
        let frontstore = front.get(&id).map_or(Money::ZERO, |c| {
            coupon_discount(c, subtotal - line_discounts)
        });
        let discount = line_discounts + frontstore;
        assert_eq!(
            o.money("discount_total").unwrap(),
            discount,
            "order {id}: discounts = lines + frontstore"
        );
        assert_eq!(
            o.money("final_total").unwrap(),
            (subtotal - discount).max(Money::ZERO),
            "order {id}: final total"
        );
    }
    tx.commit().await.unwrap();
}

/// No user has two shopping sessions at once.
async fn sessions_never_overlap(db: &Db) {
    let tx = db.read().await.unwrap();
    let rows = tx
        .query("SELECT user_id, started_at, ended_at FROM shopping_sessions ORDER BY user_id, started_at", vec![])
        .await
        .unwrap();
    let mut last: Option<(uuid::Uuid, DateTime<Utc>)> = None;
    for r in &rows {
        let (user, start) = (r.uuid("user_id").unwrap(), r.ts("started_at").unwrap());
        let end = r
            .opt_ts("ended_at")
            .unwrap()
            .expect("every simulated session ended");
        assert!(end >= start);
        if let Some((u, prev_end)) = last
            && u == user
        {
            assert!(
                start > prev_end,
                "user {user}: a session started at {start} before the previous ended at {prev_end}"
            );
        }
        last = Some((user, end));
    }
    tx.commit().await.unwrap();
}

async fn summary_matches_database(db: &Db, r: &RunResult) {
    let s = &r.summary;
    assert_eq!(
        s.orders,
        count(db, "SELECT COUNT(*) AS n FROM orders").await
    );
    assert_eq!(
        s.sessions,
        count(db, "SELECT COUNT(*) AS n FROM shopping_sessions").await
    );
    assert_eq!(
        s.abandoned,
        count(
            db,
            "SELECT COUNT(*) AS n FROM shopping_sessions WHERE status = 'abandoned'"
        )
        .await
    );
    assert_eq!(
        s.events,
        count(db, "SELECT COUNT(*) AS n FROM shopping_session_events").await
    );
    assert_eq!(s.agent_days, 372 * 14);
    assert_eq!(
        s.sessions_failed, 0,
        "no session may fail against a healthy server"
    );
    assert!(r.folder.join("summary.md").exists() && r.folder.join("metadata.json").exists());
}

async fn full_run_http_matches_inprocess(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let http = run(
        t.db.clone(),
        settings("e2e-http", ActionsMode::Http, dir.path()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(!http.stopped);
    assert!(http.summary.orders > 0);
    orders_follow_pricing(&t.db).await;
    sessions_never_overlap(&t.db).await;
    summary_matches_database(&t.db, &http).await;
    export_run(&t.db, "e2e-http", Format::Csv, &dir.path().join("http"))
        .await
        .unwrap();

    // The same run in-process on a fresh database of the same backend.
    let other = match t.backend() {
        shopsim::store::Backend::Sqlite => TestDb::sqlite().await,
        shopsim::store::Backend::Postgres => TestDb::postgres().await.unwrap(),
    };
    let db = Db::connect(&DbConfig::new(other.url.clone()))
        .await
        .unwrap();
    let inproc = run(
        db.clone(),
        settings("e2e-inprocess", ActionsMode::Inprocess, dir.path()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    summary_matches_database(&db, &inproc).await;
    export_run(
        &db,
        "e2e-inprocess",
        Format::Csv,
        &dir.path().join("inprocess"),
    )
    .await
    .unwrap();
    let (a, b) = (
        read_dir(&dir.path().join("http")),
        read_dir(&dir.path().join("inprocess")),
    );
    assert_eq!(a.len(), 6, "six dataset files");
    assert_same_export(&a, &b, "HTTP vs in-process");
}

/// The same run again (same seed and days, another run id) on the database the first one
/// wrote: its agents shop the same days again, from the state the first left (stock, wallets),
/// and every checkout places an order of its own — none collides with the first run's orders
/// (an order's id once came from its user and time alone, so the second run's checkouts at the
/// first run's instants failed on the orders' key, and over HTTP the retries and the circuit
/// breaker slowed the whole run to a crawl).
async fn a_second_run_of_the_same_days_places_its_own_orders(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let mut orders = 0;
    for run_id in ["again-1", "again-2"] {
        let r = run(
            t.db.clone(),
            RunSettings {
                agents: 120,
                days: 4,
                ..settings(run_id, ActionsMode::Inprocess, dir.path())
            },
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(!r.stopped);
        assert_eq!(
            r.summary.sessions_failed, 0,
            "{run_id}: no session may fail"
        );
        assert!(r.summary.orders > 0, "{run_id}");
        orders += r.summary.orders;
    }
    assert_eq!(
        count(&t.db, "SELECT COUNT(*) AS n FROM orders").await,
        orders,
        "both runs' orders are in the database"
    );
}

/// A wrong API URL or persona set is a clear error before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_fail_fast_with_what_to_fix() {
    let t = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = settings("bad-url", ActionsMode::Http, dir.path());
    s.api_url = Some(format!("http://127.0.0.1:{port}"));
    let err = run(t.db.clone(), s, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not reachable") && err.contains("--api-url"),
        "{err}"
    );
    let mut s = settings("bad-set", ActionsMode::Inprocess, dir.path());
    s.persona_set = "no_such_set".into();
    let err = format!(
        "{:#}",
        run(t.db.clone(), s, CancellationToken::new())
            .await
            .unwrap_err()
    );
    assert!(
        err.contains("no_such_set") && err.contains("grocery"),
        "{err}"
    );
    assert_eq!(
        count(&t.db, "SELECT COUNT(*) AS n FROM sim_runs").await,
        0,
        "nothing recorded for refused runs"
    );
}
