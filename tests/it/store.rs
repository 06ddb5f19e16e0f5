//! The store layer on both backends: rows streamed one at a time.

use shopsim::store::StoreError;

use crate::backend_tests;
use crate::support::TestDb;

backend_tests!(streamed_rows_come_in_order_and_an_error_stops_them);

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
