//! Pass/fail thresholds for load tests in CI, in the spirit of k6:
//! `--threshold 'checkout.p99<500ms'`, `--threshold 'errors.rate<1%'`.
//!
//! A threshold is `METRIC OP VALUE` with OP one of `<`, `<=`, `>`, `>=`. Metrics:
//!
//! | metric | value |
//! |---|---|
//! | `ENDPOINT.p50`, `.p95`, `.p99`, `.max` | latency (`500ms`, `1.5s`; a bare number is ms) |
//! | `ENDPOINT.errors.rate`, `ENDPOINT.count` | that endpoint's error share, its requests |
//! | `errors.rate`, `errors.count` | requests that ended in an error (not business rejections) |
//! | `rejections.rate` | business rejections (out of stock, offer refused) per request |
//! | `OUTCOME.count`, `OUTCOME.rate` | e.g. `timeout.count`, `api_5xx.rate`, `db.count` |
//! | `script_errors.count` | behaviour-script errors |
//! | `sessions_failed.rate`, `abandon.rate` | per session started / ended |
//! | `lag.p95`, `lag.p99`, `lag.max` | release lag (paced mode) |
//!
//! ENDPOINT is a [`Endpoint::name`] (`checkout`, `add_to_cart` …). Rates take `1%` or `0.01`.
//! A metric without samples (an endpoint never called) passes and says so.

use serde::{Deserialize, Serialize};

use crate::sim::metrics::{Counter, Endpoint, LatencySummary, Outcome, Snapshot};

/// A threshold expression that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "threshold `{expr}`: {reason} (write METRIC<VALUE, e.g. `checkout.p99<500ms` or `errors.rate<1%`; `shopsim run --help` lists the metrics)"
)]
pub struct ThresholdError {
    /// The expression.
    pub expr: String,
    /// What is wrong.
    pub reason: String,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }
}

/// What a metric measures, which decides how its value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millis,
    Ratio,
    Count,
}

/// The statistic a threshold reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Latency(Endpoint, Stat),
    EndpointErrorRate(Endpoint),
    EndpointCount(Endpoint),
    ErrorRate,
    ErrorCount,
    RejectionRate,
    OutcomeCount(Outcome),
    OutcomeRate(Outcome),
    ScriptErrors,
    SessionsFailedRate,
    AbandonRate,
    Lag(Stat),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stat {
    P50,
    P95,
    P99,
    Max,
}

impl Stat {
    fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "p50" => Stat::P50,
            "p95" => Stat::P95,
            "p99" => Stat::P99,
            "max" => Stat::Max,
            _ => return None,
        })
    }

    fn of(self, l: &LatencySummary) -> Option<f64> {
        (l.count > 0).then_some(match self {
            Stat::P50 => l.p50_ms,
            Stat::P95 => l.p95_ms,
            Stat::P99 => l.p99_ms,
            Stat::Max => l.max_ms,
        })
    }
}

impl Metric {
    fn parse(name: &str) -> Option<Metric> {
        let parts: Vec<&str> = name.split('.').collect();
        Some(match parts.as_slice() {
            ["errors", "rate"] => Metric::ErrorRate,
            ["errors", "count"] => Metric::ErrorCount,
            ["rejections", "rate"] => Metric::RejectionRate,
            ["script_errors", "count"] => Metric::ScriptErrors,
            ["sessions_failed", "rate"] => Metric::SessionsFailedRate,
            ["abandon", "rate"] => Metric::AbandonRate,
            ["lag", stat] => Metric::Lag(Stat::parse(stat)?),
            [e, "errors", "rate"] => Metric::EndpointErrorRate(Endpoint::from_name(e)?),
            [e, "count"] if Endpoint::from_name(e).is_some() => {
                Metric::EndpointCount(Endpoint::from_name(e)?)
            }
            [o, "count"] => Metric::OutcomeCount(outcome(o)?),
            [o, "rate"] => Metric::OutcomeRate(outcome(o)?),
            [e, stat] => Metric::Latency(Endpoint::from_name(e)?, Stat::parse(stat)?),
            _ => return None,
        })
    }

    fn unit(self) -> Unit {
        match self {
            Metric::Latency(..) | Metric::Lag(_) => Unit::Millis,
            Metric::EndpointCount(_)
            | Metric::ErrorCount
            | Metric::OutcomeCount(_)
            | Metric::ScriptErrors => Unit::Count,
            _ => Unit::Ratio,
        }
    }

    /// The metric's value in `snap`; None without samples.
    fn value(self, snap: &Snapshot) -> Option<f64> {
        let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let requests = snap.requests();
        let errors: u64 = Outcome::ALL
            .into_iter()
            .filter(|o| o.is_error())
            .map(|o| snap.outcome_total(o))
            .sum();
        let counter = |c: Counter| snap.counters.get(&c).copied().unwrap_or(0);
        let endpoint = |e: Endpoint| snap.endpoints.get(&e);
        match self {
            Metric::Latency(e, stat) => endpoint(e).and_then(|s| stat.of(&s.latency)),
            Metric::EndpointErrorRate(e) => endpoint(e).and_then(|s| {
                let errs = s
                    .outcomes
                    .iter()
                    .filter(|(o, _)| o.is_error())
                    .map(|(_, n)| n)
                    .sum();
                ratio(errs, s.outcomes.values().sum())
            }),
            Metric::EndpointCount(e) => {
                Some(endpoint(e).map_or(0, |s| s.outcomes.values().sum()) as f64)
            }
            Metric::ErrorRate => ratio(errors, requests),
            Metric::ErrorCount => Some(errors as f64),
            Metric::RejectionRate => {
                let rejected = [
                    Outcome::OutOfStock,
                    Outcome::OfferRefused,
                    Outcome::OtherRejection,
                ]
                .into_iter()
                .map(|o| snap.outcome_total(o))
                .sum();
                ratio(rejected, requests)
            }
            Metric::OutcomeCount(o) => Some(snap.outcome_total(o) as f64),
            Metric::OutcomeRate(o) => ratio(snap.outcome_total(o), requests),
            Metric::ScriptErrors => Some(counter(Counter::ScriptErrors) as f64),
            Metric::SessionsFailedRate => ratio(
                counter(Counter::SessionsFailed),
                counter(Counter::SessionsStarted),
            ),
            Metric::AbandonRate => ratio(
                counter(Counter::SessionsAbandoned),
                counter(Counter::SessionsAbandoned) + counter(Counter::SessionsCompleted),
            ),
            Metric::Lag(stat) => stat.of(&snap.lag),
        }
    }
}

fn outcome(name: &str) -> Option<Outcome> {
    Outcome::ALL.into_iter().find(|o| o.name() == name)
}

/// One parsed threshold (kept and shown as it was written).
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    expr: String,
    metric: Metric,
    op: Op,
    limit: f64,
}

impl std::str::FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expr: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let fail = |reason: String| ThresholdError {
            expr: s.to_string(),
            reason,
        };
        let (at, op, len) = [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)]
            .into_iter()
            .find_map(|(t, op)| expr.find(t).map(|i| (i, op, t.len())))
            .ok_or_else(|| fail("no comparison (<, <=, >, >=)".into()))?;
        let (name, value) = (&expr[..at], &expr[at + len..]);
        let metric = Metric::parse(name).ok_or_else(|| fail(format!("unknown metric `{name}`")))?;
        let limit = parse_value(value, metric.unit()).map_err(fail)?;
        Ok(Threshold {
            expr,
            metric,
            op,
            limit,
        })
    }
}

fn parse_value(v: &str, unit: Unit) -> Result<f64, String> {
    let number = |t: &str| {
        t.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("`{v}` is not a number"))
    };
    match unit {
        Unit::Millis => {
            if let Some(t) = v.strip_suffix("ms") {
                number(t)
            } else if let Some(t) = v.strip_suffix('s') {
                Ok(number(t)? * 1000.0)
            } else if let Some(t) = v.strip_suffix('m') {
                Ok(number(t)? * 60_000.0)
            } else {
                number(v)
            }
        }
        Unit::Ratio => match v.strip_suffix('%') {
            Some(t) => Ok(number(t)? / 100.0),
            None => number(v),
        },
        Unit::Count => number(v),
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.expr)
    }
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.expr)
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A threshold checked against a run's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The threshold as written.
    pub threshold: String,
    /// The measured value (ms, ratio or count), when there were samples.
    pub value: Option<f64>,
    /// The value as shown (`612.3ms`, `2.10%`, `14`, `no data`).
    pub shown: String,
    /// Whether it held.
    pub passed: bool,
}

impl Threshold {
    /// Checks the threshold against `snap` (a metric without samples passes).
    pub fn check(&self, snap: &Snapshot) -> ThresholdResult {
        let value = self.metric.value(snap);
        let shown = match (value, self.metric.unit()) {
            (None, _) => "no data".to_string(),
            (Some(v), Unit::Millis) => format!("{v:.1}ms"),
            (Some(v), Unit::Ratio) => format!("{:.2}%", v * 100.0),
            (Some(v), Unit::Count) => format!("{v:.0}"),
        };
        ThresholdResult {
            threshold: self.expr.clone(),
            value,
            shown,
            passed: value.is_none_or(|v| self.op.holds(v, self.limit)),
        }
    }
}

/// Checks every threshold.
pub fn check_all(thresholds: &[Threshold], snap: &Snapshot) -> Vec<ThresholdResult> {
    thresholds.iter().map(|t| t.check(snap)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::metrics::Metrics;
    use std::time::Duration;

    fn t(s: &str) -> Threshold {
        s.parse().unwrap()
    }

    fn sample() -> Snapshot {
        let m = Metrics::new();
        for ms in 1..=100u64 {
            m.record_request(Endpoint::Checkout, Duration::from_millis(ms), Outcome::Ok);
        }
        m.record_request(
            Endpoint::AddToCart,
            Duration::from_millis(2),
            Outcome::OutOfStock,
        );
        m.record_request(
            Endpoint::AddToCart,
            Duration::from_millis(2),
            Outcome::Timeout,
        );
        m.add(Counter::SessionsStarted, 10);
        m.add(Counter::SessionsCompleted, 6);
        m.add(Counter::SessionsAbandoned, 2);
        m.add(Counter::SessionsFailed, 2);
        m.snapshot()
    }

    #[test]
    fn parses_units_and_operators() {
        assert_eq!(t("checkout.p99<500ms").limit, 500.0);
        assert_eq!(t("checkout.p99 < 1.5s").limit, 1500.0);
        assert_eq!(t("checkout.max<=2m").limit, 120_000.0);
        assert_eq!(t("errors.rate<1%").limit, 0.01);
        assert_eq!(t("errors.rate<0.02").limit, 0.02);
        assert_eq!(t("timeout.count<=3").op, Op::Le);
        assert_eq!(t("checkout.count>=1").op, Op::Ge);
        assert_eq!(t("add_to_cart.errors.rate<5%").limit, 0.05);
        assert_eq!(t("checkout.p99<500ms").to_string(), "checkout.p99<500ms");
    }

    #[test]
    fn rejects_nonsense_with_the_reason() {
        for (bad, why) in [
            ("checkout.p99", "no comparison"),
            ("chekout.p99<5ms", "unknown metric `chekout.p99`"),
            ("checkout.p42<5ms", "unknown metric"),
            ("errors.rate<lots", "is not a number"),
        ] {
            let e = bad.parse::<Threshold>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn checks_against_a_snapshot() {
        let snap = sample();
        let r = t("checkout.p99<500ms").check(&snap);
        assert!(r.passed && (r.value.unwrap() - 99.0).abs() < 1.0, "{r:?}");
        assert!(!t("checkout.p50<10ms").check(&snap).passed);
        // 1 timeout of 102 requests; the out-of-stock is a rejection, not an error.
        let r = t("errors.rate<1%").check(&snap);
        assert_eq!(r.shown, "0.98%");
        assert!(r.passed);
        assert!(!t("errors.count<1").check(&snap).passed);
        assert!(!t("add_to_cart.errors.rate<10%").check(&snap).passed);
        assert!(t("timeout.count<=1").check(&snap).passed);
        assert!(!t("sessions_failed.rate<10%").check(&snap).passed);
        assert_eq!(t("abandon.rate<1").check(&snap).value, Some(0.25));
        assert!(t("checkout.count>=100").check(&snap).passed);
        assert_eq!(t("rejections.rate>0").check(&snap).shown, "0.98%");
        // No samples: passes, says so.
        let r = t("wallet.p99<1ms").check(&snap);
        assert!(r.passed && r.shown == "no data");
    }

    #[test]
    fn round_trips_through_serde() {
        let v = serde_json::to_value(vec![t("errors.rate<1%")]).unwrap();
        assert_eq!(v, serde_json::json!(["errors.rate<1%"]));
        let back: Vec<Threshold> = serde_json::from_value(v).unwrap();
        assert_eq!(back, vec![t("errors.rate<1%")]);
        assert!(serde_json::from_value::<Threshold>(serde_json::json!("x<")).is_err());
    }
}
