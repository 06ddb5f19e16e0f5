//! `shopsim run`: simulate a shopper population on a simulated clock.
//!
//! Precedence: flag > environment variable > config file (`--config`) > default.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{NaiveDate, Utc};
use clap::Args;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::common::DbArgs;
use crate::sim::clock::TimeScale;
use crate::sim::records::{self, RunRecord, RunStatus};
use crate::sim::run::{self, ActionsMode, AuthMode, IMMUTABLE_KEYS, RunSettings};
use crate::sim::shard::{DEFAULT_LEASE_TTL, ShardOptions, ShardSpec};
use crate::sim::thresholds::Threshold;

/// Simulate shoppers against the VoiceOffers API (or the embedded reference server).
///
/// Without --api-url and --database-url this is the embedded default: ./shopsim.db (SQLite) is
/// migrated and seeded if needed, the reference server starts in-process on a loopback port,
/// and 372 agents shop for 14 simulated days as fast as possible.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    db: DbArgs,

    /// TOML file with any of these settings (same names as the flags, e.g. `persona-set =
    /// "grocery"`, `time-scale = "96"`, `thresholds = ["errors.rate<1%"]`); flags and
    /// environment variables override it.
    #[arg(long, env = "SHOPSIM_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Id of the run (default: generated from the wall clock, e.g. run-20261127-154233-1a2b).
    #[arg(long, env = "SHOPSIM_RUN_ID")]
    run_id: Option<String>,

    /// Persona set: a folder of --behaviors (default: grocery).
    #[arg(long, env = "SHOPSIM_PERSONA_SET")]
    persona_set: Option<String>,

    /// Folder of persona sets (default: behaviors).
    #[arg(long, env = "SHOPSIM_BEHAVIORS", value_name = "DIR")]
    behaviors: Option<PathBuf>,

    /// Number of agents (default: 372). Created with the persona set when the database has
    /// fewer; when it has more, the first N by agent id run.
    #[arg(long, env = "SHOPSIM_AGENTS")]
    agents: Option<u64>,

    /// Seed of every random choice (default: 42). Same seed, scripts and settings → same data.
    #[arg(long, env = "SHOPSIM_SEED")]
    seed: Option<u64>,

    /// First simulated day, YYYY-MM-DD (default: one simulated hour after the latest activity
    /// already in the database, so runs never overlap; 2024-01-01 on an empty database).
    #[arg(long, env = "SHOPSIM_START")]
    start: Option<NaiveDate>,

    /// Number of simulated days (default: 14). Alternative: --until.
    #[arg(long, env = "SHOPSIM_DAYS", conflicts_with = "until")]
    days: Option<u32>,

    /// Last simulated day, inclusive (YYYY-MM-DD).
    #[arg(long, env = "SHOPSIM_UNTIL")]
    until: Option<NaiveDate>,

    /// IANA time zone of the simulated calendar the scripts see and the hours reported
    /// (default: UTC).
    #[arg(long, env = "SHOPSIM_TIMEZONE")]
    timezone: Option<String>,

    /// Simulated seconds per wall second (48, 96, 10000 …) or `max` (default: max).
    #[arg(long, env = "SHOPSIM_TIME_SCALE")]
    time_scale: Option<TimeScale>,

    /// Sessions in flight at most (default: 50).
    #[arg(long, env = "SHOPSIM_CONCURRENCY")]
    concurrency: Option<usize>,

    /// Activate agents gradually over this many simulated hours (default: 0, all at once).
    #[arg(long, env = "SHOPSIM_RAMP_UP")]
    ramp_up: Option<u32>,

    /// `http` (to --api-url or the embedded reference server) or `inprocess` (the domain
    /// layer directly, no HTTP) (default: http).
    #[arg(long, env = "SHOPSIM_ACTIONS", value_enum)]
    actions: Option<ActionsMode>,

    /// Base URL of the VoiceOffers API, e.g. https://api.example.com. Requires the API's
    /// --database-url. Default: the embedded reference server.
    #[arg(long, env = "SHOPSIM_API_URL")]
    api_url: Option<String>,

    /// `dev` (Bearer dev:<agent_id>) or `jwt` (HS256 per agent from SHOPSIM_JWT_SECRET)
    /// (default: dev).
    #[arg(long, env = "SHOPSIM_AUTH", value_enum)]
    auth: Option<AuthMode>,

    /// Folder for the run's summary.md and metadata.json (default: simulation_runs).
    #[arg(long, env = "SHOPSIM_RUN_DIR", value_name = "DIR")]
    run_dir: Option<PathBuf>,

    /// Inventory level restored at simulated midnight (default: 500).
    #[arg(long, env = "SHOPSIM_RESTOCK_LEVEL")]
    restock_level: Option<i64>,

    /// Longest outage (the database, or the API not answering at all) the run waits out
    /// before it stops, resumable with the same command (e.g. `30m`, `2h`; default: 1h).
    #[arg(long, env = "SHOPSIM_MAX_OUTAGE", value_parser = super::common::parse_duration)]
    max_outage: Option<std::time::Duration>,

    /// `max` runs: the least wall time between two checkpoints within a simulated day (one is
    /// always taken at each day's end). A resume goes back at most this far; `0s`
    /// checkpoints every simulated hour, as paced runs do (default: 1s).
    #[arg(long, env = "SHOPSIM_CHECKPOINT_EVERY", value_parser = super::common::parse_duration)]
    checkpoint_every: Option<std::time::Duration>,

    /// Pass/fail threshold checked at the end of the run, k6 style; repeatable. A crossed
    /// threshold is reported and the exit code is 99. METRIC<VALUE with <, <=, >, >=:
    /// ENDPOINT.p50|p95|p99|max (`checkout.p99<500ms`, `add_to_cart.max<2s`),
    /// ENDPOINT.errors.rate, ENDPOINT.count, errors.rate (`errors.rate<1%`), errors.count,
    /// rejections.rate, OUTCOME.count|rate (timeout, api_5xx, rate_limited, other_4xx,
    /// connection, db), script_errors.count, sessions_failed.rate, abandon.rate,
    /// lag.p95|p99|max. Endpoints: select_store, view_product, add_to_cart,
    /// eligible_coupons, apply_coupon, cart_summary, checkout, abandon, refresh_offers, wallet.
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<Threshold>,

    /// Stop the run (resumable) as soon as a --threshold is crossed, checked every simulated
    /// hour; the exit code is 99.
    #[arg(long)]
    abort_on_threshold: bool,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics while the run goes (requests by
    /// endpoint and outcome, latency histograms, sessions, orders, revenue, offers,
    /// simulated time, lag). The reference server's own /metrics is on its own port.
    #[arg(long, env = "SHOPSIM_METRICS_ADDR", value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,

    /// Keep /metrics up this long after the run ends so a last scrape gets the final
    /// figures (`shopsim_run_ended 1`); Ctrl-C ends the wait (default: 0s).
    #[arg(long, value_parser = super::common::parse_duration, value_name = "DURATION")]
    metrics_linger: Option<std::time::Duration>,

    /// Simulate only shard I of N of the run, e.g. `0/3`: the agents whose stable hash falls in
    /// slice I (every agent belongs to exactly one shard). All N shards use the same --run-id,
    /// settings and database, run at the same time (each waits for the others at the end of
    /// every simulated day) and, paced, share one simulated clock. A shard owns its slice
    /// through a lease in the database; a restarted shard resumes its slice. Default: 0/1.
    #[arg(long, env = "SHOPSIM_SHARD", value_name = "I/N")]
    shard: Option<ShardSpec>,

    /// The run's number of shards, this process's index coming from JOB_COMPLETION_INDEX (as
    /// Kubernetes Indexed Jobs set it): the same as --shard $JOB_COMPLETION_INDEX/N.
    #[arg(long, env = "SHOPSIM_SHARDS", value_name = "N")]
    shards: Option<u32>,

    /// A shard's lease may be taken over when not renewed for this long (it is renewed every
    /// third of it); a shard restarted after a crash on another machine waits this long for
    /// the old lease (on the same machine, not at all) (default: 30s).
    #[arg(long, env = "SHOPSIM_LEASE_TTL", value_parser = super::common::parse_duration)]
    lease_ttl: Option<std::time::Duration>,

    /// Resume the latest unfinished run in the database (with its stored configuration;
    /// operational options such as --time-scale, --concurrency and --api-url may change).
    /// `--run-id ID` alone also resumes run ID when it exists and is unfinished.
    #[arg(long, conflicts_with = "run_id")]
    resume: bool,

    /// Start a new run even though the database holds an unfinished run with the same
    /// configuration (without it, shopsim asks whether to resume that run).
    #[arg(long, conflicts_with = "resume")]
    new: bool,

    /// Do not render report.html at the end of the run (`shopsim report RUN_ID` renders it
    /// any time later from the database).
    #[arg(long)]
    no_report: bool,

    /// No live dashboard: a status line on stderr every 5 seconds instead (also without a
    /// terminal). With the dashboard, log lines go to the log file only.
    #[arg(long)]
    no_tui: bool,

    /// JSON log lines (one object per event: timestamp, level, target, run_id, sim_time,
    /// message, fields) go to this file; per-request detail only at --log-level debug.
    #[arg(
        long,
        env = "SHOPSIM_LOG_FILE",
        default_value = "simulation_runs.log",
        value_name = "PATH"
    )]
    log_file: PathBuf,

    /// The log file is rotated when it grows past this many MiB (5 rotated files are kept).
    #[arg(long, env = "SHOPSIM_LOG_MAX_MIB", default_value_t = 100)]
    log_max_mib: u64,
}

impl RunArgs {
    /// Whether the live dashboard takes the terminal.
    pub fn tui(&self) -> bool {
        !self.no_tui && crate::dashboard::is_terminal()
    }

    /// Where this run logs: the JSON file always, stderr only without the dashboard.
    pub fn log_targets(&self) -> crate::logging::LogTargets {
        crate::logging::LogTargets {
            stderr: !self.tui(),
            file: Some(crate::logging::LogFile {
                path: self.log_file.clone(),
                max_bytes: self.log_max_mib.max(1) * 1024 * 1024,
                keep: 5,
            }),
        }
    }
}

/// The config file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileSettings {
    database_url: Option<String>,
    run_id: Option<String>,
    persona_set: Option<String>,
    behaviors: Option<PathBuf>,
    agents: Option<u64>,
    seed: Option<u64>,
    start: Option<NaiveDate>,
    days: Option<u32>,
    until: Option<NaiveDate>,
    timezone: Option<String>,
    time_scale: Option<toml::Value>,
    concurrency: Option<usize>,
    ramp_up: Option<u32>,
    actions: Option<ActionsMode>,
    api_url: Option<String>,
    auth: Option<AuthMode>,
    run_dir: Option<PathBuf>,
    restock_level: Option<i64>,
    max_outage: Option<String>,
    checkpoint_every: Option<String>,
    thresholds: Option<Vec<String>>,
    abort_on_threshold: Option<bool>,
    metrics_addr: Option<std::net::SocketAddr>,
    shards: Option<u32>,
    lease_ttl: Option<String>,
}

fn read_config(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
}

/// Checks the text of a `--config` file offline, as `shopsim run --config` would take it with
/// no flag or environment variable given: unknown keys and types (as `read_config`), every
/// value resolved from it (time scale, durations, thresholds, days, concurrency, as
/// `resolve`), and the checks a run makes before it touches the database (time zone, agents,
/// `api-url` with in-process actions). Used to validate deployment manifests in the tests
/// (`examples/kubernetes`).
pub fn check_config_text(text: &str) -> anyhow::Result<()> {
    use clap::{Args as _, FromArgMatches as _};
    let file: FileSettings =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("config file: {e}"))?;
    // No flag given and no environment variable read: the file alone decides.
    let cmd = RunArgs::augment_args(clap::Command::new("shopsim-run"))
        .mut_args(|arg| arg.env(None::<&'static str>));
    let args = RunArgs::from_arg_matches(&cmd.try_get_matches_from(["shopsim-run"])?)?;
    let settings = resolve(&args, file)?;
    if settings.timezone.parse::<chrono_tz::Tz>().is_err() {
        anyhow::bail!(
            "config file: timezone `{}` is not an IANA time zone",
            settings.timezone
        );
    }
    if settings.agents == 0 {
        anyhow::bail!("config file: agents must be at least 1");
    }
    if settings.api_url.is_some() && settings.actions == ActionsMode::Inprocess {
        anyhow::bail!("config file: api-url and actions = \"inprocess\" contradict each other");
    }
    Ok(())
}

fn resolve(args: &RunArgs, file: FileSettings) -> anyhow::Result<RunSettings> {
    let time_scale = match (args.time_scale, file.time_scale) {
        (Some(t), _) => t,
        (None, Some(v)) => {
            let text = match &v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => anyhow::bail!(
                    "config file: time-scale must be a number or \"max\", got {}",
                    other.type_str()
                ),
            };
            text.parse()
                .map_err(|e| anyhow::anyhow!("config file: time-scale: {e}"))?
        }
        (None, None) => TimeScale::Max,
    };
    let start = args.start.or(file.start);
    let until = if args.days.is_some() {
        None
    } else {
        args.until.or(file.until)
    };
    let days = args.days.or(file.days).unwrap_or(14);
    if days == 0 {
        anyhow::bail!("--days must be at least 1");
    }
    let sharding = ShardOptions {
        spec: shard_spec(
            args.shard,
            args.shards.or(file.shards),
            std::env::var("JOB_COMPLETION_INDEX").ok(),
        )?,
        lease_ttl: match (args.lease_ttl, &file.lease_ttl) {
            (Some(d), _) => d,
            (None, Some(text)) => humantime::parse_duration(text)
                .map_err(|e| anyhow::anyhow!("config file: lease-ttl `{text}`: {e}"))?,
            (None, None) => DEFAULT_LEASE_TTL,
        },
    };
    if sharding.lease_ttl < std::time::Duration::from_secs(1) {
        anyhow::bail!("--lease-ttl must be at least 1s (it is renewed every third of it)");
    }
    if sharding.spec.is_sharded() && args.run_id.is_none() && file.run_id.is_none() {
        anyhow::bail!(
            "a sharded run (--shard {}) needs --run-id (or SHOPSIM_RUN_ID): every shard of the run uses the same id",
            sharding.spec
        );
    }
    let concurrency = args.concurrency.or(file.concurrency).unwrap_or(50);
    if concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    Ok(RunSettings {
        run_id: args
            .run_id
            .clone()
            .or(file.run_id)
            .unwrap_or_else(|| run::generate_run_id(Utc::now())),
        persona_set: args
            .persona_set
            .clone()
            .or(file.persona_set)
            .unwrap_or_else(|| "grocery".into()),
        behaviors: args
            .behaviors
            .clone()
            .or(file.behaviors)
            .unwrap_or_else(|| PathBuf::from("behaviors")),
        agents: args.agents.or(file.agents).unwrap_or(372),
        seed: args.seed.or(file.seed).unwrap_or(42),
        start,
        days,
        until,
        timezone: args
            .timezone
            .clone()
            .or(file.timezone)
            .unwrap_or_else(|| "UTC".into()),
        time_scale,
        concurrency,
        ramp_up_hours: args.ramp_up.or(file.ramp_up).unwrap_or(0),
        actions: args.actions.or(file.actions).unwrap_or(ActionsMode::Http),
        api_url: args.api_url.clone().or(file.api_url),
        auth: args.auth.or(file.auth).unwrap_or(AuthMode::Dev),
        run_dir: args
            .run_dir
            .clone()
            .or(file.run_dir)
            .unwrap_or_else(|| PathBuf::from("simulation_runs")),
        restock_level: args.restock_level.or(file.restock_level).unwrap_or(500),
        max_outage: match (args.max_outage, &file.max_outage) {
            (Some(d), _) => d,
            (None, Some(text)) => humantime::parse_duration(text)
                .map_err(|e| anyhow::anyhow!("config file: max-outage `{text}`: {e}"))?,
            (None, None) => std::time::Duration::from_secs(3600),
        },
        checkpoint_every: match (args.checkpoint_every, &file.checkpoint_every) {
            (Some(d), _) => d,
            (None, Some(text)) => humantime::parse_duration(text)
                .map_err(|e| anyhow::anyhow!("config file: checkpoint-every `{text}`: {e}"))?,
            (None, None) => run::default_checkpoint_every(),
        },
        thresholds: if args.thresholds.is_empty() {
            file.thresholds
                .unwrap_or_default()
                .iter()
                .map(|t| t.parse::<Threshold>())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("config file: {e}"))?
        } else {
            args.thresholds.clone()
        },
        abort_on_threshold: args.abort_on_threshold || file.abort_on_threshold.unwrap_or(false),
        metrics_addr: args.metrics_addr.or(file.metrics_addr),
        hot_reload: true,
        status_line: true,
        report: !args.no_report,
        tui: args.tui(),
        sharding,
    })
}

/// This process's shard: `--shard I/N`, or `--shards N` with I from `JOB_COMPLETION_INDEX`
/// (`job_index`), or the single shard of an unsharded run.
fn shard_spec(
    shard: Option<ShardSpec>,
    shards: Option<u32>,
    job_index: Option<String>,
) -> anyhow::Result<ShardSpec> {
    match (shard, shards) {
        (Some(s), Some(n)) if s.count != n => anyhow::bail!(
            "--shard {s} and --shards {n} (or SHOPSIM_SHARDS) disagree on the number of shards"
        ),
        (Some(s), _) => Ok(s),
        (None, Some(n)) => {
            let text = job_index.ok_or_else(|| {
                anyhow::anyhow!(
                    "--shards {n} needs this process's shard index: --shard I/{n}, or JOB_COMPLETION_INDEX as a Kubernetes Indexed Job sets it"
                )
            })?;
            let index = text.trim().parse::<u32>().map_err(|_| {
                anyhow::anyhow!("JOB_COMPLETION_INDEX `{text}` is not a shard index (0, 1, 2 …)")
            })?;
            Ok(ShardSpec::new(index, n)?)
        }
        (None, None) => Ok(ShardSpec::SINGLE),
    }
}

pub async fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(p) => read_config(p)?,
        None => FileSettings::default(),
    };
    // The database URL: flag/env (clap) > file > default; clap's default only when neither.
    let db_from_cli = std::env::args().any(|a| a.starts_with("--database-url"))
        || std::env::var_os("DATABASE_URL").is_some();
    let db_given = db_from_cli || file.database_url.is_some();
    if !db_from_cli && let Some(url) = &file.database_url {
        args.db.database_url = url.clone();
    }
    let db = args.db.connect().await?;
    crate::store::migrate(&db)
        .await
        .context("creating missing tables")?;
    let given = Given::of(&args, &file);
    let run_id = if args.resume {
        Some(latest_unfinished(&db).await?)
    } else {
        args.run_id.clone().or(file.run_id.clone())
    };
    let stored = match &run_id {
        Some(id) => records::load_run(&db, id)
            .await?
            .filter(|r| r.status != RunStatus::Finished),
        None => None,
    };
    let fresh = resolve(&args, file)?;
    let settings = match &stored {
        Some(run) => resumed_settings(run, fresh, &given)?,
        None => fresh,
    };
    if run_id.is_none() && !args.new {
        refuse_if_unfinished_twin(&db, &settings).await?;
    }
    if settings.api_url.is_some() && !db_given {
        anyhow::bail!(
            "--api-url needs the API's database too (--database-url or DATABASE_URL): shopsim writes its agents and run records there"
        );
    }
    if settings.api_url.is_some() && settings.actions == ActionsMode::Inprocess {
        anyhow::bail!(
            "--api-url and --actions inprocess contradict each other: in-process actions do not use the API"
        );
    }
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let tui = settings.tui;
    tokio::spawn(async move {
        // Ctrl-C, or SIGTERM from a process manager or Kubernetes: stop gracefully.
        if stop_signal().await {
            // Nothing is written over the dashboard; it shows "stopping" itself.
            if tui {
                tracing::warn!("stopping: finishing in-flight steps");
            } else {
                eprintln!("stopping: finishing in-flight steps (Ctrl-C again to abort)");
            }
            stop.cancel();
            if stop_signal().await {
                std::process::exit(130);
            }
        }
    });
    if stored.is_some() {
        eprintln!(
            "resuming run {} from its last checkpoint (its stored configuration; `shopsim runs show {}` shows it)",
            settings.run_id, settings.run_id
        );
    }
    eprintln!(
        "run {}{}: {} agents, persona set {}, {} simulated day(s) from {}, time scale {}, actions {:?}, database {}",
        settings.run_id,
        if settings.sharding.spec.is_sharded() {
            format!(" (shard {})", settings.sharding.spec)
        } else {
            String::new()
        },
        settings.agents,
        settings.persona_set,
        settings.days,
        settings.start.map_or_else(
            || "after the latest activity".to_string(),
            |d| d.to_string()
        ),
        settings.time_scale,
        settings.actions,
        db.url()
    );
    let result = run::run(db, settings, cancel.clone()).await?;
    println!("{}", result.summary.to_markdown());
    eprintln!("summary written to {}", result.folder.display());
    if let Some(endpoint) = result.metrics_endpoint {
        let linger = args.metrics_linger.unwrap_or_default();
        if !linger.is_zero() && !cancel.is_cancelled() {
            eprintln!(
                "final metrics on http://{}/metrics for {} (Ctrl-C to exit now)",
                endpoint.local_addr(),
                humantime::format_duration(linger)
            );
            tokio::select! {
                _ = tokio::time::sleep(linger) => {}
                _ = cancel.cancelled() => {}
            }
        }
        endpoint.shutdown().await;
    }
    let crossed = result.summary.crossed_thresholds();
    for c in &crossed {
        eprintln!("threshold crossed: {c}");
    }
    Ok(if !crossed.is_empty() {
        ExitCode::from(THRESHOLD_CROSSED)
    } else if result.stopped {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// The exit code of a run that crossed a threshold (as k6's).
pub const THRESHOLD_CROSSED: u8 = 99;

/// Which settings the command gave (flag, environment or config file), by stored key.
struct Given(Vec<&'static str>);

impl Given {
    fn of(args: &RunArgs, file: &FileSettings) -> Given {
        let mut keys = Vec::new();
        let mut add = |key: &'static str, given: bool| {
            if given {
                keys.push(key);
            }
        };
        add(
            "persona_set",
            args.persona_set.is_some() || file.persona_set.is_some(),
        );
        add(
            "behaviors",
            args.behaviors.is_some() || file.behaviors.is_some(),
        );
        add("agents", args.agents.is_some() || file.agents.is_some());
        add("seed", args.seed.is_some() || file.seed.is_some());
        add("start", args.start.is_some() || file.start.is_some());
        add("days", args.days.is_some() || file.days.is_some());
        add("until", args.until.is_some() || file.until.is_some());
        add(
            "timezone",
            args.timezone.is_some() || file.timezone.is_some(),
        );
        add(
            "time_scale",
            args.time_scale.is_some() || file.time_scale.is_some(),
        );
        add(
            "concurrency",
            args.concurrency.is_some() || file.concurrency.is_some(),
        );
        add(
            "ramp_up_hours",
            args.ramp_up.is_some() || file.ramp_up.is_some(),
        );
        add("actions", args.actions.is_some() || file.actions.is_some());
        add("api_url", args.api_url.is_some() || file.api_url.is_some());
        add("auth", args.auth.is_some() || file.auth.is_some());
        add("run_dir", args.run_dir.is_some() || file.run_dir.is_some());
        add(
            "restock_level",
            args.restock_level.is_some() || file.restock_level.is_some(),
        );
        add(
            "max_outage",
            args.max_outage.is_some() || file.max_outage.is_some(),
        );
        add(
            "checkpoint_every",
            args.checkpoint_every.is_some() || file.checkpoint_every.is_some(),
        );
        add(
            "thresholds",
            !args.thresholds.is_empty() || file.thresholds.is_some(),
        );
        add(
            "abort_on_threshold",
            args.abort_on_threshold || file.abort_on_threshold.is_some(),
        );
        Given(keys)
    }

    fn has(&self, key: &str) -> bool {
        self.0.contains(&key)
    }
}

/// The settings of a resumed run: its stored configuration, with the operational settings
/// this command gives. An immutable setting the command gives must equal the stored one.
fn resumed_settings(
    run: &RunRecord,
    fresh: RunSettings,
    given: &Given,
) -> anyhow::Result<RunSettings> {
    let given_immutable: Vec<&str> = IMMUTABLE_KEYS
        .into_iter()
        .filter(|k| given.has(k))
        .collect();
    run::check_keys(run, &fresh, &given_immutable)?;
    let mut settings: RunSettings = serde_json::from_value(run.config.clone()).map_err(|e| {
        anyhow::anyhow!(
            "the stored configuration of run `{}` does not parse ({e}); it was recorded by another shopsim version",
            run.run_id
        )
    })?;
    if given.has("time_scale") {
        settings.time_scale = fresh.time_scale;
    }
    if given.has("concurrency") {
        settings.concurrency = fresh.concurrency;
    }
    if given.has("api_url") {
        settings.api_url = fresh.api_url;
    }
    if given.has("auth") {
        settings.auth = fresh.auth;
    }
    if given.has("run_dir") {
        settings.run_dir = fresh.run_dir;
    }
    if given.has("behaviors") {
        settings.behaviors = fresh.behaviors;
    }
    if given.has("max_outage") {
        settings.max_outage = fresh.max_outage;
    }
    if given.has("checkpoint_every") {
        settings.checkpoint_every = fresh.checkpoint_every;
    }
    if given.has("thresholds") {
        settings.thresholds = fresh.thresholds;
    }
    if given.has("abort_on_threshold") {
        settings.abort_on_threshold = fresh.abort_on_threshold;
    }
    settings.metrics_addr = fresh.metrics_addr;
    settings.hot_reload = fresh.hot_reload;
    settings.status_line = fresh.status_line;
    settings.report = fresh.report;
    settings.tui = fresh.tui;
    settings.sharding = fresh.sharding;
    Ok(settings)
}

/// The latest unfinished run (what `--resume` resumes).
async fn latest_unfinished(db: &crate::store::Db) -> anyhow::Result<String> {
    records::list_runs(db)
        .await?
        .into_iter()
        .find(|r| r.status != RunStatus::Finished)
        .map(|r| r.run_id)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--resume: {} holds no unfinished run (see `shopsim runs list`); start a new run without --resume",
                db.url()
            )
        })
}

/// A plain `shopsim run` (no --run-id) on a database holding an unfinished run with the same
/// configuration is most likely meant to continue it: say so rather than start a twin.
async fn refuse_if_unfinished_twin(
    db: &crate::store::Db,
    settings: &RunSettings,
) -> anyhow::Result<()> {
    let mine = serde_json::to_value(settings)?;
    for run in records::list_runs(db).await? {
        if run.status == RunStatus::Finished {
            continue;
        }
        let same = IMMUTABLE_KEYS
            .into_iter()
            .filter(|k| *k != "start" || !mine["start"].is_null())
            .all(|k| run.config.get(k) == mine.get(k));
        if same {
            anyhow::bail!(
                "run `{}` ({}, checkpoint {}) has the same configuration and is unfinished: resume it with `shopsim run --run-id {}` (or `--resume`), or start a new run anyway with `--new`",
                run.run_id,
                run.status,
                run.checkpoint_at.map_or_else(
                    || "none".to_string(),
                    |t| t.format("%Y-%m-%d %H:%M").to_string()
                ),
                run.run_id
            );
        }
    }
    Ok(())
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM; false when no signal can be awaited.
async fn stop_signal() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return tokio::signal::ctrl_c().await.is_ok();
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok(),
            _ = term.recv() => true,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_comes_from_the_flag_or_the_job_index() {
        let spec = |i, n| ShardSpec::new(i, n).unwrap();
        assert_eq!(shard_spec(None, None, None).unwrap(), ShardSpec::SINGLE);
        assert_eq!(
            shard_spec(Some(spec(1, 3)), None, None).unwrap(),
            spec(1, 3)
        );
        assert_eq!(
            shard_spec(Some(spec(1, 3)), Some(3), Some("2".into())).unwrap(),
            spec(1, 3)
        );
        assert_eq!(
            shard_spec(None, Some(3), Some(" 2 ".into())).unwrap(),
            spec(2, 3)
        );
        let err = |r: anyhow::Result<ShardSpec>| r.unwrap_err().to_string();
        assert!(err(shard_spec(Some(spec(1, 3)), Some(4), None)).contains("disagree"));
        assert!(err(shard_spec(None, Some(3), None)).contains("JOB_COMPLETION_INDEX"));
        assert!(err(shard_spec(None, Some(3), Some("x".into()))).contains("not a shard index"));
        assert!(err(shard_spec(None, Some(3), Some("3".into()))).contains("out of range"));
    }
}
