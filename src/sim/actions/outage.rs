//! The outage gate: when the API or the database cannot be reached at all, every request waits
//! here instead of failing, one background task probes with backoff, and the gate reopens when
//! a probe answers. Outages spend no retry budget and fail no session; their start and end are
//! logged once each. An outage longer than the configured limit stops the run (cancels it and
//! says why in [`OutageGate::gave_up`]); the run resumes later from its records.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::OutageConfig;

/// An ongoing outage (for the dashboard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutageInfo {
    /// When it was detected (wall clock).
    pub since: DateTime<Utc>,
    /// What was observed (e.g. "connection refused").
    pub reason: String,
}

/// A probe: resolves to true when the service answers again.
pub(crate) type Probe = Box<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// The gate shared by all sessions of one actions implementation.
#[derive(Debug)]
pub(crate) struct OutageGate {
    what: &'static str,
    config: OutageConfig,
    info: Mutex<Option<OutageInfo>>,
    open: watch::Sender<bool>,
    cancel: CancellationToken,
    gave_up: Mutex<Option<String>>,
}

impl OutageGate {
    /// An open gate; `what` names the service in logs ("API", "database").
    pub fn new(what: &'static str, config: OutageConfig, cancel: CancellationToken) -> Self {
        Self {
            what,
            config,
            info: Mutex::new(None),
            open: watch::Sender::new(true),
            cancel,
            gave_up: Mutex::new(None),
        }
    }

    /// Why the gate stopped the run, when an outage outlasted the limit.
    pub fn gave_up(&self) -> Option<String> {
        self.gave_up.lock().clone()
    }

    /// The ongoing outage, if any.
    pub fn current(&self) -> Option<OutageInfo> {
        self.info.lock().clone()
    }

    /// Closes the gate (unless it is already closed) and starts probing with `probe`.
    pub fn report(self: &Arc<Self>, reason: String, probe: Probe) {
        {
            let mut info = self.info.lock();
            if info.is_some() {
                return;
            }
            tracing::warn!(service = self.what, reason = %reason, "outage: the {} is unreachable; pausing requests until it answers", self.what);
            *info = Some(OutageInfo {
                since: Utc::now(),
                reason,
            });
            self.open.send_replace(false);
        }
        let gate = self.clone();
        tokio::spawn(async move { gate.probe_until_back(probe).await });
    }

    async fn probe_until_back(&self, probe: Probe) {
        let started = tokio::time::Instant::now();
        let mut delay = self.config.probe_initial;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                // Waiters see the cancellation themselves; nothing left to probe for.
                _ = self.cancel.cancelled() => return,
            }
            if probe().await {
                break;
            }
            if let Some(max) = self.config.max
                && started.elapsed() >= max
            {
                let reason = self.current().map(|i| i.reason).unwrap_or_default();
                let why = format!(
                    "the {} has been unreachable for {} (longer than --max-outage {}; last error: {reason})",
                    self.what,
                    humantime::format_duration(Duration::from_secs(started.elapsed().as_secs())),
                    humantime::format_duration(max)
                );
                tracing::error!("{why}; stopping the run");
                *self.gave_up.lock() = Some(why);
                self.cancel.cancel();
                return;
            }
            delay = (delay * 2).min(self.config.probe_max);
        }
        let mut info = self.info.lock();
        *info = None;
        self.open.send_replace(true);
        tracing::info!(service = self.what, after = ?started.elapsed(), "outage over: the {} answers again; resuming", self.what);
    }

    /// Waits until the gate is open; `Err(())` when the run is cancelled first.
    pub async fn wait_open(&self, cancel: &CancellationToken) -> Result<(), ()> {
        let mut rx = self.open.subscribe();
        if *rx.borrow_and_update() {
            return Ok(());
        }
        tokio::select! {
            r = rx.wait_for(|open| *open) => r.map(|_| ()).map_err(|_| ()),
            _ = cancel.cancelled() => Err(()),
        }
    }
}

/// Sleeps `d`, or returns false early when `cancel` fires.
pub(crate) async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gate_closes_probes_with_backoff_and_reopens() {
        let cancel = CancellationToken::new();
        let gate = Arc::new(OutageGate::new(
            "API",
            OutageConfig::default(),
            cancel.clone(),
        ));
        assert!(gate.wait_open(&cancel).await.is_ok());
        let probes = Arc::new(AtomicU32::new(0));
        let p = probes.clone();
        let probe: Probe = Box::new(move || {
            let n = p.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move { n >= 4 })
        });
        gate.report("connection refused".into(), probe);
        // A second report during the outage changes nothing.
        gate.report("again".into(), Box::new(|| Box::pin(async { true })));
        assert_eq!(gate.current().unwrap().reason, "connection refused");
        let start = tokio::time::Instant::now();
        gate.wait_open(&cancel).await.unwrap();
        // 100 + 200 + 400 + 800 ms of backoff before the fourth probe.
        assert!(start.elapsed() >= Duration::from_millis(1500));
        assert_eq!(probes.load(Ordering::SeqCst), 4);
        assert!(gate.current().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_longer_than_the_limit_stops_the_run() {
        let cancel = CancellationToken::new();
        let gate = Arc::new(OutageGate::new(
            "API",
            OutageConfig {
                max: Some(Duration::from_secs(60)),
                ..OutageConfig::default()
            },
            cancel.clone(),
        ));
        gate.report(
            "connection refused".into(),
            Box::new(|| Box::pin(async { false })),
        );
        tokio::time::sleep(Duration::from_secs(50)).await;
        assert!(!cancel.is_cancelled() && gate.gave_up().is_none());
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(cancel.is_cancelled());
        let why = gate.gave_up().unwrap();
        assert!(
            why.contains("the API has been unreachable for 1m")
                && why.contains("--max-outage 1m")
                && why.contains("connection refused"),
            "{why}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_the_wait() {
        let cancel = CancellationToken::new();
        let gate = Arc::new(OutageGate::new(
            "API",
            OutageConfig::default(),
            cancel.clone(),
        ));
        gate.report("down".into(), Box::new(|| Box::pin(async { false })));
        let g = gate.clone();
        let c = cancel.clone();
        let waiter = tokio::spawn(async move { g.wait_open(&c).await });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!waiter.is_finished());
        cancel.cancel();
        assert!(waiter.await.unwrap().is_err());
        assert!(gate.current().is_some());
    }
}
