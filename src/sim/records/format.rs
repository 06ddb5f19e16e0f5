//! Canonical text for exported values, so the same dataset is the same bytes on SQLite and
//! PostgreSQL: money as fixed two-decimal text, timestamps RFC 3339 UTC with microseconds
//! (PostgreSQL's precision), floats as the shortest decimal that reads back to the same value
//! (never an exponent), JSON with sorted keys and no spaces.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value as Json;

use crate::money::Money;

/// One exported value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Missing (empty in CSV, `null` in JSON lines).
    Null,
    /// Text.
    Text(String),
    /// Whole number.
    Int(i64),
    /// Boolean (`true` / `false`).
    Bool(bool),
    /// Money (`12.50`; a JSON number with two decimals).
    Money(Money),
    /// Floating point (shortest round-trip decimal).
    Float(f64),
    /// Instant (`2024-01-01T09:00:00.000000Z`).
    Ts(DateTime<Utc>),
    /// Calendar date (`2024-01-01`).
    Date(NaiveDate),
    /// A JSON document (canonical text in CSV, nested in JSON lines).
    Json(Json),
}

impl Cell {
    /// Text, or null when absent.
    pub fn opt_text(s: Option<String>) -> Cell {
        s.map_or(Cell::Null, Cell::Text)
    }

    /// An instant, or null.
    pub fn opt_ts(t: Option<DateTime<Utc>>) -> Cell {
        t.map_or(Cell::Null, Cell::Ts)
    }

    /// Money, or null.
    pub fn opt_money(m: Option<Money>) -> Cell {
        m.map_or(Cell::Null, Cell::Money)
    }

    /// A boolean, or null.
    pub fn opt_bool(b: Option<bool>) -> Cell {
        b.map_or(Cell::Null, Cell::Bool)
    }

    /// The CSV text of the value.
    pub fn csv_text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Money(m) => m.to_string(),
            Cell::Float(f) => float(*f).unwrap_or_default(),
            Cell::Ts(t) => timestamp(*t),
            Cell::Date(d) => d.format("%Y-%m-%d").to_string(),
            Cell::Json(j) => canonical_json(j),
        }
    }

    /// Appends the JSON text of the value.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Cell::Null => out.push_str("null"),
            Cell::Text(s) => push_json_string(out, s),
            Cell::Int(n) => out.push_str(&n.to_string()),
            Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            // A number literal with exactly two decimals: valid JSON, exact, stable.
            Cell::Money(m) => out.push_str(&m.to_string()),
            Cell::Float(f) => match float(*f) {
                Some(s) => out.push_str(&s),
                None => out.push_str("null"),
            },
            Cell::Ts(t) => push_json_string(out, &timestamp(*t)),
            Cell::Date(d) => push_json_string(out, &d.format("%Y-%m-%d").to_string()),
            Cell::Json(j) => write_canonical(j, out),
        }
    }
}

/// RFC 3339 UTC with microseconds: `2024-01-01T09:00:00.000000Z`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The shortest decimal that reads back as `f` (Rust's `Display`: never an exponent), or
/// `None` for NaN and infinities.
pub fn float(f: f64) -> Option<String> {
    f.is_finite().then(|| {
        if f == 0.0 {
            // -0 and 0 are the same value in a dataset.
            "0".to_string()
        } else {
            format!("{f}")
        }
    })
}

/// JSON text with object keys sorted and no whitespace.
pub fn canonical_json(v: &Json) -> String {
    let mut s = String::new();
    write_canonical(v, &mut s);
    s
}

fn push_json_string(out: &mut String, s: &str) {
    // serde_json's escaping of a string cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string()));
}

fn write_canonical(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                // PostgreSQL's JSONB and SQLite's text give back the same f64: print it one way.
                match n.as_f64().and_then(float) {
                    Some(s) => out.push_str(&s),
                    None => out.push_str("null"),
                }
            }
        }
        Json::String(s) => push_json_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => {
            let sorted: BTreeMap<&String, &Json> = map.iter().collect();
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(out, k);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
    }
}

/// Flattens a JSON object into `prefix.key` → cell, nested objects joined with dots; arrays
/// stay JSON. Used for the persona columns of the CSV agents file.
pub fn flatten(prefix: &str, v: &Json, out: &mut BTreeMap<String, Cell>) {
    match v {
        Json::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        Json::Null => {
            out.insert(prefix.to_string(), Cell::Null);
        }
        Json::Bool(b) => {
            out.insert(prefix.to_string(), Cell::Bool(*b));
        }
        Json::Number(n) => {
            let cell = match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Cell::Int(i),
                (None, Some(f)) => Cell::Float(f),
                (None, None) => Cell::Text(n.to_string()),
            };
            out.insert(prefix.to_string(), cell);
        }
        Json::String(s) => {
            out.insert(prefix.to_string(), Cell::Text(s.clone()));
        }
        Json::Array(_) => {
            out.insert(prefix.to_string(), Cell::Json(v.clone()));
        }
    }
}

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "jsonl" | "json-lines" | "ndjson" => Ok(Format::Jsonl),
            other => Err(format!(
                "`{other}` is not an export format: use csv or jsonl"
            )),
        }
    }
}

/// Writes rows of one table in one format. Columns are fixed when the writer is made.
pub struct TableWriter<W: Write> {
    format: Format,
    columns: Vec<String>,
    csv: Option<csv::Writer<W>>,
    raw: Option<W>,
    line: String,
    rows: u64,
}

impl<W: Write> TableWriter<W> {
    /// A writer of `columns` to `out` (the CSV header is written now).
    pub fn new(format: Format, columns: Vec<String>, out: W) -> std::io::Result<Self> {
        let mut w = TableWriter {
            format,
            columns,
            csv: None,
            raw: None,
            line: String::new(),
            rows: 0,
        };
        match format {
            Format::Csv => {
                let mut c = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(out);
                c.write_record(&w.columns).map_err(csv_io)?;
                w.csv = Some(c);
            }
            Format::Jsonl => w.raw = Some(out),
        }
        Ok(w)
    }

    /// Writes one row (one cell per column, in column order).
    pub fn write(&mut self, cells: &[Cell]) -> std::io::Result<()> {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows += 1;
        match self.format {
            Format::Csv => {
                let record: Vec<String> = cells.iter().map(Cell::csv_text).collect();
                if let Some(c) = self.csv.as_mut() {
                    c.write_record(&record).map_err(csv_io)?;
                }
            }
            Format::Jsonl => {
                self.line.clear();
                self.line.push('{');
                for (i, (col, cell)) in self.columns.iter().zip(cells).enumerate() {
                    if i > 0 {
                        self.line.push(',');
                    }
                    push_json_string(&mut self.line, col);
                    self.line.push(':');
                    cell.write_json(&mut self.line);
                }
                self.line.push_str("}\n");
                if let Some(w) = self.raw.as_mut() {
                    w.write_all(self.line.as_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes and returns the row count.
    pub fn finish(mut self) -> std::io::Result<u64> {
        if let Some(c) = self.csv.as_mut() {
            c.flush()?;
        }
        if let Some(w) = self.raw.as_mut() {
            w.flush()?;
        }
        Ok(self.rows)
    }
}

fn csv_io(e: csv::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn values_have_one_text() {
        let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(Cell::Ts(t).csv_text(), "2024-01-02T03:04:05.000000Z");
        assert_eq!(Cell::Money(Money(1250)).csv_text(), "12.50");
        assert_eq!(Cell::Money(Money(-5)).csv_text(), "-0.05");
        assert_eq!(Cell::Float(0.1).csv_text(), "0.1");
        assert_eq!(Cell::Float(-0.0).csv_text(), "0");
        assert_eq!(Cell::Float(1e20).csv_text(), "100000000000000000000");
        assert_eq!(Cell::Float(f64::NAN).csv_text(), "");
        let mut s = String::new();
        Cell::Money(Money(1000)).write_json(&mut s);
        assert_eq!(s, "10.00");
        assert_eq!(
            canonical_json(&json!({"b": [1, 2.5, {"z": null, "a": "x"}], "a": true})),
            r#"{"a":true,"b":[1,2.5,{"a":"x","z":null}]}"#
        );
    }

    #[test]
    fn flattens_nested_objects_with_dots() {
        let mut out = BTreeMap::new();
        flatten(
            "persona",
            &json!({"age": 30, "traits": {"thrift": 0.5}, "cats": ["a"]}),
            &mut out,
        );
        let keys: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["persona.age", "persona.cats", "persona.traits.thrift"]
        );
        assert_eq!(out["persona.cats"].csv_text(), r#"["a"]"#);
    }

    #[test]
    fn writes_csv_and_json_lines() {
        let cols = vec!["a".to_string(), "b".to_string()];
        let mut buf = Vec::new();
        let mut w = TableWriter::new(Format::Csv, cols.clone(), &mut buf).unwrap();
        w.write(&[Cell::Text("x,y".into()), Cell::Null]).unwrap();
        assert_eq!(w.finish().unwrap(), 1);
        assert_eq!(String::from_utf8(buf).unwrap(), "a,b\n\"x,y\",\n");
        let mut buf = Vec::new();
        let mut w = TableWriter::new(Format::Jsonl, cols, &mut buf).unwrap();
        w.write(&[Cell::Int(1), Cell::Bool(false)]).unwrap();
        w.finish().unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "{\"a\":1,\"b\":false}\n");
    }
}
