//! Database URLs: parsing, backend detection and redaction.
//!
//! A URL may carry a password; it must never reach a log line, an error message or `Debug`
//! output, so every place that shows a URL shows [`DatabaseUrl::redacted`].

use std::fmt;

use super::error::StoreError;

/// The two database engines shopsim speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// SQLite file (the embedded default) or in-memory database.
    Sqlite,
    /// PostgreSQL, directly or through a pooler (Supabase in production).
    Postgres,
}

/// A validated database URL whose `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    raw: String,
    backend: Backend,
    port: Option<u16>,
}

/// The embedded default: a SQLite file in the working directory, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://shopsim.db";

impl DatabaseUrl {
    /// Parses and validates a URL (`sqlite://path`, `sqlite::memory:`, `postgres://…`).
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        let trimmed = raw.trim();
        if trimmed.starts_with("sqlite:") {
            return Ok(Self {
                raw: trimmed.to_string(),
                backend: Backend::Sqlite,
                port: None,
            });
        }
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            let parsed = url::Url::parse(trimmed).map_err(|e| StoreError::BadUrl {
                url: redact(trimmed),
                reason: e.to_string(),
            })?;
            if parsed.host_str().unwrap_or("").is_empty() {
                return Err(StoreError::BadUrl {
                    url: redact(trimmed),
                    reason: "the URL has no host".into(),
                });
            }
            return Ok(Self {
                raw: trimmed.to_string(),
                backend: Backend::Postgres,
                port: Some(parsed.port().unwrap_or(5432)),
            });
        }
        Err(StoreError::BadUrl {
            url: redact(trimmed),
            reason: "expected a URL starting with sqlite:, postgres:// or postgresql://".into(),
        })
    }

    /// Which engine this URL points at.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The TCP port for PostgreSQL URLs (5432 when the URL gives none).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The URL with its password replaced by `***`, safe to print.
    pub fn redacted(&self) -> String {
        redact(&self.raw)
    }

    /// The full URL, for handing to the driver only.
    pub(crate) fn expose(&self) -> &str {
        &self.raw
    }

    /// The URL with the database name replaced (used by tests and tools that create databases).
    pub fn with_database(&self, name: &str) -> Result<Self, StoreError> {
        match self.backend {
            Backend::Sqlite => Self::parse(&format!("sqlite://{name}")),
            Backend::Postgres => {
                let mut parsed = url::Url::parse(&self.raw).map_err(|e| StoreError::BadUrl {
                    url: self.redacted(),
                    reason: e.to_string(),
                })?;
                parsed.set_path(&format!("/{name}"));
                Self::parse(parsed.as_str())
            }
        }
    }

    /// The database name of a PostgreSQL URL (`postgres` when it names none).
    pub fn database_name(&self) -> Option<String> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let parsed = url::Url::parse(&self.raw).ok()?;
        let name = parsed.path().trim_start_matches('/');
        Some(if name.is_empty() {
            "postgres".to_string()
        } else {
            name.to_string()
        })
    }

    /// True when the host is on this machine (loopback or a Unix socket).
    pub fn is_local(&self) -> bool {
        match self.backend {
            Backend::Sqlite => true,
            Backend::Postgres => url::Url::parse(&self.raw)
                .ok()
                .and_then(|u| {
                    u.host_str()
                        .map(|h| matches!(h, "localhost" | "127.0.0.1" | "[::1]" | "::1"))
                })
                .unwrap_or(false),
        }
    }

    /// True when the connection should not use TLS although the URL does not say so: a
    /// PostgreSQL server on this machine, with no `sslmode` in the URL nor in `PGSSLMODE`.
    /// The driver's default (`prefer`) would encrypt loopback traffic that never leaves the
    /// machine, which costs both processes CPU on every statement; `?sslmode=prefer` (or
    /// `require`) in the URL keeps TLS.
    pub fn plaintext_loopback(&self) -> bool {
        self.plaintext_loopback_with(std::env::var_os("PGSSLMODE").is_some())
    }

    fn plaintext_loopback_with(&self, env_sslmode: bool) -> bool {
        if self.backend != Backend::Postgres || env_sslmode || !self.is_local() {
            return false;
        }
        // The driver reads `sslmode` and `ssl-mode`.
        url::Url::parse(&self.raw).is_ok_and(|u| {
            !u.query_pairs().any(|(k, _)| {
                k.eq_ignore_ascii_case("sslmode") || k.eq_ignore_ascii_case("ssl-mode")
            })
        })
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Replaces the password of any URL-looking string with `***`; also hides `password=` query
/// parameters. Works on strings that do not parse as URLs too.
pub fn redact(raw: &str) -> String {
    let mut out = raw.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map(|i| rest_start + i)
            .unwrap_or(out.len());
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                let end = rest_start + at;
                out.replace_range(start..end, "***");
            }
        }
    }
    // `?password=...` style parameters.
    let lower = out.to_ascii_lowercase();
    if let Some(pos) = lower.find("password=") {
        let start = pos + "password=".len();
        let end = out[start..]
            .find('&')
            .map(|i| start + i)
            .unwrap_or(out.len());
        out.replace_range(start..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_everywhere() {
        let url =
            DatabaseUrl::parse("postgres://alice:s3cr%40t@db.example.com:6543/app?sslmode=require")
                .unwrap();
        for shown in [url.redacted(), format!("{url:?}"), format!("{url}")] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains("alice:***@db.example.com"), "{shown}");
        }
        assert_eq!(url.port(), Some(6543));
        assert_eq!(
            redact("host=x password=hunter2&user=y"),
            "host=x password=***&user=y"
        );
        assert_eq!(redact("postgres://bob@h/db"), "postgres://bob@h/db");
    }

    #[test]
    fn detects_backends_and_rejects_garbage() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://x.db").unwrap().backend(),
            Backend::Sqlite
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:").unwrap().backend(),
            Backend::Sqlite
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://u@h/d").unwrap().port(),
            Some(5432)
        );
        let err = DatabaseUrl::parse("mysql://u:pw@h/d")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sqlite:") && !err.contains("pw@"), "{err}");
        assert!(DatabaseUrl::parse("postgres:///nohost").is_err());
    }

    #[test]
    fn replaces_database_name() {
        let url = DatabaseUrl::parse("postgres://u:p@127.0.0.1:5432/test?sslmode=disable").unwrap();
        let other = url.with_database("other").unwrap();
        assert_eq!(other.database_name().as_deref(), Some("other"));
        assert!(other.expose().contains("sslmode=disable"));
    }

    #[test]
    fn loopback_without_sslmode_is_plaintext() {
        let url = |s: &str| DatabaseUrl::parse(s).unwrap();
        assert!(url("postgres://postgres@127.0.0.1:5432/test").plaintext_loopback_with(false));
        assert!(
            url("postgres://u@localhost/test?application_name=x").plaintext_loopback_with(false)
        );
        // The URL or the environment decides when it says anything.
        assert!(
            !url("postgres://postgres@127.0.0.1/test?sslmode=prefer")
                .plaintext_loopback_with(false)
        );
        assert!(
            !url("postgres://postgres@127.0.0.1/test?SSLMODE=require")
                .plaintext_loopback_with(false)
        );
        assert!(
            !url("postgres://postgres@127.0.0.1/test?ssl-mode=require")
                .plaintext_loopback_with(false)
        );
        assert!(!url("postgres://postgres@127.0.0.1/test").plaintext_loopback_with(true));
        // A remote server keeps the driver's default.
        assert!(!url("postgres://u@db.example.com/app").plaintext_loopback_with(false));
        assert!(!url("sqlite://shopsim.db").plaintext_loopback_with(false));
    }
}
