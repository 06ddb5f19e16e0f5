//! What a report shows, read from the run's records in the database: [`ReportData`].
//!
//! Counts are aggregated in SQL where SQL does it the same way on both backends (sessions by
//! simulated date and status, funnel steps, offers by type, holdout groups). Orders are bucketed
//! by their local time in the run's time zone (day, hour of day, weekday) in the run summary's
//! one streamed pass over them, so memory stays bounded however long the run was. Latency
//! percentiles per interval come from the stored HDR histograms, merged exactly, never
//! averaged.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use hdrhistogram::Histogram;
use serde_json::Value as Json;

use super::ReportError;
use crate::money::Money;
use crate::sim::metrics::{
    self, Counter, Endpoint, IntervalHistograms, LatencySummary, MetricsError, Outcome,
};
use crate::sim::records::export::HOLDOUT;
use crate::sim::records::scope::{run_agent_ids, run_session_ids, run_user_ids};
use crate::sim::records::{
    IntervalCounters, RunRecord, RunSummary, WallInfo, require_run, stored_snapshot,
};
use crate::store::{Db, Tx};

/// Most points of the interval charts: longer runs merge consecutive intervals.
pub const MAX_INTERVAL_POINTS: usize = 240;

/// Days up to which day charts show single days (then weeks, then months).
pub const MAX_DAILY_POINTS: usize = 92;

/// Days up to which day charts show weeks (then months).
pub const MAX_WEEKLY_DAYS: usize = 731;

/// How much the report's long reads take per query. A long run has thousands of metrics
/// intervals, each row carrying its histograms. (The orders are not paged: they stream through
/// once, for the run summary's statistics and the report's days together.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pages {
    /// Metrics intervals per query (each row carries its histograms, a few KiB).
    pub intervals: usize,
}

impl Default for Pages {
    fn default() -> Self {
        Pages { intervals: 500 }
    }
}

/// One simulated day in the run's time zone.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DayFigures {
    /// The local date.
    pub date: NaiveDate,
    /// Sessions planned for the day (whatever became of them).
    pub planned: u64,
    /// Sessions started (every status but `planned`).
    pub started: u64,
    /// Sessions that ended in an order.
    pub completed: u64,
    /// Sessions abandoned.
    pub abandoned: u64,
    /// Sessions ended by a failed step.
    pub failed: u64,
    /// Orders placed that day (local time of the order).
    pub orders: u64,
    /// Their final totals.
    pub revenue: Money,
}

impl DayFigures {
    fn empty(date: NaiveDate) -> Self {
        Self {
            date,
            ..Self::default()
        }
    }

    fn add(&mut self, o: &DayFigures) {
        self.planned += o.planned;
        self.started += o.started;
        self.completed += o.completed;
        self.abandoned += o.abandoned;
        self.failed += o.failed;
        self.orders += o.orders;
        self.revenue += o.revenue;
    }

    /// abandoned / (completed + abandoned + failed), as in the run summary; `None` when no
    /// session ended.
    pub fn abandon_rate(&self) -> Option<f64> {
        let ended = self.completed + self.abandoned + self.failed;
        (ended > 0).then(|| self.abandoned as f64 / ended as f64)
    }
}

/// How day charts group days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One point per day.
    Day,
    /// One point per week.
    Week,
    /// One point per month.
    Month,
}

impl Granularity {
    /// The grouping that keeps `days` days legible.
    pub fn for_days(days: usize) -> Self {
        if days <= MAX_DAILY_POINTS {
            Granularity::Day
        } else if days <= MAX_WEEKLY_DAYS {
            Granularity::Week
        } else {
            Granularity::Month
        }
    }

    /// "day", "week" or "month".
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }
}

/// How periods are lined up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Calendar weeks (Monday to Sunday) and months, labelled with dates.
    Calendar,
    /// Counted from the run's first day (days 1–7 are week 1, 30-day months), labelled
    /// "day N": lines two runs up when they started on different dates.
    RunDay,
}

/// Days grouped into one point of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    /// Axis label.
    pub label: String,
    /// Tooltip label (says when the period is partial).
    pub title: String,
    /// Days of the run in the period.
    pub days: u32,
    /// Sums over those days.
    pub totals: DayFigures,
}

impl Period {
    /// A total per day of the period (so partial weeks and months are not dips).
    pub fn per_day(&self, total: f64) -> f64 {
        total / f64::from(self.days.max(1))
    }
}

/// Groups `days` (consecutive, oldest first) by `granularity`.
pub fn periods(days: &[DayFigures], granularity: Granularity, align: Alignment) -> Vec<Period> {
    let mut out: Vec<(String, Period)> = Vec::new();
    for (i, d) in days.iter().enumerate() {
        let (key, label, full_days) = match (granularity, align) {
            (Granularity::Day, Alignment::Calendar) => {
                let l = d.date.format("%Y-%m-%d").to_string();
                (l.clone(), l, 1)
            }
            (Granularity::Day, Alignment::RunDay) => {
                let l = format!("day {}", i + 1);
                (l.clone(), l, 1)
            }
            (Granularity::Week, Alignment::Calendar) => {
                let monday =
                    d.date - Duration::days(i64::from(d.date.weekday().num_days_from_monday()));
                let l = monday.format("%Y-%m-%d").to_string();
                (l.clone(), l, 7)
            }
            (Granularity::Week, Alignment::RunDay) => {
                let l = format!("day {}", i / 7 * 7 + 1);
                (l.clone(), l, 7)
            }
            (Granularity::Month, Alignment::Calendar) => {
                let l = d.date.format("%Y-%m").to_string();
                let next = if d.date.month() == 12 {
                    NaiveDate::from_ymd_opt(d.date.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(d.date.year(), d.date.month() + 1, 1)
                };
                let len = next
                    .zip(d.date.with_day(1))
                    .map_or(30, |(n, f)| (n - f).num_days() as u32);
                (l.clone(), l, len)
            }
            (Granularity::Month, Alignment::RunDay) => {
                let l = format!("day {}", i / 30 * 30 + 1);
                (l.clone(), l, 30)
            }
        };
        match out.last_mut() {
            Some((k, p)) if *k == key => {
                p.days += 1;
                p.totals.add(d);
            }
            _ => out.push((
                key,
                Period {
                    label: label.clone(),
                    title: label,
                    days: 1,
                    totals: *d,
                },
            )),
        }
        if let Some((_, p)) = out.last_mut() {
            p.title = match granularity {
                Granularity::Day => p.label.clone(),
                g if p.days < full_days => {
                    format!("{} {} ({} of {full_days} days)", g.name(), p.label, p.days)
                }
                g => format!("{} {}", g.name(), p.label),
            };
        }
    }
    out.into_iter().map(|(_, p)| p).collect()
}

/// Sessions through the shopping steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Funnel {
    /// Sessions started.
    pub sessions: u64,
    /// Sessions with at least one product view.
    pub viewed: u64,
    /// Sessions with at least one cart add.
    pub carted: u64,
    /// Sessions that placed an order.
    pub ordered: u64,
}

/// Metrics of one or more consecutive intervals (simulated hours) of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalFigures {
    /// First interval number.
    pub first_seq: u64,
    /// Last interval number.
    pub last_seq: u64,
    /// Wall seconds from the run's creation to the end of the last interval.
    pub wall_seconds: f64,
    /// Simulated time at the end of the last interval.
    pub sim_time: DateTime<Utc>,
    /// Requests.
    pub requests: u64,
    /// Latency over every endpoint.
    pub overall: LatencySummary,
    /// Latency per endpoint (endpoints with requests).
    pub endpoints: BTreeMap<Endpoint, LatencySummary>,
    /// Requests that ended in an error, by outcome (errors only).
    pub errors: BTreeMap<Outcome, u64>,
    /// Behaviour script errors.
    pub script_errors: u64,
}

impl IntervalFigures {
    /// Every error: request errors and script errors.
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.script_errors
    }
}

/// Offers of one coupon type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferType {
    /// `frontstore`, `category`, `brand` (as stored).
    pub kind: String,
    /// Assigned within the run's window.
    pub assigned: u64,
    /// Of those, redeemed by an order.
    pub redeemed: u64,
}

/// Which group of the offer experiment a shopper is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Gets offers.
    Treated,
    /// Gets no offers (the control group).
    Holdout,
    /// Never had an offer refresh, so not assigned to either group.
    Unassigned,
}

impl Group {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Group::Treated => "treated",
            Group::Holdout => "holdout",
            Group::Unassigned => "no offer refresh",
        }
    }

    fn from_flag(flag: Option<i64>) -> Self {
        match flag {
            Some(0) => Group::Treated,
            Some(_) => Group::Holdout,
            None => Group::Unassigned,
        }
    }
}

/// One group of shoppers (the run's agents) and what they did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupFigures {
    /// Agents of the run in the group.
    pub shoppers: u64,
    /// Sessions they started.
    pub sessions: u64,
    /// Orders they placed.
    pub orders: u64,
    /// Sum of the orders' final totals.
    pub spend: Money,
}

impl GroupFigures {
    /// Orders per shopper (`None` for an empty group).
    pub fn orders_per_shopper(&self) -> Option<f64> {
        (self.shoppers > 0).then(|| self.orders as f64 / self.shoppers as f64)
    }

    /// Spend per shopper (`None` for an empty group).
    pub fn spend_per_shopper(&self) -> Option<f64> {
        (self.shoppers > 0).then(|| self.spend.to_f64() / self.shoppers as f64)
    }

    /// Orders per started session (`None` without sessions).
    pub fn conversion(&self) -> Option<f64> {
        (self.sessions > 0).then(|| self.orders as f64 / self.sessions as f64)
    }
}

/// Everything a run report shows.
#[derive(Debug, Clone)]
pub struct ReportData {
    /// The run's record.
    pub run: RunRecord,
    /// The run summary (as `shopsim runs show` prints it).
    pub summary: RunSummary,
    /// The run's time zone (IANA name) used for days, hours and weekdays.
    pub timezone: Tz,
    /// Set when the configured time zone was missing or unknown and UTC was used instead.
    pub timezone_note: Option<String>,
    /// Every day of the run, oldest first, without gaps.
    pub days: Vec<DayFigures>,
    /// The shopping funnel.
    pub funnel: Funnel,
    /// Orders by local hour of day (0–23).
    pub orders_by_hour: [u64; 24],
    /// Orders by local weekday, Monday first.
    pub orders_by_weekday: [u64; 7],
    /// Metrics over time: one entry per group of consecutive intervals.
    pub intervals: Vec<IntervalFigures>,
    /// Intervals (simulated hours) merged into one entry of `intervals`.
    pub intervals_per_point: u64,
    /// Latency over every endpoint and interval.
    pub latency: LatencySummary,
    /// Offers by coupon type.
    pub offers_by_type: Vec<OfferType>,
    /// Shoppers by offer group.
    pub groups: BTreeMap<Group, GroupFigures>,
}

impl ReportData {
    /// The figures of a group (zeros when nobody is in it).
    pub fn group(&self, g: Group) -> GroupFigures {
        self.groups.get(&g).copied().unwrap_or_default()
    }
}

/// The run's calendar time zone: `config["timezone"]`, UTC when missing or unknown (with a
/// note saying so).
pub fn run_timezone(config: &Json) -> (Tz, Option<String>) {
    match config.get("timezone").and_then(Json::as_str) {
        None => (
            Tz::UTC,
            Some("the run's configuration names no time zone; UTC is used".into()),
        ),
        Some(name) => match name.parse::<Tz>() {
            Ok(tz) => (tz, None),
            Err(_) => (
                Tz::UTC,
                Some(format!(
                    "the run's time zone `{name}` is unknown here; UTC is used"
                )),
            ),
        },
    }
}

/// Reads everything the report of `run_id` shows.
pub async fn load(db: &Db, run_id: &str) -> Result<ReportData, ReportError> {
    load_with(db, run_id, None).await
}

/// The number of the run's last metrics interval (0 without intervals).
pub async fn last_interval(db: &Db, run_id: &str) -> Result<u64, ReportError> {
    let tx = db.read().await?;
    let row = tx
        .query_one(
            "SELECT MAX(seq) AS n FROM sim_metrics WHERE run_id = $1",
            vec![run_id.to_string().into()],
        )
        .await?;
    tx.commit().await?;
    Ok(row.opt_i64("n")?.map_or(0, count))
}

/// [`load`], merging `intervals_per_point` intervals into each point of the interval charts
/// (`None`: as many as keep [`MAX_INTERVAL_POINTS`]). Two runs loaded with the same value
/// have their points at the same simulated hours.
pub async fn load_with(
    db: &Db,
    run_id: &str,
    intervals_per_point: Option<u64>,
) -> Result<ReportData, ReportError> {
    load_paged(db, run_id, intervals_per_point, Pages::default()).await
}

/// [`load_with`], reading metrics intervals `pages` at a time (the data are the same for any
/// size; smaller pages hold less in memory and take more queries).
pub async fn load_paged(
    db: &Db,
    run_id: &str,
    intervals_per_point: Option<u64>,
    pages: Pages,
) -> Result<ReportData, ReportError> {
    let pages = Pages {
        intervals: pages.intervals.max(1),
    };
    let run = require_run(db, run_id).await?;
    let metrics = stored_snapshot(db, run_id).await?;
    let (summary, orders_by_date) =
        RunSummary::with_orders_by_date(db, run_id, &metrics, &WallInfo::from_record(&run)).await?;
    let (timezone, timezone_note) = run_timezone(&run.config);
    let orders_by_hour = summary.shopping.orders_by_hour;
    let orders_by_weekday = summary.shopping.orders_by_weekday;

    let tx = db.read().await?;
    let mut days = session_days(&tx, run_id).await?;
    for (date, o) in orders_by_date {
        let d = days.entry(date).or_insert_with(|| DayFigures::empty(date));
        d.orders += o.orders;
        d.revenue += o.revenue;
    }
    let funnel = funnel(&tx, run_id).await?;
    let offers_by_type = offers_by_type(&tx, &run).await?;
    let groups = groups(&tx, run_id).await?;
    let (intervals, intervals_per_point, latency) =
        intervals(&tx, &run, intervals_per_point, pages.intervals).await?;
    tx.commit().await?;

    // Every day of the run, plus any day that has data (an order just after midnight).
    let first = run.sim_start.with_timezone(&timezone).date_naive();
    let last = (summary.sim_reached - Duration::nanoseconds(1))
        .max(run.sim_start)
        .with_timezone(&timezone)
        .date_naive();
    let first = days.keys().next().copied().map_or(first, |d| d.min(first));
    let last = days.keys().last().copied().map_or(last, |d| d.max(last));
    let days = first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| {
            days.get(&d)
                .copied()
                .unwrap_or_else(|| DayFigures::empty(d))
        })
        .collect();

    Ok(ReportData {
        run,
        summary,
        timezone,
        timezone_note,
        days,
        funnel,
        orders_by_hour,
        orders_by_weekday,
        intervals,
        intervals_per_point,
        latency,
        offers_by_type,
        groups,
    })
}

fn count(n: i64) -> u64 {
    n.max(0) as u64
}

/// Sessions by simulated date (the run's calendar) and status, counted in SQL.
async fn session_days(
    tx: &Tx,
    run_id: &str,
) -> Result<BTreeMap<NaiveDate, DayFigures>, ReportError> {
    let rows = tx
        .query(
            "SELECT sim_date, status, COUNT(*) AS n FROM sim_sessions WHERE run_id = $1 \
             GROUP BY sim_date, status",
            vec![run_id.to_string().into()],
        )
        .await?;
    let mut days: BTreeMap<NaiveDate, DayFigures> = BTreeMap::new();
    for r in &rows {
        let date = r.date("sim_date")?;
        let n = count(r.i64("n")?);
        let d = days.entry(date).or_insert_with(|| DayFigures::empty(date));
        d.planned += n;
        match r.string("status")?.as_str() {
            "planned" => {}
            "completed" => {
                d.started += n;
                d.completed += n;
            }
            "abandoned" => {
                d.started += n;
                d.abandoned += n;
            }
            "failed" => {
                d.started += n;
                d.failed += n;
            }
            _ => d.started += n,
        }
    }
    Ok(days)
}

async fn funnel(tx: &Tx, run_id: &str) -> Result<Funnel, ReportError> {
    let run = || sea_orm::Value::from(run_id.to_string());
    let sessions_sql = run_session_ids("$1");
    let started = tx
        .query_one(
            "SELECT COUNT(*) AS n FROM sim_sessions WHERE run_id = $1 AND status <> 'planned'",
            vec![run()],
        )
        .await?;
    let mut steps: BTreeMap<String, u64> = BTreeMap::new();
    for r in tx
        .query(
            &format!(
                "SELECT e.event_type, COUNT(DISTINCT e.session_id) AS n \
                 FROM shopping_session_events e WHERE e.session_id IN ({sessions_sql}) \
                 AND e.event_type IN ('view_product', 'cart_add_item') GROUP BY e.event_type"
            ),
            vec![run()],
        )
        .await?
    {
        steps.insert(r.string("event_type")?, count(r.i64("n")?));
    }
    let ordered = tx
        .query_one(
            &format!(
                "SELECT COUNT(DISTINCT o.shopping_session_id) AS n FROM orders o \
                 WHERE o.shopping_session_id IN ({sessions_sql})"
            ),
            vec![run()],
        )
        .await?;
    Ok(Funnel {
        sessions: count(started.i64("n")?),
        viewed: steps.get("view_product").copied().unwrap_or(0),
        carted: steps.get("cart_add_item").copied().unwrap_or(0),
        ordered: count(ordered.i64("n")?),
    })
}

/// Offers assigned within the run's window by coupon type (the summary's definition).
async fn offers_by_type(tx: &Tx, run: &RunRecord) -> Result<Vec<OfferType>, ReportError> {
    let c = tx.codec();
    let rows = tx
        .query(
            &format!(
                "SELECT c.type AS kind, COUNT(*) AS n, \
                   COALESCE(SUM(CASE WHEN uc.status = 'used' THEN 1 ELSE 0 END), 0) AS used \
                 FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id \
                 WHERE uc.user_id IN ({}) AND uc.assigned_at >= $2 AND uc.assigned_at <= $3 \
                 GROUP BY c.type",
                run_user_ids("$1")
            ),
            vec![
                run.run_id.clone().into(),
                c.ts(run.sim_start),
                c.ts(run.sim_end),
            ],
        )
        .await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(OfferType {
                kind: r.string("kind")?,
                assigned: count(r.i64("n")?),
                redeemed: count(r.i64("used")?),
            })
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    out.sort_by(|a, b| a.kind.cmp(&b.kind));
    Ok(out)
}

/// Shoppers, sessions, orders and spend of the holdout and treated groups. The group is the
/// `user_offer_cycles.is_holdout` flag the shop recorded, read as the export reads it.
async fn groups(tx: &Tx, run_id: &str) -> Result<BTreeMap<Group, GroupFigures>, ReportError> {
    let run = || sea_orm::Value::from(run_id.to_string());
    let mut out: BTreeMap<Group, GroupFigures> = BTreeMap::new();
    for r in tx
        .query(
            &format!(
                "SELECT {HOLDOUT}, COUNT(*) AS n FROM agents a \
                 LEFT JOIN user_offer_cycles uoc ON uoc.user_id = a.user_id \
                 WHERE a.agent_id IN ({}) GROUP BY 1",
                run_agent_ids("$1")
            ),
            vec![run()],
        )
        .await?
    {
        let g = Group::from_flag(r.opt_i64("holdout")?);
        out.entry(g).or_default().shoppers += count(r.i64("n")?);
    }
    for r in tx
        .query(
            &format!(
                "SELECT {HOLDOUT}, COUNT(*) AS n FROM sim_sessions s \
                 JOIN agents a ON a.agent_id = s.agent_id \
                 LEFT JOIN user_offer_cycles uoc ON uoc.user_id = a.user_id \
                 WHERE s.run_id = $1 AND s.status <> 'planned' GROUP BY 1"
            ),
            vec![run()],
        )
        .await?
    {
        let g = Group::from_flag(r.opt_i64("holdout")?);
        out.entry(g).or_default().sessions += count(r.i64("n")?);
    }
    for r in tx
        .query(
            &format!(
                "SELECT {HOLDOUT}, COUNT(*) AS n, COALESCE(SUM(o.final_total), 0) AS spend \
                 FROM orders o JOIN sim_sessions s ON s.session_id = o.shopping_session_id \
                 LEFT JOIN user_offer_cycles uoc ON uoc.user_id = o.user_id \
                 WHERE s.run_id = $1 GROUP BY 1"
            ),
            vec![run()],
        )
        .await?
    {
        let g = Group::from_flag(r.opt_i64("holdout")?);
        let e = out.entry(g).or_default();
        e.orders += count(r.i64("n")?);
        e.spend += r.money("spend")?;
    }
    Ok(out)
}

/// The histograms of one chart point, merged as rows arrive.
struct Bucket {
    first_seq: u64,
    last_seq: u64,
    wall: DateTime<Utc>,
    sim: DateTime<Utc>,
    requests: u64,
    endpoints: BTreeMap<Endpoint, Histogram<u64>>,
    errors: BTreeMap<Outcome, u64>,
    script_errors: u64,
}

fn empty_histogram() -> Result<Histogram<u64>, MetricsError> {
    metrics::merge(std::iter::empty())
}

fn add_histogram(into: &mut Histogram<u64>, h: &Histogram<u64>) -> Result<(), MetricsError> {
    into.add(h)
        .map_err(|e| MetricsError::Decode(format!("{e:?}")))
}

impl Bucket {
    fn new(seq: u64, wall: DateTime<Utc>, sim: DateTime<Utc>) -> Result<Self, MetricsError> {
        Ok(Bucket {
            first_seq: seq,
            last_seq: seq,
            wall,
            sim,
            requests: 0,
            endpoints: BTreeMap::new(),
            errors: BTreeMap::new(),
            script_errors: 0,
        })
    }

    /// The point's figures; adds its latency to `total`. Each stored histogram is added once
    /// (to its endpoint), the endpoints once per point: adding is a pass over every slot.
    fn finish(
        self,
        created: DateTime<Utc>,
        total: &mut Histogram<u64>,
    ) -> Result<IntervalFigures, MetricsError> {
        let mut overall = empty_histogram()?;
        for h in self.endpoints.values() {
            add_histogram(&mut overall, h)?;
        }
        add_histogram(total, &overall)?;
        Ok(IntervalFigures {
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            wall_seconds: (self.wall - created).num_milliseconds().max(0) as f64 / 1000.0,
            sim_time: self.sim,
            requests: self.requests,
            overall: LatencySummary::from_histogram(&overall),
            endpoints: self
                .endpoints
                .iter()
                .map(|(e, h)| (*e, LatencySummary::from_histogram(h)))
                .collect(),
            errors: self.errors,
            script_errors: self.script_errors,
        })
    }
}

/// The stored intervals (all shards), `per_point` (default: enough to keep at most
/// [`MAX_INTERVAL_POINTS`] points) merged into each point, and the latency over all of them.
async fn intervals(
    tx: &Tx,
    run: &RunRecord,
    per_point: Option<u64>,
    page: usize,
) -> Result<(Vec<IntervalFigures>, u64, LatencySummary), ReportError> {
    let max_seq = tx
        .query_one(
            "SELECT MAX(seq) AS n FROM sim_metrics WHERE run_id = $1",
            vec![run.run_id.clone().into()],
        )
        .await?
        .opt_i64("n")?
        .map_or(0, count);
    let per_point = per_point
        .unwrap_or_else(|| (max_seq + 1).div_ceil(MAX_INTERVAL_POINTS as u64))
        .max(1);
    let mut total = empty_histogram()?;
    let mut out = Vec::new();
    let mut current: Option<(u64, Bucket)> = None;
    // Read a page at a time, after the last (seq, shard) read.
    let mut after: Option<(i64, i64)> = None;
    loop {
        let mut values = vec![run.run_id.clone().into()];
        let from = after.map_or("", |(seq, shard)| {
            values.extend([seq.into(), shard.into()]);
            "AND (seq > $2 OR (seq = $2 AND shard > $3)) "
        });
        let rows = tx
            .query(
                &format!(
                    "SELECT shard, seq, sim_time, wall_time, counters, histograms \
                     FROM sim_metrics WHERE run_id = $1 {from}\
                     ORDER BY seq, shard LIMIT {page}"
                ),
                values,
            )
            .await?;
        for r in &rows {
            add_interval(r, run, per_point, &mut current, &mut out, &mut total)?;
        }
        match rows.last() {
            Some(last) if rows.len() == page => {
                after = Some((last.i64("seq")?, last.i64("shard")?));
            }
            _ => break,
        }
    }
    if let Some((_, b)) = current {
        out.push(b.finish(run.created_at, &mut total)?);
    }
    Ok((out, per_point, LatencySummary::from_histogram(&total)))
}

/// Adds one `sim_metrics` row to the chart point it falls in (`per_point` intervals each),
/// finishing the previous point into `out` when this row starts a new one.
fn add_interval(
    r: &crate::store::Row,
    run: &RunRecord,
    per_point: u64,
    current: &mut Option<(u64, Bucket)>,
    out: &mut Vec<IntervalFigures>,
    total: &mut Histogram<u64>,
) -> Result<(), ReportError> {
    let seq = count(r.i64("seq")?);
    let at = || {
        format!(
            "sim_metrics row (run {}, shard {}, seq {seq})",
            run.run_id,
            r.i64("shard").unwrap_or(-1)
        )
    };
    let key = seq / per_point;
    if current.as_ref().is_some_and(|(k, _)| *k != key)
        && let Some((_, b)) = current.take()
    {
        out.push(b.finish(run.created_at, total)?);
    }
    let wall = r.ts("wall_time")?;
    let sim = r.ts("sim_time")?;
    let (_, b) = match current {
        Some(point) => point,
        None => current.insert((key, Bucket::new(seq, wall, sim)?)),
    };
    b.last_seq = b.last_seq.max(seq);
    b.wall = b.wall.max(wall);
    b.sim = b.sim.max(sim);
    let counters: IntervalCounters = serde_json::from_value(r.json("counters")?)
        .map_err(|e| ReportError::Invalid(format!("{}: counters: {e}", at())))?;
    for outcomes in counters.outcomes.values() {
        for (o, n) in outcomes {
            b.requests += n;
            if o.is_error() {
                *b.errors.entry(*o).or_default() += n;
            }
        }
    }
    b.script_errors += counters
        .counters
        .get(&Counter::ScriptErrors)
        .copied()
        .unwrap_or(0);
    if let Some(text) = r.opt_string("histograms")? {
        let h: IntervalHistograms = serde_json::from_str(&text)
            .map_err(|e| ReportError::Invalid(format!("{}: histograms: {e}", at())))?;
        for (e, s) in &h.latency {
            let decoded = metrics::decode(s)?;
            match b.endpoints.entry(*e) {
                std::collections::btree_map::Entry::Occupied(o) => {
                    add_histogram(o.into_mut(), &decoded)?
                }
                // The first of the point: kept as it is, no pass over its slots.
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(decoded);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32, orders: u64) -> DayFigures {
        DayFigures {
            orders,
            completed: orders,
            abandoned: 1,
            ..DayFigures::empty(NaiveDate::from_ymd_opt(y, m, d).unwrap())
        }
    }

    #[test]
    fn granularity_keeps_long_runs_legible() {
        assert_eq!(Granularity::for_days(14), Granularity::Day);
        assert_eq!(Granularity::for_days(92), Granularity::Day);
        assert_eq!(Granularity::for_days(366), Granularity::Week);
        assert_eq!(Granularity::for_days(1000), Granularity::Month);
    }

    #[test]
    fn weeks_are_calendar_weeks_with_partial_ends() {
        // 2024-01-03 is a Wednesday: the first week has 5 days.
        let days: Vec<_> = NaiveDate::from_ymd_opt(2024, 1, 3)
            .unwrap()
            .iter_days()
            .take(12)
            .map(|d| DayFigures {
                orders: 2,
                ..DayFigures::empty(d)
            })
            .collect();
        let weeks = periods(&days, Granularity::Week, Alignment::Calendar);
        assert_eq!(weeks.len(), 2);
        assert_eq!(weeks[0].label, "2024-01-01");
        assert_eq!(weeks[0].days, 5);
        assert_eq!(weeks[0].title, "week 2024-01-01 (5 of 7 days)");
        assert_eq!(weeks[0].totals.orders, 10);
        assert_eq!(weeks[0].per_day(weeks[0].totals.orders as f64), 2.0);
        assert_eq!(weeks[1].days, 7);
        let run_weeks = periods(&days, Granularity::Week, Alignment::RunDay);
        assert_eq!(run_weeks.len(), 2);
        assert_eq!(run_weeks[0].label, "day 1");
        assert_eq!(run_weeks[1].label, "day 8");
        assert_eq!(run_weeks[1].days, 5);
    }

    #[test]
    fn months_and_rates_sum_before_dividing() {
        let days = vec![day(2024, 1, 31, 3), day(2024, 2, 1, 1), day(2024, 2, 2, 0)];
        let months = periods(&days, Granularity::Month, Alignment::Calendar);
        assert_eq!(months.len(), 2);
        assert_eq!(months[1].label, "2024-02");
        assert_eq!(months[1].title, "month 2024-02 (2 of 29 days)");
        // February: 1 completed + 0 completed, 2 abandoned → 2 / 3.
        let rate = months[1].totals.abandon_rate().unwrap();
        assert!((rate - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(DayFigures::empty(days[0].date).abandon_rate(), None);
    }

    #[test]
    fn timezone_comes_from_the_config() {
        let (tz, note) = run_timezone(&serde_json::json!({"timezone": "Europe/Berlin"}));
        assert_eq!(tz, Tz::Europe__Berlin);
        assert!(note.is_none());
        let (tz, note) = run_timezone(&serde_json::json!({"timezone": "Mars/Olympus"}));
        assert_eq!(tz, Tz::UTC);
        assert!(note.unwrap().contains("Mars/Olympus"));
        assert_eq!(run_timezone(&Json::Null).0, Tz::UTC);
    }

    #[test]
    fn groups_divide_safely() {
        let g = GroupFigures::default();
        assert_eq!(g.orders_per_shopper(), None);
        assert_eq!(g.conversion(), None);
        let g = GroupFigures {
            shoppers: 4,
            sessions: 10,
            orders: 2,
            spend: Money::cents(1000),
        };
        assert_eq!(g.orders_per_shopper(), Some(0.5));
        assert_eq!(g.spend_per_shopper(), Some(2.5));
        assert_eq!(g.conversion(), Some(0.2));
        assert_eq!(Group::from_flag(Some(1)), Group::Holdout);
        assert_eq!(Group::from_flag(Some(0)), Group::Treated);
        assert_eq!(Group::from_flag(None), Group::Unassigned);
    }
}
