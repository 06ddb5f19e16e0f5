//! Watching a run: a task that copies the run's figures into a [`DashboardState`] a few times
//! a second (never on the agents' path), and shows them — the live terminal dashboard, or a
//! status line on stderr every few seconds — and that carries out the dashboard's keys: stop,
//! pause and resume the paced clock, change the time scale (the change becomes a segment of the
//! clock the run records at its next checkpoint).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::behavior::reload::LiveSet;
use crate::dashboard::{Command, DashboardState, OutageState, RateTracker};
use crate::sim::actions::Actions;
use crate::sim::clock::{PacedClock, TimeScale};
use crate::sim::metrics::{Counter, Metrics};
use crate::sim::thresholds::{self, Threshold};

/// How often the state is refreshed.
const TICK: Duration = Duration::from_millis(250);
/// How often the status line is printed without a dashboard.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// Factor of one `+` or `-` on the time scale.
const SCALE_STEP: f64 = 2.0;

/// What the monitor reads.
pub struct Watched {
    /// The run.
    pub run_id: String,
    /// The persona set (its current version is read on every tick).
    pub live: Arc<LiveSet>,
    /// The run's metrics.
    pub metrics: Arc<Metrics>,
    /// The actions (breakers, outage).
    pub actions: Arc<dyn Actions>,
    /// The simulated time of the last checkpoint (`max` mode's clock).
    pub checkpoint: Arc<Mutex<Option<DateTime<Utc>>>>,
    /// The paced clock, if any.
    pub pacer: Option<PacedClock>,
    /// The run's simulated span.
    pub sim_start: DateTime<Utc>,
    /// Its end.
    pub sim_end: DateTime<Utc>,
    /// The target time scale.
    pub target: TimeScale,
    /// Stops the run.
    pub cancel: CancellationToken,
    /// Thresholds that stop the run as soon as one is crossed (`--abort-on-threshold`),
    /// checked once per simulated hour done.
    pub thresholds: Vec<Threshold>,
    /// Set to the crossed threshold when one stopped the run.
    pub aborted: Arc<Mutex<Option<String>>>,
}

/// How the run is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// The live terminal dashboard.
    Dashboard,
    /// A status line on stderr every few seconds.
    StatusLine,
    /// Nothing (library use, tests).
    Quiet,
}

/// The running monitor; [`Monitor::finish`] ends it and gives the terminal back.
pub struct Monitor {
    done: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    state: watch::Receiver<DashboardState>,
}

impl Monitor {
    /// Starts watching.
    pub fn start(watched: Watched, display: Display) -> Monitor {
        let done = CancellationToken::new();
        let state = DashboardState::new(
            watched.run_id.clone(),
            watched.live.current().name().to_string(),
            watched.live.current().version().to_string(),
            watched.sim_start,
            watched.sim_end,
            watched.target,
        );
        let (tx, rx) = watch::channel(state.clone());
        let task = tokio::spawn(watch_run(watched, display, state, tx, done.clone()));
        Monitor {
            done,
            task,
            state: rx,
        }
    }

    /// The latest figures (refreshed a few times a second; the last ones stay readable after
    /// [`Monitor::finish`]).
    pub fn state(&self) -> watch::Receiver<DashboardState> {
        self.state.clone()
    }

    /// Stops watching and waits until the terminal is restored.
    pub async fn finish(self) {
        self.done.cancel();
        let _ = self.task.await;
    }
}

async fn watch_run(
    w: Watched,
    display: Display,
    mut state: DashboardState,
    tx: watch::Sender<DashboardState>,
    done: CancellationToken,
) {
    let started = Instant::now();
    let mut tracker = RateTracker::default();
    let rx = tx.subscribe();
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    let ui = (display == Display::Dashboard).then(|| {
        let cancel = done.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::dashboard::run_dashboard(rx, cmd_tx, cancel).await {
                tracing::warn!(error = %e, "the dashboard stopped");
            }
        })
    });
    let mut tick = tokio::time::interval(TICK);
    let mut last_status = Instant::now();
    let mut checked_hour = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(cmd) = cmd_rx.recv() => command(&w, &mut state, cmd),
            _ = done.cancelled() => break,
        }
        update(&w, &mut state, &mut tracker, started.elapsed());
        if let Some(t) = state.sim_now {
            crate::logging::set_sim_time(t);
            let hour = t.timestamp().div_euclid(3600);
            if !w.thresholds.is_empty() && checked_hour != Some(hour) && t > w.sim_start {
                checked_hour = Some(hour);
                abort_if_crossed(&w);
            }
        }
        let _ = tx.send(state.clone());
        if display == Display::StatusLine && last_status.elapsed() >= STATUS_EVERY {
            last_status = Instant::now();
            eprintln!("{}", crate::dashboard::status_line(&state));
        }
    }
    // The final figures, for readers of `Monitor::state` after the run (the /metrics endpoint).
    update(&w, &mut state, &mut tracker, started.elapsed());
    let _ = tx.send(state.clone());
    if let Some(ui) = ui {
        let _ = ui.await;
    }
}

fn update(w: &Watched, state: &mut DashboardState, tracker: &mut RateTracker, wall: Duration) {
    let snap = w.metrics.snapshot();
    state.apply_snapshot(&snap);
    let c = |k: Counter| snap.counters.get(&k).copied().unwrap_or(0);
    let ended =
        c(Counter::SessionsCompleted) + c(Counter::SessionsAbandoned) + c(Counter::SessionsFailed);
    state.in_flight = c(Counter::SessionsStarted).saturating_sub(ended);
    state.set_warnings(w.metrics.warnings());
    state.script_version = w.live.current().version().to_string();
    state.wall_elapsed = wall;
    let day = w.metrics.day().current();
    state.day = day;
    state.sim_now = match &w.pacer {
        Some(p) => Some(p.sim_now().min(w.sim_end)),
        // `max`: the last checkpoint, or the current day's start if later (a day starts only
        // when every session before it has ended).
        None => (*w.checkpoint.lock()).max(day.map(|d| d.start)),
    };
    state.paused = w.pacer.as_ref().is_some_and(|p| p.schedule().is_paused());
    state.target_scale = match &w.pacer {
        Some(p) => TimeScale::Scaled(p.schedule().scale()),
        None => w.target,
    };
    state.breakers = w.actions.breakers();
    let outage = w.actions.current_outage();
    state.outage = if w.actions.mode() == "http" {
        OutageState::from_http(outage)
    } else {
        OutageState::from_inprocess(outage)
    };
    state.stopping = w.cancel.is_cancelled();
    state.refresh(tracker);
}

/// Stops the run when one of the abort thresholds is crossed by the figures so far.
fn abort_if_crossed(w: &Watched) {
    if w.cancel.is_cancelled() {
        return;
    }
    let snap = w.metrics.snapshot();
    if let Some(r) = thresholds::check_all(&w.thresholds, &snap)
        .into_iter()
        .find(|r| !r.passed)
    {
        let why = format!("threshold {} crossed (measured {})", r.threshold, r.shown);
        tracing::error!(threshold = %r.threshold, measured = %r.shown, "threshold crossed; stopping the run (--abort-on-threshold)");
        *w.aborted.lock() = Some(why);
        w.cancel.cancel();
    }
}

fn command(w: &Watched, state: &mut DashboardState, cmd: Command) {
    match cmd {
        Command::Stop => {
            tracing::warn!("stop requested from the dashboard; finishing in-flight steps");
            w.cancel.cancel();
        }
        Command::TogglePause => match &w.pacer {
            Some(p) => {
                let paused = p.schedule().is_paused();
                p.update(|clock, now| {
                    if paused {
                        clock.resume(now)
                    } else {
                        clock.pause(now)
                    }
                });
                tracing::info!(
                    paused = !paused,
                    "simulated clock paused or resumed from the dashboard"
                );
            }
            None => w
                .metrics
                .warn("pause applies to paced runs; a `max` run has no clock to pause".into()),
        },
        Command::Faster | Command::Slower => match &w.pacer {
            Some(p) => {
                let factor = if cmd == Command::Faster {
                    SCALE_STEP
                } else {
                    1.0 / SCALE_STEP
                };
                let current = p.schedule().scale();
                if current <= 0.0 {
                    w.metrics.warn(
                        "the clock is paused: resume it (p) before changing the scale".into(),
                    );
                    return;
                }
                let scale = (current * factor).clamp(0.01, 1e7);
                p.update(|clock, now| clock.set_scale(now, scale));
                tracing::info!(scale, "time scale changed from the dashboard");
            }
            None => w
                .metrics
                .warn("a `max` run already runs as fast as it can".into()),
        },
    }
    state.paused = w.pacer.as_ref().is_some_and(|p| p.schedule().is_paused());
}
