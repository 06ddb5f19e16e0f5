//! The two pages: a run's report ([`run_page`]) and the comparison of two runs
//! ([`compare_page`]), composed from [`ReportData`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::data::{
    Alignment, DayFigures, Granularity, Group, GroupFigures, IntervalFigures, Period, ReportData,
    periods,
};
use super::html::{self, Card, Td, escape};
use super::svg::{self, Bars, Chart, HBar, Series, Unit, XAxis};
use crate::money::Money;
use crate::sim::metrics::{Endpoint, Outcome};

/// Request errors in display order.
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Money with thousands separators: `12,345.67`.
pub fn money(m: Money) -> String {
    let sign = if m.as_cents() < 0 { "-" } else { "" };
    let abs = m.as_cents().unsigned_abs();
    format!("{sign}{}.{:02}", thousands(abs / 100), abs % 100)
}

/// A money amount held as a float (per-shopper figures): two decimals, separators.
fn money_f(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    money(Money::cents((v * 100.0).round() as i64))
}

fn pct(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or("n/a".into(), |v| format!("{:.1}%", v * 100.0))
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den != 0.0 && num.is_finite() && den.is_finite()).then(|| num / den)
}

fn dec2(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or("n/a".into(), |v| format!("{v:.2}"))
}

fn ms(v: f64) -> String {
    format!("{v:.1}")
}

/// A wall duration for text: `45.2 s`, `12 min 30 s`, `3 h 05 min`.
pub fn wall(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "n/a".into();
    }
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let s = seconds.round() as u64;
    if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, s % 3600 / 60)
    }
}

/// A wall offset for axes: `0s`, `45s`, `12m`, `12m30s`, `3h`, `3h05m`.
fn wall_tick(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return String::new();
    }
    if v < 60.0 {
        return format!("{}s", si_seconds(v));
    }
    let s = v.round() as u64;
    if s < 3600 {
        match s % 60 {
            0 => format!("{}m", s / 60),
            r => format!("{}m{r:02}s", s / 60),
        }
    } else {
        match s % 3600 / 60 {
            0 => format!("{}h", s / 3600),
            m => format!("{}h{m:02}m", s / 3600),
        }
    }
}

fn si_seconds(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn caption_days(g: Granularity, align: Alignment) -> &'static str {
    match (g, align) {
        (Granularity::Day, _) => "one point per simulated day",
        (Granularity::Week, Alignment::Calendar) => {
            "one point per calendar week (Monday–Sunday), as a daily average; partial weeks are averaged over their days in the run"
        }
        (Granularity::Month, Alignment::Calendar) => {
            "one point per calendar month, as a daily average; partial months are averaged over their days in the run"
        }
        (Granularity::Week, Alignment::RunDay) => {
            "one point per 7 days of each run, as a daily average"
        }
        (Granularity::Month, Alignment::RunDay) => {
            "one point per 30 days of each run, as a daily average"
        }
    }
}

/// Per-day averages of one figure over periods.
fn per_day(ps: &[Period], f: impl Fn(&DayFigures) -> f64) -> Vec<f64> {
    ps.iter().map(|p| p.per_day(f(&p.totals))).collect()
}

fn header(title: &str, lines: &[String]) -> String {
    let mut out = format!("<header><h1>{}</h1>", escape(title));
    for l in lines {
        out.push_str(&format!("<p>{}</p>", escape(l)));
    }
    out.push_str("</header>");
    out
}

fn footer(rendered_at: DateTime<Utc>) -> String {
    format!(
        "<footer>Rendered by shopsim {} on {} from the run records in the database. \
         Self-contained: no script, nothing loaded from elsewhere.</footer>",
        escape(env!("CARGO_PKG_VERSION")),
        escape(&rendered_at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
    )
}

fn span_line(d: &ReportData) -> String {
    let s = &d.summary;
    let tz = d.timezone;
    format!(
        "Simulated {} → {} ({}, {:.1} simulated hours) · wall time {} · time scale {} (achieved {})",
        s.sim_start.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        s.sim_reached.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        tz.name(),
        s.simulated_hours,
        wall(s.wall_seconds),
        s.time_scale_target.as_deref().unwrap_or("unknown"),
        s.time_scale_achieved
            .map_or("n/a".to_string(), |a| format!("{a:.0}x"))
    )
}

fn errors_total(d: &ReportData) -> u64 {
    d.summary.errors.total()
}

fn requests_total(d: &ReportData) -> u64 {
    d.summary.requests.values().map(|e| e.requests).sum()
}

/// The report of one run.
pub fn run_page(d: &ReportData, rendered_at: DateTime<Utc>) -> String {
    let s = &d.summary;
    let mut body = header(
        &format!("Run report: {}", s.run_id),
        &[
            format!(
                "Persona set {} · {} agents · seed {} · status {}",
                s.persona_set, s.agents, s.seed, s.status
            ),
            span_line(d),
        ],
    );
    body.push_str(&html::nav(&[
        ("summary", "Summary"),
        ("days", "Days"),
        ("funnel", "Funnel"),
        ("timing", "When"),
        ("offers", "Offers"),
        ("uplift", "Uplift"),
        ("latency", "Latency"),
        ("errors", "Errors"),
        ("requests", "Requests"),
        ("config", "Configuration"),
    ]));
    body.push_str(&html::section("summary", "Summary", &summary_section(d)));
    body.push_str(&html::section(
        "days",
        "Sessions and orders over simulated time",
        &days_section(d),
    ));
    body.push_str(&html::section(
        "funnel",
        "Shopping funnel",
        &funnel_section(d),
    ));
    body.push_str(&html::section(
        "timing",
        "When orders are placed",
        &timing_section(d),
    ));
    body.push_str(&html::section(
        "offers",
        "Offer redemption",
        &offers_section(d),
    ));
    body.push_str(&html::section(
        "uplift",
        "Offer uplift: holdout vs treated shoppers",
        &uplift_section(d),
    ));
    body.push_str(&html::section(
        "latency",
        "Latency over wall time",
        &latency_section(d),
    ));
    body.push_str(&html::section(
        "errors",
        "Requests and errors over wall time",
        &errors_section(d),
    ));
    body.push_str(&html::section(
        "requests",
        "Requests, rejections and errors",
        &requests_section(d),
    ));
    body.push_str(&html::section(
        "config",
        "Configuration",
        &config_section(d),
    ));
    body.push_str(&footer(rendered_at));
    html::page(&format!("shopsim run {}", s.run_id), &body)
}

fn summary_section(d: &ReportData) -> String {
    let s = &d.summary;
    let conversion = ratio(s.orders as f64, s.sessions as f64);
    let aov = ratio(s.revenue.to_f64(), s.orders as f64);
    let requests = requests_total(d);
    let mut out = html::cards(&[
        Card::new(
            "orders",
            thousands(s.orders),
            format!("revenue {}", money(s.revenue)),
        ),
        Card::new(
            "sessions started",
            thousands(s.sessions),
            format!("of {} planned", thousands(s.sessions_planned)),
        ),
        Card::new("conversion", pct(conversion), "orders per started session"),
        Card::new(
            "abandon rate",
            pct(Some(s.abandon_rate)),
            format!("{} abandoned", thousands(s.abandoned)),
        ),
        Card::new(
            "average order",
            aov.map_or("n/a".into(), money_f),
            "final total",
        ),
        Card::new(
            "offers redeemed",
            thousands(s.offers_redeemed),
            format!("of {} assigned", thousands(s.offers_assigned)),
        ),
        Card::new(
            "errors",
            thousands(errors_total(d)),
            format!("{} requests", thousands(requests)),
        ),
        Card::new(
            "latency p95",
            format!("{} ms", ms(d.latency.p95_ms)),
            format!("p99 {} ms", ms(d.latency.p99_ms)),
        ),
    ]);
    if let Some(n) = &d.timezone_note {
        out.push_str(&html::note(n));
    }
    let rows: Vec<Vec<Td>> = vec![
        vec!["status".into(), s.status.to_string().into()],
        vec!["persona set".into(), s.persona_set.clone().into()],
        vec!["seed".into(), s.seed.to_string().into()],
        vec!["wall duration".into(), wall(s.wall_seconds).into()],
        vec![
            "simulated span".into(),
            format!(
                "{} → {} ({:.1} h)",
                s.sim_start.format("%Y-%m-%d %H:%M UTC"),
                s.sim_reached.format("%Y-%m-%d %H:%M UTC"),
                s.simulated_hours
            )
            .into(),
        ],
        vec!["time zone".into(), d.timezone.name().into()],
        vec![
            "time scale (target / achieved)".into(),
            format!(
                "{} / {}",
                s.time_scale_target.as_deref().unwrap_or("unknown"),
                s.time_scale_achieved
                    .map_or("n/a".to_string(), |a| format!("{a:.0}x"))
            )
            .into(),
        ],
        vec!["agents".into(), thousands(s.agents).into()],
        vec!["agent-days".into(), thousands(s.agent_days).into()],
        vec![
            "sessions (started / planned)".into(),
            format!(
                "{} / {}",
                thousands(s.sessions),
                thousands(s.sessions_planned)
            )
            .into(),
        ],
        vec![
            "sessions (completed / abandoned / failed)".into(),
            format!(
                "{} / {} / {}",
                thousands(s.sessions_completed),
                thousands(s.abandoned),
                thousands(s.sessions_failed)
            )
            .into(),
        ],
        vec!["orders".into(), thousands(s.orders).into()],
        vec!["revenue".into(), money(s.revenue).into()],
        vec!["abandon rate".into(), pct(Some(s.abandon_rate)).into()],
        vec![
            "offers (assigned / applied / redeemed)".into(),
            format!(
                "{} / {} / {}",
                thousands(s.offers_assigned),
                thousands(s.offers_applied),
                thousands(s.offers_redeemed)
            )
            .into(),
        ],
        vec!["events".into(), thousands(s.events).into()],
        vec!["requests".into(), thousands(requests).into()],
        vec!["errors".into(), thousands(errors_total(d)).into()],
    ];
    out.push_str(&html::table(&["", "value"], &rows));
    out
}

fn days_section(d: &ReportData) -> String {
    let g = Granularity::for_days(d.days.len());
    let ps = periods(&d.days, g, Alignment::Calendar);
    let labels: Vec<String> = ps.iter().map(|p| p.label.clone()).collect();
    let titles: Vec<String> = ps.iter().map(|p| p.title.clone()).collect();
    let x = || XAxis::Categories(labels.clone());
    let mut out = html::note(&format!(
        "{} days in the run's time zone ({}): {}. Sessions count by the day they were planned \
         for, orders by the local time they were placed.",
        d.days.len(),
        d.timezone.name(),
        caption_days(g, Alignment::Calendar)
    ));
    let chart = Chart::new(
        "Sessions started and orders per day",
        x(),
        vec![
            Series::new("sessions started", per_day(&ps, |t| t.started as f64)),
            Series::new("orders", per_day(&ps, |t| t.orders as f64)),
        ],
        Unit::Count,
    )
    .with_tooltips(titles.clone());
    out.push_str(&html::figure(
        "Sessions started and orders per day",
        &svg::line_chart(&chart),
    ));
    let chart = Chart::new(
        "Revenue per day",
        x(),
        vec![Series::new("revenue", per_day(&ps, |t| t.revenue.to_f64()))],
        Unit::Money,
    )
    .with_tooltips(titles.clone());
    out.push_str(&html::figure(
        "Revenue per day (sum of final totals)",
        &svg::bar_chart(&chart, Bars::Grouped),
    ));
    let chart = Chart::new(
        "Session outcomes per day",
        x(),
        vec![
            Series::new("completed", per_day(&ps, |t| t.completed as f64)),
            Series::new("abandoned", per_day(&ps, |t| t.abandoned as f64)),
            Series::new("failed", per_day(&ps, |t| t.failed as f64)),
        ],
        Unit::Count,
    )
    .with_tooltips(titles.clone());
    out.push_str(&html::figure(
        "Session outcomes per day",
        &svg::bar_chart(&chart, Bars::Stacked),
    ));
    let chart = Chart::new(
        "Abandonment rate per day",
        x(),
        vec![Series::with_gaps(
            "abandon rate",
            ps.iter().map(|p| p.totals.abandon_rate()).collect(),
        )],
        Unit::Percent,
    )
    .with_tooltips(titles);
    out.push_str(&html::figure(
        "Abandonment rate: abandoned / (completed + abandoned + failed)",
        &svg::line_chart(&chart),
    ));
    let rows: Vec<Vec<Td>> = ps
        .iter()
        .map(|p| {
            vec![
                p.title.clone().into(),
                thousands(p.totals.planned).into(),
                thousands(p.totals.started).into(),
                thousands(p.totals.orders).into(),
                money(p.totals.revenue).into(),
                pct(p.totals.abandon_rate()).into(),
            ]
        })
        .collect();
    out.push_str(&format!(
        "<details><summary>The figures as a table (totals per {})</summary>{}</details>",
        g.name(),
        html::table(
            &[
                g.name(),
                "sessions planned",
                "started",
                "orders",
                "revenue",
                "abandon rate",
            ],
            &rows
        )
    ));
    out
}

fn funnel_bars(d: &ReportData) -> Vec<HBar> {
    let f = d.funnel;
    let share = |n: u64, of: u64| pct(ratio(n as f64, of as f64));
    vec![
        HBar {
            label: "sessions started".into(),
            value: f.sessions as f64,
            note: thousands(f.sessions),
        },
        HBar {
            label: "viewed a product".into(),
            value: f.viewed as f64,
            note: format!(
                "{} · {} of sessions",
                thousands(f.viewed),
                share(f.viewed, f.sessions)
            ),
        },
        HBar {
            label: "added to cart".into(),
            value: f.carted as f64,
            note: format!(
                "{} · {} of sessions",
                thousands(f.carted),
                share(f.carted, f.sessions)
            ),
        },
        HBar {
            label: "placed an order".into(),
            value: f.ordered as f64,
            note: format!(
                "{} · {} of sessions · {} of carts",
                thousands(f.ordered),
                share(f.ordered, f.sessions),
                share(f.ordered, f.carted)
            ),
        },
    ]
}

fn funnel_section(d: &ReportData) -> String {
    let mut out = html::note(
        "Started sessions and how many reached each step (a session counts once per step, \
         however often it did it).",
    );
    out.push_str(&svg::hbar_chart(
        "Shopping funnel",
        &funnel_bars(d),
        Unit::Count,
    ));
    out
}

fn timing_section(d: &ReportData) -> String {
    let tz = d.timezone.name();
    let mut out = html::note(&format!(
        "Orders by the local time they were placed, in the run's time zone ({tz})."
    ));
    let hours: Vec<String> = (0..24).map(|h| format!("{h:02}")).collect();
    let chart = Chart::new(
        "Orders by hour of day",
        XAxis::Categories(hours.clone()),
        vec![Series::new(
            "orders",
            d.orders_by_hour.iter().map(|n| *n as f64),
        )],
        Unit::Count,
    )
    .with_tooltips(hours.iter().map(|h| format!("{h}:00–{h}:59")).collect());
    out.push_str(&html::figure(
        &format!("Orders by hour of day ({tz})"),
        &svg::bar_chart(&chart, Bars::Grouped),
    ));
    let chart = Chart::new(
        "Orders by weekday",
        XAxis::Categories(WEEKDAYS.iter().map(|s| s.to_string()).collect()),
        vec![Series::new(
            "orders",
            d.orders_by_weekday.iter().map(|n| *n as f64),
        )],
        Unit::Count,
    )
    .sized(960.0, 240.0);
    out.push_str(&html::figure(
        &format!("Orders by weekday ({tz})"),
        &svg::bar_chart(&chart, Bars::Grouped),
    ));
    out
}

fn offers_section(d: &ReportData) -> String {
    let s = &d.summary;
    let of_assigned = |n: u64| pct(ratio(n as f64, s.offers_assigned as f64));
    let mut out = html::note(
        "Assigned: offers given to the run's shoppers within its simulated window. Applied: \
         coupon applications to carts in the run's sessions (one offer can be applied in \
         several sessions). Redeemed: assigned offers used by an order.",
    );
    out.push_str(&svg::hbar_chart(
        "Offer redemption",
        &[
            HBar {
                label: "assigned".into(),
                value: s.offers_assigned as f64,
                note: thousands(s.offers_assigned),
            },
            HBar {
                label: "applied".into(),
                value: s.offers_applied as f64,
                note: format!(
                    "{} · {} of assigned",
                    thousands(s.offers_applied),
                    of_assigned(s.offers_applied)
                ),
            },
            HBar {
                label: "redeemed".into(),
                value: s.offers_redeemed as f64,
                note: format!(
                    "{} · {} of assigned",
                    thousands(s.offers_redeemed),
                    of_assigned(s.offers_redeemed)
                ),
            },
        ],
        Unit::Count,
    ));
    if !d.offers_by_type.is_empty() {
        let kinds: Vec<String> = d.offers_by_type.iter().map(|t| t.kind.clone()).collect();
        let chart = Chart::new(
            "Offers by coupon type",
            XAxis::Categories(kinds),
            vec![
                Series::new(
                    "assigned",
                    d.offers_by_type.iter().map(|t| t.assigned as f64),
                ),
                Series::new(
                    "redeemed",
                    d.offers_by_type.iter().map(|t| t.redeemed as f64),
                ),
            ],
            Unit::Count,
        )
        .sized(960.0, 240.0);
        out.push_str(&html::figure(
            "Offers by coupon type",
            &svg::bar_chart(&chart, Bars::Grouped),
        ));
        let rows: Vec<Vec<Td>> = d
            .offers_by_type
            .iter()
            .map(|t| {
                vec![
                    t.kind.clone().into(),
                    thousands(t.assigned).into(),
                    thousands(t.redeemed).into(),
                    pct(ratio(t.redeemed as f64, t.assigned as f64)).into(),
                ]
            })
            .collect();
        out.push_str(&html::table(
            &["coupon type", "assigned", "redeemed", "redemption rate"],
            &rows,
        ));
    }
    out
}

/// `b − a` as text with a sign, and the relative change, for a figure of `unit`.
fn difference(a: Option<f64>, b: Option<f64>, unit: Unit) -> (Td, Td) {
    let (Some(a), Some(b)) = (a.filter(|v| v.is_finite()), b.filter(|v| v.is_finite())) else {
        return ("n/a".into(), "n/a".into());
    };
    let d = b - a;
    let sign = if d > 0.0 { "+" } else { "" };
    let text = match unit {
        Unit::Percent => format!("{sign}{:.1} pp", d * 100.0),
        Unit::Money => format!("{sign}{}", money_f(d)),
        Unit::Millis => format!("{sign}{d:.1} ms"),
        Unit::Count if (d - d.round()).abs() < 1e-9 && d.abs() < 1e15 => {
            let minus = if d < 0.0 { "-" } else { sign };
            format!("{minus}{}", thousands(d.abs().round() as u64))
        }
        Unit::Count => format!("{sign}{d:.2}"),
    };
    let rel = match ratio(d, a.abs()) {
        Some(r) => Td::Signed(
            format!("{}{:.1}%", if r > 0.0 { "+" } else { "" }, r * 100.0),
            r,
        ),
        None => "n/a".into(),
    };
    (Td::Signed(text, d), rel)
}

fn uplift_rows(h: &GroupFigures, t: &GroupFigures) -> Vec<Vec<Td>> {
    let row = |name: &str,
               a: Option<f64>,
               b: Option<f64>,
               unit: Unit,
               show: &dyn Fn(Option<f64>) -> String| {
        let (d, r) = difference(a, b, unit);
        vec![name.into(), show(a).into(), show(b).into(), d, r]
    };
    let money_opt = |v: Option<f64>| v.map_or("n/a".into(), money_f);
    vec![
        row(
            "spend per shopper",
            h.spend_per_shopper(),
            t.spend_per_shopper(),
            Unit::Money,
            &money_opt,
        ),
        row(
            "orders per shopper",
            h.orders_per_shopper(),
            t.orders_per_shopper(),
            Unit::Count,
            &|v| dec2(v),
        ),
        row(
            "sessions per shopper",
            ratio(h.sessions as f64, h.shoppers as f64),
            ratio(t.sessions as f64, t.shoppers as f64),
            Unit::Count,
            &|v| dec2(v),
        ),
        row(
            "conversion (orders per session)",
            h.conversion(),
            t.conversion(),
            Unit::Percent,
            &|v| pct(v),
        ),
        row(
            "average order",
            ratio(h.spend.to_f64(), h.orders as f64),
            ratio(t.spend.to_f64(), t.orders as f64),
            Unit::Money,
            &money_opt,
        ),
    ]
}

fn uplift_section(d: &ReportData) -> String {
    let h = d.group(Group::Holdout);
    let t = d.group(Group::Treated);
    let u = d.group(Group::Unassigned);
    let mut out = html::note(
        "Shoppers are the run's agents. The holdout group gets no offers; the group is the \
         flag the shop recorded for each shopper at its offer refresh (user_offer_cycles, as \
         in the export). Shoppers never refreshed are in neither group. The difference is \
         treated − holdout; with few holdout shoppers it is noisy.",
    );
    let mut rows: Vec<Vec<Td>> = Vec::new();
    for (g, f) in [
        (Group::Holdout, h),
        (Group::Treated, t),
        (Group::Unassigned, u),
    ] {
        if g == Group::Unassigned && f == GroupFigures::default() {
            continue;
        }
        rows.push(vec![
            g.name().into(),
            thousands(f.shoppers).into(),
            thousands(f.sessions).into(),
            thousands(f.orders).into(),
            money(f.spend).into(),
            dec2(f.orders_per_shopper()).into(),
            f.spend_per_shopper().map_or("n/a".into(), money_f).into(),
            pct(f.conversion()).into(),
        ]);
    }
    out.push_str(&html::table(
        &[
            "group",
            "shoppers",
            "sessions",
            "orders",
            "spend",
            "orders / shopper",
            "spend / shopper",
            "conversion",
        ],
        &rows,
    ));
    if h.shoppers == 0 || t.shoppers == 0 {
        out.push_str(&html::note(
            "No uplift: the run has no shoppers in the holdout group or none in the treated group.",
        ));
        return out;
    }
    out.push_str(&html::table(
        &[
            "per shopper",
            "holdout",
            "treated",
            "difference",
            "relative",
        ],
        &uplift_rows(&h, &t),
    ));
    let groups = || XAxis::Categories(vec!["holdout".into(), "treated".into()]);
    let spend = Chart::new(
        "Spend per shopper",
        groups(),
        vec![Series::with_gaps(
            "",
            vec![h.spend_per_shopper(), t.spend_per_shopper()],
        )],
        Unit::Money,
    )
    .sized(520.0, 260.0);
    let orders = Chart::new(
        "Orders per shopper",
        groups(),
        vec![Series::with_gaps(
            "",
            vec![h.orders_per_shopper(), t.orders_per_shopper()],
        )],
        Unit::Count,
    )
    .sized(520.0, 260.0);
    out.push_str(&html::two_columns(
        &html::figure("Spend per shopper", &svg::bar_chart(&spend, Bars::Grouped)),
        &html::figure(
            "Orders per shopper",
            &svg::bar_chart(&orders, Bars::Grouped),
        ),
    ));
    out
}

/// Tooltip names of interval points: wall offset and simulated time.
fn interval_titles(d: &ReportData) -> Vec<String> {
    d.intervals
        .iter()
        .map(|i| {
            format!(
                "wall {} · simulated {}",
                wall_tick(i.wall_seconds),
                i.sim_time
                    .with_timezone(&d.timezone)
                    .format("%Y-%m-%d %H:%M")
            )
        })
        .collect()
}

fn wall_axis(d: &ReportData) -> XAxis {
    XAxis::Numeric {
        values: d.intervals.iter().map(|i| i.wall_seconds).collect(),
        labels: interval_titles(d),
        format: wall_tick,
    }
}

fn intervals_note(d: &ReportData) -> String {
    html::note(&format!(
        "{} point(s) from the run's stored metrics, {} simulated hour(s) each; x is wall time \
         since the run was created. Percentiles come from the HDR histograms of the point's \
         intervals merged exactly (never averaged).",
        d.intervals.len(),
        d.intervals_per_point
    ))
}

fn latency_section(d: &ReportData) -> String {
    let mut out = intervals_note(d);
    let pick = |f: fn(&IntervalFigures) -> f64| -> Vec<Option<f64>> {
        d.intervals
            .iter()
            .map(|i| (i.overall.count > 0).then(|| f(i)))
            .collect()
    };
    let chart = Chart::new(
        "Latency percentiles over all endpoints",
        wall_axis(d),
        vec![
            Series::with_gaps("p50", pick(|i| i.overall.p50_ms)),
            Series::with_gaps("p95", pick(|i| i.overall.p95_ms)),
            Series::with_gaps("p99", pick(|i| i.overall.p99_ms)),
        ],
        Unit::Millis,
    );
    out.push_str(&html::figure(
        "Latency p50 / p95 / p99, all endpoints",
        &svg::line_chart(&chart),
    ));
    let endpoints: BTreeSet<Endpoint> = d
        .intervals
        .iter()
        .flat_map(|i| i.endpoints.keys().copied())
        .collect();
    let series = Endpoint::ALL
        .into_iter()
        .filter(|e| endpoints.contains(e))
        .map(|e| {
            Series::with_gaps(
                e.name(),
                d.intervals
                    .iter()
                    .map(|i| {
                        i.endpoints
                            .get(&e)
                            .filter(|l| l.count > 0)
                            .map(|l| l.p95_ms)
                    })
                    .collect(),
            )
        })
        .collect();
    let chart = Chart::new(
        "p95 latency per endpoint",
        wall_axis(d),
        series,
        Unit::Millis,
    )
    .sized(960.0, 340.0);
    out.push_str(&html::figure(
        "p95 latency per endpoint",
        &svg::line_chart(&chart),
    ));
    out
}

fn errors_section(d: &ReportData) -> String {
    let mut out = intervals_note(d);
    let chart = Chart::new(
        "Requests per point",
        wall_axis(d),
        vec![Series::new(
            "requests",
            d.intervals.iter().map(|i| i.requests as f64),
        )],
        Unit::Count,
    )
    .sized(960.0, 240.0);
    out.push_str(&html::figure(
        "Requests per point",
        &svg::line_chart(&chart),
    ));
    let labels: Vec<String> = d
        .intervals
        .iter()
        .map(|i| wall_tick(i.wall_seconds))
        .collect();
    let mut series: Vec<Series> = Outcome::ALL
        .into_iter()
        .filter(|o| o.is_error())
        .filter(|o| d.intervals.iter().any(|i| i.errors.contains_key(o)))
        .map(|o| {
            Series::new(
                o.name(),
                d.intervals
                    .iter()
                    .map(|i| i.errors.get(&o).copied().unwrap_or(0) as f64),
            )
        })
        .collect();
    if d.intervals.iter().any(|i| i.script_errors > 0) {
        series.push(Series::new(
            "script",
            d.intervals.iter().map(|i| i.script_errors as f64),
        ));
    }
    let errors_svg = if series.is_empty() {
        svg::no_data(
            "Errors per point",
            if d.intervals.is_empty() {
                "No metrics recorded"
            } else {
                "No errors recorded"
            },
            960.0,
            120.0,
        )
    } else {
        let chart = Chart::new(
            "Errors per point",
            XAxis::Categories(labels),
            series,
            Unit::Count,
        )
        .with_tooltips(interval_titles(d));
        svg::bar_chart(&chart, Bars::Stacked)
    };
    out.push_str(&html::figure(
        "Errors per point, by class (business rejections are not errors)",
        &errors_svg,
    ));
    out
}

fn requests_section(d: &ReportData) -> String {
    let s = &d.summary;
    let mut rows: Vec<Vec<Td>> = Vec::new();
    for (name, e) in &s.requests {
        let ok = e.outcomes.get(&Outcome::Ok).copied().unwrap_or(0);
        let errors: u64 = e
            .outcomes
            .iter()
            .filter(|(o, _)| o.is_error())
            .map(|(_, n)| n)
            .sum();
        rows.push(vec![
            name.clone().into(),
            thousands(e.requests).into(),
            thousands(ok).into(),
            thousands(e.requests.saturating_sub(ok + errors)).into(),
            thousands(errors).into(),
            ms(e.latency.p50_ms).into(),
            ms(e.latency.p95_ms).into(),
            ms(e.latency.p99_ms).into(),
            ms(e.latency.max_ms).into(),
        ]);
    }
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str(&html::note("No requests recorded."));
    } else {
        let total = requests_total(d);
        let ok = d
            .summary
            .requests
            .values()
            .map(|e| e.outcomes.get(&Outcome::Ok).copied().unwrap_or(0))
            .sum::<u64>();
        let errors = s.errors.total() - s.errors.script;
        rows.push(vec![
            "total".into(),
            thousands(total).into(),
            thousands(ok).into(),
            thousands(total.saturating_sub(ok + errors)).into(),
            thousands(errors).into(),
            ms(d.latency.p50_ms).into(),
            ms(d.latency.p95_ms).into(),
            ms(d.latency.p99_ms).into(),
            ms(d.latency.max_ms).into(),
        ]);
        out.push_str(&html::table(
            &[
                "endpoint", "requests", "ok", "rejected", "errors", "p50 ms", "p95 ms", "p99 ms",
                "max ms",
            ],
            &rows,
        ));
    }
    let mut side = String::from("<h3>Business rejections (outcomes, not errors)</h3>");
    let rej: Vec<Vec<Td>> = s
        .business_rejections
        .iter()
        .map(|(k, v)| vec![k.clone().into(), thousands(*v).into()])
        .collect();
    side.push_str(&html::table(&["rejection", "requests"], &rej));
    let e = &s.errors;
    let errs: Vec<Vec<Td>> = [
        ("API 5xx", e.api_5xx),
        ("429 rate limited", e.rate_limited_429),
        ("other 4xx", e.other_4xx),
        ("timeouts", e.timeouts),
        ("connection", e.connection),
        ("database", e.db),
        ("script", e.script),
        ("total", e.total()),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.into(), thousands(v).into()])
    .collect();
    let mut errors_html = String::from("<h3>Errors</h3>");
    errors_html.push_str(&html::table(&["error", "count"], &errs));
    out.push_str(&html::two_columns(&side, &errors_html));
    if let Some(lag) = &s.lag {
        out.push_str("<h3>Release lag (paced mode)</h3>");
        out.push_str(&html::table(
            &["events", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            &[vec![
                thousands(lag.count).into(),
                ms(lag.p50_ms).into(),
                ms(lag.p95_ms).into(),
                ms(lag.p99_ms).into(),
                ms(lag.max_ms).into(),
            ]],
        ));
    }
    out.push_str("<h3>Session events by type</h3>");
    let mut ev: Vec<Vec<Td>> = s
        .events_by_type
        .iter()
        .map(|(k, v)| vec![k.clone().into(), thousands(*v).into()])
        .collect();
    ev.push(vec!["total".into(), thousands(s.events).into()]);
    out.push_str(&html::table(&["event type", "events"], &ev));
    out
}

fn config_section(d: &ReportData) -> String {
    let r = &d.run;
    let mut rows: Vec<Vec<Td>> = vec![
        vec!["created".into(), r.created_at.to_rfc3339().into()],
        vec!["updated".into(), r.updated_at.to_rfc3339().into()],
    ];
    if let Some(f) = r.finished_at {
        rows.push(vec!["finished".into(), f.to_rfc3339().into()]);
    }
    if let Some(c) = r.checkpoint_at {
        rows.push(vec![
            "last checkpoint (simulated)".into(),
            c.to_rfc3339().into(),
        ]);
    }
    let mut out = html::table(&["record", "wall clock (UTC)"], &rows);
    let config = serde_json::to_string_pretty(&r.config).unwrap_or_else(|_| r.config.to_string());
    out.push_str(&html::details("The run's configuration (JSON)", &config));
    out
}

// ---------------------------------------------------------------------------------------------
// Comparison

/// One key figure of both runs.
struct Figure {
    name: &'static str,
    a: Option<f64>,
    b: Option<f64>,
    unit: Unit,
}

fn show(v: Option<f64>, unit: Unit) -> String {
    match (v.filter(|v| v.is_finite()), unit) {
        (None, _) => "n/a".into(),
        (Some(v), Unit::Money) => money_f(v),
        (Some(v), Unit::Count) if (v - v.round()).abs() < 1e-9 && v.abs() < 1e15 => {
            if v < 0.0 {
                format!("-{}", thousands(v.abs() as u64))
            } else {
                thousands(v as u64)
            }
        }
        (Some(v), unit) => unit.value(v),
    }
}

fn key_figures(d: &ReportData) -> Vec<(&'static str, Option<f64>, Unit)> {
    let s = &d.summary;
    let h = d.group(Group::Holdout);
    let t = d.group(Group::Treated);
    let uplift = |f: fn(&GroupFigures) -> Option<f64>| match (f(&h), f(&t)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let requests = requests_total(d) as f64;
    let latency = |v: f64| (d.latency.count > 0).then_some(v);
    vec![
        ("agents", Some(s.agents as f64), Unit::Count),
        ("agent-days", Some(s.agent_days as f64), Unit::Count),
        ("simulated hours", Some(s.simulated_hours), Unit::Count),
        ("sessions started", Some(s.sessions as f64), Unit::Count),
        ("orders", Some(s.orders as f64), Unit::Count),
        ("revenue", Some(s.revenue.to_f64()), Unit::Money),
        (
            "average order",
            ratio(s.revenue.to_f64(), s.orders as f64),
            Unit::Money,
        ),
        (
            "orders per agent",
            ratio(s.orders as f64, s.agents as f64),
            Unit::Count,
        ),
        (
            "revenue per agent",
            ratio(s.revenue.to_f64(), s.agents as f64),
            Unit::Money,
        ),
        (
            "conversion (orders per session)",
            ratio(s.orders as f64, s.sessions as f64),
            Unit::Percent,
        ),
        ("abandon rate", Some(s.abandon_rate), Unit::Percent),
        (
            "offers assigned",
            Some(s.offers_assigned as f64),
            Unit::Count,
        ),
        ("offers applied", Some(s.offers_applied as f64), Unit::Count),
        (
            "offers redeemed",
            Some(s.offers_redeemed as f64),
            Unit::Count,
        ),
        (
            "redemption rate",
            ratio(s.offers_redeemed as f64, s.offers_assigned as f64),
            Unit::Percent,
        ),
        (
            "uplift: spend per shopper (treated − holdout)",
            uplift(GroupFigures::spend_per_shopper),
            Unit::Money,
        ),
        (
            "uplift: orders per shopper (treated − holdout)",
            uplift(GroupFigures::orders_per_shopper),
            Unit::Count,
        ),
        ("requests", Some(requests), Unit::Count),
        ("errors", Some(errors_total(d) as f64), Unit::Count),
        (
            "error rate (request errors / requests)",
            ratio((s.errors.total() - s.errors.script) as f64, requests),
            Unit::Percent,
        ),
        ("latency p50", latency(d.latency.p50_ms), Unit::Millis),
        ("latency p95", latency(d.latency.p95_ms), Unit::Millis),
        ("latency p99", latency(d.latency.p99_ms), Unit::Millis),
        ("wall seconds", Some(s.wall_seconds), Unit::Count),
        (
            "achieved time scale (x)",
            s.time_scale_achieved,
            Unit::Count,
        ),
    ]
}

fn figures(a: &ReportData, b: &ReportData) -> Vec<Figure> {
    key_figures(a)
        .into_iter()
        .zip(key_figures(b))
        .map(|((name, va, unit), (_, vb, _))| Figure {
            name,
            a: va,
            b: vb,
            unit,
        })
        .collect()
}

/// Values of `ps` under `len` labels (`None` past the run's end).
fn padded(values: Vec<Option<f64>>, len: usize) -> Vec<Option<f64>> {
    let mut v = values;
    v.resize(len, None);
    v
}

/// The comparison of two runs: key figures with differences, and each chart with both runs.
pub fn compare_page(a: &ReportData, b: &ReportData, rendered_at: DateTime<Utc>) -> String {
    let (ida, idb) = (&a.summary.run_id, &b.summary.run_id);
    let name_a = format!("A · {ida}");
    let name_b = format!("B · {idb}");
    let mut body = header(
        &format!("Run comparison: {ida} vs {idb}"),
        &[
            format!(
                "A: {ida} · persona set {} · {} agents · seed {} · status {}",
                a.summary.persona_set, a.summary.agents, a.summary.seed, a.summary.status
            ),
            format!("A: {}", span_line(a)),
            format!(
                "B: {idb} · persona set {} · {} agents · seed {} · status {}",
                b.summary.persona_set, b.summary.agents, b.summary.seed, b.summary.status
            ),
            format!("B: {}", span_line(b)),
        ],
    );
    body.push_str(&html::nav(&[
        ("figures", "Key figures"),
        ("days", "Days"),
        ("funnel", "Funnel"),
        ("timing", "When"),
        ("offers", "Offers & uplift"),
        ("latency", "Latency & errors"),
    ]));

    // Key figures.
    let rows: Vec<Vec<Td>> = figures(a, b)
        .into_iter()
        .map(|f| {
            let (d, r) = difference(f.a, f.b, f.unit);
            vec![
                f.name.into(),
                show(f.a, f.unit).into(),
                show(f.b, f.unit).into(),
                d,
                r,
            ]
        })
        .collect();
    let mut figures_html = html::note(
        "Differences are B − A; relative changes are (B − A) / A. Rates differ in percentage \
         points (pp). Colours show the sign of a difference (blue up, orange down), not \
         whether it is better or worse.",
    );
    figures_html.push_str(&html::table(
        &[
            "figure",
            &format!("A: {ida}"),
            &format!("B: {idb}"),
            "B − A",
            "relative",
        ],
        &rows,
    ));
    body.push_str(&html::section("figures", "Key figures", &figures_html));

    // Days, lined up by day of run.
    let g = Granularity::for_days(a.days.len().max(b.days.len()));
    let pa = periods(&a.days, g, Alignment::RunDay);
    let pb = periods(&b.days, g, Alignment::RunDay);
    let longer = if pa.len() >= pb.len() { &pa } else { &pb };
    let labels: Vec<String> = longer.iter().map(|p| p.label.clone()).collect();
    let n = labels.len();
    let two = |f: &dyn Fn(&Period) -> Option<f64>| {
        vec![
            Series::with_gaps(name_a.clone(), padded(pa.iter().map(f).collect(), n)),
            Series::with_gaps(name_b.clone(), padded(pb.iter().map(f).collect(), n)),
        ]
    };
    let mut days = html::note(&format!(
        "Both runs lined up by day of run (day 1 is each run's first simulated day): {}.",
        caption_days(g, Alignment::RunDay)
    ));
    for (title, series, unit) in [
        (
            "Orders per day",
            two(&|p| Some(p.per_day(p.totals.orders as f64))),
            Unit::Count,
        ),
        (
            "Sessions started per day",
            two(&|p| Some(p.per_day(p.totals.started as f64))),
            Unit::Count,
        ),
        (
            "Revenue per day",
            two(&|p| Some(p.per_day(p.totals.revenue.to_f64()))),
            Unit::Money,
        ),
        (
            "Abandonment rate",
            two(&|p| p.totals.abandon_rate()),
            Unit::Percent,
        ),
    ] {
        let chart =
            Chart::new(title, XAxis::Categories(labels.clone()), series, unit).sized(960.0, 260.0);
        days.push_str(&html::figure(title, &svg::line_chart(&chart)));
    }
    body.push_str(&html::section("days", "Over simulated time", &days));

    // Funnel as shares of started sessions.
    let steps = |d: &ReportData| {
        let f = d.funnel;
        let of = |n: u64| ratio(n as f64, f.sessions as f64);
        vec![of(f.sessions), of(f.viewed), of(f.carted), of(f.ordered)]
    };
    let chart = Chart::new(
        "Funnel: share of started sessions",
        XAxis::Categories(
            [
                "sessions started",
                "viewed a product",
                "added to cart",
                "placed an order",
            ]
            .map(String::from)
            .to_vec(),
        ),
        vec![
            Series::with_gaps(name_a.clone(), steps(a)),
            Series::with_gaps(name_b.clone(), steps(b)),
        ],
        Unit::Percent,
    )
    .sized(960.0, 260.0);
    let mut funnel = html::note("Each step as a share of the run's started sessions.");
    funnel.push_str(&svg::bar_chart(&chart, Bars::Grouped));
    let rows: Vec<Vec<Td>> = [
        ("sessions started", a.funnel.sessions, b.funnel.sessions),
        ("viewed a product", a.funnel.viewed, b.funnel.viewed),
        ("added to cart", a.funnel.carted, b.funnel.carted),
        ("placed an order", a.funnel.ordered, b.funnel.ordered),
    ]
    .into_iter()
    .map(|(k, x, y)| {
        let (d, r) = difference(Some(x as f64), Some(y as f64), Unit::Count);
        vec![k.into(), thousands(x).into(), thousands(y).into(), d, r]
    })
    .collect();
    funnel.push_str(&html::table(
        &[
            "sessions",
            &format!("A: {ida}"),
            &format!("B: {idb}"),
            "B − A",
            "relative",
        ],
        &rows,
    ));
    body.push_str(&html::section("funnel", "Shopping funnel", &funnel));

    // When: shares of each run's orders.
    let share = |v: &[u64]| {
        let total: u64 = v.iter().sum();
        v.iter()
            .map(|n| ratio(*n as f64, total as f64))
            .collect::<Vec<_>>()
    };
    let mut timing = html::note(&format!(
        "Share of each run's orders, by local time in its own time zone (A: {}, B: {}).",
        a.timezone.name(),
        b.timezone.name()
    ));
    let chart = Chart::new(
        "Orders by hour of day",
        XAxis::Categories((0..24).map(|h| format!("{h:02}")).collect()),
        vec![
            Series::with_gaps(name_a.clone(), share(&a.orders_by_hour)),
            Series::with_gaps(name_b.clone(), share(&b.orders_by_hour)),
        ],
        Unit::Percent,
    );
    timing.push_str(&html::figure(
        "Orders by hour of day (share of orders)",
        &svg::bar_chart(&chart, Bars::Grouped),
    ));
    let chart = Chart::new(
        "Orders by weekday",
        XAxis::Categories(WEEKDAYS.iter().map(|s| s.to_string()).collect()),
        vec![
            Series::with_gaps(name_a.clone(), share(&a.orders_by_weekday)),
            Series::with_gaps(name_b.clone(), share(&b.orders_by_weekday)),
        ],
        Unit::Percent,
    )
    .sized(960.0, 240.0);
    timing.push_str(&html::figure(
        "Orders by weekday (share of orders)",
        &svg::bar_chart(&chart, Bars::Grouped),
    ));
    body.push_str(&html::section("timing", "When orders are placed", &timing));

    // Offers and uplift.
    let offers = |d: &ReportData| {
        let s = &d.summary;
        [s.offers_assigned, s.offers_applied, s.offers_redeemed].map(|n| n as f64)
    };
    let chart = Chart::new(
        "Offers",
        XAxis::Categories(
            ["assigned", "applied", "redeemed"]
                .map(String::from)
                .to_vec(),
        ),
        vec![
            Series::new(name_a.clone(), offers(a)),
            Series::new(name_b.clone(), offers(b)),
        ],
        Unit::Count,
    )
    .sized(960.0, 240.0);
    let mut offers_html = html::figure(
        "Offers assigned, applied, redeemed",
        &svg::bar_chart(&chart, Bars::Grouped),
    );
    let groups = || XAxis::Categories(vec!["holdout".into(), "treated".into()]);
    let per = |d: &ReportData, f: fn(&GroupFigures) -> Option<f64>| {
        vec![f(&d.group(Group::Holdout)), f(&d.group(Group::Treated))]
    };
    let spend = Chart::new(
        "Spend per shopper",
        groups(),
        vec![
            Series::with_gaps(name_a.clone(), per(a, GroupFigures::spend_per_shopper)),
            Series::with_gaps(name_b.clone(), per(b, GroupFigures::spend_per_shopper)),
        ],
        Unit::Money,
    )
    .sized(520.0, 260.0);
    let orders = Chart::new(
        "Orders per shopper",
        groups(),
        vec![
            Series::with_gaps(name_a.clone(), per(a, GroupFigures::orders_per_shopper)),
            Series::with_gaps(name_b.clone(), per(b, GroupFigures::orders_per_shopper)),
        ],
        Unit::Count,
    )
    .sized(520.0, 260.0);
    offers_html.push_str(&html::note(
        "Uplift: holdout shoppers get no offers; spend and orders per shopper of each group, \
         per run.",
    ));
    offers_html.push_str(&html::two_columns(
        &html::figure(
            "Spend per shopper by group",
            &svg::bar_chart(&spend, Bars::Grouped),
        ),
        &html::figure(
            "Orders per shopper by group",
            &svg::bar_chart(&orders, Bars::Grouped),
        ),
    ));
    for (label, d) in [(&name_a, a), (&name_b, b)] {
        let (h, t) = (d.group(Group::Holdout), d.group(Group::Treated));
        offers_html.push_str(&format!("<h3>Uplift in {}</h3>", escape(label)));
        if h.shoppers == 0 || t.shoppers == 0 {
            offers_html.push_str(&html::note(
                "No uplift: no shoppers in the holdout group or none in the treated group.",
            ));
        } else {
            offers_html.push_str(&html::table(
                &[
                    "per shopper",
                    "holdout",
                    "treated",
                    "difference",
                    "relative",
                ],
                &uplift_rows(&h, &t),
            ));
        }
    }
    body.push_str(&html::section("offers", "Offers and uplift", &offers_html));

    // Latency and errors by simulated time since each run's start.
    body.push_str(&html::section(
        "latency",
        "Latency and errors over simulated time",
        &compare_intervals(a, b, &name_a, &name_b),
    ));
    body.push_str(&footer(rendered_at));
    html::page(&format!("shopsim: {ida} vs {idb}"), &body)
}

fn compare_intervals(a: &ReportData, b: &ReportData, name_a: &str, name_b: &str) -> String {
    let per = a.intervals_per_point.max(1);
    let key = |i: &IntervalFigures| i.first_seq / per;
    let ma: BTreeMap<u64, &IntervalFigures> = a.intervals.iter().map(|i| (key(i), i)).collect();
    let mb: BTreeMap<u64, &IntervalFigures> = b.intervals.iter().map(|i| (key(i), i)).collect();
    let keys: Vec<u64> = ma
        .keys()
        .chain(mb.keys())
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let labels: Vec<String> = keys
        .iter()
        .map(|k| {
            let h = k * per;
            format!("day {} {:02}h", h / 24 + 1, h % 24)
        })
        .collect();
    let mut out = html::note(&format!(
        "Both runs lined up by simulated hour since each run's start, {per} simulated hour(s) \
         per point; percentiles from the merged HDR histograms of each point."
    ));
    let two = |f: &dyn Fn(&IntervalFigures) -> Option<f64>| {
        vec![
            Series::with_gaps(
                name_a,
                keys.iter().map(|k| ma.get(k).and_then(|i| f(i))).collect(),
            ),
            Series::with_gaps(
                name_b,
                keys.iter().map(|k| mb.get(k).and_then(|i| f(i))).collect(),
            ),
        ]
    };
    for (title, series, unit) in [
        (
            "Latency p95, all endpoints",
            two(&|i| (i.overall.count > 0).then_some(i.overall.p95_ms)),
            Unit::Millis,
        ),
        (
            "Latency p99, all endpoints",
            two(&|i| (i.overall.count > 0).then_some(i.overall.p99_ms)),
            Unit::Millis,
        ),
        (
            "Requests per point",
            two(&|i| Some(i.requests as f64)),
            Unit::Count,
        ),
        (
            "Errors per point",
            two(&|i| Some(i.error_total() as f64)),
            Unit::Count,
        ),
    ] {
        let chart =
            Chart::new(title, XAxis::Categories(labels.clone()), series, unit).sized(960.0, 260.0);
        out.push_str(&html::figure(title, &svg::line_chart(&chart)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(money(Money::cents(123456789)), "1,234,567.89");
        assert_eq!(money(Money::cents(-5)), "-0.05");
        assert_eq!(pct(Some(0.1234)), "12.3%");
        assert_eq!(pct(None), "n/a");
        assert_eq!(pct(Some(f64::NAN)), "n/a");
        assert_eq!(wall(12.34), "12.3 s");
        assert_eq!(wall(750.0), "12 min 30 s");
        assert_eq!(wall(3.0 * 3600.0 + 300.0), "3 h 05 min");
        assert_eq!(wall_tick(0.0), "0s");
        assert_eq!(wall_tick(120.0), "2m");
        assert_eq!(wall_tick(150.0), "2m30s");
        assert_eq!(wall_tick(5400.0), "1h30m");
    }

    #[test]
    fn differences_have_signs_and_relative_changes() {
        let (d, r) = difference(Some(10.0), Some(12.0), Unit::Count);
        assert_eq!(d, Td::Signed("+2".into(), 2.0));
        let (d, _) = difference(Some(12_000.0), Some(1.0), Unit::Count);
        assert_eq!(d, Td::Signed("-11,999".into(), -11_999.0));
        assert_eq!(r, Td::Signed("+20.0%".into(), 0.2));
        let (d, _) = difference(Some(0.25), Some(0.2), Unit::Percent);
        assert!(
            matches!(d, Td::Signed(ref t, v) if t == "-5.0 pp" && v < 0.0),
            "{d:?}"
        );
        let (_, r) = difference(Some(0.0), Some(3.0), Unit::Count);
        assert_eq!(r, Td::from("n/a"));
        let (d, r) = difference(None, Some(3.0), Unit::Money);
        assert_eq!((d, r), (Td::from("n/a"), Td::from("n/a")));
    }
}
