//! # shopsim
//!
//! Simulates a population of shoppers against a retail backend (the VoiceOffers API and its
//! PostgreSQL database, or shopsim's own reference server) on an accelerated simulated clock.
//!
//! ## Layout
//! - [`money`]: exact money (cents), used everywhere amounts appear.
//! - [`ids`]: stable identifiers and random streams derived from the run seed.
//! - [`store`]: the data layer: connections, pooler-safe transactions, one schema on SQLite and
//!   PostgreSQL, `migrate` and `migrate --check`.
//! - [`migrations`] (in the top-level `migrations/` folder): the schema as data and the
//!   sea-orm migrations that create it.
//! - [`catalog`]: the shared category vocabulary, the deterministic catalog generator, CSV
//!   catalogs and agent users (`shopsim seed`).
//! - [`domain`]: the shop's rules (cart, pricing, checkout, offers, restocking, session events).
//!   Every function takes the simulated time; nothing here knows about HTTP, so the reference
//!   server and the simulation's in-process actions run the same code.
//! - [`server`]: the reference VoiceOffers HTTP server (`shopsim serve`): auth, idempotency,
//!   simulated time, rate limiting and fault injection around the domain.
//! - [`behavior`]: the behaviour host: persona sets and decisions in sandboxed, hot-reloaded
//!   Rhai scripts (`behaviors/`), and the shared catalog cache they decide from.
//! - [`sim`]: the simulation host: simulated clock, run metrics, the actions interface.
//! - [`report`]: a run's report (and the comparison of two runs) as one self-contained HTML
//!   file with inline SVG charts, rendered from the run's records (`shopsim report`).
//! - [`dashboard`]: the live terminal dashboard of a run (ratatui) and its one-line status
//!   for runs without a terminal; it shows copies of the run's figures, never the engine.
//! - [`logging`]: stderr lines, and JSON lines in a size-rotated file for runs.
//! - [`cli`]: the command line.

pub mod behavior;
pub mod catalog;
pub mod cli;
pub mod dashboard;
pub mod domain;
pub mod ids;
pub mod logging;
#[path = "../migrations/mod.rs"]
pub mod migrations;
pub mod money;
pub mod report;
pub mod server;
pub mod sim;
pub mod store;
