//! The server-wide rate limit (GCRA, governor): 429 `rate_limited` with `Retry-After`.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{Quota, RateLimiter};

use super::error::ApiError;
use super::faults::{Faults, bump};

/// The limiter type (one shared bucket, no per-key state).
pub(crate) type Limiter = governor::DefaultDirectRateLimiter;

/// A limiter for `rps` requests per second (burst `rps`), or none for 0.
pub(crate) fn limiter(rps: u32) -> Option<Arc<Limiter>> {
    NonZeroU32::new(rps).map(|n| Arc::new(RateLimiter::direct(Quota::per_second(n))))
}

/// `Some(429 response)` when the request is over the limit.
pub(crate) fn check(faults: &Faults) -> Option<Response> {
    let limiter = faults.limiter()?;
    let not_until = limiter.check().err()?;
    bump(&faults.counters.rate_limited);
    let wait = not_until.wait_time_from(limiter.clock().now());
    // Whole seconds, at least one (a client must not retry immediately).
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("server-wide rate limit reached; retry after {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(RETRY_AFTER, v);
    }
    Some(resp)
}
