//! Sharded runs: leases and fencing on both backends; on PostgreSQL, three shard processes
//! against one database give the single process's export byte for byte — with one shard
//! killed and restarted, a duplicate process for a leased slice kept out, and a paused
//! (stale) shard fenced off after its slice was taken over — and paced shards share a clock.

use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use shopsim::sim::clock::ClockSchedule;
use shopsim::sim::records::shards::{Acquire, Claim, ShardProgress, try_acquire};
use shopsim::sim::records::{RecordsError, RunStatus, load_shards, stored_snapshot};
use shopsim::sim::shard::clock_sync::load_clock;
use shopsim::store::Db;
use tokio::process::{Child, Command};

use crate::backend_tests;
use crate::crash::{check_invariants, export, finish, run_command, run_through};
use crate::support::{TestDb, shopsim_json};

backend_tests!(leases_fence_off_a_stale_owner);

/// Take, hold, take over, fence, release — the lease rules without processes.
async fn leases_fence_off_a_stale_owner(t: TestDb) {
    let now = Utc::now();
    shopsim::sim::records::create_run(
        &t.db,
        &shopsim::sim::records::RunRecord {
            run_id: "leases".into(),
            status: RunStatus::Running,
            config: serde_json::json!({}),
            seed: 1,
            persona_set: "grocery".into(),
            agents: 3,
            sim_start: day(1),
            sim_end: day(2),
            checkpoint_at: None,
            clock: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        },
    )
    .await
    .unwrap();
    let claim = |owner: &'static str, ttl: i64| Claim {
        run_id: "leases",
        shard: 1,
        shards: 3,
        owner,
        ttl: chrono::Duration::seconds(ttl),
    };
    let alive = |_: &str| false;
    let Acquire::Acquired {
        fence: first,
        previous,
    } = try_acquire(&t.db, &claim("a:1", 60), alive).await.unwrap()
    else {
        panic!("a free shard is taken");
    };
    assert_eq!((first, previous.is_none()), (1, true));
    // Held and not lapsed: another process does not get it.
    match try_acquire(&t.db, &claim("b:2", 60), alive).await.unwrap() {
        Acquire::Held(row) => assert_eq!((row.owner.as_str(), row.fence), ("a:1", 1)),
        other => panic!("a held lease was taken: {other:?}"),
    }
    // Another shard count for the same run is refused with a clear message.
    let wrong = Claim {
        shards: 4,
        ..claim("c:3", 60)
    };
    let err = try_acquire(&t.db, &wrong, alive).await.unwrap_err();
    assert!(err.to_string().contains("runs as 3 shards"), "{err}");
    // A holder known to be gone is taken over at once, with a higher fencing number.
    let Acquire::Acquired {
        fence: second,
        previous,
    } = try_acquire(&t.db, &claim("b:2", 60), |owner: &str| owner == "a:1")
        .await
        .unwrap()
    else {
        panic!("a dead holder's lease is taken over");
    };
    assert_eq!(second, 2);
    assert_eq!(previous.map(|p| p.owner), Some("a:1".to_string()));
    // The old owner's writes and renewals are fenced off, naming the new owner.
    let stale = shopsim::sim::records::Fence {
        run_id: "leases".into(),
        shard: 1,
        fence: first,
    };
    let tx = t.db.write().await.unwrap();
    match stale.check(&tx).await {
        Err(RecordsError::LeaseLost { owner, fence, .. }) => {
            assert_eq!((owner.as_str(), fence), ("b:2", 2))
        }
        other => panic!("a stale fence passed: {other:?}"),
    }
    tx.rollback().await.unwrap();
    let renewed = stale
        .renew(
            &t.db,
            chrono::Duration::seconds(60),
            &ShardProgress::default(),
        )
        .await;
    assert!(
        matches!(renewed, Err(RecordsError::LeaseLost { .. })),
        "{renewed:?}"
    );
    // The new owner renews and reports progress; a lapsed lease is free for anyone.
    let current = shopsim::sim::records::Fence {
        fence: second,
        ..stale.clone()
    };
    let progress = ShardProgress {
        sim_time: Some(Utc::now()),
        lag_p99_ms: Some(1.5),
        sessions_ended: 7,
    };
    current
        .renew(&t.db, chrono::Duration::seconds(-1), &progress)
        .await
        .unwrap();
    let row = &load_shards(&t.db, "leases").await.unwrap()[0];
    assert_eq!((row.sessions_ended, row.lag_p99_ms), (7, Some(1.5)));
    let Acquire::Acquired { fence: third, .. } =
        try_acquire(&t.db, &claim("c:3", 60), alive).await.unwrap()
    else {
        panic!("a lapsed lease is taken over");
    };
    assert_eq!(third, 3);
    // A released, finished shard is not taken again: there is nothing left to do.
    let owner = shopsim::sim::records::Fence {
        fence: third,
        ..stale
    };
    // Shards 0 and 2 never ran: the run is resumable, not finished.
    let run = owner.finish(&t.db, RunStatus::Finished, 3).await.unwrap();
    assert_eq!(run, RunStatus::Interrupted);
    assert!(matches!(
        try_acquire(&t.db, &claim("d:4", 60), alive).await.unwrap(),
        Acquire::Finished(_)
    ));
}

/// A fresh PostgreSQL database, or `None` when no test database is configured.
async fn pg() -> Option<TestDb> {
    TestDb::postgres().await
}

/// One uninterrupted single-process run of `run_id` on a fresh database: the database and the
/// run's export (the reference a sharded run must equal).
async fn single_process(
    run_id: &str,
    actions: &str,
    dir: &std::path::Path,
) -> Option<(TestDb, Vec<(String, Vec<u8>)>)> {
    let reference = pg().await?;
    let url = reference.url.to_string();
    run_through(run_command(
        &url,
        run_id,
        actions,
        &dir.join("runs-ref"),
        &[],
    ))
    .await;
    let export = export(&reference.db, run_id, &dir.join("ref")).await;
    Some((reference, export))
}

/// The shards' rows, by shard.
async fn shards(db: &Db, run_id: &str) -> Vec<shopsim::sim::records::ShardRecord> {
    load_shards(db, run_id).await.unwrap_or_default()
}

/// Waits until `cond` holds for the run's shard rows (panics after `limit`).
async fn until_shards(
    db: &Db,
    run_id: &str,
    what: &str,
    limit: Duration,
    cond: impl Fn(&[shopsim::sim::records::ShardRecord]) -> bool,
) {
    let started = Instant::now();
    loop {
        let rows = shards(db, run_id).await;
        if cond(&rows) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {what}: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ends every database connection of process `pid` (a paused one): found by the local TCP
/// ports of its sockets, which the database sees as its clients' ports, or, through a pooler,
/// by its transactions left open.
async fn cut_connections(db: &Db, pid: u32) {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && inodes.contains(cols[9]) {
                let port = cols[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap().to_string());
            }
        }
    }
    assert!(!ports.is_empty(), "process {pid} has database connections");
    let tx = db.write().await.unwrap();
    let cut = tx
        .query(
            "SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND client_port = ANY(string_to_array($1, ',')::int[])",
            vec![ports.join(",").into()],
        )
        .await
        .unwrap();
    if cut.is_empty() {
        // Through a pooler the database's clients are the pooler's connections: the paused
        // process's transactions are the ones idle for over 2 s (it was paused before the
        // duplicate's 3-s wait; a live shard's last milliseconds). Cutting a live one by
        // mistake would be an outage that shard redoes, not a wrong result.
        tx.query(
            "SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND state = 'idle in transaction' \
               AND state_change < now() - interval '2 seconds'",
            vec![],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

fn day(d: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2024, 1, d)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("a running child has a pid");
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// Shard 2's lease is short, so the test's takeover of the paused process comes soon; shard 0's
/// is long, so its holder keeps it for sure while a duplicate waits 3 s (on a machine busy
/// enough to delay a heartbeat by a second or two, a 2-s lease can lapse, and the duplicate
/// then rightly takes it).
fn lease_ttl(shard: u32) -> &'static str {
    if shard == 0 { "20s" } else { "2s" }
}

fn shard_command(url: &str, dir: &std::path::Path, i: u32) -> Command {
    let shard = format!("{i}/3");
    let extra = ["--shard", shard.as_str(), "--lease-ttl", lease_ttl(i)];
    run_command(url, "sharded", "inprocess", dir, &extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_equal_one_process_through_kills_and_takeovers_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_, expected)) = single_process("sharded", "inprocess", dir.path()).await else {
        return;
    };
    let Some(t) = pg().await else { return };

    let url = t.url.to_string();
    let runs = dir.path().join("runs");
    let mut children: Vec<Child> = (0..3)
        .map(|i| {
            shard_command(&url, &runs, i)
                .spawn()
                .expect("start a shard")
        })
        .collect();
    // Every shard past its first simulated day.
    until_shards(
        &t.db,
        "sharded",
        "day 1 done",
        Duration::from_secs(120),
        |rows| {
            rows.len() == 3
                && rows
                    .iter()
                    .all(|r| r.checkpoint_at.is_some_and(|c| c >= day(2)))
        },
    )
    .await;

    // Shard 2 paused: the others soon wait for it at the end of a simulated day, so the run
    // cannot end while the rest happens.
    signal(&children[2], "STOP");

    // A second process for shard 0, which is leased and alive, waits and writes nothing.
    let before = shards(&t.db, "sharded").await[0].clone();
    let mut dup = shard_command(&url, &runs, 0).spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        dup.try_wait().unwrap().is_none(),
        "the duplicate waits for the lease"
    );
    let now = shards(&t.db, "sharded").await[0].clone();
    assert_eq!(
        (now.owner.as_str(), now.fence),
        (before.owner.as_str(), before.fence),
        "the duplicate did not take the lease"
    );
    dup.start_kill().unwrap();
    let (_, dup_err) = finish(dup).await;
    assert!(
        dup_err.contains("is leased by"),
        "the duplicate says why it waits: {dup_err}"
    );

    // Shard 1 killed and started again: it takes its slice back at once (its holder is dead
    // and was on this host) and resumes it.
    children[1].start_kill().unwrap();
    let _ = children[1].wait().await;
    children[1] = shard_command(&url, &runs, 1).spawn().unwrap();
    until_shards(
        &t.db,
        "sharded",
        "shard 1 taken back",
        Duration::from_secs(20),
        |rows| rows.get(1).is_some_and(|r| r.fence == 2),
    )
    .await;

    // Shard 2's lease lapsed while it was paused: a new process takes the slice over. Woken
    // up, the stale process is fenced off and stops without writing. Its transactions, paused
    // mid-session, hold share locks on its shard row (each session's fence check), and a
    // takeover waiting behind them at the wake-up can be starved by the sessions that follow
    // (share lockers join without queueing): its connections are cut first, as a frozen
    // host's are, so the takeover happens while the stale process sleeps.
    cut_connections(&t.db, children[2].id().unwrap()).await;
    let stale = std::mem::replace(
        &mut children[2],
        shard_command(&url, &runs, 2).spawn().unwrap(),
    );
    until_shards(
        &t.db,
        "sharded",
        "shard 2 taken over",
        Duration::from_secs(30),
        |rows| rows.get(2).is_some_and(|r| r.fence == 2),
    )
    .await;
    signal(&stale, "CONT");
    let (status, err) = tokio::time::timeout(Duration::from_secs(60), finish(stale))
        .await
        .expect("the stale shard stops");
    assert!(!status.success(), "the stale shard fails: {status}");
    assert!(
        err.contains("taken over"),
        "the stale shard says why: {err}"
    );

    for child in children {
        let (status, err) = finish(child).await;
        assert!(status.success(), "a shard failed: {status}\n{err}");
    }
    let rows = shards(&t.db, "sharded").await;
    assert!(
        rows.iter().all(|r| r.status == RunStatus::Finished),
        "{rows:#?}"
    );
    check_invariants(&t.db, "sharded").await;
    // `shopsim status` shows every shard, finished, with the takeovers' fencing numbers.
    let status = shopsim_json(["status", "sharded", "--json", "--database-url", &url]);
    assert_eq!(status["status"], "finished");
    assert_eq!(status["shards"], 3);
    let fences: Vec<i64> = status["shard_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(
                (&s["lease"], &s["progress"]),
                (&serde_json::json!("finished"), &serde_json::json!(1.0))
            );
            s["fence"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(fences, [1, 2, 2]);
    let got = export(&t.db, "sharded", &dir.path().join("got")).await;
    crate::support::assert_same_export(&expected, &got, "3 shards vs one process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_shards_share_one_clock_postgres() {
    let Some(t) = pg().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = t.url.to_string();
    const SCALE: f64 = 600.0;
    let start = |i: u32| {
        Command::new(env!("CARGO_BIN_EXE_shopsim"))
            .args([
                "run",
                "--database-url",
                &url,
                "--run-id",
                "paced",
                "--agents",
                "100",
            ])
            .args(["--days", "2", "--start", "2024-01-01", "--seed", "5"])
            .args(["--actions", "inprocess", "--time-scale", "600", "--no-tui"])
            .args([
                "--shard",
                &format!("{i}/3"),
                "--lease-ttl",
                "1s",
                "--run-dir",
            ])
            .arg(dir.path())
            .env("SHOPSIM_LOG_FILE", dir.path().join("simulation_runs.log"))
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a shard")
    };
    // Started a second apart: ten simulated minutes apart, were each on its own clock.
    let mut children = Vec::new();
    for i in 0..3 {
        children.push(start(i));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Each heartbeat reports the shard's simulated time at a wall instant; carried to one
    // common instant at the run's scale, the three clocks agree within a simulated minute.
    let mut samples = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let rows = shards(&t.db, "paced").await;
        let at = Utc::now();
        let clocks: Vec<DateTime<Utc>> = rows
            .iter()
            .filter_map(|r| {
                let sim = r.sim_time?;
                let since = (at - r.heartbeat_at).num_milliseconds() as f64 / 1000.0;
                Some(sim + chrono::Duration::milliseconds((since * SCALE * 1000.0) as i64))
            })
            .collect();
        if clocks.len() == 3 {
            let spread = *clocks.iter().max().unwrap() - *clocks.iter().min().unwrap();
            assert!(
                spread < chrono::Duration::minutes(1),
                "shard clocks {spread} apart: {rows:#?}"
            );
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if samples < 5 {
        for mut child in children {
            child.start_kill().ok();
            let (status, err) = finish(child).await;
            eprintln!("shard: {status}\n{err}");
        }
        panic!(
            "only {samples} samples with all three shards: {:#?}",
            shards(&t.db, "paced").await
        );
    }
    // A pause recorded in the run's clock (as another shard's dashboard records it) stops
    // every shard's clock; resumed at twice the scale, they all run again.
    let change = |f: fn(&mut ClockSchedule, DateTime<Utc>)| {
        let db = t.db.clone();
        async move {
            let mut clock = load_clock(&db, "paced")
                .await
                .unwrap()
                .expect("a shared clock");
            f(&mut clock, Utc::now());
            let tx = db.write().await.unwrap();
            let json = serde_json::to_value(&clock).unwrap();
            tx.exec(
                "UPDATE sim_runs SET clock = $1 WHERE run_id = 'paced'",
                vec![tx.codec().json(&json)],
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
    };
    let clocks = || async {
        shards(&t.db, "paced")
            .await
            .iter()
            .map(|r| r.sim_time.expect("a paced shard reports its clock"))
            .collect::<Vec<_>>()
    };
    change(|c, now| c.pause(now)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let paused = clocks().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (a, b) in paused.iter().zip(clocks().await) {
        assert!(
            b - *a < chrono::Duration::seconds(30),
            "paused clocks ran: {a} → {b}"
        );
    }
    change(|c, now| c.set_scale(now, 2.0 * SCALE)).await;
    change(|c, now| c.resume(now)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resumed = clocks().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (a, b) in resumed.iter().zip(clocks().await) {
        assert!(
            b - *a > chrono::Duration::minutes(10),
            "resumed clocks stand: {a} → {b}"
        );
    }
    for child in &children {
        signal(child, "INT");
    }
    for child in children {
        let (status, err) = finish(child).await;
        assert!(
            matches!(status.code(), Some(0) | Some(130)),
            "a paced shard failed: {status}\n{err}"
        );
    }
}

/// Over HTTP (each shard with its embedded reference server): three shards give the single
/// process's export and the same requests per endpoint, their histograms merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_shards_merge_to_the_single_process_run_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let Some((reference, expected)) = single_process("http", "http", dir.path()).await else {
        return;
    };
    let Some(t) = pg().await else { return };
    let url = t.url.to_string();
    let children: Vec<Child> = (0..3)
        .map(|i| {
            let shard = format!("{i}/3");
            run_command(
                &url,
                "http",
                "http",
                &dir.path().join("runs"),
                &["--shard", &shard],
            )
            .spawn()
            .expect("start a shard")
        })
        .collect();
    for child in children {
        let (status, err) = finish(child).await;
        assert!(status.success(), "a shard failed: {status}\n{err}");
    }
    check_invariants(&t.db, "http").await;
    let got = export(&t.db, "http", &dir.path().join("got")).await;
    crate::support::assert_same_export(&expected, &got, "3 HTTP shards vs one process");
    let one = stored_snapshot(&reference.db, "http").await.unwrap();
    let merged = stored_snapshot(&t.db, "http").await.unwrap();
    for (endpoint, line) in &one.endpoints {
        let sharded = &merged.endpoints[endpoint];
        assert_eq!(
            sharded.latency.count, line.latency.count,
            "{endpoint:?}: requests of 3 shards vs one process"
        );
    }
    let sessions = |s: &shopsim::sim::metrics::Snapshot| {
        s.counters[&shopsim::sim::metrics::Counter::SessionsStarted]
    };
    assert_eq!(sessions(&merged), sessions(&one));
    assert!(sessions(&one) > 0);
}
