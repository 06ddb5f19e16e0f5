//! `shopsim loadtest` against the reference server on a fresh, seeded SQLite database: it loads
//! the product view through the host's HTTP path and reports every figure; a wrong agent is one
//! clear error.

use std::time::Duration;

use shopsim::server::{self, ServerConfig};
use tokio::process::Command;

use crate::support::{TestDb, count};

/// `shopsim ARGS…`, waited for without blocking the runtime that serves the API.
async fn shopsim(args: &[&str]) -> std::process::Output {
    let run = Command::new(env!("CARGO_BIN_EXE_shopsim"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("shopsim finishes")
        .expect("shopsim starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_views_a_product_without_errors() {
    let t = TestDb::sqlite().await;
    let url = t.url.redacted();
    let seeded = shopsim(&["seed", "--agents", "1", "--database-url", &url]).await;
    assert!(seeded.status.success(), "{}", text(&seeded.stderr));
    let server = server::start(t.db.clone(), ServerConfig::default())
        .await
        .expect("start the reference server");
    let api = server.base_url();

    let out = shopsim(&[
        "loadtest",
        "--api-url",
        &api,
        "-c",
        "4",
        "-d",
        "1s",
        "--warmup",
        "200ms",
        "--json",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)));
    let requests = j["requests"].as_u64().expect("requests");
    assert!(requests > 0, "{j}");
    assert_eq!(j["errors"], 0, "{j}");
    assert_eq!(j["connections"], 4, "{j}");
    assert!(
        j["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{api}/api/products/")),
        "{j}"
    );
    assert!(j["requests_per_s"].as_f64().unwrap() > 0.0, "{j}");
    let duration = j["duration_s"].as_f64().unwrap();
    assert!((0.9..5.0).contains(&duration), "{j}");
    for p in ["mean", "p50", "p90", "p99", "max"] {
        assert!(j["latency_ms"][p].as_f64().unwrap() > 0.0, "{p}: {j}");
    }
    assert!(
        j["latency_ms"]["p50"].as_f64() <= j["latency_ms"]["max"].as_f64(),
        "{j}"
    );
    if cfg!(unix) {
        assert!(j["cpu"]["us_per_request"].as_f64().unwrap() > 0.0, "{j}");
    }

    // The human-readable figures.
    let out = shopsim(&[
        "loadtest",
        "--api-url",
        &api,
        "-c",
        "2",
        "-d",
        "300ms",
        "--warmup",
        "0s",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for line in [
        "requests  ",
        "errors        0\n",
        "requests/s  ",
        "latency ms    mean ",
        " p99 ",
        "CPU  ",
    ] {
        assert!(report.contains(line), "missing {line:?} in:\n{report}");
    }

    // The request every connection sends, for other load generators.
    let out = shopsim(&["loadtest", "--api-url", &api, "--print-request"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let request = text(&out.stdout);
    let first = request.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("GET {api}/api/products/")),
        "{request}"
    );
    for header in ["authorization: Bearer dev:agent_001\n", "x-sim-time: "] {
        assert!(
            request.contains(header),
            "missing {header:?} in:\n{request}"
        );
    }
    // A plain read, outside a session: the server records nothing for it.
    for header in ["x-shopping-session-id", "idempotency-key"] {
        assert!(!request.contains(header), "{header} in:\n{request}");
    }
    for table in [
        "shopping_session_events",
        "shopping_sessions",
        "sim_idempotency",
    ] {
        let n = count(&t.db, &format!("SELECT COUNT(*) AS n FROM {table}")).await;
        assert_eq!(n, 0, "{table} after the load");
    }

    // An agent the server does not know: one clear error, no load.
    let out = shopsim(&[
        "loadtest",
        "--api-url",
        &api,
        "--agent",
        "nobody",
        "-d",
        "1s",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("agent `nobody`") && err.contains("shopsim seed"),
        "{err}"
    );

    server.shutdown().await.unwrap();
}
