//! The one-line status for runs without a terminal (or with `--no-tui`): the dashboard's key
//! figures, for a log or a CI console.

use super::format;
use super::state::DashboardState;

/// One concise line: run, simulated time and progress, wall time, sessions, orders, requests/s,
/// errors, the current day's sessions, lag (paced mode) and the PAUSED / OUTAGE / STOPPING
/// flags.
///
/// ```text
/// [run-1] sim 2024-01-03 14:00 (to 2024-01-15 00:00) 23.4% | wall 12m03s, ~39m left | sessions 1234 (42 in flight) | orders 456 | requests 98765 (410/s) | errors 12 | 2024-01-03: 120/372 sessions ended | lag 12.0 ms (p99 40.0 ms)
/// ```
pub fn status_line(state: &DashboardState) -> String {
    let s = state;
    let mut line = format!(
        "[{}] sim {} (to {}) {} | wall {} | sessions {} ({} in flight) | orders {} | requests {} ({}/s) | errors {}",
        s.run_id,
        format::sim_now(s),
        format::sim(s.sim_end),
        format::percent(s.progress),
        format::wall(s),
        s.sessions,
        s.in_flight,
        s.orders,
        s.requests,
        format::rate(s.rates.requests_per_sec),
        s.errors(),
    );
    if let Some(d) = s.day.filter(|d| d.total > 0) {
        line.push_str(&format!(
            " | {}: {}/{} sessions ended",
            d.date, d.done, d.total
        ));
    }
    if let Some(lag) = format::lag(s) {
        line.push_str(" | ");
        line.push_str(&lag);
    }
    if s.paused {
        line.push_str(" | PAUSED");
    }
    if let Some(outage) = s.outage.headline() {
        line.push_str(" | OUTAGE: ");
        line.push_str(&outage);
    }
    if s.stopping {
        line.push_str(" | STOPPING");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::state::{OutageState, Rates};
    use crate::sim::clock::TimeScale;
    use crate::sim::day_progress::DayCount;
    use chrono::{TimeZone, Utc};
    use std::time::Duration;

    #[test]
    fn status_line_has_the_key_figures() {
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let mut s = DashboardState::new(
            "run-1",
            "grocery",
            "v1",
            start,
            start + chrono::Duration::days(14),
            TimeScale::Scaled(96.0),
        );
        assert_eq!(
            status_line(&s),
            "[run-1] sim starting (to 2024-01-15 00:00) 0.0% | wall 0s | sessions 0 (0 in flight) \
             | orders 0 | requests 0 (0.0/s) | errors 0"
        );
        s.sim_now = Some(Utc.with_ymd_and_hms(2024, 1, 3, 14, 0, 0).unwrap());
        s.progress = 0.2345;
        s.wall_elapsed = Duration::from_secs(723);
        s.wall_remaining = Some(Duration::from_secs(2340));
        s.sessions = 1234;
        s.in_flight = 42;
        s.orders = 456;
        s.requests = 98765;
        s.rates = Rates {
            requests_per_sec: 410.4,
            ..Rates::default()
        };
        s.counters.api_5xx = 5;
        s.counters.script_errors = 7;
        s.counters.out_of_stock = 100; // an outcome, not an error
        s.lag_ms = Some(12.0);
        s.lag_p99_ms = Some(40.0);
        assert_eq!(
            status_line(&s),
            "[run-1] sim 2024-01-03 14:00 (to 2024-01-15 00:00) 23.4% | wall 12m03s, ~39m00s left \
             | sessions 1234 (42 in flight) | orders 456 | requests 98765 (410/s) | errors 12 \
             | lag 12.0 ms (p99 40.0 ms)"
        );
        let day = Utc.with_ymd_and_hms(2024, 1, 3, 0, 0, 0).unwrap();
        s.day = Some(DayCount {
            date: day.date_naive(),
            start: day,
            done: 120,
            total: 372,
        });
        assert!(
            status_line(&s).ends_with(
                "| errors 12 | 2024-01-03: 120/372 sessions ended | lag 12.0 ms (p99 40.0 ms)"
            ),
            "{}",
            status_line(&s)
        );
        s.paused = true;
        s.stopping = true;
        s.outage = OutageState::ApiDown {
            since: Utc.with_ymd_and_hms(2026, 5, 1, 9, 30, 5).unwrap(),
            reason: "connection refused".into(),
        };
        let line = status_line(&s);
        assert!(
            line.ends_with("| PAUSED | OUTAGE: API down since 09:30:05 UTC | STOPPING"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}
