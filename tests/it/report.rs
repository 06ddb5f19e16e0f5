//! `shopsim report`: the HTML report of a short in-process run (40 agents × 3 days, `max`) on
//! both backends, the comparison of two runs, the command line, and a look at the page in
//! headless Chromium (screenshot and console).

use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;

use shopsim::report::{self, data::Group};
use shopsim::sim::records::RunSummary;
use shopsim::sim::run::{ActionsMode, RunSettings, run};
use shopsim::store::Db;
use tokio_util::sync::CancellationToken;

use crate::backend_tests;
use crate::support::TestDb;

backend_tests!(
    report_of_a_short_run,
    compare_two_runs_and_cli,
    checkpoints_spaced_by_wall_time_keep_the_dataset_and_totals
);

/// 40 agents for 3 days from `start` (a Monday), in-process, as fast as possible.
fn settings(run_id: &str, seed: u64, start: NaiveDate, dir: &Path) -> RunSettings {
    RunSettings {
        agents: 40,
        days: 3,
        seed,
        start: Some(start),
        ..crate::run::settings(run_id, ActionsMode::Inprocess, dir)
    }
}

fn monday(month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, month, day).unwrap()
}

async fn short_run(db: &Db, run_id: &str, seed: u64, start: NaiveDate, dir: &Path) -> RunSummary {
    let r = run(
        db.clone(),
        settings(run_id, seed, start, dir),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(r.summary.orders > 0, "the run placed orders");
    r.summary
}

/// What every rendered page must be: one complete, self-contained, balanced document.
fn assert_self_contained(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"), "doctype");
    assert!(html.trim_end().ends_with("</html>"), "complete document");
    for forbidden in [
        "http://", "https://", "<script", "<link", "@import", "url(", "NaN",
    ] {
        assert!(!html.contains(forbidden), "the page contains `{forbidden}`");
    }
    for (open, close) in [
        ("<svg", "</svg>"),
        ("<section", "</section>"),
        ("<table>", "</table>"),
        ("<figure>", "</figure>"),
        ("<tr", "</tr>"),
        ("<details>", "</details>"),
        ("<header>", "</header>"),
        ("<text ", "</text>"),
    ] {
        assert_eq!(
            html.matches(open).count(),
            html.matches(close).count(),
            "{open} and {close} are balanced"
        );
    }
}

/// The text of the value cell next to a label cell in a two-column table.
fn table_value(html: &str, label: &str) -> Option<String> {
    let start = html.find(&format!("<tr><td>{label}</td><td>"))? + label.len() + 17;
    let end = html[start..].find("</td>")? + start;
    Some(html[start..end].to_string())
}

async fn report_of_a_short_run(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let summary = short_run(&t.db, "rep", 42, monday(1, 1), dir.path()).await;
    let path = report::write_report(&t.db, "rep", dir.path())
        .await
        .unwrap();
    assert_eq!(path, dir.path().join("rep").join("report.html"));
    let html = std::fs::read_to_string(&path).unwrap();
    assert_self_contained(&html);
    for id in [
        "summary", "days", "funnel", "timing", "offers", "uplift", "latency", "errors", "requests",
        "config",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "section {id}"
        );
    }
    assert!(
        html.matches("<svg class=\"chart\"").count() >= 12,
        "the charts are there"
    );
    // The figures are the summary's.
    let thousands = report::pages::thousands;
    assert_eq!(
        table_value(&html, "orders").as_deref(),
        Some(thousands(summary.orders).as_str())
    );
    assert_eq!(
        table_value(&html, "revenue").as_deref(),
        Some(report::pages::money(summary.revenue).as_str())
    );
    assert!(html.contains("<div class=\"label\">orders</div><div class=\"value\">"));
    assert!(html.contains("placed an order</text><rect x=\"260\""));

    // The data behind the charts adds up to the summary, counted independently.
    let d = report::load(&t.db, "rep").await.unwrap();
    assert_eq!(d.days.len(), 3, "three simulated days");
    assert_eq!(d.days.iter().map(|x| x.orders).sum::<u64>(), summary.orders);
    assert_eq!(
        d.days
            .iter()
            .map(|x| x.revenue)
            .sum::<shopsim::money::Money>(),
        summary.revenue
    );
    assert_eq!(
        d.days.iter().map(|x| x.started).sum::<u64>(),
        summary.sessions
    );
    assert_eq!(
        d.days.iter().map(|x| x.abandoned).sum::<u64>(),
        summary.abandoned
    );
    assert_eq!(d.orders_by_hour.iter().sum::<u64>(), summary.orders);
    assert_eq!(d.orders_by_weekday.iter().sum::<u64>(), summary.orders);
    // 2024-01-01 is a Monday: three days are Monday to Wednesday.
    assert_eq!(d.orders_by_weekday[3..].iter().sum::<u64>(), 0);
    assert_eq!(d.funnel.sessions, summary.sessions);
    assert_eq!(d.funnel.ordered, summary.orders, "one order per session");
    assert!(d.funnel.sessions >= d.funnel.viewed && d.funnel.viewed >= d.funnel.carted);
    assert!(d.funnel.carted >= d.funnel.ordered);
    let groups: Vec<_> = [Group::Treated, Group::Holdout, Group::Unassigned]
        .into_iter()
        .map(|g| d.group(g))
        .collect();
    assert_eq!(
        groups.iter().map(|g| g.shoppers).sum::<u64>(),
        summary.agents
    );
    assert_eq!(groups.iter().map(|g| g.orders).sum::<u64>(), summary.orders);
    assert_eq!(
        groups
            .iter()
            .map(|g| g.spend)
            .sum::<shopsim::money::Money>(),
        summary.revenue
    );
    assert_eq!(
        groups.iter().map(|g| g.sessions).sum::<u64>(),
        summary.sessions
    );
    assert!(d.group(Group::Treated).shoppers > 0);
    assert_eq!(
        d.offers_by_type.iter().map(|o| o.assigned).sum::<u64>(),
        summary.offers_assigned
    );
    assert_eq!(
        d.offers_by_type.iter().map(|o| o.redeemed).sum::<u64>(),
        summary.offers_redeemed
    );
    assert_eq!(d.intervals.len(), 72, "one point per simulated hour");
    let requests: u64 = summary.requests.values().map(|e| e.requests).sum();
    assert_eq!(
        d.intervals.iter().map(|i| i.requests).sum::<u64>(),
        requests
    );
    assert_eq!(d.latency.count, requests);
    assert!(
        d.intervals
            .windows(2)
            .all(|w| w[0].wall_seconds <= w[1].wall_seconds)
    );
    // Read in other pieces (intervals a few at a time, pages ending inside a chart point), the
    // data are the same.
    let paged = report::load_paged(&t.db, "rep", None, report::Pages { intervals: 5 })
        .await
        .unwrap();
    assert!(d.intervals.len() > 5, "several pages");
    assert_eq!(paged.days, d.days);
    assert_eq!(paged.orders_by_hour, d.orders_by_hour);
    assert_eq!(paged.orders_by_weekday, d.orders_by_weekday);
    assert_eq!(paged.intervals, d.intervals);
    assert_eq!(paged.intervals_per_point, d.intervals_per_point);
    assert_eq!(paged.latency, d.latency);

    // Text from the database is escaped.
    let tx = t.db.write().await.unwrap();
    let mut config = d.run.config.clone();
    config["note"] = serde_json::json!("</pre><script>alert(1)</script>");
    tx.exec(
        "UPDATE sim_runs SET persona_set = $1, config = $2 WHERE run_id = $3",
        vec![
            "<img src=x onerror=alert(1)>".into(),
            tx.codec().json(&config),
            "rep".into(),
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let html = report::render_report(&t.db, "rep").await.unwrap();
    assert_self_contained(&html);
    assert!(!html.contains("<img") && html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("&lt;/pre&gt;&lt;script&gt;"));

    let err = report::write_report(&t.db, "no-such-run", dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no run with id `no-such-run`"), "{err}");
}

async fn compare_two_runs_and_cli(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let a = short_run(&t.db, "run-a", 42, monday(1, 1), dir.path()).await;
    let b = short_run(&t.db, "run-b", 7, monday(2, 5), dir.path()).await;
    let out = report::comparison_path(dir.path(), "run-a", "run-b");
    assert_eq!(out, dir.path().join("compare-run-a-run-b.html"));
    report::write_comparison(&t.db, "run-a", "run-b", &out)
        .await
        .unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert_self_contained(&html);
    assert!(html.contains("Run comparison: run-a vs run-b"));
    assert!(html.contains("A · run-a") && html.contains("B · run-b"));
    assert!(html.matches("<svg class=\"chart\"").count() >= 12);
    // The orders row: A, B, B − A, relative.
    let row = format!(
        "<tr><td>orders</td><td>{}</td><td>{}</td>",
        report::pages::thousands(a.orders),
        report::pages::thousands(b.orders)
    );
    assert!(html.contains(&row), "{row}");

    // The command line.
    let url = t.url.redacted();
    if url.contains("***") {
        eprintln!("note: the test database URL has a password; skipping the CLI part");
        return;
    }
    let shopsim = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopsim"))
            .arg("report")
            .args(args)
            .args(["--database-url", &url])
            .env_remove("DATABASE_URL")
            .env_remove("SHOPSIM_RUN_DIR")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let runs = dir.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let (code, out, err) = shopsim(&["run-a", "--run-dir", runs_s]);
    assert_eq!(code, Some(0), "{err}");
    let written = runs.join("run-a").join("report.html");
    assert!(out.contains(written.to_str().unwrap()), "{out}");
    assert_self_contained(&std::fs::read_to_string(&written).unwrap());
    let (code, _, err) = shopsim(&["--compare", "run-a", "run-b", "--run-dir", runs_s]);
    assert_eq!(code, Some(0), "{err}");
    assert!(runs.join("compare-run-a-run-b.html").exists());
    let custom = dir.path().join("elsewhere").join("r.html");
    let (code, _, err) = shopsim(&["run-b", "--out", custom.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        std::fs::read_to_string(&custom)
            .unwrap()
            .contains("Run report: run-b")
    );
    let (code, _, err) = shopsim(&["--compare", "run-a", "nope", "--run-dir", runs_s]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no run with id `nope`"), "{err}");
    let (code, _, err) = shopsim(&[]);
    assert_eq!(code, Some(2), "a run id or --compare is required: {err}");
}

/// Runs a command with a time limit; returns (status ok, stdout, stderr).
async fn run_limited(cmd: &mut tokio::process::Command) -> (bool, Vec<u8>, String) {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.kill_on_drop(true).output())
        .await
        .expect("chromium finishes within two minutes")
        .expect("chromium starts");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The report as a person sees it: headless Chromium renders it without any console message
/// (no script error, no blocked load), the DOM holds the charts, and a screenshot shows them.
/// Fails when Chromium is missing (`.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_renders_in_chromium() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "Chromium is needed for this test: apt-get install -y chromium (.ci/run installs it)",
        );
    let t = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    short_run(&t.db, "shot", 42, monday(1, 1), dir.path()).await;
    let path = report::write_report(&t.db, "shot", dir.path())
        .await
        .unwrap();
    let url = format!("file://{}", path.display());
    let base = |cmd: &mut tokio::process::Command, profile: &str| {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join(profile).display()
        ));
    };

    let mut cmd = tokio::process::Command::new(chromium);
    base(&mut cmd, "dom");
    cmd.args(["--dump-dom", &url]);
    let (ok, dom, log) = run_limited(&mut cmd).await;
    assert!(ok, "chromium --dump-dom failed: {log}");
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let dom = String::from_utf8_lossy(&dom);
    assert!(dom.contains("Run report: shot"), "the DOM holds the page");
    assert!(
        dom.matches("<svg class=\"chart\"").count() >= 12,
        "the DOM holds the charts"
    );

    let shot = dir.path().join("shot.png");
    let mut cmd = tokio::process::Command::new(chromium);
    base(&mut cmd, "shot");
    cmd.arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1280,2000", &url]);
    let (ok, _, log) = run_limited(&mut cmd).await;
    assert!(ok, "chromium --screenshot failed: {log}");
    let bytes = std::fs::read(&shot).expect("a screenshot was written");
    assert!(
        bytes.len() > 50_000,
        "the screenshot is {} bytes: a blank page?",
        bytes.len()
    );
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 2000));
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut not_white = 0usize;
    for px in pixels.chunks(channels) {
        let rgb = [px[0], px[1], px.get(2).copied().unwrap_or(px[0])];
        if rgb != [255, 255, 255] {
            not_white += 1;
        }
        colours.insert(rgb);
    }
    let total = pixels.len() / channels;
    assert!(colours.len() > 50, "{} colours only", colours.len());
    assert!(
        not_white * 50 > total,
        "only {not_white} of {total} pixels are not white"
    );
    // The chart colours are on screen (the first series colour, #4269d0).
    assert!(
        colours.contains(&[0x42, 0x69, 0xd0]),
        "chart colour missing"
    );
}

/// A `max` run whose checkpoints are spaced by wall time (`checkpoint_every`) checkpoints at
/// each simulated day's end at least: fewer intervals than hours, the same totals in them, and
/// the same dataset as a run checkpointed every hour.
async fn checkpoints_spaced_by_wall_time_keep_the_dataset_and_totals(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let hourly = short_run(&t.db, "hourly", 42, monday(1, 1), dir.path()).await;
    // A second database for the same seed (the dataset would otherwise be shared).
    let other = match t.backend() {
        shopsim::store::Backend::Sqlite => TestDb::sqlite().await,
        shopsim::store::Backend::Postgres => TestDb::postgres().await.unwrap(),
    };
    let spaced = run(
        other.db.clone(),
        RunSettings {
            checkpoint_every: std::time::Duration::from_secs(3600),
            ..settings("spaced", 42, monday(1, 1), dir.path())
        },
        CancellationToken::new(),
    )
    .await
    .unwrap()
    .summary;
    let d = report::load(&other.db, "spaced").await.unwrap();
    assert_eq!(d.intervals.len(), 3, "one checkpoint per simulated day");
    let requests: u64 = spaced.requests.values().map(|e| e.requests).sum();
    assert_eq!(
        d.intervals.iter().map(|i| i.requests).sum::<u64>(),
        requests
    );
    assert_eq!(
        (spaced.sessions, spaced.orders, spaced.revenue),
        (hourly.sessions, hourly.orders, hourly.revenue)
    );
}
