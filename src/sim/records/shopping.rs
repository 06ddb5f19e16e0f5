//! How a run's shoppers shopped: the behaviour statistics `shopsim check` prints and every run
//! summary carries (rates, baskets, timing), computed from the run's rows in the database.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::RecordsError;
use super::scope::run_session_ids;
use crate::money::Money;
use crate::store::Tx;

/// Shopping statistics of a run. Ratios are rounded to 6 decimals so the JSON is short and
/// stable across backends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShoppingStats {
    /// Sessions per agent-day.
    pub sessions_per_agent_day: f64,
    /// Sessions per agent-hour (agent-days × 24): the original simulation's "0.87% shop".
    pub sessions_per_agent_hour: f64,
    /// Session events per started session.
    pub events_per_session: f64,
    /// Distinct products per order, mean.
    pub mean_basket_items: f64,
    /// Distinct products per order, median.
    pub median_basket_items: f64,
    /// Mean order total after discounts.
    pub mean_order_total: f64,
    /// Offers applied per started session.
    pub offers_per_session: f64,
    /// Orders per local hour of day (the run's time zone, 0–23).
    pub orders_by_hour: [u64; 24],
    /// Orders per local weekday, Monday first.
    pub orders_by_weekday: [u64; 7],
    /// Gaps between an agent's consecutive orders in whole local days (index = days).
    pub days_between_orders: Vec<u64>,
}

/// A local date's orders (the run's time zone, by when the order was placed).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DateOrders {
    /// Orders placed that date.
    pub orders: u64,
    /// Their totals after discounts.
    pub revenue: Money,
}

/// Orders per local date: one entry per date with orders, a few hundred for a year's run.
pub type OrdersByDate = BTreeMap<NaiveDate, DateOrders>;

/// Counts the statistics need that the summary already has.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    /// Agent-days recorded.
    pub agent_days: u64,
    /// Sessions started.
    pub sessions: u64,
    /// Session events.
    pub events: u64,
    /// Offers applied.
    pub offers_applied: u64,
}

impl ShoppingStats {
    /// Reads the run's orders (in `tx`) and derives the statistics, and the orders per local
    /// date (which the report charts); `tz` is the run's calendar. The orders stream through
    /// once, in agent order: memory stays the same for a week of a hundred agents and a month
    /// of a million.
    pub async fn from_database(
        tx: &Tx,
        run_id: &str,
        tz: Tz,
        totals: Totals,
    ) -> Result<(ShoppingStats, OrdersByDate), RecordsError> {
        let mut by_date = OrdersByDate::new();
        let mut by_hour = [0u64; 24];
        let mut by_weekday = [0u64; 7];
        let mut gaps: Vec<u64> = Vec::new();
        let mut baskets = Counts::default();
        let mut revenue_cents: i128 = 0;
        let mut last: Option<(String, NaiveDate)> = None;
        tx.for_each_row(
            &format!(
                "SELECT s.agent_id, o.created_at, o.final_total, \
                   (SELECT COUNT(DISTINCT oi.product_id) FROM order_items oi \
                    WHERE oi.order_id = o.id) AS items \
                 FROM orders o JOIN sim_sessions s ON s.session_id = o.shopping_session_id \
                 WHERE o.shopping_session_id IN ({}) AND s.run_id = $1 \
                 ORDER BY s.agent_id, o.created_at",
                run_session_ids("$1")
            ),
            vec![run_id.to_string().into()],
            |r| -> Result<(), RecordsError> {
                let at = r.ts("created_at")?.with_timezone(&tz);
                by_hour[at.hour() as usize] += 1;
                by_weekday[at.weekday().num_days_from_monday() as usize] += 1;
                baskets.add(r.i64("items")?.max(0) as u64);
                let total = r.money("final_total")?;
                revenue_cents += i128::from(total.as_cents());
                let agent = r.string("agent_id")?;
                let date = at.date_naive();
                let day = by_date.entry(date).or_default();
                day.orders += 1;
                day.revenue += total;
                // An agent's orders come one after another: the gap is to the row before.
                if let Some((prev_agent, prev)) = &last
                    && *prev_agent == agent
                {
                    let gap = (date - *prev).num_days().max(0) as usize;
                    if gaps.len() <= gap {
                        gaps.resize(gap + 1, 0);
                    }
                    gaps[gap] += 1;
                }
                last = Some((agent, date));
                Ok(())
            },
        )
        .await?;
        let orders = baskets.len();
        let stats = ShoppingStats {
            sessions_per_agent_day: r6(ratio(totals.sessions, totals.agent_days)),
            sessions_per_agent_hour: r6(ratio(totals.sessions, totals.agent_days * 24)),
            events_per_session: r6(ratio(totals.events, totals.sessions)),
            mean_basket_items: r6(ratio(baskets.sum(), orders)),
            median_basket_items: baskets.median(),
            mean_order_total: r6(if orders == 0 {
                0.0
            } else {
                revenue_cents as f64 / 100.0 / orders as f64
            }),
            offers_per_session: r6(ratio(totals.offers_applied, totals.sessions)),
            orders_by_hour: by_hour,
            orders_by_weekday: by_weekday,
            days_between_orders: gaps,
        };
        Ok((stats, by_date))
    }
}

/// How many times each value occurred: the median of millions of basket sizes in a few
/// hundred counters.
#[derive(Debug, Default)]
struct Counts(BTreeMap<u64, u64>);

impl Counts {
    fn add(&mut self, v: u64) {
        *self.0.entry(v).or_insert(0) += 1;
    }

    fn len(&self) -> u64 {
        self.0.values().sum()
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|(v, n)| v * n).sum()
    }

    /// The `k`-th smallest value (from 0).
    fn nth(&self, k: u64) -> u64 {
        let mut seen = 0;
        for (v, n) in &self.0 {
            seen += n;
            if k < seen {
                return *v;
            }
        }
        0
    }

    /// The median (the mean of the middle two for an even count; 0 for none).
    fn median(&self) -> f64 {
        let n = self.len();
        if n == 0 {
            return 0.0;
        }
        if n % 2 == 1 {
            self.nth(n / 2) as f64
        } else {
            (self.nth(n / 2 - 1) + self.nth(n / 2)) as f64 / 2.0
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Rounds statistics (not money) to 6 decimals: short, stable JSON.
fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(v: &[u64]) -> Counts {
        let mut c = Counts::default();
        v.iter().for_each(|x| c.add(*x));
        c
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(counts(&[3, 1, 2]).median(), 2.0);
        assert_eq!(counts(&[4, 1, 3, 2]).median(), 2.5);
        assert_eq!(counts(&[]).median(), 0.0);
        assert_eq!(counts(&[7, 7, 7, 9]).median(), 7.0);
        assert_eq!(counts(&[1, 1, 9, 9]).median(), 5.0);
        let c = counts(&[5, 0, 5, 2]);
        assert_eq!((c.len(), c.sum()), (4, 12));
        assert_eq!(ratio(1, 0), 0.0);
        assert_eq!(r6(1.0 / 3.0), 0.333333);
    }
}
