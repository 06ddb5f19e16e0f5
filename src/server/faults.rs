//! Fault injection and the server-wide counters, changeable at runtime.
//!
//! Every decision is drawn from one seeded ChaCha8 stream (`ids::rng(fault_seed, ["faults"])`),
//! so the same request sequence sees the same faults. `before` answers 503 without doing
//! anything; `after` runs the request to completion (committed) and then answers 503, which is
//! what a client sees when a response is lost; `mixed` picks one of the two, 50/50.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::{Mutex, RwLock};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::ratelimit::{self, Limiter};

/// When an injected failure happens relative to the real work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// 503 without doing anything.
    Before,
    /// Do the request (committed), then answer 503.
    After,
    /// Each faulted request picks `before` or `after`, 50/50.
    Mixed,
}

impl FromStr for FailMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "before" => Ok(FailMode::Before),
            "after" => Ok(FailMode::After),
            "mixed" => Ok(FailMode::Mixed),
            other => Err(format!(
                "unknown fail mode `{other}`; use before, after or mixed"
            )),
        }
    }
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailMode::Before => "before",
            FailMode::After => "after",
            FailMode::Mixed => "mixed",
        })
    }
}

/// Added latency, drawn uniformly from `min_ms..=max_ms`. Written `MIN..MAX` (e.g. `5..50`) or
/// a single number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LatencyRange {
    /// Shortest delay in milliseconds.
    pub min_ms: u64,
    /// Longest delay in milliseconds.
    pub max_ms: u64,
}

/// Longest latency that may be injected (one minute).
pub const MAX_LATENCY_MS: u64 = 60_000;

impl FromStr for LatencyRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("latency `{s}` is not MIN..MAX in milliseconds (e.g. 5..50)");
        let (a, b) = match s.trim().split_once("..") {
            Some((a, b)) => (a, b.strip_prefix('=').unwrap_or(b)),
            None => (s, s),
        };
        let min: u64 = a.trim().parse().map_err(|_| bad())?;
        let max: u64 = b.trim().parse().map_err(|_| bad())?;
        if min > max {
            return Err(format!("latency `{s}`: MIN must not exceed MAX"));
        }
        if max > MAX_LATENCY_MS {
            return Err(format!(
                "latency `{s}`: at most {MAX_LATENCY_MS} ms may be injected"
            ));
        }
        Ok(LatencyRange {
            min_ms: min,
            max_ms: max,
        })
    }
}

impl TryFrom<String> for LatencyRange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<LatencyRange> for String {
    fn from(r: LatencyRange) -> String {
        r.to_string()
    }
}

impl fmt::Display for LatencyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.min_ms, self.max_ms)
    }
}

/// Fault injection and rate-limit settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSettings {
    /// Share of API requests that fail with 503 `injected_fault` (0–1).
    pub fail_rate: f64,
    /// When the injected failure happens.
    pub fail_mode: FailMode,
    /// Added latency, if any.
    pub latency_ms: Option<LatencyRange>,
    /// Server-wide limit in requests per second (`None`: unlimited).
    pub rate_limit: Option<u32>,
}

impl Default for FaultSettings {
    fn default() -> Self {
        Self {
            fail_rate: 0.0,
            fail_mode: FailMode::Before,
            latency_ms: None,
            rate_limit: None,
        }
    }
}

impl FaultSettings {
    /// Checks the values, naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !self.fail_rate.is_finite() || !(0.0..=1.0).contains(&self.fail_rate) {
            return Err(format!(
                "fail_rate {} is out of range; use a number from 0.0 to 1.0",
                self.fail_rate
            ));
        }
        if let Some(r) = self.latency_ms {
            // Re-check: the fields are public.
            r.to_string().parse::<LatencyRange>()?;
        }
        Ok(())
    }
}

/// A partial change of [`FaultSettings`] (`PUT /admin/faults`). Absent fields stay; `null`
/// latency or rate limit (or a rate limit of 0) turns them off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPatch {
    /// New failure share.
    pub fail_rate: Option<f64>,
    /// New failure mode.
    pub fail_mode: Option<FailMode>,
    /// New latency (`null`: none).
    #[serde(default, deserialize_with = "some")]
    pub latency_ms: Option<Option<LatencyRange>>,
    /// New rate limit (`null` or 0: none).
    #[serde(default, deserialize_with = "some")]
    pub rate_limit: Option<Option<u32>>,
}

/// Distinguishes a present `null` from an absent field.
fn some<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounters {
    /// API requests received (`/health` and `/admin/*` excluded).
    pub requests: u64,
    /// Failed before doing anything.
    pub injected_before: u64,
    /// Done, then failed.
    pub injected_after: u64,
    /// Requests delayed by injected latency.
    pub latency_injected: u64,
    /// Answered 429.
    pub rate_limited: u64,
    /// Idempotent replays of a stored answer.
    pub replays: u64,
    /// 409 `idempotency_in_flight` answers.
    pub conflicts_409: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub injected_before: AtomicU64,
    pub injected_after: AtomicU64,
    pub latency_injected: AtomicU64,
    pub rate_limited: AtomicU64,
    pub replays: AtomicU64,
    pub conflicts_409: AtomicU64,
}

impl Counters {
    fn all(&self) -> [&AtomicU64; 7] {
        [
            &self.requests,
            &self.injected_before,
            &self.injected_after,
            &self.latency_injected,
            &self.rate_limited,
            &self.replays,
            &self.conflicts_409,
        ]
    }
}

/// Bumps a counter.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The fault injector: settings, rate limiter and counters. Shared by the server and whoever
/// started it (see [`super::RunningServer::faults`]).
pub struct Faults {
    settings: RwLock<FaultSettings>,
    limiter: RwLock<Option<Arc<Limiter>>>,
    rng: Mutex<ChaCha8Rng>,
    seed: u64,
    pub(crate) counters: Counters,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("settings", &*self.settings.read())
            .field("counters", &self.counters())
            .finish()
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Fail it, and when.
    pub fail: Option<FailMode>,
    /// Delay it first.
    pub latency: Option<Duration>,
}

impl Faults {
    /// An injector with `settings`, drawing from the stream of `seed`.
    pub fn new(settings: FaultSettings, seed: u64) -> Result<Self, String> {
        settings.validate()?;
        let limiter = settings.rate_limit.and_then(ratelimit::limiter);
        Ok(Self {
            settings: RwLock::new(settings),
            limiter: RwLock::new(limiter),
            rng: Mutex::new(crate::ids::rng(seed, &["faults".into()])),
            seed,
            counters: Counters::default(),
        })
    }

    /// The seed of the fault stream.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current settings.
    pub fn settings(&self) -> FaultSettings {
        self.settings.read().clone()
    }

    /// Replaces the settings (validated first; nothing changes on error).
    pub fn set(&self, settings: FaultSettings) -> Result<(), String> {
        settings.validate()?;
        let mut current = self.settings.write();
        if current.rate_limit != settings.rate_limit {
            *self.limiter.write() = settings.rate_limit.and_then(ratelimit::limiter);
        }
        *current = settings;
        Ok(())
    }

    /// Applies a partial change and returns the new settings.
    pub fn update(&self, patch: FaultPatch) -> Result<FaultSettings, String> {
        let mut s = self.settings();
        if let Some(r) = patch.fail_rate {
            s.fail_rate = r;
        }
        if let Some(m) = patch.fail_mode {
            s.fail_mode = m;
        }
        if let Some(l) = patch.latency_ms {
            s.latency_ms = l;
        }
        if let Some(r) = patch.rate_limit {
            s.rate_limit = r.filter(|&n| n > 0);
        }
        self.set(s.clone())?;
        Ok(s)
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> FaultCounters {
        let [
            requests,
            injected_before,
            injected_after,
            latency_injected,
            rate_limited,
            replays,
            conflicts_409,
        ] = self.counters.all().map(|c| c.load(Ordering::Relaxed));
        FaultCounters {
            requests,
            injected_before,
            injected_after,
            latency_injected,
            rate_limited,
            replays,
            conflicts_409,
        }
    }

    /// Sets every counter to zero.
    pub fn reset_counters(&self) {
        for c in self.counters.all() {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// The current rate limiter, if a limit is set.
    pub(crate) fn limiter(&self) -> Option<Arc<Limiter>> {
        self.limiter.read().clone()
    }

    /// Draws the fate of one request. Draw order is fixed (failure, then mode, then latency)
    /// so a given request sequence always sees the same faults.
    pub(crate) fn decide(&self) -> Decision {
        let s = self.settings.read().clone();
        if s.fail_rate <= 0.0 && s.latency_ms.is_none_or(|l| l.max_ms == 0) {
            return Decision {
                fail: None,
                latency: None,
            };
        }
        let mut rng = self.rng.lock();
        let fail = (rng.random::<f64>() < s.fail_rate).then(|| match s.fail_mode {
            FailMode::Mixed => {
                if rng.random_bool(0.5) {
                    FailMode::Before
                } else {
                    FailMode::After
                }
            }
            m => m,
        });
        let latency = s
            .latency_ms
            .map(|l| rng.random_range(l.min_ms..=l.max_ms))
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis);
        Decision { fail, latency }
    }
}

fn injected_fault() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "injected_fault",
        "injected fault (fault injection is on); retry",
    )
    .into_response()
}

/// Middleware for API routes: counts, rate-limits, delays and fails requests as configured.
pub(crate) async fn middleware(
    State(faults): State<Arc<Faults>>,
    req: Request,
    next: Next,
) -> Response {
    bump(&faults.counters.requests);
    if let Some(resp) = ratelimit::check(&faults) {
        return resp;
    }
    let d = faults.decide();
    if let Some(delay) = d.latency {
        bump(&faults.counters.latency_injected);
        tokio::time::sleep(delay).await;
    }
    match d.fail {
        Some(FailMode::Before) => {
            bump(&faults.counters.injected_before);
            injected_fault()
        }
        Some(_) => {
            // The work is done and committed; only the answer is lost.
            let _ = next.run(req).await;
            bump(&faults.counters.injected_after);
            injected_fault()
        }
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_latency_and_modes() {
        assert_eq!(
            "5..50".parse::<LatencyRange>().unwrap(),
            LatencyRange {
                min_ms: 5,
                max_ms: 50
            }
        );
        assert_eq!("7".parse::<LatencyRange>().unwrap().max_ms, 7);
        assert!("50..5".parse::<LatencyRange>().is_err());
        assert!("a..b".parse::<LatencyRange>().is_err());
        assert_eq!("MIXED".parse::<FailMode>().unwrap(), FailMode::Mixed);
        assert!("sometimes".parse::<FailMode>().is_err());
    }

    #[test]
    fn decisions_follow_the_seed_and_rate() {
        let settings = FaultSettings {
            fail_rate: 0.5,
            fail_mode: FailMode::Mixed,
            latency_ms: Some(LatencyRange {
                min_ms: 1,
                max_ms: 9,
            }),
            rate_limit: None,
        };
        let a = Faults::new(settings.clone(), 7).unwrap();
        let b = Faults::new(settings, 7).unwrap();
        let da: Vec<_> = (0..200).map(|_| a.decide()).collect();
        let db: Vec<_> = (0..200).map(|_| b.decide()).collect();
        assert_eq!(da, db);
        let failed = da.iter().filter(|d| d.fail.is_some()).count();
        assert!((60..140).contains(&failed), "{failed}");
        assert!(da.iter().any(|d| d.fail == Some(FailMode::Before)));
        assert!(da.iter().any(|d| d.fail == Some(FailMode::After)));
        assert!(
            da.iter()
                .all(|d| d.latency.is_some_and(|l| l.as_millis() <= 9))
        );
    }

    #[test]
    fn patches_validate_and_apply() {
        let f = Faults::new(FaultSettings::default(), 1).unwrap();
        assert!(
            f.update(FaultPatch {
                fail_rate: Some(1.5),
                ..Default::default()
            })
            .is_err()
        );
        assert_eq!(f.settings().fail_rate, 0.0);
        let patch: FaultPatch =
            serde_json::from_str(r#"{"fail_rate":0.25,"latency_ms":"1..2","rate_limit":5}"#)
                .unwrap();
        let s = f.update(patch).unwrap();
        assert_eq!(s.rate_limit, Some(5));
        assert!(f.limiter().is_some());
        let patch: FaultPatch =
            serde_json::from_str(r#"{"rate_limit":null,"latency_ms":null}"#).unwrap();
        let s = f.update(patch).unwrap();
        assert_eq!(
            (s.rate_limit, s.latency_ms, s.fail_rate),
            (None, None, 0.25)
        );
        assert!(f.limiter().is_none());
        assert!(serde_json::from_str::<FaultPatch>(r#"{"fail_rat":1}"#).is_err());
    }
}
