//! The store layer on both backends: rows streamed one at a time; single-statement units of
//! work.

use shopsim::store::{Backend, Db, StoreError};

use crate::backend_tests;
use crate::support::TestDb;

backend_tests!(
    streamed_rows_come_in_order_and_an_error_stops_them,
    a_single_statement_commits_by_itself_and_refuses_a_second,
    a_lazy_transaction_begins_at_its_first_statement,
);

const NUMBERS: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
     SELECT i FROM n ORDER BY i";

async fn streamed_rows_come_in_order_and_an_error_stops_them(t: TestDb) {
    let tx = t.db.read().await.unwrap();
    let mut seen = Vec::new();
    tx.for_each_row(NUMBERS, vec![], |r| -> Result<(), StoreError> {
        seen.push(r.i64("i")?);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(seen, (1..=5000).collect::<Vec<i64>>());

    // The callback's error ends the query and comes back as it was; the transaction goes on.
    let mut count = 0;
    let err = tx
        .for_each_row(NUMBERS, vec![], |_| {
            count += 1;
            if count == 10 {
                return Err(StoreError::NotFound("the tenth row".into()));
            }
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(ref s) if s == "the tenth row"),
        "{err}"
    );
    assert_eq!(count, 10);
    let after = tx.query_one("SELECT 41 + 1 AS n", vec![]).await.unwrap();
    assert_eq!(after.i64("n").unwrap(), 42);

    // A statement the database refuses is a store error naming it.
    let bad = tx
        .for_each_row("SELECT nope FROM nowhere", vec![], |_| {
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap_err();
    assert!(
        bad.to_string().contains("SELECT nope FROM nowhere"),
        "{bad}"
    );
}

/// Rows in `table`, read in a transaction of their own.
async fn rows_in(db: &Db, table: &str) -> i64 {
    let tx = db.read().await.unwrap();
    let n = tx
        .query_one(&format!("SELECT COUNT(*) AS n FROM {table}"), vec![])
        .await
        .unwrap()
        .i64("n")
        .unwrap();
    tx.commit().await.unwrap();
    n
}

/// `Db::single_statement`: its statement is committed when it returns (another connection sees
/// it before any commit); on a direct PostgreSQL connection a second statement is refused, and
/// elsewhere (SQLite, a transaction pooler) it is an ordinary transaction.
async fn a_single_statement_commits_by_itself_and_refuses_a_second(t: TestDb) {
    let db = &t.db;
    let setup = db.write().await.unwrap();
    setup
        .exec_unprepared("CREATE TABLE alone_t (n INTEGER NOT NULL)")
        .await
        .unwrap();
    setup.commit().await.unwrap();
    let count = || rows_in(db, "alone_t");
    let alone = db.single_statement().await.unwrap();
    alone
        .exec("INSERT INTO alone_t (n) VALUES (1), (2)", vec![])
        .await
        .unwrap();
    let direct = db.backend() == Backend::Postgres && !db.transaction_pooler();
    if direct {
        // Committed by itself, before `commit`.
        assert_eq!(count().await, 2);
        let second = alone
            .exec("INSERT INTO alone_t (n) VALUES (3)", vec![])
            .await
            .unwrap_err();
        assert!(
            matches!(second, StoreError::SecondStatement(ref s) if s.contains("INSERT INTO alone_t")),
            "{second}"
        );
        alone.commit().await.unwrap();
        assert_eq!(count().await, 2, "the refused statement did not run");
    } else {
        // An ordinary write transaction: a second statement is part of it.
        alone
            .exec("INSERT INTO alone_t (n) VALUES (3)", vec![])
            .await
            .unwrap();
        alone.commit().await.unwrap();
        assert_eq!(count().await, 3);
    }
}

/// `Db::write_lazily`: nothing is sent until the first statement; after it the transaction is
/// an ordinary one (its writes are seen by others only once committed, a rollback drops them).
async fn a_lazy_transaction_begins_at_its_first_statement(t: TestDb) {
    let db = &t.db;
    let setup = db.write().await.unwrap();
    setup
        .exec_unprepared("CREATE TABLE lazy_t (n INTEGER NOT NULL)")
        .await
        .unwrap();
    setup.commit().await.unwrap();
    let count = || rows_in(db, "lazy_t");
    // Never begun: committing and rolling back do nothing.
    let idle = db.write_lazily();
    assert!(!idle.begun());
    idle.commit().await.unwrap();
    db.write_lazily().rollback().await.unwrap();
    // Begun by its first statement; two statements, one transaction.
    let lazy = db.write_lazily();
    lazy.exec("INSERT INTO lazy_t (n) VALUES (1)", vec![])
        .await
        .unwrap();
    assert!(lazy.begun());
    lazy.exec("INSERT INTO lazy_t (n) VALUES (2)", vec![])
        .await
        .unwrap();
    lazy.rollback().await.unwrap();
    assert_eq!(count().await, 0, "rolled back");
    let lazy = db.write_lazily();
    lazy.exec("INSERT INTO lazy_t (n) VALUES (1), (2)", vec![])
        .await
        .unwrap();
    if db.backend() == Backend::Postgres {
        // Not visible before the commit (SQLite's single writer would make the reader wait).
        assert_eq!(count().await, 0);
    }
    lazy.commit().await.unwrap();
    assert_eq!(count().await, 2);
}
