//! A circuit breaker per endpoint: closed → open → half-open → closed.
//!
//! *Closed*: requests pass; the breaker opens after `consecutive_failures` failures in a row, or
//! when the failure rate of the current window reaches `failure_rate` (with at least
//! `min_requests` requests in it). *Open*: for `cooldown`, requests **wait** at the breaker
//! instead of failing fast — a load test should not lose sessions to a brief server hiccup — but
//! no longer than `max_wait`, after which the step fails with "circuit open". *Half-open*: one
//! probe request passes, the others keep waiting; its success closes the breaker (and wakes
//! everyone), its failure re-opens it for another cooldown. A probe that ends without a verdict
//! (429, outage, cancelled) hands the probe slot to the next waiter.
//!
//! Unlike the original simulation's breaker, this one always closes again once the endpoint
//! answers.

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::BreakerConfig;
use crate::sim::metrics::Endpoint;

/// The observable state of a breaker (for the dashboard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests wait for the cooldown to end.
    Open,
    /// One probe is (or may be) in flight; the others wait for its verdict.
    HalfOpen,
}

impl BreakerState {
    /// Name for logs and the dashboard.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// What a finished request tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feedback {
    /// The endpoint answered properly (2xx, a rejection, another 4xx).
    Success,
    /// The endpoint failed (5xx, timeout, connection reset).
    Failure,
    /// No verdict (429, 409 in flight, outage).
    Neutral,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct State {
    mode: Mode,
    consecutive: u32,
    window_start: Instant,
    window_requests: u32,
    window_failures: u32,
}

/// Why [`Breaker::acquire`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// The breaker stayed open past the deadline.
    TimedOut,
    /// The run is shutting down.
    Cancelled,
}

/// One endpoint's breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    endpoint: Endpoint,
    config: BreakerConfig,
    state: Mutex<State>,
    changed: Notify,
}

/// Leave to send one request; report its result with [`Permit::record`].
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

impl Permit<'_> {
    /// Reports the request's result.
    pub fn record(mut self, feedback: Feedback) {
        self.done = true;
        self.breaker.record(self.probe, feedback);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Dropped mid-request (cancelled future): no verdict.
            self.breaker.record(self.probe, Feedback::Neutral);
        }
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new(endpoint: Endpoint, config: BreakerConfig) -> Self {
        Self {
            endpoint,
            config,
            state: Mutex::new(State {
                mode: Mode::Closed,
                consecutive: 0,
                window_start: Instant::now(),
                window_requests: 0,
                window_failures: 0,
            }),
            changed: Notify::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.state.lock().mode {
            Mode::Closed => BreakerState::Closed,
            Mode::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            Mode::Open { .. } => BreakerState::Open,
            Mode::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Waits until a request may be sent (at most until `deadline`).
    pub async fn acquire(
        &self,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Permit<'_>, Blocked> {
        loop {
            // Registered before the state is read, so no state change can be missed.
            let changed = self.changed.notified();
            let wake_at = {
                let mut s = self.state.lock();
                let now = Instant::now();
                match s.mode {
                    Mode::Closed => return Ok(self.permit(false)),
                    Mode::Open { until } if now >= until => {
                        s.mode = Mode::HalfOpen { probing: true };
                        tracing::info!(
                            endpoint = self.endpoint.name(),
                            "circuit half-open: probing"
                        );
                        return Ok(self.permit(true));
                    }
                    Mode::HalfOpen { probing: false } => {
                        s.mode = Mode::HalfOpen { probing: true };
                        return Ok(self.permit(true));
                    }
                    Mode::Open { until } => until,
                    // Woken by the probe's verdict; the cooldown is only a safety net.
                    Mode::HalfOpen { probing: true } => now + self.config.cooldown,
                }
            };
            if Instant::now() >= deadline {
                return Err(Blocked::TimedOut);
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(wake_at.min(deadline)) => {}
                _ = cancel.cancelled() => return Err(Blocked::Cancelled),
            }
        }
    }

    fn permit(&self, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            probe,
            done: false,
        }
    }

    fn record(&self, probe: bool, feedback: Feedback) {
        let mut s = self.state.lock();
        let now = Instant::now();
        if now.duration_since(s.window_start) >= self.config.window {
            s.window_start = now;
            s.window_requests = 0;
            s.window_failures = 0;
        }
        match feedback {
            Feedback::Success => {
                s.consecutive = 0;
                s.window_requests += 1;
                if !matches!(s.mode, Mode::Closed) {
                    s.mode = Mode::Closed;
                    s.window_start = now;
                    s.window_requests = 0;
                    s.window_failures = 0;
                    tracing::info!(endpoint = self.endpoint.name(), "circuit closed");
                    self.changed.notify_waiters();
                }
            }
            Feedback::Failure => {
                if probe {
                    s.mode = Mode::Open {
                        until: now + self.config.cooldown,
                    };
                    tracing::warn!(
                        endpoint = self.endpoint.name(),
                        "circuit re-opened: probe failed"
                    );
                    self.changed.notify_waiters();
                    return;
                }
                if !matches!(s.mode, Mode::Closed) {
                    // A request that was in flight when the breaker opened: already counted.
                    return;
                }
                s.consecutive += 1;
                s.window_requests += 1;
                s.window_failures += 1;
                let rate = f64::from(s.window_failures) / f64::from(s.window_requests);
                let by_rate = s.window_requests >= self.config.min_requests
                    && rate >= self.config.failure_rate;
                if s.consecutive >= self.config.consecutive_failures || by_rate {
                    s.mode = Mode::Open {
                        until: now + self.config.cooldown,
                    };
                    tracing::warn!(
                        endpoint = self.endpoint.name(),
                        consecutive = s.consecutive,
                        window_failure_rate = rate,
                        cooldown = ?self.config.cooldown,
                        "circuit opened"
                    );
                }
            }
            Feedback::Neutral => {
                if probe && matches!(s.mode, Mode::HalfOpen { probing: true }) {
                    s.mode = Mode::HalfOpen { probing: false };
                    self.changed.notify_waiters();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            Endpoint::Checkout,
            BreakerConfig {
                consecutive_failures: 3,
                window: Duration::from_secs(10),
                min_requests: 10,
                failure_rate: 0.5,
                cooldown: Duration::from_secs(5),
                max_wait: Duration::from_secs(60),
            },
        )
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test(start_paused = true)]
    async fn opens_half_opens_and_closes_again() {
        let b = breaker();
        let cancel = CancellationToken::new();
        for _ in 0..3 {
            b.acquire(far(), &cancel)
                .await
                .unwrap()
                .record(Feedback::Failure);
        }
        assert_eq!(b.state(), BreakerState::Open);
        // A waiter with a short deadline gives up.
        let soon = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            b.acquire(soon, &cancel).await.unwrap_err(),
            Blocked::TimedOut
        );
        // After the cooldown one probe passes; its failure re-opens the breaker.
        let p = b.acquire(far(), &cancel).await.unwrap();
        assert!(p.probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        p.record(Feedback::Failure);
        assert_eq!(b.state(), BreakerState::Open);
        // The next probe succeeds: closed again, and requests pass without waiting.
        let start = Instant::now();
        let p = b.acquire(far(), &cancel).await.unwrap();
        assert!(Instant::now() - start >= Duration::from_secs(4));
        p.record(Feedback::Success);
        assert_eq!(b.state(), BreakerState::Closed);
        let p = b.acquire(far(), &cancel).await.unwrap();
        assert!(!p.probe);
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_at_a_time_and_waiters_follow_its_verdict() {
        let b = std::sync::Arc::new(breaker());
        let cancel = CancellationToken::new();
        for _ in 0..3 {
            b.acquire(far(), &cancel)
                .await
                .unwrap()
                .record(Feedback::Failure);
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        let probe = b.acquire(far(), &cancel).await.unwrap();
        let b2 = b.clone();
        let c2 = cancel.clone();
        let waiter = tokio::spawn(async move {
            let p = b2.acquire(far(), &c2).await.unwrap();
            p.probe
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished());
        // No verdict: the waiter becomes the probe.
        drop(probe);
        assert!(waiter.await.unwrap());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // Cancellation ends a wait (a probe is in flight, so the next caller waits).
        let _probe = b.acquire(far(), &cancel).await.unwrap();
        cancel.cancel();
        assert_eq!(
            b.acquire(far(), &cancel).await.unwrap_err(),
            Blocked::Cancelled
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_opens_without_consecutive_failures() {
        let b = breaker();
        let cancel = CancellationToken::new();
        for i in 0..10 {
            let fb = if i % 2 == 1 {
                Feedback::Failure
            } else {
                Feedback::Success
            };
            b.acquire(far(), &cancel).await.unwrap().record(fb);
        }
        assert_eq!(b.state(), BreakerState::Open);
        // Neutral answers never open it.
        let b = breaker();
        for _ in 0..20 {
            b.acquire(far(), &cancel)
                .await
                .unwrap()
                .record(Feedback::Neutral);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
