//! [`DashboardState`]: everything the dashboard and the status line show, as plain data.
//!
//! The run fills a state in (from [`Metrics::snapshot`](crate::sim::metrics::Metrics::snapshot),
//! the clock, the engine's progress, the actions' breakers and outage) and publishes a copy on a
//! `tokio::sync::watch` channel; the screen only ever reads copies. Nothing here refers to the
//! engine, so drawing can never slow the agents down.
//!
//! Typical refresh (a few times a second, off the agents' path):
//! ```text
//! state.apply_snapshot(&metrics.snapshot());          // endpoint rows, counters, totals
//! state.sim_now = Some(clock.sim_now());                // and the rest the run knows
//! state.wall_elapsed = started.elapsed();
//! state.in_flight = …; state.day = …; state.paused = …;
//! state.breakers = http.breaker_states();
//! state.outage = OutageState::from_http(http.outage());
//! state.set_warnings(recent_warnings);                 // oldest first
//! state.refresh(&mut rates);                            // rates, progress, remaining, scale
//! tx.send_replace(state.clone());
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::behavior::reload::ReloadEvent;
use crate::sim::actions::{BreakerState, OutageInfo};
use crate::sim::clock::TimeScale;
use crate::sim::day_progress::DayCount;
use crate::sim::metrics::{Counter, Endpoint, LatencySummary, Outcome, Snapshot};

/// Recent warnings kept for display (the log keeps them all).
pub const SHOWN_WARNINGS: usize = 5;

/// What the dashboard shows: a plain snapshot of the run, cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardState {
    /// Run id.
    pub run_id: String,
    /// Persona set name.
    pub persona_set: String,
    /// Version of the persona set's scripts now in use.
    pub script_version: String,
    /// Simulated time now (`None` until the run has started simulating).
    pub sim_now: Option<DateTime<Utc>>,
    /// First simulated instant of the run.
    pub sim_start: DateTime<Utc>,
    /// End of the run's simulated span (exclusive).
    pub sim_end: DateTime<Utc>,
    /// Wall time since the run started.
    pub wall_elapsed: Duration,
    /// Expected wall time left (`None` when unknown, e.g. paused or not started).
    pub wall_remaining: Option<Duration>,
    /// The time scale asked for (`max` or simulated seconds per wall second).
    pub target_scale: TimeScale,
    /// The scale achieved over the recent window (simulated seconds per wall second).
    pub achieved_scale: Option<f64>,
    /// How late simulated events are released now, in milliseconds (paced mode only).
    pub lag_ms: Option<f64>,
    /// 99th percentile of the release lag over the whole run, in milliseconds (paced mode only).
    pub lag_p99_ms: Option<f64>,
    /// Whole-run progress, 0..=1.
    pub progress: f64,
    /// The current simulated day's sessions, ended out of planned (`None` before the first).
    pub day: Option<DayCount>,
    /// Sessions in flight now.
    pub in_flight: u64,
    /// Sessions started so far.
    pub sessions: u64,
    /// Orders placed so far.
    pub orders: u64,
    /// Requests made so far (every outcome).
    pub requests: u64,
    /// Throughput over the recent window (wall clock).
    pub rates: Rates,
    /// Orders per simulated day, averaged over the simulated time so far.
    pub orders_per_sim_day: Option<f64>,
    /// Latency and errors per endpoint, in [`Endpoint::ALL`] order.
    pub endpoints: Vec<EndpointRow>,
    /// Errors and business outcomes, kept apart.
    pub counters: Counters,
    /// Circuit breaker per endpoint (empty for in-process actions, which have none).
    pub breakers: Vec<(Endpoint, BreakerState)>,
    /// The ongoing outage, if any.
    pub outage: OutageState,
    /// True while the simulated clock is paused.
    pub paused: bool,
    /// True once a stop was asked for (sessions in flight are finishing).
    pub stopping: bool,
    /// The last hot reload of the persona set, if any happened.
    pub last_reload: Option<ReloadStatus>,
    /// The most recent warnings, oldest first (at most [`SHOWN_WARNINGS`]).
    pub warnings: Vec<String>,
}

impl Default for DashboardState {
    fn default() -> Self {
        Self {
            run_id: String::new(),
            persona_set: String::new(),
            script_version: String::new(),
            sim_now: None,
            sim_start: DateTime::<Utc>::default(),
            sim_end: DateTime::<Utc>::default(),
            wall_elapsed: Duration::ZERO,
            wall_remaining: None,
            target_scale: TimeScale::Max,
            achieved_scale: None,
            lag_ms: None,
            lag_p99_ms: None,
            progress: 0.0,
            day: None,
            in_flight: 0,
            sessions: 0,
            orders: 0,
            requests: 0,
            rates: Rates::default(),
            orders_per_sim_day: None,
            endpoints: EndpointRow::rows(&Snapshot::default()),
            counters: Counters::default(),
            breakers: Vec::new(),
            outage: OutageState::None,
            paused: false,
            stopping: false,
            last_reload: None,
            warnings: Vec::new(),
        }
    }
}

impl DashboardState {
    /// A state for a run that has not started simulating yet.
    pub fn new(
        run_id: impl Into<String>,
        persona_set: impl Into<String>,
        script_version: impl Into<String>,
        sim_start: DateTime<Utc>,
        sim_end: DateTime<Utc>,
        target_scale: TimeScale,
    ) -> Self {
        Self {
            run_id: run_id.into(),
            persona_set: persona_set.into(),
            script_version: script_version.into(),
            sim_start,
            sim_end,
            target_scale,
            ..Self::default()
        }
    }

    /// Takes the endpoint rows, the counters, the totals (sessions, orders, requests) and the
    /// whole-run lag percentile from a metrics snapshot.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) {
        let counter = |c: Counter| snap.counters.get(&c).copied().unwrap_or(0);
        self.endpoints = EndpointRow::rows(snap);
        self.counters = Counters::from_snapshot(snap);
        self.sessions = counter(Counter::SessionsStarted);
        self.orders = counter(Counter::Orders);
        self.requests = snap.requests();
        self.lag_p99_ms = (snap.lag.count > 0).then_some(snap.lag.p99_ms);
    }

    /// Keeps the last [`SHOWN_WARNINGS`] of `all` (given oldest first).
    pub fn set_warnings(&mut self, mut all: Vec<String>) {
        let drop = all.len().saturating_sub(SHOWN_WARNINGS);
        all.drain(..drop);
        self.warnings = all;
    }

    /// Records the result of a hot reload (an unchanged reload changes nothing), and follows the
    /// version now in use.
    pub fn apply_reload(&mut self, event: &ReloadEvent) {
        if let Some(status) = ReloadStatus::from_event(event) {
            if let ReloadStatus::Reloaded { version } = &status {
                self.script_version = version.clone();
            }
            self.last_reload = Some(status);
        }
    }

    /// Computes what follows from the figures already set: throughput and achieved scale (via
    /// `tracker`, from `wall_elapsed`, `sim_now` and the totals), whole-run progress, orders per
    /// simulated day and the expected wall time left. Call once per refresh, after the rest.
    pub fn refresh(&mut self, tracker: &mut RateTracker) {
        self.rates = tracker.push(Sample {
            wall: self.wall_elapsed,
            sim: self.sim_now,
            orders: self.orders,
            sessions: self.sessions,
            requests: self.requests,
        });
        self.achieved_scale = self.rates.achieved_scale;
        let span = (self.sim_end - self.sim_start).num_milliseconds() as f64;
        let done = self
            .sim_now
            .map(|now| (now - self.sim_start).num_milliseconds() as f64);
        let by_time = match done {
            Some(d) if span > 0.0 => clamp_ratio(d / span),
            _ => 0.0,
        };
        // A `max` run's simulated time is its last checkpoint, which can stay at a day's start
        // until the day's last sessions end: the share of the day's sessions that ended shows
        // the progress in between. (A paced run's simulated time is exact.)
        let by_sessions = match self.target_scale {
            TimeScale::Max => self
                .day
                .and_then(|d| progress_in_day(&d, self.sim_start, self.sim_end)),
            TimeScale::Scaled(_) => None,
        };
        self.progress = by_sessions.map_or(by_time, |p| p.max(by_time));
        const DAY_MS: f64 = 86_400_000.0;
        self.orders_per_sim_day = done
            .filter(|d| *d >= DAY_MS / 24.0) // under an hour the average means nothing yet
            .map(|d| self.orders as f64 / (d / DAY_MS));
        self.wall_remaining = self.estimate_remaining();
    }

    /// Wall time left: simulated time left at the recent achieved scale, or — without one —
    /// the whole run's average pace.
    fn estimate_remaining(&self) -> Option<Duration> {
        if self.paused {
            return None;
        }
        let now = self.sim_now?;
        let left_s = (self.sim_end - now).num_milliseconds() as f64 / 1000.0;
        if left_s <= 0.0 {
            return Some(Duration::ZERO);
        }
        let average = || self.wall_elapsed.as_secs_f64() * (1.0 - self.progress) / self.progress;
        let secs = match (self.target_scale, self.achieved_scale) {
            // `max` moves its simulated time in steps (checkpoints): the run's average pace
            // over its progress is steadier than the recent scale.
            (TimeScale::Max, _) if self.progress > 0.0 => average(),
            (_, Some(scale)) if scale > 0.0 => left_s / scale,
            _ if self.progress > 0.0 => average(),
            _ => return None,
        };
        Duration::try_from_secs_f64(secs).ok()
    }

    /// Errors of every kind (requests, database, scripts).
    pub fn errors(&self) -> u64 {
        self.counters.errors()
    }

    /// Endpoints whose breaker is not closed.
    pub fn tripped_breakers(&self) -> impl Iterator<Item = (Endpoint, BreakerState)> + '_ {
        self.breakers
            .iter()
            .copied()
            .filter(|(_, s)| *s != BreakerState::Closed)
    }
}

/// A ratio for a gauge: within 0..=1, and 0 for NaN (ratatui's gauges panic outside 0..=1).
pub(crate) fn clamp_ratio(r: f64) -> f64 {
    if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) }
}

/// Whole-run progress reached inside `day`: its start plus the share of its sessions that
/// ended, over the run's simulated span (`None` for a day without sessions).
fn progress_in_day(
    day: &DayCount,
    sim_start: DateTime<Utc>,
    sim_end: DateTime<Utc>,
) -> Option<f64> {
    let span = (sim_end - sim_start).num_milliseconds() as f64;
    if span <= 0.0 || day.total == 0 {
        return None;
    }
    let day_end = (day.start + chrono::Duration::days(1)).min(sim_end);
    let before = (day.start - sim_start).num_milliseconds() as f64;
    let inside = (day_end - day.start).num_milliseconds().max(0) as f64 * day.ratio();
    Some(clamp_ratio((before + inside) / span))
}

/// One endpoint's line in the latency table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointRow {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Latency percentiles (count, p50, p95, p99, max).
    pub latency: LatencySummary,
    /// Requests that ended in an error.
    pub errors: u64,
    /// Requests that ended in a business rejection.
    pub rejections: u64,
}

impl EndpointRow {
    /// One row per endpoint, in [`Endpoint::ALL`] order (endpoints without requests included).
    pub fn rows(snap: &Snapshot) -> Vec<EndpointRow> {
        Endpoint::ALL
            .into_iter()
            .map(|e| {
                let summary = snap.endpoints.get(&e);
                let sum = |keep: fn(Outcome) -> bool| -> u64 {
                    summary
                        .map(|s| {
                            s.outcomes
                                .iter()
                                .filter(|(o, _)| keep(**o))
                                .map(|(_, n)| n)
                                .sum()
                        })
                        .unwrap_or(0)
                };
                EndpointRow {
                    endpoint: e,
                    latency: summary.map(|s| s.latency).unwrap_or_default(),
                    errors: sum(Outcome::is_error),
                    rejections: sum(|o| !o.is_error() && o != Outcome::Ok),
                }
            })
            .collect()
    }
}

/// Errors and business outcomes, kept apart: a refused offer is an outcome, not an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Database errors (in-process actions, shopsim's own writes).
    pub db_errors: u64,
    /// 5xx answers from the API.
    pub api_5xx: u64,
    /// 429 Too Many Requests.
    pub rate_limited: u64,
    /// Other 4xx (client bugs, contract mismatches).
    pub other_4xx: u64,
    /// Requests without an answer in time.
    pub timeouts: u64,
    /// Connection failures and resets.
    pub connection_errors: u64,
    /// Behaviour script errors.
    pub script_errors: u64,
    /// Requests retried (not errors by themselves; shown for context).
    pub retries: u64,
    /// Business outcome: out of stock.
    pub out_of_stock: u64,
    /// Business outcome: offer refused.
    pub offer_refused: u64,
    /// Business outcome: other rejections (empty cart, no store selected).
    pub other_rejections: u64,
    /// Sessions that ended in an order.
    pub sessions_completed: u64,
    /// Sessions abandoned by the shopper.
    pub sessions_abandoned: u64,
    /// Sessions ended by a failed step.
    pub sessions_failed: u64,
}

impl Counters {
    /// The counters of a metrics snapshot.
    pub fn from_snapshot(snap: &Snapshot) -> Self {
        let o = |x: Outcome| snap.outcome_total(x);
        let c = |k: Counter| snap.counters.get(&k).copied().unwrap_or(0);
        Self {
            db_errors: o(Outcome::Db),
            api_5xx: o(Outcome::Api5xx),
            rate_limited: o(Outcome::RateLimited),
            other_4xx: o(Outcome::Other4xx),
            timeouts: o(Outcome::Timeout),
            connection_errors: o(Outcome::Connection),
            script_errors: c(Counter::ScriptErrors),
            retries: c(Counter::Retries),
            out_of_stock: o(Outcome::OutOfStock),
            offer_refused: o(Outcome::OfferRefused),
            other_rejections: o(Outcome::OtherRejection),
            sessions_completed: c(Counter::SessionsCompleted),
            sessions_abandoned: c(Counter::SessionsAbandoned),
            sessions_failed: c(Counter::SessionsFailed),
        }
    }

    /// Request errors (every error class of [`Outcome`]).
    pub fn request_errors(&self) -> u64 {
        self.db_errors
            + self.api_5xx
            + self.rate_limited
            + self.other_4xx
            + self.timeouts
            + self.connection_errors
    }

    /// All errors: request errors and script errors.
    pub fn errors(&self) -> u64 {
        self.request_errors() + self.script_errors
    }

    /// All business rejections.
    pub fn rejections(&self) -> u64 {
        self.out_of_stock + self.offer_refused + self.other_rejections
    }
}

/// Whether the shop can be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OutageState {
    /// No outage.
    #[default]
    None,
    /// The API does not answer at all.
    ApiDown {
        /// When it was detected (wall clock).
        since: DateTime<Utc>,
        /// What was observed.
        reason: String,
    },
    /// The database is unreachable (directly, or the API says so with a 503).
    DbDown {
        /// When it was detected (wall clock).
        since: DateTime<Utc>,
        /// What was observed.
        reason: String,
    },
}

impl OutageState {
    /// The outage of [`HttpActions::outage`](crate::sim::actions::HttpActions::outage). Its one
    /// gate serves both kinds: an API answering 503 `database_unavailable` is a database
    /// outage (the gate's reason then carries that code), anything else an API outage.
    pub fn from_http(info: Option<OutageInfo>) -> Self {
        match info {
            None => OutageState::None,
            Some(i) if i.reason.contains("database_unavailable") => OutageState::DbDown {
                since: i.since,
                reason: i.reason,
            },
            Some(i) => OutageState::ApiDown {
                since: i.since,
                reason: i.reason,
            },
        }
    }

    /// The outage of
    /// [`InProcessActions::outage`](crate::sim::actions::InProcessActions::outage): always the
    /// database.
    pub fn from_inprocess(info: Option<OutageInfo>) -> Self {
        match info {
            None => OutageState::None,
            Some(i) => OutageState::DbDown {
                since: i.since,
                reason: i.reason,
            },
        }
    }

    /// True during an outage.
    pub fn is_down(&self) -> bool {
        !matches!(self, OutageState::None)
    }

    /// "API down since 12:00:05 UTC", or `None` without an outage.
    pub fn headline(&self) -> Option<String> {
        let (what, since) = match self {
            OutageState::None => return None,
            OutageState::ApiDown { since, .. } => ("API", since),
            OutageState::DbDown { since, .. } => ("DB", since),
        };
        Some(format!(
            "{what} down since {} UTC",
            since.format("%H:%M:%S")
        ))
    }

    /// What was observed, or `None` without an outage.
    pub fn reason(&self) -> Option<&str> {
        match self {
            OutageState::None => None,
            OutageState::ApiDown { reason, .. } | OutageState::DbDown { reason, .. } => {
                Some(reason)
            }
        }
    }
}

/// The last hot reload of the persona set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadStatus {
    /// A new version is live.
    Reloaded {
        /// The new version.
        version: String,
    },
    /// The edit was rejected; the previous version keeps running.
    Failed {
        /// Why, with file:line:column.
        error: String,
        /// The version still in use.
        kept: String,
    },
}

impl ReloadStatus {
    /// The status a reload event leaves (`None` for an unchanged reload).
    pub fn from_event(event: &ReloadEvent) -> Option<Self> {
        match event {
            ReloadEvent::Reloaded { version } => Some(ReloadStatus::Reloaded {
                version: version.to_string(),
            }),
            ReloadEvent::Unchanged => None,
            ReloadEvent::Failed { error, kept } => Some(ReloadStatus::Failed {
                error: error.to_string(),
                kept: kept.to_string(),
            }),
        }
    }
}

/// Throughput over the recent window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Orders per wall minute.
    pub orders_per_min: f64,
    /// Sessions started per wall minute.
    pub sessions_per_min: f64,
    /// Requests per wall second.
    pub requests_per_sec: f64,
    /// Simulated seconds per wall second (`None` without two simulated times in the window).
    pub achieved_scale: Option<f64>,
}

/// One observation for a [`RateTracker`]: totals at a wall instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Wall time since the run started.
    pub wall: Duration,
    /// Simulated time then, if known.
    pub sim: Option<DateTime<Utc>>,
    /// Orders so far.
    pub orders: u64,
    /// Sessions started so far.
    pub sessions: u64,
    /// Requests so far.
    pub requests: u64,
}

/// Rates from successive totals over a sliding wall-clock window: steadier than the last
/// refresh alone (the `max` engine works in bursts of one simulated hour), and quicker to
/// follow a change than the whole-run average.
#[derive(Debug, Clone)]
pub struct RateTracker {
    window: Duration,
    samples: VecDeque<Sample>,
}

impl Default for RateTracker {
    /// A 30-second window.
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl RateTracker {
    /// A tracker averaging over `window` of wall time.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Adds a sample (wall times must not go backwards; an older one is ignored) and returns
    /// the rates between the oldest sample still in the window and this one.
    pub fn push(&mut self, sample: Sample) -> Rates {
        match self.samples.back_mut() {
            Some(last) if sample.wall < last.wall => return self.rates(),
            // Same instant: the newer figures win (a second refresh within one tick).
            Some(last) if sample.wall == last.wall => *last = sample,
            _ => self.samples.push_back(sample),
        }
        // Keep the newest sample at or before the window's start, so the span covers the
        // whole window once there is enough history.
        while self.samples.len() > 2 && self.samples[1].wall + self.window <= sample.wall {
            self.samples.pop_front();
        }
        self.rates()
    }

    /// The rates over the samples held.
    pub fn rates(&self) -> Rates {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return Rates::default();
        };
        let secs = last.wall.saturating_sub(first.wall).as_secs_f64();
        if secs <= 0.0 {
            return Rates::default();
        }
        // Totals only grow; saturate in case a caller resets them.
        let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        // From the oldest sample that knows the simulated time (the first ones may not).
        let achieved_scale = self
            .samples
            .iter()
            .find_map(|s| s.sim.map(|sim| (s.wall, sim)))
            .zip(last.sim)
            .and_then(|((wall, a), b)| {
                let secs = last.wall.saturating_sub(wall).as_secs_f64();
                (b >= a && secs > 0.0).then(|| (b - a).num_milliseconds() as f64 / 1000.0 / secs)
            });
        Rates {
            orders_per_min: per_sec(first.orders, last.orders) * 60.0,
            sessions_per_min: per_sec(first.sessions, last.sessions) * 60.0,
            requests_per_sec: per_sec(first.requests, last.requests),
            achieved_scale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::metrics::Metrics;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, h, 0, 0).unwrap()
    }

    fn sample(wall_s: u64, sim_h: u32, orders: u64) -> Sample {
        Sample {
            wall: Duration::from_secs(wall_s),
            sim: Some(at(sim_h)),
            orders,
            sessions: orders * 2,
            requests: orders * 10,
        }
    }

    #[test]
    fn rate_tracker_averages_over_its_window() {
        let mut t = RateTracker::new(Duration::from_secs(10));
        assert_eq!(
            t.push(sample(0, 0, 0)),
            Rates::default(),
            "one sample: no rate"
        );
        let r = t.push(sample(5, 1, 10)); // 10 orders in 5 s
        assert!((r.orders_per_min - 120.0).abs() < 1e-9, "{r:?}");
        assert!((r.sessions_per_min - 240.0).abs() < 1e-9);
        assert!((r.requests_per_sec - 20.0).abs() < 1e-9);
        assert_eq!(r.achieved_scale, Some(720.0)); // 1 sim hour in 5 s
        // Later samples slide the window: only the last 10 s count.
        t.push(sample(10, 2, 20));
        t.push(sample(15, 3, 20));
        let r = t.push(sample(20, 4, 20)); // nothing since 10 s
        assert_eq!(r.orders_per_min, 0.0, "{r:?}");
        assert_eq!(r.achieved_scale, Some(720.0));
        // A sample from the past is ignored.
        assert_eq!(t.push(sample(1, 0, 0)), r);
        // Without two simulated times there is no achieved scale; it starts with the first one.
        let mut t = RateTracker::default();
        t.push(Sample {
            sim: None,
            ..sample(0, 0, 0)
        });
        assert_eq!(t.push(sample(1, 0, 1)).achieved_scale, None);
        assert_eq!(t.push(sample(3, 1, 2)).achieved_scale, Some(1800.0));
        // Two samples at one instant: the later replaces the earlier.
        let mut t = RateTracker::default();
        t.push(sample(0, 0, 0));
        t.push(sample(2, 0, 5));
        let r = t.push(sample(2, 0, 10));
        assert!((r.orders_per_min - 300.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn rate_tracker_survives_a_counter_reset_and_a_paused_clock() {
        let mut t = RateTracker::new(Duration::from_secs(60));
        t.push(sample(0, 5, 100));
        let r = t.push(sample(10, 5, 50));
        assert_eq!(r.orders_per_min, 0.0);
        assert_eq!(
            r.achieved_scale,
            Some(0.0),
            "paused: no simulated time passes"
        );
    }

    #[test]
    fn snapshot_fills_rows_and_counters_apart() {
        let m = Metrics::new();
        m.record_request(Endpoint::Checkout, Duration::from_millis(20), Outcome::Ok);
        m.record_request(
            Endpoint::AddToCart,
            Duration::from_millis(5),
            Outcome::OutOfStock,
        );
        m.record_request(
            Endpoint::AddToCart,
            Duration::from_millis(7),
            Outcome::Api5xx,
        );
        m.record_request(Endpoint::Wallet, Duration::from_millis(3), Outcome::Timeout);
        m.add(Counter::Orders, 1);
        m.add(Counter::SessionsStarted, 3);
        m.add(Counter::ScriptErrors, 1);
        let mut s = DashboardState::default();
        s.apply_snapshot(&m.snapshot());
        assert_eq!(s.endpoints.len(), Endpoint::ALL.len());
        let add = s
            .endpoints
            .iter()
            .find(|r| r.endpoint == Endpoint::AddToCart)
            .unwrap();
        assert_eq!((add.latency.count, add.errors, add.rejections), (2, 1, 1));
        assert_eq!(s.counters.api_5xx, 1);
        assert_eq!(s.counters.timeouts, 1);
        assert_eq!(s.counters.out_of_stock, 1);
        assert_eq!(s.counters.script_errors, 1);
        assert_eq!(s.counters.request_errors(), 2);
        assert_eq!(s.errors(), 3, "out of stock is not an error");
        assert_eq!((s.orders, s.sessions, s.requests), (1, 3, 4));
        assert_eq!(s.lag_p99_ms, None, "no lag recorded in max mode");
    }

    /// A run of four simulated days from `at(0)`.
    fn four_days(scale: TimeScale) -> DashboardState {
        DashboardState::new(
            "r",
            "grocery",
            "v1",
            at(0),
            at(0) + chrono::Duration::days(4),
            scale,
        )
    }

    #[test]
    fn refresh_derives_progress_remaining_and_daily_orders() {
        let mut s = four_days(TimeScale::Scaled(3600.0));
        let mut t = RateTracker::default();
        s.refresh(&mut t);
        assert_eq!((s.progress, s.wall_remaining), (0.0, None));
        // Paced: the simulated time is the progress, whatever share of sessions ended.
        s.day = Some(DayCount {
            date: at(0).date_naive(),
            start: at(0),
            done: 9,
            total: 10,
        });
        s.sim_now = Some(at(0));
        s.refresh(&mut t);
        assert_eq!(s.progress, 0.0);
        s.sim_now = Some(at(0) + chrono::Duration::days(1));
        s.wall_elapsed = Duration::from_secs(24);
        s.orders = 500;
        s.refresh(&mut t);
        assert!((s.progress - 0.25).abs() < 1e-9);
        assert_eq!(s.achieved_scale, Some(3600.0));
        assert_eq!(s.wall_remaining, Some(Duration::from_secs(72)));
        assert_eq!(s.orders_per_sim_day, Some(500.0));
        s.paused = true;
        s.refresh(&mut t);
        assert_eq!(s.wall_remaining, None, "unknown while paused");
    }

    #[test]
    fn a_max_run_shows_progress_inside_a_day() {
        let mut s = four_days(TimeScale::Max);
        let mut t = RateTracker::default();
        // The first of four days is under way; nothing is checkpointed yet.
        s.sim_now = Some(at(0));
        s.day = Some(DayCount {
            date: at(0).date_naive(),
            start: at(0),
            done: 250,
            total: 1000,
        });
        s.wall_elapsed = Duration::from_secs(60);
        s.refresh(&mut t);
        assert!((s.progress - 0.0625).abs() < 1e-9, "{}", s.progress);
        assert_eq!(s.wall_remaining, Some(Duration::from_secs(900)));
        // A checkpoint further on than the sessions' share counts.
        s.sim_now = Some(at(12));
        s.refresh(&mut t);
        assert!((s.progress - 0.125).abs() < 1e-9, "{}", s.progress);
        // The second day: a day of progress before it, plus half of its sessions.
        let day2 = at(0) + chrono::Duration::days(1);
        s.day = Some(DayCount {
            date: day2.date_naive(),
            start: day2,
            done: 500,
            total: 1000,
        });
        s.sim_now = Some(day2);
        s.refresh(&mut t);
        assert!((s.progress - 0.375).abs() < 1e-9, "{}", s.progress);
        assert_eq!(s.day.map(|d| d.ratio()), Some(0.5));
    }

    #[test]
    fn outages_warnings_and_reloads() {
        let since = at(12);
        let api = OutageState::from_http(Some(OutageInfo {
            since,
            reason: "error sending request: connection refused".into(),
        }));
        assert_eq!(api.headline().unwrap(), "API down since 12:00:00 UTC");
        let db = OutageState::from_http(Some(OutageInfo {
            since,
            reason: "checkout answered 503 Service Unavailable database_unavailable: down".into(),
        }));
        assert!(matches!(db, OutageState::DbDown { .. }));
        assert!(OutageState::from_inprocess(None) == OutageState::None);
        let mut s = DashboardState::default();
        s.set_warnings((0..8).map(|i| format!("w{i}")).collect());
        assert_eq!(s.warnings, ["w3", "w4", "w5", "w6", "w7"]);
        s.apply_reload(&ReloadEvent::Reloaded {
            version: "v2".into(),
        });
        assert_eq!(s.script_version, "v2");
        s.apply_reload(&ReloadEvent::Unchanged);
        assert_eq!(
            s.last_reload,
            Some(ReloadStatus::Reloaded {
                version: "v2".into()
            })
        );
        assert_eq!(clamp_ratio(f64::NAN), 0.0);
        assert_eq!(clamp_ratio(3.0), 1.0);
    }
}
