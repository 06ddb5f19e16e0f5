//! How far the current simulated day is: its sessions that ended out of all it planned.
//!
//! Written by the engine (a day's start, each ended session), read by the monitor. A `max`
//! run needs it to show any progress inside a day: its checkpoints (the monitor's simulated
//! time) move only when every session of an hour has ended, and with a million agents a day's
//! sessions run in agent order, so the first hour is complete only near the day's end — half
//! an hour of "0.0%" without it. Paced runs show it as well.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDate, Utc};
use parking_lot::Mutex;

/// The current simulated day's sessions: ended out of planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCount {
    /// The simulated date (the run's calendar).
    pub date: NaiveDate,
    /// Its first simulated instant in the run (midnight in the run's time zone, or the run's
    /// start on a first day that starts later).
    pub start: DateTime<Utc>,
    /// Sessions of the day that ended (completed, abandoned, failed), including those a
    /// resumed run found ended.
    pub done: u64,
    /// Sessions the day planned.
    pub total: u64,
}

impl DayCount {
    /// `done / total`, within 0..=1 (0 for a day without sessions).
    pub fn ratio(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            (self.done as f64 / self.total as f64).clamp(0.0, 1.0)
        }
    }
}

/// The shared counter: the day changes rarely (a short lock), sessions end often (atomics).
#[derive(Debug, Default)]
pub struct DayProgress {
    day: Mutex<Option<(NaiveDate, DateTime<Utc>)>>,
    done: AtomicU64,
    total: AtomicU64,
}

impl DayProgress {
    /// Nothing started yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A day starts with `total` sessions planned, `done` of them already ended (a resumed
    /// run does not run those again).
    pub fn start_day(&self, date: NaiveDate, start: DateTime<Utc>, total: u64, done: u64) {
        let mut day = self.day.lock();
        self.total.store(total, Ordering::Relaxed);
        self.done.store(done.min(total), Ordering::Relaxed);
        *day = Some((date, start));
    }

    /// One of the day's sessions ended.
    pub fn session_ended(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// The current day's figures (`None` before the first day starts); `done` never exceeds
    /// `total`. (Days run one after another: no session of a day ends after the next starts.)
    pub fn current(&self) -> Option<DayCount> {
        let (date, start) = (*self.day.lock())?;
        let total = self.total.load(Ordering::Relaxed);
        Some(DayCount {
            date,
            start,
            done: self.done.load(Ordering::Relaxed).min(total),
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn counts_a_day_and_starts_over_on_the_next() {
        let p = DayProgress::new();
        assert_eq!(p.current(), None);
        let d1 = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let t1 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        p.start_day(d1, t1, 4, 1);
        p.session_ended();
        let c = p.current().unwrap();
        assert_eq!((c.date, c.start, c.done, c.total), (d1, t1, 2, 4));
        assert_eq!(c.ratio(), 0.5);
        p.session_ended();
        p.session_ended();
        p.session_ended(); // more ended than planned is shown as all
        assert_eq!(p.current().unwrap().done, 4);
        let d2 = d1.succ_opt().unwrap();
        p.start_day(d2, t1 + chrono::Duration::days(1), 0, 0);
        let c = p.current().unwrap();
        assert_eq!((c.date, c.done, c.total), (d2, 0, 0));
        assert_eq!(c.ratio(), 0.0);
    }
}
