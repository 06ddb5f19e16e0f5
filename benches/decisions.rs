//! One agent-day decision (`plan_day`) per persona set, and the host's floor (a set whose
//! plan_day returns at once). Whole runs are measured by `scripts/bench`.
//!
//! `cargo bench --bench decisions`

use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use criterion::{Criterion, criterion_group, criterion_main};
use shopsim::behavior::calendar::Calendar;
use shopsim::behavior::inputs::History;
use shopsim::behavior::world::{World, agent_key};
use shopsim::behavior::{Agent, PersonaSet};

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("behaviors");
    let world = World::new(shopsim::catalog::generate::generate(42));
    let start = NaiveDate::from_ymd_opt(2024, 1, 1).expect("date");
    // The host's floor: a set whose plan_day returns an empty plan without drawing.
    let floor = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(floor.path().join("floor")).expect("dir");
    let floor_src = std::fs::read_to_string(dir.join("voiceoffers/main.rhai"))
        .expect("voiceoffers")
        .replace(
            "fn plan_day(persona, history, calendar, catalog, wallet, rng) {",
            "fn plan_day(persona, history, calendar, catalog, wallet, rng) {\n    return #{ sessions: [] };",
        );
    std::fs::write(floor.path().join("floor/main.rhai"), floor_src).expect("write");
    std::fs::create_dir_all(floor.path().join("lib")).expect("dir");
    std::fs::copy(
        dir.join("lib/util.rhai"),
        floor.path().join("lib/util.rhai"),
    )
    .expect("copy");
    for (root, name) in [
        (floor.path(), "floor"),
        (dir.as_path(), "voiceoffers"),
        (dir.as_path(), "grocery"),
    ] {
        let set = PersonaSet::load(root, name).expect("set loads");
        let keys: Vec<String> = (0..64).map(agent_key).collect();
        let personas: Vec<_> = keys
            .iter()
            .map(|k| set.make_persona(42, k, world.vocab()).expect("persona"))
            .collect();
        let history = Arc::new(History::default());
        let wallet = world.sample_wallet(start);
        let calendars: Vec<Calendar> = (0..7)
            .map(|d| Calendar::new(start + chrono::Duration::days(d), d as u32, 0))
            .collect();
        let mut i = 0usize;
        c.bench_function(&format!("{name}/plan_day"), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                let agent = Agent {
                    seed: 42,
                    key: &keys[i],
                    persona: &personas[i],
                    history: &history,
                    wallet: &wallet,
                };
                set.plan_day(&agent, &calendars[i % 7], world.view())
                    .expect("plan")
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
