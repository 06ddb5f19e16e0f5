//! The reference server over HTTP: the whole shopping flow, simulated time, idempotency,
//! concurrency, restocking, rate limiting, fault injection and bad input.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shopsim::server::{FailMode, ServerConfig};
use uuid::Uuid;

use crate::app::{TestApp, at, spawn_app, test_config};
use crate::backend_tests;
use crate::support::TestDb;

backend_tests!(
    whole_flow_records_events_at_simulated_time,
    concurrent_checkouts_with_one_key_make_one_order,
    retried_cart_add_replays_and_other_body_is_422,
    a_retry_whose_work_now_fails_is_replayed,
    last_unit_is_never_oversold,
    restocks_at_simulated_midnight,
    rate_limit_answers_429_with_retry_after,
    fault_modes_counters_and_runtime_switching,
    unknown_or_missing_agent_is_401_json,
    bad_input_gets_4xx_json_never_500,
    key_held_by_an_unfinished_request_is_409_then_free,
    the_work_waits_for_locks_longer_than_the_key_timeout,
    unreachable_database_is_503_json,
    clearing_the_cart_abandons_the_session,
    another_users_session_is_refused_and_event_ids_are_numbered,
    server_metrics_count_requests_by_route_and_status,
);

const A1: &str = "agent_001";
const A2: &str = "agent_002";

fn sim(rb: reqwest::RequestBuilder, t: &str) -> reqwest::RequestBuilder {
    rb.header("X-Sim-Time", t)
}

/// Selects `store` for `agent` (must succeed).
async fn select_store(app: &TestApp, agent: &str, store: Uuid) {
    let (s, _, b) = app
        .send(
            app.req(Method::PUT, "/api/user/store", agent)
                .json(&json!({ "store_id": store })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["store"]["id"], json!(store));
}

/// Units in the cart of `agent`.
async fn item_count(app: &TestApp, agent: &str) -> i64 {
    let (s, _, cart) = app.send(app.req(Method::GET, "/api/cart", agent)).await;
    assert_eq!(s, StatusCode::OK, "{cart}");
    cart["item_count"].as_i64().unwrap()
}

/// Orders of `user` in the database.
async fn order_count(app: &TestApp, user: Uuid) -> i64 {
    app.count(
        "SELECT count(*) AS n FROM orders WHERE user_id = $1",
        vec![app.t.db.codec().uuid(user)],
    )
    .await
}

/// Adds to the cart of `agent` (must succeed).
async fn add(app: &TestApp, agent: &str, product: Uuid, quantity: i64) -> Value {
    let (s, _, b) = app
        .send(
            app.req(Method::POST, "/api/cart/items", agent)
                .json(&json!({ "product_id": product, "quantity": quantity })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn whole_flow_records_events_at_simulated_time(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let fx = app.fx.clone();
    let session = Uuid::new_v4();
    let times: Vec<String> = (0..10)
        .map(|m| format!("2026-03-02T10:{:02}:00Z", m * 3))
        .collect();
    let step = |method: Method, path: &str, i: usize| {
        sim(app.req(method, path, A1), &times[i])
            .header("X-Shopping-Session-Id", session.to_string())
    };

    let (s, _, b) = app
        .send(app.client.get(format!("{}/health", app.base)))
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!({ "status": "ok" })));

    let (s, _, b) = app.send(step(Method::GET, "/api/stores", 0)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["count"], 2);

    // Offers for the user (any authenticated caller may refresh a user; /assign is the same).
    let (s, _, b) = app
        .send(step(Method::POST, "/api/offers/refresh", 0).json(&json!({ "user_id": fx.user1 })))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["assigned_count"].as_u64().unwrap() >= 3, "{b}");
    let (s, _, w) = app
        .send(step(
            Method::GET,
            &format!("/api/offers/wallet/{}", fx.user1),
            0,
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert!(
        w["offers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == json!(fx.snacks_coupon))
    );

    let (s, _, b) = app
        .send(step(Method::PUT, "/api/user/store", 1).json(&json!({ "store_id": fx.store_a })))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let (s, _, b) = app
        .send(step(
            Method::GET,
            "/api/products?category=snacks&limit=10",
            2,
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["total"], 1, "{b}");
    assert_eq!(b["products"][0]["id"], json!(fx.chips));
    assert_eq!(b["limit"], 10);

    let before = app.stock(fx.store_a, fx.chips).await;
    let (s, _, b) = app
        .send(step(Method::GET, &format!("/api/products/{}", fx.chips), 3))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["inventory"]["available"], before);

    let (s, _, b) = app
        .send(
            step(Method::POST, "/api/cart/add", 4)
                .json(&json!({ "product_id": fx.chips, "quantity": 2 })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["cart_item"]["quantity"], 2);
    assert_eq!(b["cart_item"]["line_total"], json!(8.0));

    let (s, _, cart) = app.send(step(Method::GET, "/api/cart", 4)).await;
    assert_eq!(s, StatusCode::OK, "{cart}");
    assert_eq!(cart["item_count"], 2);
    assert_eq!(cart["store"]["id"], json!(fx.store_a));

    let (s, _, b) = app
        .send(step(Method::GET, "/api/coupons/eligible", 5))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["cart_subtotal"], json!(8.0));
    let eligible: Vec<Value> = b["eligible"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert!(eligible.contains(&json!(fx.snacks_coupon)), "{b}");
    assert!(
        !eligible.contains(&json!(fx.fizz_coupon)),
        "no Fizz item in the cart: {b}"
    );

    let (s, _, b) = app
        .send(
            step(Method::POST, "/api/cart/coupons", 6)
                .json(&json!({ "coupon_id": fx.snacks_coupon })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["coupon"]["id"], json!(fx.snacks_coupon));

    let (s, _, summary) = app.send(step(Method::GET, "/api/cart/summary", 7)).await;
    assert_eq!(s, StatusCode::OK, "{summary}");
    assert_eq!(summary["subtotal"], json!(8.0));
    assert!(
        summary["discount_total"].as_f64().unwrap() >= 1.6,
        "{summary}"
    );

    let (s, _, b) = app
        .send(step(Method::POST, "/api/orders/checkout", 8))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let order = &b["order"];
    assert_eq!(order["totals"]["subtotal"], summary["subtotal"]);
    assert_eq!(order["totals"]["discount_total"], summary["discount_total"]);
    assert_eq!(order["totals"]["final_total"], summary["final_total"]);
    assert_eq!(at(order["created_at"].as_str().unwrap()), at(&times[8]));
    let order_id: Uuid = serde_json::from_value(order["id"].clone()).unwrap();
    assert_eq!(app.stock(fx.store_a, fx.chips).await, before - 2);

    let (s, _, b) = app.send(step(Method::GET, "/api/orders?limit=5", 9)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["total"], 1);
    assert_eq!(b["orders"][0]["id"], json!(order_id));
    let (_, _, cart) = app.send(step(Method::GET, "/api/cart", 9)).await;
    assert_eq!(cart["item_count"], 0, "checkout empties the cart: {cart}");

    // The simulated time landed in the stored rows.
    let c = app.t.db.codec();
    let tx = app.t.db.read().await.unwrap();
    let row = tx
        .query_one(
            "SELECT created_at, is_simulated, shopping_session_id FROM orders WHERE id = $1",
            vec![c.uuid(order_id)],
        )
        .await
        .unwrap();
    assert_eq!(row.ts("created_at").unwrap(), at(&times[8]));
    assert!(row.bool("is_simulated").unwrap());
    assert_eq!(row.opt_uuid("shopping_session_id").unwrap(), Some(session));
    let row = tx
        .query_one(
            "SELECT status, started_at, is_simulated FROM shopping_sessions WHERE id = $1",
            vec![c.uuid(session)],
        )
        .await
        .unwrap();
    assert_eq!(row.string("status").unwrap(), "completed");
    assert!(row.bool("is_simulated").unwrap());
    let started = row.ts("started_at").unwrap();
    assert!(
        started >= at(&times[0]) && started <= at(&times[3]),
        "{started}"
    );
    let events = tx
        .query(
            "SELECT event_type, created_at FROM shopping_session_events WHERE session_id = $1 ORDER BY created_at",
            vec![c.uuid(session)],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let events: Vec<(String, chrono::DateTime<chrono::Utc>)> = events
        .iter()
        .map(|r| (r.string("event_type").unwrap(), r.ts("created_at").unwrap()))
        .collect();
    for (kind, i) in [
        ("view_product", 3),
        ("cart_add_item", 4),
        ("view_coupons", 5),
        ("coupon_apply", 6),
        ("checkout_complete", 8),
    ] {
        assert!(
            events.contains(&(kind.to_string(), at(&times[i]))),
            "missing {kind} at {}: {events:?}",
            times[i]
        );
    }
    assert!(
        events
            .iter()
            .all(|(_, t)| *t >= at(&times[0]) && *t <= at(&times[9])),
        "an event carries a non-simulated time: {events:?}"
    );
}

async fn concurrent_checkouts_with_one_key_make_one_order(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let fx = app.fx.clone();
    select_store(&app, A1, fx.store_a).await;
    add(&app, A1, fx.cola, 1).await;
    let before = app.stock(fx.store_a, fx.cola).await;
    let answers = join_all((0..50).map(|_| {
        app.send(
            app.req(Method::POST, "/api/orders", A1)
                .header("Idempotency-Key", "checkout-once"),
        )
    }))
    .await;
    let mut order_ids = std::collections::HashSet::new();
    let mut created = 0;
    for (s, _, b) in &answers {
        match *s {
            StatusCode::CREATED => {
                created += 1;
                order_ids.insert(b["order"]["id"].clone());
            }
            StatusCode::CONFLICT => assert_eq!(b["error"]["code"], "idempotency_in_flight"),
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert!(created >= 1);
    assert_eq!(order_ids.len(), 1, "{order_ids:?}");
    assert_eq!(order_count(&app, fx.user1).await, 1);
    assert_eq!(app.stock(fx.store_a, fx.cola).await, before - 1);
    let counters = app.server.faults().counters();
    assert_eq!(
        counters.replays + counters.conflicts_409,
        49,
        "{counters:?}"
    );
}

/// The key is only met at the end of a request's work: a retry whose work fails on the way
/// (here the order, whose id comes from the user and the simulated time, exists already) still
/// gets the stored answer, and its work is rolled back.
async fn a_retry_whose_work_now_fails_is_replayed(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let fx = app.fx.clone();
    select_store(&app, A1, fx.store_a).await;
    let add = |key: &str| {
        app.req(Method::POST, "/api/cart/items", A1)
            .header("Idempotency-Key", key)
            .json(&json!({ "product_id": fx.cola, "quantity": 1 }))
    };
    let checkout = || {
        sim(
            app.req(Method::POST, "/api/orders", A1)
                .header("Idempotency-Key", "checkout-1"),
            "2026-03-02T10:00:00Z",
        )
    };
    let (s, _, b) = app.send(add("add-1")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s1, r1, b1) = app.send(checkout()).await;
    assert_eq!((s1, r1), (StatusCode::CREATED, false), "{b1}");
    // A full cart again: the retried checkout's work gets as far as the order's insert.
    let (s, _, b) = app.send(add("add-2")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let stock = app.stock(fx.store_a, fx.cola).await;
    let (s2, r2, b2) = app.send(checkout()).await;
    assert_eq!((s2, r2), (StatusCode::CREATED, true), "{b2}");
    assert_eq!(b1, b2);
    assert_eq!(order_count(&app, fx.user1).await, 1);
    assert_eq!(app.stock(fx.store_a, fx.cola).await, stock, "nothing kept");
    assert_eq!(item_count(&app, A1).await, 1, "the cart is as it was");
}

async fn retried_cart_add_replays_and_other_body_is_422(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let fx = app.fx.clone();
    select_store(&app, A1, fx.store_a).await;
    let body = json!({ "product_id": fx.cola, "quantity": 2 });
    let post = |key: &str, body: &Value| {
        app.req(Method::POST, "/api/cart/items", A1)
            .header("Idempotency-Key", key)
            .json(body)
    };
    let (s1, r1, b1) = app.send(post("add-1", &body)).await;
    assert_eq!((s1, r1), (StatusCode::OK, false), "{b1}");
    let (s2, r2, b2) = app.send(post("add-1", &body)).await;
    assert_eq!((s2, r2), (StatusCode::OK, true));
    assert_eq!(b1, b2);
    let (_, _, cart) = app.send(app.req(Method::GET, "/api/cart", A1)).await;
    assert_eq!(
        cart["item_count"], 2,
        "the retry must not add again: {cart}"
    );

    // The same key with another body is refused and changes nothing.
    let (s, _, b) = app
        .send(post(
            "add-1",
            &json!({ "product_id": fx.cola, "quantity": 3 }),
        ))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "idempotency_key_mismatch");
    // Keys are per user: agent_002 may use the same key for its own request.
    select_store(&app, A2, fx.store_a).await;
    let (s, r, _) = app
        .send(
            app.req(Method::POST, "/api/cart/items", A2)
                .header("Idempotency-Key", "add-1")
                .json(&body),
        )
        .await;
    assert_eq!((s, r), (StatusCode::OK, false));
    // A new key adds again.
    let (s, r, _) = app.send(post("add-2", &body)).await;
    assert_eq!((s, r), (StatusCode::OK, false));
    let (_, _, cart) = app.send(app.req(Method::GET, "/api/cart", A1)).await;
    assert_eq!(cart["item_count"], 4);

    // A rejection is stored and replayed too, and kept no change.
    let big = json!({ "product_id": fx.cola, "quantity": 50 });
    let (s, r, b) = app.send(post("add-3", &big)).await;
    assert_eq!((s, r), (StatusCode::BAD_REQUEST, false), "{b}");
    assert_eq!(b["error"]["code"], "insufficient_inventory");
    let (s, r, b2) = app.send(post("add-3", &big)).await;
    assert_eq!((s, r), (StatusCode::BAD_REQUEST, true));
    assert_eq!(b, b2);
    let (_, _, cart) = app.send(app.req(Method::GET, "/api/cart", A1)).await;
    assert_eq!(cart["item_count"], 4);
}

async fn last_unit_is_never_oversold(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let fx = app.fx.clone();
    for round in 0..3 {
        app.set_stock(fx.store_a, fx.lotion, 1).await;
        for agent in [A1, A2] {
            select_store(&app, agent, fx.store_a).await;
            add(&app, agent, fx.lotion, 1).await;
        }
        let answers =
            join_all([A1, A2].map(|a| app.send(app.req(Method::POST, "/api/orders", a)))).await;
        let created = answers
            .iter()
            .filter(|(s, _, _)| *s == StatusCode::CREATED)
            .count();
        assert_eq!(created, 1, "round {round}: {answers:?}");
        for (s, _, b) in &answers {
            if *s != StatusCode::CREATED {
                assert_eq!(*s, StatusCode::BAD_REQUEST, "{b}");
                assert_eq!(b["error"]["code"], "insufficient_inventory");
            }
        }
        assert_eq!(app.stock(fx.store_a, fx.lotion).await, 0);
        for agent in [A1, A2] {
            let (s, _, _) = app.send(app.req(Method::DELETE, "/api/cart", agent)).await;
            assert_eq!(s, StatusCode::OK);
        }
    }
    let c = app.t.db.codec();
    let sold = app
        .count(
            "SELECT count(*) AS n FROM order_items WHERE product_id = $1",
            vec![c.uuid(fx.lotion)],
        )
        .await;
    assert_eq!(sold, 3);
}

async fn restocks_at_simulated_midnight(t: TestDb) {
    let mut config = test_config();
    config.shop.restock_level = 50;
    let app = spawn_app(t, config).await;
    let fx = app.fx.clone();
    let stores = |time: &'static str| sim(app.req(Method::GET, "/api/stores", A1), time);
    let (s, _, _) = app.send(stores("2026-03-02T10:00:00Z")).await;
    assert_eq!(s, StatusCode::OK);
    app.set_stock(fx.store_a, fx.chips, 3).await;
    let (s, _, _) = app.send(stores("2026-03-02T23:59:59Z")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        app.stock(fx.store_a, fx.chips).await,
        3,
        "no restock within a day"
    );
    let (s, _, _) = app.send(stores("2026-03-03T00:00:01Z")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        app.stock(fx.store_a, fx.chips).await,
        50,
        "the next simulated day restocks"
    );
    assert_eq!(app.stock(fx.store_b, fx.lotion).await, 50);
    let c = app.t.db.codec();
    let days = app
        .count(
            "SELECT count(*) AS n FROM sim_restocks WHERE day = $1",
            vec![c.date(chrono::NaiveDate::from_ymd_opt(2026, 3, 3).unwrap())],
        )
        .await;
    assert_eq!(days, 1);
    // Without X-Sim-Time nothing is restocked.
    app.set_stock(fx.store_a, fx.chips, 4).await;
    let (s, _, _) = app.send(app.req(Method::GET, "/api/stores", A1)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.stock(fx.store_a, fx.chips).await, 4);
}

async fn rate_limit_answers_429_with_retry_after(t: TestDb) {
    let mut config = test_config();
    config.faults.rate_limit = Some(2);
    let app = spawn_app(t, config).await;
    let mut limited = 0;
    for _ in 0..10 {
        let resp = app
            .req(Method::GET, "/api/stores", A1)
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            let retry: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
            let b: Value = resp.json().await.unwrap();
            assert_eq!(b["error"]["code"], "rate_limited");
        } else {
            assert_eq!(resp.status(), StatusCode::OK);
        }
    }
    assert!(limited >= 5, "{limited}");
    for _ in 0..10 {
        let (s, _, _) = app
            .send(app.client.get(format!("{}/health", app.base)))
            .await;
        assert_eq!(s, StatusCode::OK, "/health is exempt");
    }
    assert_eq!(app.server.faults().counters().rate_limited, limited);
    // Lifting the limit at runtime.
    let (s, _, b) = app
        .send(
            app.client
                .put(format!("{}/admin/faults", app.base))
                .json(&json!({ "rate_limit": null })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["rate_limit"], Value::Null);
    for _ in 0..10 {
        let (s, _, _) = app.send(app.req(Method::GET, "/api/stores", A1)).await;
        assert_eq!(s, StatusCode::OK);
    }
}

async fn fault_modes_counters_and_runtime_switching(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let fx = app.fx.clone();
    let admin = format!("{}/admin/faults", app.base);
    let put = |body: Value| app.client.put(&admin).json(&body);
    select_store(&app, A1, fx.store_a).await;
    let post = |key: &str| {
        app.req(Method::POST, "/api/cart/items", A1)
            .header("Idempotency-Key", key)
            .json(&json!({ "product_id": fx.cola, "quantity": 1 }))
    };

    // before: nothing happens.
    let (s, _, b) = app
        .send(put(json!({ "fail_rate": 1.0, "fail_mode": "before" })))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["fail_mode"], "before");
    let (s, _, b) = app.send(post("k-before")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(b["error"]["code"], "injected_fault");
    // after: the work is committed, the answer lost.
    app.send(put(json!({ "fail_mode": "after" }))).await;
    let (s, _, _) = app.send(post("k-after")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    app.send(put(json!({ "fail_rate": 0.0 }))).await;
    assert_eq!(
        item_count(&app, A1).await,
        1,
        "before did nothing, after committed"
    );
    // Retrying with the same keys: the lost answer is replayed, the failed-before one runs.
    let (s, r, b) = app.send(post("k-after")).await;
    assert_eq!((s, r), (StatusCode::OK, true), "{b}");
    let (s, r, _) = app.send(post("k-before")).await;
    assert_eq!((s, r), (StatusCode::OK, false));
    assert_eq!(item_count(&app, A1).await, 2);
    let c = app.server.faults().counters();
    assert_eq!(
        (c.injected_before, c.injected_after, c.replays),
        (1, 1, 1),
        "{c:?}"
    );

    // mixed with latency, seen through the admin endpoint.
    app.send(put(
        json!({ "fail_rate": 1.0, "fail_mode": "mixed", "latency_ms": "1..3" }),
    ))
    .await;
    let before = app.server.faults().counters();
    for _ in 0..20 {
        let (s, _, _) = app.send(app.req(Method::GET, "/api/stores", A1)).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    }
    let (s, _, b) = app.send(app.client.get(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["fail_mode"], "mixed");
    assert_eq!(b["latency_ms"], "1..3");
    let k = &b["counters"];
    let nb = k["injected_before"].as_u64().unwrap() - before.injected_before;
    let na = k["injected_after"].as_u64().unwrap() - before.injected_after;
    assert_eq!(nb + na, 20);
    assert!(nb > 0 && na > 0, "mixed must give both: {k}");
    assert_eq!(
        k["latency_injected"].as_u64().unwrap() - before.latency_injected,
        20
    );
    assert!(k["requests"].as_u64().unwrap() >= 27);

    // Bad settings are refused and change nothing.
    for bad in [
        json!({ "fail_rate": 2.0 }),
        json!({ "fail_mode": "sometimes" }),
        json!({ "latency_ms": "9..1" }),
        json!({ "bogus": 1 }),
    ] {
        let (s, _, b) = app.send(put(bad.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
        assert!(b["error"]["code"].is_string());
    }
    assert_eq!(app.server.faults().settings().fail_mode, FailMode::Mixed);
    // Reset zeroes the counters; the library handle switches settings too.
    let (s, _, b) = app.send(app.client.post(format!("{admin}/reset"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["counters"]["requests"], 0);
    assert_eq!(b["counters"]["injected_after"], 0);
    let mut settings = app.server.faults().settings();
    settings.fail_rate = 0.0;
    app.server.faults().set(settings).unwrap();
    let (s, _, _) = app.send(app.req(Method::GET, "/api/stores", A1)).await;
    assert_eq!(s, StatusCode::OK);

    // Without a known loopback peer, admin is forbidden.
    use tower::ServiceExt;
    let (router, _) =
        shopsim::server::build_router(app.t.db.clone(), ServerConfig::default()).unwrap();
    let resp = router
        .oneshot(
            axum::http::Request::get("/admin/faults")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

async fn unknown_or_missing_agent_is_401_json(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let (s, _, b) = app.send(app.req(Method::GET, "/api/cart", "")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b,
        json!({ "error": { "code": "unauthorized", "message": "missing bearer token" } })
    );
    let (s, _, b) = app
        .send(app.req(Method::GET, "/api/cart", "agent_999"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b,
        json!({ "error": { "code": "unauthorized", "message": "Unknown agent" } })
    );
    let (s, _, b) = app
        .send(
            app.client
                .get(format!("{}/api/cart", app.base))
                .header("Authorization", "Basic Zm9vOmJhcg=="),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"]["message"], "Unknown agent");
    // A write is refused before anything runs.
    let (s, _, _) = app
        .send(app.req(Method::POST, "/api/orders", "nobody"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

async fn bad_input_gets_4xx_json_never_500(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let fx = app.fx.clone();
    let post_raw = |path: &str, body: &'static str| {
        app.req(Method::POST, path, A1)
            .header("Content-Type", "application/json")
            .body(body)
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            post_raw("/api/cart/items", "{bad"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            post_raw("/api/cart/items", ""),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            post_raw("/api/cart/items", "{}"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            post_raw("/api/cart/items", r#"{"product_id":"nope","quantity":1}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            post_raw(
                "/api/cart/items",
                r#"{"product_id":"7b0b6c1e-0000-4000-8000-000000000000","quantity":"two"}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            app.req(Method::POST, "/api/cart/items", A1)
                .json(&json!({ "product_id": fx.cola, "quantity": 0 })),
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            app.req(Method::POST, "/api/cart/items", A1)
                .json(&json!({ "product_id": fx.cola, "quantity": -3 })),
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            app.req(Method::POST, "/api/cart/items", A1)
                .json(&json!({ "product_id": fx.cola, "quantity": 1 })),
            StatusCode::BAD_REQUEST,
            "no_store_selected",
        ),
        (
            app.req(Method::POST, "/api/orders", A1),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            app.req(Method::PUT, "/api/user/store", A1)
                .json(&json!({ "store_id": Uuid::new_v4() })),
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            app.req(Method::GET, "/api/products/not-a-uuid", A1),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            app.req(
                Method::GET,
                &format!("/api/products/{}", Uuid::new_v4()),
                A1,
            ),
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            app.req(Method::GET, "/api/products?limit=0", A1),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        ),
        (
            app.req(Method::GET, "/api/products?limit=abc", A1),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            app.req(Method::GET, "/api/products?offset=-1", A1),
            StatusCode::BAD_REQUEST,
            "invalid_offset",
        ),
        (
            app.req(Method::GET, "/api/orders?limit=100000", A1),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        ),
        (
            app.req(Method::GET, "/api/offers/wallet/xyz", A1),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            app.req(
                Method::GET,
                &format!("/api/offers/wallet/{}", Uuid::new_v4()),
                A1,
            ),
            StatusCode::NOT_FOUND,
            "user_not_found",
        ),
        (
            app.req(Method::POST, "/api/offers/assign", A1)
                .json(&json!({ "user_id": Uuid::new_v4() })),
            StatusCode::NOT_FOUND,
            "user_not_found",
        ),
        (
            app.req(Method::GET, "/api/nope", A1),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.req(Method::GET, "/", ""),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.req(Method::DELETE, "/api/products", A1),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            app.req(Method::PATCH, "/api/orders", A1),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            sim(app.req(Method::GET, "/api/cart", A1), "yesterday noon"),
            StatusCode::BAD_REQUEST,
            "invalid_sim_time",
        ),
        (
            app.req(Method::GET, "/api/cart", A1)
                .header("X-Shopping-Session-Id", "s-1"),
            StatusCode::BAD_REQUEST,
            "invalid_session_id",
        ),
        (
            app.req(Method::DELETE, "/api/cart", A1)
                .header("Idempotency-Key", ""),
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
        ),
    ];
    for (i, (rb, want, code)) in cases.into_iter().enumerate() {
        let (s, _, b) = app.send(rb).await;
        assert_eq!(s, want, "case {i}: {b}");
        assert!(b["error"]["message"].is_string(), "case {i}: {b}");
        if !code.is_empty() {
            assert_eq!(b["error"]["code"], code, "case {i}: {b}");
        }
    }
    // With a store selected: empty cart, coupon not in the wallet, unknown product.
    select_store(&app, A1, fx.store_a).await;
    let (s, _, b) = app.send(app.req(Method::POST, "/api/orders", A1)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["code"], "empty_cart");
    add(&app, A1, fx.chips, 1).await;
    let (s, _, b) = app
        .send(
            app.req(Method::POST, "/api/cart/coupons", A1)
                .json(&json!({ "coupon_id": fx.inactive_coupon })),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(b["error"]["code"], "offer_not_in_wallet");
    let (s, _, _) = app.send(app.req(Method::DELETE, "/api/cart", A1)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = app
        .send(
            app.req(Method::POST, "/api/cart/items", A1)
                .json(&json!({ "product_id": Uuid::new_v4(), "quantity": 1 })),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (_, _, cart) = app.send(app.req(Method::GET, "/api/cart", A1)).await;
    assert_eq!(cart["item_count"], 0);
}

/// A request whose key row is still uncommitted (the first request is running, or its server
/// died mid-request) makes a duplicate wait: PostgreSQL answers 409 after the lock timeout;
/// SQLite serialises writers, so the duplicate waits. Once the holder rolls back (as a killed
/// server's transaction does) the key is free and the request runs normally.
async fn key_held_by_an_unfinished_request_is_409_then_free(t: TestDb) {
    let mut config = test_config();
    config.idempotency_lock_timeout = std::time::Duration::from_millis(200);
    let app = spawn_app(t, config).await;
    let fx = app.fx.clone();
    select_store(&app, A1, fx.store_a).await;
    let post = || {
        app.req(Method::POST, "/api/cart/items", A1)
            .header("Idempotency-Key", "held")
            .json(&json!({ "product_id": fx.cola, "quantity": 1 }))
    };
    let c = app.t.db.codec();
    let holder = app.t.db.write().await.unwrap();
    holder
        .exec(
            "INSERT INTO sim_idempotency (user_id, idem_key, request_hash, state, created_at) \
             VALUES ($1, 'held', 'x', 'in_flight', $2)",
            vec![c.uuid(fx.user1), c.ts(chrono::Utc::now())],
        )
        .await
        .unwrap();
    if app.t.backend() == shopsim::store::Backend::Postgres {
        let (s, _, b) = app.send(post()).await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["error"]["code"], "idempotency_in_flight");
        assert_eq!(app.server.faults().counters().conflicts_409, 1);
        holder.rollback().await.unwrap();
        let (s, r, b) = app.send(post()).await;
        assert_eq!((s, r), (StatusCode::OK, false), "{b}");
    } else {
        let pending = tokio::spawn(post().send());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !pending.is_finished(),
            "the duplicate must wait for the holder"
        );
        holder.rollback().await.unwrap();
        let resp = pending.await.unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(item_count(&app, A1).await, 1);
    let (s, r, _) = app.send(post()).await;
    assert_eq!((s, r), (StatusCode::OK, true));
}

/// The short lock timeout is for the key's claim only: a keyed write's own work waits for the
/// locks it needs as long as they are held (here: the product row its new cart line refers
/// to, held three times the key's timeout by another transaction).
async fn the_work_waits_for_locks_longer_than_the_key_timeout(t: TestDb) {
    let mut config = test_config();
    config.idempotency_lock_timeout = std::time::Duration::from_millis(200);
    let app = spawn_app(t, config).await;
    let fx = app.fx.clone();
    select_store(&app, A1, fx.store_a).await;
    let c = app.t.db.codec();
    let holder = app.t.db.write().await.unwrap();
    holder
        .query_opt(
            &format!("SELECT id FROM products WHERE id = $1{}", c.for_update()),
            vec![c.uuid(fx.cola)],
        )
        .await
        .unwrap();
    let pending = tokio::spawn(
        app.req(Method::POST, "/api/cart/items", A1)
            .header("Idempotency-Key", "slow")
            .json(&json!({ "product_id": fx.cola, "quantity": 1 }))
            .send(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(!pending.is_finished(), "the work must wait for the lock");
    holder.rollback().await.unwrap();
    let resp = pending.await.unwrap().unwrap();
    let status = resp.status();
    assert_eq!(status, StatusCode::OK, "{}", resp.text().await.unwrap());
    assert_eq!(item_count(&app, A1).await, 1);
}

/// A database that cannot be reached is 503 `database_unavailable` with a generic message.
async fn unreachable_database_is_503_json(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let (s, _, _) = app.send(app.req(Method::GET, "/api/cart", A1)).await;
    assert_eq!(s, StatusCode::OK);
    // Closing a clone closes the shared pool: every later checkout fails.
    app.t.db.clone().close().await;
    for rb in [
        app.req(Method::GET, "/api/cart", A1),
        app.req(Method::GET, "/api/cart", A2),
        app.req(Method::POST, "/api/cart/items", A1)
            .header("Idempotency-Key", "k")
            .json(&json!({ "product_id": app.fx.cola, "quantity": 1 })),
    ] {
        let (s, _, b) = app.send(rb).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
        assert_eq!(b["error"]["code"], "database_unavailable");
        assert!(
            !b["error"]["message"].as_str().unwrap().contains("pool"),
            "{b}"
        );
    }
    let (s, _, _) = app
        .send(app.client.get(format!("{}/health", app.base)))
        .await;
    assert_eq!(s, StatusCode::OK);
}

/// `DELETE /api/cart` with a session header marks the session abandoned (at simulated time).
async fn clearing_the_cart_abandons_the_session(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let fx = app.fx.clone();
    let session = Uuid::new_v4();
    select_store(&app, A1, fx.store_a).await;
    let with_session = |rb: reqwest::RequestBuilder, time: &str| {
        sim(rb, time).header("X-Shopping-Session-Id", session.to_string())
    };
    let (s, _, b) = app
        .send(with_session(
            app.req(Method::POST, "/api/cart/items", A1)
                .json(&json!({ "product_id": fx.vitamins, "quantity": 1 })),
            "2026-04-01T18:00:00Z",
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, b) = app
        .send(with_session(
            app.req(Method::DELETE, "/api/cart", A1),
            "2026-04-01T18:05:00Z",
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items_removed"], 1);
    let c = app.t.db.codec();
    let tx = app.t.db.read().await.unwrap();
    let row = tx
        .query_one(
            "SELECT status, ended_at FROM shopping_sessions WHERE id = $1",
            vec![c.uuid(session)],
        )
        .await
        .unwrap();
    assert_eq!(row.string("status").unwrap(), "abandoned");
    assert_eq!(
        row.opt_ts("ended_at").unwrap(),
        Some(at("2026-04-01T18:05:00Z"))
    );
    let n = tx
        .query_one(
            "SELECT count(*) AS n FROM shopping_session_events WHERE session_id = $1 \
             AND event_type = 'cart_abandon' AND created_at = $2",
            vec![c.uuid(session), c.ts(at("2026-04-01T18:05:00Z"))],
        )
        .await
        .unwrap()
        .i64("n")
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(n, 1);
}

/// A write into another user's session is refused (400 `session_user_mismatch`) with none of
/// its work kept, also under an `Idempotency-Key` (the rejection is stored and replayed); the
/// owner's events are numbered 1, 2, 3 in their ids however the server writes them (on
/// PostgreSQL one statement writes the session row and computes the ids).
async fn another_users_session_is_refused_and_event_ids_are_numbered(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    let fx = app.fx.clone();
    let session = Uuid::new_v4();
    select_store(&app, A1, fx.store_a).await;
    select_store(&app, A2, fx.store_a).await;
    let in_session = |agent: &str, method: Method, path: &str, time: &str| {
        sim(app.req(method, path, agent), time).header("X-Shopping-Session-Id", session.to_string())
    };
    let add = |agent: &str, time: &str| {
        in_session(agent, Method::POST, "/api/cart/items", time)
            .json(&json!({ "product_id": fx.vitamins, "quantity": 1 }))
    };
    let (s, _, b) = app.send(add(A1, "2026-04-01T18:00:00Z")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let product = format!("/api/products/{}", fx.chips);
    let (s, _, b) = app
        .send(in_session(
            A1,
            Method::GET,
            &product,
            "2026-04-01T18:02:00Z",
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    for key in ["intruder-1", ""] {
        let rb = add(A2, "2026-04-01T18:03:00Z");
        let rb = if key.is_empty() {
            rb
        } else {
            rb.header("Idempotency-Key", key)
        };
        let (s, replayed, b) = app.send(rb).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"]["code"], "session_user_mismatch", "{b}");
        assert!(!replayed);
    }
    let (s, replayed, b) = app
        .send(add(A2, "2026-04-01T18:03:00Z").header("Idempotency-Key", "intruder-1"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["code"], "session_user_mismatch", "{b}");
    assert!(replayed, "the stored rejection is replayed");
    assert_eq!(item_count(&app, A2).await, 0);

    let (s, _, b) = app
        .send(in_session(
            A1,
            Method::POST,
            "/api/orders/checkout",
            "2026-04-01T18:05:00Z",
        ))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let c = app.t.db.codec();
    let tx = app.t.db.read().await.unwrap();
    let row = tx
        .query_one(
            "SELECT user_id, store_id, status, started_at, last_seen_at, ended_at \
             FROM shopping_sessions WHERE id = $1",
            vec![c.uuid(session)],
        )
        .await
        .unwrap();
    assert_eq!(row.uuid("user_id").unwrap(), fx.user1);
    assert_eq!(row.opt_uuid("store_id").unwrap(), Some(fx.store_a));
    assert_eq!(row.string("status").unwrap(), "completed");
    assert_eq!(row.ts("started_at").unwrap(), at("2026-04-01T18:00:00Z"));
    assert_eq!(row.ts("last_seen_at").unwrap(), at("2026-04-01T18:05:00Z"));
    assert_eq!(
        row.opt_ts("ended_at").unwrap(),
        Some(at("2026-04-01T18:05:00Z"))
    );
    let events = tx
        .query(
            "SELECT id, user_id, event_type FROM shopping_session_events \
             WHERE session_id = $1 ORDER BY created_at",
            vec![c.uuid(session)],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let events: Vec<(Uuid, Uuid, String)> = events
        .iter()
        .map(|r| {
            (
                r.uuid("id").unwrap(),
                r.uuid("user_id").unwrap(),
                r.string("event_type").unwrap(),
            )
        })
        .collect();
    let expected: Vec<(Uuid, Uuid, String)> =
        ["cart_add_item", "view_product", "checkout_complete"]
            .iter()
            .enumerate()
            .map(|(n, kind)| {
                (
                    shopsim::ids::child_uuid(&session, "event", &(n + 1).to_string()),
                    fx.user1,
                    kind.to_string(),
                )
            })
            .collect();
    assert_eq!(events, expected);
}

/// The server's own `/metrics`: requests by method, route (the route pattern, not the path)
/// and status class, with latency; none of the simulation host's metrics.
async fn server_metrics_count_requests_by_route_and_status(t: TestDb) {
    let app = spawn_app(t, test_config()).await;
    select_store(&app, A1, app.fx.store_a).await;
    select_store(&app, A1, app.fx.store_b).await;
    let (s, _, _) = app.send(app.req(Method::GET, "/api/cart", "")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let resp = app.req(Method::GET, "/metrics", "").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = resp.text().await.unwrap();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        line(r#"shopsim_server_requests_total{method="PUT",route="/api/user/store",status="2xx"}"#),
        "2"
    );
    assert_eq!(
        line(r#"shopsim_server_requests_total{method="GET",route="/api/cart",status="4xx"}"#),
        "1"
    );
    assert_eq!(
        line(
            r#"shopsim_server_request_duration_seconds_count{method="PUT",route="/api/user/store"}"#
        ),
        "2"
    );
    assert!(text.ends_with("# EOF\n"));
    assert!(
        !text.contains("shopsim_requests_total"),
        "host metrics in the server's"
    );
}
