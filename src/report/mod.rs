//! `shopsim report`: a run's report as one self-contained HTML file, rendered from the run's
//! records in the database.
//!
//! The file needs nothing else to be viewed: CSS is inline, charts are inline SVG drawn here
//! (no script, no fonts or images fetched; the page's content security policy forbids any
//! fetch). Parts:
//! - [`data`]: the queries, into a [`ReportData`];
//! - [`svg`]: chart primitives (bar, stacked bar, line and horizontal bar charts, axes);
//! - [`html`]: the page, tables and cards;
//! - [`pages`]: the run report and the comparison of two runs.
//!
//! [`write_report`] writes `<run-dir>/<run_id>/report.html`; [`write_comparison`] writes
//! `<run-dir>/compare-<A>-<B>.html`.

pub mod data;
pub mod html;
pub mod pages;
pub mod svg;

use std::path::{Path, PathBuf};

use chrono::Utc;

pub use data::{Pages, ReportData, load, load_paged, load_with};

use crate::sim::metrics::MetricsError;
use crate::sim::records::RecordsError;
use crate::store::StoreError;

/// The report's file name inside the run folder.
pub const REPORT_FILE: &str = "report.html";

/// What can go wrong rendering a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the run's records failed (unknown run, no run tables, corrupt metrics).
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored histogram is corrupt.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A stored value is not what the report expects.
    #[error("{0}")]
    Invalid(String),
    /// Writing the file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where [`write_report`] puts the report of `run_id`: `<run_dir>/<run_id>/report.html`.
pub fn report_path(run_dir: &Path, run_id: &str) -> PathBuf {
    run_dir.join(run_id).join(REPORT_FILE)
}

/// Where [`write_comparison`] puts the comparison of two runs by default:
/// `<run_dir>/compare-<a>-<b>.html`.
pub fn comparison_path(run_dir: &Path, a: &str, b: &str) -> PathBuf {
    run_dir.join(format!("compare-{a}-{b}.html"))
}

/// Renders the report of `run_id` from the database.
pub async fn render_report(db: &crate::store::Db, run_id: &str) -> Result<String, ReportError> {
    let data = data::load(db, run_id).await?;
    Ok(pages::run_page(&data, Utc::now()))
}

/// Renders the comparison of runs `a` and `b` from the database. Their interval charts are
/// lined up by simulated hour since each run's start.
pub async fn render_comparison(
    db: &crate::store::Db,
    a: &str,
    b: &str,
) -> Result<String, ReportError> {
    // Fail on an unknown id before the heavier reads.
    crate::sim::records::require_run(db, a).await?;
    crate::sim::records::require_run(db, b).await?;
    let last = data::last_interval(db, a)
        .await?
        .max(data::last_interval(db, b).await?);
    let per_point = (last + 1).div_ceil(data::MAX_INTERVAL_POINTS as u64).max(1);
    let data_a = data::load_with(db, a, Some(per_point)).await?;
    let data_b = data::load_with(db, b, Some(per_point)).await?;
    Ok(pages::compare_page(&data_a, &data_b, Utc::now()))
}

fn write(path: &Path, html: &str) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Written next to the target and renamed, so a reader never sees half a report.
    let tmp = path.with_extension("html.tmp");
    std::fs::write(&tmp, html).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Renders the report of `run_id` into `<run_dir>/<run_id>/report.html` (folders created as
/// needed) and returns that path. What `shopsim run` calls at the end of a run.
pub async fn write_report(
    db: &crate::store::Db,
    run_id: &str,
    run_dir: &Path,
) -> Result<PathBuf, ReportError> {
    write_report_to(db, run_id, &report_path(run_dir, run_id)).await
}

/// Renders the report of `run_id` into the file `out` and returns it.
pub async fn write_report_to(
    db: &crate::store::Db,
    run_id: &str,
    out: &Path,
) -> Result<PathBuf, ReportError> {
    let html = render_report(db, run_id).await?;
    write(out, &html)?;
    Ok(out.to_path_buf())
}

/// Renders the comparison of runs `a` and `b` into the file `out` and returns it.
pub async fn write_comparison(
    db: &crate::store::Db,
    a: &str,
    b: &str,
    out: &Path,
) -> Result<PathBuf, ReportError> {
    let html = render_comparison(db, a, b).await?;
    write(out, &html)?;
    Ok(out.to_path_buf())
}
