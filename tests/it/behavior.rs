//! `shopsim check` through the library function the CLI calls: determinism, equality with
//! `run --actions inprocess`, and the persona sets landing near their calibration targets.

use std::path::PathBuf;

use chrono::NaiveDate;
use shopsim::cli::check::{CheckArgs, CheckReport, check_report, to_json};
use shopsim::sim::run::{ActionsMode, RunSettings, run};
use tokio_util::sync::CancellationToken;

use crate::backend_tests;
use crate::support::TestDb;

fn args(set: &str, agents: usize, days: u32, seed: u64) -> CheckArgs {
    CheckArgs {
        persona_set: set.to_string(),
        behaviors: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("behaviors"),
        agents,
        days,
        seed,
        start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        json: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_json_is_byte_identical_for_a_seed_and_differs_across_seeds() {
    for set in ["grocery", "voiceoffers"] {
        let a = to_json(&check_report(&args(set, 40, 10, 7)).await.unwrap()).unwrap();
        let b = to_json(&check_report(&args(set, 40, 10, 7)).await.unwrap()).unwrap();
        let c = to_json(&check_report(&args(set, 40, 10, 8)).await.unwrap()).unwrap();
        assert_eq!(a, b, "{set}: same seed must give identical output");
        assert_ne!(a, c, "{set}: another seed must give other output");
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        for key in [
            "agent_days",
            "sessions",
            "orders",
            "abandon_rate",
            "mean_basket_items",
            "orders_by_hour",
            "orders_by_weekday",
            "days_between_orders",
            "script_version",
        ] {
            assert!(v.get(key).is_some(), "{set}: missing {key}");
        }
        assert_eq!(v["orders_by_hour"].as_array().unwrap().len(), 24);
        assert_eq!(v["orders_by_weekday"].as_array().unwrap().len(), 7);
        assert_eq!(v["decision_errors"], 0, "{set}: {}", v["errors"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voiceoffers_lands_near_the_original() {
    // The original: 371 agents, 68,247 sessions: 0.87% of agent-hours shop, 6.7 events per
    // session, 43% of sessions abandoned.
    let r = check_report(&args("voiceoffers", 371, 14, 42))
        .await
        .unwrap();
    let hourly = 100.0 * r.shopping.sessions_per_agent_hour;
    assert!(
        (0.75..=1.0).contains(&hourly),
        "shop share of agent-hours {hourly:.3}%"
    );
    assert!(
        (6.2..=7.2).contains(&r.shopping.events_per_session),
        "events/session {}",
        r.shopping.events_per_session
    );
    assert!(
        (0.38..=0.50).contains(&r.abandon_rate),
        "abandon rate {}",
        r.abandon_rate
    );
    assert_eq!(r.decision_errors, 0, "{:?}", r.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grocery_lands_near_its_targets() {
    let r = check_report(&args("grocery", 150, 28, 42)).await.unwrap();
    let orders_per_week = r.orders as f64 / (r.agent_days as f64 / 7.0);
    let abandon_rate = r.abandon_rate;
    let r = &r.shopping;
    assert!(
        (1.3..=1.9).contains(&orders_per_week),
        "orders/week {orders_per_week}"
    );
    assert!(
        (0.6..=0.76).contains(&abandon_rate),
        "abandon rate {abandon_rate}"
    );
    assert!(
        (5.0..=12.0).contains(&r.mean_basket_items),
        "basket {}",
        r.mean_basket_items
    );
    let weekend = r.orders_by_weekday[5] + r.orders_by_weekday[6];
    let tue_wed = r.orders_by_weekday[1] + r.orders_by_weekday[2];
    assert!(weekend > tue_wed, "weekend {weekend} vs Tue+Wed {tue_wed}");
    let day: u64 = r.orders_by_hour[9..17].iter().sum();
    let night: u64 = r.orders_by_hour[0..6].iter().sum();
    assert!(day > 10 * night.max(1), "day {day} night {night}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_set_fails_with_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("x")).unwrap();
    std::fs::write(
        dir.path().join("x/main.rhai"),
        "fn make_persona(vocab, rng) {\n  #{ a: }\n}\n",
    )
    .unwrap();
    let mut a = args("x", 2, 1, 1);
    a.behaviors = dir.path().to_path_buf();
    let err = check_report(&a).await.unwrap_err().to_string();
    assert!(err.contains("x/main.rhai:2:"), "{err}");
}

backend_tests!(check_equals_an_inprocess_run);

/// `check` runs the engine: its figures are those of `run --actions inprocess` with the same
/// seed, set, agents, start and days on a fresh database of either backend.
async fn check_equals_an_inprocess_run(t: TestDb) {
    let a = args("voiceoffers", 60, 7, 11);
    let checked = check_report(&a).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = RunSettings {
        persona_set: a.persona_set.clone(),
        agents: a.agents as u64,
        days: a.days,
        seed: a.seed,
        start: Some(a.start),
        ..crate::run::settings("check-vs-run", ActionsMode::Inprocess, dir.path())
    };
    let result = run(t.db.clone(), settings, CancellationToken::new())
        .await
        .unwrap();
    let ran = CheckReport::from_summary(&result.summary, a.days, a.start);
    assert!(checked.orders > 0 && checked.sessions > 0, "{checked:?}");
    assert_eq!(checked, ran);
    // The summary carries the same statistics into metadata.json.
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(result.folder.join("metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        meta["shopping"]["orders_by_hour"],
        serde_json::to_value(checked.shopping.orders_by_hour).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_errors_are_counted_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("behaviors/voiceoffers/main.rhai"),
    )
    .unwrap()
    .replace(
        "fn plan_day(persona, history, calendar, catalog, wallet, rng) {",
        "fn plan_day(persona, history, calendar, catalog, wallet, rng) {\n    if calendar.month == 3 && calendar.day_of_month == 5 { throw \"boom on day two\"; }",
    );
    std::fs::create_dir_all(dir.path().join("broken")).unwrap();
    std::fs::write(dir.path().join("broken/main.rhai"), src).unwrap();
    copy_lib(dir.path());
    // The load-time dry run decides for January days; the error strikes on the run's 2nd day.
    let mut a = args("broken", 5, 3, 1);
    a.start = NaiveDate::from_ymd_opt(2024, 3, 4).unwrap();
    a.behaviors = dir.path().to_path_buf();
    let r = check_report(&a).await.unwrap();
    assert_eq!(r.decision_errors, 5, "{r:?}");
    assert!(r.errors[0].contains("boom on day two"), "{:?}", r.errors);
    assert_eq!(
        r.agent_days, 15,
        "a failed day is recorded as a day without shopping"
    );
}

fn copy_lib(to: &std::path::Path) {
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("behaviors/lib");
    std::fs::create_dir_all(to.join("lib")).unwrap();
    for e in std::fs::read_dir(lib).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join("lib").join(e.file_name())).unwrap();
    }
}
