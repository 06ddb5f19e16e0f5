//! Errors of the data layer.

use sea_orm::DbErr;

/// What can go wrong talking to the database. Messages name the thing and what to do; no
/// variant ever carries a password (URLs are stored redacted).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL could not be understood.
    #[error("database URL {url} is not usable: {reason}")]
    BadUrl {
        /// The URL, redacted.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The database could not be reached or refused the connection.
    #[error(
        "cannot connect to database {url}: {reason} (check the URL, that the server runs and accepts connections)"
    )]
    Connect {
        /// The URL, redacted.
        url: String,
        /// The driver's explanation, redacted.
        reason: String,
    },
    /// A statement failed.
    #[error("database error while {context}: {source}")]
    Query {
        /// What the code was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: DbErr,
    },
    /// A single-statement unit of work ([`super::Db::single_statement`]) was asked to run a
    /// second statement, which would not be atomic with the first: a bug, refused.
    #[error("a second statement in a single-statement unit of work ({0}) was refused")]
    SecondStatement(String),
    /// A value read back from the database did not have the expected shape.
    #[error("unexpected value in column {column}: {reason}")]
    Decode {
        /// The column.
        column: String,
        /// What was wrong.
        reason: String,
    },
    /// The schema is missing something shopsim needs.
    #[error("database schema is not compatible: {0} (run `shopsim migrate`)")]
    Schema(String),
    /// An expected row was not there.
    #[error("{0} not found")]
    NotFound(String),
}

impl StoreError {
    /// Wraps a driver error with what the code was doing.
    pub fn query(context: impl Into<String>, source: DbErr) -> Self {
        StoreError::Query {
            context: context.into(),
            source,
        }
    }

    /// True when the database is unreachable (connection refused, reset, pool timeout), as
    /// opposed to a statement being wrong. The simulation host treats this as an outage.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Query { source, .. } => db_err_is_unavailable(source),
            _ => false,
        }
    }

    /// True for a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Query { source, .. }
            if matches!(source.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))))
    }

    /// The SQLSTATE (PostgreSQL) or extended result code (SQLite) of a failed statement.
    pub fn code(&self) -> Option<String> {
        match self {
            StoreError::Query { source, .. } => db_err_code(source),
            _ => None,
        }
    }

    /// True when PostgreSQL gave up waiting for a row lock (`lock_timeout`, SQLSTATE 55P03).
    pub fn is_lock_timeout(&self) -> bool {
        self.code().as_deref() == Some("55P03")
    }
}

fn sqlx_err(err: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e.as_ref()),
        _ => None,
    }
}

fn db_err_code(err: &DbErr) -> Option<String> {
    match sqlx_err(err)? {
        sea_orm::sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// True when a driver error means the database cannot be reached right now.
pub fn db_err_is_unavailable(err: &DbErr) -> bool {
    if matches!(err, DbErr::ConnectionAcquire(_)) {
        return true;
    }
    match sqlx_err(err) {
        Some(sea_orm::sqlx::Error::Io(_))
        | Some(sea_orm::sqlx::Error::PoolTimedOut)
        | Some(sea_orm::sqlx::Error::PoolClosed)
        | Some(sea_orm::sqlx::Error::WorkerCrashed)
        | Some(sea_orm::sqlx::Error::Tls(_)) => true,
        Some(sea_orm::sqlx::Error::Database(db)) => {
            // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
            // 08xxx connection exceptions.
            db.code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P"))
        }
        _ => matches!(err, DbErr::Conn(_)),
    }
}
