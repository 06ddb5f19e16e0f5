//! `shopsim run`: prepares a run (database, catalog, agents, persona set, actions, the embedded
//! reference server when no API is given), drives the engine, and writes the records.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::behavior::inputs::{History, Wallet};
use crate::behavior::reload::{self, LiveSet, ReloadEvent};
use crate::behavior::{BehaviorError, population};
use crate::catalog::{self, AgentOptions, PersonaSource};
use crate::domain::{KnownCatalog, ShopConfig};
use crate::server::{self, RunningServer, ServerConfig};
use crate::sim::actions::{
    Actions, Auth, HttpActions, HttpConfig, InProcessActions, InProcessConfig, OutageConfig, TxMode,
};
use crate::sim::clock::{ClockSchedule, PacedClock, TimeScale};
use crate::sim::engine::{Engine, EngineConfig, EngineEnd, ResumeState, local_instant};
use crate::sim::metrics::Metrics;
use crate::sim::monitor::{Display, Monitor, Watched};
use crate::sim::progress::{self, Progress};
use crate::sim::prometheus::{self, MetricsEndpoint};
use crate::sim::recorder::DbRecorder;
use crate::sim::records::shards::ShardProgress;
use crate::sim::records::{self, RunRecord, RunStatus, RunSummary, SessionStatus, WallInfo};
use crate::sim::session::{AgentState, SessionReport};
use crate::sim::shard::{Lease, LeaseConfig, ShardOptions, ShardSpec, clock_sync, lease::Acquired};
use crate::sim::thresholds::{self, Threshold};
use crate::sim::world::World;
use crate::store::{self, Db};

/// How the agents' actions reach the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ActionsMode {
    /// HTTP to the VoiceOffers API (or the embedded reference server).
    Http,
    /// The domain layer directly, no HTTP (fast data generation).
    Inprocess,
}

/// How HTTP requests authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `Bearer dev:<agent_id>` (the reference server and VoiceOffers in simulation mode).
    Dev,
    /// HS256 JWT per agent from `SHOPSIM_JWT_SECRET` (the real backend).
    Jwt,
}

/// The HTTP actions' settings for the API at `base` with `auth` (the JWT secret comes from
/// `SHOPSIM_JWT_SECRET`), sized for `concurrency` requests in flight: the connection pool keeps
/// at least that many idle connections, so none is closed and reopened between two requests.
/// Shared by `shopsim run` and `shopsim loadtest`, so both send requests the same way.
pub fn http_config(base: String, auth: AuthMode, concurrency: usize) -> anyhow::Result<HttpConfig> {
    let mut cfg = HttpConfig::new(base);
    cfg.pool_max_idle_per_host = cfg.pool_max_idle_per_host.max(concurrency);
    if auth == AuthMode::Jwt {
        let secret = std::env::var("SHOPSIM_JWT_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("--auth jwt needs the signing secret in SHOPSIM_JWT_SECRET")
            })?;
        cfg.auth = Auth::jwt(secret);
    }
    Ok(cfg)
}

/// A run's settings after flags, environment, config file and defaults were merged. The
/// immutable part (seed, persona set, agents, start, span, actions) is stored with the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSettings {
    /// Run id.
    pub run_id: String,
    /// Persona set name.
    pub persona_set: String,
    /// Folder of persona sets.
    pub behaviors: PathBuf,
    /// Number of agents.
    pub agents: u64,
    /// Run seed.
    pub seed: u64,
    /// First simulated day (`None`: one simulated hour after the latest activity in the
    /// database, or 2024-01-01 on an empty one).
    pub start: Option<NaiveDate>,
    /// Simulated days (24-hour spans from the start).
    pub days: u32,
    /// Last simulated day, inclusive; overrides `days`.
    pub until: Option<NaiveDate>,
    /// Calendar time zone.
    pub timezone: String,
    /// Time scale.
    pub time_scale: TimeScale,
    /// Sessions in flight at most.
    pub concurrency: usize,
    /// Ramp-up in simulated hours.
    pub ramp_up_hours: u32,
    /// Actions mode.
    pub actions: ActionsMode,
    /// API base URL (`None` = the embedded reference server, in HTTP mode).
    pub api_url: Option<String>,
    /// HTTP auth.
    pub auth: AuthMode,
    /// Where summaries are written.
    pub run_dir: PathBuf,
    /// Inventory level at simulated midnight (reference server / in-process).
    pub restock_level: i64,
    /// Longest database outage the run waits out before it stops (resumable).
    #[serde(default = "default_max_outage", with = "humantime_serde_compat")]
    pub max_outage: std::time::Duration,
    /// `max` runs: least wall time between checkpoints within a simulated day (one is also
    /// taken at every day's end); `0s` checkpoints every simulated hour.
    #[serde(default = "default_checkpoint_every", with = "humantime_serde_compat")]
    pub checkpoint_every: std::time::Duration,
    /// Pass/fail thresholds checked at the end (exit code 99 when one is crossed).
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    /// Stop the run as soon as a threshold is crossed (checked every simulated hour).
    #[serde(default)]
    pub abort_on_threshold: bool,
    /// Serve Prometheus `/metrics` here (operational: not stored).
    #[serde(skip)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Watch the persona set's folder and hot-reload edits (operational: not stored).
    #[serde(skip)]
    pub hot_reload: bool,
    /// Print a status line on stderr every few seconds (operational: not stored).
    #[serde(skip)]
    pub status_line: bool,
    /// Render `report.html` at the end of the run (operational: not stored).
    #[serde(skip)]
    pub report: bool,
    /// Show the live terminal dashboard instead of status lines (operational: not stored).
    #[serde(skip)]
    pub tui: bool,
    /// Which shard of the run this process simulates, and its lease (operational: a shard's
    /// rows record the run's shard count).
    #[serde(skip)]
    pub sharding: ShardOptions,
}

/// What a finished (or stopped) run reports.
#[derive(Debug)]
pub struct RunResult {
    /// The summary (also written to the run folder).
    pub summary: RunSummary,
    /// Where `summary.md` and `metadata.json` are.
    pub folder: PathBuf,
    /// Stopped early by request.
    pub stopped: bool,
    /// The `/metrics` endpoint, still serving the final figures (`--metrics-addr`).
    pub metrics_endpoint: Option<MetricsEndpoint>,
}

/// What [`simulate`] returns.
#[derive(Debug)]
pub struct Simulated {
    /// The run's summary (with its threshold results).
    pub summary: RunSummary,
    /// Stopped early (by request, or by a crossed threshold with `abort_on_threshold`).
    pub stopped: bool,
    /// The `/metrics` endpoint, still serving the final figures.
    pub metrics_endpoint: Option<MetricsEndpoint>,
}

fn tz(settings: &RunSettings) -> anyhow::Result<Tz> {
    settings.timezone.parse::<Tz>().map_err(|_| {
        anyhow::anyhow!(
            "--timezone `{}` is not an IANA time zone (e.g. UTC, America/New_York, Europe/Berlin)",
            settings.timezone
        )
    })
}

/// Runs a simulation to the end (or until `cancel`) and writes its renderings
/// (`summary.md`, `metadata.json`, and `report.html` when `settings.report`) to
/// `<run-dir>/<run_id>/`.
pub async fn run(
    db: Db,
    settings: RunSettings,
    cancel: CancellationToken,
) -> anyhow::Result<RunResult> {
    let run_dir = settings.run_dir.clone();
    let report = settings.report;
    let Simulated {
        summary,
        stopped,
        metrics_endpoint,
    } = simulate(db.clone(), settings, cancel).await?;
    let folder = records::write_renderings(&run_dir, &summary)?;
    if report {
        // The report is a rendering of the records: failing to draw it loses nothing.
        match crate::report::write_report(&db, &summary.run_id, &run_dir).await {
            Ok(path) => tracing::info!(path = %path.display(), "report written"),
            Err(e) => {
                tracing::warn!(error = %e, "could not write the run's report; `shopsim report {}` renders it later", summary.run_id)
            }
        }
    }
    Ok(RunResult {
        summary,
        folder,
        stopped,
        metrics_endpoint,
    })
}

/// Runs a simulation to the end (or until `cancel`, then `stopped` is true) and returns its
/// summary, writing nothing outside the database.
pub async fn simulate(
    db: Db,
    settings: RunSettings,
    cancel: CancellationToken,
) -> anyhow::Result<Simulated> {
    let wall_start = Instant::now();
    crate::logging::set_run_id(&settings.run_id);
    let tz = tz(&settings)?;
    if settings.days == 0 {
        anyhow::bail!("--days must be at least 1");
    }
    if settings.agents == 0 {
        anyhow::bail!("--agents must be at least 1");
    }
    if let Some(url) = &settings.api_url {
        preflight(url).await?;
    }
    // A taken port fails now, before anything is written.
    let metrics_listener = match settings.metrics_addr {
        Some(addr) => Some(prometheus::bind(addr).await?),
        None => None,
    };
    store::migrate(&db)
        .await
        .context("creating missing tables")?;
    // Start or resume: an unfinished run with this id is resumed (its immutable
    // configuration must match), a finished one is refused.
    let stored = records::load_run(&db, &settings.run_id).await?;
    if let Some(run) = &stored {
        if run.status == RunStatus::Finished && settings.sharding.spec.is_sharded() {
            // A re-applied job's shards: nothing to do, and no failure to retry.
            return finished_shard(&db, &settings, settings.sharding.spec, wall_start).await;
        }
        if run.status == RunStatus::Finished {
            anyhow::bail!(
                "run `{}` already finished in {}; its records stay in the database (see `shopsim runs show {}`); choose another --run-id for a new run, or remove it with `shopsim runs purge {}`",
                settings.run_id,
                db.url(),
                settings.run_id,
                settings.run_id
            );
        }
        check_immutable(run, &settings)?;
        tracing::info!(run_id = %settings.run_id, checkpoint = ?run.checkpoint_at, "resuming an unfinished run");
    }
    let spec = settings.sharding.spec;
    if spec.is_sharded() {
        crate::logging::set_shard(&spec.to_string());
    }
    let mut stored = stored;
    if spec.is_sharded() && stored.is_none() {
        // The first shard to get here records the run; the others join it.
        stored = Some(join_or_create(&db, &settings, tz).await?);
    }
    let (sim_start, sim_end) = match &stored {
        Some(run) => (run.sim_start, run.sim_end),
        None => span(&db, &settings, tz).await?,
    };
    // The slice's lease before anything is written for it: a process whose shard another
    // live process holds waits here, writing nothing.
    let lease = match Lease::acquire(
        &db,
        &settings.run_id,
        spec,
        LeaseConfig {
            ttl: settings.sharding.lease_ttl,
        },
        &cancel,
    )
    .await?
    {
        Acquired::Lease(lease) => lease,
        Acquired::Finished(_) => {
            return finished_shard(&db, &settings, spec, wall_start).await;
        }
    };
    // The heartbeat and the clock sync end with this function, however it returns.
    let heartbeat_stop = CancellationToken::new();
    let _stop_heartbeat = heartbeat_stop.clone().drop_guard();
    let start_date = sim_start.with_timezone(&tz).date_naive();
    let last_date = (sim_end - Duration::nanoseconds(1))
        .with_timezone(&tz)
        .date_naive();
    let calendar_days = u32::try_from((last_date - start_date).num_days() + 1).unwrap_or(1);

    // The catalog: seeded from the run seed when the database has none, then cached once.
    let mut catalog = load_catalog(&db).await?;
    if catalog.products.is_empty() {
        tracing::info!(
            seed = settings.seed,
            "the database has no catalog; seeding one"
        );
        catalog::seed_catalog(&db, &catalog::generate(settings.seed))
            .await
            .context("seeding the catalog")?;
        catalog = load_catalog(&db).await?;
    }
    if catalog.stores.is_empty() {
        anyhow::bail!(
            "the database has products but no stores; the catalog is incomplete (run `shopsim seed`)"
        );
    }
    let world = Arc::new(World::new(catalog));
    let live = LiveSet::load(&settings.behaviors, &settings.persona_set, world.clone())?;
    let set = live.current();
    let vocab = population::vocab(world.catalog().stores.len());

    // Agents: created with the persona set when the database has fewer than asked for.
    let existing = catalog::count_agents(&db).await?;
    if existing < settings.agents {
        let persona_error: parking_lot::Mutex<Option<BehaviorError>> =
            parking_lot::Mutex::new(None);
        let make = population::persona_source(&set, settings.seed, &vocab, &persona_error);
        let created_at = sim_start;
        let opts = AgentOptions::new(settings.seed, settings.agents, created_at);
        let bar = Progress::new("creating agents", settings.agents, settings.tui);
        let progress = |done: u64, total: u64| bar.set(done, total);
        let created =
            catalog::create_agents(&db, &opts, Some(&make as PersonaSource<'_>), &progress).await;
        bar.finish();
        created.context("creating agents")?;
        if let Some(e) = persona_error.lock().take() {
            return Err(anyhow::Error::new(e).context("generating personas"));
        }
    }
    let keys = catalog::agent_keys(&db, settings.agents).await?;
    if (keys.len() as u64) < settings.agents {
        anyhow::bail!(
            "the database holds {} agents, fewer than the {} asked for",
            keys.len(),
            settings.agents
        );
    }
    // An agent that has not shopped yet shares the empty history and wallet (copied on its
    // first change): an idle agent costs only its own persona and key.
    let (no_history, no_wallet) = (Arc::new(History::default()), Wallet::default());
    let total = keys.len() as u64;
    let bar = Progress::new("loading agents", total, settings.tui);
    let mut agents = Vec::with_capacity(keys.len());
    let mut owned = 0u64;
    for (key, user_id) in keys {
        if agents.len() % 10_000 == 0 {
            bar.set(agents.len() as u64, total);
        }
        // Another shard's agent keeps its place (activation order, ids) but costs no persona.
        if !spec.owns(&key) {
            agents.push(None);
            continue;
        }
        owned += 1;
        let persona = set.make_persona(settings.seed, &key, &vocab)?;
        agents.push(Some(AgentState {
            key,
            user_id,
            persona,
            history: no_history.clone(),
            wallet: no_wallet.clone(),
            next_refresh: None,
            busy_until: None,
        }));
    }
    bar.set(total, total);
    bar.finish();
    // What the idle population costs (benchmarks divide it by the agents), without the
    // memory that creating and loading them freed.
    crate::sim::heap::release_free_pages();
    tracing::info!(
        agents = agents.len(),
        shard = %spec,
        simulated_here = owned,
        resident_bytes = progress::resident_bytes(),
        "agents loaded"
    );

    // The simulated clock continues from the last checkpoint — the shard's own (an unsharded
    // run recorded before shards had rows: the run's); every change of scale (and every
    // restart) is a segment of the run's recorded clock, which shards share.
    let checkpoint = match lease.previous() {
        Some(p) => p.checkpoint_at,
        None if !spec.is_sharded() => stored.as_ref().and_then(|r| r.checkpoint_at),
        None => None,
    };
    let resume_from = checkpoint.unwrap_or(sim_start);
    let pacer = match settings.time_scale {
        TimeScale::Max => None,
        TimeScale::Scaled(x) if spec.is_sharded() => {
            Some(shared_clock(&db, &lease, sim_start, x).await?)
        }
        TimeScale::Scaled(x) => {
            let recorded = stored
                .as_ref()
                .and_then(|r| r.clock.clone())
                .and_then(|c| serde_json::from_value::<ClockSchedule>(c).ok());
            let schedule = match recorded {
                Some(mut clock) => {
                    clock.restart(Utc::now(), resume_from, x);
                    clock
                }
                None => ClockSchedule::start(Utc::now(), resume_from, x),
            };
            Some(PacedClock::new(schedule))
        }
    };
    let now = Utc::now();
    let mut resume = None;
    match &stored {
        Some(run) => {
            records::finish_run(&db, &settings.run_id, RunStatus::Running).await?;
            resume = Some(replay_ended(&db, run, checkpoint, spec, &mut agents, &world).await?);
        }
        None => {
            records::create_run(
                &db,
                &RunRecord {
                    run_id: settings.run_id.clone(),
                    status: RunStatus::Running,
                    config: serde_json::to_value(&settings)?,
                    seed: settings.seed,
                    persona_set: settings.persona_set.clone(),
                    agents: agents.len() as u64,
                    sim_start,
                    sim_end,
                    checkpoint_at: None,
                    clock: None,
                    created_at: now,
                    updated_at: now,
                    finished_at: None,
                },
            )
            .await?
        }
    }

    let metrics = Arc::new(Metrics::new());
    let shop = ShopConfig {
        seed: settings.seed,
        restock_level: settings.restock_level,
        ..ShopConfig::default()
    };
    let mut embedded: Option<RunningServer> = None;
    let actions: Arc<dyn Actions> = match settings.actions {
        ActionsMode::Inprocess => {
            let tx_mode = if pacer.is_some() {
                TxMode::PerStep
            } else {
                TxMode::PerSession
            };
            Arc::new(InProcessActions::new(
                db.clone(),
                InProcessConfig {
                    shop,
                    tx_mode,
                    outage: OutageConfig {
                        max: Some(settings.max_outage),
                        ..OutageConfig::default()
                    },
                    fence: Some(lease.fence().clone()),
                    catalog: Some(Arc::new(KnownCatalog::from_catalog(world.catalog()))),
                },
                metrics.clone(),
                cancel.clone(),
            )?)
        }
        ActionsMode::Http => {
            let base = match &settings.api_url {
                Some(url) => url.clone(),
                None => {
                    let server = server::start(
                        db.clone(),
                        ServerConfig {
                            shop,
                            ..ServerConfig::default()
                        },
                    )
                    .await
                    .context("starting the embedded reference server")?;
                    tracing::info!(url = %server.base_url(), "embedded reference server started");
                    let url = server.base_url();
                    embedded = Some(server);
                    url
                }
            };
            let mut cfg = http_config(base, settings.auth, settings.concurrency)?;
            cfg.reconcile_db = Some(db.clone());
            cfg.outage.max = Some(settings.max_outage);
            Arc::new(HttpActions::new(cfg, metrics.clone(), cancel.clone())?)
        }
    };

    // Hot reload: edits of the persona set take effect at the next decision.
    let watcher = settings.hot_reload.then(|| reload::watch(live.clone()));
    let _reload_task = match watcher {
        None => None,
        Some(Ok(mut w)) => Some(tokio::spawn(async move {
            while let Some(ev) = w.events.recv().await {
                match ev {
                    ReloadEvent::Reloaded { version } => {
                        tracing::info!(%version, "persona set reloaded")
                    }
                    ReloadEvent::Unchanged => {}
                    ReloadEvent::Failed { error, kept } => {
                        tracing::warn!(%error, %kept, "persona set edit rejected; the previous version keeps running")
                    }
                }
            }
        })),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot watch the behaviours folder; scripts will not hot-reload");
            None
        }
    };

    let engine_actions = actions.clone();
    let engine = Engine {
        config: EngineConfig {
            run_id: settings.run_id.as_str().into(),
            seed: settings.seed,
            start: start_date,
            days: calendar_days,
            from: sim_start,
            until: sim_end,
            tz,
            concurrency: settings.concurrency,
            ramp_up_hours: settings.ramp_up_hours,
            checkpoint_every: settings.checkpoint_every,
        },
        live,
        world,
        actions,
        metrics: metrics.clone(),
        pacer: pacer.clone(),
        cancel: cancel.clone(),
        resume,
    };
    let recorder = Arc::new(
        DbRecorder::new(
            db.clone(),
            &settings.run_id,
            lease.clone(),
            metrics.clone(),
            pacer.clone(),
            cancel.clone(),
            settings.max_outage,
        )
        .await?,
    );
    let _heartbeat = {
        let (metrics, pacer, checkpoint) = (metrics.clone(), pacer.clone(), recorder.checkpoint());
        lease.keep(
            move || shard_progress(&metrics, pacer.as_ref(), *checkpoint.lock()),
            heartbeat_stop.clone(),
            cancel.clone(),
        )
    };
    let _clock_sync = match &pacer {
        Some(p) if spec.is_sharded() => Some(clock_sync::spawn(
            db.clone(),
            lease.fence().clone(),
            p.clone(),
            heartbeat_stop.clone(),
        )),
        _ => None,
    };
    let display = if settings.tui {
        Display::Dashboard
    } else if settings.status_line {
        Display::StatusLine
    } else {
        Display::Quiet
    };
    let aborted = Arc::new(parking_lot::Mutex::new(None));
    let monitor = Monitor::start(
        Watched {
            run_id: if spec.is_sharded() {
                format!("{} shard {spec}", settings.run_id)
            } else {
                settings.run_id.clone()
            },
            live: engine.live.clone(),
            metrics: metrics.clone(),
            actions: engine.actions.clone(),
            checkpoint: recorder.checkpoint(),
            pacer: pacer.clone(),
            sim_start,
            sim_end,
            target: settings.time_scale,
            cancel: cancel.clone(),
            thresholds: if settings.abort_on_threshold {
                settings.thresholds.clone()
            } else {
                Vec::new()
            },
            aborted: aborted.clone(),
        },
        display,
    );
    let metrics_endpoint = match metrics_listener {
        Some(listener) => Some(MetricsEndpoint::serve(
            listener,
            prometheus::Source {
                run_id: settings.run_id.clone(),
                shard: spec.to_string(),
                persona_set: settings.persona_set.clone(),
                metrics: metrics.clone(),
                state: monitor.state(),
            },
        )?),
        None => None,
    };
    let mut outcome = engine.run(&mut agents, recorder.clone()).await;
    if let Some(why) = lease.lost() {
        // Another process owns the slice now: write nothing more, not even the run's end.
        heartbeat_stop.cancel();
        monitor.finish().await;
        if let Some(server) = embedded.take() {
            let _ = server.shutdown().await;
        }
        anyhow::bail!("{why}");
    }
    if let (Ok(EngineEnd::Stopped), Some(why)) = (&outcome, engine_actions.outage_gave_up()) {
        // Not a requested stop: an outage outlasted --max-outage.
        outcome = Err(anyhow::anyhow!(why));
    }
    if let (Ok(EngineEnd::Stopped), Some(p)) = (&outcome, &pacer) {
        // Stopped between hourly checkpoints: keep the metrics and the clock reached.
        use crate::sim::engine::Recorder;
        let reached = p.sim_now().min(sim_end);
        if let Err(e) = recorder.hour_done(reached).await {
            tracing::warn!(error = %e, "could not record the last checkpoint");
        }
    }
    // The terminal is given back before anything else is printed.
    monitor.finish().await;
    let (checkpoints, spent) = recorder.checkpoint_cost();
    tracing::info!(
        checkpoints,
        total_ms = spent.as_millis() as u64,
        share = format!(
            "{:.2}%",
            100.0 * spent.as_secs_f64() / wall_start.elapsed().as_secs_f64().max(1e-9)
        ),
        "checkpoints (metrics interval + checkpoint row, hourly)"
    );
    if let Some(server) = embedded.take() {
        server
            .shutdown()
            .await
            .context("stopping the embedded reference server")?;
    }
    let status = match &outcome {
        Ok(EngineEnd::Finished) => RunStatus::Finished,
        Ok(EngineEnd::Stopped) => RunStatus::Interrupted,
        Err(_) => RunStatus::Failed,
    };
    // The end of a run that went well waits out a database restart like its records do (a
    // failed run, perhaps failed by an outage past --max-outage, does not wait again). The
    // shard lets its lease go with its status; the run is finished when all its shards are.
    heartbeat_stop.cancel();
    let mark = || async { lease.finish(status).await.map(|_| ()) };
    let marked = if outcome.is_ok() {
        recorder.retrying("marking the run's end", mark).await
    } else {
        mark().await.map_err(anyhow::Error::from)
    };
    let end = match (outcome, marked) {
        (Ok(end), Ok(())) => end,
        (Ok(_), Err(e)) => return Err(e),
        // The run's own error says what happened; the database may be why the mark failed.
        (Err(e), marked) => {
            if let Err(m) = marked {
                tracing::warn!(error = %m, "could not mark the run failed; it stays resumable");
            }
            return Err(e.context(format!(
                "run `{}` stopped; it resumes from its last records with the same command",
                settings.run_id
            )));
        }
    };
    let wall = WallInfo {
        wall: wall_start.elapsed(),
        target: Some(settings.time_scale),
    };
    // A shard reports the whole run: every shard's stored metrics, histograms merged.
    let snapshot = if spec.is_sharded() {
        recorder
            .retrying("reading the shards' metrics", || {
                records::stored_snapshot(&db, &settings.run_id)
            })
            .await?
    } else {
        metrics.snapshot()
    };
    let mut summary = recorder
        .retrying("reading the run's summary", || {
            RunSummary::from_database(&db, &settings.run_id, &snapshot, &wall)
        })
        .await?;
    summary.warnings = metrics.warnings();
    summary.thresholds = thresholds::check_all(&settings.thresholds, &snapshot);
    summary.aborted_by_threshold = aborted.lock().take();
    if let Some(endpoint) = &metrics_endpoint {
        endpoint.mark_ended();
    }
    Ok(Simulated {
        summary,
        stopped: end == EngineEnd::Stopped,
        metrics_endpoint,
    })
}

/// Records a sharded run, or joins it when another shard recorded it first (its immutable
/// configuration must match). A paced run's clock is anchored here, once for all shards.
async fn join_or_create(db: &Db, settings: &RunSettings, tz: Tz) -> anyhow::Result<RunRecord> {
    let (sim_start, sim_end) = span(db, settings, tz).await?;
    let now = Utc::now();
    let clock = match settings.time_scale {
        TimeScale::Scaled(x) => Some(serde_json::to_value(ClockSchedule::start(
            now, sim_start, x,
        ))?),
        TimeScale::Max => None,
    };
    let record = RunRecord {
        run_id: settings.run_id.clone(),
        status: RunStatus::Running,
        config: serde_json::to_value(settings)?,
        seed: settings.seed,
        persona_set: settings.persona_set.clone(),
        agents: settings.agents,
        sim_start,
        sim_end,
        checkpoint_at: None,
        clock,
        created_at: now,
        updated_at: now,
        finished_at: None,
    };
    match records::create_run(db, &record).await {
        Ok(()) => Ok(record),
        Err(records::RecordsError::RunExists(_)) => {
            let run = records::require_run(db, &settings.run_id).await?;
            check_immutable(&run, settings)?;
            Ok(run)
        }
        Err(e) => Err(e.into()),
    }
}

/// The paced clock of a shard: the run's shared clock as stored. When every other shard is
/// down and this one restarts, the clock restarts from the earliest shard checkpoint (time
/// spent down is not simulated, as for an unsharded run); a shard joining running ones follows
/// their clock as it is.
async fn shared_clock(
    db: &Db,
    lease: &Lease,
    sim_start: DateTime<Utc>,
    scale: f64,
) -> anyhow::Result<PacedClock> {
    let run_id = &lease.fence().run_id;
    let stored = clock_sync::load_clock(db, run_id).await?;
    let rows = records::load_shards(db, run_id).await?;
    let now = Utc::now();
    let others_running = rows
        .iter()
        .any(|r| r.shard != lease.spec().index && r.is_held(now));
    let earliest = rows
        .iter()
        .filter_map(|r| r.checkpoint_at)
        .min()
        .unwrap_or(sim_start);
    let schedule = match stored {
        Some(clock) if others_running || lease.previous().is_none() => {
            if clock.scale() != scale {
                tracing::info!(
                    shared = clock.scale(),
                    asked = scale,
                    "following the run's shared clock, not --time-scale"
                );
            }
            clock
        }
        Some(mut clock) => {
            clock.restart(now, earliest, scale);
            clock_sync::store_clock(db, lease.fence(), &clock).await?;
            clock
        }
        None => {
            let clock = ClockSchedule::start(now, earliest, scale);
            clock_sync::store_clock(db, lease.fence(), &clock).await?;
            clock
        }
    };
    Ok(PacedClock::new(schedule))
}

/// What a shard's heartbeat reports.
fn shard_progress(
    metrics: &Metrics,
    pacer: Option<&PacedClock>,
    checkpoint: Option<DateTime<Utc>>,
) -> ShardProgress {
    use crate::sim::metrics::Counter;
    // Counters and one quantile: a full snapshot would copy every histogram.
    ShardProgress {
        sim_time: pacer.map(PacedClock::sim_now).or(checkpoint),
        lag_p99_ms: pacer.and_then(|_| metrics.lag_p99_ms()),
        sessions_ended: metrics.get(Counter::SessionsCompleted)
            + metrics.get(Counter::SessionsAbandoned)
            + metrics.get(Counter::SessionsFailed),
    }
}

/// The result of starting a shard that already finished: the run's summary as recorded (the
/// run is marked finished when this was the last shard to be seen through).
async fn finished_shard(
    db: &Db,
    settings: &RunSettings,
    spec: ShardSpec,
    wall_start: Instant,
) -> anyhow::Result<Simulated> {
    tracing::warn!(
        shard = %spec,
        "shard {spec} of run {} finished earlier; nothing left to do",
        settings.run_id
    );
    records::shards::settle_finished_run(db, &settings.run_id, spec.count, spec.index).await?;
    let snapshot = records::stored_snapshot(db, &settings.run_id).await?;
    let wall = WallInfo {
        wall: wall_start.elapsed(),
        target: Some(settings.time_scale),
    };
    let mut summary = RunSummary::from_database(db, &settings.run_id, &snapshot, &wall).await?;
    summary.thresholds = thresholds::check_all(&settings.thresholds, &snapshot);
    Ok(Simulated {
        summary,
        stopped: false,
        metrics_endpoint: None,
    })
}

/// The run's simulated span: from `--start` (local midnight) or one simulated hour after the
/// latest activity already in the database (so runs never overlap), for `--days` or to the end
/// of `--until`.
async fn span(
    db: &Db,
    settings: &RunSettings,
    tz: Tz,
) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let start = match settings.start {
        Some(d) => local_instant(tz, d, 0),
        None => match latest_activity(db).await? {
            Some(t) => t + Duration::hours(1),
            None => local_instant(
                tz,
                NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default(),
                0,
            ),
        },
    };
    let end = match settings.until {
        Some(until) => local_instant(tz, until + Duration::days(1), 0),
        None => start + Duration::days(i64::from(settings.days)),
    };
    if end <= start {
        anyhow::bail!(
            "the run would end ({end}) before it starts ({start}); check --start, --days and --until"
        );
    }
    Ok((start, end))
}

/// The latest simulated instant already in the database: sessions, orders and earlier runs.
pub async fn latest_activity(db: &Db) -> anyhow::Result<Option<DateTime<Utc>>> {
    let tx = db.read().await?;
    let row = tx
        .query_one(
            "SELECT MAX(t) AS t FROM (SELECT MAX(last_seen_at) AS t FROM shopping_sessions \
             UNION ALL SELECT MAX(created_at) FROM orders UNION ALL SELECT MAX(sim_end) FROM sim_runs) x",
            vec![],
        )
        .await?;
    let t = row.opt_ts("t")?;
    tx.commit().await?;
    Ok(t)
}

/// Checks once, before anything is written, that the API answers `GET /health`: a wrong
/// `--api-url` is a clear error now rather than an outage the run waits out forever.
async fn preflight(base: &str) -> anyhow::Result<()> {
    let url = format!("{}/health", base.trim_end_matches('/'));
    let timeout = std::time::Duration::from_secs(10);
    match crate::sim::actions::get_once(&url, Default::default(), timeout).await {
        Ok(r) if r.status.is_success() => Ok(()),
        Ok(r) => anyhow::bail!(
            "the API at {base} answered {} to GET /health; check --api-url",
            r.status
        ),
        Err(reason) => anyhow::bail!(
            "the API at {base} is not reachable ({reason}); check --api-url and that the API runs"
        ),
    }
}

async fn load_catalog(db: &Db) -> anyhow::Result<catalog::Catalog> {
    let tx = db.read().await?;
    let c = catalog::load_catalog(&tx)
        .await
        .context("reading the catalog")?;
    tx.commit().await?;
    Ok(c)
}

/// A run id from the wall clock: `run-20261127-154233-1a2b` (unique enough, readable, sortable).
pub fn generate_run_id(now: DateTime<Utc>) -> String {
    let salt = crate::ids::hash64(
        now.timestamp_nanos_opt().unwrap_or_default() as u64,
        &["run-id".into()],
    );
    format!("run-{}-{:04x}", now.format("%Y%m%d-%H%M%S"), salt & 0xffff)
}

fn default_max_outage() -> std::time::Duration {
    std::time::Duration::from_secs(3600)
}

/// The default of `--checkpoint-every`.
pub fn default_checkpoint_every() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}

/// Durations in the stored configuration as humantime text (`1h`, `30m`).
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// The configuration keys a resumed run may not change: they decide what the run is (its
/// agents, their decisions and the dataset). Time scale, concurrency, API URL, run folder and
/// outage patience are operational and may change on every restart.
pub const IMMUTABLE_KEYS: [&str; 10] = [
    "persona_set",
    "agents",
    "seed",
    "start",
    "days",
    "until",
    "timezone",
    "ramp_up_hours",
    "actions",
    "restock_level",
];

/// Refuses to resume `run` with settings that contradict its immutable configuration, naming
/// the first key that differs.
pub fn check_immutable(run: &RunRecord, settings: &RunSettings) -> anyhow::Result<()> {
    check_keys(run, settings, &IMMUTABLE_KEYS)
}

/// Refuses `settings` when one of `keys` differs from `run`'s stored configuration (a `start`
/// left open is no contradiction: the run keeps its resolved start).
pub fn check_keys(run: &RunRecord, settings: &RunSettings, keys: &[&str]) -> anyhow::Result<()> {
    let given = serde_json::to_value(settings)?;
    for &key in keys {
        let (was, now) = (
            run.config.get(key).unwrap_or(&serde_json::Value::Null),
            given.get(key).unwrap_or(&serde_json::Value::Null),
        );
        if key == "start" && now.is_null() {
            continue;
        }
        if was != now {
            anyhow::bail!(
                "run `{}` was started with {key} = {was}, and this command asks for {key} = {now}; a resumed run keeps its {key} (drop the option, or choose another --run-id for a new run)",
                run.run_id
            );
        }
    }
    Ok(())
}

/// Rebuilds the agents of a resumed run from the outcomes of its ended sessions (in their
/// order), and says which sessions not to run again.
async fn replay_ended(
    db: &Db,
    run: &RunRecord,
    checkpoint: Option<DateTime<Utc>>,
    spec: ShardSpec,
    agents: &mut [Option<AgentState>],
    world: &World,
) -> anyhow::Result<ResumeState> {
    let ended = records::ended_sessions(db, &run.run_id).await?;
    let index: std::collections::HashMap<&str, usize> = agents
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.as_ref().map(|a| (&*a.key, i)))
        .collect();
    let mut positions = Vec::with_capacity(ended.len());
    for e in ended.iter().filter(|e| spec.owns(&e.agent_id)) {
        let report: SessionReport = serde_json::from_value(e.outcome.clone()).map_err(|err| {
            anyhow::anyhow!(
                "the recorded outcome of session {} of run {} does not parse ({err}); the run's records are damaged",
                e.session_id,
                run.run_id
            )
        })?;
        positions.push((index.get(e.agent_id.as_str()).copied(), report, e));
    }
    let mut ids = std::collections::HashSet::with_capacity(ended.len());
    for (pos, report, e) in positions {
        ids.insert(e.session_id);
        if let Some(a) = pos.and_then(|i| agents[i].as_mut()) {
            a.replay(&report, e.sim_date, world);
        }
    }
    // Only this shard's: another shard's unfinished sessions are its own business.
    let mut unfinished = records::unfinished_sessions(db, &run.run_id).await?;
    unfinished.retain(|s| spec.owns(&s.agent_id));
    let first_unfinished = unfinished.iter().map(|s| s.sim_date).min();
    let in_progress = unfinished
        .iter()
        .filter(|s| s.status == SessionStatus::InProgress)
        .map(|s| s.session_id)
        .collect();
    tracing::info!(
        ended = ids.len(),
        ?first_unfinished,
        "replayed the ended sessions into the agents"
    );
    Ok(ResumeState {
        checkpoint,
        first_unfinished,
        ended: ids,
        in_progress,
    })
}
