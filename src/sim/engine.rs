//! The scheduler: simulated days, hourly cycles, bounded concurrency.
//!
//! At each simulated day's start every active agent's day plan is made (and handed to the
//! recorder before anything acts on it). Sessions start at their planned simulated times; each
//! step happens at the time the session plan gives. At most `concurrency` sessions are in flight
//! (a semaphore, not batches, so a slow agent never blocks the others); an agent's sessions run
//! one after another in one task, so its next session never starts before the previous ends.
//!
//! - `max`: the simulated day is the cycle: every session of day *d* ends before day *d + 1*
//!   is planned (plans read what agents did), restocking happens at each day's start, and
//!   within the day every agent's sessions run in order, as many agents at once as the
//!   concurrency allows. Agents share nothing but stock within a day, so the dataset does not
//!   depend on wall-clock order. The hours of the day are checkpointed as they complete (all
//!   their sessions ended: a watermark), at most once per `checkpoint_every` of wall time and
//!   at every day's end. (Hour-by-hour barriers made sparse populations wait on request
//!   latency: about 3 sessions per cycle for the original's 371 agents.)
//! - paced: each agent's day is one task that waits for the release of every step; the hour
//!   cycle is a checkpoint every simulated hour.
//!
//! Agents live as compact state in a `Vec`; a task takes an agent's state and gives it back.

use std::sync::Arc;

use chrono::{DateTime, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use smallvec::SmallVec;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::behavior::Agent;
use crate::behavior::calendar::Calendar;
use crate::behavior::outputs::{DayPlan, PlannedSession};
use crate::behavior::reload::LiveSet;
use crate::ids;
use crate::sim::actions::{Actions, SessionInfo};
use crate::sim::clock::PacedClock;
use crate::sim::heap::{self, PeriodicRelease};
use crate::sim::metrics::{Counter, Metrics};
use crate::sim::session::{AgentState, SessionContext, SessionEnd, SessionReport, run_session};
use crate::sim::world::World;

/// What the engine needs to know about the run.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Run id (part of session ids and idempotency keys).
    pub run_id: Arc<str>,
    /// Run seed.
    pub seed: u64,
    /// First simulated day (run calendar).
    pub start: NaiveDate,
    /// Number of calendar days the engine plans (the first and last may be partial).
    pub days: u32,
    /// Sessions before this instant are not run (a run may start mid-day, e.g. one simulated
    /// hour after the latest activity in the database).
    pub from: DateTime<Utc>,
    /// Sessions at or after this instant are not run.
    pub until: DateTime<Utc>,
    /// The run's time zone: the calendar scripts see and the hours reported.
    pub tz: Tz,
    /// Sessions in flight at most.
    pub concurrency: usize,
    /// Agents are activated gradually over this many simulated hours (0 = all at once).
    pub ramp_up_hours: u32,
    /// `max` mode: the least wall time between two checkpoints inside a simulated day (a
    /// checkpoint is also taken at every day's end). Paced runs checkpoint every simulated
    /// hour.
    pub checkpoint_every: std::time::Duration,
}

/// One agent-day decision, as recorded before anything acts on it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DayDecision {
    /// The agent's position in the engine's agent list.
    #[serde(skip)]
    pub agent: usize,
    /// Agent natural key.
    pub agent_id: Arc<str>,
    /// Simulated date.
    pub date: NaiveDate,
    /// The plan (empty when the agent does not shop, or is not active yet).
    pub plan: DayPlan,
    /// Version of the scripts that decided.
    pub script_version: Arc<str>,
    /// The sessions to run (those inside the run's span and after the agent's activation).
    pub sessions: Vec<PlannedRun>,
}

/// One session of a day plan that the engine will run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PlannedRun {
    /// Its id (deterministic).
    pub id: uuid::Uuid,
    /// Its number within the agent's day.
    pub seq: u32,
    /// Its simulated start.
    pub at: DateTime<Utc>,
    /// The script's plan entry.
    pub planned: PlannedSession,
}

/// One finished (or failed, or interrupted) session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionDone {
    /// Agent natural key.
    pub agent_id: Arc<str>,
    /// The session.
    pub session_id: uuid::Uuid,
    /// Simulated date of the plan.
    pub date: NaiveDate,
    /// Number within the day.
    pub seq: u32,
    /// What happened.
    pub report: SessionReport,
}

/// Where the engine reports what it decides and does (run records, checkpoints).
#[async_trait::async_trait]
pub trait Recorder: Send + Sync {
    /// Day plans, recorded before any of them is acted on. An error stops the run (nothing may
    /// act on an unrecorded decision).
    async fn day_planned(&self, decisions: &[DayDecision]) -> anyhow::Result<()>;
    /// Sessions released to run (planned → in progress). Not called when the actions'
    /// sessions are atomic ([`Actions::sessions_are_atomic`]): they stay `planned` until their
    /// outcome commits with their work.
    async fn sessions_started(&self, ids: &[uuid::Uuid]) -> anyhow::Result<()>;
    /// A session ended.
    async fn session_ended(&self, record: &SessionDone) -> anyhow::Result<()>;
    /// The day decisions already recorded for `date` (a resumed run reuses them: a decision
    /// is never rolled twice).
    async fn recorded_plans(&self, date: NaiveDate) -> anyhow::Result<RecordedPlans>;
    /// A simulated hour (the batch) finished: `end` is its end.
    async fn hour_done(&self, end: DateTime<Utc>) -> anyhow::Result<()>;
    /// Writes whatever the recorder still buffers (the engine calls it before it returns).
    async fn flush(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Waits before the simulated day starting at `start` begins (its restock) until the run's
    /// other shards have finished the previous day; returns at once for an unsharded run or
    /// when the run is stopped.
    async fn before_day(&self, _start: DateTime<Utc>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A recorder that keeps nothing (for `check` and tests).
pub struct NoRecorder;

#[async_trait::async_trait]
impl Recorder for NoRecorder {
    async fn day_planned(&self, _: &[DayDecision]) -> anyhow::Result<()> {
        Ok(())
    }
    async fn sessions_started(&self, _: &[uuid::Uuid]) -> anyhow::Result<()> {
        Ok(())
    }
    async fn session_ended(&self, _: &SessionDone) -> anyhow::Result<()> {
        Ok(())
    }
    async fn recorded_plans(&self, _: NaiveDate) -> anyhow::Result<RecordedPlans> {
        Ok(RecordedPlans::new())
    }
    async fn hour_done(&self, _: DateTime<Utc>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Recorded day plans by agent: the plan and the script version that made it.
pub type RecordedPlans = std::collections::HashMap<Arc<str>, (DayPlan, Arc<str>)>;

/// Where a resumed run picks up.
#[derive(Debug, Clone, Default)]
pub struct ResumeState {
    /// The last checkpoint: days before its (local) date are done…
    pub checkpoint: Option<DateTime<Utc>>,
    /// …unless a session of an earlier day has not ended (it was interrupted after its hour
    /// was checkpointed): the run resumes from that day.
    pub first_unfinished: Option<NaiveDate>,
    /// Sessions that already ended: their effects are replayed into the agents, and they
    /// are never run again.
    pub ended: std::collections::HashSet<uuid::Uuid>,
    /// Sessions that were in progress: run again with their keys, their checkout reconciled.
    pub in_progress: std::collections::HashSet<uuid::Uuid>,
}

/// How a run of the engine ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineEnd {
    /// Every simulated day was run.
    Finished,
    /// Stopped by request (Ctrl-C, `q`) at a cycle boundary.
    Stopped,
}

/// The engine.
pub struct Engine {
    /// Configuration.
    pub config: EngineConfig,
    /// The persona set; reloaded scripts take effect at the next decision (a decision in
    /// progress finishes on the version it started with).
    pub live: Arc<LiveSet>,
    /// The catalog cache.
    pub world: Arc<World>,
    /// The actions.
    pub actions: Arc<dyn Actions>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The paced clock (`None` = `max`).
    pub pacer: Option<PacedClock>,
    /// Graceful stop.
    pub cancel: CancellationToken,
    /// Set when the run resumes an interrupted one.
    pub resume: Option<ResumeState>,
}

/// The UTC instant of local `date` at `minute` in `tz` (DST gaps move forward, folds take the
/// earlier instant).
pub fn local_instant(tz: Tz, date: NaiveDate, minute: u32) -> DateTime<Utc> {
    let naive =
        date.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::minutes(i64::from(minute));
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            let later = naive + Duration::hours(1);
            tz.from_local_datetime(&later)
                .earliest()
                .map_or_else(|| naive.and_utc(), |t| t.with_timezone(&Utc))
        }
    }
}

/// The deterministic id of a planned session.
pub fn session_id(seed: u64, run_id: &str, agent: &str, date: NaiveDate, seq: u32) -> uuid::Uuid {
    ids::stable_uuid(seed, "session", &format!("{run_id}/{agent}/{date}/{seq}"))
}

/// Agents whose day is planned and recorded at a time (bounds the memory of a day's plans).
const PLAN_CHUNK: usize = 4096;

/// The simulated day a batch of jobs runs on, and what its jobs share.
#[derive(Clone, Copy)]
struct OnDay<'a> {
    date: NaiveDate,
    /// Days since the run's start.
    day: u32,
    permits: &'a Arc<Semaphore>,
    recorder: &'a Arc<dyn Recorder>,
}

struct Job {
    agent: usize,
    /// The sessions, each with whether it was in progress when the run stopped. Inline: most
    /// agent-days have one session, and a day of a million agents holds ~700,000 jobs.
    sessions: SmallVec<[(PlannedRun, bool); 1]>,
}

impl Engine {
    fn activation(&self, index: usize, agents: usize) -> DateTime<Utc> {
        let start = self.config.from;
        if self.config.ramp_up_hours == 0 || agents == 0 {
            return start;
        }
        let secs = i64::from(self.config.ramp_up_hours) * 3600 * index as i64 / agents as i64;
        start + Duration::seconds(secs)
    }

    /// Plans day `day` for the agents in `range`; an agent with a recorded decision keeps it.
    fn plan_day(
        &self,
        agents: &[Option<AgentState>],
        range: std::ops::Range<usize>,
        day: u32,
        recorded: &RecordedPlans,
    ) -> Vec<DayDecision> {
        let date = self.config.start + Duration::days(i64::from(day));
        let cal = Calendar::new(date, day, 0);
        let day_end = local_instant(self.config.tz, date + Duration::days(1), 0);
        let set = self.live.current();
        let mut out = Vec::with_capacity(range.len());
        for i in range {
            let Some(a) = &agents[i] else { continue };
            let active_from = self.activation(i, agents.len());
            let mut plan = DayPlan::default();
            let mut version = set.version().clone();
            if let Some((p, v)) = recorded.get(&a.key) {
                plan = p.clone();
                version = v.clone();
            } else if active_from < day_end {
                let agent = Agent {
                    seed: self.config.seed,
                    key: &a.key,
                    persona: &a.persona,
                    history: &a.history,
                    wallet: &a.wallet,
                };
                match set.plan_day(&agent, &cal, self.world.view()) {
                    Ok(d) => {
                        version = d.version;
                        plan = d.value;
                    }
                    Err(e) => {
                        self.metrics.script_error(format!("{date} {}: {e}", a.key));
                        tracing::warn!(agent = %a.key, %date, error = %e, "plan_day failed; the agent does not shop today");
                    }
                }
            }
            let sessions = plan
                .sessions
                .iter()
                .enumerate()
                .map(|(seq, planned)| {
                    let seq = seq as u32;
                    PlannedRun {
                        id: session_id(self.config.seed, &self.config.run_id, &a.key, date, seq),
                        seq,
                        at: local_instant(self.config.tz, date, u32::from(planned.minute)),
                        planned: *planned,
                    }
                })
                .filter(|r| r.at >= active_from && r.at < self.config.until)
                .collect();
            out.push(DayDecision {
                agent: i,
                agent_id: a.key.clone(),
                date,
                plan,
                script_version: version,
                sessions,
            });
        }
        self.metrics.add(Counter::AgentDays, out.len() as u64);
        out
    }

    /// Runs every simulated day (or until stopped). Agents are given back in `agents`; what
    /// the recorder buffers is written before this returns.
    pub async fn run(
        &self,
        agents: &mut [Option<AgentState>],
        recorder: Arc<dyn Recorder>,
    ) -> anyhow::Result<EngineEnd> {
        let ran = self.run_days(agents, &recorder).await;
        let flushed = recorder.flush().await;
        let end = ran?;
        flushed?;
        Ok(end)
    }

    async fn run_days(
        &self,
        agents: &mut [Option<AgentState>],
        recorder: &Arc<dyn Recorder>,
    ) -> anyhow::Result<EngineEnd> {
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let empty = std::collections::HashSet::new();
        let ended = self.resume.as_ref().map_or(&empty, |r| &r.ended);
        let in_progress = self.resume.as_ref().map_or(&empty, |r| &r.in_progress);
        let resumed_at = self.resume.as_ref().and_then(|r| r.checkpoint);
        // Without a checkpoint the run starts over from its first day (recorded decisions and
        // ended sessions are still reused).
        let unfinished = self.resume.as_ref().and_then(|r| r.first_unfinished);
        let first_date = resumed_at.map(|t| {
            let date = t.with_timezone(&self.config.tz).date_naive();
            unfinished.map_or(date, |u| date.min(u))
        });
        let first_day = first_date.map_or(0, |date| {
            u32::try_from((date - self.config.start).num_days()).unwrap_or(0)
        });
        for day in first_day..self.config.days {
            if self.cancel.is_cancelled() {
                return Ok(EngineEnd::Stopped);
            }
            let date = self.config.start + Duration::days(i64::from(day));
            let recorded = if self.resume.is_some() {
                recorder.recorded_plans(date).await?
            } else {
                RecordedPlans::new()
            };
            let day_start = local_instant(self.config.tz, date, 0).max(self.config.from);
            // Log lines carry the simulated time even in a run shorter than a monitor tick.
            crate::logging::set_sim_time(day_start);
            // Planned and recorded a chunk of agents at a time, so that a day's decisions of a
            // million agents never sit in memory at once; only the agents that shop become
            // jobs: one per agent-day, its sessions in order. Sessions that already ended (a
            // resumed run) are not run again.
            let mut jobs: Vec<Job> = Vec::new();
            let (mut planned, mut to_run) = (0u64, 0u64);
            for from in (0..agents.len()).step_by(PLAN_CHUNK) {
                let range = from..(from + PLAN_CHUNK).min(agents.len());
                let decisions = self.plan_day(agents, range, day, &recorded);
                recorder.day_planned(&decisions).await?;
                for d in decisions {
                    let sessions: SmallVec<_> = d
                        .sessions
                        .iter()
                        .filter(|r| !ended.contains(&r.id))
                        .map(|r| (*r, in_progress.contains(&r.id)))
                        .collect();
                    planned += d.sessions.len() as u64;
                    to_run += sessions.len() as u64;
                    if !sessions.is_empty() {
                        jobs.push(Job {
                            agent: d.agent,
                            sessions,
                        });
                    }
                }
            }
            // The previous day's sessions and this day's planning are over: their freed
            // memory goes back to the system rather than staying resident (see `heap`).
            heap::release_free_pages();
            // Every session of the previous day has ended (days run one after another), on
            // every shard of the run.
            if day > 0 {
                recorder.before_day(day_start).await?;
                if self.cancel.is_cancelled() {
                    return Ok(EngineEnd::Stopped);
                }
            }
            self.metrics
                .day()
                .start_day(date, day_start, planned, planned - to_run);
            if let Err(e) = self.actions.day_starts(day_start).await {
                if self.cancel.is_cancelled() {
                    return Ok(EngineEnd::Stopped);
                }
                anyhow::bail!("starting simulated day {date}: {e}");
            }
            let on = OnDay {
                date,
                day,
                permits: &permits,
                recorder,
            };
            if let Some(p) = &self.pacer {
                // A checkpoint at every simulated hour while the agents' days run.
                let hours = async {
                    let mut release = PeriodicRelease::new();
                    for hour in 1..=24u32 {
                        let end = local_instant(self.config.tz, date, hour * 60);
                        if resumed_at.is_some_and(|t| end <= t) {
                            continue;
                        }
                        // The day is done only when the paced clock reaches its end: without
                        // this wait a run ends (and checkpoints) at its last session, ahead of
                        // the clock, and reports an achieved scale above the target.
                        tokio::select! {
                            _ = p.wait_until(end) => {}
                            _ = self.cancel.cancelled() => return Ok(()),
                        }
                        recorder.hour_done(end).await?;
                        release.tick();
                    }
                    Ok::<_, anyhow::Error>(())
                };
                let (ran, ticked) = tokio::join!(self.run_jobs(agents, jobs, on, None), hours);
                ran?;
                ticked?;
                continue;
            }
            self.run_day_max(agents, jobs, on, resumed_at).await?;
        }
        Ok(if self.cancel.is_cancelled() {
            EngineEnd::Stopped
        } else {
            EngineEnd::Finished
        })
    }

    /// `max`: runs one simulated day's jobs all at once (bounded by the permits) and
    /// checkpoints its hours as they complete.
    async fn run_day_max(
        &self,
        agents: &mut [Option<AgentState>],
        jobs: Vec<Job>,
        on: OnDay<'_>,
        resumed_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        let OnDay { date, recorder, .. } = on;
        let hour_end = |hour: usize| local_instant(self.config.tz, date, (hour as u32 + 1) * 60);
        let mut pending = [0usize; 24];
        for job in &jobs {
            for (r, _) in &job.sessions {
                pending[usize::from(r.planned.minute / 60).min(23)] += 1;
            }
        }
        let none = pending.iter().all(|&n| n == 0);
        if none && resumed_at.is_some_and(|t| hour_end(23) <= t) {
            return Ok(());
        }
        if !none && !self.actions.sessions_are_atomic() {
            // Collected only here: a million agents' day holds ~700,000 ids.
            let ids: Vec<_> = jobs
                .iter()
                .flat_map(|job| job.sessions.iter().map(|(r, _)| r.id))
                .collect();
            recorder.sessions_started(&ids).await?;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let watermark = async {
            // Hours before `next` have all their sessions ended.
            let (mut next, mut checkpointed) = (0usize, 0usize);
            let mut last = std::time::Instant::now();
            let mut release = PeriodicRelease::new();
            loop {
                while next < 24 && pending[next] == 0 {
                    next += 1;
                }
                // The day's last hour is checkpointed when the day ends.
                if next > checkpointed
                    && next < 24
                    && last.elapsed() >= self.config.checkpoint_every
                    && !self.cancel.is_cancelled()
                {
                    self.checkpoint_hours(recorder, date, checkpointed, next, resumed_at)
                        .await?;
                    (checkpointed, last) = (next, std::time::Instant::now());
                }
                release.tick();
                match rx.recv().await {
                    Some(hour) => pending[hour] = pending[hour].saturating_sub(1),
                    None => return Ok::<_, anyhow::Error>((next, checkpointed)),
                }
            }
        };
        let (ran, reached) = tokio::join!(self.run_jobs(agents, jobs, on, Some(tx)), watermark);
        ran?;
        // A stopped day keeps the checkpoint it had: its unfinished sessions resume.
        let (reached, checkpointed) = reached?;
        if reached == 24 && !self.cancel.is_cancelled() {
            self.checkpoint_hours(recorder, date, checkpointed, 24, resumed_at)
                .await?;
        }
        Ok(())
    }

    /// Checkpoints the day's hours `from..to` (counted from its start) as done: each of them
    /// when `checkpoint_every` is zero, else only the last. None at or before `resumed_at`.
    async fn checkpoint_hours(
        &self,
        recorder: &Arc<dyn Recorder>,
        date: NaiveDate,
        from: usize,
        to: usize,
        resumed_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        let first = if self.config.checkpoint_every.is_zero() {
            from + 1
        } else {
            to
        };
        for hours in first..=to {
            let end = local_instant(self.config.tz, date, hours as u32 * 60);
            if resumed_at.is_none_or(|t| end > t) {
                recorder.hour_done(end).await?;
            }
        }
        Ok(())
    }

    /// Runs jobs (one task per agent-day); each ended session's hour is sent to `ended`.
    async fn run_jobs(
        &self,
        agents: &mut [Option<AgentState>],
        jobs: Vec<Job>,
        on: OnDay<'_>,
        ended: Option<tokio::sync::mpsc::UnboundedSender<usize>>,
    ) -> anyhow::Result<()> {
        let OnDay {
            date,
            day,
            permits,
            recorder,
        } = on;
        let mut tasks = JoinSet::new();
        let mut first_err = None;
        // `max` spawns an agent-day's task only when one of the concurrency's slots is free:
        // a million agents' tasks at once would hold their futures (and states) all day.
        // Paced runs need every task waiting for its release time.
        let in_flight = if self.pacer.is_none() {
            self.config.concurrency.max(1)
        } else {
            usize::MAX
        };
        for job in jobs {
            while tasks.len() >= in_flight {
                let Some(joined) = tasks.join_next().await else {
                    break;
                };
                settle(joined, agents, &mut first_err);
            }
            let Some(mut state) = agents[job.agent].take() else {
                continue;
            };
            let (live, world, metrics, actions) = (
                self.live.clone(),
                self.world.clone(),
                self.metrics.clone(),
                self.actions.clone(),
            );
            let (pacer, cancel, permits, recorder) = (
                self.pacer.clone(),
                self.cancel.clone(),
                permits.clone(),
                recorder.clone(),
            );
            let (run_id, seed, ended) =
                (self.config.run_id.clone(), self.config.seed, ended.clone());
            tasks.spawn(async move {
                let mut first_err = None;
                for (run, resumed) in job.sessions {
                    if let Some(p) = &pacer {
                        tokio::select! {
                            lag = p.wait_until(run.at) => metrics.record_lag(lag),
                            _ = cancel.cancelled() => break,
                        }
                    }
                    if cancel.is_cancelled() {
                        break;
                    }
                    // An agent's next session never starts before its previous one ended (in
                    // simulated time): one planned earlier starts a second after.
                    let at = match state.busy_until {
                        Some(busy) if busy >= run.at => busy + Duration::seconds(1),
                        _ => run.at,
                    };
                    let Ok(_permit) = permits.acquire().await else {
                        break;
                    };
                    if pacer.is_some()
                        && !actions.sessions_are_atomic()
                        && let Err(e) = recorder.sessions_started(&[run.id]).await
                    {
                        first_err.get_or_insert(e);
                        break;
                    }
                    let info = SessionInfo {
                        run_id: run_id.clone(),
                        agent_id: state.key.clone(),
                        user_id: state.user_id,
                        session_id: run.id,
                        sim_date: date,
                        session_seq: run.seq,
                        resumed,
                    };
                    let set = live.current();
                    let cx = SessionContext {
                        set: &set,
                        world: &world,
                        metrics: &metrics,
                        seed,
                        pacer: pacer.as_ref(),
                        cancel: &cancel,
                    };
                    let cal = Calendar::new(date, day, 0);
                    let report = run_session(
                        &cx,
                        actions.as_ref(),
                        &mut state,
                        info,
                        &cal,
                        run.seq,
                        run.planned,
                        at,
                    )
                    .await;
                    let interrupted = matches!(report.end, SessionEnd::Interrupted);
                    // Recorded as it ends: a crash loses no ended session.
                    let done = SessionDone {
                        agent_id: state.key.clone(),
                        session_id: run.id,
                        date,
                        seq: run.seq,
                        report,
                    };
                    if let Err(e) = recorder.session_ended(&done).await {
                        first_err.get_or_insert(e);
                        break;
                    }
                    if interrupted {
                        break;
                    }
                    metrics.day().session_ended();
                    if let Some(ended) = &ended {
                        // The receiver lives as long as the day; a send cannot fail before.
                        let _ = ended.send(usize::from(run.planned.minute / 60).min(23));
                    }
                }
                (job.agent, state, first_err)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            settle(joined, agents, &mut first_err);
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// What an agent-day task gives back: its agent, the agent's state and the first error.
type JobDone = (usize, AgentState, Option<anyhow::Error>);

/// Puts a finished task's agent back and keeps the first error.
fn settle(
    joined: Result<JobDone, tokio::task::JoinError>,
    agents: &mut [Option<AgentState>],
    first_err: &mut Option<anyhow::Error>,
) {
    let (agent, state, err) = match joined {
        Ok(done) => done,
        Err(e) => {
            // A panicking session must not take the run down; its agent sits out.
            tracing::error!(error = %e, "a session task failed; its agent is dropped from the run");
            return;
        }
    };
    agents[agent] = Some(state);
    if let Some(e) = err {
        first_err.get_or_insert(e);
    }
}
