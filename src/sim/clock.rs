//! The simulated clock.
//!
//! A run's clock is a [`ClockSchedule`]: a list of segments, each mapping a wall-clock instant
//! to a simulated instant and running at a constant scale (simulated seconds per wall second;
//! 0 = paused) until the next segment. Scale changes and pauses append segments, so the whole
//! history of the clock is data: it is stored with the run, a resumed run continues it, and
//! several shards reading the same schedule agree on the simulated time.
//!
//! [`PacedClock`] releases simulated events when the wall clock reaches them. It measures wall
//! time on tokio's clock, so tests can run it under `tokio::time::pause()`. In `max` mode there
//! is no paced clock: events run as fast as the work allows.

use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// How fast simulated time runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeScale {
    /// As fast as the system allows; no wall-clock pacing.
    Max,
    /// Simulated seconds per wall second (e.g. 48, 96, 10000).
    Scaled(f64),
}

/// Error parsing a time scale.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a time scale: use a positive number of simulated seconds per wall second (e.g. 48, 96, 10000) or `max`"
)]
pub struct ParseTimeScaleError(String);

impl std::str::FromStr for TimeScale {
    type Err = ParseTimeScaleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("max") {
            return Ok(TimeScale::Max);
        }
        let t = s.trim().trim_end_matches(['x', 'X']);
        match t.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(TimeScale::Scaled(v)),
            _ => Err(ParseTimeScaleError(s.to_string())),
        }
    }
}

impl std::fmt::Display for TimeScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeScale::Max => f.write_str("max"),
            TimeScale::Scaled(v) => write!(f, "{v}x"),
        }
    }
}

/// One stretch of constant pace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Wall-clock instant the segment starts.
    pub wall: DateTime<Utc>,
    /// Simulated instant at `wall`.
    pub sim: DateTime<Utc>,
    /// Simulated seconds per wall second; 0 while paused.
    pub scale: f64,
}

/// The clock's whole history: segments in wall-clock order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockSchedule {
    segments: Vec<Segment>,
    /// The scale to return to after a pause.
    resume_scale: f64,
}

fn scaled(d: ChronoDuration, factor: f64) -> ChronoDuration {
    let nanos = d
        .num_nanoseconds()
        .map(|n| n as f64)
        .unwrap_or_else(|| d.num_milliseconds() as f64 * 1e6);
    ChronoDuration::nanoseconds((nanos * factor).round() as i64)
}

impl ClockSchedule {
    /// A clock that shows `sim` at wall instant `wall` and runs at `scale` (> 0).
    pub fn start(wall: DateTime<Utc>, sim: DateTime<Utc>, scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        Self {
            segments: vec![Segment { wall, sim, scale }],
            resume_scale: scale,
        }
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    fn current(&self) -> &Segment {
        // Never empty: constructed with one segment and only ever appended to.
        &self.segments[self.segments.len() - 1]
    }

    fn segment_for_wall(&self, wall: DateTime<Utc>) -> &Segment {
        let i = self.segments.partition_point(|s| s.wall <= wall);
        &self.segments[i.saturating_sub(1)]
    }

    /// The simulated time at wall instant `wall`.
    pub fn sim_at(&self, wall: DateTime<Utc>) -> DateTime<Utc> {
        let s = self.segment_for_wall(wall);
        s.sim + scaled(wall - s.wall, s.scale)
    }

    /// The wall instant at which simulated time reaches `sim`, or `None` while the clock is
    /// paused before reaching it (the answer depends on when it resumes).
    pub fn wall_at(&self, sim: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Latest segment first: after a restart, older segments are history.
        for (i, s) in self.segments.iter().enumerate().rev() {
            let end = self.segments.get(i + 1).map(|n| n.sim);
            if sim >= s.sim && end.is_none_or(|e| sim < e) {
                if s.scale == 0.0 {
                    return None;
                }
                return Some(s.wall + scaled(sim - s.sim, 1.0 / s.scale));
            }
        }
        // Before the clock started: extrapolate backwards on the first segment.
        let first = &self.segments[0];
        Some(first.wall - scaled(first.sim - sim, 1.0 / first.scale.max(f64::MIN_POSITIVE)))
    }

    /// The current scale (0 while paused).
    pub fn scale(&self) -> f64 {
        self.current().scale
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        self.current().scale == 0.0
    }

    /// Changes the scale from wall instant `now` on (takes effect on resume when paused).
    pub fn set_scale(&mut self, now: DateTime<Utc>, scale: f64) {
        if !(scale.is_finite() && scale > 0.0) {
            return;
        }
        self.resume_scale = scale;
        if !self.is_paused() {
            self.push(now, scale);
        }
    }

    /// Pauses at wall instant `now`.
    pub fn pause(&mut self, now: DateTime<Utc>) {
        if !self.is_paused() {
            self.push(now, 0.0);
        }
    }

    /// Resumes at wall instant `now` at the last scale set.
    pub fn resume(&mut self, now: DateTime<Utc>) {
        if self.is_paused() {
            self.push(now, self.resume_scale);
        }
    }

    /// Restarts the clock after the process was down: simulated time continues from `sim` (the
    /// last checkpoint) at wall instant `now`, at `scale`. Time spent down is not simulated.
    pub fn restart(&mut self, now: DateTime<Utc>, sim: DateTime<Utc>, scale: f64) {
        if scale.is_finite() && scale > 0.0 {
            self.resume_scale = scale;
        }
        let now = now.max(self.current().wall);
        self.segments.push(Segment {
            wall: now,
            sim,
            scale: self.resume_scale,
        });
    }

    fn push(&mut self, now: DateTime<Utc>, scale: f64) {
        let now = now.max(self.current().wall);
        let sim = self.sim_at(now);
        self.segments.push(Segment {
            wall: now,
            sim,
            scale,
        });
    }
}

/// A shared, changeable paced clock that releases simulated events on time.
#[derive(Clone)]
pub struct PacedClock {
    schedule: Arc<watch::Sender<ClockSchedule>>,
    base_instant: tokio::time::Instant,
    base_wall: DateTime<Utc>,
}

impl PacedClock {
    /// A paced clock following `schedule`; wall time is read from tokio's clock.
    pub fn new(schedule: ClockSchedule) -> Self {
        let (tx, _rx) = watch::channel(schedule);
        Self {
            schedule: Arc::new(tx),
            base_instant: tokio::time::Instant::now(),
            base_wall: Utc::now(),
        }
    }

    /// The wall clock as this clock sees it.
    pub fn wall_now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.base_instant;
        self.base_wall
            + ChronoDuration::from_std(elapsed).unwrap_or_else(|_| ChronoDuration::zero())
    }

    /// The simulated time now.
    pub fn sim_now(&self) -> DateTime<Utc> {
        self.schedule.borrow().sim_at(self.wall_now())
    }

    /// A copy of the schedule (to store with the run).
    pub fn schedule(&self) -> ClockSchedule {
        self.schedule.borrow().clone()
    }

    /// Applies a change (scale, pause, resume) at the current wall time; waiters re-plan.
    pub fn update(&self, change: impl FnOnce(&mut ClockSchedule, DateTime<Utc>)) {
        let now = self.wall_now();
        self.schedule.send_modify(|s| change(s, now));
    }

    /// Replaces the whole schedule (another shard changed the shared clock); waiters re-plan.
    pub fn replace(&self, schedule: ClockSchedule) {
        self.schedule.send_replace(schedule);
    }

    /// Waits until simulated time reaches `sim` and returns how late the release is (zero if
    /// on time). Events are never dropped: a late event is released at once and its lag counted.
    pub async fn wait_until(&self, sim: DateTime<Utc>) -> std::time::Duration {
        let mut rx = self.schedule.subscribe();
        loop {
            let release = rx.borrow_and_update().wall_at(sim);
            let now = self.wall_now();
            match release {
                Some(at) if at <= now => return (now - at).to_std().unwrap_or_default(),
                Some(at) => {
                    let wait = (at - now).to_std().unwrap_or_default();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        changed = rx.changed() => if changed.is_err() { tokio::time::sleep(wait).await },
                    }
                }
                None => {
                    if rx.changed().await.is_err() {
                        // Sender gone while paused: nothing will ever resume this clock.
                        return std::time::Duration::ZERO;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, m, s).unwrap()
    }
    fn sim(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, d, h, 0, 0).unwrap()
    }

    #[test]
    fn parses_time_scales() {
        assert_eq!("96".parse::<TimeScale>().unwrap(), TimeScale::Scaled(96.0));
        assert_eq!("48x".parse::<TimeScale>().unwrap(), TimeScale::Scaled(48.0));
        assert_eq!("MAX".parse::<TimeScale>().unwrap(), TimeScale::Max);
        assert!("0".parse::<TimeScale>().is_err());
        assert!("-3".parse::<TimeScale>().is_err());
        assert!(
            "fast"
                .parse::<TimeScale>()
                .unwrap_err()
                .to_string()
                .contains("max")
        );
    }

    #[test]
    fn maps_both_ways_at_constant_scale() {
        let c = ClockSchedule::start(t(12, 0, 0), sim(1, 0), 3600.0);
        assert_eq!(c.sim_at(t(12, 0, 1)), sim(1, 1));
        assert_eq!(c.sim_at(t(12, 0, 24)), sim(2, 0));
        assert_eq!(c.wall_at(sim(2, 0)), Some(t(12, 0, 24)));
        // Before the start maps backwards on the first segment.
        assert_eq!(c.wall_at(sim(1, 0)), Some(t(12, 0, 0)));
    }

    #[test]
    fn scale_changes_and_pauses_are_segments() {
        let mut c = ClockSchedule::start(t(12, 0, 0), sim(1, 0), 3600.0);
        c.set_scale(t(12, 0, 10), 7200.0); // sim day 1 10:00, then 2 sim hours per wall second
        assert_eq!(c.sim_at(t(12, 0, 12)), sim(1, 14));
        assert_eq!(c.wall_at(sim(1, 14)), Some(t(12, 0, 12)));
        assert_eq!(c.wall_at(sim(1, 5)), Some(t(12, 0, 5)));
        c.pause(t(12, 0, 12));
        assert!(c.is_paused());
        assert_eq!(c.sim_at(t(12, 5, 0)), sim(1, 14));
        assert_eq!(c.wall_at(sim(1, 16)), None, "unknown while paused");
        c.resume(t(12, 1, 0));
        assert_eq!(c.scale(), 7200.0);
        assert_eq!(c.wall_at(sim(1, 16)), Some(t(12, 1, 1)));
        // Serialises for storage with the run and for shards.
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ClockSchedule>(&json).unwrap(), c);
    }

    #[test]
    fn restart_continues_from_checkpoint() {
        let mut c = ClockSchedule::start(t(12, 0, 0), sim(1, 0), 3600.0);
        c.restart(t(13, 0, 0), sim(1, 5), 1800.0);
        assert_eq!(c.sim_at(t(13, 0, 2)), sim(1, 6));
        assert_eq!(c.wall_at(sim(1, 6)), Some(t(13, 0, 2)));
    }

    #[tokio::test(start_paused = true)]
    async fn paced_clock_releases_on_time_and_measures_lag() {
        let start = Utc::now();
        let clock = PacedClock::new(ClockSchedule::start(start, sim(1, 0), 3600.0));
        let lag = clock.wait_until(sim(1, 2)).await;
        assert!(lag < std::time::Duration::from_millis(5), "{lag:?}");
        let elapsed = clock.wall_now() - clock.base_wall;
        assert!(
            (elapsed.num_milliseconds() - 2000).abs() <= 5,
            "{elapsed:?}"
        );
        // An event in the past is released at once with its lag.
        let lag = clock.wait_until(sim(1, 1)).await;
        assert!((lag.as_millis() as i64 - 1000).abs() <= 5, "{lag:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_follow_scale_changes_and_pauses() {
        let clock = PacedClock::new(ClockSchedule::start(Utc::now(), sim(1, 0), 3600.0));
        let c2 = clock.clone();
        let waiter = tokio::spawn(async move { c2.wait_until(sim(1, 10)).await });
        tokio::time::sleep(std::time::Duration::from_secs(1)).await; // sim 01:00
        clock.update(|s, now| s.pause(now));
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        assert!(!waiter.is_finished(), "must not release while paused");
        clock.update(|s, now| s.resume(now));
        clock.update(|s, now| s.set_scale(now, 36000.0)); // 9 sim hours left = 0.9 s
        let lag = waiter.await.unwrap();
        assert!(lag < std::time::Duration::from_millis(5));
        assert_eq!(clock.sim_now().format("%H:%M").to_string(), "10:00");
    }
}
