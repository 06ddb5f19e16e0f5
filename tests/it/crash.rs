//! The crash harness: a `max` run as a child process (the real `shopsim` binary), killed with
//! SIGKILL at random moments and started again with the same command (start-or-resume, as a
//! process manager or a Kubernetes pod would), until it finishes. Then the invariants, and the
//! export byte-identical to an uninterrupted run's.
//!
//! `SHOPSIM_CRASH_KILLS` (default 5) and `SHOPSIM_CRASH_SEED` (default 1) set the number of
//! kills and the seed of their moments, for long local runs (`scripts/crash-test`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use shopsim::sim::records::{Format, export_run};
use shopsim::store::Db;
use tokio::process::{Child, Command};

use crate::backend_tests;
use crate::support::{TestDb, assert_same_export, count, free_port, read_dir};

backend_tests!(killed_http_run_resumes_to_the_same_dataset);
backend_tests!(killed_inprocess_run_resumes_to_the_same_dataset);
backend_tests!(interrupted_run_resumes_with_ctrl_c_and_resume_flag);

const AGENTS: &str = "200";
const DAYS: &str = "5";

/// Kills and their seed (environment, for long local runs).
pub fn plan() -> (u32, u64) {
    let kills = std::env::var("SHOPSIM_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed = std::env::var("SHOPSIM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    (kills, seed)
}

/// A small deterministic generator for kill moments (xorshift64*).
pub struct Moments(u64);

impl Moments {
    pub fn new(seed: u64) -> Self {
        Moments(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The `shopsim run` command of a test run.
pub fn run_command(url: &str, run_id: &str, actions: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopsim"));
    cmd.args([
        "run",
        "--database-url",
        url,
        "--run-id",
        run_id,
        "--agents",
        AGENTS,
        "--days",
        DAYS,
        "--start",
        "2024-01-01",
        "--seed",
        "5",
        "--actions",
        actions,
        "--time-scale",
        "max",
        "--no-tui",
        "--run-dir",
    ])
    .arg(dir)
    .args(extra)
    // The run's JSON log goes next to its records, not into the working directory.
    .env("SHOPSIM_LOG_FILE", dir.join("simulation_runs.log"))
    .env("RUST_LOG", "warn")
    // Kills are tied to checkpoints passing simulated hours: checkpoint every hour.
    .env("SHOPSIM_CHECKPOINT_EVERY", "0s")
    .env_remove("DATABASE_URL")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    cmd
}

/// Waits for a child and returns its exit status with its stderr.
pub async fn finish(child: Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().await.expect("wait for shopsim");
    (out.status, String::from_utf8_lossy(&out.stderr).to_string())
}

/// Runs the command to the end once, uninterrupted; its wall time.
pub async fn run_through(mut cmd: Command) -> Duration {
    let started = Instant::now();
    let (status, err) = finish(cmd.spawn().expect("start shopsim")).await;
    assert!(status.success(), "shopsim run failed: {status}\n{err}");
    started.elapsed()
}

/// The simulated time of the run's last checkpoint, if any.
async fn checkpoint(db: &Db, run_id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let tx = db.read().await.ok()?;
    let row = tx
        .query_opt(
            "SELECT checkpoint_at FROM sim_runs WHERE run_id = $1",
            vec![run_id.to_string().into()],
        )
        .await
        .ok()??;
    let t = row.opt_ts("checkpoint_at").ok()?;
    let _ = tx.commit().await;
    t
}

/// Returns once the run's checkpoint has passed `target` (a database that cannot be read
/// counts as not yet).
async fn checkpoint_passes(db: &Db, run_id: &str, target: chrono::DateTime<chrono::Utc>) {
    while checkpoint(db, run_id).await.is_none_or(|c| c < target) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Simulated hours into the run, sorted, for `n` interruptions tied to progress: spread over
/// the run but for its last half day; with `from_zero`, some at 0 (startup).
fn progress_targets(
    n: u32,
    moments: &mut Moments,
    from_zero: bool,
) -> Vec<chrono::DateTime<chrono::Utc>> {
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let span_hours: f64 = DAYS.parse::<f64>().unwrap() * 24.0 - 12.0;
    let low = if from_zero { -0.2 } else { 0.02 };
    let mut hours: Vec<f64> = (0..n)
        .map(|_| (low + moments.unit() * (1.0 - low)).max(0.0) * span_hours)
        .collect();
    hours.sort_by(f64::total_cmp);
    hours
        .into_iter()
        .map(|h| start + chrono::Duration::seconds((h * 3600.0) as i64))
        .collect()
}

/// Starts the command and kills it with SIGKILL, `kills` times, then runs it to the end.
/// The moments are random but tied to progress, so the count does not depend on the machine's
/// speed: each kill waits until the run's checkpoint passes a random simulated hour (sorted,
/// some at the start: those kills hit startup, planning or replay), then a random few
/// milliseconds more. Returns the kills done.
pub async fn kill_and_resume(
    make: impl Fn() -> Command,
    db: &Db,
    run_id: &str,
    kills: u32,
    moments: &mut Moments,
) -> u32 {
    let mut done = 0;
    for target in progress_targets(kills, moments, true) {
        let extra = Duration::from_millis((moments.unit() * 50.0) as u64);
        let mut child = make().spawn().expect("start shopsim");
        let reached = async {
            checkpoint_passes(db, run_id, target).await;
            tokio::time::sleep(extra).await;
        };
        tokio::select! {
            status = child.wait() => {
                let status = status.expect("wait");
                panic!("shopsim run ended ({status}) before its kill at {target}");
            }
            _ = reached => {
                child.start_kill().expect("SIGKILL");
                let _ = child.wait().await;
                done += 1;
            }
        }
    }
    let (status, err) = finish(make().spawn().expect("start shopsim")).await;
    assert!(status.success(), "the resumed run failed: {status}\n{err}");
    done
}

/// The crash suite's invariants on a finished run.
pub async fn check_invariants(db: &Db, run_id: &str) {
    let q = |sql: &str| sql.replace("RUN", run_id);
    assert_eq!(
        count(
            db,
            &q("SELECT COUNT(*) AS n FROM sim_runs WHERE run_id = 'RUN' AND status = 'finished'")
        )
        .await,
        1,
        "the run finished"
    );
    // No (run, agent, date) decision twice.
    assert_eq!(
        count(db, &q("SELECT COUNT(*) AS n FROM (SELECT agent_id, sim_date FROM sim_agent_days WHERE run_id = 'RUN' GROUP BY agent_id, sim_date HAVING COUNT(*) > 1) d")).await,
        0,
        "a day decided twice"
    );
    // Every planned session has exactly one outcome.
    assert_eq!(
        count(db, &q("SELECT COUNT(*) AS n FROM sim_sessions WHERE run_id = 'RUN' AND (status NOT IN ('completed', 'abandoned', 'failed') OR outcome IS NULL)")).await,
        0,
        "a session without an outcome"
    );
    // No write applied twice: one order per session at most, one cart line per product, one
    // coupon application per coupon, one offer draw per coupon and cycle.
    assert_eq!(
        count(db, "SELECT COUNT(*) AS n FROM (SELECT shopping_session_id FROM orders WHERE shopping_session_id IS NOT NULL GROUP BY shopping_session_id HAVING COUNT(*) > 1) d").await,
        0,
        "a session with two orders"
    );
    assert_eq!(
        count(db, "SELECT COUNT(*) AS n FROM (SELECT order_id, product_id FROM order_items GROUP BY order_id, product_id HAVING COUNT(*) > 1) d").await,
        0,
        "a product twice in one order"
    );
    assert_eq!(
        count(db, "SELECT COUNT(*) AS n FROM (SELECT user_id, coupon_id, offer_cycle_id FROM user_coupons GROUP BY user_id, coupon_id, offer_cycle_id HAVING COUNT(*) > 1) d").await,
        0,
        "an offer drawn twice in one cycle"
    );
    // No order lost that the API acknowledged: every completed session has its order.
    assert_eq!(
        count(db, &q("SELECT COUNT(*) AS n FROM sim_sessions s WHERE s.run_id = 'RUN' AND s.status = 'completed' AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.shopping_session_id = s.session_id)")).await,
        0,
        "a completed session without its order"
    );
    assert_eq!(
        count(db, &q("SELECT COUNT(*) AS n FROM orders o WHERE o.shopping_session_id IN (SELECT session_id FROM sim_sessions WHERE run_id = 'RUN' AND status <> 'completed')")).await,
        0,
        "an order of a session not recorded as completed"
    );
}

/// Exports the run as CSV into `dir` and returns the files.
pub async fn export(db: &Db, run_id: &str, dir: &Path) -> Vec<(String, Vec<u8>)> {
    export_run(db, run_id, Format::Csv, dir).await.unwrap();
    read_dir(dir)
}

/// An uninterrupted reference run on a fresh database of the same backend: its export.
async fn reference(t: &TestDb, actions: &str, dir: &Path) -> (Vec<(String, Vec<u8>)>, Duration) {
    let fresh = if t.url.to_string().starts_with("sqlite") {
        TestDb::sqlite().await
    } else {
        TestDb::postgres().await.expect("postgres")
    };
    let took = run_through(run_command(
        &fresh.url.to_string(),
        "crash",
        actions,
        &dir.join("runs-ref"),
        &[],
    ))
    .await;
    (export(&fresh.db, "crash", &dir.join("ref")).await, took)
}

async fn crash_suite(t: TestDb, actions: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (expected, typical) = reference(&t, actions, dir.path()).await;
    let (kills, seed) = plan();
    let mut moments = Moments::new(seed);
    let url = t.url.to_string();
    let runs = dir.path().join("runs");
    let done = kill_and_resume(
        || run_command(&url, "crash", actions, &runs, &[]),
        &t.db,
        "crash",
        kills,
        &mut moments,
    )
    .await;
    eprintln!("{actions}: {done} kills (seed {seed}), reference run {typical:?}");
    assert_eq!(done, kills);
    check_invariants(&t.db, "crash").await;
    let got = export(&t.db, "crash", &dir.path().join("got")).await;
    assert_same_export(&expected, &got, &format!("{actions}: killed and resumed"));
}

async fn killed_http_run_resumes_to_the_same_dataset(t: TestDb) {
    crash_suite(t, "http").await;
}

async fn killed_inprocess_run_resumes_to_the_same_dataset(t: TestDb) {
    crash_suite(t, "inprocess").await;
}

/// Ctrl-C (SIGINT) stops gracefully with exit code 130; the same command resumes (pod-style
/// restart), `--resume` too, a contradicting command is refused, and the dataset equals an
/// uninterrupted run's.
async fn interrupted_run_resumes_with_ctrl_c_and_resume_flag(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (expected, typical) = reference(&t, "inprocess", dir.path()).await;
    let url = t.url.to_string();
    let runs = dir.path().join("runs");
    let child = run_command(&url, "crash", "inprocess", &runs, &[])
        .spawn()
        .unwrap();
    tokio::time::sleep(typical.mul_f64(0.5)).await;
    let pid = child.id().expect("pid") as i32;
    // SIGINT, as Ctrl-C sends.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let (status, err) = finish(child).await;
    if status.code() != Some(0) {
        assert_eq!(status.code(), Some(130), "Ctrl-C exits 130: {err}");
        // In-process sessions commit their outcome with their work: the stopped ones are
        // left `planned`, never `in_progress`.
        let tx = t.db.read().await.unwrap();
        let marked = tx
            .query_one(
                "SELECT COUNT(*) AS n FROM sim_sessions \
                 WHERE run_id = 'crash' AND status = 'in_progress'",
                vec![],
            )
            .await
            .unwrap()
            .i64("n")
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(marked, 0);
        // A plain run with the same configuration (no --run-id) does not start a twin.
        let mut plain = Command::new(env!("CARGO_BIN_EXE_shopsim"));
        plain
            .args([
                "run",
                "--database-url",
                &url,
                "--agents",
                AGENTS,
                "--days",
                DAYS,
            ])
            .args([
                "--start",
                "2024-01-01",
                "--seed",
                "5",
                "--actions",
                "inprocess",
            ])
            .args(["--no-tui", "--run-dir"])
            .arg(&runs)
            .env("SHOPSIM_LOG_FILE", runs.join("simulation_runs.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (status, err) = finish(plain.spawn().unwrap()).await;
        assert!(!status.success());
        assert!(
            err.contains("shopsim run --run-id crash") && err.contains("--new"),
            "{err}"
        );
        // A contradicting command is refused, naming the key.
        let mut other = run_command(&url, "crash", "inprocess", &runs, &[]);
        other.args(["--restock-level", "7"]);
        let (status, err) = finish(other.spawn().unwrap()).await;
        assert!(!status.success());
        assert!(err.contains("restock_level"), "{err}");
        // `--resume` picks the unfinished run up with its stored configuration.
        let mut resume = Command::new(env!("CARGO_BIN_EXE_shopsim"));
        resume
            .args([
                "run",
                "--database-url",
                &url,
                "--resume",
                "--no-tui",
                "--run-dir",
            ])
            .arg(&runs)
            .env("SHOPSIM_LOG_FILE", runs.join("simulation_runs.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (status, err) = finish(resume.spawn().unwrap()).await;
        assert!(status.success(), "{err}");
    }
    // Run again after the end: a finished run is not run twice.
    let (status, err) = finish(
        run_command(&url, "crash", "inprocess", &runs, &[])
            .spawn()
            .unwrap(),
    )
    .await;
    assert!(
        !status.success() && err.contains("already finished"),
        "{err}"
    );
    check_invariants(&t.db, "crash").await;
    assert!(
        runs.join("crash/report.html").is_file(),
        "the finished run wrote its report"
    );
    let got = export(&t.db, "crash", &dir.path().join("got")).await;
    assert_same_export(&expected, &got, "resumed after Ctrl-C");
}

backend_tests!(killed_server_is_waited_out);

/// `shopsim serve` on `port` for the test run's seed; returns once it answers.
async fn start_server(url: &str, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_shopsim"))
        .args(["serve", "--database-url", url, "--seed", "5", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start shopsim serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "shopsim serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// The API server (not the host) is killed mid-run and restarted: the host waits the outage
/// out (no retry budget spent, nothing dropped) and the dataset equals an uninterrupted run's.
async fn killed_server_is_waited_out(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (expected, typical) = reference(&t, "http", dir.path()).await;
    let url = t.url.to_string();
    let port = free_port();
    let mut server = start_server(&url, port).await;
    let api = format!("http://127.0.0.1:{port}");
    let runs = dir.path().join("runs");
    let run = run_command(&url, "crash", "http", &runs, &["--api-url", &api])
        .spawn()
        .unwrap();
    let mut moments = Moments::new(plan().1);
    for _ in 0..2 {
        tokio::time::sleep(typical.mul_f64(0.15 + 0.2 * moments.unit())).await;
        server.start_kill().unwrap();
        let _ = server.wait().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server = start_server(&url, port).await;
    }
    let (status, err) = finish(run).await;
    assert!(
        status.success(),
        "the run did not survive the server's restarts: {err}"
    );
    check_invariants(&t.db, "crash").await;
    let got = export(&t.db, "crash", &dir.path().join("got")).await;
    assert_same_export(&expected, &got, "API server restarted");
}

/// The API server goes away for longer than `--max-outage`: the run stops with a clear,
/// resumable error instead of waiting forever; with the server back, the same command
/// finishes it, and the dataset equals an uninterrupted run's.
async fn api_outage_longer_than_the_limit_stops_resumably(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (expected, _) = reference(&t, "http", dir.path()).await;
    let url = t.url.to_string();
    let port = free_port();
    let mut server = start_server(&url, port).await;
    let api = format!("http://127.0.0.1:{port}");
    let runs = dir.path().join("runs");
    let extra = ["--api-url", api.as_str(), "--max-outage", "2s"];
    let run = run_command(&url, "crash", "http", &runs, &extra)
        .spawn()
        .unwrap();
    let mut moments = Moments::new(plan().1);
    let target = progress_targets(1, &mut moments, false)[0];
    checkpoint_passes(&t.db, "crash", target).await;
    server.start_kill().unwrap();
    let _ = server.wait().await;
    let (status, err) = finish(run).await;
    assert!(!status.success(), "the run outlived the outage limit");
    assert!(
        err.contains("the API has been unreachable for") && err.contains("--max-outage 2s"),
        "{err}"
    );
    assert!(err.contains("resumes"), "{err}");
    let _server = start_server(&url, port).await;
    let (status, err) = finish(
        run_command(&url, "crash", "http", &runs, &extra)
            .spawn()
            .unwrap(),
    )
    .await;
    assert!(status.success(), "the resumed run failed: {err}");
    check_invariants(&t.db, "crash").await;
    let got = export(&t.db, "crash", &dir.path().join("got")).await;
    assert_same_export(&expected, &got, "API outage past the limit, then resumed");
}

backend_tests!(api_outage_longer_than_the_limit_stops_resumably);

/// PostgreSQL itself restarts mid-run (several times): the host pauses, waits for the database and
/// goes on; the dataset equals an uninterrupted run's. It restarts the shared cluster, so
/// `.ci/run` runs it alone, after every other test (`--ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts PostgreSQL: .ci/run runs it as a separate serial step"]
async fn postgres_restart_is_waited_out() {
    for actions in ["inprocess", "http"] {
        let t = TestDb::postgres()
            .await
            .expect("SHOPSIM_TEST_DATABASE_URL must be set for the PostgreSQL restart test");
        let dir = tempfile::tempdir().unwrap();
        let (expected, _) = reference(&t, actions, dir.path()).await;
        let url = t.url.to_string();
        let runs = dir.path().join("runs");
        let run_id = "crash";
        let run = run_command(&url, run_id, actions, &runs, &[])
            .spawn()
            .unwrap();
        // Restarts tied to progress like the kill loop's kills (SHOPSIM_CRASH_KILLS/SEED pick
        // how many, at least two, and when), once the run is under way: the host's setup
        // (migrations, seeding) needs the database it was started with.
        let (kills, seed) = plan();
        let mut moments = Moments::new(seed);
        for target in progress_targets(kills.clamp(2, 50), &mut moments, false) {
            tokio::time::timeout(
                Duration::from_secs(300),
                checkpoint_passes(&t.db, run_id, target),
            )
            .await
            .unwrap_or_else(|_| panic!("{actions}: the run did not reach {target} in 5 minutes"));
            tokio::time::sleep(Duration::from_millis((moments.unit() * 50.0) as u64)).await;
            let version = std::fs::read_dir("/etc/postgresql")
                .expect("/etc/postgresql")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .next()
                .expect("a PostgreSQL cluster");
            let status = std::process::Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &version, "main", "restart"])
                .status()
                .expect("pg_ctlcluster");
            assert!(status.success(), "restarting PostgreSQL failed");
        }
        let (status, err) = finish(run).await;
        assert!(
            status.success(),
            "{actions}: the run did not survive PostgreSQL restarts: {err}"
        );
        check_invariants(&t.db, run_id).await;
        let got = export(&t.db, run_id, &dir.path().join("got")).await;
        assert_same_export(&expected, &got, &format!("{actions}: PostgreSQL restarted"));
    }
}
