//! Tests of the behaviour host with scripts written to temporary behaviours folders: bad
//! scripts fail with clear, located errors and never panic; reload keeps the last good version.

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use super::calendar::Calendar;
use super::error::BehaviorError;
use super::inputs::History;
use super::reload::{LiveSet, ReloadEvent};
use super::set::{Agent, PersonaSet};
use super::world::{World, agent_key};

static WORLD: LazyLock<Arc<World>> =
    LazyLock::new(|| Arc::new(World::new(crate::catalog::generate::generate(1))));

const GOOD: &str = r#"fn make_persona(vocab, rng) {
    #{ x: rng.uniform(), preferred_categories: [vocab.categories[0]] }
}
fn plan_day(persona, history, calendar, catalog, wallet, rng) {
    #{ sessions: [#{ minute: 600, store: 0 }] }
}
fn plan_session(persona, history, calendar, catalog, session, rng) {
    #{ steps: [#{ action: "add", product: 0, qty: 1, think: 5 }] }
}
fn choose_offers(persona, history, calendar, catalog, cart, rng) { #{ apply: [], think: 1 } }
fn decide_checkout(persona, history, calendar, catalog, cart, rng) { #{ checkout: true, think: 1 } }
fn on_outcome(persona, history, calendar, catalog, outcome, rng) { #{ action: "skip", think: 1 } }
"#;

fn folder(main: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("t")).unwrap();
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    std::fs::write(dir.path().join("t/main.rhai"), main).unwrap();
    std::fs::write(
        dir.path().join("lib/helper.rhai"),
        "fn twice(x) { x * 2 }\n",
    )
    .unwrap();
    dir
}

/// GOOD with `plan_day`'s body replaced.
fn with_plan_day(body: &str) -> String {
    GOOD.replace(
        "    #{ sessions: [#{ minute: 600, store: 0 }] }\n",
        &format!("{body}\n"),
    )
}

fn load(dir: &Path) -> Result<Arc<LiveSet>, BehaviorError> {
    LiveSet::load(dir, "t", WORLD.clone())
}

/// Loads `bad` directly (must fail) and as a reload over GOOD (must keep GOOD).
fn bad_script(bad: &str) -> BehaviorError {
    let dir = folder(GOOD);
    let live = load(dir.path()).unwrap();
    let good_version = live.current().version().clone();
    std::fs::write(dir.path().join("t/main.rhai"), bad).unwrap();
    let err = load(dir.path())
        .err()
        .expect("bad script must fail to load");
    match live.reload() {
        ReloadEvent::Failed { error, kept } => {
            assert_eq!(error, err);
            assert_eq!(kept, good_version);
        }
        other => panic!("reload of a bad script: {other:?}"),
    }
    assert_eq!(live.current().version(), &good_version);
    err
}

fn location(err: &BehaviorError) -> (String, usize) {
    match err {
        BehaviorError::Compile { file, line, .. } | BehaviorError::Runtime { file, line, .. } => {
            (file.clone(), *line)
        }
        other => panic!("expected a located error, got {other:?}"),
    }
}

#[test]
fn good_script_loads_and_decides() {
    let dir = folder(GOOD);
    let live = load(dir.path()).unwrap();
    assert_eq!(live.current().version().len(), 16);
}

#[test]
fn syntax_error_names_file_line_column() {
    let err = bad_script(&with_plan_day("    let x = ;"));
    let (file, line) = location(&err);
    assert!(file.ends_with("t/main.rhai"), "{err}");
    assert_eq!(line, 5, "{err}");
    assert!(err.to_string().contains("main.rhai:5:"), "{err}");
}

#[test]
fn runtime_error_names_file_line_and_function() {
    let err = bad_script(&with_plan_day("    let a = [1];\n    a[5] + 1"));
    assert!(
        matches!(&err, BehaviorError::Runtime { function, .. } if function == "plan_day"),
        "{err}"
    );
    assert_eq!(location(&err).1, 6, "{err}");
    let err = bad_script(&with_plan_day("    persona.no_such_attribute"));
    assert!(err.to_string().contains("no_such_attribute"), "{err}");
}

#[test]
fn missing_function_is_named() {
    let src = GOOD.replace(
        "fn on_outcome(persona, history, calendar, catalog, outcome, rng) { #{ action: \"skip\", think: 1 } }\n",
        "",
    );
    let err = bad_script(&src);
    assert!(
        matches!(&err, BehaviorError::MissingFunction { function, .. } if function == "on_outcome"),
        "{err}"
    );
    assert!(err.to_string().contains("t/main.rhai"), "{err}");
}

#[test]
fn wrong_return_type_and_out_of_range_values_name_the_field() {
    let err = bad_script(&with_plan_day("    42"));
    assert!(
        matches!(&err, BehaviorError::Output { function, field, .. } if function == "plan_day" && field == "(return value)"),
        "{err}"
    );
    let err = bad_script(&with_plan_day(
        "    #{ sessions: [#{ minute: 2000, store: 0 }] }",
    ));
    assert!(
        matches!(&err, BehaviorError::Output { field, .. } if field == "sessions[0].minute"),
        "{err}"
    );
    assert!(
        err.to_string().contains("t/main.rhai") && err.to_string().contains("0..=1439"),
        "{err}"
    );
    let err = bad_script(&GOOD.replace("[vocab.categories[0]]", "[\"Not A Category\"]"));
    assert!(
        matches!(&err, BehaviorError::Output { field, .. } if field == "preferred_categories"),
        "{err}"
    );
}

#[test]
fn infinite_loop_fails_fast() {
    let t = Instant::now();
    let err = bad_script(&with_plan_day("    let n = 0;\n    loop { n += 1; }"));
    // Two loads and one reload, each failing on the operations limit.
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        err.to_string().to_lowercase().contains("operations"),
        "{err}"
    );
    // Rhai gives no position for this limit: the error points at the function.
    assert_eq!(location(&err).1, 4, "{err}");
}

#[test]
fn huge_array_fails() {
    let err = bad_script(&with_plan_day(
        "    let a = [];\n    for i in 0..1000000 { a.push(i); }\n    a",
    ));
    assert!(err.to_string().to_lowercase().contains("array"), "{err}");
    assert!(matches!(err, BehaviorError::Runtime { .. }), "{err}");
}

#[test]
fn forbidden_imports_and_eval_are_refused() {
    for path in ["../secret", "/etc/passwd", "lib/helper", "missing"] {
        let src = with_plan_day(&format!(
            "    import \"{path}\" as h;\n    #{{ sessions: [] }}"
        ));
        let err = bad_script(&src);
        let (file, line) = location(&err);
        assert!(file.ends_with("t/main.rhai"), "{path}: {err}");
        assert_eq!(line, 5, "{path}: {err}");
        assert!(err.to_string().contains(path), "{path}: {err}");
    }
    let err = bad_script(&with_plan_day("    eval(\"1\")"));
    assert!(
        matches!(err, BehaviorError::Compile { line: 5, .. }),
        "{err}"
    );
    let err = bad_script(&with_plan_day("    timestamp()"));
    assert!(
        matches!(
            err,
            BehaviorError::Runtime { .. } | BehaviorError::Compile { .. }
        ),
        "{err}"
    );
}

#[test]
fn imports_from_lib_work_and_are_part_of_the_version() {
    let src = with_plan_day(
        "    import \"helper\" as h;\n    #{ sessions: [#{ minute: h::twice(300), store: 0 }] }",
    );
    let dir = folder(&src);
    let set = PersonaSet::load(dir.path(), "t").unwrap();
    let v1 = set.version().clone();
    assert_eq!(set.files().len(), 2);
    let persona = set.make_persona(1, "agent_001", WORLD.vocab()).unwrap();
    let history = Arc::new(History::default());
    let wallet = WORLD.sample_wallet(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap());
    let agent = Agent {
        seed: 1,
        key: "agent_001",
        persona: &persona,
        history: &history,
        wallet: &wallet,
    };
    let cal = Calendar::new(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(), 0, 0);
    let plan = set.plan_day(&agent, &cal, WORLD.view()).unwrap();
    assert_eq!(plan.value.sessions[0].minute, 600);
    assert_eq!(plan.version, v1);
    // Editing the helper changes the version; a broken helper names the helper file.
    std::fs::write(
        dir.path().join("lib/helper.rhai"),
        "fn twice(x) { x * 2 + 1 }\n",
    )
    .unwrap();
    assert_ne!(PersonaSet::load(dir.path(), "t").unwrap().version(), &v1);
    std::fs::write(dir.path().join("lib/helper.rhai"), "fn twice(x) { x * }\n").unwrap();
    let err = PersonaSet::load(dir.path(), "t").unwrap_err();
    assert!(
        matches!(&err, BehaviorError::Compile { file, line: 1, .. } if file.ends_with("lib/helper.rhai")),
        "{err}"
    );
}

#[test]
fn unknown_set_lists_available_ones() {
    let dir = folder(GOOD);
    let err = PersonaSet::load(dir.path(), "nope").unwrap_err();
    assert!(
        err.to_string().contains("available") || err.to_string().contains("found"),
        "{err}"
    );
    assert!(err.to_string().contains(": t"), "{err}");
    assert!(matches!(
        PersonaSet::load(dir.path(), "../t"),
        Err(BehaviorError::BadSetName(_))
    ));
}

#[test]
fn shipped_sets_load_and_dry_run() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("behaviors");
    for name in ["voiceoffers", "grocery"] {
        let live = LiveSet::load(&dir, name, WORLD.clone()).unwrap();
        let set = live.current();
        let p = set.make_persona(3, &agent_key(0), WORLD.vocab()).unwrap();
        assert!(
            p.approx_bytes() < 1024,
            "{name} persona is {} bytes",
            p.approx_bytes()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_picks_up_in_place_and_rename_edits() {
    let dir = folder(GOOD);
    let live = load(dir.path()).unwrap();
    let mut w = super::reload::watch(live.clone()).unwrap();
    let persona = live
        .current()
        .make_persona(1, "agent_001", WORLD.vocab())
        .unwrap();
    let history = Arc::new(History::default());
    let wallet = WORLD.sample_wallet(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap());
    let cal = Calendar::new(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(), 0, 0);
    let minute = |live: &LiveSet| {
        let agent = Agent {
            seed: 1,
            key: "agent_001",
            persona: &persona,
            history: &history,
            wallet: &wallet,
        };
        live.current()
            .plan_day(&agent, &cal, WORLD.view())
            .unwrap()
            .value
            .sessions[0]
            .minute
    };
    assert_eq!(minute(&live), 600);
    let main = dir.path().join("t/main.rhai");

    async fn next_reload(w: &mut super::reload::Watcher) -> ReloadEvent {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), w.events.recv())
                .await
                .expect("no reload within 10 s")
                .expect("watcher stopped");
            if ev != ReloadEvent::Unchanged {
                return ev;
            }
        }
    }

    // In place.
    std::fs::write(&main, GOOD.replace("minute: 600", "minute: 700")).unwrap();
    assert!(matches!(
        next_reload(&mut w).await,
        ReloadEvent::Reloaded { .. }
    ));
    assert_eq!(minute(&live), 700);

    // Temp file, then rename over the script (how many editors save).
    let tmp = dir.path().join("t/.main.rhai.swp");
    std::fs::write(&tmp, GOOD.replace("minute: 600", "minute: 800")).unwrap();
    std::fs::rename(&tmp, &main).unwrap();
    assert!(matches!(
        next_reload(&mut w).await,
        ReloadEvent::Reloaded { .. }
    ));
    assert_eq!(minute(&live), 800);

    // A broken save is reported and the last good version keeps deciding.
    std::fs::write(&main, with_plan_day("    loop {}")).unwrap();
    match next_reload(&mut w).await {
        ReloadEvent::Failed { error, .. } => {
            assert!(error.to_string().contains("main.rhai:4:"), "{error}")
        }
        other => panic!("expected a failed reload, got {other:?}"),
    }
    assert_eq!(minute(&live), 800);
}
