//! `migrate` and `migrate --check` on fresh databases and on a database that already holds the
//! contract tables (as the real VoiceOffers database does).

use shopsim::migrations::schema::{CONTRACT_TABLES, Dialect, SIM_TABLES, create_statements};
use shopsim::store::{self, Backend, Db, DbConfig, SchemaProblem};

use crate::backend_tests;
use crate::support::TestDb;

backend_tests!(
    migrate_is_idempotent_and_check_passes,
    check_reports_missing_column
);

async fn migrate_is_idempotent_and_check_passes(t: TestDb) {
    let again = store::migrate(&t.db).await.unwrap();
    assert!(
        again.created.is_empty(),
        "second migrate created {:?}",
        again.created
    );
    let report = store::check(&t.db).await.unwrap();
    assert!(report.compatible(), "{:?}", report.problems);
    assert!(report.pending_migrations.is_empty());
    assert!(report.missing_extensions.is_empty());
}

async fn check_reports_missing_column(t: TestDb) {
    // Dropping a column from a shopsim-created table must be reported, by name.
    let tx = t.db.write().await.unwrap();
    tx.exec_unprepared("ALTER TABLE shopping_session_events DROP COLUMN payload")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let report = store::check(&t.db).await.unwrap();
    assert!(!report.compatible());
    assert!(
        report.problems.contains(&SchemaProblem::MissingColumn {
            table: "shopping_session_events".into(),
            column: "payload".into()
        }),
        "{:?}",
        report.problems
    );
}

/// A database that already has the contract tables, created by plain SQL the way the real
/// VoiceOffers database has them (no shopsim extension columns, different index names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_keeps_existing_contract_tables_postgres() {
    let Some((_, admin_url)) = crate::support::pg_urls() else {
        return;
    };
    let name = format!("shopsim_t_existing_{}", std::process::id());
    let admin = Db::connect(&DbConfig::new(admin_url.clone()))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let url = admin_url.with_database(&name).unwrap();
    let db = Db::connect(&DbConfig::new(url)).await.unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    // Plain SQL, as a Supabase project would hold it: every contract table without shopsim's
    // extension columns, plus a column shopsim does not know.
    let mut ddl = Vec::new();
    for t in CONTRACT_TABLES {
        let mut t = *t;
        let cols: Vec<_> = t.cols.iter().copied().filter(|c| !c.extension).collect();
        t.cols = Box::leak(cols.into_boxed_slice());
        ddl.extend(create_statements(&t, Dialect::Postgres));
    }
    ddl.push("ALTER TABLE products ADD COLUMN image_url TEXT".into());
    ddl.push("INSERT INTO stores (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'Existing store')".into());
    for sql in &ddl {
        db.execute_unprepared(sql).await.unwrap();
    }
    let before = store::check(&db).await.unwrap();
    assert!(
        !before.compatible(),
        "sim tables are missing, check must say so"
    );
    assert!(
        before.problems.iter().all(|p| matches!(
            p,
            SchemaProblem::MissingTable {
                contract: false,
                ..
            }
        )),
        "{:?}",
        before.problems
    );

    let report = store::migrate(&db).await.unwrap();
    let mut created = report.created.clone();
    created.sort();
    let mut expected: Vec<String> = SIM_TABLES.iter().map(|t| t.name.to_string()).collect();
    expected.sort();
    assert_eq!(created, expected, "only shopsim's tables may be created");
    assert_eq!(report.kept.len(), CONTRACT_TABLES.len());

    let after = store::check(&db).await.unwrap();
    assert!(after.compatible(), "{:?}", after.problems);
    assert!(
        after
            .missing_extensions
            .contains(&"products.sku".to_string())
    );
    // Existing data and extra columns are untouched.
    let tx = db.read().await.unwrap();
    let row = tx
        .query_one("SELECT count(*) AS n FROM stores", vec![])
        .await
        .unwrap();
    assert_eq!(row.i64("n").unwrap(), 1);
    tx.query("SELECT image_url FROM products", vec![])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    db.close().await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}
