//! `shopsim report RUN_ID` and `shopsim report --compare RUN_A RUN_B`: a run's report (or the
//! comparison of two runs) as one self-contained HTML file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{ArgGroup, Args};

use super::common::DbArgs;
use crate::report;
use crate::sim::records;

/// Render a run's HTML report from its records in the database.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["run_id", "compare"])))]
pub struct ReportArgs {
    #[command(flatten)]
    db: DbArgs,

    /// The run to report on (see `shopsim runs list`).
    run_id: Option<String>,

    /// Compare two runs side by side instead (key figures with differences, charts of both).
    #[arg(long, num_args = 2, value_names = ["RUN_A", "RUN_B"], conflicts_with = "run_id")]
    compare: Option<Vec<String>>,

    /// The HTML file to write (folders created as needed). Default:
    /// `<run-dir>/<RUN_ID>/report.html`, or `<run-dir>/compare-<RUN_A>-<RUN_B>.html`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Folder of run renderings, used for the default --out.
    #[arg(long, env = "SHOPSIM_RUN_DIR", default_value = "simulation_runs")]
    run_dir: PathBuf,
}

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.connect().await?;
    records::ensure_run_tables(&db).await?;
    let started = Instant::now();
    let path = match (&args.compare, &args.run_id) {
        (Some(ids), _) => {
            let [a, b] = ids.as_slice() else {
                anyhow::bail!("--compare takes two run ids");
            };
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| report::comparison_path(&args.run_dir, a, b));
            report::write_comparison(&db, a, b, &out).await?
        }
        (None, Some(id)) => {
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| report::report_path(&args.run_dir, id));
            report::write_report_to(&db, id, &out).await?
        }
        (None, None) => anyhow::bail!("name a run (RUN_ID) or two with --compare RUN_A RUN_B"),
    };
    println!(
        "report written to {} in {:.2}s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
