//! The run's Prometheus endpoint (`shopsim run --metrics-addr HOST:PORT`): `GET /metrics` in
//! the OpenMetrics text format, which Prometheus scrapes.
//!
//! Nothing is counted twice: every scrape reads the run's own [`Metrics`] (request counters
//! and HDR latency histograms, business counters) and the monitor's latest figures (simulated
//! time, lag, sessions in flight, breakers, outage), so `/metrics`, the dashboard and the
//! summary agree. Counters count this process's work: a resumed run starts them at zero, as
//! any restarted Prometheus target does.
//!
//! The reference server's own `/metrics` (its requests by route and status) is a different
//! registry on the server's port; in the embedded default the two stay apart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::dashboard::{DashboardState, OutageState};
use crate::sim::actions::BreakerState;
use crate::sim::clock::TimeScale;
use crate::sim::metrics::{Counter, Endpoint, Metrics, Outcome};

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the latency histograms' buckets; `+Inf` follows.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The endpoint cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// The address cannot be listened on.
    #[error(
        "--metrics-addr {addr}: cannot listen ({source}); pick a free port, e.g. 127.0.0.1:9464, or leave the option out"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Binds the endpoint's address early, so a taken port fails before the run starts.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ExporterError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ExporterError::Bind { addr, source })
}

/// What a scrape reads.
pub struct Source {
    /// The run.
    pub run_id: String,
    /// This process's shard of the run (`0/1` unsharded).
    pub shard: String,
    /// The run's persona set.
    pub persona_set: String,
    /// The run's counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The monitor's latest figures.
    pub state: watch::Receiver<DashboardState>,
}

/// The running endpoint.
#[derive(Debug)]
pub struct MetricsEndpoint {
    addr: SocketAddr,
    ended: Arc<AtomicBool>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Serves `/metrics` from `source` on `listener` until [`MetricsEndpoint::shutdown`].
    pub fn serve(listener: TcpListener, source: Source) -> Result<Self, ExporterError> {
        let addr = listener
            .local_addr()
            .map_err(|source| ExporterError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
        let ended = Arc::new(AtomicBool::new(false));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(RunCollector {
            source,
            ended: ended.clone(),
        }));
        let registry = Arc::new(registry);
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { scrape(&registry) }
            }),
        );
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the /metrics endpoint stopped");
            }
        });
        tracing::info!(url = %format!("http://{addr}/metrics"), "Prometheus endpoint up");
        Ok(MetricsEndpoint {
            addr,
            ended,
            stop,
            task,
        })
    }

    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Marks the run ended (`shopsim_run_ended 1`): the figures are final.
    pub fn mark_ended(&self) {
        self.ended.store(true, Ordering::Relaxed);
    }

    /// Stops serving.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn scrape(registry: &Registry) -> axum::response::Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the metrics failed: {e}"),
        )
            .into_response(),
    }
}

struct RunCollector {
    source: Source,
    ended: Arc<AtomicBool>,
}

impl std::fmt::Debug for RunCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCollector")
            .field("run_id", &self.source.run_id)
            .finish()
    }
}

/// One metric with its help and type, then its samples.
fn family<'a>(
    enc: &'a mut DescriptorEncoder<'_>,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> Result<prometheus_client::encoding::MetricEncoder<'a>, std::fmt::Error> {
    enc.encode_descriptor(name, help, None, kind)
}

fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(family(enc, name, help, MetricType::Counter)?)
}

fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(family(enc, name, help, MetricType::Gauge)?)
}

/// Non-cumulative bucket counts of a histogram of microseconds, the sum in seconds and the
/// count, as the encoder wants them (`f64::MAX` is `+Inf`).
fn buckets(h: &Histogram<u64>) -> (f64, u64, Vec<(f64, u64)>) {
    let mut counts = vec![0u64; LATENCY_BUCKETS.len() + 1];
    let mut sum = 0.0;
    for v in h.iter_recorded() {
        let secs = h.highest_equivalent(v.value_iterated_to()) as f64 / 1e6;
        let n = v.count_at_value();
        sum += secs * n as f64;
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        counts[i] += n;
    }
    let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::MAX]);
    (sum, h.len(), bounds.zip(counts).collect())
}

/// Errors, rejections or successes: the status class of an outcome.
fn class(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "success",
        Outcome::OutOfStock | Outcome::OfferRefused | Outcome::OtherRejection => "rejection",
        _ => "error",
    }
}

impl Collector for RunCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let m = &self.source.metrics;
        let state = self.source.state.borrow().clone();

        {
            let mut f = family(
                &mut enc,
                "shopsim_run_info",
                "The run (value 1).",
                MetricType::Gauge,
            )?;
            let labels = [
                ("run_id", self.source.run_id.as_str()),
                ("shard", self.source.shard.as_str()),
                ("persona_set", self.source.persona_set.as_str()),
                ("script_version", state.script_version.as_str()),
            ];
            ConstGauge::new(1i64).encode(f.encode_family(&labels)?)?;
        }
        gauge(
            &mut enc,
            "shopsim_run_ended",
            "1 once the run has ended and these figures are final.",
            if self.ended.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        )?;

        // Requests by endpoint and outcome, with the outcome's class.
        {
            let mut f = family(
                &mut enc,
                "shopsim_requests",
                "Requests (remote actions) by endpoint, outcome and class (success, rejection: a business outcome, error).",
                MetricType::Counter,
            )?;
            for e in Endpoint::ALL {
                for o in Outcome::ALL {
                    let n = m.outcome_count(e, o);
                    if n == 0 {
                        continue;
                    }
                    let labels = [
                        ("endpoint", e.name()),
                        ("outcome", o.name()),
                        ("class", class(o)),
                    ];
                    ConstCounter::new(n).encode(f.encode_family(&labels)?)?;
                }
            }
        }
        // Latency per endpoint (from the scheduled send time in paced mode).
        {
            let mut f = family(
                &mut enc,
                "shopsim_request_duration_seconds",
                "Request latency by endpoint (from the scheduled send time in paced mode, so queueing shows).",
                MetricType::Histogram,
            )?;
            for e in Endpoint::ALL {
                let h = m.latency_histogram(e);
                if h.is_empty() {
                    continue;
                }
                let (sum, count, b) = buckets(&h);
                f.encode_family(&[("endpoint", e.name())])?
                    .encode_histogram::<NoLabelSet>(sum, count, &b, None)?;
            }
        }
        {
            let h = m.lag_histogram();
            let (sum, count, b) = buckets(&h);
            family(
                &mut enc,
                "shopsim_release_lag_seconds",
                "How late simulated events were released after their wall-clock moment (paced mode).",
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum, count, &b, None)?;
        }

        for (c, help) in [
            (Counter::AgentDays, "Agent-days decided."),
            (Counter::SessionsStarted, "Shopping sessions started."),
            (
                Counter::SessionsCompleted,
                "Sessions that ended in an order.",
            ),
            (Counter::SessionsAbandoned, "Sessions abandoned."),
            (Counter::SessionsFailed, "Sessions ended by a failed step."),
            (Counter::Orders, "Orders placed."),
            (
                Counter::RevenueCents,
                "Revenue in cents (final order totals).",
            ),
            (Counter::OffersAssigned, "Offers assigned by refreshes."),
            (Counter::OffersApplied, "Offers applied to carts."),
            (Counter::Events, "Session events written."),
            (Counter::Retries, "Requests retried."),
            (Counter::ScriptErrors, "Behaviour script errors."),
        ] {
            counter(&mut enc, &format!("shopsim_{}", c.name()), help, m.get(c))?;
        }

        if let Some(t) = state.sim_now {
            gauge(
                &mut enc,
                "shopsim_sim_time_seconds",
                "The simulated time reached (Unix seconds).",
                t.timestamp() as f64,
            )?;
        }
        gauge(
            &mut enc,
            "shopsim_progress_ratio",
            "Share of the run's simulated span done (0 to 1).",
            state.progress,
        )?;
        if let Some(lag) = state.lag_ms {
            gauge(
                &mut enc,
                "shopsim_lag_seconds",
                "Current release lag behind the paced clock.",
                lag / 1000.0,
            )?;
        }
        if let TimeScale::Scaled(x) = state.target_scale {
            gauge(
                &mut enc,
                "shopsim_time_scale_target",
                "Target simulated seconds per wall second (absent in `max` mode).",
                x,
            )?;
        }
        if let Some(x) = state.achieved_scale {
            gauge(
                &mut enc,
                "shopsim_time_scale_achieved",
                "Achieved simulated seconds per wall second.",
                x,
            )?;
        }
        gauge(
            &mut enc,
            "shopsim_sessions_in_flight",
            "Sessions running now.",
            state.in_flight as f64,
        )?;
        if let Some(day) = state.day {
            gauge(
                &mut enc,
                "shopsim_day_sessions_planned",
                "Sessions the current simulated day planned.",
                day.total as f64,
            )?;
            gauge(
                &mut enc,
                "shopsim_day_sessions_ended",
                "Sessions of the current simulated day that ended.",
                day.done as f64,
            )?;
        }
        gauge(
            &mut enc,
            "shopsim_paused",
            "1 while the simulated clock is paused.",
            if state.paused { 1.0 } else { 0.0 },
        )?;
        gauge(
            &mut enc,
            "shopsim_outage",
            "1 while the API or the database is unreachable and the work that needs it waits.",
            if matches!(state.outage, OutageState::None) {
                0.0
            } else {
                1.0
            },
        )?;
        {
            let mut f = family(
                &mut enc,
                "shopsim_breaker_open",
                "Circuit breaker per endpoint: 0 closed, 0.5 half-open, 1 open.",
                MetricType::Gauge,
            )?;
            for (e, b) in &state.breakers {
                let v = match b {
                    BreakerState::Closed => 0.0,
                    BreakerState::HalfOpen => 0.5,
                    BreakerState::Open => 1.0,
                };
                ConstGauge::new(v).encode(f.encode_family(&[("endpoint", e.name())])?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_count_every_sample_once_and_sum_in_seconds() {
        let m = Metrics::new();
        for ms in [1u64, 3, 40, 40, 900, 20_000] {
            m.record_request(Endpoint::Checkout, Duration::from_millis(ms), Outcome::Ok);
        }
        let (sum, count, b) = buckets(&m.latency_histogram(Endpoint::Checkout));
        assert_eq!(count, 6);
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 6);
        assert!((sum - 20.984).abs() < 0.05, "sum {sum}");
        let at = |le: f64| b.iter().find(|(u, _)| *u == le).map(|(_, n)| *n);
        assert_eq!(at(0.001), Some(1));
        assert_eq!(at(0.005), Some(1));
        assert_eq!(at(0.05), Some(2));
        assert_eq!(at(1.0), Some(1));
        assert_eq!(at(30.0), Some(1));
        assert_eq!(b.last().map(|(u, _)| *u), Some(f64::MAX));
    }
}
