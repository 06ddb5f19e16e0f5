//! The domain layer on both backends: the whole shopping flow with its session events, stock
//! under concurrent checkouts, restocking, and the offer engine's reproducibility.

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use std::sync::Arc;

use shopsim::domain::{
    Ctx, DomainError, HeldOutcome, KnownCatalog, ProductFilter, RejectCode, SessionCart,
    SessionEvents, Shop, ShopConfig, order_id, price_cart,
};
use shopsim::ids;
use shopsim::money::Money;
use shopsim::store::{Backend, Db, Tx};

use crate::backend_tests;
use crate::support::TestDb;

backend_tests!(
    shopping_flow_records_events_and_orders,
    shopping_flow_with_held_events,
    shopping_flow_with_deferred_session_row,
    shopping_flow_with_a_session_cart,
    shopping_flow_with_expected_adds,
    expected_adds_are_read_at_the_first_and_checkout_takes_stock,
    a_cart_left_in_the_database_keeps_the_session_on_it,
    a_refresh_revalidates_offers_applied_to_a_session_cart,
    applications_after_eligibility_answer_as_the_database,
    held_events_roll_back_with_a_failed_checkout,
    a_deferred_session_row_numbers_events_from_any_guess,
    a_store_hint_changes_nothing_but_round_trips,
    concurrent_checkouts_never_oversell,
    restock_runs_once_per_day,
    offer_draws_do_not_depend_on_refresh_order,
    offer_exclusion_window_holds_across_cycles,
    holdout_users_get_no_offers,
    refresh_that_is_not_due_changes_nothing,
    lapsed_offers_stop_counting_and_refused_writes_leave_nothing,
);

// ---- fixture ---------------------------------------------------------------------------

const S1: Uuid = Uuid::from_u128(0x51);
const S2: Uuid = Uuid::from_u128(0x52);
const P1: Uuid = Uuid::from_u128(0x101); // Vitamins, Acme, 10.00
const P2: Uuid = Uuid::from_u128(0x102); // Snacks, Crunch, 3.50
const P3: Uuid = Uuid::from_u128(0x103); // Snacks, Crunch, 2.25
const P4: Uuid = Uuid::from_u128(0x104); // Dairy, MooCo, 4.99
const P5: Uuid = Uuid::from_u128(0x105); // Bakery, no brand, 2.00 (1 unit in S1)
const F1: Uuid = Uuid::from_u128(0xf1); // frontstore fixed 2.00, min 15.00
const F2: Uuid = Uuid::from_u128(0xf2); // frontstore 10% cap 3.00
const F3: Uuid = Uuid::from_u128(0xf3); // frontstore fixed 1.00
const F4: Uuid = Uuid::from_u128(0xf4); // frontstore free shipping
const C1: Uuid = Uuid::from_u128(0xc1); // category Vitamins 20%
const C2: Uuid = Uuid::from_u128(0xc2); // category snacks fixed 1.00
const C3: Uuid = Uuid::from_u128(0xc3); // category Dairy bogo 100
const C4: Uuid = Uuid::from_u128(0xc4); // category Bakery 50%, min 5.00
const B1: Uuid = Uuid::from_u128(0xb1); // brand Crunch fixed 0.50
const B2: Uuid = Uuid::from_u128(0xb2); // brand ACME 5%
const B3: Uuid = Uuid::from_u128(0xb3); // brand MooCo fixed 1.00
const B4: Uuid = Uuid::from_u128(0xb4); // brand Zed fixed 1.00
const U1: Uuid = Uuid::from_u128(0xa1);
const U2: Uuid = Uuid::from_u128(0xa2);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
}

fn ctx(user: Uuid, now: DateTime<Utc>, session: Option<Uuid>) -> Ctx {
    Ctx {
        user_id: user,
        now,
        session_id: session,
        simulated: true,
        events: None,
        cart: None,
    }
}

async fn add_user(tx: &Tx, user: Uuid, agent: &str) {
    let c = tx.codec();
    tx.exec(
        "INSERT INTO users (id, email, full_name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        vec![
            c.uuid(user),
            format!("{agent}@example.test").into(),
            agent.to_string().into(),
            c.ts(t0()),
        ],
    )
    .await
    .unwrap();
    tx.exec(
        "INSERT INTO agents (id, agent_id, user_id, is_active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
        vec![
            c.uuid(ids::child_uuid(&user, "agent", agent)),
            agent.to_string().into(),
            c.uuid(user),
            true.into(),
            c.ts(t0()),
        ],
    )
    .await
    .unwrap();
}

async fn fixture(db: &Db) {
    let tx = db.write().await.unwrap();
    let c = tx.codec();
    for (id, name) in [(S1, "Downtown"), (S2, "Uptown")] {
        tx.exec(
            "INSERT INTO stores (id, name) VALUES ($1, $2)",
            vec![c.uuid(id), name.into()],
        )
        .await
        .unwrap();
    }
    let products: [(Uuid, &str, &str, Option<&str>, i64); 5] = [
        (P1, "Multivitamin", "Vitamins", Some("Acme"), 1000),
        (P2, "Potato Chips", "Snacks", Some("Crunch"), 350),
        (P3, "Pretzels", "Snacks", Some("Crunch"), 225),
        (P4, "Milk", "Dairy", Some("MooCo"), 499),
        (P5, "Bagel", "Bakery", None, 200),
    ];
    for (n, (id, name, category, brand, price)) in products.iter().enumerate() {
        tx.exec(
            "INSERT INTO products (id, name, description, price, rating, review_count, category, \
               brand, in_stock, sku) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            vec![
                c.uuid(*id),
                name.to_string().into(),
                format!("{name} description").into(),
                c.money(Money(*price)),
                4.5f64.into(),
                10i64.into(),
                category.to_string().into(),
                brand.map(str::to_string).into(),
                true.into(),
                format!("SKU-{n}").into(),
            ],
        )
        .await
        .unwrap();
        for (store, qty) in [(S1, if *id == P5 { 1 } else { 10 }), (S2, 5i64)] {
            tx.exec(
                "INSERT INTO store_inventory (store_id, product_id, quantity) VALUES ($1, $2, $3)",
                vec![c.uuid(store), c.uuid(*id), qty.into()],
            )
            .await
            .unwrap();
        }
    }
    type CouponRow<'a> = (
        Uuid,
        &'a str,
        Option<&'a str>,
        &'a str,
        i64,
        Option<i64>,
        Option<i64>,
    );
    let coupons: [CouponRow; 12] = [
        (F1, "frontstore", None, "fixed", 200, Some(1500), None),
        (F2, "frontstore", None, "percent", 1000, None, Some(300)),
        (F3, "frontstore", None, "fixed", 100, None, None),
        (F4, "frontstore", None, "free_shipping", 0, None, None),
        (
            C1,
            "category",
            Some("Vitamins"),
            "percent",
            2000,
            None,
            None,
        ),
        (C2, "category", Some("snacks"), "fixed", 100, None, None),
        (C3, "category", Some("Dairy"), "bogo", 10000, None, None),
        (
            C4,
            "category",
            Some("Bakery"),
            "percent",
            5000,
            Some(500),
            None,
        ),
        (B1, "brand", Some("Crunch"), "fixed", 50, None, None),
        (B2, "brand", Some("ACME"), "percent", 500, None, None),
        (B3, "brand", Some("MooCo"), "fixed", 100, None, None),
        (B4, "brand", Some("Zed"), "fixed", 100, None, None),
    ];
    for (id, kind, target, ty, value, min, cap) in coupons {
        tx.exec(
            "INSERT INTO coupons (id, type, discount_details, category_or_brand, discount_type, \
               discount_value, min_purchase_amount, max_discount, expiration_date, is_active, code) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            vec![
                c.uuid(id),
                kind.into(),
                format!("{ty} {value}").into(),
                target.map(str::to_string).into(),
                ty.into(),
                c.money(Money(value)),
                c.opt_money(min.map(Money)),
                c.opt_money(cap.map(Money)),
                c.opt_ts(None),
                true.into(),
                format!("CODE-{}", id.as_u128()).into(),
            ],
        )
        .await
        .unwrap();
    }
    add_user(&tx, U1, "agent_001").await;
    add_user(&tx, U2, "agent_002").await;
    tx.commit().await.unwrap();
}

/// Puts offers straight into a wallet: (coupon, eligible_until).
async fn give_offers(db: &Db, user: Uuid, offers: &[(Uuid, DateTime<Utc>)]) {
    let tx = db.write().await.unwrap();
    let c = tx.codec();
    for (coupon, until) in offers {
        tx.exec(
            "INSERT INTO user_coupons (user_id, coupon_id, assigned_at, eligible_until, status, \
               is_simulation) VALUES ($1, $2, $3, $4, 'active', $5)",
            vec![
                c.uuid(user),
                c.uuid(*coupon),
                c.ts(t0() - Duration::days(1)),
                c.ts(*until),
                true.into(),
            ],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn count(db: &Db, sql: &str) -> i64 {
    let tx = db.read().await.unwrap();
    let n = tx.query_one(sql, vec![]).await.unwrap().i64("n").unwrap();
    tx.commit().await.unwrap();
    n
}

async fn stock(db: &Db, store: Uuid, product: Uuid) -> i64 {
    let tx = db.read().await.unwrap();
    let c = tx.codec();
    let n = tx
        .query_one(
            "SELECT quantity FROM store_inventory WHERE store_id = $1 AND product_id = $2",
            vec![c.uuid(store), c.uuid(product)],
        )
        .await
        .unwrap()
        .i64("quantity")
        .unwrap();
    tx.commit().await.unwrap();
    n
}

fn reject_code(e: &DomainError) -> Option<RejectCode> {
    match e {
        DomainError::Rejected { code, .. } => Some(*code),
        _ => None,
    }
}

fn invalid_code(e: &DomainError) -> Option<&'static str> {
    match e {
        DomainError::Invalid { code, .. } | DomainError::NotFound { code, .. } => Some(*code),
        _ => None,
    }
}

// ---- the whole flow ------------------------------------------------------------------

async fn shopping_flow_records_events_and_orders(t: TestDb) {
    shopping_flow(t, None, None).await;
}

/// The same flow with the session's events held back until the end of its transaction (as an
/// in-process session does): the same rows in the end.
async fn shopping_flow_with_held_events(t: TestDb) {
    shopping_flow(t, Some(SessionEvents::new()), None).await;
}

/// The same flow with the session row held back too (as a reference-server request on
/// PostgreSQL does; on SQLite the row is written at the first event): the same rows in the end.
async fn shopping_flow_with_deferred_session_row(t: TestDb) {
    shopping_flow(t, Some(SessionEvents::deferred()), None).await;
}

/// The same flow with the cart held in memory, as an in-process session that is one
/// transaction does: the same answers, events, order, stock and wallet, and no cart row
/// written at any point.
async fn shopping_flow_with_a_session_cart(t: TestDb) {
    shopping_flow(t, Some(SessionEvents::deferred()), Some(SessionCart::new())).await;
}

async fn shopping_flow_with_expected_adds(t: TestDb) {
    // The flow's first add reads these (one unknown, one short of stock, one never added)
    // together; its answers are the same.
    let cart = SessionCart::new();
    cart.expect(vec![P5, Uuid::from_u128(7), P1, P4]);
    shopping_flow(t, Some(SessionEvents::deferred()), Some(cart)).await;
}

async fn shopping_flow(t: TestDb, held: Option<SessionEvents>, in_memory: Option<SessionCart>) {
    let db = &t.db;
    fixture(db).await;
    let shop = Shop::new(ShopConfig::default());
    let until = t0() + Duration::days(14);
    give_offers(
        db,
        U1,
        &[
            (C1, until),
            (C2, until),
            (F1, until),
            (C4, until),
            (B4, until),
        ],
    )
    .await;
    // An offer whose window closed: in the wallet, but not usable.
    give_offers(db, U1, &[(F2, t0() - Duration::hours(1))]).await;

    let session = Uuid::from_u128(0x5e55);
    let now = |minutes: i64| t0() + Duration::minutes(minutes);
    let c = |m| Ctx {
        events: held.clone(),
        cart: in_memory.clone(),
        ..ctx(U1, now(m), Some(session))
    };
    let tx = db.write().await.unwrap();

    assert_eq!(
        shop.user_for_agent(&tx, "agent_001").await.unwrap(),
        Some(U1)
    );
    assert_eq!(shop.user_for_agent(&tx, "agent_999").await.unwrap(), None);
    let stores = shop.list_stores(&tx).await.unwrap();
    assert_eq!(stores.count, 2);
    assert_eq!(stores.stores[0].name, "Downtown");

    // No store yet: rejected, and nothing (not even the session) is written.
    let e = shop.add_to_cart(&tx, &c(0), P1, 1).await.unwrap_err();
    assert_eq!(reject_code(&e), Some(RejectCode::NoStoreSelected));
    let e = shop
        .select_store(&tx, &c(0), Uuid::from_u128(9))
        .await
        .unwrap_err();
    assert_eq!(invalid_code(&e), Some("store_not_found"));
    let sel = shop.select_store(&tx, &c(0), S1).await.unwrap();
    assert!(sel.success && !sel.cart_cleared);
    assert_eq!(sel.store.name, "Downtown");

    let page = shop
        .list_products(
            &tx,
            &ProductFilter {
                category: Some("SNACKS".into()),
                brand: None,
                limit: 1,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!((page.total, page.products.len()), (2, 1));
    assert_eq!(page.products[0].name, "Potato Chips");
    let page = shop
        .list_products(
            &tx,
            &ProductFilter {
                category: None,
                brand: Some("crunch".into()),
                limit: 10,
                offset: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!((page.total, page.products.len()), (2, 1));
    assert_eq!(page.products[0].name, "Pretzels");
    for (limit, offset) in [(0, 0), (501, 0), (10, -1)] {
        let e = shop
            .list_products(
                &tx,
                &ProductFilter {
                    limit,
                    offset,
                    ..ProductFilter::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, DomainError::Invalid { .. }), "{e}");
    }

    let detail = shop.get_product(&tx, &c(1), P1).await.unwrap();
    assert_eq!(detail.inventory.available, 10);
    assert_eq!(detail.inventory.store_id, Some(S1));
    assert_eq!(detail.product.sku, "SKU-0");
    // Without a selected store, stock is summed over stores.
    let other = shop
        .get_product(&tx, &ctx(U2, now(1), None), P1)
        .await
        .unwrap();
    assert_eq!(
        (other.inventory.available, other.inventory.store_id),
        (15, None)
    );
    let e = shop
        .get_product(&tx, &c(1), Uuid::from_u128(7))
        .await
        .unwrap_err();
    assert_eq!(invalid_code(&e), Some("product_not_found"));

    shop.add_to_cart(&tx, &c(2), P1, 2).await.unwrap();
    shop.add_to_cart(&tx, &c(3), P2, 1).await.unwrap();
    let added = shop.add_to_cart(&tx, &c(4), P2, 2).await.unwrap();
    assert_eq!(added.cart_item.quantity, 3);
    assert_eq!(added.cart_item.line_total, Money(1050));
    for (product, qty, code) in [
        (P1, 0, "invalid_quantity"),
        (P1, 100, "invalid_quantity"),
        (Uuid::from_u128(7), 1, "product_not_found"),
    ] {
        let e = shop
            .add_to_cart(&tx, &c(5), product, qty)
            .await
            .unwrap_err();
        assert_eq!(invalid_code(&e), Some(code));
    }
    let e = shop.add_to_cart(&tx, &c(5), P5, 2).await.unwrap_err();
    assert_eq!(reject_code(&e), Some(RejectCode::InsufficientInventory));
    // 10 in stock, 2 in the cart: 9 more is too many.
    let e = shop.add_to_cart(&tx, &c(5), P1, 9).await.unwrap_err();
    assert_eq!(reject_code(&e), Some(RejectCode::InsufficientInventory));

    let cart = shop.get_cart(&tx, &c(5)).await.unwrap();
    assert_eq!(
        cart.items.iter().map(|i| i.product_id).collect::<Vec<_>>(),
        vec![P1, P2],
        "lines in the order first added"
    );
    assert_eq!(cart.item_count, 5);

    let eligible = shop.eligible_coupons(&tx, &c(6)).await.unwrap();
    let mut ok: Vec<Uuid> = eligible.eligible.iter().map(|c| c.id).collect();
    ok.sort();
    assert_eq!(ok, vec![C1, C2, F1]);
    let mut not: Vec<(Uuid, String)> = eligible
        .ineligible
        .iter()
        .map(|i| (i.coupon.id, i.reason.clone()))
        .collect();
    not.sort();
    assert_eq!(
        not,
        vec![
            (B4, "no matching items in cart".to_string()),
            (C4, "no matching items in cart".to_string())
        ]
    );
    assert_eq!(eligible.cart_subtotal, Money(3050));

    for coupon in [F2, Uuid::from_u128(3), B1] {
        let e = shop.apply_coupon(&tx, &c(7), coupon).await.unwrap_err();
        assert_eq!(
            reject_code(&e),
            Some(RejectCode::OfferNotInWallet),
            "{coupon}"
        );
    }
    shop.apply_coupon(&tx, &c(7), C1).await.unwrap();
    shop.apply_coupon(&tx, &c(7), C2).await.unwrap();
    shop.apply_coupon(&tx, &c(8), F1).await.unwrap();
    let again = shop.apply_coupon(&tx, &c(8), C1).await.unwrap();
    let in_database = |n: i64| if in_memory.is_some() { 0 } else { n };
    assert_eq!(
        count_in(&tx, "SELECT COUNT(*) AS n FROM cart_coupons").await,
        in_database(3)
    );
    assert_eq!(
        count_in(&tx, "SELECT COUNT(*) AS n FROM cart_items").await,
        in_database(2)
    );

    let summary = shop.cart_summary(&tx, &c(9)).await.unwrap();
    assert_eq!(summary, again.summary);
    // 20% of 20.00 = 4.00 on the vitamins, 1.00 off the snacks, then 2.00 off 25.50.
    assert_eq!(summary.subtotal, Money(3050));
    assert_eq!(summary.discount_total, Money(700));
    assert_eq!(summary.final_total, Money(2350));
    assert_eq!(summary.frontstore_coupon_id, Some(F1));
    let cart = shop.get_cart(&tx, &c(9)).await.unwrap();
    let lines: Vec<_> = cart.items.iter().map(|i| i.priced()).collect();
    assert_eq!(price_cart(&lines, &cart.coupons), summary);

    // Another user may not write into this session (written so far: held events go out).
    if let Some(held) = &held {
        shop.flush_session_events(&tx, session, held).await.unwrap();
    }
    let e = shop
        .get_product(&tx, &ctx(U2, now(9), Some(session)), P1)
        .await
        .unwrap_err();
    assert_eq!(invalid_code(&e), Some("session_user_mismatch"));

    let checkout = shop.checkout(&tx, &c(10)).await.unwrap();
    let order = checkout.order;
    assert_eq!(order.id, order_id(U1, Some(session), now(10)));
    assert_eq!(order.totals.subtotal, summary.subtotal);
    assert_eq!(order.totals.discount_total, summary.discount_total);
    assert_eq!(order.totals.final_total, summary.final_total);
    assert_eq!(order.item_count, 5);
    assert_eq!(order.shopping_session_id, Some(session));
    let e = shop.checkout(&tx, &c(11)).await.unwrap_err();
    assert_eq!(reject_code(&e), Some(RejectCode::EmptyCart));
    if let Some(held) = &held {
        shop.flush_session_events(&tx, session, held).await.unwrap();
    }
    tx.commit().await.unwrap();

    assert_eq!(stock(db, S1, P1).await, 8);
    assert_eq!(stock(db, S1, P2).await, 7);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM cart_items").await, 0);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM cart_coupons").await, 0);

    let tx = db.read().await.unwrap();
    let codec = tx.codec();
    // The order row carries the simulated time and the session.
    let row = tx
        .query_one(
            "SELECT created_at, final_total, is_simulated, shopping_session_id, status \
             FROM orders WHERE id = $1",
            vec![codec.uuid(order.id)],
        )
        .await
        .unwrap();
    assert_eq!(row.ts("created_at").unwrap(), now(10));
    assert_eq!(row.money("final_total").unwrap(), Money(2350));
    assert!(row.bool("is_simulated").unwrap());
    assert_eq!(row.string("status").unwrap(), "completed");
    // The offers that gave a discount are used by this order; the others stay active.
    let rows = tx
        .query(
            "SELECT coupon_id, status, order_id, redeemed_at FROM user_coupons \
             WHERE user_id = $1 ORDER BY coupon_id",
            vec![codec.uuid(U1)],
        )
        .await
        .unwrap();
    for r in &rows {
        let coupon = r.uuid("coupon_id").unwrap();
        let status = r.string("status").unwrap();
        if [C1, C2, F1].contains(&coupon) {
            assert_eq!(status, "used", "{coupon}");
            assert_eq!(r.opt_uuid("order_id").unwrap(), Some(order.id));
            assert_eq!(r.opt_ts("redeemed_at").unwrap(), Some(now(10)));
        } else {
            assert_eq!(status, "active", "{coupon}");
            assert_eq!(r.opt_uuid("order_id").unwrap(), None);
        }
    }
    // The session: completed at checkout time, with every event in sequence.
    let s = tx
        .query_one(
            "SELECT user_id, store_id, status, started_at, last_seen_at, ended_at, is_simulated \
             FROM shopping_sessions WHERE id = $1",
            vec![codec.uuid(session)],
        )
        .await
        .unwrap();
    assert_eq!(s.uuid("user_id").unwrap(), U1);
    assert_eq!(s.opt_uuid("store_id").unwrap(), Some(S1));
    assert_eq!(s.string("status").unwrap(), "completed");
    assert_eq!(s.ts("started_at").unwrap(), now(1));
    assert_eq!(s.opt_ts("last_seen_at").unwrap(), Some(now(10)));
    assert_eq!(s.opt_ts("ended_at").unwrap(), Some(now(10)));
    let expected = [
        ("view_product", 1),
        ("cart_add_item", 2),
        ("cart_add_item", 3),
        ("cart_add_item", 4),
        ("view_coupons", 6),
        ("coupon_apply", 7),
        ("coupon_apply", 7),
        ("coupon_apply", 8),
        ("coupon_apply", 8),
        ("checkout_complete", 10),
    ];
    let n = tx
        .query_one(
            "SELECT COUNT(*) AS n FROM shopping_session_events WHERE session_id = $1",
            vec![codec.uuid(session)],
        )
        .await
        .unwrap()
        .i64("n")
        .unwrap();
    assert_eq!(n, expected.len() as i64);
    for (seq, (event_type, minute)) in expected.iter().enumerate() {
        let id = ids::child_uuid(&session, "event", &(seq + 1).to_string());
        let e = tx
            .query_one(
                "SELECT event_type, payload, created_at, user_id, is_simulated \
                 FROM shopping_session_events WHERE id = $1",
                vec![codec.uuid(id)],
            )
            .await
            .unwrap();
        assert_eq!(
            e.string("event_type").unwrap(),
            *event_type,
            "event {}",
            seq + 1
        );
        assert_eq!(
            e.ts("created_at").unwrap(),
            now(*minute),
            "event {}",
            seq + 1
        );
        assert_eq!(e.uuid("user_id").unwrap(), U1);
        assert!(e.bool("is_simulated").unwrap());
        let payload = e.json("payload").unwrap();
        match *event_type {
            "view_product" => {
                assert_eq!(payload["sku"], "SKU-0");
                assert_eq!(payload["price"], 10.0);
            }
            "view_coupons" => {
                assert_eq!(payload["eligible"], 3);
                assert_eq!(payload["ineligible"], 2);
                let listed = |key: &str| -> Vec<Uuid> {
                    payload[key]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().parse().unwrap())
                        .collect()
                };
                // The same split as the response: which offers the shopper was shown.
                let (mut eligible, mut ineligible) =
                    (listed("eligible_ids"), listed("ineligible_ids"));
                eligible.sort();
                ineligible.sort();
                assert_eq!(eligible, vec![C1, C2, F1]);
                assert_eq!(ineligible, vec![B4, C4]);
            }
            "checkout_complete" => {
                assert_eq!(payload["order_id"], order.id.to_string());
                assert_eq!(payload["final_total"], 23.5);
                assert_eq!(payload["item_count"], 5);
            }
            _ => {}
        }
    }
    tx.commit().await.unwrap();

    // Order history, with items and the frontstore coupon.
    let tx = db.read().await.unwrap();
    let orders = shop
        .list_orders(&tx, &ctx(U1, now(20), None), 10, 0)
        .await
        .unwrap();
    assert_eq!(orders.total, 1);
    let listed = &orders.orders[0];
    assert_eq!(listed.id, order.id);
    assert_eq!(listed.created_at, now(10));
    assert_eq!(listed.frontstore_coupon_id, Some(F1));
    assert_eq!(listed.totals, order.totals);
    assert_eq!(listed.items.len(), 2);
    let p1 = listed.items.iter().find(|i| i.product_id == P1).unwrap();
    assert_eq!(
        (p1.applied_coupon_id, p1.discount_amount, p1.line_total),
        (Some(C1), Money(400), Money(1600))
    );
    tx.commit().await.unwrap();

    // Switching store empties a cart; clearing with a session abandons that session.
    let tx = db.write().await.unwrap();
    let later = ctx(U1, now(30), Some(Uuid::from_u128(0x5e56)));
    shop.add_to_cart(&tx, &later, P4, 1).await.unwrap();
    let switched = shop.select_store(&tx, &later, S2).await.unwrap();
    assert!(switched.cart_cleared);
    assert!(shop.get_cart(&tx, &later).await.unwrap().items.is_empty());
    shop.add_to_cart(&tx, &later, P4, 2).await.unwrap();
    let cleared = shop.clear_cart(&tx, &later).await.unwrap();
    assert_eq!((cleared.items_removed, cleared.coupons_removed), (1, 0));
    let s = tx
        .query_one(
            "SELECT status, ended_at FROM shopping_sessions WHERE id = $1",
            vec![codec.uuid(Uuid::from_u128(0x5e56))],
        )
        .await
        .unwrap();
    assert_eq!(s.string("status").unwrap(), "abandoned");
    assert_eq!(s.opt_ts("ended_at").unwrap(), Some(now(30)));
    tx.commit().await.unwrap();
}

/// A cart the database holds already (left by a paced run or the reference server) keeps a
/// session that has a session cart on the database's cart: its checkout includes those lines
/// and empties it, as the server's would. The next session finds it empty and keeps its cart in
/// memory, where a switch of store empties it as the database's switch does.
async fn a_cart_left_in_the_database_keeps_the_session_on_it(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let shop = Shop::new(ShopConfig::default());
    let tx = db.write().await.unwrap();
    let plain = ctx(U1, t0(), None);
    shop.select_store(&tx, &plain, S1).await.unwrap();
    shop.add_to_cart(&tx, &plain, P1, 1).await.unwrap();
    tx.commit().await.unwrap();

    let in_session = |session: u128, cart: &SessionCart, held: &SessionEvents, m: i64| Ctx {
        events: Some(held.clone()),
        cart: Some(cart.clone()),
        ..ctx(
            U1,
            t0() + Duration::minutes(m),
            Some(Uuid::from_u128(session)),
        )
    };
    let (cart, held) = (SessionCart::new(), SessionEvents::deferred());
    let c = |m| in_session(0x5e57, &cart, &held, m);
    let tx = db.write().await.unwrap();
    assert!(
        !shop
            .select_store(&tx, &c(1), S1)
            .await
            .unwrap()
            .cart_cleared
    );
    shop.add_to_cart(&tx, &c(2), P2, 2).await.unwrap();
    let lines = |view: shopsim::domain::CartView| {
        view.items
            .iter()
            .map(|i| (i.product_id, i.quantity))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        lines(shop.get_cart(&tx, &c(3)).await.unwrap()),
        [(P1, 1), (P2, 2)]
    );
    assert_eq!(
        count_in(&tx, "SELECT COUNT(*) AS n FROM cart_items").await,
        2
    );
    let order = shop.checkout(&tx, &c(4)).await.unwrap().order;
    assert_eq!(order.item_count, 3);
    shop.write_held(&tx, Uuid::from_u128(0x5e57), &held, 0, Vec::new())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM cart_items").await, 0);

    let (cart, held) = (SessionCart::new(), SessionEvents::deferred());
    let c = |m| in_session(0x5e58, &cart, &held, m);
    let tx = db.write().await.unwrap();
    shop.select_store(&tx, &c(10), S1).await.unwrap();
    shop.add_to_cart(&tx, &c(11), P2, 1).await.unwrap();
    shop.add_to_cart(&tx, &c(12), P2, 1).await.unwrap();
    assert_eq!(lines(shop.get_cart(&tx, &c(12)).await.unwrap()), [(P2, 2)]);
    assert_eq!(
        count_in(&tx, "SELECT COUNT(*) AS n FROM cart_items").await,
        0
    );
    // 10 of P2 in S1 at the start, 2 taken by the first order, 2 in this cart.
    let e = shop.add_to_cart(&tx, &c(13), P2, 7).await.unwrap_err();
    assert_eq!(reject_code(&e), Some(RejectCode::InsufficientInventory));
    assert!(
        shop.select_store(&tx, &c(14), S2)
            .await
            .unwrap()
            .cart_cleared
    );
    assert!(shop.get_cart(&tx, &c(14)).await.unwrap().items.is_empty());
    let cleared = shop.clear_cart(&tx, &c(15)).await.unwrap();
    assert_eq!((cleared.items_removed, cleared.coupons_removed), (0, 0));
    tx.commit().await.unwrap();
}

/// A session that expects to add P1 and P2 reads both at its first add; P2's stock is then the
/// store's at that moment. Stock another session takes meanwhile is not seen by the add, but the
/// checkout, which takes stock under locks, refuses the cart the store can no longer fill, and
/// without the expectation the add itself refuses.
async fn expected_adds_are_read_at_the_first_and_checkout_takes_stock(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let shop = Shop::new(ShopConfig::default());
    for expect in [true, false] {
        let (cart, held) = (SessionCart::new(), SessionEvents::deferred());
        if expect {
            cart.expect(vec![P2, P1]);
        }
        let c = |m| Ctx {
            events: Some(held.clone()),
            cart: Some(cart.clone()),
            ..ctx(
                U1,
                t0() + Duration::minutes(m),
                Some(Uuid::from_u128(0x5e59)),
            )
        };
        let tx = db.write().await.unwrap();
        shop.select_store(&tx, &c(0), S1).await.unwrap();
        shop.add_to_cart(&tx, &c(1), P1, 1).await.unwrap();
        // Another session took every unit of P2 (10 in S1).
        let codec = tx.codec();
        tx.exec(
            "UPDATE store_inventory SET quantity = 0 WHERE store_id = $1 AND product_id = $2",
            vec![codec.uuid(S1), codec.uuid(P2)],
        )
        .await
        .unwrap();
        let added = shop.add_to_cart(&tx, &c(2), P2, 2).await;
        if !expect {
            assert_eq!(
                reject_code(&added.unwrap_err()),
                Some(RejectCode::InsufficientInventory)
            );
            continue;
        }
        assert_eq!(added.unwrap().cart_item.quantity, 2);
        // 10 in stock when read: 9 more on top of the 2 held is still too many.
        let e = shop.add_to_cart(&tx, &c(3), P2, 9).await.unwrap_err();
        assert_eq!(reject_code(&e), Some(RejectCode::InsufficientInventory));
        let e = shop.checkout(&tx, &c(4)).await.unwrap_err();
        assert_eq!(reject_code(&e), Some(RejectCode::InsufficientInventory));
        assert_eq!(
            stock_in(&tx, S1, P1).await,
            10,
            "nothing taken on a shortfall"
        );
        tx.rollback().await.unwrap();
    }
}

/// `user`'s context in `session` at minute `m` after `t0()`, its events held in `held`, its
/// cart in memory if `cart` is given (else the database's).
fn session_ctx(
    user: Uuid,
    session: Uuid,
    held: &SessionEvents,
    cart: &Option<SessionCart>,
    m: i64,
) -> Ctx {
    Ctx {
        events: Some(held.clone()),
        cart: cart.clone(),
        ..ctx(user, t0() + Duration::minutes(m), Some(session))
    }
}

/// An offer applied to a session cart, then a refresh in the same session: the cart prices as
/// the database's cart would after it — without the offer when the refresh expired it, with it
/// again when the refresh assigned it anew.
async fn a_refresh_revalidates_offers_applied_to_a_session_cart(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let until = t0() + Duration::days(14);
    // Every category and brand coupon is drawn (30 wanted, 8 exist); an exclusion window of
    // 0 days lets the applied one be drawn again.
    for (n, exclusion_days) in [(0u128, 28), (1, 0)] {
        let shop = Shop::new(ShopConfig {
            holdout_share: 0.0,
            exclusion_days,
            ..ShopConfig::default()
        });
        let mut seen = Vec::new();
        for (user, cart) in [
            (Uuid::from_u128(0xa10 + n), None),
            (Uuid::from_u128(0xa20 + n), Some(SessionCart::new())),
        ] {
            let tx = db.write().await.unwrap();
            add_user(&tx, user, &format!("agent_{user}")).await;
            tx.commit().await.unwrap();
            give_offers(db, user, &[(C1, until)]).await;
            let session = Uuid::from_u128(0x5e60 + user.as_u128());
            let held = SessionEvents::deferred();
            let c = |m: i64| session_ctx(user, session, &held, &cart, m);
            let tx = db.write().await.unwrap();
            shop.select_store(&tx, &c(0), S1).await.unwrap();
            shop.add_to_cart(&tx, &c(1), P1, 2).await.unwrap();
            let applied = shop.apply_coupon(&tx, &c(2), C1).await.unwrap().summary;
            assert!(shop.refresh_offers(&tx, &c(3)).await.unwrap().refreshed);
            let after = shop.cart_summary(&tx, &c(4)).await.unwrap();
            shop.write_held(&tx, session, &held, 0, Vec::new())
                .await
                .unwrap();
            // Rolled back: the stock stays for the next user.
            tx.rollback().await.unwrap();
            seen.push((applied, after));
        }
        assert_eq!(seen[0], seen[1], "exclusion {exclusion_days} days");
        let (applied, after) = &seen[0];
        assert_eq!(applied.discount_total, Money(400));
        let expected = if exclusion_days == 0 { 400 } else { 0 };
        assert_eq!(
            after.discount_total,
            Money(expected),
            "exclusion {exclusion_days} days"
        );
    }
}

/// A session cart keeps the offers its eligibility read and answers its applications and later
/// checks from them: every answer is the database cart's — an offer that lapsed since the read
/// is left out, one the session's refresh expired is refused, one it assigned is applied, one
/// its checkout used is refused. A shop with a catalog copy keeps the offers its refresh
/// assigned (no read back), with the same answers.
async fn applications_after_eligibility_answer_as_the_database(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    // Every category and brand coupon is drawn at the refresh (30 wanted, 8 exist), but not
    // those assigned within the exclusion window: C1 and C2 are expired and not drawn again.
    let config = ShopConfig {
        holdout_share: 0.0,
        ..ShopConfig::default()
    };
    let shop = Shop::new(config.clone());
    let tx = db.read().await.unwrap();
    let catalog = shopsim::catalog::load_catalog(&tx).await.unwrap();
    tx.commit().await.unwrap();
    let known = Shop::new(config.clone())
        .with_known_catalog(Arc::new(KnownCatalog::from_catalog(&catalog)));
    // A copy that differs from the database in one coupon's description shows which one
    // answered.
    let mut altered = catalog.clone();
    for c in altered.coupons.iter_mut().filter(|c| c.id == B2) {
        c.discount_details = "as the catalog copy has it".into();
    }
    let copied =
        Shop::new(config).with_known_catalog(Arc::new(KnownCatalog::from_catalog(&altered)));
    // One user for both carts (the refresh's draw depends on the user); each session is
    // rolled back, so the second starts from the same wallet and stock.
    let user = Uuid::from_u128(0xa30);
    let tx = db.write().await.unwrap();
    add_user(&tx, user, &format!("agent_{user}")).await;
    tx.commit().await.unwrap();
    // C2 lapses three minutes into the session.
    give_offers(
        db,
        user,
        &[
            (C1, t0() + Duration::days(14)),
            (C2, t0() + Duration::minutes(3)),
            (B1, t0() + Duration::days(14)),
        ],
    )
    .await;
    /// The session's steps, at their minute.
    enum Step {
        Eligible,
        Apply(Uuid),
        Refresh,
        Checkout,
    }
    use Step::*;
    let steps = [
        (2, Eligible),
        (4, Apply(C2)), // lapsed at minute 3: refused
        (5, Apply(C1)),
        (6, Apply(C1)),
        (6, Eligible),  // answered again without C2, which lapsed since the first
        (7, Apply(C3)), // never an offer: refused
        (8, Refresh),
        (8, Apply(C1)),  // expired by the refresh, before any new read: refused
        (8, Eligible),   // read again: kept again
        (9, Apply(B1)),  // expired by the refresh: refused
        (10, Apply(C1)), // likewise
        (11, Apply(B2)), // assigned by the refresh
        (12, Checkout),
        (13, Apply(B2)), // used by the checkout: refused
    ];
    let mut seen = Vec::new();
    for (shop, cart) in [
        (&shop, None),
        (&shop, Some(SessionCart::new())),
        (&known, Some(SessionCart::new())),
        (&copied, Some(SessionCart::new())),
    ] {
        let session = Uuid::from_u128(0x5e70);
        let held = SessionEvents::deferred();
        let c = |m: i64| session_ctx(user, session, &held, &cart, m);
        let tx = db.write().await.unwrap();
        shop.select_store(&tx, &c(0), S1).await.unwrap();
        shop.add_to_cart(&tx, &c(1), P1, 2).await.unwrap();
        shop.add_to_cart(&tx, &c(1), P2, 1).await.unwrap();
        let mut answers = Vec::new();
        for (m, step) in &steps {
            let ctx = c(*m);
            answers.push(match step {
                Eligible => {
                    let eligible = shop.eligible_coupons(&tx, &ctx).await.unwrap();
                    format!("{m}: eligible {:?}", eligible.eligible)
                }
                Apply(coupon) => match shop.apply_coupon(&tx, &ctx, *coupon).await {
                    Ok(a) => format!("{m}: applied {:?}", a.summary),
                    Err(e) => format!("{m}: refused: {e}"),
                },
                Refresh => {
                    let refreshed = shop.refresh_offers(&tx, &ctx).await.unwrap();
                    assert!(refreshed.refreshed);
                    format!("{m}: refreshed")
                }
                Checkout => {
                    let order = shop.checkout(&tx, &ctx).await.unwrap().order;
                    format!("{m}: ordered {:?}", order.totals)
                }
            });
        }
        shop.write_held(&tx, session, &held, 0, Vec::new())
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        seen.push(answers);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    // After the refresh, the shop with a catalog copy answered from the offers it kept (it
    // read none back: the altered description shows), and only then.
    let marked: Vec<usize> = seen[3]
        .iter()
        .enumerate()
        .filter(|(_, a)| a.contains("as the catalog copy has it"))
        .map(|(i, _)| i)
        .collect();
    assert!(
        !marked.is_empty() && marked.iter().all(|i| *i > 6),
        "{:?}",
        seen[3]
    );
    // The cases are what the comments say (on all carts, since all answered alike).
    let refused: Vec<usize> = seen[0]
        .iter()
        .enumerate()
        .filter(|(_, a)| a.contains("refused: "))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(refused, [1, 5, 7, 9, 10, 13], "{:?}", seen[0]);
    assert!(seen[0][11].contains("applied"), "{:?}", seen[0]);
    let c2 = C2.to_string();
    assert!(
        seen[0][0].contains(&c2) && !seen[0][4].contains(&c2),
        "{:?}",
        seen[0]
    );
}

/// The ids of a session's events, oldest first.
async fn event_ids(tx: &Tx, session: Uuid) -> Vec<Uuid> {
    tx.query(
        "SELECT id FROM shopping_session_events WHERE session_id = $1 ORDER BY created_at",
        vec![tx.codec().uuid(session)],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.uuid("id").unwrap())
    .collect()
}

async fn count_in(tx: &Tx, sql: &str) -> i64 {
    tx.query_one(sql, vec![]).await.unwrap().i64("n").unwrap()
}

async fn stock_in(tx: &Tx, store: Uuid, product: Uuid) -> i64 {
    let c = tx.codec();
    tx.query_one(
        "SELECT quantity AS n FROM store_inventory WHERE store_id = $1 AND product_id = $2",
        vec![c.uuid(store), c.uuid(product)],
    )
    .await
    .unwrap()
    .i64("n")
    .unwrap()
}

// ---- stock under concurrency ----------------------------------------------------------

async fn concurrent_checkouts_never_oversell(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let shop = Shop::new(ShopConfig::default());
    let users: Vec<Uuid> = (0..6u128).map(|i| Uuid::from_u128(0xe00 + i)).collect();
    {
        let tx = db.write().await.unwrap();
        for (i, u) in users.iter().enumerate() {
            add_user(&tx, *u, &format!("agent_c{i}")).await;
        }
        // Every shopper puts the store's last bagel in their cart.
        for u in &users {
            let c = ctx(*u, t0(), None);
            shop.select_store(&tx, &c, S1).await.unwrap();
            shop.add_to_cart(&tx, &c, P5, 1).await.unwrap();
            shop.add_to_cart(&tx, &c, P3, 1).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let mut tasks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let db = db.clone();
        let shop = shop.clone();
        let u = *u;
        tasks.push(tokio::spawn(async move {
            let tx = db.write().await.unwrap();
            let c = ctx(
                u,
                t0() + Duration::seconds(i as i64),
                Some(Uuid::from_u128(0x7000 + i as u128)),
            );
            match shop.checkout(&tx, &c).await {
                Ok(_) => {
                    tx.commit().await.unwrap();
                    Ok(())
                }
                Err(e) => {
                    // The caller's transaction is still usable after a rejected checkout.
                    let cart = shop.get_cart(&tx, &c).await.unwrap();
                    assert_eq!(cart.items.len(), 2, "a failed checkout keeps the cart");
                    tx.rollback().await.unwrap();
                    Err(reject_code(&e))
                }
            }
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(code) => assert_eq!(code, Some(RejectCode::InsufficientInventory)),
        }
    }
    assert_eq!(ok, 1, "exactly one shopper gets the last unit");
    assert_eq!(stock(db, S1, P5).await, 0);
    // Pretzels (decremented before bagels in product-id order) were rolled back for the losers.
    assert_eq!(stock(db, S1, P3).await, 9);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM orders").await, 1);
    assert_eq!(
        count(db, "SELECT COUNT(*) AS n FROM shopping_session_events").await,
        1
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM store_inventory WHERE quantity < 0"
        )
        .await,
        0
    );
}

// ---- restocking ------------------------------------------------------------------------

async fn restock_runs_once_per_day(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let shop = Shop::new(ShopConfig {
        restock_level: 8,
        ..ShopConfig::default()
    });
    // S1 holds 10, 10, 10, 10, 1 and S2 5 of each: six rows are below 8.
    let tx = db.write().await.unwrap();
    assert_eq!(shop.restock_if_due(&tx, t0()).await.unwrap(), Some(6));
    assert_eq!(
        shop.restock_if_due(&tx, t0() + Duration::hours(13))
            .await
            .unwrap(),
        None,
        "same simulated day"
    );
    tx.commit().await.unwrap();
    assert_eq!(stock(db, S1, P5).await, 8);
    assert_eq!(
        stock(db, S1, P1).await,
        10,
        "stock above the level is left alone"
    );
    assert_eq!(stock(db, S2, P4).await, 8);

    let tx = db.write().await.unwrap();
    tx.exec(
        "UPDATE store_inventory SET quantity = 2 WHERE store_id = $1 AND product_id = $2",
        vec![tx.codec().uuid(S2), tx.codec().uuid(P2)],
    )
    .await
    .unwrap();
    assert_eq!(
        shop.restock_if_due(&tx, t0() + Duration::days(1))
            .await
            .unwrap(),
        Some(1)
    );
    tx.commit().await.unwrap();
    assert_eq!(stock(db, S2, P2).await, 8);
    let tx = db.read().await.unwrap();
    let r = tx
        .query_one(
            "SELECT rows_restocked, level FROM sim_restocks WHERE day = $1",
            vec![tx.codec().date(t0().date_naive())],
        )
        .await
        .unwrap();
    assert_eq!(
        (r.i64("rows_restocked").unwrap(), r.i64("level").unwrap()),
        (6, 8)
    );
    tx.commit().await.unwrap();
}

// ---- the offer engine ------------------------------------------------------------------

fn offer_shop(holdout_share: f64) -> Shop {
    Shop::new(ShopConfig {
        seed: 7,
        holdout_share,
        frontstore_offers: 1,
        targeted_offers: 2,
        ..ShopConfig::default()
    })
}

async fn refresh(
    db: &Db,
    shop: &Shop,
    user: Uuid,
    now: DateTime<Utc>,
) -> shopsim::domain::RefreshResult {
    let tx = db.write().await.unwrap();
    let drawn = shop
        .refresh_offers_drawn(&tx, &ctx(user, now, None))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // What the refresh says it left active is what the wallet shows, in the wallet's order:
    // in-process sessions use it instead of reading the wallet.
    let tx = db.read().await.unwrap();
    let wallet = shop.wallet(&tx, user, now).await.unwrap();
    tx.commit().await.unwrap();
    match drawn.active_offers() {
        Some(active) => assert_eq!(active, wallet.active_offers()),
        None => assert!(!drawn.result.refreshed),
    }
    drawn.result
}

/// Every row of the offer tables, as text, in a stable order.
async fn offer_tables(db: &Db) -> Vec<String> {
    let tx = db.read().await.unwrap();
    let mut out = Vec::new();
    for r in tx
        .query(
            "SELECT user_id, coupon_id, assigned_at, eligible_until, status, offer_cycle_id, \
               is_simulation, order_id, redeemed_at FROM user_coupons ORDER BY user_id, coupon_id",
            vec![],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "uc {} {} {} {:?} {} {:?} {} {:?} {:?}",
            r.uuid("user_id").unwrap(),
            r.uuid("coupon_id").unwrap(),
            r.ts("assigned_at").unwrap(),
            r.opt_ts("eligible_until").unwrap(),
            r.string("status").unwrap(),
            r.opt_uuid("offer_cycle_id").unwrap(),
            r.bool("is_simulation").unwrap(),
            r.opt_uuid("order_id").unwrap(),
            r.opt_ts("redeemed_at").unwrap(),
        ));
    }
    for r in tx
        .query(
            "SELECT user_id, current_cycle_id, last_refresh_at, next_refresh_at, is_holdout, \
               is_simulation FROM user_offer_cycles ORDER BY user_id",
            vec![],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "uoc {} {:?} {:?} {:?} {} {}",
            r.uuid("user_id").unwrap(),
            r.opt_uuid("current_cycle_id").unwrap(),
            r.opt_ts("last_refresh_at").unwrap(),
            r.opt_ts("next_refresh_at").unwrap(),
            r.bool("is_holdout").unwrap(),
            r.bool("is_simulation").unwrap(),
        ));
    }
    for r in tx
        .query(
            "SELECT id, cycle_number, started_at, ends_at, is_simulation FROM offer_cycles ORDER BY id",
            vec![],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "oc {} {} {} {} {}",
            r.uuid("id").unwrap(),
            r.i64("cycle_number").unwrap(),
            r.ts("started_at").unwrap(),
            r.ts("ends_at").unwrap(),
            r.bool("is_simulation").unwrap(),
        ));
    }
    tx.commit().await.unwrap();
    out
}

async fn active_offers(db: &Db, user: Uuid) -> Vec<Uuid> {
    let tx = db.read().await.unwrap();
    let rows = tx
        .query(
            "SELECT coupon_id FROM user_coupons WHERE user_id = $1 AND status = 'active' \
             ORDER BY coupon_id",
            vec![tx.codec().uuid(user)],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows.iter().map(|r| r.uuid("coupon_id").unwrap()).collect()
}

async fn same_backend(t: &TestDb) -> TestDb {
    match t.backend() {
        Backend::Sqlite => TestDb::sqlite().await,
        Backend::Postgres => TestDb::postgres().await.expect("postgres configured"),
    }
}

async fn offer_draws_do_not_depend_on_refresh_order(t: TestDb) {
    let other = same_backend(&t).await;
    let shop = offer_shop(0.0);
    fixture(&t.db).await;
    fixture(&other.db).await;
    for (db, order) in [(&t.db, [U1, U2]), (&other.db, [U2, U1])] {
        for week in 0..3 {
            for user in order {
                let r = refresh(db, &shop, user, t0() + Duration::days(7 * week)).await;
                assert!(r.refreshed && !r.is_holdout);
                assert_eq!(r.assigned_count, 3);
                assert_eq!(r.expired_count, if week == 0 { 0 } else { 3 });
            }
        }
    }
    let a = offer_tables(&t.db).await;
    assert_eq!(a, offer_tables(&other.db).await);
    assert!(a.iter().filter(|l| l.starts_with("uc ")).count() >= 6);
    assert_eq!(a.iter().filter(|l| l.starts_with("oc ")).count(), 3);
    // Users draw independently: their wallets differ (with overwhelming probability).
    assert_ne!(
        active_offers(&t.db, U1).await,
        active_offers(&t.db, U2).await
    );
}

async fn offer_exclusion_window_holds_across_cycles(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let shop = offer_shop(0.0);
    // 4 frontstore and 8 targeted coupons, 1 + 2 drawn per weekly cycle, 28-day exclusion:
    // four cycles in a row must draw disjoint sets that together use every coupon.
    let mut seen: Vec<Uuid> = Vec::new();
    let mut first = Vec::new();
    for week in 0..4 {
        let r = refresh(db, &shop, U1, t0() + Duration::days(7 * week)).await;
        assert_eq!(r.assigned_count, 3, "week {week}");
        let active = active_offers(db, U1).await;
        assert_eq!(active.len(), 3);
        for c in &active {
            assert!(!seen.contains(c), "coupon {c} drawn again within 28 days");
        }
        if week == 0 {
            first = active.clone();
        }
        seen.extend(active);
    }
    assert_eq!(seen.len(), 12);
    // 28 days after the first refresh, only its coupons have left the window.
    let r = refresh(db, &shop, U1, t0() + Duration::days(28)).await;
    assert_eq!((r.expired_count, r.assigned_count), (3, 3));
    assert_eq!(active_offers(db, U1).await, first);
    // The wallet shows them with the new dates, newest first.
    let tx = db.read().await.unwrap();
    let wallet = shop
        .wallet(&tx, U1, t0() + Duration::days(29))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(wallet.offers.len(), 12);
    assert_eq!(wallet.offers[0].assigned_at, t0() + Duration::days(28));
    assert_eq!(wallet.offers[0].status, "active");
    assert_eq!(
        wallet.offers[0].eligible_until,
        Some(t0() + Duration::days(42))
    );
    assert_eq!(wallet.next_refresh_at, Some(t0() + Duration::days(35)));
    assert!(wallet.offers[3..].iter().all(|o| o.status == "expired"));
}

async fn holdout_users_get_no_offers(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let r = refresh(db, &offer_shop(0.0), U1, t0()).await;
    assert_eq!(r.assigned_count, 3);
    let holdout = offer_shop(1.0);
    let r = refresh(db, &holdout, U1, t0() + Duration::days(7)).await;
    assert!(r.refreshed && r.is_holdout);
    assert_eq!((r.expired_count, r.assigned_count), (3, 0));
    assert!(active_offers(db, U1).await.is_empty());
    let r = refresh(db, &holdout, U2, t0()).await;
    assert!(r.is_holdout);
    assert_eq!(r.assigned_count, 0);
    let tx = db.read().await.unwrap();
    let wallet = holdout.wallet(&tx, U2, t0()).await.unwrap();
    assert!(wallet.is_holdout && wallet.offers.is_empty());
    let e = holdout
        .wallet(&tx, Uuid::from_u128(3), t0())
        .await
        .unwrap_err();
    assert_eq!(invalid_code(&e), Some("user_not_found"));
    tx.commit().await.unwrap();
}

async fn refresh_that_is_not_due_changes_nothing(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let shop = offer_shop(0.0);
    let first = refresh(db, &shop, U1, t0()).await;
    assert_eq!(first.next_refresh_at, Some(t0() + Duration::days(7)));
    let before = offer_tables(db).await;
    for later in [Duration::hours(1), Duration::days(6) + Duration::hours(23)] {
        let r = refresh(db, &shop, U1, t0() + later).await;
        assert!(!r.refreshed);
        assert_eq!((r.expired_count, r.assigned_count), (0, 0));
        assert_eq!(r.next_refresh_at, first.next_refresh_at);
        assert_eq!(offer_tables(db).await, before);
    }
    // Due exactly at next_refresh_at.
    let r = refresh(db, &shop, U1, t0() + Duration::days(7)).await;
    assert!(r.refreshed);
    assert_ne!(offer_tables(db).await, before);
}

// ---- validity at `now`, and refusals that write nothing ---------------------------------

async fn lapsed_offers_stop_counting_and_refused_writes_leave_nothing(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let shop = Shop::new(ShopConfig::default());
    give_offers(db, U1, &[(C1, t0() + Duration::hours(2))]).await;
    let tx = db.write().await.unwrap();
    let c = |hours: i64| ctx(U1, t0() + Duration::hours(hours), None);
    shop.select_store(&tx, &c(0), S1).await.unwrap();
    shop.add_to_cart(&tx, &c(0), P1, 1).await.unwrap();
    let applied = shop.apply_coupon(&tx, &c(1), C1).await.unwrap();
    assert_eq!(applied.summary.discount_total, Money(200));
    // Once the offer's window has closed, the cart no longer gets its discount.
    let later = shop.cart_summary(&tx, &c(3)).await.unwrap();
    assert_eq!(
        (later.discount_total, later.final_total),
        (Money::ZERO, Money(1000))
    );
    assert!(shop.get_cart(&tx, &c(3)).await.unwrap().coupons.is_empty());
    let order = shop.checkout(&tx, &c(3)).await.unwrap().order;
    assert_eq!(order.totals.final_total, Money(1000));
    assert_eq!(order.frontstore_coupon_id, None);

    // A session owned by U1 refuses U2's writes before anything is written.
    let session = Some(Uuid::from_u128(0x5e57));
    shop.get_product(&tx, &ctx(U1, t0(), session), P1)
        .await
        .unwrap();
    shop.select_store(&tx, &ctx(U2, t0(), None), S1)
        .await
        .unwrap();
    let e = shop
        .add_to_cart(&tx, &ctx(U2, t0(), session), P2, 1)
        .await
        .unwrap_err();
    assert_eq!(invalid_code(&e), Some("session_user_mismatch"));
    assert!(
        shop.get_cart(&tx, &ctx(U2, t0(), None))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Refused before the cart is emptied.
    shop.add_to_cart(&tx, &ctx(U2, t0(), None), P2, 1)
        .await
        .unwrap();
    let e = shop
        .clear_cart(&tx, &ctx(U2, t0(), session))
        .await
        .unwrap_err();
    assert_eq!(invalid_code(&e), Some("session_user_mismatch"));
    assert_eq!(
        shop.get_cart(&tx, &ctx(U2, t0(), None))
            .await
            .unwrap()
            .item_count,
        1
    );
    assert_eq!(
        count_in(&tx, "SELECT COUNT(*) AS n FROM shopping_session_events").await,
        1
    );
    tx.commit().await.unwrap();
}

// ---- held session events ---------------------------------------------------------------

/// `write_held` with a deferred buffer (the reference server's requests): a right guess of the
/// session's event count and a wrong one (a restarted server) give the same ids, and another
/// user's session is refused with nothing written (on SQLite the row is written, and refused,
/// at the event itself).
async fn a_deferred_session_row_numbers_events_from_any_guess(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let shop = Shop::new(ShopConfig::default());
    let session = Uuid::from_u128(0x5e57);
    let tx = db.write().await.unwrap();
    let view = |user: Uuid, minute: i64, events: &SessionEvents| Ctx {
        events: Some(events.clone()),
        ..ctx(user, t0() + Duration::minutes(minute), Some(session))
    };
    // (guess, events this request holds): a new session guessed right, then a wrong guess,
    // then a right one.
    let mut minute = 0;
    let mut total = 0;
    for (guess, n) in [(0, 2), (0, 1), (3, 2)] {
        let held = SessionEvents::deferred();
        for _ in 0..n {
            minute += 1;
            shop.get_product(&tx, &view(U1, minute, &held), P1)
                .await
                .unwrap();
        }
        total += n;
        let done = shop
            .write_held(&tx, session, &held, guess, Vec::new())
            .await
            .unwrap();
        assert_eq!(
            done,
            HeldOutcome::Written {
                events: Some(total)
            }
        );
    }
    let want: Vec<Uuid> = (1..=total)
        .map(|n| ids::child_uuid(&session, "event", &n.to_string()))
        .collect();
    assert_eq!(event_ids(&tx, session).await, want);

    let held = SessionEvents::deferred();
    let viewed = shop.get_product(&tx, &view(U2, 30, &held), P1).await;
    match tx.backend() {
        Backend::Postgres => {
            viewed.unwrap();
            let done = shop
                .write_held(&tx, session, &held, total, Vec::new())
                .await
                .unwrap();
            assert_eq!(done, HeldOutcome::OtherUsersSession);
        }
        Backend::Sqlite => {
            assert_eq!(
                invalid_code(&viewed.unwrap_err()),
                Some("session_user_mismatch")
            );
        }
    }
    assert_eq!(
        event_ids(&tx, session).await,
        want,
        "nothing written for another user"
    );
    let s = tx
        .query_one(
            "SELECT user_id, last_seen_at FROM shopping_sessions WHERE id = $1",
            vec![tx.codec().uuid(session)],
        )
        .await
        .unwrap();
    assert_eq!(s.uuid("user_id").unwrap(), U1);
    assert_eq!(
        s.ts("last_seen_at").unwrap(),
        t0() + Duration::minutes(minute)
    );
    tx.commit().await.unwrap();
}

/// A checkout that fails half-way (stock gone since the line was added) puts back the stock
/// it took, and the `checkout_complete` event held for it goes with it; the session then
/// ends abandoned with exactly the events that stood.
/// Adding to the cart with the store the caller believes selected (right, wrong or none) gives
/// the same lines, answers and events; a rejected add with a hint (one statement on
/// PostgreSQL) leaves the cart and the session as they were.
async fn a_store_hint_changes_nothing_but_round_trips(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let shop = Shop::new(ShopConfig::default());
    let adds = [(P1, 2), (P1, 1), (P2, 1), (P2, 2), (P5, 2)];
    let mut seen = Vec::new();
    for (user, hints) in [
        (U1, [None; 5]),
        (U2, [Some(S1), Some(S2), Some(S1), Some(S1), Some(S1)]),
    ] {
        let session = Uuid::from_u128(0x5e00 + user.as_u128());
        let held = SessionEvents::deferred();
        let at = |minute: i64| Ctx {
            events: Some(held.clone()),
            ..ctx(user, t0() + Duration::minutes(minute), Some(session))
        };
        let tx = db.write().await.unwrap();
        shop.select_store(&tx, &at(0), S1).await.unwrap();
        let mut answers = Vec::new();
        for (n, ((product, quantity), hint)) in adds.into_iter().zip(hints).enumerate() {
            let minute = i64::try_from(n).unwrap() + 1;
            answers.push(
                match shop
                    .add_to_cart_in(&tx, &at(minute), product, quantity, hint)
                    .await
                {
                    Ok(a) => format!("{} x{}", a.cart_item.product_id, a.cart_item.quantity),
                    Err(e) => format!("{:?}", reject_code(&e)),
                },
            );
        }
        let written = shop
            .write_held(&tx, session, &held, 0, Vec::new())
            .await
            .unwrap();
        assert_eq!(written, HeldOutcome::Written { events: Some(4) });
        let c = tx.codec();
        let lines = tx
            .query(
                "SELECT product_id, quantity FROM cart_items WHERE user_id = $1 \
                 ORDER BY created_at, product_id",
                vec![c.uuid(user)],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} x{}",
                    r.uuid("product_id").unwrap(),
                    r.i64("quantity").unwrap()
                )
            })
            .collect::<Vec<_>>();
        // The rejected add (minute 5) did not move the session's last event time.
        let last_seen = tx
            .query_one(
                "SELECT last_seen_at FROM shopping_sessions WHERE id = $1",
                vec![c.uuid(session)],
            )
            .await
            .unwrap()
            .ts("last_seen_at")
            .unwrap();
        assert_eq!(event_ids(&tx, session).await.len(), 4);
        tx.commit().await.unwrap();
        seen.push((answers, lines, last_seen));
    }
    assert_eq!(seen[0], seen[1]);
    let (answers, lines, last_seen) = &seen[0];
    assert_eq!(
        answers,
        &[
            format!("{P1} x2"),
            format!("{P1} x3"),
            format!("{P2} x1"),
            format!("{P2} x3"),
            "Some(InsufficientInventory)".to_string(),
        ]
    );
    assert_eq!(lines, &[format!("{P1} x3"), format!("{P2} x3")]);
    assert_eq!(*last_seen, t0() + Duration::minutes(4));
}

async fn held_events_roll_back_with_a_failed_checkout(t: TestDb) {
    let db = &t.db;
    fixture(db).await;
    let shop = Shop::new(ShopConfig::default());
    let session = Uuid::from_u128(0x5e56);
    let held = SessionEvents::new();
    let c = |m: i64| Ctx {
        events: Some(held.clone()),
        ..ctx(U2, t0() + Duration::minutes(m), Some(session))
    };
    let tx = db.write().await.unwrap();
    shop.select_store(&tx, &c(0), S1).await.unwrap();
    shop.add_to_cart(&tx, &c(1), P5, 1).await.unwrap();
    shop.add_to_cart(&tx, &c(2), P1, 1).await.unwrap();
    let codec = tx.codec();
    tx.exec(
        "UPDATE store_inventory SET quantity = 0 WHERE store_id = $1 AND product_id = $2",
        vec![codec.uuid(S1), codec.uuid(P5)],
    )
    .await
    .unwrap();
    let stock_p1 = stock_in(&tx, S1, P1).await;
    let e = shop.checkout(&tx, &c(3)).await.unwrap_err();
    assert_eq!(reject_code(&e), Some(RejectCode::InsufficientInventory));
    // P1 comes first in product order: its unit was taken, then put back when P5 fell short.
    assert_eq!(
        stock_in(&tx, S1, P1).await,
        stock_p1,
        "the stock taken was put back"
    );
    // The same checkout without held events (a request, or a step in its own transaction)
    // is refused the same way and writes no event.
    let e = shop
        .checkout(&tx, &ctx(U2, t0() + Duration::minutes(3), Some(session)))
        .await
        .unwrap_err();
    assert_eq!(reject_code(&e), Some(RejectCode::InsufficientInventory));
    assert_eq!(stock_in(&tx, S1, P1).await, stock_p1);
    shop.clear_cart(&tx, &c(4)).await.unwrap();
    shop.flush_session_events(&tx, session, &held)
        .await
        .unwrap();
    // Flushing again writes nothing twice.
    shop.flush_session_events(&tx, session, &held)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let tx = db.read().await.unwrap();
    let codec = tx.codec();
    let rows = tx
        .query(
            "SELECT id, event_type, created_at FROM shopping_session_events \
             WHERE session_id = $1 ORDER BY created_at",
            vec![codec.uuid(session)],
        )
        .await
        .unwrap();
    let got: Vec<(Uuid, String)> = rows
        .iter()
        .map(|r| (r.uuid("id").unwrap(), r.string("event_type").unwrap()))
        .collect();
    let want: Vec<(Uuid, String)> = ["cart_add_item", "cart_add_item", "cart_abandon"]
        .iter()
        .enumerate()
        .map(|(n, t)| {
            let id = ids::child_uuid(&session, "event", &(n + 1).to_string());
            (id, (*t).to_string())
        })
        .collect();
    assert_eq!(got, want);
    let s = tx
        .query_one(
            "SELECT status, started_at, last_seen_at, ended_at FROM shopping_sessions \
             WHERE id = $1",
            vec![codec.uuid(session)],
        )
        .await
        .unwrap();
    assert_eq!(s.string("status").unwrap(), "abandoned");
    assert_eq!(s.ts("started_at").unwrap(), t0() + Duration::minutes(1));
    let end = Some(t0() + Duration::minutes(4));
    assert_eq!(s.opt_ts("last_seen_at").unwrap(), end);
    assert_eq!(s.opt_ts("ended_at").unwrap(), end);
    assert_eq!(
        count_in(&tx, "SELECT COUNT(*) AS n FROM orders").await,
        0,
        "the failed checkout left no order"
    );
    tx.commit().await.unwrap();
}
