//! The simulation host.
//!
//! - [`clock`]: the simulated clock (segments of constant scale; paced release with lag).
//! - [`engine`]: the scheduler: day plans, hourly cycles, bounded concurrency.
//! - [`session`]: one shopping session carried out step by step; compact agent state.
//! - [`actions`]: what agents do to the shop: HTTP (retries, breakers, outages) or in-process.
//! - [`world`]: the shared, read-only catalog cache.
//! - [`metrics`]: latency histograms per endpoint, outcomes by class, business counters.
//! - [`day_progress`]: the current simulated day's sessions ended out of planned.
//! - [`heap`]: the allocator's free pages handed back between simulated days.
//! - [`records`]: run records in the database, export, purge, summaries.
//! - [`recorder`]: the engine's writes of those records (plans before acting, checkpoints).
//! - [`progress`]: progress of creating and loading agents (a bar on a terminal).
//! - [`monitor`]: watching a run: the dashboard's figures, its keys, the status line.
//! - [`prometheus`]: the run's `/metrics` endpoint (`--metrics-addr`).
//! - [`thresholds`]: pass/fail thresholds (`--threshold 'checkout.p99<500ms'`).
//! - [`shard`]: sharded runs: slices of agents, leases with fencing, the shared clock.
//! - [`run`]: `shopsim run`: preparing a run and driving it.

pub mod actions;
pub mod clock;
pub mod day_progress;
pub mod engine;
pub mod heap;
pub mod metrics;
pub mod monitor;
pub mod progress;
pub mod prometheus;
pub mod recorder;
pub mod records;
pub mod run;
pub mod session;
pub mod shard;
pub mod thresholds;
pub mod world;
