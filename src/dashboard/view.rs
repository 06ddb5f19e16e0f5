//! Drawing a [`DashboardState`]: a pure function of the state, so it is tested on ratatui's
//! `TestBackend` without a terminal.
//!
//! Two layouts: the full one (from [`FULL_WIDTH`]×[`FULL_HEIGHT`]) with boxed panels, and a
//! compact one for small terminals (80×24 and less) that keeps the key figures — simulated time,
//! progress, sessions in flight, orders, errors, lag, PAUSED/OUTAGE — in the first lines and
//! gives whatever room is left to the latency table; panels that do not fit are dropped.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Gauge, Paragraph, Row, Table, Wrap};

use super::format;
use super::input::KEY_HELP;
use super::state::{DashboardState, EndpointRow, ReloadStatus, clamp_ratio};
use crate::sim::actions::BreakerState;

/// Narrowest terminal that gets the full layout.
pub const FULL_WIDTH: u16 = 100;
/// Shortest terminal that gets the full layout.
pub const FULL_HEIGHT: u16 = 30;

const TITLE: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
const DIM: Style = Style::new().fg(Color::DarkGray);
const ERROR: Style = Style::new().fg(Color::Red);
const GOOD: Style = Style::new().fg(Color::Green);
const WARN: Style = Style::new().fg(Color::Yellow);

/// Draws the dashboard for `state` on the whole frame.
pub fn draw(frame: &mut Frame, state: &DashboardState) {
    let area = frame.area();
    if area.width >= FULL_WIDTH && area.height >= FULL_HEIGHT {
        draw_full(frame, area, state);
    } else {
        draw_compact(frame, area, state);
    }
}

fn draw_full(frame: &mut Frame, area: Rect, s: &DashboardState) {
    let [header, progress, middle, lower, footer] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(13),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(area);

    let block = Block::bordered().title(Span::styled(" shopsim ", TITLE));
    frame.render_widget(Paragraph::new(header_lines(s, false)).block(block), header);

    let block = Block::bordered().title(Span::styled(" progress ", TITLE));
    let inner = block.inner(progress);
    frame.render_widget(block, progress);
    let [run, day, throughput] = Layout::vertical([Constraint::Length(1); 3]).areas(inner);
    render_gauges(frame, run, day, s);
    frame.render_widget(Paragraph::new(throughput_line(s, true)), throughput);

    let [table, counters] =
        Layout::horizontal([Constraint::Min(60), Constraint::Length(46)]).areas(middle);
    let block = Block::bordered().title(Span::styled(" latency (ms) ", TITLE));
    frame.render_widget(latency_table(&s.endpoints, false).block(block), table);
    render_counters(frame, counters, s);

    let [notes, health] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(46)]).areas(lower);
    let block = Block::bordered().title(Span::styled(" script & warnings ", TITLE));
    frame.render_widget(
        Paragraph::new(notes_lines(s))
            .wrap(Wrap { trim: false })
            .block(block),
        notes,
    );
    let block = Block::bordered().title(Span::styled(" outage & breakers ", TITLE));
    frame.render_widget(
        Paragraph::new(health_lines(s))
            .wrap(Wrap { trim: false })
            .block(block),
        health,
    );

    frame.render_widget(Paragraph::new(footer_line(s)), footer);
}

fn draw_compact(frame: &mut Frame, area: Rect, s: &DashboardState) {
    // Key figures first: on a short terminal the bottom is what gets cut.
    let mut top = header_lines(s, true);
    let gauges_at = top.len() as u16;
    top.push(Line::default()); // run gauge
    top.push(Line::default()); // day gauge
    top.push(throughput_line(s, false));
    top.push(errors_line(s));
    top.push(outcomes_line(s));
    top.push(health_line(s));
    let top_height = (top.len() as u16).min(area.height);
    let note = compact_note(s);
    let [top_area, rest] =
        Layout::vertical([Constraint::Length(top_height), Constraint::Min(0)]).areas(area);
    frame.render_widget(Paragraph::new(top), top_area);
    if top_area.height >= gauges_at + 2 {
        let row = |i: u16| Rect {
            y: top_area.y + gauges_at + i,
            height: 1,
            ..top_area
        };
        render_gauges(frame, row(0), row(1), s);
    }
    // The footer, then the note (a failed reload or the latest warning), then the table.
    let footer_height = rest.height.min(1);
    let note_height = u16::from(note.is_some() && rest.height >= 3);
    let [table, note_area, footer] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(note_height),
        Constraint::Length(footer_height),
    ])
    .areas(rest);
    if table.height >= 2 {
        // Only endpoints that were called, when there is no room for all of them.
        let all = table.height as usize > s.endpoints.len();
        let rows: Vec<EndpointRow> = s
            .endpoints
            .iter()
            .filter(|r| all || r.latency.count > 0)
            .copied()
            .collect();
        frame.render_widget(latency_table(&rows, true), table);
    }
    if let Some(note) = note.filter(|_| note_height > 0) {
        frame.render_widget(Paragraph::new(note), note_area);
    }
    frame.render_widget(Paragraph::new(footer_line(s)), footer);
}

/// Banners, run identity, simulated and wall time, scales and lag.
fn header_lines(s: &DashboardState, compact: bool) -> Vec<Line<'static>> {
    let mut first = banners(s);
    first.extend([
        Span::styled("run ", DIM),
        Span::raw(s.run_id.clone()).bold(),
        Span::styled("  set ", DIM),
        Span::raw(s.persona_set.clone()),
        Span::styled("  script ", DIM),
        Span::raw(s.script_version.clone()),
    ]);
    let mut second = vec![
        Span::styled("sim ", DIM),
        Span::raw(format::sim_now(s)).bold(),
    ];
    if !compact {
        second.push(Span::styled("  from ", DIM));
        second.push(Span::raw(format::sim(s.sim_start)));
    }
    second.push(Span::styled(if compact { "  to " } else { " to " }, DIM));
    second.push(Span::raw(format::sim(s.sim_end)));
    let mut third = vec![
        Span::styled("wall ", DIM),
        Span::raw(format::wall(s)),
        Span::styled("  scale ", DIM),
        Span::raw(format::target(s.target_scale)),
    ];
    if let Some(a) = s.achieved_scale {
        third.push(Span::styled(" achieved ", DIM));
        third.push(Span::raw(format::scale(a)));
    }
    if let Some(lag) = format::lag(s) {
        // Compact: on the short simulated-time line, so a long wall/scale line cannot cut it.
        let line = if compact { &mut second } else { &mut third };
        line.push(Span::raw("  "));
        line.push(Span::raw(lag));
    }
    vec![Line::from(first), Line::from(second), Line::from(third)]
}

fn banners(s: &DashboardState) -> Vec<Span<'static>> {
    let mut out = Vec::new();
    if s.paused {
        out.push(Span::styled(
            " PAUSED ",
            Style::new().black().on_yellow().bold(),
        ));
        out.push(Span::raw(" "));
    }
    if let Some(h) = s.outage.headline() {
        out.push(Span::styled(
            format!(" OUTAGE: {h} "),
            Style::new().white().on_red().bold(),
        ));
        out.push(Span::raw(" "));
    }
    if s.stopping {
        out.push(Span::styled(
            " STOPPING ",
            Style::new().black().on_cyan().bold(),
        ));
        out.push(Span::raw(" "));
    }
    out
}

/// The two gauges on one line each: `run   [####  23.4%    ] day 3/14`.
fn render_gauges(frame: &mut Frame, run: Rect, day: Rect, s: &DashboardState) {
    let mut row = |area: Rect, label: &'static str, ratio: f64, text: String, right: String| {
        let [l, g, r] = Layout::horizontal([
            Constraint::Length(6),
            Constraint::Min(10),
            Constraint::Length(right.len() as u16 + 1),
        ])
        .areas(area);
        frame.render_widget(Span::styled(label, DIM), l);
        frame.render_widget(
            Gauge::default()
                .ratio(clamp_ratio(ratio))
                .label(Span::raw(text).bold())
                .gauge_style(Style::new().fg(Color::Blue).bg(Color::Black)),
            g,
        );
        frame.render_widget(Line::from(format!(" {right}")), r);
    };
    row(
        run,
        "run",
        s.progress,
        format::percent(s.progress),
        format::day_of(s).unwrap_or_default(),
    );
    let (ratio, count, date) = s.day.map_or((0.0, "0/0".into(), String::new()), |d| {
        (
            d.ratio(),
            format!("{}/{}", d.done, d.total),
            d.date.to_string(),
        )
    });
    row(day, "day", ratio, count, date);
}

fn throughput_line(s: &DashboardState, wide: bool) -> Line<'static> {
    let r = &s.rates;
    let mut spans = vec![
        Span::styled("in flight ", DIM),
        Span::raw(s.in_flight.to_string()).bold(),
        Span::styled("  sessions ", DIM),
        Span::raw(s.sessions.to_string()),
    ];
    if wide {
        spans.push(Span::styled(
            format!(" ({}/min)", format::rate(r.sessions_per_min)),
            DIM,
        ));
    }
    spans.extend([
        Span::styled("  orders ", DIM),
        Span::raw(s.orders.to_string()).bold(),
        Span::styled(format!(" ({}/min", format::rate(r.orders_per_min)), DIM),
    ]);
    match s.orders_per_sim_day.filter(|_| wide) {
        Some(d) => spans.push(Span::styled(format!(", {d:.0}/sim day)"), DIM)),
        None => spans.push(Span::styled(")", DIM)),
    }
    spans.push(Span::styled("  requests ", DIM));
    if wide {
        spans.push(Span::raw(s.requests.to_string()));
        spans.push(Span::styled(
            format!(" ({}/s)", format::rate(r.requests_per_sec)),
            DIM,
        ));
    } else {
        spans.push(Span::raw(format!("{}/s", format::rate(r.requests_per_sec))));
    }
    Line::from(spans)
}

fn count_style(n: u64, bad: Style) -> Style {
    if n > 0 { bad } else { DIM }
}

/// Compact: every error class on one line, red when any.
fn errors_line(s: &DashboardState) -> Line<'static> {
    let c = &s.counters;
    let total = s.errors();
    let mut spans = vec![Span::styled(
        format!("errors {total}"),
        count_style(total, ERROR.add_modifier(Modifier::BOLD)),
    )];
    for (label, n) in [
        ("5xx", c.api_5xx),
        ("429", c.rate_limited),
        ("4xx", c.other_4xx),
        ("timeout", c.timeouts),
        ("conn", c.connection_errors),
        ("db", c.db_errors),
        ("script", c.script_errors),
    ] {
        spans.push(Span::styled(
            format!("  {label} {n}"),
            count_style(n, ERROR),
        ));
    }
    Line::from(spans)
}

/// Compact: business outcomes on their own line, never red.
fn outcomes_line(s: &DashboardState) -> Line<'static> {
    let c = &s.counters;
    Line::from(vec![
        Span::styled("outcomes ", GOOD),
        Span::raw(format!(
            "out of stock {}  offer refused {}  other {}  abandoned {}",
            c.out_of_stock, c.offer_refused, c.other_rejections, c.sessions_abandoned
        )),
    ])
}

/// Compact: the breakers that are not closed, then the outage's cause (the banner on the first
/// line already says that there is one and since when).
fn health_line(s: &DashboardState) -> Line<'static> {
    let mut spans = Vec::new();
    if !s.breakers.is_empty() {
        let tripped: Vec<String> = s
            .tripped_breakers()
            .map(|(e, st)| format!("{} {}", e.name(), breaker_label(st)))
            .collect();
        if tripped.is_empty() {
            spans.push(Span::styled("breakers all closed  ", DIM));
        } else {
            spans.push(Span::styled(
                format!("breakers: {}  ", tripped.join(", ")),
                WARN.bold(),
            ));
        }
    }
    match s.outage.reason() {
        Some(reason) => spans.push(Span::styled(format!("outage: {reason}"), ERROR)),
        None => spans.push(Span::styled("no outage", DIM)),
    }
    Line::from(spans)
}

/// Compact: a failed reload (most urgent for the analyst) or the latest warning.
fn compact_note(s: &DashboardState) -> Option<Line<'static>> {
    if let Some(ReloadStatus::Failed { error, kept }) = &s.last_reload {
        return Some(Line::from(vec![
            Span::styled(format!("reload failed (kept {kept}): "), ERROR.bold()),
            Span::raw(error.clone()),
        ]));
    }
    s.warnings
        .last()
        .map(|w| Line::from(vec![Span::styled("warning: ", WARN), Span::raw(w.clone())]))
}

fn latency_table(rows: &[EndpointRow], compact: bool) -> Table<'static> {
    let num = |v: String| Cell::from(Line::from(v).right_aligned());
    let ms = |count: u64, v: f64| {
        num(if count == 0 {
            "-".into()
        } else {
            format::ms(v)
        })
    };
    let header = ["endpoint", "count", "p50", "p95", "p99", "max", "errors"]
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let line = Line::from(h);
            Cell::from(if i == 0 { line } else { line.right_aligned() })
        });
    let body = rows.iter().map(|r| {
        let l = &r.latency;
        Row::new([
            Cell::from(r.endpoint.name()),
            num(l.count.to_string()),
            ms(l.count, l.p50_ms),
            ms(l.count, l.p95_ms),
            ms(l.count, l.p99_ms),
            ms(l.count, l.max_ms),
            Cell::from(Line::from(r.errors.to_string()).right_aligned())
                .style(count_style(r.errors, ERROR)),
        ])
    });
    let n = if compact { 7 } else { 8 };
    Table::new(
        body,
        [
            Constraint::Length(16),
            Constraint::Length(9),
            Constraint::Length(n),
            Constraint::Length(n),
            Constraint::Length(n),
            Constraint::Length(n),
            Constraint::Length(7),
        ],
    )
    .header(Row::new(header).style(Style::new().bold()))
    .column_spacing(1)
}

/// Full: errors and business outcomes in two separate boxes, side by side.
fn render_counters(frame: &mut Frame, area: Rect, s: &DashboardState) {
    let c = &s.counters;
    let [errors, outcomes] =
        Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(area);
    let line = |label: &str, n: u64, style: Style| {
        Line::from(vec![
            Span::raw(format!("{label:<13}")),
            Span::styled(format!("{n:>8}"), style),
        ])
    };
    let total = s.errors();
    let err = |label: &str, n: u64| line(label, n, count_style(n, ERROR));
    let error_lines = vec![
        err("API 5xx", c.api_5xx),
        err("429", c.rate_limited),
        err("other 4xx", c.other_4xx),
        err("timeouts", c.timeouts),
        err("connection", c.connection_errors),
        err("DB", c.db_errors),
        err("script", c.script_errors),
        line("total", total, count_style(total, ERROR.bold())),
        line("(retries)", c.retries, DIM),
    ];
    let border = if total > 0 { ERROR } else { Style::new() };
    let block = Block::bordered()
        .border_style(border)
        .title(Span::styled(" errors ", ERROR.bold()));
    frame.render_widget(Paragraph::new(error_lines).block(block), errors);

    let ok = |label: &str, n: u64| line(label, n, Style::new());
    let outcome_lines = vec![
        line("orders", s.orders, GOOD.bold()),
        ok("out of stock", c.out_of_stock),
        ok("offer refused", c.offer_refused),
        ok("other reject.", c.other_rejections),
        ok("completed", c.sessions_completed),
        ok("abandoned", c.sessions_abandoned),
        ok("failed", c.sessions_failed),
    ];
    let block = Block::bordered().title(Span::styled(" business outcomes ", GOOD.bold()));
    frame.render_widget(Paragraph::new(outcome_lines).block(block), outcomes);
}

/// Full: the last reload, then the recent warnings.
fn notes_lines(s: &DashboardState) -> Vec<Line<'static>> {
    let mut lines = vec![match &s.last_reload {
        None => Line::from(Span::styled("script: no reload yet", DIM)),
        Some(ReloadStatus::Reloaded { version }) => Line::from(vec![
            Span::styled("script reloaded: ", GOOD),
            Span::raw(format!("{version} live")),
        ]),
        Some(ReloadStatus::Failed { error, kept }) => Line::from(vec![
            Span::styled(
                format!("script reload failed (kept {kept}): "),
                ERROR.bold(),
            ),
            Span::raw(error.clone()),
        ]),
    }];
    if s.warnings.is_empty() {
        lines.push(Line::from(Span::styled("no warnings", DIM)));
    }
    for w in &s.warnings {
        lines.push(Line::from(vec![
            Span::styled("! ", WARN),
            Span::raw(w.clone()),
        ]));
    }
    lines
}

/// Full: the outage, then every breaker.
fn health_lines(s: &DashboardState) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    match (s.outage.headline(), s.outage.reason()) {
        (Some(h), reason) => {
            lines.push(Line::from(Span::styled(
                format!("OUTAGE: {h}"),
                ERROR.bold(),
            )));
            lines.push(Line::from(format!("  {}", reason.unwrap_or_default())));
        }
        _ => lines.push(Line::from(Span::styled("no outage", GOOD))),
    }
    if s.breakers.is_empty() {
        lines.push(Line::from(Span::styled(
            "no circuit breakers (in-process actions)",
            DIM,
        )));
    }
    for (e, st) in &s.breakers {
        let style = match st {
            BreakerState::Closed => DIM,
            BreakerState::HalfOpen => WARN.bold(),
            BreakerState::Open => ERROR.bold(),
        };
        lines.push(Line::from(vec![
            Span::raw(format!("{:<18}", e.name())),
            Span::styled(breaker_label(*st), style),
        ]));
    }
    lines
}

fn breaker_label(s: BreakerState) -> &'static str {
    match s {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half-open",
    }
}

fn footer_line(s: &DashboardState) -> Line<'static> {
    let mut spans = Vec::new();
    for (key, what) in KEY_HELP {
        spans.push(Span::styled(format!(" {key} "), Style::new().reversed()));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    if s.stopping {
        spans.push(Span::styled(
            "stopping: sessions in flight are finishing",
            WARN,
        ));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{TimeZone, Utc};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::dashboard::state::{Counters, OutageState, Rates};
    use crate::sim::clock::TimeScale;
    use crate::sim::day_progress::DayCount;
    use crate::sim::metrics::{Endpoint, LatencySummary};

    /// A run 2 days and 14 hours into 14 simulated days, paced at 96x, everything fixed.
    fn fixture() -> DashboardState {
        let at = |d, h| Utc.with_ymd_and_hms(2024, 1, d, h, 0, 0).unwrap();
        let mut s = DashboardState::new(
            "run-20260101-120000-ab12",
            "grocery",
            "3f9a1c2e",
            at(1, 0),
            at(15, 0),
            TimeScale::Scaled(96.0),
        );
        s.sim_now = Some(at(3, 14));
        s.wall_elapsed = Duration::from_secs(723);
        s.wall_remaining = Some(Duration::from_secs(3720));
        s.achieved_scale = Some(95.24);
        s.lag_ms = Some(12.0);
        s.lag_p99_ms = Some(40.5);
        s.progress = 0.1845;
        s.day = Some(DayCount {
            date: at(3, 0).date_naive(),
            start: at(3, 0),
            done: 120,
            total: 372,
        });
        s.in_flight = 42;
        s.sessions = 1234;
        s.orders = 456;
        s.requests = 98765;
        s.rates = Rates {
            orders_per_min: 20.3,
            sessions_per_min: 52.1,
            requests_per_sec: 410.4,
            achieved_scale: Some(95.24),
        };
        s.orders_per_sim_day = Some(175.4);
        for (i, row) in s.endpoints.iter_mut().enumerate() {
            if row.endpoint == Endpoint::Abandon {
                continue; // an endpoint not called yet
            }
            let k = i as f64 + 1.0;
            row.latency = LatencySummary {
                count: 1000 * (i as u64 + 1),
                p50_ms: 1.5 * k,
                p95_ms: 4.25 * k,
                p99_ms: 9.0 * k,
                max_ms: 31.0 * k,
            };
            row.errors = if row.endpoint == Endpoint::Checkout {
                3
            } else {
                0
            };
        }
        s.counters = Counters {
            db_errors: 0,
            api_5xx: 3,
            rate_limited: 2,
            other_4xx: 1,
            timeouts: 0,
            connection_errors: 0,
            script_errors: 6,
            retries: 10,
            out_of_stock: 40,
            offer_refused: 3,
            other_rejections: 1,
            sessions_completed: 400,
            sessions_abandoned: 50,
            sessions_failed: 6,
        };
        s.breakers = Endpoint::ALL
            .iter()
            .map(|&e| (e, BreakerState::Closed))
            .collect();
        s.last_reload = Some(ReloadStatus::Reloaded {
            version: "3f9a1c2e".into(),
        });
        s.set_warnings(vec![
            "grocery/persona.rhai:12:5: in decide_day: index out of bounds".into(),
            "agent_017: session failed after 3 attempts: checkout answered 500".into(),
        ]);
        s
    }

    fn render(s: &DashboardState, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, s)).unwrap();
        let buf = terminal.backend().buffer();
        let mut out = String::new();
        for y in 0..buf.area.height {
            let line: String = (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect();
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Compares with `src/dashboard/snapshots/<name>.txt`; `UPDATE_SNAPSHOTS=1` rewrites it.
    fn assert_snapshot(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/dashboard/snapshots")
            .join(format!("{name}.txt"));
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}); create it with UPDATE_SNAPSHOTS=1 cargo test dashboard",
                path.display()
            )
        });
        if expected != actual {
            let first = expected
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
            panic!(
                "{} differs from the rendering (first at line {}); if the change is intended, \
                 run UPDATE_SNAPSHOTS=1 cargo test dashboard\n--- expected\n{expected}\n--- actual\n{actual}",
                path.display(),
                first + 1
            );
        }
    }

    fn assert_has(screen: &str, wanted: &[&str]) {
        for w in wanted {
            assert!(screen.contains(w), "`{w}` missing from:\n{screen}");
        }
    }

    #[test]
    fn full_layout_matches_its_snapshot() {
        let screen = render(&fixture(), 120, 40);
        assert_snapshot("full_120x40", &screen);
        assert_has(
            &screen,
            &[
                "run-20260101-120000-ab12",
                "2024-01-03 14:00",
                "18.4%",
                "in flight 42",
                "orders 456",
                "lag 12.0 ms (p99 40.5 ms)",
                "95.2x",
                "eligible_coupons",
                " errors ",
                " business outcomes ",
                "index out of bounds",
            ],
        );
    }

    #[test]
    fn small_terminal_keeps_the_key_figures() {
        let screen = render(&fixture(), 80, 24);
        assert_snapshot("compact_80x24", &screen);
        assert_has(
            &screen,
            &[
                "sim 2024-01-03 14:00", // simulated time
                "18.4%",                // progress
                "120/372",              // the day's sessions
                "in flight 42",
                "orders 456",
                "errors 12", // 3 + 2 + 1 + 6 script
                "lag 12.0 ms",
                "q  stop", // the keys
            ],
        );
        // Business rejections are shown, but never counted as errors.
        assert_has(&screen, &["out of stock 40"]);
    }

    #[test]
    fn long_figures_do_not_push_the_lag_off_a_small_screen() {
        let mut s = fixture();
        s.wall_elapsed = Duration::from_secs(3 * 86_400);
        s.wall_remaining = Some(Duration::from_secs(40 * 86_400));
        s.target_scale = TimeScale::Scaled(100_000.0);
        s.achieved_scale = Some(99_873.2);
        s.lag_ms = Some(1234.5);
        s.lag_p99_ms = Some(98765.4);
        let screen = render(&s, 80, 24);
        assert_has(
            &screen,
            &["lag 1234 ms (p99 98765 ms)", "3d00h, ~40d00h left"],
        );
    }

    #[test]
    fn outage_and_open_breaker_are_shown() {
        let mut s = fixture();
        s.outage = OutageState::DbDown {
            since: Utc.with_ymd_and_hms(2026, 1, 1, 12, 3, 4).unwrap(),
            reason: "checkout answered 503 database_unavailable: pool timed out".into(),
        };
        s.breakers[Endpoint::Checkout as usize].1 = BreakerState::Open;
        s.breakers[Endpoint::AddToCart as usize].1 = BreakerState::HalfOpen;
        let full = render(&s, 120, 40);
        assert_has(
            &full,
            &[
                "OUTAGE: DB down since 12:03:04 UTC",
                "pool timed out",
                "checkout          open",
                "add_to_cart       half-open",
            ],
        );
        let small = render(&s, 80, 24);
        assert_has(
            &small,
            &[
                "OUTAGE: DB down since 12:03:04 UTC",
                "breakers: add_to_cart half-open, checkout open  outage: checkout answered 503",
            ],
        );
    }

    #[test]
    fn paused_and_stopping_are_shown() {
        let mut s = fixture();
        s.paused = true;
        s.stopping = true;
        for (w, h) in [(120, 40), (80, 24)] {
            let screen = render(&s, w, h);
            assert_has(&screen, &[" PAUSED ", " STOPPING "]);
        }
    }

    #[test]
    fn failed_reload_and_in_process_runs_are_shown() {
        let mut s = fixture();
        s.breakers.clear();
        s.last_reload = Some(ReloadStatus::Failed {
            error: "grocery/persona.rhai:7:3: syntax error: expecting ';'".into(),
            kept: "3f9a1c2e".into(),
        });
        let full = render(&s, 120, 40);
        assert_has(
            &full,
            &[
                "script reload failed (kept 3f9a1c2e)",
                "persona.rhai:7:3",
                "no circuit breakers",
            ],
        );
        let small = render(&s, 80, 24);
        assert_has(
            &small,
            &["reload failed (kept 3f9a1c2e)", "persona.rhai:7:3"],
        );
    }

    #[test]
    fn any_size_draws_without_panicking() {
        let odd = DashboardState {
            progress: f64::NAN, // a gauge would panic on it
            day: Some(DayCount {
                date: chrono::NaiveDate::MIN,
                start: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
                done: 9,
                total: 3,
            }),
            ..DashboardState::default()
        };
        for s in [fixture(), odd] {
            for (w, h) in [
                (1, 1),
                (10, 3),
                (40, 10),
                (79, 23),
                (99, 29),
                (100, 30),
                (200, 60),
            ] {
                render(&s, w, h);
            }
        }
    }
}
