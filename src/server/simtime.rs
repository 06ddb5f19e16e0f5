//! Simulated time (`X-Sim-Time`), the shopping session header and restocking at simulated
//! midnight.

use std::sync::atomic::Ordering;

use axum::http::HeaderMap;
use chrono::{DateTime, Datelike, Utc};
use uuid::Uuid;

use super::error::ApiError;
use super::state::AppState;

/// Header carrying the simulated time of a request (RFC 3339).
pub const SIM_TIME_HEADER: &str = "x-sim-time";
/// Header tying a request to a shopping session.
pub const SESSION_HEADER: &str = "x-shopping-session-id";

/// The request's time: `X-Sim-Time` when present (simulated), else the wall clock.
pub(crate) fn request_time(headers: &HeaderMap) -> Result<(DateTime<Utc>, bool), ApiError> {
    let Some(value) = headers.get(SIM_TIME_HEADER) else {
        return Ok((Utc::now(), false));
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_sim_time",
            "X-Sim-Time must be an RFC 3339 timestamp such as 2026-01-05T09:30:00Z",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?;
    let t = DateTime::parse_from_rfc3339(text.trim()).map_err(|_| invalid())?;
    Ok((t.with_timezone(&Utc), true))
}

/// The shopping session of the request, if the header is present.
pub(crate) fn session_id(headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
    let Some(value) = headers.get(SESSION_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request("invalid_session_id", "X-Shopping-Session-Id must be a UUID")
        })
}

/// Restocks when `now` falls on a later simulated day than the last restock this process did.
/// The check is one atomic load, so it costs nothing on ordinary requests.
pub(crate) async fn restock_if_new_day(
    state: &AppState,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let day = i64::from(now.date_naive().num_days_from_ce());
    if day <= state.restocked_day.load(Ordering::Acquire) {
        return Ok(());
    }
    // One restock at a time in this process; whoever waited re-checks before doing it again.
    let _guard = state.restock_lock.lock().await;
    if day <= state.restocked_day.load(Ordering::Acquire) {
        return Ok(());
    }
    let tx = state.db.write().await?;
    let restocked = state.shop.restock_if_due(&tx, now).await?;
    tx.commit().await?;
    state.restocked_day.fetch_max(day, Ordering::AcqRel);
    if let Some(rows) = restocked {
        tracing::info!(day = %now.date_naive(), rows, "restocked inventory at simulated midnight");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn parses_sim_time_and_session() {
        let mut h = HeaderMap::new();
        assert!(!request_time(&h).unwrap().1);
        h.insert(
            SIM_TIME_HEADER,
            HeaderValue::from_static("2026-01-05T09:30:00+01:00"),
        );
        let (t, sim) = request_time(&h).unwrap();
        assert!(sim);
        assert_eq!(t.to_rfc3339(), "2026-01-05T08:30:00+00:00");
        h.insert(SIM_TIME_HEADER, HeaderValue::from_static("yesterday"));
        assert_eq!(request_time(&h).unwrap_err().code(), "invalid_sim_time");
        h.insert(SESSION_HEADER, HeaderValue::from_static("nope"));
        assert_eq!(session_id(&h).unwrap_err().code(), "invalid_session_id");
    }
}
