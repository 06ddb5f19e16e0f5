//! Hot reload: watch the behaviours folder, recompile a changed set, dry-run it on a few
//! sample agent-days, then swap it in atomically.
//!
//! Callers take the current set with [`LiveSet::current`] (an `Arc`), so a decision already
//! running finishes on the version it started with. A set that fails to compile or to dry-run
//! is reported (file:line:column) and the last good version stays. Editors that write a temp
//! file and rename it work because the folder, not the file, is watched, and the set is
//! re-read from disk on every event.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::NaiveDate;
use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

use super::calendar::Calendar;
use super::error::BehaviorError;
use super::inputs::{CartLine, CartState, History};
use super::outputs::StepAction;
use super::set::{Agent, Outcome, PersonaSet};
use super::world::{World, agent_key};

/// Debounce window for file events.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Sample agents and days of a dry run.
const DRY_AGENTS: usize = 3;
const DRY_DAYS: u32 = 4;

/// Runs every decision function of `set` on a few sample agent-days with synthetic carts and
/// outcomes, validating every output. The first failure is returned.
pub fn dry_run(set: &PersonaSet, world: &World) -> Result<(), BehaviorError> {
    let seed = 0x5eed;
    let start = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default();
    let view = world.view();
    let wallet = world.sample_wallet(start);
    let history = Arc::new(History::default());
    for i in 0..DRY_AGENTS {
        let key = agent_key(i);
        let persona = set.make_persona(seed, &key, world.vocab())?;
        let agent = Agent {
            seed,
            key: &key,
            persona: &persona,
            history: &history,
            wallet: &wallet,
        };
        for day in 0..DRY_DAYS {
            let cal = Calendar::new(start + chrono::Duration::days(i64::from(day)), day, 0);
            let plan = set.plan_day(&agent, &cal, view)?.value;
            // Every function runs at least once per agent, even on a day without sessions.
            let sessions = if plan.sessions.is_empty() {
                vec![super::outputs::PlannedSession {
                    minute: 600,
                    store: 0,
                }]
            } else {
                plan.sessions
            };
            for (n, planned) in sessions.into_iter().enumerate() {
                let n = n as u32;
                let steps = set
                    .plan_session(&agent, &cal, view, n, planned)?
                    .value
                    .steps;
                let mut cart = CartState::default();
                for s in &steps {
                    if let StepAction::Add { product, qty } = s.action {
                        cart.lines.push(CartLine { product, qty });
                    }
                }
                if cart.lines.is_empty() && !view.0.is_empty() {
                    cart.lines.push(CartLine { product: 0, qty: 1 });
                }
                cart.eligible = wallet
                    .iter()
                    .take(4)
                    .filter_map(|o| world.offer(o))
                    .collect();
                let cal = cal.at_minute(planned.minute);
                let choice = set.choose_offers(&agent, &cal, view, n, &cart)?.value;
                cart.applied = choice
                    .apply
                    .iter()
                    .map(|i| cart.eligible[*i].clone())
                    .collect();
                set.decide_checkout(&agent, &cal, view, n, &cart)?;
                let outcomes = [
                    Outcome::OutOfStock {
                        product: cart.lines[0].product,
                        requested: 2,
                        available: 1,
                    },
                    Outcome::RequestFailed {
                        step: "add".into(),
                        status: 503,
                        message: "service unavailable".into(),
                    },
                ];
                for (k, o) in outcomes.iter().enumerate() {
                    set.on_outcome(&agent, &cal, view, n, o, k as u32)?;
                }
                if let Some(offer) = cart.eligible.first() {
                    let o = Outcome::OfferRejected {
                        offer: offer.clone(),
                        index: 0,
                        reason: "expired".into(),
                    };
                    set.on_outcome(&agent, &cal, view, n, &o, 2)?;
                }
            }
        }
    }
    Ok(())
}

/// What happened when the folder changed.
#[derive(Debug, Clone, PartialEq)]
pub enum ReloadEvent {
    /// A new version is live.
    Reloaded {
        /// The new version.
        version: Arc<str>,
    },
    /// The files changed but the set's content did not (e.g. an unrelated file, or a touch).
    Unchanged,
    /// The new version failed; the old one stays.
    Failed {
        /// Why (file:line:column …).
        error: BehaviorError,
        /// The version still in use.
        kept: Arc<str>,
    },
}

/// A persona set that can be swapped while decisions run.
pub struct LiveSet {
    dir: PathBuf,
    name: String,
    world: Arc<World>,
    current: ArcSwap<PersonaSet>,
}

impl LiveSet {
    /// Loads and dry-runs the set; fails if either fails.
    pub fn load(dir: &Path, name: &str, world: Arc<World>) -> Result<Arc<Self>, BehaviorError> {
        let set = PersonaSet::load(dir, name)?;
        dry_run(&set, &world)?;
        Ok(Arc::new(LiveSet {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            world,
            current: ArcSwap::from_pointee(set),
        }))
    }

    /// The set to use for the next decision. Hold the `Arc` for the whole decision.
    pub fn current(&self) -> Arc<PersonaSet> {
        self.current.load_full()
    }

    /// Recompiles from disk, dry-runs and swaps. On failure the current version stays.
    pub fn reload(&self) -> ReloadEvent {
        let kept = self.current.load().version().clone();
        let result = PersonaSet::load(&self.dir, &self.name).and_then(|set| {
            dry_run(&set, &self.world)?;
            Ok(set)
        });
        match result {
            Ok(set) if *set.version() == kept => ReloadEvent::Unchanged,
            Ok(set) => {
                let version = set.version().clone();
                self.current.store(Arc::new(set));
                tracing::info!(set = %self.name, %version, "persona set reloaded");
                ReloadEvent::Reloaded { version }
            }
            Err(error) => {
                tracing::warn!(set = %self.name, kept = %kept, "persona set not reloaded: {error}");
                ReloadEvent::Failed { error, kept }
            }
        }
    }
}

/// Editor droppings and temp files that never hold a set (`*.swp`, `*~`, `4913`, `.#x`, hidden).
pub fn ignored(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return true;
    };
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp")
        || name == "4913"
        || !name.ends_with(".rhai")
}

/// A running watcher. Dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<notify_debouncer_full::notify::RecommendedWatcher, RecommendedCache>,
    /// Reload results, in order.
    pub events: mpsc::UnboundedReceiver<ReloadEvent>,
}

/// Watches `live`'s behaviours folder (recursively: the set and `lib/`) and reloads on change.
pub fn watch(live: Arc<LiveSet>) -> Result<Watcher, BehaviorError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let dir = live.dir.clone();
    let target = live.clone();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| {
        let relevant = match &res {
            Ok(events) => events.iter().any(|e| e.paths.iter().any(|p| !ignored(p))),
            // A watcher error (e.g. queue overflow): re-read to be safe.
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(target.reload());
        }
    })
    .map_err(|e| BehaviorError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    debouncer
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|e| BehaviorError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
    Ok(Watcher {
        _debouncer: debouncer,
        events: rx,
    })
}
