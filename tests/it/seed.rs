//! `shopsim seed`: idempotent, deterministic catalog loading, agents, CSV catalogs, and reading
//! the catalog back, on SQLite and PostgreSQL.

use chrono::{TimeZone, Utc};
use shopsim::catalog::{
    self, AgentOptions, CatalogSpec, LoadError, PersonaRecord, agent_name, count_agents,
    create_agents, generate, list_agents, load_catalog, seed_catalog,
};
use shopsim::store::{Backend, Db};

use crate::backend_tests;
use crate::support::{TestDb, shopsim_json};

backend_tests!(
    seeding_twice_changes_nothing,
    same_seed_gives_identical_databases,
    catalog_round_trips_exactly,
    another_seed_is_refused,
    agents_are_created_once,
    personas_fill_agent_columns,
    csv_catalog_end_to_end,
    works_without_extension_columns,
    cli_seed_creates_catalog_and_agents,
    cli_seed_stores_personas_of_a_persona_set,
);

/// Column kinds for a generic, backend-neutral dump.
#[derive(Clone, Copy)]
enum K {
    U,
    S,
    M,
    F,
    I,
    B,
    T,
    J,
}

const TABLES: &[(&str, &[(&str, K)])] = &[
    ("stores", &[("id", K::U), ("name", K::S)]),
    (
        "products",
        &[
            ("id", K::U),
            ("sku", K::S),
            ("name", K::S),
            ("description", K::S),
            ("price", K::M),
            ("rating", K::F),
            ("review_count", K::I),
            ("category", K::S),
            ("brand", K::S),
            ("in_stock", K::B),
        ],
    ),
    (
        "store_inventory",
        &[("store_id", K::U), ("product_id", K::U), ("quantity", K::I)],
    ),
    (
        "coupons",
        &[
            ("id", K::U),
            ("code", K::S),
            ("type", K::S),
            ("discount_details", K::S),
            ("category_or_brand", K::S),
            ("discount_type", K::S),
            ("discount_value", K::M),
            ("min_purchase_amount", K::M),
            ("max_discount", K::M),
            ("expiration_date", K::T),
            ("is_active", K::B),
        ],
    ),
    (
        "users",
        &[
            ("id", K::U),
            ("email", K::S),
            ("full_name", K::S),
            ("created_at", K::T),
            ("updated_at", K::T),
        ],
    ),
    (
        "agents",
        &[
            ("id", K::U),
            ("agent_id", K::S),
            ("user_id", K::U),
            ("is_active", K::B),
            ("age", K::I),
            ("income_bracket", K::S),
            ("has_children", K::B),
            ("coupon_affinity", K::F),
            ("preferred_categories", K::S),
            ("weekly_budget", K::M),
            ("created_at", K::T),
        ],
    ),
    (
        "sim_personas",
        &[
            ("agent_id", K::S),
            ("persona_set", K::S),
            ("seed", K::I),
            ("attributes", K::J),
        ],
    ),
];

/// Every row of every catalog and agent table, as sorted text lines.
async fn dump(db: &Db) -> Vec<String> {
    let tx = db.read().await.unwrap();
    let mut out = Vec::new();
    for (table, cols) in TABLES {
        let names: Vec<String> = cols.iter().map(|(c, _)| format!("\"{c}\"")).collect();
        let sql = format!("SELECT {} FROM {table}", names.join(", "));
        let mut lines = Vec::new();
        for r in tx.query(&sql, vec![]).await.unwrap() {
            let mut line = format!("{table}:");
            for (c, k) in *cols {
                let v = match k {
                    K::U => format!("{:?}", r.opt_uuid(c).unwrap()),
                    K::S => format!("{:?}", r.opt_string(c).unwrap()),
                    K::M => format!("{:?}", r.opt_money(c).unwrap()),
                    K::F => format!("{:?}", r.opt_f64(c).unwrap()),
                    K::I => format!("{:?}", r.opt_i64(c).unwrap()),
                    K::B => format!("{:?}", r.bool(c).unwrap_or(false)),
                    K::T => format!("{:?}", r.opt_ts(c).unwrap()),
                    K::J => r.json(c).unwrap().to_string(),
                };
                line.push_str(&format!(" {c}={v}"));
            }
            lines.push(line);
        }
        lines.sort();
        out.extend(lines);
    }
    tx.commit().await.unwrap();
    out
}

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap()
}

async fn seeding_twice_changes_nothing(t: TestDb) {
    let c = generate(42);
    let first = seed_catalog(&t.db, &c).await.unwrap();
    assert_eq!(first.stores.inserted, c.stores.len() as u64);
    assert_eq!(first.products.inserted, c.products.len() as u64);
    assert_eq!(first.inventory.inserted, c.inventory.len() as u64);
    assert_eq!(first.coupons.inserted, c.coupons.len() as u64);
    assert_eq!(first.products.existing, 0);
    create_agents(&t.db, &AgentOptions::new(42, 5, t0()), None, &|_, _| {})
        .await
        .unwrap();
    let before = dump(&t.db).await;
    assert!(before.len() > 4000, "{} rows", before.len());

    let second = seed_catalog(&t.db, &c).await.unwrap();
    assert_eq!(second.inserted(), 0, "{second:?}");
    assert_eq!(second.products.existing, c.products.len() as u64);
    assert_eq!(second.inventory.existing, c.inventory.len() as u64);
    let agents = create_agents(&t.db, &AgentOptions::new(42, 5, t0()), None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(agents.agents_inserted, 0);
    assert_eq!(agents.users_inserted, 0);
    assert_eq!(agents.agents_existing, 5);
    assert_eq!(dump(&t.db).await, before);
}

async fn same_seed_gives_identical_databases(t: TestDb) {
    let other = match t.backend() {
        Backend::Sqlite => TestDb::sqlite().await,
        Backend::Postgres => TestDb::postgres().await.unwrap(),
    };
    for db in [&t.db, &other.db] {
        seed_catalog(db, &generate(7)).await.unwrap();
        create_agents(db, &AgentOptions::new(7, 3, t0()), None, &|_, _| {})
            .await
            .unwrap();
    }
    let (a, b) = (dump(&t.db).await, dump(&other.db).await);
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

async fn catalog_round_trips_exactly(t: TestDb) {
    let c = generate(1234);
    seed_catalog(&t.db, &c).await.unwrap();
    let tx = t.db.read().await.unwrap();
    let back = load_catalog(&tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(back.stores, c.stores);
    assert_eq!(back.products, c.products);
    assert_eq!(back.coupons, c.coupons);
    assert_eq!(back.inventory, c.inventory);
}

async fn another_seed_is_refused(t: TestDb) {
    seed_catalog(&t.db, &generate(1)).await.unwrap();
    let before = dump(&t.db).await;
    let err = seed_catalog(&t.db, &generate(2)).await.unwrap_err();
    assert!(matches!(err, LoadError::Conflict { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("another seed"), "{msg}");
    // Nothing of the refused catalog was kept (one transaction).
    assert_eq!(dump(&t.db).await, before);
}

async fn agents_are_created_once(t: TestDb) {
    let calls = std::sync::Mutex::new(Vec::new());
    let opts = AgentOptions {
        batch_size: 5,
        ..AgentOptions::new(42, 12, t0())
    };
    let report = create_agents(&t.db, &opts, None, &|done, total| {
        calls.lock().unwrap().push((done, total))
    })
    .await
    .unwrap();
    assert_eq!(report.agents_inserted, 12);
    assert_eq!(report.users_inserted, 12);
    assert_eq!(*calls.lock().unwrap(), vec![(5, 12), (10, 12), (12, 12)]);
    assert_eq!(count_agents(&t.db).await.unwrap(), 12);
    let listed = list_agents(&t.db, 100).await.unwrap();
    let names: Vec<String> = listed.iter().map(|a| a.agent_id.clone()).collect();
    let expected: Vec<String> = (1..=12).map(agent_name).collect();
    assert_eq!(names, expected);
    assert_eq!(names[0], "agent_001");
    assert_eq!(
        listed[0].user_id,
        shopsim::ids::stable_uuid(42, "user", "agent_001")
    );
    assert!(listed.iter().all(|a| a.is_active));
    assert_eq!(list_agents(&t.db, 3).await.unwrap().len(), 3);
    // Growing the population keeps the first twelve and adds the rest.
    let more = create_agents(&t.db, &AgentOptions::new(42, 15, t0()), None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!((more.agents_inserted, more.agents_existing), (3, 12));
    let tx = t.db.read().await.unwrap();
    let row = tx
        .query_one(
            "SELECT u.email, u.created_at FROM users u JOIN agents a ON a.user_id = u.id WHERE a.agent_id = $1",
            vec!["agent_015".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        row.string("email").unwrap(),
        "agent_015@agents.shopsim.local"
    );
    assert_eq!(row.ts("created_at").unwrap(), t0());
    tx.commit().await.unwrap();
}

async fn personas_fill_agent_columns(t: TestDb) {
    let source = |agent_id: &str| {
        Some(PersonaRecord {
            persona_set: "test-set".into(),
            script_version: "v1".into(),
            attributes: serde_json::json!({
                "age": 30 + agent_id.len(),
                "income_bracket": "medium",
                "has_children": true,
                "coupon_affinity": 0.25,
                "preferred_categories": ["Snacks", "Pet Care"],
                "weekly_budget": 42.5,
                "favourite_colour": "green",
            }),
        })
    };
    let report = create_agents(
        &t.db,
        &AgentOptions::new(9, 2, t0()),
        Some(&source),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(report.personas_inserted, 2);
    let tx = t.db.read().await.unwrap();
    let r = tx
        .query_one(
            "SELECT age, income_bracket, has_children, coupon_affinity, preferred_categories, \
             weekly_budget, gender FROM agents WHERE agent_id = 'agent_002'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r.i64("age").unwrap(), 39);
    assert_eq!(r.string("income_bracket").unwrap(), "medium");
    assert!(r.bool("has_children").unwrap());
    assert_eq!(r.f64("coupon_affinity").unwrap(), 0.25);
    assert_eq!(r.string("preferred_categories").unwrap(), "Snacks,Pet Care");
    assert_eq!(
        r.money("weekly_budget").unwrap(),
        shopsim::money::Money::cents(4250)
    );
    assert_eq!(r.opt_string("gender").unwrap(), None);
    let p = tx
        .query_one(
            "SELECT persona_set, seed, script_version, attributes FROM sim_personas WHERE agent_id = 'agent_002'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(p.string("persona_set").unwrap(), "test-set");
    assert_eq!(p.i64("seed").unwrap(), 9);
    assert_eq!(p.json("attributes").unwrap()["favourite_colour"], "green");
    tx.commit().await.unwrap();

    // A wrongly typed attribute is refused with the agent and key named, and nothing is kept.
    let bad = |_: &str| {
        Some(PersonaRecord {
            persona_set: "test-set".into(),
            script_version: "v1".into(),
            attributes: serde_json::json!({"age": "thirty"}),
        })
    };
    let err = create_agents(
        &t.db,
        &AgentOptions::new(9, 3, t0()),
        Some(&bad),
        &|_, _| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("agent_001") && err.contains("`age`"), "{err}");
    assert_eq!(count_agents(&t.db).await.unwrap(), 2);
}

async fn csv_catalog_end_to_end(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("products.csv");
    std::fs::write(
        &path,
        "sku,name,category,brand,price,description,rating,review_count,in_stock\n\
         X-2,\"Crunchville Chips, Sea Salt\",snacks,Crunchville,3.49,Crispy,4.2,120,true\n\
         X-1,Nuvia Ibuprofen 100 ct,Pain Relief,Nuvia,9.99,,,,\n\
         X-3,Pawsome Dog Food 14 lb,Pet Care,Pawsome,24.10,,3.5,8,no\n",
    )
    .unwrap();
    let spec = CatalogSpec {
        stores: 3,
        coupons: 20,
        ..CatalogSpec::default()
    };
    let c = catalog::catalog_from_csv(&path, 5, &spec).unwrap();
    let report = seed_catalog(&t.db, &c).await.unwrap();
    assert_eq!(report.products.inserted, 3);
    assert_eq!(report.inventory.inserted, 9);
    let tx = t.db.read().await.unwrap();
    let back = load_catalog(&tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(back, c);
    let skus: Vec<&str> = back.products.iter().map(|p| p.sku.as_str()).collect();
    assert_eq!(skus, ["X-1", "X-2", "X-3"]);
    assert_eq!(back.products[1].name, "Crunchville Chips, Sea Salt");
    assert_eq!(back.products[1].category, "Snacks");
    assert_eq!(back.products[2].price, shopsim::money::Money::cents(2410));
    assert!(!back.products[2].in_stock);
    for k in &back.coupons {
        if let Some(target) = &k.category_or_brand {
            assert!(
                [
                    "Snacks",
                    "Pain Relief",
                    "Pet Care",
                    "Crunchville",
                    "Nuvia",
                    "Pawsome"
                ]
                .contains(&target.as_str()),
                "{target}"
            );
        }
    }
    // Same file, same seed: nothing new.
    let again = seed_catalog(&t.db, &catalog::catalog_from_csv(&path, 5, &spec).unwrap())
        .await
        .unwrap();
    assert_eq!(again.inserted(), 0);
}

/// A real VoiceOffers database has no `products.sku` / `coupons.code`: loading and reading
/// still work, with ids standing in for the natural keys.
async fn works_without_extension_columns(t: TestDb) {
    let tx = t.db.write().await.unwrap();
    tx.exec_unprepared("ALTER TABLE products RENAME COLUMN sku TO legacy_sku")
        .await
        .unwrap();
    tx.exec_unprepared("ALTER TABLE coupons RENAME COLUMN code TO legacy_code")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let c = generate(3);
    let first = seed_catalog(&t.db, &c).await.unwrap();
    assert_eq!(first.products.inserted, c.products.len() as u64);
    let again = seed_catalog(&t.db, &c).await.unwrap();
    assert_eq!(again.inserted(), 0);
    let tx = t.db.read().await.unwrap();
    let cols = catalog::load::detect_columns(&tx).await.unwrap();
    assert!(!cols.product_sku && !cols.coupon_code);
    let back = load_catalog(&tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(back.products.len(), c.products.len());
    for p in &back.products {
        assert_eq!(p.sku, p.id.to_string());
        let orig = c.products.iter().find(|o| o.id == p.id).unwrap();
        assert_eq!(
            (&p.name, p.price, &p.category, p.rating),
            (&orig.name, orig.price, &orig.category, orig.rating)
        );
    }
    for k in &back.coupons {
        assert_eq!(k.code, k.id.to_string());
        let orig = c.coupons.iter().find(|o| o.id == k.id).unwrap();
        assert_eq!(k.discount_value, orig.discount_value);
        assert_eq!(k.expiration_date, orig.expiration_date);
    }
    assert_eq!(back.inventory, c.inventory);
}

/// `shopsim seed --agents 12` as a child process: migrates, seeds, creates agent_001…agent_012,
/// and a second run inserts nothing.
async fn cli_seed_creates_catalog_and_agents(t: TestDb) {
    let url = t.url.redacted();
    if url.contains("***") {
        eprintln!("note: the test database URL has a password; skipping the CLI variant");
        return;
    }
    let run = || {
        shopsim_json([
            "seed",
            "--seed",
            "11",
            "--agents",
            "12",
            "--json",
            "--database-url",
            &url,
        ])
    };
    let first = run();
    assert_eq!(first["catalog"]["products"]["inserted"], 360);
    assert_eq!(first["catalog"]["stores"]["inserted"], 10);
    assert_eq!(first["agents"]["agents_inserted"], 12);
    let names: Vec<String> = list_agents(&t.db, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.agent_id)
        .collect();
    assert_eq!(names, (1..=12).map(agent_name).collect::<Vec<_>>());
    let second = run();
    assert_eq!(second["catalog"]["products"]["inserted"], 0);
    assert_eq!(second["catalog"]["products"]["existing"], 360);
    assert_eq!(second["agents"]["agents_inserted"], 0);
    assert_eq!(second["agents"]["agents_existing"], 12);
    // The catalog in the database is the one the library generates for that seed.
    let tx = t.db.read().await.unwrap();
    assert_eq!(load_catalog(&tx).await.unwrap(), generate(11));
    tx.commit().await.unwrap();
}

/// `shopsim seed --persona-set voiceoffers` stores each new agent's persona: contract columns
/// where names match, the whole persona in `sim_personas`, with the script version.
async fn cli_seed_stores_personas_of_a_persona_set(t: TestDb) {
    let url = t.url.redacted();
    if url.contains("***") {
        eprintln!("note: the test database URL has a password; skipping the CLI variant");
        return;
    }
    let behaviors = concat!(env!("CARGO_MANIFEST_DIR"), "/behaviors");
    shopsim_json([
        "seed",
        "--agents",
        "6",
        "--persona-set",
        "voiceoffers",
        "--behaviors",
        behaviors,
        "--json",
        "--database-url",
        &url,
    ]);
    let tx = t.db.read().await.unwrap();
    let rows = tx
        .query(
            "SELECT a.agent_id, a.age, a.shopping_frequency, p.persona_set, p.script_version, p.attributes \
             FROM agents a JOIN sim_personas p ON p.agent_id = a.agent_id ORDER BY a.agent_id",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 6);
    for r in &rows {
        let age = r
            .opt_i64("age")
            .unwrap()
            .expect("age column filled from the persona");
        assert!((18..=80).contains(&age), "age {age}");
        let freq = r.string("shopping_frequency").unwrap();
        assert!(
            ["frequent", "regular", "occasional", "rare"].contains(&freq.as_str()),
            "{freq}"
        );
        assert_eq!(r.string("persona_set").unwrap(), "voiceoffers");
        assert!(r.string("script_version").unwrap().len() >= 8);
        assert_eq!(r.json("attributes").unwrap()["age"].as_i64(), Some(age));
    }
    tx.commit().await.unwrap();
    // A missing persona set is a one-line error naming the sets that exist.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopsim"))
        .args([
            "seed",
            "--agents",
            "7",
            "--persona-set",
            "nope",
            "--behaviors",
            behaviors,
            "--database-url",
            &url,
        ])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("voiceoffers"), "{err}");
}
