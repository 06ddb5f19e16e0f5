//! Chart primitives: inline SVG written as text, with no script and nothing fetched.
//!
//! Every chart has a fixed `viewBox` and scales to the page width. Coordinates go through one
//! formatter that turns a non-finite number into 0, so no `NaN` reaches the markup; a chart
//! without data renders a "no data" note instead of empty axes. Hovering a bar or a point shows
//! its exact value (an SVG `<title>`, no script needed).

use std::fmt::Write as _;

/// Series colours, chosen to stay distinguishable for common colour-vision deficiencies.
pub const PALETTE: [&str; 10] = [
    "#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5",
    "#9c6b4e", "#9498a0",
];

/// Escapes text for HTML and SVG content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in HTML text; drop them.
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// A coordinate or length as SVG text: one decimal, and 0 for anything non-finite.
fn n(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// A linear map from a data domain to a pixel range. A degenerate or non-finite domain is
/// widened so that mapping never divides by zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearScale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl LinearScale {
    /// Maps `domain` onto `range`.
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Self {
        let (mut d0, mut d1) = domain;
        if !d0.is_finite() {
            d0 = 0.0;
        }
        if !d1.is_finite() {
            d1 = d0;
        }
        if (d1 - d0).abs() < f64::EPSILON * d0.abs().max(1.0) {
            d1 = d0 + 1.0;
        }
        Self {
            d0,
            d1,
            r0: range.0,
            r1: range.1,
        }
    }

    /// The pixel position of `v` (non-finite values map to the start of the range).
    pub fn map(&self, v: f64) -> f64 {
        if !v.is_finite() {
            return self.r0;
        }
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// About `target` round tick values (steps of 1, 2 or 5 × 10ⁿ) covering `[min, max]`; the
/// first tick is ≤ `min` and the last ≥ `max`. Non-finite or empty ranges give `[0, 1]`.
pub fn nice_ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    if !min.is_finite() || !max.is_finite() {
        return vec![0.0, 1.0];
    }
    let (min, max) = if max < min { (max, min) } else { (min, max) };
    let (min, max) = if max - min < 1e-12 {
        if min == 0.0 {
            (0.0, 1.0)
        } else {
            (min.min(0.0), max.max(0.0) + min.abs() * 0.1)
        }
    } else {
        (min, max)
    };
    let raw = (max - min) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (min / step).floor();
    // Round to the step's decimals, so 3 × 0.1 is 0.3 and not 0.30000000000000004.
    let decimals = (-step.log10().floor()).clamp(0.0, 15.0) as i32;
    let unit = 10f64.powi(decimals);
    let mut ticks = Vec::new();
    let mut i = 0;
    loop {
        let t = ((first + i as f64) * step * unit).round() / unit;
        ticks.push(if t == 0.0 { 0.0 } else { t });
        if t >= max - step * 1e-9 || i > 1000 {
            break;
        }
        i += 1;
    }
    ticks
}

/// What the values of a chart are, for axis labels and tooltips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Counts and ratios of counts (1.2k, 3.4M).
    Count,
    /// A fraction shown as a percentage (0.25 → 25%).
    Percent,
    /// An amount of money.
    Money,
    /// Milliseconds.
    Millis,
}

impl Unit {
    /// A short axis label.
    pub fn tick(self, v: f64) -> String {
        match self {
            Unit::Count => si(v),
            Unit::Percent => {
                let p = v * 100.0;
                if (p - p.round()).abs() < 1e-9 {
                    format!("{p:.0}%")
                } else {
                    format!("{p:.1}%")
                }
            }
            Unit::Money => si(v),
            Unit::Millis => format!("{} ms", si(v)),
        }
    }

    /// An exact value for tooltips and tables.
    pub fn value(self, v: f64) -> String {
        if !v.is_finite() {
            return "n/a".into();
        }
        match self {
            Unit::Count if (v - v.round()).abs() < 1e-9 => format!("{v:.0}"),
            Unit::Count => format!("{v:.2}"),
            Unit::Percent => format!("{:.1}%", v * 100.0),
            Unit::Money => format!("{v:.2}"),
            Unit::Millis => format!("{v:.2} ms"),
        }
    }
}

/// A compact number: 950, 1.2k, 34k, 1.5M (and 0.25 for small fractions).
pub fn si(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e9 {
        format!("{}G", trim(format!("{:.1}", v / 1e9)))
    } else if a >= 1e6 {
        format!("{}M", trim(format!("{:.1}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.0}", v / 1e3)))
    } else if a >= 1e3 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 1.0 || a == 0.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

/// One named line or set of bars. `None` is a gap (no value for that point).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend text.
    pub name: String,
    /// One value per x position.
    pub values: Vec<Option<f64>>,
}

impl Series {
    /// A series without gaps.
    pub fn new(name: impl Into<String>, values: impl IntoIterator<Item = f64>) -> Self {
        Self {
            name: name.into(),
            values: values.into_iter().map(Some).collect(),
        }
    }

    /// A series with gaps.
    pub fn with_gaps(name: impl Into<String>, values: Vec<Option<f64>>) -> Self {
        Self {
            name: name.into(),
            values,
        }
    }
}

/// The horizontal axis.
#[derive(Debug, Clone)]
pub enum XAxis {
    /// Evenly spaced points (days, weeks, hours); `labels[i]` names point `i`.
    Categories(Vec<String>),
    /// Points at numeric positions (e.g. seconds of wall time); `labels[i]` names point `i` in
    /// tooltips, `format` labels the axis ticks.
    Numeric {
        /// Position of each point.
        values: Vec<f64>,
        /// Tooltip names of the points.
        labels: Vec<String>,
        /// Tick label for a position.
        format: fn(f64) -> String,
    },
}

impl XAxis {
    fn len(&self) -> usize {
        match self {
            XAxis::Categories(l) => l.len(),
            XAxis::Numeric { values, .. } => values.len(),
        }
    }

    fn label(&self, i: usize) -> &str {
        match self {
            XAxis::Categories(l) | XAxis::Numeric { labels: l, .. } => {
                l.get(i).map(String::as_str).unwrap_or("")
            }
        }
    }
}

/// A chart with one or more series over a shared x axis.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Accessible name (the `aria-label` of the SVG).
    pub title: String,
    /// The x axis.
    pub x: XAxis,
    /// The series (at most [`PALETTE`]`.len()` get distinct colours).
    pub series: Vec<Series>,
    /// What the values are.
    pub unit: Unit,
    /// Width of the view box (the SVG scales to the page; wider charts keep dense data apart).
    pub width: f64,
    /// Height of the view box.
    pub height: f64,
    /// Tooltip names of the points (`None`: the axis labels).
    pub tooltips: Option<Vec<String>>,
}

impl Chart {
    /// A chart of the default size (960 × 300).
    pub fn new(title: impl Into<String>, x: XAxis, series: Vec<Series>, unit: Unit) -> Self {
        Self {
            title: title.into(),
            x,
            series,
            unit,
            width: 960.0,
            height: 300.0,
            tooltips: None,
        }
    }

    /// The same chart with tooltip names for its points.
    pub fn with_tooltips(mut self, tooltips: Vec<String>) -> Self {
        self.tooltips = Some(tooltips);
        self
    }

    /// The same chart with another view box size.
    pub fn sized(mut self, width: f64, height: f64) -> Self {
        self.width = width.max(200.0);
        self.height = height.max(120.0);
        self
    }

    /// The tooltip name of point `i`.
    fn point(&self, i: usize) -> &str {
        match &self.tooltips {
            Some(t) => t.get(i).map(String::as_str).unwrap_or(""),
            None => self.x.label(i),
        }
    }

    fn has_data(&self) -> bool {
        self.x.len() > 0
            && self
                .series
                .iter()
                .any(|s| s.values.iter().flatten().any(|v| v.is_finite()))
    }

    fn max_value(&self, stacked: bool) -> f64 {
        let n = self.x.len();
        let mut max: f64 = 0.0;
        if stacked {
            for i in 0..n {
                let sum: f64 = self
                    .series
                    .iter()
                    .filter_map(|s| s.values.get(i).copied().flatten())
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .sum();
                max = max.max(sum);
            }
        } else {
            for v in self.series.iter().flat_map(|s| s.values.iter().flatten()) {
                if v.is_finite() {
                    max = max.max(*v);
                }
            }
        }
        max
    }
}

/// How bars of several series share a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bars {
    /// Side by side.
    Grouped,
    /// On top of each other.
    Stacked,
}

const LEFT: f64 = 64.0;
const RIGHT: f64 = 18.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
const FONT: &str = "font-family=\"system-ui, -apple-system, 'Segoe UI', sans-serif\"";

fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn open(out: &mut String, c: &Chart) {
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{t}\" \
         preserveAspectRatio=\"xMidYMid meet\" {FONT} font-size=\"12\">",
        w = n(c.width),
        h = n(c.height),
        t = escape(&c.title)
    );
}

/// The note shown instead of a chart without data.
pub fn no_data(title: &str, note: &str, width: f64, height: f64) -> String {
    let height = height.min(120.0);
    format!(
        "<svg class=\"chart nodata\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{t}\" {FONT} \
         font-size=\"14\"><rect x=\"0.5\" y=\"0.5\" width=\"{w1}\" height=\"{h1}\" fill=\"#fafafa\" \
         stroke=\"#ddd\"/><text x=\"{cx}\" y=\"{cy}\" text-anchor=\"middle\" fill=\"#777\">{note}</text></svg>",
        w = n(width),
        h = n(height),
        w1 = n(width - 1.0),
        h1 = n(height - 1.0),
        cx = n(width / 2.0),
        cy = n(height / 2.0 + 5.0),
        t = escape(title),
        note = escape(note)
    )
}

/// Legend across the top: a swatch and the name of each series, wrapped onto more rows when
/// it does not fit. Returns where the plot area starts.
fn legend(out: &mut String, c: &Chart) -> f64 {
    if c.series.len() < 2 && c.series.first().is_none_or(|s| s.name.is_empty()) {
        return TOP;
    }
    let mut x = LEFT;
    let mut row = 0.0;
    for (i, s) in c.series.iter().enumerate() {
        // A rough width: 7 px per character is enough for the default font size.
        let w = 16.0 + 7.0 * s.name.chars().count() as f64 + 18.0;
        if x > LEFT && x + w > c.width - RIGHT {
            x = LEFT;
            row += 1.0;
        }
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{col}\"/>\
             <text x=\"{tx}\" y=\"{ty}\" fill=\"#333\">{name}</text>",
            x = n(x),
            y = n(8.0 + 18.0 * row),
            tx = n(x + 16.0),
            ty = n(18.0 + 18.0 * row),
            col = colour(i),
            name = escape(&s.name)
        );
        x += w;
    }
    TOP + 18.0 * row
}

/// Horizontal grid lines and labels of the y axis; returns the y scale.
fn y_axis(out: &mut String, c: &Chart, max: f64, plot_top: f64) -> LinearScale {
    let ticks = nice_ticks(0.0, max, 5);
    let top = ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
    let y = LinearScale::new((0.0, top), (c.height - BOTTOM, plot_top));
    for t in &ticks {
        let py = y.map(*t);
        let _ = write!(
            out,
            "<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{py}\" y2=\"{py}\" stroke=\"{stroke}\"/>\
             <text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\" fill=\"#555\">{label}</text>",
            x0 = n(LEFT),
            x1 = n(c.width - RIGHT),
            py = n(py),
            stroke = if *t == 0.0 { "#888" } else { "#e4e4e4" },
            tx = n(LEFT - 6.0),
            ty = n(py + 4.0),
            label = escape(&c.unit.tick(*t))
        );
    }
    y
}

/// Indices of categories that get an axis label: at most one per ~80 px.
fn label_every(count: usize, plot_width: f64) -> usize {
    let fit = (plot_width / 80.0).floor().max(1.0) as usize;
    count.div_ceil(fit).max(1)
}

fn x_label(out: &mut String, x: f64, y: f64, text: &str) {
    let _ = write!(
        out,
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" fill=\"#555\">{t}</text>",
        x = n(x),
        y = n(y),
        t = escape(text)
    );
}

/// A bar chart of categories (the x axis must be [`XAxis::Categories`]; numeric positions are
/// treated as evenly spaced).
pub fn bar_chart(c: &Chart, mode: Bars) -> String {
    if !c.has_data() {
        return no_data(&c.title, "No data", c.width, c.height);
    }
    let mut out = String::new();
    open(&mut out, c);
    let plot_top = legend(&mut out, c);
    let stacked = mode == Bars::Stacked;
    let y = y_axis(&mut out, c, c.max_value(stacked), plot_top);
    let count = c.x.len();
    let plot_w = c.width - LEFT - RIGHT;
    let slot = plot_w / count as f64;
    let gap = (slot * 0.2).min(8.0);
    let series_n = c.series.len().max(1);
    let bar_w = if stacked {
        slot - gap
    } else {
        (slot - gap) / series_n as f64
    };
    let base = y.map(0.0);
    for i in 0..count {
        let x0 = LEFT + slot * i as f64 + gap / 2.0;
        let mut acc = 0.0;
        for (si_, s) in c.series.iter().enumerate() {
            let Some(v) = s.values.get(i).copied().flatten().filter(|v| v.is_finite()) else {
                continue;
            };
            let v = v.max(0.0);
            let (bx, top, bottom) = if stacked {
                let b = y.map(acc);
                acc += v;
                (x0, y.map(acc), b)
            } else {
                (x0 + bar_w * si_ as f64, y.map(v), base)
            };
            let label = if s.name.is_empty() {
                format!("{}: {}", c.point(i), c.unit.value(v))
            } else {
                format!("{} · {}: {}", c.point(i), s.name, c.unit.value(v))
            };
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{col}\">\
                 <title>{label}</title></rect>",
                x = n(bx),
                y = n(top),
                w = n(bar_w.max(0.5)),
                h = n((bottom - top).max(0.0)),
                col = colour(si_),
                label = escape(&label)
            );
        }
    }
    let every = label_every(count, plot_w);
    for i in (0..count).step_by(every) {
        x_label(
            &mut out,
            LEFT + slot * (i as f64 + 0.5),
            c.height - BOTTOM + 16.0,
            c.x.label(i),
        );
    }
    out.push_str("</svg>");
    out
}

/// A line chart: one polyline per series (broken at gaps), with a hoverable marker per point
/// when there are few enough points to show them.
pub fn line_chart(c: &Chart) -> String {
    if !c.has_data() {
        return no_data(&c.title, "No data", c.width, c.height);
    }
    let mut out = String::new();
    open(&mut out, c);
    let plot_top = legend(&mut out, c);
    let y = y_axis(&mut out, c, c.max_value(false), plot_top);
    let count = c.x.len();
    let plot_w = c.width - LEFT - RIGHT;
    let (xs, ticks): (Vec<f64>, Vec<(f64, String)>) = match &c.x {
        XAxis::Categories(labels) => {
            // Points at the middle of equal slots, like bars.
            let slot = plot_w / count as f64;
            let xs = (0..count)
                .map(|i| LEFT + slot * (i as f64 + 0.5))
                .collect::<Vec<_>>();
            let every = label_every(count, plot_w);
            let ticks = (0..count)
                .step_by(every)
                .map(|i| (xs[i], labels[i].clone()))
                .collect();
            (xs, ticks)
        }
        XAxis::Numeric { values, format, .. } => {
            let lo = values
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(f64::INFINITY, f64::min);
            let hi = values
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(f64::NEG_INFINITY, f64::max);
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let tick_values = nice_ticks(lo, hi, ((plot_w / 90.0) as usize).max(2));
            let d0 = tick_values.first().copied().unwrap_or(lo);
            let d1 = tick_values.last().copied().unwrap_or(hi);
            let x = LinearScale::new((d0, d1), (LEFT + 4.0, c.width - RIGHT - 4.0));
            let xs = values.iter().map(|v| x.map(*v)).collect();
            let ticks = tick_values
                .iter()
                .map(|t| (x.map(*t), format(*t)))
                .collect();
            (xs, ticks)
        }
    };
    for (px, label) in &ticks {
        let _ = write!(
            out,
            "<line x1=\"{px}\" x2=\"{px}\" y1=\"{y0}\" y2=\"{y1}\" stroke=\"#888\"/>",
            px = n(*px),
            y0 = n(c.height - BOTTOM),
            y1 = n(c.height - BOTTOM + 4.0)
        );
        x_label(&mut out, *px, c.height - BOTTOM + 16.0, label);
    }
    let markers = count <= 120;
    for (si_, s) in c.series.iter().enumerate() {
        let col = colour(si_);
        // Runs of consecutive values become one polyline each.
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut current: Vec<(f64, f64)> = Vec::new();
        for (i, px) in xs.iter().enumerate() {
            match s.values.get(i).copied().flatten().filter(|v| v.is_finite()) {
                Some(v) => current.push((*px, y.map(v))),
                None => {
                    if !current.is_empty() {
                        runs.push(std::mem::take(&mut current));
                    }
                }
            }
        }
        if !current.is_empty() {
            runs.push(current);
        }
        for run in &runs {
            if run.len() == 1 {
                continue; // drawn as a marker below
            }
            let points = run
                .iter()
                .map(|(x, y)| format!("{},{}", n(*x), n(*y)))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = write!(
                out,
                "<polyline points=\"{points}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"2\" \
                 stroke-linejoin=\"round\"><title>{name}</title></polyline>",
                name = escape(&s.name)
            );
        }
        for (i, px) in xs.iter().enumerate() {
            let Some(v) = s.values.get(i).copied().flatten().filter(|v| v.is_finite()) else {
                continue;
            };
            let isolated = !markers
                && s.values.get(i.wrapping_sub(1)).copied().flatten().is_none()
                && s.values.get(i + 1).copied().flatten().is_none();
            if !markers && !isolated {
                continue;
            }
            let label = if s.name.is_empty() {
                format!("{}: {}", c.point(i), c.unit.value(v))
            } else {
                format!("{} · {}: {}", c.point(i), s.name, c.unit.value(v))
            };
            let _ = write!(
                out,
                "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"{r}\" fill=\"{col}\"><title>{label}</title></circle>",
                cx = n(*px),
                cy = n(y.map(v)),
                r = if count <= 40 { "3.5" } else { "2.5" },
                label = escape(&label)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// One bar of a horizontal bar chart.
#[derive(Debug, Clone, PartialEq)]
pub struct HBar {
    /// The label left of the bar.
    pub label: String,
    /// Its length.
    pub value: f64,
    /// Text right of the bar (e.g. the value and a share).
    pub note: String,
}

/// Horizontal bars, longest = full width (a funnel, or counts side by side).
pub fn hbar_chart(title: &str, bars: &[HBar], unit: Unit) -> String {
    let width = 960.0;
    let row = 34.0;
    let height = 16.0 + row * bars.len() as f64;
    let max = bars
        .iter()
        .map(|b| b.value)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    if bars.is_empty() || max <= 0.0 {
        return no_data(title, "No data", width, 120.0);
    }
    let label_w = 260.0;
    let note_w = 220.0;
    let x = LinearScale::new((0.0, max), (label_w, width - note_w));
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{t}\" {FONT} \
         font-size=\"13\">",
        w = n(width),
        h = n(height),
        t = escape(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let top = 8.0 + row * i as f64;
        let v = if b.value.is_finite() {
            b.value.max(0.0)
        } else {
            0.0
        };
        let end = x.map(v);
        let _ = write!(
            out,
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\" fill=\"#333\">{label}</text>\
             <rect x=\"{x0}\" y=\"{top}\" width=\"{w}\" height=\"{h}\" fill=\"{col}\">\
             <title>{label}: {value}</title></rect>\
             <text x=\"{nx}\" y=\"{ty}\" fill=\"#333\">{note}</text>",
            lx = n(label_w - 8.0),
            ty = n(top + row / 2.0 + 1.0),
            label = escape(&b.label),
            x0 = n(label_w),
            top = n(top),
            w = n((end - label_w).max(1.0)),
            h = n(row - 10.0),
            col = colour(i),
            value = escape(&unit.value(v)),
            nx = n(end + 8.0),
            note = escape(&b.note)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(series: Vec<Series>, labels: usize) -> Chart {
        Chart::new(
            "test <chart>",
            XAxis::Categories((0..labels).map(|i| format!("d{i}")).collect()),
            series,
            Unit::Count,
        )
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x&y's")</script>"#),
            "&lt;script&gt;alert(&quot;x&amp;y&#39;s&quot;)&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{0}b"), "ab");
    }

    #[test]
    fn scale_maps_linearly_and_survives_degenerate_domains() {
        let s = LinearScale::new((0.0, 10.0), (100.0, 0.0));
        assert_eq!(s.map(0.0), 100.0);
        assert_eq!(s.map(5.0), 50.0);
        assert_eq!(s.map(10.0), 0.0);
        for s in [
            LinearScale::new((3.0, 3.0), (0.0, 100.0)),
            LinearScale::new((f64::NAN, f64::INFINITY), (0.0, 100.0)),
        ] {
            assert!(s.map(3.0).is_finite());
            assert!(s.map(f64::NAN).is_finite());
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 97.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(nice_ticks(0.0, 0.3, 3), vec![0.0, 0.1, 0.2, 0.3]);
        assert_eq!(nice_ticks(0.0, 0.0, 5), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(f64::NAN, 1.0, 5), vec![0.0, 1.0]);
        let t = nice_ticks(12.0, 1234.0, 5);
        assert!(t[0] <= 12.0 && *t.last().unwrap() >= 1234.0, "{t:?}");
        assert!(t.len() <= 8, "{t:?}");
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(950.0), "950");
        assert_eq!(si(1500.0), "1.5k");
        assert_eq!(si(34_000.0), "34k");
        assert_eq!(si(2_500_000.0), "2.5M");
        assert_eq!(si(0.25), "0.25");
        assert_eq!(si(f64::NAN), "n/a");
        assert_eq!(Unit::Percent.tick(0.25), "25%");
        assert_eq!(Unit::Percent.value(0.1234), "12.3%");
        assert_eq!(Unit::Millis.value(1.5), "1.50 ms");
    }

    #[test]
    fn empty_data_renders_a_note_not_nan() {
        for svg in [
            bar_chart(&chart(vec![], 0), Bars::Grouped),
            bar_chart(&chart(vec![Series::new("a", [])], 0), Bars::Stacked),
            line_chart(&chart(
                vec![Series::with_gaps("a", vec![None, None, Some(f64::NAN)])],
                3,
            )),
            hbar_chart("t", &[], Unit::Count),
            hbar_chart(
                "t",
                &[HBar {
                    label: "x".into(),
                    value: 0.0,
                    note: String::new(),
                }],
                Unit::Count,
            ),
        ] {
            assert!(svg.contains("No data"), "{svg}");
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }

    #[test]
    fn all_zero_data_draws_axes_without_nan() {
        let svg = bar_chart(
            &chart(vec![Series::new("zero", [0.0, 0.0])], 2),
            Bars::Grouped,
        );
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains("<rect"), "{svg}");
        let svg = line_chart(&chart(vec![Series::new("zero", [0.0, 0.0])], 2));
        assert!(!svg.contains("NaN") && svg.contains("<polyline"), "{svg}");
    }

    #[test]
    fn bars_stack_and_group() {
        let c = chart(
            vec![Series::new("a", [1.0, 2.0]), Series::new("b", [3.0, 4.0])],
            2,
        );
        let grouped = bar_chart(&c, Bars::Grouped);
        let stacked = bar_chart(&c, Bars::Stacked);
        // Two series × two categories (plus the two legend swatches).
        assert_eq!(grouped.matches("<rect").count(), 6);
        assert_eq!(stacked.matches("<rect").count(), 6);
        assert!(stacked.contains("<title>d1 · b: 4</title>"), "{stacked}");
        // Stacked: the axis reaches the sum (6), grouped only the largest value (4).
        assert!(stacked.contains(">6<"), "{stacked}");
        assert!(!grouped.contains(">6<"), "{grouped}");
        assert!(grouped.contains("aria-label=\"test &lt;chart&gt;\""));
    }

    #[test]
    fn lines_break_at_gaps_and_dense_axes_thin_their_labels() {
        let c = chart(
            vec![Series::with_gaps(
                "rate",
                vec![Some(0.1), Some(0.2), None, Some(0.3), Some(0.4)],
            )],
            5,
        );
        let svg = line_chart(&c);
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        let days = 365;
        let svg = line_chart(&chart(
            vec![Series::new("n", (0..days).map(|i| i as f64))],
            days,
        ));
        let labels = svg.matches("text-anchor=\"middle\"").count();
        assert!(labels <= 12, "{labels} axis labels for {days} points");
        assert!(!svg.contains("<circle"), "no markers on dense lines");
    }

    #[test]
    fn numeric_axes_get_formatted_ticks() {
        let c = Chart::new(
            "latency",
            XAxis::Numeric {
                values: vec![0.0, 30.0, 61.0],
                labels: vec!["a".into(), "b".into(), "c".into()],
                format: |v| format!("{v:.0}s"),
            },
            vec![Series::new("p99", [1.0, 2.0, 3.0])],
            Unit::Millis,
        );
        let svg = line_chart(&c);
        assert!(svg.contains(">0s<") && svg.contains(">60s<"), "{svg}");
        assert!(svg.contains("<title>b · p99: 2.00 ms</title>"), "{svg}");
    }

    #[test]
    fn long_legends_wrap() {
        let series = (0..10)
            .map(|i| Series::new(format!("endpoint_number_{i}"), [1.0]))
            .collect();
        let svg = line_chart(&chart(series, 1));
        // Every swatch stays inside the view box.
        for part in svg.split("<rect x=\"").skip(1) {
            let x: f64 = part.split('"').next().unwrap().parse().unwrap();
            assert!(x < 960.0 - RIGHT, "{x}");
        }
        assert!(svg.contains("y=\"26\""), "a second legend row: {svg}");
    }

    #[test]
    fn hbars_scale_to_the_longest() {
        let svg = hbar_chart(
            "funnel",
            &[
                HBar {
                    label: "sessions".into(),
                    value: 100.0,
                    note: "100".into(),
                },
                HBar {
                    label: "<orders>".into(),
                    value: 50.0,
                    note: "50 (50%)".into(),
                },
            ],
            Unit::Count,
        );
        assert!(
            svg.contains("&lt;orders&gt;") && svg.contains("50 (50%)"),
            "{svg}"
        );
        assert!(!svg.contains("NaN"));
    }
}
