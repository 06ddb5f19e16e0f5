//! `shopsim run` as a child process (the tracing subscriber is process-global): every line of
//! its JSON log parses with the documented fields, and the status line shows without a
//! terminal.

use std::process::Stdio;

use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_writes_json_log_lines_with_run_and_simulated_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/run.log");
    let out = Command::new(env!("CARGO_BIN_EXE_shopsim"))
        .args(["run", "--database-url"])
        .arg(format!("sqlite://{}", dir.path().join("a.db").display()))
        .args([
            "--run-id",
            "logged",
            "--agents",
            "30",
            "--days",
            "2",
            "--start",
            "2024-01-01",
        ])
        .args([
            "--actions",
            "inprocess",
            "--no-tui",
            "--no-report",
            "--log-level",
            "debug",
        ])
        .args([
            "--behaviors",
            concat!(env!("CARGO_MANIFEST_DIR"), "/behaviors"),
        ])
        .arg("--run-dir")
        .arg(dir.path().join("runs"))
        .arg("--log-file")
        .arg(&log)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 5, "{} log lines", lines.len());
    let mut with_sim_time = 0;
    for line in &lines {
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
        assert!(v["fields"].is_object(), "{line}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).is_ok(),
            "{line}"
        );
        if v["run_id"] == "logged" && v["sim_time"].is_string() {
            with_sim_time += 1;
        }
    }
    assert!(
        with_sim_time > 0,
        "no line carries the run and its simulated time"
    );
}
