//! Test fixtures: fresh, migrated databases on SQLite and PostgreSQL.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use shopsim::store::{Backend, DatabaseUrl, Db, DbConfig};

/// Generates `<name>_sqlite` and `<name>_postgres` tests from `async fn name(t: TestDb)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            $crate::paste_test!($name);
        )*
    };
}

#[macro_export]
macro_rules! paste_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let t = $crate::support::TestDb::sqlite().await;
                super::$name(t).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(t) = $crate::support::TestDb::postgres().await else {
                    return;
                };
                super::$name(t).await;
            }
        }
    };
}

/// A fresh, migrated database, dropped when the value is dropped.
pub struct TestDb {
    /// A pool for the code under test.
    pub db: Db,
    /// Its URL (through the pooler when the test URL points at one).
    pub url: DatabaseUrl,
    /// A direct URL to the same database (for tools that need one, e.g. migrations).
    pub direct_url: DatabaseUrl,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(DatabaseUrl, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    /// Which engine.
    pub fn backend(&self) -> Backend {
        self.url.backend()
    }

    /// A SQLite file in a temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("test.db");
        let url = DatabaseUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
        let db = Db::connect(&DbConfig::new(url.clone()))
            .await
            .expect("open sqlite");
        shopsim::store::migrate(&db).await.expect("migrate sqlite");
        TestDb {
            db,
            url: url.clone(),
            direct_url: url,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A new PostgreSQL database, or `None` (with a note) when no test database is configured.
    pub async fn postgres() -> Option<TestDb> {
        let Some((test_url, admin_url)) = pg_urls() else {
            eprintln!(
                "note: SHOPSIM_TEST_DATABASE_URL is not set; skipping the PostgreSQL variant"
            );
            return None;
        };
        let name = format!(
            "shopsim_t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..8)
                .unwrap_or("x")
        );
        let admin = Db::connect(&DbConfig::new(admin_url.clone())).await.expect(
            "SHOPSIM_TEST_ADMIN_DATABASE_URL / SHOPSIM_TEST_DATABASE_URL must be reachable",
        );
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        admin.close().await;
        let direct_url = admin_url.with_database(&name).unwrap();
        let direct = Db::connect(&DbConfig::new(direct_url.clone()))
            .await
            .expect("open test database");
        shopsim::store::migrate(&direct)
            .await
            .expect("migrate test database");
        direct.close().await;
        let url = test_url.with_database(&name).unwrap();
        let db = Db::connect(&DbConfig::new(url.clone()))
            .await
            .expect("open test database through SHOPSIM_TEST_DATABASE_URL");
        Some(TestDb {
            db,
            url,
            direct_url,
            _dir: None,
            pg: Some((admin_url, name)),
        })
    }
}

/// The configured PostgreSQL URLs (test URL, admin URL).
pub fn pg_urls() -> Option<(DatabaseUrl, DatabaseUrl)> {
    let test = std::env::var("SHOPSIM_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())?;
    let admin = std::env::var("SHOPSIM_TEST_ADMIN_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| test.clone());
    Some((
        DatabaseUrl::parse(&test).expect("SHOPSIM_TEST_DATABASE_URL is not a valid URL"),
        DatabaseUrl::parse(&admin).expect("SHOPSIM_TEST_ADMIN_DATABASE_URL is not a valid URL"),
    ))
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg.take() {
            // Drop needs async I/O: do it on a private runtime in another thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let admin = Db::connect(&DbConfig::new(admin_url)).await.ok()?;
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    admin.close().await;
                    Some(())
                })
            })
            .join();
        }
    }
}

/// `SELECT COUNT(*) AS n …` as a number.
pub async fn count(db: &Db, sql: &str) -> u64 {
    let tx = db.read().await.unwrap();
    let n = tx.query_one(sql, vec![]).await.unwrap().i64("n").unwrap();
    tx.commit().await.unwrap();
    n as u64
}

/// Every file of a folder as (name, bytes), sorted by name.
pub fn read_dir(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Asserts two exports (from [`read_dir`]) are byte-identical; on a difference it names the
/// file, the first differing line and both versions of it, so a failure can be diagnosed from
/// the CI log alone.
pub fn assert_same_export(expected: &[(String, Vec<u8>)], got: &[(String, Vec<u8>)], what: &str) {
    let names = |e: &[(String, Vec<u8>)]| e.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(expected),
        names(got),
        "{what}: different export files"
    );
    for ((name, a), (_, b)) in expected.iter().zip(got) {
        if a == b {
            continue;
        }
        let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
        let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
        let at = la.iter().zip(&lb).position(|(x, y)| x != y);
        let header = la.first().copied().unwrap_or_default();
        let diffs = la.iter().zip(&lb).filter(|(x, y)| x != y).count();
        match at {
            Some(i) => panic!(
                "{what}: {name} differs ({} vs {} lines, {diffs} differing); first at line {}:\n  header:   {header}\n  expected: {}\n  got:      {}",
                la.len(),
                lb.len(),
                i + 1,
                la[i],
                lb[i]
            ),
            None => panic!(
                "{what}: {name} differs in length: {} vs {} lines",
                la.len(),
                lb.len()
            ),
        }
    }
}

/// A free loopback port (bound and released; the caller binds it again right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs the `shopsim` binary with `args` (no `DATABASE_URL` from the environment), asserts it
/// succeeded (showing its stderr otherwise) and parses its stdout as JSON.
pub fn shopsim_json<I, S>(args: I) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopsim"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("the shopsim binary starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "shopsim's stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
