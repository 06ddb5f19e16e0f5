//! `shopsim check` through the library function the CLI calls: determinism, and the
//! `voiceoffers` set landing near the original simulation's observed figures.

use std::path::PathBuf;

use chrono::NaiveDate;
use shopsim::cli::check::{CheckArgs, check_report, to_json};

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

#[test]
fn check_json_is_byte_identical_for_a_seed_and_differs_across_seeds() {
    for set in ["grocery", "voiceoffers"] {
        let a = to_json(&check_report(&args(set, 40, 10, 7)).unwrap()).unwrap();
        let b = to_json(&check_report(&args(set, 40, 10, 7)).unwrap()).unwrap();
        let c = to_json(&check_report(&args(set, 40, 10, 8)).unwrap()).unwrap();
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

#[test]
fn voiceoffers_lands_near_the_original() {
    // The original: 371 agents, 68,247 sessions: 0.87% of agent-hours shop, 6.7 events per
    // session, 43% of sessions abandoned.
    let r = check_report(&args("voiceoffers", 371, 28, 42)).unwrap();
    let hourly = 100.0 * r.sessions_per_agent_hour;
    assert!(
        (0.75..=1.0).contains(&hourly),
        "shop share of agent-hours {hourly:.3}%"
    );
    assert!(
        (6.2..=7.2).contains(&r.events_per_session),
        "events/session {}",
        r.events_per_session
    );
    assert!(
        (0.38..=0.50).contains(&r.abandon_rate),
        "abandon rate {}",
        r.abandon_rate
    );
    assert_eq!(r.decision_errors, 0, "{:?}", r.errors);
}

#[test]
fn grocery_lands_near_its_targets() {
    let r = check_report(&args("grocery", 150, 28, 42)).unwrap();
    let orders_per_week = r.orders as f64 / (r.agent_days as f64 / 7.0);
    assert!(
        (1.3..=1.9).contains(&orders_per_week),
        "orders/week {orders_per_week}"
    );
    assert!(
        (0.6..=0.76).contains(&r.abandon_rate),
        "abandon rate {}",
        r.abandon_rate
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

#[test]
fn broken_set_fails_with_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("x")).unwrap();
    std::fs::write(
        dir.path().join("x/main.rhai"),
        "fn make_persona(vocab, rng) {\n  #{ a: }\n}\n",
    )
    .unwrap();
    let mut a = args("x", 2, 1, 1);
    a.behaviors = dir.path().to_path_buf();
    let err = check_report(&a).unwrap_err().to_string();
    assert!(err.contains("x/main.rhai:2:"), "{err}");
}
