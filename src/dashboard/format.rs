//! Number and time formats shared by the screen and the status line (ASCII-only and
//! single-width, so layouts and snapshots stay predictable).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::state::DashboardState;
use crate::sim::clock::TimeScale;

/// `45s`, `12m03s`, `3h02m`, `2d03h`.
pub(crate) fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Milliseconds with a precision that suits their size: `0.42`, `12.5`, `340`.
pub(crate) fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A rate: `0.5`, `52`.
pub(crate) fn rate(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A scale: `96x`, `95.2x`, `max`.
pub(crate) fn scale(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}x")
    } else {
        format!("{v:.1}x")
    }
}

/// The target scale: `96x` or `max`.
pub(crate) fn target(t: TimeScale) -> String {
    match t {
        TimeScale::Max => "max".into(),
        TimeScale::Scaled(v) => scale(v),
    }
}

/// A simulated instant: `2024-01-03 14:00`.
pub(crate) fn sim(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

/// Simulated time now, or `starting`.
pub(crate) fn sim_now(s: &DashboardState) -> String {
    s.sim_now.map_or_else(|| "starting".into(), sim)
}

/// A percentage of a ratio: `23.4%`.
pub(crate) fn percent(r: f64) -> String {
    format!("{:.1}%", r * 100.0)
}

/// `day 3/14`: the simulated day now and the run's days (partial days count).
pub(crate) fn day_of(s: &DashboardState) -> Option<String> {
    let now = s.sim_now?;
    let day = |d: chrono::Duration| d.num_milliseconds().max(0) as f64 / 86_400_000.0;
    let total = day(s.sim_end - s.sim_start).ceil().max(1.0);
    let current = (day(now - s.sim_start).floor() + 1.0).min(total);
    Some(format!("day {current:.0}/{total:.0}"))
}

/// Wall time and time left: `12m03s, ~1h02m left`.
pub(crate) fn wall(s: &DashboardState) -> String {
    match s.wall_remaining {
        Some(left) => format!("{}, ~{} left", duration(s.wall_elapsed), duration(left)),
        None => duration(s.wall_elapsed),
    }
}

/// Lag now and over the run: `lag 12 ms (p99 40 ms)`, or `None` in `max` mode.
pub(crate) fn lag(s: &DashboardState) -> Option<String> {
    match (s.lag_ms, s.lag_p99_ms) {
        (None, None) => None,
        (Some(now), Some(p99)) => Some(format!("lag {} ms (p99 {} ms)", ms(now), ms(p99))),
        (Some(now), None) => Some(format!("lag {} ms", ms(now))),
        (None, Some(p99)) => Some(format!("lag p99 {} ms", ms(p99))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(723)), "12m03s");
        assert_eq!(duration(Duration::from_secs(3 * 3600 + 125)), "3h02m");
        assert_eq!(
            duration(Duration::from_secs(2 * 86_400 + 3 * 3600)),
            "2d03h"
        );
        assert_eq!(
            (ms(0.4242), ms(12.54), ms(340.2)),
            ("0.42".into(), "12.5".into(), "340".into())
        );
        assert_eq!(
            (scale(96.0), scale(95.24), scale(1234.4)),
            ("96x".into(), "95.2x".into(), "1234x".into())
        );
        assert_eq!(target(TimeScale::Max), "max");
        assert_eq!(percent(0.2345), "23.4%");
    }
}
