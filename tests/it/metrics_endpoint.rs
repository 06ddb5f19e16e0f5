//! `shopsim run --metrics-addr` as a child process (the exporter and the tracing subscriber
//! are per process): `/metrics` parses as Prometheus text and its counters equal the run
//! summary's; the log lines parse; the embedded reference server's own `/metrics` is apart.
//! And thresholds: a run that passes exits 0, one that crosses a threshold exits 99, with
//! `--abort-on-threshold` it stops early.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::support::free_port;

/// `shopsim run` on a fresh SQLite file (the embedded default: HTTP to the in-process
/// reference server).
fn run_command(dir: &Path, run_id: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopsim"));
    cmd.args(["run", "--database-url"])
        .arg(format!(
            "sqlite://{}",
            dir.join(format!("{run_id}.db")).display()
        ))
        .args(["--run-id", run_id, "--agents", "40", "--days", "2"])
        .args(["--start", "2024-01-01", "--no-tui", "--no-report"])
        .args([
            "--behaviors",
            concat!(env!("CARGO_MANIFEST_DIR"), "/behaviors"),
        ])
        .arg("--run-dir")
        .arg(dir.join("runs"))
        .arg("--log-file")
        .arg(dir.join(format!("{run_id}.log")))
        .args(extra)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Every sample line of an OpenMetrics/Prometheus text exposition, parsed; fails on any line
/// that is neither a comment nor a well-formed sample.
fn parse_exposition(text: &str) -> Vec<prometheus_parse::Sample> {
    let sample_lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics parses");
    // A histogram's _bucket lines fold into one sample; its _sum and _count are samples.
    let histogram_lines: usize = scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(b) => b.len(),
            _ => 0,
        })
        .sum();
    let plain = scrape
        .samples
        .iter()
        .filter(|s| !matches!(s.value, prometheus_parse::Value::Histogram(_)))
        .count();
    assert_eq!(
        plain + histogram_lines,
        sample_lines,
        "every sample line parses:\n{text}"
    );
    assert!(text.ends_with("# EOF\n"), "OpenMetrics end marker");
    scrape.samples
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

/// The value of the sample named `metric` with `labels`, 0 when absent (counters are only
/// exported once non-zero).
fn sample(samples: &[prometheus_parse::Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map_or(0.0, value)
}

async fn get(url: &str) -> Option<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::get(url).await.ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

/// Scrapes until the run says its figures are final.
async fn final_scrape(url: &str, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(text) = get(url).await
            && text.contains("\nshopsim_run_ended 1")
        {
            return text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("shopsim run ended ({status}) before its final scrape");
        }
        assert!(
            Instant::now() < deadline,
            "the run did not end in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_counters_equal_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = run_command(
        dir.path(),
        "scraped",
        &["--metrics-addr", &addr, "--metrics-linger", "5m"],
    )
    .spawn()
    .unwrap();
    let text = final_scrape(&format!("http://{addr}/metrics"), &mut child).await;
    // SIGTERM ends the linger; the run itself has finished.
    let pid = child.id().expect("running") as i32;
    assert!(
        std::process::Command::new("kill")
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let samples = parse_exposition(&text);
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/scraped/metadata.json")).unwrap(),
    )
    .unwrap();
    let n = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in the summary")) as f64
    };
    assert!(n("orders") > 0.0, "the run placed orders");
    for (metric, key) in [
        ("shopsim_orders_total", "orders"),
        ("shopsim_sessions_started_total", "sessions"),
        ("shopsim_sessions_completed_total", "sessions_completed"),
        ("shopsim_sessions_abandoned_total", "abandoned"),
        ("shopsim_sessions_failed_total", "sessions_failed"),
        ("shopsim_offers_assigned_total", "offers_assigned"),
        ("shopsim_offers_applied_total", "offers_applied"),
        ("shopsim_agent_days_total", "agent_days"),
    ] {
        assert_eq!(
            sample(&samples, metric, &[]),
            n(key),
            "{metric} vs summary {key}"
        );
    }
    // The last day's sessions, all ended once the run has finished.
    let planned = sample(&samples, "shopsim_day_sessions_planned", &[]);
    assert!(planned > 0.0, "the last day planned sessions");
    assert_eq!(sample(&samples, "shopsim_day_sessions_ended", &[]), planned);
    let revenue_cents = (summary["revenue"].as_f64().unwrap() * 100.0).round();
    assert_eq!(
        sample(&samples, "shopsim_revenue_cents_total", &[]),
        revenue_cents
    );
    // Requests per endpoint and outcome, and the latency histograms' counts.
    let requests: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(summary["requests"].clone()).unwrap();
    assert!(!requests.is_empty());
    for (endpoint, line) in &requests {
        for (outcome, count) in line["outcomes"].as_object().unwrap() {
            assert_eq!(
                sample(
                    &samples,
                    "shopsim_requests_total",
                    &[("endpoint", endpoint), ("outcome", outcome)]
                ),
                count.as_u64().unwrap() as f64,
                "{endpoint} {outcome}"
            );
        }
        let hist = samples
            .iter()
            .find(|s| {
                s.metric == "shopsim_request_duration_seconds"
                    && s.labels.get("endpoint") == Some(endpoint.as_str())
            })
            .unwrap_or_else(|| panic!("no latency histogram for {endpoint}"));
        let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
            panic!("{endpoint}: not a histogram");
        };
        let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
        assert_eq!(
            inf.count,
            line["requests"].as_u64().unwrap() as f64,
            "{endpoint}"
        );
    }
    assert_eq!(
        sample(
            &samples,
            "shopsim_run_info",
            &[
                ("run_id", "scraped"),
                ("shard", "0/1"),
                ("persona_set", "grocery")
            ]
        ),
        1.0
    );
    // The embedded reference server's metrics are not mixed into the host's.
    assert!(
        !text.contains("shopsim_server_"),
        "server metrics leaked into the host's"
    );

    // Every log line parses, with the documented fields.
    let log = std::fs::read_to_string(dir.path().join("scraped.log")).unwrap();
    assert!(log.lines().count() > 3);
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in [
            "timestamp",
            "level",
            "target",
            "run_id",
            "sim_time",
            "message",
            "fields",
        ] {
            assert!(v.get(key).is_some(), "no {key} in {line}");
        }
    }
    assert!(
        log.contains("Prometheus endpoint up"),
        "the endpoint's address is logged"
    );
}

/// A taken port is a clear error before the run starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_metrics_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_command(dir.path(), "taken", &["--metrics-addr", &addr])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("--metrics-addr {addr}: cannot listen")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_pass_or_exit_99() {
    let dir = tempfile::tempdir().unwrap();
    let passing = run_command(
        dir.path(),
        "passes",
        &[
            "--threshold",
            "errors.rate<1%",
            "--threshold",
            "checkout.p99<60s",
            "--threshold",
            "checkout.count>=1",
        ],
    )
    .output()
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&passing.stderr);
    assert_eq!(passing.status.code(), Some(0), "{err}");
    let md = std::fs::read_to_string(dir.path().join("runs/passes/summary.md")).unwrap();
    assert!(
        md.contains("| `errors.rate<1%` |") && md.contains("passed"),
        "{md}"
    );

    let crossing = run_command(
        dir.path(),
        "crosses",
        &[
            "--threshold",
            "errors.rate<1%",
            "--threshold",
            "checkout.p99<0.001ms",
        ],
    )
    .output()
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&crossing.stderr);
    assert_eq!(crossing.status.code(), Some(99), "{err}");
    assert!(
        err.contains("threshold crossed: checkout.p99<0.001ms (measured"),
        "{err}"
    );
    assert!(!err.contains("threshold crossed: errors.rate"), "{err}");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/crosses/metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["status"], "finished");
    assert_eq!(meta["thresholds"][1]["passed"], false);

    // Aborting early: the run stops (resumable) after the first simulated hour that crossed.
    let aborted = run_command(
        dir.path(),
        "aborts",
        &[
            "--threshold",
            "view_product.count<1",
            "--abort-on-threshold",
        ],
    )
    .output()
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&aborted.stderr);
    assert_eq!(aborted.status.code(), Some(99), "{err}");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/aborts/metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["status"], "interrupted", "{meta}");
    assert!(
        meta["aborted_by_threshold"]
            .as_str()
            .is_some_and(|s| s.contains("view_product.count<1")),
        "{meta}"
    );
    assert!(
        meta["simulated_hours"].as_f64().unwrap() < 48.0,
        "stopped early: {meta}"
    );

    // A threshold that does not parse is refused before the run starts.
    let bad = run_command(dir.path(), "bad", &["--threshold", "chekout.p99<1s"])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown metric `chekout.p99`"), "{err}");
}
