//! The page around the charts: one HTML file with its CSS inline, no script, and a content
//! security policy that forbids loading anything, so the file views the same offline.
//! Every piece of text goes through [`escape`].

use std::fmt::Write as _;

pub use super::svg::escape;

/// The stylesheet, inline.
const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1d1d1f; background: #fff; line-height: 1.45; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 64px; }
header h1 { font-size: 1.7rem; margin: 0 0 4px; }
header p { margin: 2px 0; color: #555; }
nav { position: sticky; top: 0; background: #fffffff0; border-bottom: 1px solid #e5e5e5;
  padding: 8px 0; margin: 16px 0 8px; z-index: 1; }
nav a { margin-right: 14px; color: #2556c4; text-decoration: none; font-size: .92rem; }
nav a:hover { text-decoration: underline; }
section { margin-top: 36px; }
h2 { font-size: 1.3rem; border-bottom: 2px solid #eee; padding-bottom: 4px; }
h3 { font-size: 1.05rem; margin: 22px 0 6px; }
p.note { color: #555; font-size: .92rem; margin: 4px 0 10px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 12px;
  margin: 14px 0; }
.card { border: 1px solid #e3e3e3; border-radius: 8px; padding: 10px 12px; background: #fafbfc; }
.card .label { font-size: .8rem; color: #666; text-transform: uppercase; letter-spacing: .03em; }
.card .value { font-size: 1.35rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .sub { font-size: .8rem; color: #666; }
figure { margin: 10px 0 22px; }
figcaption { font-size: .9rem; color: #444; margin-bottom: 4px; font-weight: 600; }
svg.chart { width: 100%; height: auto; display: block; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
@media (max-width: 800px) { .grid2 { grid-template-columns: 1fr; } }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: .92rem;
  font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f6f7f9; font-weight: 600; }
tr.total td { font-weight: 600; border-top: 2px solid #ddd; }
td.pos { color: #1f5fbf; } td.neg { color: #b35900; }
details pre { background: #f6f7f9; padding: 12px; overflow-x: auto; font-size: .85rem; }
footer { margin-top: 48px; color: #888; font-size: .85rem; }
@media print { nav { position: static; } section { break-inside: avoid-page; } }
"#;

/// A complete HTML document: `title` (text) and `body` (HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n\
         </body>\n</html>\n",
        escape(title)
    )
}

/// A section with an anchor, a heading (text) and content (HTML).
pub fn section(id: &str, title: &str, content: &str) -> String {
    format!(
        "<section id=\"{}\">\n<h2>{}</h2>\n{content}\n</section>\n",
        escape(id),
        escape(title)
    )
}

/// The navigation bar: (anchor, text) pairs.
pub fn nav(links: &[(&str, &str)]) -> String {
    let mut out = String::from("<nav>");
    for (id, text) in links {
        let _ = write!(out, "<a href=\"#{}\">{}</a>", escape(id), escape(text));
    }
    out.push_str("</nav>");
    out
}

/// A paragraph of explanatory text.
pub fn note(text: &str) -> String {
    format!("<p class=\"note\">{}</p>", escape(text))
}

/// A chart (SVG) with a caption (text).
pub fn figure(caption: &str, svg: &str) -> String {
    format!(
        "<figure><figcaption>{}</figcaption>{svg}</figure>",
        escape(caption)
    )
}

/// Two pieces of HTML side by side (stacked on narrow screens).
pub fn two_columns(a: &str, b: &str) -> String {
    format!("<div class=\"grid2\"><div>{a}</div><div>{b}</div></div>")
}

/// One key figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    /// What it is.
    pub label: String,
    /// The figure.
    pub value: String,
    /// A line below (context), may be empty.
    pub sub: String,
}

impl Card {
    /// A card.
    pub fn new(label: impl Into<String>, value: impl Into<String>, sub: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            value: value.into(),
            sub: sub.into(),
        }
    }
}

/// Key figures as a grid of cards.
pub fn cards(cards: &[Card]) -> String {
    let mut out = String::from("<div class=\"cards\">");
    for c in cards {
        let _ = write!(
            out,
            "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value\">{}</div>\
             <div class=\"sub\">{}</div></div>",
            escape(&c.label),
            escape(&c.value),
            escape(&c.sub)
        );
    }
    out.push_str("</div>");
    out
}

/// A table cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Td {
    /// Plain text.
    Text(String),
    /// A signed difference: coloured by its sign (blue up, orange down).
    Signed(String, f64),
}

impl From<String> for Td {
    fn from(s: String) -> Self {
        Td::Text(s)
    }
}

impl From<&str> for Td {
    fn from(s: &str) -> Self {
        Td::Text(s.to_string())
    }
}

/// A table: a header row and rows of cells (all text, escaped here). The first column is
/// left-aligned, the others (figures) right-aligned. A row whose first cell starts with
/// "total" is emphasised.
pub fn table(head: &[&str], rows: &[Vec<Td>]) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        let total = matches!(row.first(), Some(Td::Text(t)) if t.starts_with("total"));
        out.push_str(if total {
            "<tr class=\"total\">"
        } else {
            "<tr>"
        });
        for cell in row {
            match cell {
                Td::Text(t) => {
                    let _ = write!(out, "<td>{}</td>", escape(t));
                }
                Td::Signed(t, v) => {
                    let class = if *v > 0.0 {
                        " class=\"pos\""
                    } else if *v < 0.0 {
                        " class=\"neg\""
                    } else {
                        ""
                    };
                    let _ = write!(out, "<td{class}>{}</td>", escape(t));
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// Preformatted text in a collapsed block.
pub fn details(summary: &str, text: &str) -> String {
    format!(
        "<details><summary>{}</summary><pre>{}</pre></details>",
        escape(summary),
        escape(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_self_contained_and_escaped() {
        let html = page("run <x>", &section("a", "A & B", &note("<b>")));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>run &lt;x&gt;</title>"));
        assert!(html.contains("<h2>A &amp; B</h2>"));
        assert!(html.contains("&lt;b&gt;"));
        assert!(html.contains("default-src 'none'"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn tables_escape_cells_and_mark_signs() {
        let t = table(
            &["what", "n"],
            &[
                vec!["<i>".into(), Td::Signed("+3".into(), 3.0)],
                vec!["total".into(), Td::Signed("-1".into(), -1.0)],
            ],
        );
        assert!(t.contains("<td>&lt;i&gt;</td>"));
        assert!(t.contains("<td class=\"pos\">+3</td>"));
        assert!(t.contains("<tr class=\"total\"><td>total</td><td class=\"neg\">-1</td>"));
    }
}
