//! The fault acceptance test of `shopsim run`: HTTP to a reference server that injects 503s
//! (`fail_rate` 0.1, mode `mixed`) and rate-limits (429s), with faults switched off part-way.
//! The run must complete, apply no write twice, report exactly the errors the server injected,
//! and recover (circuit breakers closed again) once the faults are gone.

use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;
use shopsim::domain::ShopConfig;
use shopsim::server::{self, FailMode, FaultCounters, FaultPatch, FaultSettings, ServerConfig};
use shopsim::sim::records::{Format, export_run};
use shopsim::sim::run::{ActionsMode, RunSettings, run};
use shopsim::store::{Backend, Db, DbConfig};
use tokio_util::sync::CancellationToken;

use crate::backend_tests;
use crate::support::{TestDb, assert_same_export, count, read_dir};

backend_tests!(faulty_server_switched_off_mid_run);

const AGENTS: u64 = 60;
const DAYS: u32 = 3;
/// Server requests after which faults are switched off (if every fault kind has been seen).
const SWITCH_AFTER_REQUESTS: u64 = 400;

fn settings(
    run_id: &str,
    actions: ActionsMode,
    api_url: Option<String>,
    dir: &Path,
) -> RunSettings {
    RunSettings {
        agents: AGENTS,
        days: DAYS,
        api_url,
        ..crate::run::settings(run_id, actions, dir)
    }
}

async fn rows(db: &Db, sql: &str) -> Vec<String> {
    let tx = db.read().await.unwrap();
    let out = tx
        .query(sql, vec![])
        .await
        .unwrap()
        .iter()
        .map(|r| r.string("k").unwrap())
        .collect();
    tx.commit().await.unwrap();
    out
}

async fn faulty_server_switched_off_mid_run(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let server = server::start(
        t.db.clone(),
        ServerConfig {
            shop: ShopConfig {
                seed: 42,
                ..Default::default()
            },
            faults: FaultSettings {
                fail_rate: 0.1,
                fail_mode: FailMode::Mixed,
                latency_ms: None,
                // Far below what a `max` run sends, even on a loaded machine through a
                // pooler: some requests are answered 429.
                rate_limit: Some(30),
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let faults = server.faults().clone();

    // Switch faults off part-way: once enough requests went through and every fault kind
    // (503 before, 503 after, 429) has been seen.
    let switcher = {
        let faults = faults.clone();
        tokio::spawn(async move {
            loop {
                let c = faults.counters();
                if c.requests >= SWITCH_AFTER_REQUESTS
                    && c.injected_before > 0
                    && c.injected_after > 0
                    && c.rate_limited > 0
                {
                    faults
                        .update(FaultPatch {
                            fail_rate: Some(0.0),
                            rate_limit: Some(None),
                            ..Default::default()
                        })
                        .unwrap();
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let result = run(
        t.db.clone(),
        settings(
            "faults-http",
            ActionsMode::Http,
            Some(server.base_url()),
            dir.path(),
        ),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(
        switcher.is_finished(),
        "the run ended before faults were switched off; raise the load or lower SWITCH_AFTER_REQUESTS"
    );
    let at_switch: FaultCounters = switcher.await.unwrap();
    let end = faults.counters();
    server.shutdown().await.unwrap();
    let s = &result.summary;
    eprintln!(
        "at switch: {at_switch:?}\nat end: {end:?}\nerrors: {:?}",
        s.errors
    );

    // The run completed.
    assert!(!result.stopped);
    assert_eq!(s.agent_days, AGENTS * u64::from(DAYS));
    assert!(s.orders > 0);
    assert!(
        end.requests > at_switch.requests,
        "requests continued after the switch"
    );
    // Faults were really injected and seen.
    assert!(end.injected_before > 0 && end.injected_after > 0 && end.rate_limited > 0);
    // Every 503 is retried and every 429 resent with the same key, so a session fails only
    // when one step exhausts its attempts (5 at 10 %) or the retry budget: rare.
    assert!(
        s.sessions_failed * 100 <= s.sessions_planned,
        "{} of {} sessions failed",
        s.sessions_failed,
        s.sessions_planned
    );

    // The client records every attempt's answer (no hidden retries), and the server counts
    // every answer it gives; nothing but fault injection answers 5xx or 429 here. So the
    // counts are equal, retries included.
    assert_eq!(
        s.errors.api_5xx,
        end.injected_before + end.injected_after,
        "API 5xx seen by the client = faults injected by the server"
    );
    assert_eq!(
        s.errors.rate_limited_429, end.rate_limited,
        "429s seen by the client = requests the server rate-limited"
    );
    assert_eq!(s.errors.timeouts + s.errors.connection + s.errors.db, 0);
    // Every `after` fault was a committed write or read answered 503; the retry with the same
    // Idempotency-Key must have been answered from the stored result (a replay) for writes.
    assert!(
        end.replays > 0,
        "retried writes are replayed, not re-applied"
    );

    // No write applied twice.
    assert!(
        rows(
            &t.db,
            "SELECT CAST(shopping_session_id AS TEXT) AS k FROM orders \
             GROUP BY shopping_session_id HAVING COUNT(*) > 1"
        )
        .await
        .is_empty(),
        "a shopping session with two orders"
    );
    assert!(
        rows(
            &t.db,
            "SELECT CAST(order_id AS TEXT) AS k FROM order_items \
             GROUP BY order_id, product_id HAVING COUNT(*) > 1"
        )
        .await
        .is_empty(),
        "an order with a duplicated line"
    );
    assert!(s.orders <= s.sessions_completed);
    assert_eq!(
        s.orders,
        count(&t.db, "SELECT COUNT(*) AS n FROM orders").await
    );
    assert_eq!(
        count(
            &t.db,
            "SELECT COUNT(*) AS n FROM sim_sessions WHERE status = 'planned'"
        )
        .await,
        0,
        "every planned session has an outcome"
    );

    // The breakers closed again: a breaker left open would fail every step of its endpoint
    // with `circuit open`, so no session may fail on the last day. `max` runs hour by hour,
    // so requests follow simulated time: a switch in the first half of the requests falls
    // before the last of three days.
    assert!(
        at_switch.requests * 2 <= end.requests,
        "faults were switched off too late ({at_switch:?} of {end:?})"
    );
    let failed_late = {
        let tx = t.db.read().await.unwrap();
        let last_day = tx
            .codec()
            .date(NaiveDate::from_ymd_opt(2024, 1, 3).unwrap());
        let n = tx
            .query_one(
                "SELECT COUNT(*) AS n FROM sim_sessions WHERE status = 'failed' AND sim_date = $1",
                vec![last_day],
            )
            .await
            .unwrap()
            .i64("n")
            .unwrap();
        tx.commit().await.unwrap();
        n
    };
    assert_eq!(failed_late, 0, "sessions failed after faults were off");

    // The strongest check that nothing applied twice and nothing was lost: when no session
    // failed, the dataset equals a fault-free in-process run of the same seed.
    if s.sessions_failed == 0 {
        export_run(
            &t.db,
            "faults-http",
            Format::Csv,
            &dir.path().join("faulty"),
        )
        .await
        .unwrap();
        let other = match t.backend() {
            Backend::Sqlite => TestDb::sqlite().await,
            Backend::Postgres => TestDb::postgres().await.unwrap(),
        };
        let db = Db::connect(&DbConfig::new(other.url.clone()))
            .await
            .unwrap();
        let clean = run(
            db.clone(),
            settings("faults-clean", ActionsMode::Inprocess, None, dir.path()),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(clean.summary.orders, s.orders);
        export_run(&db, "faults-clean", Format::Csv, &dir.path().join("clean"))
            .await
            .unwrap();
        let (a, b) = (
            read_dir(&dir.path().join("faulty")),
            read_dir(&dir.path().join("clean")),
        );
        assert_eq!(a.len(), 6, "six dataset files");
        // Every write and every event-recording read is keyed, so retries after `after`-mode
        // faults (work done, answer lost) change nothing: the dataset equals a clean run's.
        assert_same_export(&a, &b, "faulty HTTP run vs clean in-process run");
    }
}
