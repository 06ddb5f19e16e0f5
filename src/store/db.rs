//! The connection pool and pooler-safe transactions.
//!
//! Every unit of work is an explicit transaction ([`Db::write`] or [`Db::read`]). That one rule
//! makes shopsim work through a transaction-mode pooler (PgBouncer before 1.21, Supabase
//! Supavisor on 6543): inside a transaction the pooler pins one server connection, so the
//! driver's prepared statements are valid for the whole unit of work. In pooler mode each
//! transaction starts with `DEALLOCATE ALL` (statements another client left on that server
//! connection would clash with ours) and `SET LOCAL statement_timeout` (a session-level setting
//! would leak to other clients), and the driver's statement cache is off (a cached statement
//! would not survive the next transaction). On SQLite, write transactions are `BEGIN IMMEDIATE`
//! so concurrent writers wait on the busy timeout instead of failing with `SQLITE_BUSY`.
//!
//! Two cheaper shapes of the same unit of work: a write transaction may begin at its first
//! statement ([`Db::write_lazily`]), and a unit of exactly one statement may be sent without
//! `BEGIN` and `COMMIT` on a direct PostgreSQL connection ([`Db::single_statement`]: one
//! statement is atomic by itself; a second one is refused), which through a pooler or on SQLite
//! is an ordinary transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    SqliteTransactionMode, Statement, StreamTrait, TransactionOptions, TransactionTrait, Value,
};

use super::codec::{Codec, Row};
use super::config::DbConfig;
use super::error::StoreError;
use super::url::{Backend, DatabaseUrl, redact};

/// A pool of connections to the shopsim / VoiceOffers database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    url: DatabaseUrl,
    backend: Backend,
    transaction_pooler: bool,
    statement_timeout_ms: u64,
    /// SQLite has one writer at a time: writers of this process queue here (FIFO, no sleeping)
    /// instead of in SQLite's busy handler, which backs off with sleeps of up to 100 ms.
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("url", &self.url)
            .field("transaction_pooler", &self.transaction_pooler)
            .finish()
    }
}

impl Db {
    /// Opens a pool as `config` says. SQLite files are created if missing and put in WAL mode.
    pub async fn connect(config: &DbConfig) -> Result<Db, StoreError> {
        let url = config.url.clone();
        let backend = url.backend();
        let transaction_pooler = config.transaction_pooler();
        let statement_timeout_ms = config.statement_timeout.as_millis().max(1) as u64;
        let mut opts = ConnectOptions::new(url.expose().to_string());
        opts.sqlx_logging(false)
            .acquire_timeout(config.acquire_timeout)
            .connect_timeout(config.acquire_timeout);
        match backend {
            Backend::Sqlite => {
                let memory =
                    url.expose().contains(":memory:") || url.expose().contains("mode=memory");
                // Each connection to `:memory:` would be its own empty database: keep exactly
                // one, forever.
                let max = if memory {
                    1
                } else {
                    config.max_connections.clamp(1, 16)
                };
                opts.max_connections(max)
                    .min_connections(if memory { 1 } else { 0 });
                if memory {
                    opts.idle_timeout(None::<Duration>)
                        .max_lifetime(None::<Duration>);
                }
                opts.map_sqlx_sqlite_opts(move |o| {
                    let o = o
                        .create_if_missing(true)
                        .foreign_keys(true)
                        .busy_timeout(Duration::from_secs(60));
                    if memory {
                        o
                    } else {
                        o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                            .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    }
                });
            }
            Backend::Postgres => {
                opts.max_connections(config.max_connections.max(1))
                    .min_connections(config.min_connections.min(config.max_connections.max(1)));
                let timeout = format!("{statement_timeout_ms}");
                let plaintext = url.plaintext_loopback();
                opts.map_sqlx_postgres_opts(move |o| {
                    let o = o.application_name("shopsim");
                    let o = if plaintext {
                        o.ssl_mode(sea_orm::sqlx::postgres::PgSslMode::Disable)
                    } else {
                        o
                    };
                    if transaction_pooler {
                        // Named statements do not survive a transaction behind the pooler.
                        o.statement_cache_capacity(0)
                    } else {
                        // A direct connection keeps session settings: set the timeout once.
                        o.options([("statement_timeout", timeout.as_str())])
                    }
                });
            }
        }
        if backend == Backend::Postgres {
            probe_postgres(&url, config.acquire_timeout).await?;
        }
        let conn = sea_orm::Database::connect(opts)
            .await
            .map_err(|e| StoreError::Connect {
                url: url.redacted(),
                reason: redact(&e.to_string()),
            })?;
        let sqlite_writer =
            (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        let db = Db {
            conn,
            url,
            backend,
            transaction_pooler,
            statement_timeout_ms,
            sqlite_writer,
        };
        // Prove the connection works now, with a clear error, rather than at first use.
        db.read()
            .await
            .map_err(|e| match e {
                StoreError::Query { source, .. } => StoreError::Connect {
                    url: db.url.redacted(),
                    reason: redact(&source.to_string()),
                },
                other => other,
            })?
            .commit()
            .await?;
        Ok(db)
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The value encoder for this backend.
    pub fn codec(&self) -> Codec {
        Codec::new(self.backend)
    }

    /// The URL, safe to print.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// True when running in transaction-pooler mode.
    pub fn transaction_pooler(&self) -> bool {
        self.transaction_pooler
    }

    /// The underlying sea-orm connection (for migrations and tools).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Starts a transaction that will write.
    pub async fn write(&self) -> Result<Tx, StoreError> {
        self.begin(true).await
    }

    /// Starts a transaction that only reads.
    pub async fn read(&self) -> Result<Tx, StoreError> {
        self.begin(false).await
    }

    /// A write transaction that begins at its first statement: until then it holds no
    /// connection (and on SQLite does not queue for the writer), and one that never runs a
    /// statement costs nothing ([`Tx::begun`] tells).
    pub fn write_lazily(&self) -> Tx {
        Tx {
            inner: Conn::Transaction {
                lazy: Some(Box::new(self.clone())),
                begun: tokio::sync::OnceCell::new(),
            },
            codec: self.codec(),
        }
    }

    async fn begin(&self, write: bool) -> Result<Tx, StoreError> {
        let begun = self.begin_parts(write).await?;
        Ok(Tx {
            inner: Conn::Transaction {
                lazy: None,
                begun: tokio::sync::OnceCell::new_with(Some(begun)),
            },
            codec: self.codec(),
        })
    }

    /// Begins a transaction: it and, for a SQLite writer, the writer's slot (to be dropped
    /// after the transaction ends).
    async fn begin_parts(
        &self,
        write: bool,
    ) -> Result<(DatabaseTransaction, WriterSlot), StoreError> {
        let writer = match (&self.sqlite_writer, write) {
            (Some(lock), true) => Some(lock.clone().lock_owned().await),
            _ => None,
        };
        let options = TransactionOptions {
            isolation_level: None,
            access_mode: None,
            sqlite_transaction_mode: (write && self.backend == Backend::Sqlite)
                .then_some(SqliteTransactionMode::Immediate),
        };
        let inner = self
            .conn
            .begin_with_options(options)
            .await
            .map_err(|e| StoreError::query("starting a transaction", e))?;
        if self.backend == Backend::Postgres && self.transaction_pooler {
            // One simple-protocol round trip: no parameters, no prepared statement.
            let prelude = format!(
                "DEALLOCATE ALL; SET LOCAL statement_timeout = {}",
                self.statement_timeout_ms
            );
            inner
                .execute_unprepared(&prelude)
                .await
                .map_err(|e| StoreError::query("preparing a pooled transaction", e))?;
        }
        Ok((inner, writer))
    }

    /// A unit of work of exactly one statement. On a direct PostgreSQL connection it is sent
    /// without `BEGIN` and `COMMIT`: one statement is atomic and commits by itself, two round
    /// trips fewer. Through a transaction pooler (whose statements need the transaction's
    /// prelude) and on SQLite (whose writers queue for their transaction) it is a write
    /// transaction as [`Db::write`] gives. On the direct connection a second statement is
    /// refused ([`StoreError::SecondStatement`]) rather than run outside the first's
    /// atomicity; [`Tx::commit`] does nothing there.
    pub async fn single_statement(&self) -> Result<Tx, StoreError> {
        if self.backend != Backend::Postgres || self.transaction_pooler {
            return self.write().await;
        }
        Ok(Tx {
            inner: Conn::Alone {
                pool: self.conn.clone(),
                ran: AtomicBool::new(false),
            },
            codec: self.codec(),
        })
    }

    /// Runs statements without parameters outside a transaction (DDL tools, `CREATE DATABASE`).
    /// Uses the simple query protocol, so it is safe through a pooler.
    pub async fn execute_unprepared(&self, sql: &str) -> Result<(), StoreError> {
        self.conn
            .execute_unprepared(sql)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::query(format!("running `{}`", first_line(sql)), e))
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// One plain connection attempt, so an unreachable server fails fast with the driver's real
/// reason (the pool would only report that it timed out).
async fn probe_postgres(url: &DatabaseUrl, timeout: Duration) -> Result<(), StoreError> {
    use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
    let fail = |reason: String| StoreError::Connect {
        url: url.redacted(),
        reason: redact(&reason),
    };
    let mut opts: sea_orm::sqlx::postgres::PgConnectOptions = url
        .expose()
        .parse()
        .map_err(|e: sea_orm::sqlx::Error| fail(e.to_string()))?;
    if url.plaintext_loopback() {
        opts = opts.ssl_mode(sea_orm::sqlx::postgres::PgSslMode::Disable);
    }
    match tokio::time::timeout(timeout, opts.connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!("no answer within {timeout:?}"))),
    }
}

fn first_line(sql: &str) -> &str {
    let s = sql.trim();
    let end = s.find('\n').unwrap_or(s.len()).min(80);
    &s[..end]
}

/// An open transaction. Dropping it without [`Tx::commit`] rolls it back.
pub struct Tx {
    inner: Conn,
    codec: Codec,
}

/// A SQLite writer's place at the head of this process's queue of writers.
type WriterSlot = Option<tokio::sync::OwnedMutexGuard<()>>;

/// What a [`Tx`] runs its statements on.
enum Conn {
    /// An explicit transaction, begun when the [`Tx`] was made or, when `lazy` holds the pool
    /// to begin it from, at its first statement ([`Db::write_lazily`]). A SQLite writer's slot
    /// frees after the transaction ends (drop = rollback): tuple fields drop in order.
    Transaction {
        lazy: Option<Box<Db>>,
        begun: tokio::sync::OnceCell<(DatabaseTransaction, WriterSlot)>,
    },
    /// The pool, for one statement that commits by itself ([`Db::single_statement`]);
    /// `ran` once it was sent.
    Alone {
        pool: DatabaseConnection,
        ran: AtomicBool,
    },
}

/// Runs `$body` with `$c` bound to the connection of `$tx` (its transaction, or the pool for
/// its one statement, refusing a second one, described by `$what`).
macro_rules! on_conn {
    ($tx:expr, $what:expr, $c:ident => $body:expr) => {
        match &$tx.inner {
            Conn::Transaction { lazy, begun } => {
                // Only a lazy transaction's cell is empty here.
                let begin = || async {
                    match lazy {
                        Some(db) => db.begin_parts(true).await,
                        None => Err(StoreError::query(
                            "beginning a transaction",
                            sea_orm::DbErr::Custom("no pool to begin it from".into()),
                        )),
                    }
                };
                let ($c, _) = match begun.get_or_try_init(begin).await {
                    Ok(begun) => begun,
                    Err(e) => return Err(e.into()),
                };
                $body
            }
            Conn::Alone { pool: $c, ran } => {
                if ran.swap(true, Ordering::AcqRel) {
                    return Err(
                        StoreError::SecondStatement(format!("`{}`", first_line($what))).into(),
                    );
                }
                $body
            }
        }
    };
}

impl Tx {
    /// The value encoder for this transaction's backend.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.codec.backend()
    }

    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        let backend = match self.backend() {
            Backend::Postgres => sea_orm::DatabaseBackend::Postgres,
            Backend::Sqlite => sea_orm::DatabaseBackend::Sqlite,
        };
        Statement::from_sql_and_values(backend, sql, values)
    }

    /// Executes a statement, returning the number of rows it affected.
    pub async fn exec(&self, sql: &str, values: Vec<Value>) -> Result<u64, StoreError> {
        let stmt = self.stmt(sql, values);
        on_conn!(self, sql, c => c.execute_raw(stmt).await)
            .map(|r| r.rows_affected())
            .map_err(|e| StoreError::query(format!("running `{}`", first_line(sql)), e))
    }

    /// Runs a statement without parameters with the simple protocol (several may be joined
    /// with `;`).
    pub async fn exec_unprepared(&self, sql: &str) -> Result<(), StoreError> {
        on_conn!(self, sql, c => c.execute_unprepared(sql).await)
            .map(|_| ())
            .map_err(|e| StoreError::query(format!("running `{}`", first_line(sql)), e))
    }

    /// Runs a query and returns every row.
    pub async fn query(&self, sql: &str, values: Vec<Value>) -> Result<Vec<Row>, StoreError> {
        let backend = self.backend();
        let stmt = self.stmt(sql, values);
        on_conn!(self, sql, c => c.query_all_raw(stmt).await)
            .map(|rows| rows.into_iter().map(|r| Row::new(r, backend)).collect())
            .map_err(|e| StoreError::query(format!("running `{}`", first_line(sql)), e))
    }

    /// Runs a query and hands each row to `f` as it arrives, so that a result of any size
    /// (a long run's orders) takes constant memory; `f`'s error stops the query.
    pub async fn for_each_row<E: From<StoreError>>(
        &self,
        sql: &str,
        values: Vec<Value>,
        mut f: impl FnMut(Row) -> Result<(), E>,
    ) -> Result<(), E> {
        let backend = self.backend();
        let err = |e| StoreError::query(format!("running `{}`", first_line(sql)), e);
        let stmt = self.stmt(sql, values);
        on_conn!(self, sql, c => {
            let mut rows = c.stream_raw(stmt).await.map_err(err)?;
            while let Some(row) = rows.try_next().await.map_err(err)? {
                f(Row::new(row, backend))?;
            }
        });
        Ok(())
    }

    /// Runs a query that returns at most one row.
    pub async fn query_opt(
        &self,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Option<Row>, StoreError> {
        let backend = self.backend();
        let stmt = self.stmt(sql, values);
        on_conn!(self, sql, c => c.query_one_raw(stmt).await)
            .map(|r| r.map(|r| Row::new(r, backend)))
            .map_err(|e| StoreError::query(format!("running `{}`", first_line(sql)), e))
    }

    /// Runs a query that must return a row.
    pub async fn query_one(&self, sql: &str, values: Vec<Value>) -> Result<Row, StoreError> {
        self.query_opt(sql, values)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("row for `{}`", first_line(sql))))
    }

    /// Commits (a single statement on its own committed when it ran).
    pub async fn commit(self) -> Result<(), StoreError> {
        match self.inner {
            Conn::Transaction { begun, .. } => match begun.into_inner() {
                Some((t, _writer)) => t
                    .commit()
                    .await
                    .map_err(|e| StoreError::query("committing", e)),
                None => Ok(()),
            },
            Conn::Alone { .. } => Ok(()),
        }
    }

    /// Rolls back explicitly (dropping does the same). A single statement on its own that ran
    /// cannot be rolled back: refused.
    pub async fn rollback(self) -> Result<(), StoreError> {
        match self.inner {
            Conn::Transaction { begun, .. } => match begun.into_inner() {
                Some((t, _writer)) => t
                    .rollback()
                    .await
                    .map_err(|e| StoreError::query("rolling back", e)),
                None => Ok(()),
            },
            Conn::Alone { ran, .. } if ran.load(Ordering::Acquire) => Err(
                StoreError::SecondStatement("a rollback after the statement committed".into()),
            ),
            Conn::Alone { .. } => Ok(()),
        }
    }

    /// The sea-orm transaction, for the migrator (`None` for a single statement on its own and
    /// for a lazy transaction not begun yet).
    pub fn connection(&self) -> Option<&DatabaseTransaction> {
        match &self.inner {
            Conn::Transaction { begun, .. } => begun.get().map(|(t, _)| t),
            Conn::Alone { .. } => None,
        }
    }

    /// Whether a statement was sent: false only for a lazy transaction ([`Db::write_lazily`])
    /// or a single statement ([`Db::single_statement`]) that has run none.
    pub fn begun(&self) -> bool {
        match &self.inner {
            Conn::Transaction { begun, .. } => begun.initialized(),
            Conn::Alone { ran, .. } => ran.load(Ordering::Acquire),
        }
    }
}
