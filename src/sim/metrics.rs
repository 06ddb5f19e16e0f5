//! What a run measures: latency histograms per endpoint (HDR), outcomes kept apart by class,
//! and business counters.
//!
//! Recording is cheap and lock-light (atomics for counters, one short mutex per endpoint for its
//! histograms), so agents never wait on the dashboard or the database. Histograms are kept
//! twice: for the whole run and for the current interval; [`Metrics::take_interval`] hands the
//! interval out (to be stored with the run, serialised) and starts a new one. Stored histograms
//! merge exactly across intervals and shards — percentiles are never averaged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::day_progress::DayProgress;

/// The remote actions whose latency is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `PUT /api/user/store`.
    SelectStore,
    /// `GET /api/products/{id}`.
    ViewProduct,
    /// `POST /api/cart/items`.
    AddToCart,
    /// `GET /api/coupons/eligible`.
    EligibleCoupons,
    /// `POST /api/cart/coupons`.
    ApplyCoupon,
    /// `GET /api/cart/summary`.
    CartSummary,
    /// `POST /api/orders`.
    Checkout,
    /// `DELETE /api/cart` (abandon).
    Abandon,
    /// `POST /api/offers/refresh`.
    RefreshOffers,
    /// `GET /api/offers/wallet/{user_id}`.
    Wallet,
}

impl Endpoint {
    /// Every endpoint, in display order.
    pub const ALL: [Endpoint; 10] = [
        Endpoint::SelectStore,
        Endpoint::ViewProduct,
        Endpoint::AddToCart,
        Endpoint::EligibleCoupons,
        Endpoint::ApplyCoupon,
        Endpoint::CartSummary,
        Endpoint::Checkout,
        Endpoint::Abandon,
        Endpoint::RefreshOffers,
        Endpoint::Wallet,
    ];

    /// The name used in reports, thresholds (`checkout.p99<500ms`) and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::SelectStore => "select_store",
            Endpoint::ViewProduct => "view_product",
            Endpoint::AddToCart => "add_to_cart",
            Endpoint::EligibleCoupons => "eligible_coupons",
            Endpoint::ApplyCoupon => "apply_coupon",
            Endpoint::CartSummary => "cart_summary",
            Endpoint::Checkout => "checkout",
            Endpoint::Abandon => "abandon",
            Endpoint::RefreshOffers => "refresh_offers",
            Endpoint::Wallet => "wallet",
        }
    }

    /// Looks an endpoint up by [`Endpoint::name`].
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How one request ended. Business rejections are outcomes, not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx.
    Ok,
    /// Out of stock (a business rejection).
    OutOfStock,
    /// Offer refused (a business rejection).
    OfferRefused,
    /// Another business rejection (empty cart, no store selected).
    OtherRejection,
    /// 5xx from the API.
    Api5xx,
    /// 429 Too Many Requests.
    RateLimited,
    /// Another 4xx (a client bug or contract mismatch).
    Other4xx,
    /// No answer in time.
    Timeout,
    /// Could not connect / connection reset.
    Connection,
    /// A database error (in-process actions, or shopsim's own writes).
    Db,
}

impl Outcome {
    /// Every outcome, in display order.
    pub const ALL: [Outcome; 10] = [
        Outcome::Ok,
        Outcome::OutOfStock,
        Outcome::OfferRefused,
        Outcome::OtherRejection,
        Outcome::Api5xx,
        Outcome::RateLimited,
        Outcome::Other4xx,
        Outcome::Timeout,
        Outcome::Connection,
        Outcome::Db,
    ];

    /// Name used in reports and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::OutOfStock => "out_of_stock",
            Outcome::OfferRefused => "offer_refused",
            Outcome::OtherRejection => "other_rejection",
            Outcome::Api5xx => "api_5xx",
            Outcome::RateLimited => "rate_limited",
            Outcome::Other4xx => "other_4xx",
            Outcome::Timeout => "timeout",
            Outcome::Connection => "connection",
            Outcome::Db => "db",
        }
    }

    /// True for errors (as opposed to successes and business rejections).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Outcome::Api5xx
                | Outcome::RateLimited
                | Outcome::Other4xx
                | Outcome::Timeout
                | Outcome::Connection
                | Outcome::Db
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Business and engine counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    /// Agent-days decided.
    AgentDays,
    /// Sessions started.
    SessionsStarted,
    /// Sessions that ended in an order.
    SessionsCompleted,
    /// Sessions abandoned.
    SessionsAbandoned,
    /// Sessions ended by a failed step.
    SessionsFailed,
    /// Orders placed.
    Orders,
    /// Revenue in cents (sum of final totals).
    RevenueCents,
    /// Offers assigned by refreshes.
    OffersAssigned,
    /// Offers applied to carts.
    OffersApplied,
    /// Session events written (by the server or the domain).
    Events,
    /// Requests retried.
    Retries,
    /// Behaviour script errors.
    ScriptErrors,
}

impl Counter {
    /// Every counter.
    pub const ALL: [Counter; 12] = [
        Counter::AgentDays,
        Counter::SessionsStarted,
        Counter::SessionsCompleted,
        Counter::SessionsAbandoned,
        Counter::SessionsFailed,
        Counter::Orders,
        Counter::RevenueCents,
        Counter::OffersAssigned,
        Counter::OffersApplied,
        Counter::Events,
        Counter::Retries,
        Counter::ScriptErrors,
    ];

    /// Name used in reports and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Counter::AgentDays => "agent_days",
            Counter::SessionsStarted => "sessions_started",
            Counter::SessionsCompleted => "sessions_completed",
            Counter::SessionsAbandoned => "sessions_abandoned",
            Counter::SessionsFailed => "sessions_failed",
            Counter::Orders => "orders",
            Counter::RevenueCents => "revenue_cents",
            Counter::OffersAssigned => "offers_assigned",
            Counter::OffersApplied => "offers_applied",
            Counter::Events => "events",
            Counter::Retries => "retries",
            Counter::ScriptErrors => "script_errors",
        }
    }
}

const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 3_600_000_000; // an hour: anything slower is clamped, not lost
const SIGFIG: u8 = 3;

fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG)
        .expect("constant histogram bounds are valid")
}

struct Hists {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

impl Hists {
    fn new() -> Self {
        Self {
            total: new_histogram(),
            interval: new_histogram(),
        }
    }
    fn record(&mut self, us: u64) {
        let v = us.clamp(LOWEST_US, HIGHEST_US);
        self.total.saturating_record(v);
        self.interval.saturating_record(v);
    }
}

/// The live recorder of a run (one per process; shared by reference).
pub struct Metrics {
    latency: Vec<Mutex<Hists>>,
    lag: Mutex<Hists>,
    outcomes: Vec<Vec<AtomicU64>>, // [endpoint][outcome]
    counters: Vec<AtomicU64>,
    warnings: Mutex<std::collections::VecDeque<String>>,
    day: DayProgress,
}

/// Warnings kept for display (the dashboard, `shopsim check`); older ones are dropped here but
/// never from the log.
const KEPT_WARNINGS: usize = 20;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty recorder.
    pub fn new() -> Self {
        Self {
            latency: Endpoint::ALL
                .iter()
                .map(|_| Mutex::new(Hists::new()))
                .collect(),
            lag: Mutex::new(Hists::new()),
            outcomes: Endpoint::ALL
                .iter()
                .map(|_| Outcome::ALL.iter().map(|_| AtomicU64::new(0)).collect())
                .collect(),
            counters: Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            warnings: Mutex::new(std::collections::VecDeque::new()),
            day: DayProgress::new(),
        }
    }

    /// The current simulated day's sessions, ended out of planned (the engine counts them).
    pub fn day(&self) -> &DayProgress {
        &self.day
    }

    /// Counts a behaviour-script error and keeps its message among the recent warnings.
    pub fn script_error(&self, message: String) {
        self.add(Counter::ScriptErrors, 1);
        self.warn(message);
    }

    /// Keeps `message` among the recent warnings (the last 20).
    pub fn warn(&self, message: String) {
        let mut w = self.warnings.lock();
        if w.len() == KEPT_WARNINGS {
            w.pop_front();
        }
        w.push_back(message);
    }

    /// The recent warnings, oldest first.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().iter().cloned().collect()
    }

    /// Records one request: its latency (from the *scheduled* send time in paced mode, so
    /// queueing is not hidden) and how it ended.
    pub fn record_request(&self, endpoint: Endpoint, latency: Duration, outcome: Outcome) {
        self.latency[endpoint.index()]
            .lock()
            .record(latency.as_micros() as u64);
        self.outcomes[endpoint.index()][outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Records how late a simulated event was released (paced mode).
    pub fn record_lag(&self, lag: Duration) {
        self.lag.lock().record(lag.as_micros() as u64);
    }

    /// Adds to a counter.
    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    /// Requests of `endpoint` that ended with `outcome`.
    pub fn outcome_count(&self, endpoint: Endpoint, outcome: Outcome) -> u64 {
        self.outcomes[endpoint.index()][outcome.index()].load(Ordering::Relaxed)
    }

    /// The whole run's latency histogram of `endpoint` (microseconds), for exporters.
    pub fn latency_histogram(&self, endpoint: Endpoint) -> Histogram<u64> {
        self.latency[endpoint.index()].lock().total.clone()
    }

    /// The p99 of the whole run's release lag in milliseconds, `None` before any release (a
    /// shard's heartbeat figure, without copying the histogram).
    pub fn lag_p99_ms(&self) -> Option<f64> {
        let lag = self.lag.lock();
        (!lag.total.is_empty()).then(|| lag.total.value_at_quantile(0.99) as f64 / 1000.0)
    }

    /// The whole run's release-lag histogram (microseconds), for exporters.
    pub fn lag_histogram(&self) -> Histogram<u64> {
        self.lag.lock().total.clone()
    }

    /// A summary of the whole run so far (for the dashboard, the status line, the report).
    pub fn snapshot(&self) -> Snapshot {
        let mut endpoints = BTreeMap::new();
        for e in Endpoint::ALL {
            let h = self.latency[e.index()].lock();
            let outcomes: BTreeMap<Outcome, u64> = Outcome::ALL
                .into_iter()
                .map(|o| (o, self.outcome_count(e, o)))
                .filter(|(_, n)| *n > 0)
                .collect();
            endpoints.insert(e, EndpointSummary::from_histogram(&h.total, outcomes));
        }
        let counters = Counter::ALL.into_iter().map(|c| (c, self.get(c))).collect();
        let lag = LatencySummary::from_histogram(&self.lag.lock().total);
        Snapshot {
            endpoints,
            counters,
            lag,
        }
    }

    /// Hands out the current interval's histograms (serialised) and starts a new interval.
    pub fn take_interval(&self) -> Result<IntervalHistograms, MetricsError> {
        let mut latency = BTreeMap::new();
        for e in Endpoint::ALL {
            let mut h = self.latency[e.index()].lock();
            if !h.interval.is_empty() {
                latency.insert(e, encode(&h.interval)?);
                h.interval.reset();
            }
        }
        let mut lag_h = self.lag.lock();
        let lag = if !lag_h.interval.is_empty() {
            Some(encode(&lag_h.interval)?)
        } else {
            None
        };
        lag_h.interval.reset();
        Ok(IntervalHistograms { latency, lag })
    }
}

/// Errors encoding or decoding stored histograms.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A stored histogram could not be encoded.
    #[error("cannot serialise a latency histogram: {0}")]
    Encode(String),
    /// A stored histogram is corrupt.
    #[error("stored latency histogram is corrupt: {0}")]
    Decode(String),
}

/// Serialises a histogram (HDR V2, deflated, base64) for storage.
pub fn encode(h: &Histogram<u64>) -> Result<String, MetricsError> {
    use base64::Engine as _;
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| MetricsError::Encode(format!("{e:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

/// Reads a histogram stored by [`encode`].
pub fn decode(s: &str) -> Result<Histogram<u64>, MetricsError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| MetricsError::Decode(e.to_string()))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| MetricsError::Decode(format!("{e:?}")))
}

/// Merges stored histograms exactly (intervals of a run, shards of a run).
pub fn merge<'a>(
    encoded: impl IntoIterator<Item = &'a str>,
) -> Result<Histogram<u64>, MetricsError> {
    let mut out = new_histogram();
    for s in encoded {
        let h = decode(s)?;
        out.add(&h)
            .map_err(|e| MetricsError::Decode(format!("{e:?}")))?;
    }
    Ok(out)
}

/// One interval's histograms, serialised for the run records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalHistograms {
    /// Request latency per endpoint (microseconds).
    pub latency: BTreeMap<Endpoint, String>,
    /// Release lag (microseconds), paced mode only.
    pub lag: Option<String>,
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarises a histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// One endpoint's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointSummary {
    /// Latency percentiles.
    #[serde(flatten)]
    pub latency: LatencySummary,
    /// Requests by outcome (only outcomes that happened).
    pub outcomes: BTreeMap<Outcome, u64>,
}

impl EndpointSummary {
    fn from_histogram(h: &Histogram<u64>, outcomes: BTreeMap<Outcome, u64>) -> Self {
        Self {
            latency: LatencySummary::from_histogram(h),
            outcomes,
        }
    }
}

/// A point-in-time summary of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Per endpoint.
    pub endpoints: BTreeMap<Endpoint, EndpointSummary>,
    /// Counters.
    pub counters: BTreeMap<Counter, u64>,
    /// Release lag (paced mode).
    pub lag: LatencySummary,
}

impl Snapshot {
    /// Total requests that ended with `outcome`, over all endpoints.
    pub fn outcome_total(&self, outcome: Outcome) -> u64 {
        self.endpoints
            .values()
            .map(|e| e.outcomes.get(&outcome).copied().unwrap_or(0))
            .sum()
    }

    /// All requests.
    pub fn requests(&self) -> u64 {
        self.endpoints
            .values()
            .map(|e| e.outcomes.values().sum::<u64>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_outcomes_apart_and_summarises_latency() {
        let m = Metrics::new();
        for ms in 1..=100u64 {
            m.record_request(Endpoint::Checkout, Duration::from_millis(ms), Outcome::Ok);
        }
        m.record_request(
            Endpoint::AddToCart,
            Duration::from_millis(3),
            Outcome::OutOfStock,
        );
        m.record_request(
            Endpoint::AddToCart,
            Duration::from_millis(3),
            Outcome::Api5xx,
        );
        m.add(Counter::Orders, 2);
        let s = m.snapshot();
        let c = &s.endpoints[&Endpoint::Checkout];
        assert_eq!(c.latency.count, 100);
        assert!((c.latency.p50_ms - 50.0).abs() < 0.1, "{:?}", c.latency);
        assert!((c.latency.p99_ms - 99.0).abs() < 0.1, "{:?}", c.latency);
        assert_eq!(s.outcome_total(Outcome::OutOfStock), 1);
        assert!(!Outcome::OutOfStock.is_error() && Outcome::Api5xx.is_error());
        assert_eq!(s.requests(), 102);
        assert_eq!(s.counters[&Counter::Orders], 2);
        assert_eq!(Endpoint::from_name("checkout"), Some(Endpoint::Checkout));
    }

    #[test]
    fn intervals_serialise_and_merge_exactly() {
        let m = Metrics::new();
        for ms in 1..=50u64 {
            m.record_request(Endpoint::Checkout, Duration::from_millis(ms), Outcome::Ok);
        }
        let first = m.take_interval().unwrap();
        for ms in 51..=100u64 {
            m.record_request(Endpoint::Checkout, Duration::from_millis(ms), Outcome::Ok);
        }
        let second = m.take_interval().unwrap();
        assert!(
            m.take_interval().unwrap().latency.is_empty(),
            "a new interval starts empty"
        );
        let merged = merge([
            first.latency[&Endpoint::Checkout].as_str(),
            second.latency[&Endpoint::Checkout].as_str(),
        ])
        .unwrap();
        let whole = LatencySummary::from_histogram(&merged);
        assert_eq!(whole, m.snapshot().endpoints[&Endpoint::Checkout].latency);
        assert!(decode("not base64!").is_err());
    }
}
