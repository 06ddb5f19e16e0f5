//! Run records, `export`, `runs purge` and the run summary on both backends, over rows built
//! through the domain for a fake run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, NaiveDate, TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

use shopsim::catalog::{self, AgentOptions, PersonaRecord, agent_name};
use shopsim::domain::{Ctx, Shop, ShopConfig};
use shopsim::ids;
use shopsim::sim::metrics::{Counter, Endpoint, Metrics, Outcome};
use shopsim::sim::records::{
    self, AgentDayRecord, ExportOptions, Format, IntervalCounters, RecordsError, RunRecord,
    RunStatus, RunSummary, SessionRecord, SessionStatus, WallInfo,
};
use shopsim::store::Db;

use crate::backend_tests;
use crate::support::TestDb;

backend_tests!(
    records_round_trip,
    export_is_byte_identical_across_databases,
    purge_removes_exactly_the_run,
    summary_counts_equal_the_database,
    cli_runs_and_export,
    export_without_extension_columns,
);

const SEED: u64 = 7;
const AGENTS: u64 = 6;

fn day0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 4, 0, 0, 0).unwrap()
}

fn persona(agent_id: &str) -> Option<PersonaRecord> {
    let n: u64 = agent_id["agent_".len()..].parse().ok()?;
    Some(PersonaRecord {
        persona_set: "test-set".into(),
        script_version: "v1".into(),
        attributes: json!({
            "age": 20 + n,
            "price_sensitivity": 0.1 * n as f64 + 0.05,
            "preferred_categories": ["Snacks", "Dairy"],
            "traits": {"thrift": n as f64 / 7.0, "loyal": n.is_multiple_of(2)},
            "backstory": format!("Shopper, number {n}; likes \"deals\""),
        }),
    })
}

/// A database with the catalog and agents of [`SEED`].
async fn seeded(db: &Db) {
    catalog::seed_catalog(db, &catalog::generate(SEED))
        .await
        .unwrap();
    let source = |a: &str| persona(a);
    catalog::create_agents(
        db,
        &AgentOptions::new(SEED, AGENTS, day0() - Span::days(30)),
        Some(&source),
        &|_, _| {},
    )
    .await
    .unwrap();
}

fn run_record(run_id: &str, start: DateTime<Utc>, days: i64) -> RunRecord {
    let wall = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
    RunRecord {
        run_id: run_id.into(),
        status: RunStatus::Running,
        config: json!({"time_scale": "max", "agents": AGENTS, "nested": {"a": [1, 2]}}),
        seed: SEED,
        persona_set: "test-set".into(),
        agents: AGENTS,
        sim_start: start,
        sim_end: start + Span::days(days),
        checkpoint_at: None,
        clock: None,
        created_at: wall,
        updated_at: wall,
        finished_at: None,
    }
}

fn session_id(run_id: &str, agent: &str, date: NaiveDate, seq: u32) -> Uuid {
    ids::stable_uuid(SEED, "session", &format!("{run_id}/{agent}/{date}/{seq}"))
}

/// Simulates a small run through the domain: every agent decides each day, shoppers run one
/// session (view, two adds at the same instant, coupons, apply, then checkout or abandon).
/// Returns the live metrics it recorded.
async fn simulate(db: &Db, run_id: &str, start: DateTime<Utc>, days: i64) -> Metrics {
    records::create_run(db, &run_record(run_id, start, days))
        .await
        .unwrap();
    let shop = Shop::new(ShopConfig {
        seed: SEED,
        holdout_share: 0.2,
        ..ShopConfig::default()
    });
    let cat = catalog::generate(SEED);
    let metrics = Metrics::new();
    let mut before = metrics.snapshot();
    for d in 0..days {
        let day = start + Span::days(d);
        let date = day.date_naive();
        let tx = db.write().await.unwrap();
        shop.restock_if_due(&tx, day).await.unwrap();
        let mut decisions = Vec::new();
        let mut sessions = Vec::new();
        for n in 1..=AGENTS {
            let agent = agent_name(n);
            let shops = !(n + d as u64).is_multiple_of(3);
            decisions.push(AgentDayRecord {
                run_id: run_id.into(),
                agent_id: agent.clone(),
                sim_date: date,
                shops,
                plan: json!({"sessions": if shops { 1 } else { 0 }}),
                script_version: "v1".into(),
                created_at: Utc::now(),
            });
            if shops {
                sessions.push(SessionRecord {
                    session_id: session_id(run_id, &agent, date, 0),
                    run_id: run_id.into(),
                    agent_id: agent.clone(),
                    sim_date: date,
                    seq: 0,
                    planned_at: day + Span::hours(9) + Span::minutes(n as i64),
                    status: SessionStatus::Planned,
                    steps_done: 0,
                    outcome: None,
                    updated_at: Utc::now(),
                });
            }
        }
        records::record_agent_days(&tx, &decisions).await.unwrap();
        records::record_sessions(&tx, &sessions).await.unwrap();
        tx.commit().await.unwrap();
        metrics.add(Counter::AgentDays, decisions.len() as u64);

        for s in &sessions {
            let n: u64 = s.agent_id["agent_".len()..].parse().unwrap();
            let tx = db.write().await.unwrap();
            let user = shop
                .user_for_agent(&tx, &s.agent_id)
                .await
                .unwrap()
                .unwrap();
            let at = |minute: i64| s.planned_at + Span::minutes(minute);
            let ctx = |minute: i64| Ctx {
                user_id: user,
                now: at(minute),
                session_id: Some(s.session_id),
                simulated: true,
                events: None,
                cart: None,
            };
            let plain = Ctx {
                session_id: None,
                ..ctx(0)
            };
            shop.refresh_offers(&tx, &plain).await.unwrap();
            metrics.record_request(
                Endpoint::RefreshOffers,
                Duration::from_millis(2),
                Outcome::Ok,
            );
            records::update_session(&tx, s.session_id, SessionStatus::InProgress, 0, None)
                .await
                .unwrap();
            let store = &cat.stores[(n as usize + d as usize) % cat.stores.len()];
            shop.select_store(&tx, &plain, store.id).await.unwrap();
            let p1 = &cat.products[(n as usize * 7 + d as usize) % cat.products.len()];
            let p2 = &cat.products[(n as usize * 13 + 3) % cat.products.len()];
            shop.get_product(&tx, &ctx(1), p1.id).await.unwrap();
            // Two adds at the same simulated instant: their order comes from the event number.
            shop.add_to_cart(&tx, &ctx(2), p1.id, 2).await.unwrap();
            shop.add_to_cart(&tx, &ctx(2), p2.id, 1).await.unwrap();
            metrics.record_request(Endpoint::AddToCart, Duration::from_millis(3), Outcome::Ok);
            let offers = shop.eligible_coupons(&tx, &ctx(3)).await.unwrap();
            if let Some(c) = offers.eligible.first() {
                shop.apply_coupon(&tx, &ctx(4), c.id).await.unwrap();
                metrics.add(Counter::OffersApplied, 1);
            }
            let status = if (n + d as u64) % 4 == 1 {
                shop.clear_cart(&tx, &ctx(5)).await.unwrap();
                metrics.add(Counter::SessionsAbandoned, 1);
                SessionStatus::Abandoned
            } else {
                shop.checkout(&tx, &ctx(6)).await.unwrap();
                metrics.record_request(Endpoint::Checkout, Duration::from_millis(9), Outcome::Ok);
                metrics.add(Counter::Orders, 1);
                SessionStatus::Completed
            };
            metrics.record_request(
                Endpoint::AddToCart,
                Duration::from_millis(1),
                Outcome::OutOfStock,
            );
            records::update_session(
                &tx,
                s.session_id,
                status,
                6,
                Some(&json!({"result": status.as_str()})),
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        let now = metrics.snapshot();
        let delta = IntervalCounters::between(&before, &now);
        before = now;
        records::record_metrics_interval(
            db,
            run_id,
            0,
            d as u64,
            day + Span::hours(23),
            Utc::now(),
            &delta.to_json(),
            &metrics.take_interval().unwrap(),
        )
        .await
        .unwrap();
        records::update_checkpoint(db, run_id, day + Span::days(1), &json!({"segments": []}))
            .await
            .unwrap();
    }
    records::finish_run(db, run_id, RunStatus::Finished)
        .await
        .unwrap();
    metrics
}

async fn count(db: &Db, sql: &str, run_id: &str) -> u64 {
    let tx = db.read().await.unwrap();
    let values = if sql.contains("$1") {
        vec![run_id.to_string().into()]
    } else {
        vec![]
    };
    let n = tx.query_one(sql, values).await.unwrap().i64("n").unwrap();
    tx.commit().await.unwrap();
    n as u64
}

/// Every file of an export directory with its bytes.
fn read_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

async fn export_bytes(db: &Db, run_id: &str, format: Format) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let report = records::export_run(db, run_id, format, dir.path())
        .await
        .unwrap();
    assert_eq!(report.files.len(), 6);
    read_dir(dir.path())
}

// ---- tests -------------------------------------------------------------------------------

async fn records_round_trip(t: TestDb) {
    let db = &t.db;
    let mut run = run_record("rt", day0(), 3);
    run.clock = Some(json!({"segments": [{"scale": 96.0}]}));
    records::create_run(db, &run).await.unwrap();
    assert_eq!(
        records::load_run(db, "rt").await.unwrap(),
        Some(run.clone())
    );
    assert!(records::load_run(db, "nope").await.unwrap().is_none());
    let again = records::create_run(db, &run).await.unwrap_err();
    assert!(matches!(again, RecordsError::RunExists(_)), "{again}");
    assert!(again.to_string().contains("already exists"));

    let at = day0() + Span::hours(5);
    records::update_checkpoint(db, "rt", at, &json!({"k": 1}))
        .await
        .unwrap();
    records::finish_run(db, "rt", RunStatus::Interrupted)
        .await
        .unwrap();
    let got = records::load_run(db, "rt").await.unwrap().unwrap();
    assert_eq!(got.checkpoint_at, Some(at));
    assert_eq!(got.clock, Some(json!({"k": 1})));
    assert_eq!(got.status, RunStatus::Interrupted);
    assert!(got.finished_at.is_some());
    records::finish_run(db, "rt", RunStatus::Running)
        .await
        .unwrap();
    assert_eq!(
        records::load_run(db, "rt")
            .await
            .unwrap()
            .unwrap()
            .finished_at,
        None,
        "a resumed run is not finished"
    );
    assert!(matches!(
        records::finish_run(db, "nope", RunStatus::Failed).await,
        Err(RecordsError::UnknownRun(_))
    ));

    // Decisions: batched, never overwritten (1200 rows cross the 500-row statement size).
    let date = day0().date_naive();
    let days: Vec<AgentDayRecord> = (0..1200)
        .map(|i| AgentDayRecord {
            run_id: "rt".into(),
            agent_id: format!("agent_{i:04}"),
            sim_date: date,
            shops: true,
            plan: json!({"i": i}),
            script_version: "v1".into(),
            created_at: Utc::now(),
        })
        .collect();
    let tx = db.write().await.unwrap();
    assert_eq!(records::record_agent_days(&tx, &days).await.unwrap(), 1200);
    let mut changed = days.clone();
    for d in &mut changed {
        d.shops = false;
    }
    assert_eq!(records::record_agent_days(&tx, &changed).await.unwrap(), 0);
    tx.commit().await.unwrap();
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM sim_agent_days WHERE run_id = $1 AND shops",
            "rt"
        )
        .await,
        1200,
        "the first decision stands"
    );

    // Sessions: planned → in_progress → final, never back; steps never lowered.
    let sid = Uuid::from_u128(0x5e55);
    let session = SessionRecord {
        session_id: sid,
        run_id: "rt".into(),
        agent_id: "agent_0001".into(),
        sim_date: date,
        seq: 0,
        planned_at: day0() + Span::hours(9),
        status: SessionStatus::Planned,
        steps_done: 0,
        outcome: None,
        updated_at: day0(),
    };
    let tx = db.write().await.unwrap();
    assert_eq!(
        records::record_sessions(&tx, std::slice::from_ref(&session))
            .await
            .unwrap(),
        1
    );
    let mut dup = session.clone();
    dup.session_id = Uuid::from_u128(0x5e56); // same (run, agent, date, seq)
    assert_eq!(records::record_sessions(&tx, &[dup]).await.unwrap(), 0);
    tx.commit().await.unwrap();
    assert_eq!(
        records::unfinished_sessions(db, "rt").await.unwrap(),
        vec![session.clone()]
    );
    let loaded = records::load_agent_days(db, "rt", date).await.unwrap();
    assert_eq!(loaded.len(), 1200);
    assert!(loaded.iter().all(|d| d.shops && d.script_version == "v1"));
    let tx = db.write().await.unwrap();
    let up = |s, n, o| records::update_session(&tx, sid, s, n, o);
    assert!(up(SessionStatus::InProgress, 3, None).await.unwrap());
    assert!(up(SessionStatus::InProgress, 1, None).await.unwrap());
    let outcome = json!({"order": true});
    assert!(
        up(SessionStatus::Completed, 5, Some(&outcome))
            .await
            .unwrap()
    );
    assert!(!up(SessionStatus::InProgress, 9, None).await.unwrap());
    assert!(!up(SessionStatus::Failed, 9, None).await.unwrap());
    let row = tx
        .query_one(
            "SELECT status, steps_done, outcome FROM sim_sessions WHERE session_id = $1",
            vec![tx.codec().uuid(sid)],
        )
        .await
        .unwrap();
    assert_eq!(row.string("status").unwrap(), "completed");
    assert_eq!(row.i64("steps_done").unwrap(), 5);
    assert_eq!(row.json("outcome").unwrap(), outcome);
    tx.commit().await.unwrap();
    assert!(
        records::unfinished_sessions(db, "rt")
            .await
            .unwrap()
            .is_empty()
    );

    // Metrics intervals: stored twice keeps the first; re-read merges exactly.
    let m = Metrics::new();
    for ms in 1..=40u64 {
        m.record_request(Endpoint::Checkout, Duration::from_millis(ms), Outcome::Ok);
    }
    m.record_request(
        Endpoint::AddToCart,
        Duration::from_millis(2),
        Outcome::Api5xx,
    );
    m.add(Counter::Orders, 40);
    m.record_lag(Duration::from_millis(7));
    let empty = Metrics::new().snapshot();
    let first = m.snapshot();
    let h1 = m.take_interval().unwrap();
    let c1 = IntervalCounters::between(&empty, &first);
    records::record_metrics_interval(db, "rt", 0, 0, at, Utc::now(), &c1.to_json(), &h1)
        .await
        .unwrap();
    records::record_metrics_interval(db, "rt", 0, 0, at, Utc::now(), &json!({}), &h1)
        .await
        .unwrap();
    for ms in 41..=100u64 {
        m.record_request(Endpoint::Checkout, Duration::from_millis(ms), Outcome::Ok);
    }
    m.add(Counter::Orders, 60);
    let second = m.snapshot();
    let c2 = IntervalCounters::between(&first, &second);
    records::record_metrics_interval(
        db,
        "rt",
        1,
        0,
        at,
        Utc::now(),
        &c2.to_json(),
        &m.take_interval().unwrap(),
    )
    .await
    .unwrap();
    let stored = records::stored_snapshot(db, "rt").await.unwrap();
    assert_eq!(
        stored,
        m.snapshot(),
        "stored intervals rebuild the live snapshot"
    );
}

async fn export_is_byte_identical_across_databases(t: TestDb) {
    seeded(&t.db).await;
    simulate(&t.db, "run-a", day0(), 3).await;
    // The same run on another fresh database: SQLite for both variants, so the PostgreSQL
    // variant compares PostgreSQL with SQLite.
    let other = TestDb::sqlite().await;
    seeded(&other.db).await;
    simulate(&other.db, "run-a", day0(), 3).await;
    for format in [Format::Csv, Format::Jsonl] {
        let a = export_bytes(&t.db, "run-a", format).await;
        let b = export_bytes(&other.db, "run-a", format).await;
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "same files"
        );
        for (name, bytes) in &a {
            assert!(
                *bytes == b[name],
                "{name} differs between {:?} and SQLite:\n--- first\n{}\n--- second\n{}",
                t.backend(),
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&b[name])
            );
        }
        // A second export of the same database is identical too, and so is one read in
        // tiny chunks and pages (keyset pagination and grouping across page boundaries).
        assert_eq!(a, export_bytes(&t.db, "run-a", format).await);
        let dir = tempfile::tempdir().unwrap();
        let tiny = ExportOptions {
            agent_chunk: 2,
            page: 3,
        };
        records::export_run_with(&t.db, "run-a", format, dir.path(), tiny)
            .await
            .unwrap();
        assert!(a == read_dir(dir.path()), "paging changed the export");
    }

    // What the files hold.
    let csv = export_bytes(&t.db, "run-a", Format::Csv).await;
    let text = |name: &str| String::from_utf8(csv[name].clone()).unwrap();
    let lines = |name: &str| text(name).lines().count() as u64 - 1;
    let db = &t.db;
    let orders = count(
        db,
        "SELECT COUNT(*) AS n FROM orders o JOIN sim_sessions s \
         ON s.session_id = o.shopping_session_id WHERE s.run_id = $1",
        "run-a",
    )
    .await;
    assert!(orders > 0);
    assert_eq!(lines("orders.csv"), orders);
    assert_eq!(
        lines("events.csv"),
        count(
            db,
            "SELECT COUNT(*) AS n FROM shopping_session_events e JOIN sim_sessions s \
             ON s.session_id = e.session_id WHERE s.run_id = $1",
            "run-a"
        )
        .await
    );
    assert_eq!(
        lines("order_items.csv"),
        count(
            db,
            "SELECT COUNT(*) AS n FROM order_items i JOIN orders o ON o.id = i.order_id \
             JOIN sim_sessions s ON s.session_id = o.shopping_session_id WHERE s.run_id = $1",
            "run-a"
        )
        .await
    );
    assert_eq!(lines("agents.csv"), AGENTS);
    assert_eq!(
        lines("sessions.csv"),
        count(
            db,
            "SELECT COUNT(*) AS n FROM sim_sessions WHERE run_id = $1",
            "run-a"
        )
        .await
    );
    let agents = text("agents.csv");
    let header = agents.lines().next().unwrap();
    assert_eq!(
        header,
        "agent_id,persona_set,script_version,is_holdout,persona.age,persona.backstory,\
         persona.preferred_categories,persona.price_sensitivity,persona.traits.loyal,\
         persona.traits.thrift"
    );
    assert!(agents.contains("agent_002,test-set,v1,"), "{agents}");
    assert!(
        agents.contains(r#""Shopper, number 2; likes ""deals""""#),
        "{agents}"
    );
    // No generated id anywhere: natural keys only.
    for (name, bytes) in &csv {
        let s = String::from_utf8_lossy(bytes);
        assert!(
            !s.contains(&ids::stable_uuid(SEED, "user", "agent_001").to_string()),
            "{name} leaks a user id"
        );
        assert!(
            !s.contains("product_id") && !s.contains("coupon_id"),
            "{name}"
        );
    }
    // Events: numbered in their session, the two same-instant adds in the order made.
    let events = text("events.csv");
    assert!(
        !events
            .lines()
            .skip(1)
            .any(|l| l.split(',').nth(4) == Some(""))
    );
    let first_session: Vec<&str> = events
        .lines()
        .skip(1)
        .take_while(|l| l.contains(",0,") && l.starts_with("agent_001,"))
        .collect();
    assert!(first_session.len() >= 5, "{events}");
    let types: Vec<&str> = first_session
        .iter()
        .map(|l| l.split(',').nth(5).unwrap())
        .collect();
    assert_eq!(
        &types[..4],
        [
            "view_product",
            "cart_add_item",
            "cart_add_item",
            "view_coupons"
        ]
    );
    // Offers: some shown, applied and redeemed; a redeemed one was applied.
    let offers = text("offers.csv");
    let rows: Vec<Vec<&str>> = offers
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert!(!rows.is_empty());
    assert!(rows.iter().any(|r| r[7] == "true"), "some shown");
    assert!(rows.iter().any(|r| r[8] == "true"), "some applied");
    assert!(rows.iter().any(|r| r[9] == "true"), "some redeemed");
    assert!(rows.iter().all(|r| r[9] == "false" || r[8] == "true"));
    assert!(
        rows.iter().all(|r| r[11] == "false"),
        "holdout users get no offers"
    );
    let jsonl = export_bytes(&t.db, "run-a", Format::Jsonl).await;
    for line in String::from_utf8(jsonl["agents.jsonl"].clone())
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["persona"]["traits"]["thrift"].is_number(), "{line}");
    }
    for line in String::from_utf8(jsonl["orders.jsonl"].clone())
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["final_total"].is_number(), "{line}");
        assert!(line.contains("\"final_total\":") && line.contains('.'));
    }
}

/// Row counts of every table.
async fn table_counts(db: &Db) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for t in shopsim::migrations::schema::all_tables() {
        out.insert(
            t.name,
            count(db, &format!("SELECT COUNT(*) AS n FROM \"{}\"", t.name), "").await,
        );
    }
    out
}

async fn purge_removes_exactly_the_run(t: TestDb) {
    let db = &t.db;
    seeded(db).await;
    simulate(db, "early", day0(), 2).await;
    simulate(db, "late", day0() + Span::days(40), 2).await;
    // Idempotency records of the reference server: keys start with the run id and `/`.
    let user = ids::stable_uuid(SEED, "user", "agent_001");
    let tx = db.write().await.unwrap();
    for key in [
        "early/agent_001/2024-03-04/0/1",
        "late/agent_001/x/0/1",
        "earlyx/a/b/0/1",
    ] {
        tx.exec(
            "INSERT INTO sim_idempotency (user_id, idem_key, request_hash, state, created_at) \
             VALUES ($1, $2, 'h', 'done', $3)",
            vec![
                tx.codec().uuid(user),
                key.to_string().into(),
                tx.codec().ts(day0()),
            ],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let late_before = export_bytes(db, "late", Format::Jsonl).await;
    let before = table_counts(db).await;

    let mut running = run_record("busy", day0() + Span::days(90), 1);
    running.status = RunStatus::Running;
    records::create_run(db, &running).await.unwrap();
    let refused = records::purge_run(db, "busy", false).await.unwrap_err();
    assert!(
        matches!(refused, RecordsError::StillRunning(_)),
        "{refused}"
    );
    assert_eq!(
        records::purge_run(db, "busy", true)
            .await
            .unwrap()
            .deleted("sim_runs"),
        1
    );
    assert!(matches!(
        records::purge_run(db, "busy", true).await,
        Err(RecordsError::UnknownRun(_))
    ));

    let report = records::purge_run(db, "early", false).await.unwrap();
    let after = table_counts(db).await;
    // Exactly what the report says went, from the tables it names, and nothing else.
    for (table, n) in &before {
        assert_eq!(
            n - after[table],
            report.deleted(table),
            "{table}: {n} before, {} after",
            after[table]
        );
    }
    for table in [
        "orders",
        "order_items",
        "shopping_sessions",
        "shopping_session_events",
        "user_coupons",
        "sim_agent_days",
        "sim_sessions",
        "sim_metrics",
    ] {
        assert!(report.deleted(table) > 0, "{table} had rows of the run");
    }
    assert_eq!(report.deleted("sim_runs"), 1);
    assert_eq!(report.deleted("sim_idempotency"), 1, "only `early/…` keys");
    assert!(records::load_run(db, "early").await.unwrap().is_none());
    // The other run is untouched: its export is the same bytes.
    assert_eq!(export_bytes(db, "late", Format::Jsonl).await, late_before);
    // And purging it leaves no simulated activity behind.
    records::purge_run(db, "late", false).await.unwrap();
    for table in [
        "orders",
        "order_items",
        "shopping_sessions",
        "shopping_session_events",
        "user_coupons",
        "user_offer_cycles",
        "sim_runs",
        "sim_sessions",
    ] {
        assert_eq!(
            count(db, &format!("SELECT COUNT(*) AS n FROM {table}"), "").await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        count(db, "SELECT COUNT(*) AS n FROM agents", "").await,
        AGENTS
    );
}

async fn summary_counts_equal_the_database(t: TestDb) {
    let db = &t.db;
    seeded(db).await;
    let metrics = simulate(db, "sum", day0(), 3).await;
    let live = metrics.snapshot();
    let wall = WallInfo {
        wall: Duration::from_secs(2),
        target: Some("max".parse().unwrap()),
    };
    let s = RunSummary::from_database(db, "sum", &live, &wall)
        .await
        .unwrap();
    let q = |sql: &'static str| count(db, sql, "sum");
    assert_eq!(s.agents, AGENTS);
    assert_eq!(
        s.agent_days,
        q("SELECT COUNT(*) AS n FROM sim_agent_days WHERE run_id = $1").await
    );
    assert_eq!(s.agent_days, live.counters[&Counter::AgentDays]);
    assert_eq!(
        s.orders,
        q("SELECT COUNT(*) AS n FROM orders o JOIN sim_sessions s \
           ON s.session_id = o.shopping_session_id WHERE s.run_id = $1")
        .await
    );
    assert_eq!(s.orders, live.counters[&Counter::Orders]);
    assert_eq!(
        s.abandoned,
        q(
            "SELECT COUNT(*) AS n FROM shopping_sessions ss JOIN sim_sessions s \
           ON s.session_id = ss.id WHERE s.run_id = $1 AND ss.status = 'abandoned'"
        )
        .await
    );
    assert_eq!(s.abandoned, live.counters[&Counter::SessionsAbandoned]);
    assert_eq!(
        s.events,
        q(
            "SELECT COUNT(*) AS n FROM shopping_session_events e JOIN sim_sessions s \
           ON s.session_id = e.session_id WHERE s.run_id = $1"
        )
        .await
    );
    assert_eq!(s.offers_applied, live.counters[&Counter::OffersApplied]);
    assert_eq!(
        s.offers_assigned,
        q("SELECT COUNT(*) AS n FROM user_coupons").await,
        "one run: every offer is the run's"
    );
    assert_eq!(
        s.sessions,
        q("SELECT COUNT(*) AS n FROM shopping_sessions").await
    );
    assert!(s.orders > 0 && s.abandoned > 0 && s.offers_redeemed > 0);
    assert!((s.abandon_rate - s.abandoned as f64 / s.sessions as f64).abs() < 1e-12);
    assert_eq!(s.simulated_hours, 72.0);
    assert_eq!(s.time_scale_target.as_deref(), Some("max"));
    assert_eq!(s.time_scale_achieved, Some(72.0 * 3600.0 / 2.0));
    assert_eq!(s.requests["checkout"].requests, s.orders);
    assert_eq!(s.business_rejections["out_of_stock"], s.sessions);
    assert_eq!(s.errors.total(), 0);
    assert!(s.lag.is_none(), "no lag in max mode");

    // Re-rendered from the stored metrics: the same summary.
    let stored = records::stored_snapshot(db, "sum").await.unwrap();
    assert_eq!(
        RunSummary::from_database(db, "sum", &stored, &wall)
            .await
            .unwrap(),
        s
    );
    let dir = tempfile::tempdir().unwrap();
    let out = records::write_renderings(dir.path(), &s).unwrap();
    assert_eq!(out, dir.path().join("sum"));
    let meta: RunSummary =
        serde_json::from_slice(&std::fs::read(out.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta, s);
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains(&format!("| orders | {} |", s.orders)), "{md}");
    assert!(md.contains("| checkout |"), "{md}");
}

async fn cli_runs_and_export(t: TestDb) {
    let url = t.url.redacted();
    if url.contains("***") {
        eprintln!("note: the test database URL has a password; skipping the CLI variant");
        return;
    }
    seeded(&t.db).await;
    simulate(&t.db, "cli-run", day0(), 1).await;
    let shopsim = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopsim"))
            .args(args)
            .args(["--database-url", &url])
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = shopsim(&["runs", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cli-run") && out.contains("finished"), "{out}");
    let (code, out, err) = shopsim(&["runs", "show", "cli-run", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["agents"], AGENTS);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x");
    let (code, out, err) = shopsim(&[
        "export",
        "cli-run",
        "--format",
        "jsonl",
        "--out",
        target.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("events"), "{out}");
    assert_eq!(
        read_dir(&target),
        export_bytes(&t.db, "cli-run", Format::Jsonl).await
    );
    let (code, _, err) = shopsim(&["export", "missing-run", "--out", target.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no run with id `missing-run`"), "{err}");
    // A database without run tables says so.
    let empty = tempfile::tempdir().unwrap();
    let empty_url = format!("sqlite://{}", empty.path().join("none.db").display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopsim"))
        .args(["runs", "list", "--database-url", &empty_url])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no shopsim run tables"), "{err}");
    let (code, out, err) = shopsim(&["runs", "purge", "cli-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sim_runs"), "{out}");
}

/// On a VoiceOffers database without `products.sku` / `coupons.code`, ids stand in for them.
async fn export_without_extension_columns(t: TestDb) {
    let db = &t.db;
    seeded(db).await;
    simulate(db, "plain", day0(), 2).await;
    let tx = db.write().await.unwrap();
    tx.exec_unprepared("ALTER TABLE products RENAME COLUMN sku TO legacy_sku")
        .await
        .unwrap();
    tx.exec_unprepared("ALTER TABLE coupons RENAME COLUMN code TO legacy_code")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let files = export_bytes(db, "plain", Format::Csv).await;
    let cat = catalog::generate(SEED);
    let items = String::from_utf8(files["order_items.csv"].clone()).unwrap();
    let mut lines = items.lines().skip(1).peekable();
    assert!(lines.peek().is_some());
    for line in lines {
        let sku = line.split(',').nth(2).unwrap();
        let id: Uuid = sku.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(cat.products.iter().any(|p| p.id == id), "{line}");
    }
    let offers = String::from_utf8(files["offers.csv"].clone()).unwrap();
    for line in offers.lines().skip(1) {
        let code = line.split(',').nth(1).unwrap();
        let id: Uuid = code.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(cat.coupons.iter().any(|c| c.id == id), "{line}");
    }
}
