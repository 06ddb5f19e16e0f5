//! A running reference server over a fresh test database with a small seeded catalog.

#![allow(dead_code)]

use chrono::{DateTime, Utc};
use reqwest::{Method, RequestBuilder, StatusCode};
use sea_orm::Value as DbValue;
use serde_json::Value;
use shopsim::money::Money;
use shopsim::server::{self, RunningServer, ServerConfig};
use shopsim::store::Db;
use uuid::Uuid;

use crate::support::TestDb;

/// Ids of the seeded catalog.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub store_a: Uuid,
    pub store_b: Uuid,
    /// Snacks / Crunchy, 4.00, 10 units in each store.
    pub chips: Uuid,
    /// Beverages / Fizz, 2.50, 10 units in each store.
    pub cola: Uuid,
    /// Health / Vita, 12.00, 10 units in each store.
    pub vitamins: Uuid,
    /// Beauty / Glow, 9.99, one unit in store A only.
    pub lotion: Uuid,
    /// Category Snacks, 20 %.
    pub snacks_coupon: Uuid,
    /// Brand Fizz, 1.00 off.
    pub fizz_coupon: Uuid,
    /// Frontstore 10 % (min 5.00, max 5.00).
    pub front_coupon: Uuid,
    /// Frontstore 2.00 off from 50.00.
    pub front_big_coupon: Uuid,
    /// A coupon nobody is ever given.
    pub inactive_coupon: Uuid,
    pub user1: Uuid,
    pub user2: Uuid,
}

/// The server under test.
pub struct TestApp {
    pub t: TestDb,
    pub server: RunningServer,
    pub base: String,
    pub client: reqwest::Client,
    pub fx: Fixture,
}

/// A simulated time.
pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The default configuration of API tests: nobody in the holdout group (so every test user has
/// offers).
pub fn test_config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.shop.holdout_share = 0.0;
    c
}

/// Seeds the catalog and starts a server on 127.0.0.1:0.
pub async fn spawn_app(t: TestDb, config: ServerConfig) -> TestApp {
    let fx = seed(&t.db).await;
    let server = server::start(t.db.clone(), config)
        .await
        .expect("start server");
    let base = server.base_url();
    // reqwest is built without a default TLS provider; it wants one even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    TestApp {
        t,
        server,
        base,
        client,
        fx,
    }
}

impl TestApp {
    /// A request as `agent` (no auth header when `agent` is empty).
    pub fn req(&self, method: Method, path: &str, agent: &str) -> RequestBuilder {
        let rb = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if agent.is_empty() {
            rb
        } else {
            rb.header("Authorization", format!("Bearer dev:{agent}"))
        }
    }

    /// Sends and returns status, `Idempotent-Replayed` and the JSON body (Null if none).
    pub async fn send(&self, rb: RequestBuilder) -> (StatusCode, bool, Value) {
        let resp = rb.send().await.expect("request");
        let status = resp.status();
        let replayed = resp.headers().get("idempotent-replayed").is_some();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("non-JSON answer ({status}): {text}: {e}"))
        };
        (status, replayed, body)
    }

    /// A single number from SQL.
    pub async fn count(&self, sql: &str, values: Vec<DbValue>) -> i64 {
        let tx = self.t.db.read().await.unwrap();
        let n = tx.query_one(sql, values).await.unwrap().i64("n").unwrap();
        tx.commit().await.unwrap();
        n
    }

    /// Units of `product` in `store`.
    pub async fn stock(&self, store: Uuid, product: Uuid) -> i64 {
        let c = self.t.db.codec();
        self.count(
            "SELECT quantity AS n FROM store_inventory WHERE store_id = $1 AND product_id = $2",
            vec![c.uuid(store), c.uuid(product)],
        )
        .await
    }

    /// Sets the units of `product` in `store`.
    pub async fn set_stock(&self, store: Uuid, product: Uuid, quantity: i64) {
        let c = self.t.db.codec();
        let tx = self.t.db.write().await.unwrap();
        tx.exec(
            "UPDATE store_inventory SET quantity = $3 WHERE store_id = $1 AND product_id = $2",
            vec![c.uuid(store), c.uuid(product), quantity.into()],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

/// Seeds two stores, four products with inventory, five coupons and two agents with users.
pub async fn seed(db: &Db) -> Fixture {
    let fx = Fixture {
        store_a: Uuid::new_v4(),
        store_b: Uuid::new_v4(),
        chips: Uuid::new_v4(),
        cola: Uuid::new_v4(),
        vitamins: Uuid::new_v4(),
        lotion: Uuid::new_v4(),
        snacks_coupon: Uuid::new_v4(),
        fizz_coupon: Uuid::new_v4(),
        front_coupon: Uuid::new_v4(),
        front_big_coupon: Uuid::new_v4(),
        inactive_coupon: Uuid::new_v4(),
        user1: Uuid::new_v4(),
        user2: Uuid::new_v4(),
    };
    let c = db.codec();
    let now = at("2026-01-01T00:00:00Z");
    let tx = db.write().await.unwrap();
    for (id, name) in [(fx.store_a, "Test Store A"), (fx.store_b, "Test Store B")] {
        tx.exec(
            "INSERT INTO stores (id, name) VALUES ($1, $2)",
            vec![c.uuid(id), name.into()],
        )
        .await
        .unwrap();
    }
    let products = [
        (
            fx.chips,
            "SKU-CHIPS",
            "Apple Chips",
            400,
            "Snacks",
            "Crunchy",
            10,
            10,
        ),
        (
            fx.cola,
            "SKU-COLA",
            "Cola",
            250,
            "Beverages",
            "Fizz",
            10,
            10,
        ),
        (
            fx.vitamins,
            "SKU-VITC",
            "Vitamin C",
            1200,
            "Health",
            "Vita",
            10,
            10,
        ),
        (
            fx.lotion,
            "SKU-LOTN",
            "Last Unit Lotion",
            999,
            "Beauty",
            "Glow",
            1,
            0,
        ),
    ];
    for (id, sku, name, cents, category, brand, qa, qb) in products {
        tx.exec(
            "INSERT INTO products (id, name, description, price, rating, review_count, category, \
             brand, in_stock, sku) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            vec![
                c.uuid(id),
                name.into(),
                format!("{name} for tests").into(),
                c.money(Money::cents(cents)),
                4.5f64.into(),
                12i64.into(),
                category.into(),
                brand.into(),
                true.into(),
                sku.into(),
            ],
        )
        .await
        .unwrap();
        for (store, q) in [(fx.store_a, qa), (fx.store_b, qb)] {
            tx.exec(
                "INSERT INTO store_inventory (store_id, product_id, quantity) VALUES ($1, $2, $3)",
                vec![c.uuid(store), c.uuid(id), i64::from(q).into()],
            )
            .await
            .unwrap();
        }
    }
    /// id, type, target, discount type, value (cents), min purchase, max discount, active.
    type CouponRow = (
        Uuid,
        &'static str,
        Option<&'static str>,
        &'static str,
        i64,
        Option<i64>,
        Option<i64>,
        bool,
    );
    let coupons: [CouponRow; 5] = [
        (
            fx.snacks_coupon,
            "category",
            Some("Snacks"),
            "percent",
            2000,
            None,
            None,
            true,
        ),
        (
            fx.fizz_coupon,
            "brand",
            Some("Fizz"),
            "fixed",
            100,
            None,
            None,
            true,
        ),
        (
            fx.front_coupon,
            "frontstore",
            None,
            "percent",
            1000,
            Some(500),
            Some(500),
            true,
        ),
        (
            fx.front_big_coupon,
            "frontstore",
            None,
            "fixed",
            200,
            Some(5000),
            None,
            true,
        ),
        (
            fx.inactive_coupon,
            "category",
            Some("Health"),
            "percent",
            5000,
            None,
            None,
            false,
        ),
    ];
    for (i, (id, kind, target, dtype, value, min, max, active)) in coupons.into_iter().enumerate() {
        tx.exec(
            "INSERT INTO coupons (id, type, discount_details, category_or_brand, discount_type, \
             discount_value, min_purchase_amount, max_discount, expiration_date, is_active, code) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            vec![
                c.uuid(id),
                kind.into(),
                format!("{dtype} {value}").into(),
                target.map(str::to_string).into(),
                dtype.into(),
                // Percents are stored like money: 20 % is 20.00.
                c.money(Money::cents(value)),
                c.opt_money(min.map(Money::cents)),
                c.opt_money(max.map(Money::cents)),
                c.opt_ts(None),
                active.into(),
                format!("TEST-{i}").into(),
            ],
        )
        .await
        .unwrap();
    }
    for (n, user) in [(1, fx.user1), (2, fx.user2)] {
        tx.exec(
            "INSERT INTO users (id, email, full_name, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)",
            vec![
                c.uuid(user),
                format!("agent_00{n}@test.invalid").into(),
                format!("Agent {n}").into(),
                c.ts(now),
            ],
        )
        .await
        .unwrap();
        tx.exec(
            "INSERT INTO agents (id, agent_id, user_id, is_active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
            vec![
                c.uuid(Uuid::new_v4()),
                format!("agent_00{n}").into(),
                c.uuid(user),
                true.into(),
                c.ts(now),
            ],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    fx
}
