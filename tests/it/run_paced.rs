//! The paced acceptance test of `shopsim run`: a run at a high time scale (4 simulated hours
//! per wall second) in-process on SQLite. Paced mode releases each event when the wall clock
//! reaches it; events may run late but are never dropped or thinned, and the lag is reported.

use std::path::Path;
use std::time::Instant;

use chrono::NaiveDate;
use shopsim::sim::clock::TimeScale;
use shopsim::sim::records::{Format, export_run};
use shopsim::sim::run::{ActionsMode, RunSettings, run};
use tokio_util::sync::CancellationToken;

use crate::support::{TestDb, assert_same_export, count, read_dir};

const AGENTS: u64 = 20;
/// Simulated seconds per wall second: 4 simulated hours.
const SCALE: f64 = 3600.0 * 4.0;

fn settings(run_id: &str, time_scale: TimeScale, dir: &Path) -> RunSettings {
    RunSettings {
        agents: AGENTS,
        seed: 7,
        // The engine runs whole days from local midnight: one day is 6 s of wall time here.
        start: Some(NaiveDate::from_ymd_opt(2024, 3, 4).unwrap()),
        days: 1,
        time_scale,
        ..crate::run::settings(run_id, ActionsMode::Inprocess, dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_run_drops_nothing_and_reports_lag() {
    let t = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let wall = Instant::now();
    let paced = run(
        t.db.clone(),
        settings("paced", TimeScale::Scaled(SCALE), dir.path()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let wall = wall.elapsed().as_secs_f64();
    let s = &paced.summary;
    eprintln!(
        "paced: wall {wall:.2} s, achieved {:?}, lag {:?}, sessions {}/{}",
        s.time_scale_achieved, s.lag, s.sessions, s.sessions_planned
    );
    assert!(!paced.stopped);

    // Paced, not `max`: one simulated day at 14 400× takes 6 s of wall time, and the achieved
    // scale is reported (never faster than the target).
    let span = 86_400.0 / SCALE;
    assert!(wall >= span * 0.95, "took {wall:.2} s, paced span {span} s");
    let achieved = s.time_scale_achieved.expect("achieved scale reported");
    assert!(achieved <= SCALE * 1.05, "achieved {achieved}");

    // Lag is measured and reported.
    let lag = s.lag.expect("lag percentiles in a paced run");
    assert!(lag.count > 0);
    assert!(lag.p50_ms <= lag.p95_ms && lag.p95_ms <= lag.p99_ms && lag.p99_ms <= lag.max_ms);
    let md = std::fs::read_to_string(paced.folder.join("summary.md")).unwrap();
    assert!(md.to_lowercase().contains("lag"), "summary.md reports lag");

    // Every planned session ran to an outcome; none was dropped.
    assert!(s.sessions_planned > 0);
    assert_eq!(
        count(
            &t.db,
            "SELECT COUNT(*) AS n FROM sim_sessions WHERE status = 'planned'"
        )
        .await,
        0,
        "sessions left planned"
    );
    assert_eq!(s.sessions, s.sessions_planned);
    assert_eq!(
        count(&t.db, "SELECT COUNT(*) AS n FROM shopping_sessions").await,
        s.sessions_planned,
        "a shopping session for every planned session"
    );
    assert_eq!(
        s.sessions_completed + s.abandoned + s.sessions_failed,
        s.sessions_planned
    );
    assert_eq!(s.sessions_failed, 0);
    assert_eq!(s.agent_days, AGENTS);

    // Nothing thinned: the paced run's dataset equals a `max` run of the same seed.
    export_run(
        &t.db,
        "paced",
        Format::Csv,
        &dir.path().join("export-paced"),
    )
    .await
    .unwrap();
    let other = TestDb::sqlite().await;
    let max = run(
        other.db.clone(),
        settings("max", TimeScale::Max, dir.path()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(max.summary.lag.is_none(), "no lag in max mode");
    export_run(
        &other.db,
        "max",
        Format::Csv,
        &dir.path().join("export-max"),
    )
    .await
    .unwrap();
    let (a, b) = (
        read_dir(&dir.path().join("export-paced")),
        read_dir(&dir.path().join("export-max")),
    );
    assert_eq!(a.len(), 6, "six dataset files");
    assert_same_export(&a, &b, "paced vs max");
}
