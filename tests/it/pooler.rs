//! Many concurrent transactions with parameterised statements: through a transaction-mode
//! pooler (CI's second pass runs this through PgBouncer 1.18 on 6543) this fails unless every
//! unit of work is pooler-safe.

use sea_orm::Value;
use shopsim::store::{DatabaseUrl, Db, DbConfig, PoolerMode, StoreError};

use crate::backend_tests;
use crate::support::TestDb;

backend_tests!(concurrent_parameterised_transactions);

async fn concurrent_parameterised_transactions(t: TestDb) {
    let mut cfg = DbConfig::new(t.url.clone());
    cfg.max_connections = 8;
    let db = Db::connect(&cfg).await.unwrap();
    run_load(&db).await.unwrap();
    let tx = db.read().await.unwrap();
    let n = tx
        .query_one("SELECT count(*) AS n FROM stores", vec![])
        .await
        .unwrap();
    assert_eq!(n.i64("n").unwrap(), 16 * 25);
    tx.commit().await.unwrap();
}

async fn run_load(db: &Db) -> Result<(), StoreError> {
    let mut tasks = Vec::new();
    for task in 0..16i64 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25i64 {
                let tx = db.write().await?;
                let c = tx.codec();
                let id = uuid::Uuid::new_v4();
                tx.exec(
                    "INSERT INTO stores (id, name) VALUES ($1, $2)",
                    vec![c.uuid(id), Value::from(format!("store {task}-{i}"))],
                )
                .await?;
                let row = tx
                    .query_one("SELECT name FROM stores WHERE id = $1", vec![c.uuid(id)])
                    .await?;
                if row.string("name")? != format!("store {task}-{i}") {
                    return Err(StoreError::NotFound(format!("store {task}-{i}")));
                }
                tx.commit().await?;
                let tx = db.read().await?;
                let n = tx
                    .query_one(
                        "SELECT count(*) AS n FROM stores WHERE name LIKE $1",
                        vec![Value::from("store %")],
                    )
                    .await?;
                if n.i64("n")? < 1 {
                    return Err(StoreError::NotFound("stores".into()));
                }
                tx.commit().await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    let mut first_err = None;
    for t in tasks {
        if let Err(e) = t.await.expect("task panicked") {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Shows the protection is needed: the same load with pooler mode switched off fails through
/// PgBouncer (only meaningful when the test URL points at a transaction pooler).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pooler_mode_pgbouncer_breaks_postgres() {
    let Some(t) = TestDb::postgres().await else {
        return;
    };
    let mut cfg = DbConfig::new(t.url.clone());
    if !cfg.transaction_pooler() {
        return; // direct connection: nothing to show
    }
    cfg.pooler = PoolerMode::None;
    cfg.max_connections = 8;
    let db = Db::connect(&cfg).await.unwrap();
    let err = run_load(&db)
        .await
        .expect_err("expected prepared-statement clashes through the pooler without pooler mode");
    // The clash shows up as 42P05 duplicate_prepared_statement, 26000 (does not exist) or
    // 08P01 (a Bind meeting another client's statement of the same name), depending on timing;
    // or, when the server executes another client's statement of the same name and its rows
    // do not match what this client prepared, as the driver failing to decode them.
    let msg = err.to_string();
    let server_clash = matches!(err.code().as_deref(), Some("42P05" | "26000" | "08P01"))
        && msg.contains("prepared statement");
    let foreign_rows = msg.contains("insufficient data left in message");
    assert!(server_clash || foreign_rows, "unexpected error: {err}");
}

/// A PostgreSQL server on this machine is reached without TLS unless the URL asks for it (rustls
/// was a quarter of the host's profile on 127.0.0.1: BENCHMARKS.md, step 4); `?sslmode=require`
/// still gets TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_postgres_is_plaintext_unless_the_url_asks_postgres() {
    let Some(t) = TestDb::postgres().await else {
        return;
    };
    // The direct URL: through a pooler, `pg_stat_ssl` would describe the pooler's connection.
    let url = t.direct_url.clone();
    let shown = url.to_string();
    if !url.plaintext_loopback() {
        eprintln!(
            "note: PGSSLMODE is set, the test URL sets sslmode or the test server is remote; \
             the loopback default is not what this run uses, nothing to check"
        );
        return;
    }
    async fn uses_tls(url: &DatabaseUrl) -> (bool, String) {
        let db = Db::connect(&DbConfig::new(url.clone())).await.unwrap();
        let tx = db.read().await.unwrap();
        let row = tx
            .query_one(
                "SELECT COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS tls, \
                 current_setting('ssl') AS offered",
                vec![],
            )
            .await
            .unwrap();
        let tls = row.bool("tls").unwrap();
        let offered = row.string("offered").unwrap();
        tx.commit().await.unwrap();
        db.close().await;
        (tls, offered)
    }
    let (tls, offered) = uses_tls(&url).await;
    assert!(!tls, "a loopback connection without sslmode used TLS");
    if offered != "on" {
        eprintln!("note: the test server does not offer TLS; the `require` half is not checked");
        return;
    }
    if shown.contains("***") {
        eprintln!("note: the test URL has a password; the `require` half is not checked");
        return;
    }
    let sep = if shown.contains('?') { '&' } else { '?' };
    let required = DatabaseUrl::parse(&format!("{shown}{sep}sslmode=require")).unwrap();
    let (tls, _) = uses_tls(&required).await;
    assert!(tls, "`sslmode=require` in the URL must keep TLS");
}
