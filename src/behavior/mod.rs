//! The behaviour host: shopper personas and decisions in hot-reloaded Rhai scripts.
//!
//! Analysts change how shoppers behave by editing `behaviors/<set>/main.rhai`; the Rust host
//! keeps all I/O, time and randomness, and scripts only decide. See `behaviors/README.md` for
//! the script API.
//!
//! ## Layout
//! - [`engine`]: the sandboxed Rhai engine (limits, no `eval`, no clock, imports only from
//!   `behaviors/lib/`), print/debug to the log.
//! - [`set`]: a compiled persona set, its version (content hash) and the decision calls.
//! - [`rng`]: the script-facing random generator, one stream per (seed, agent, day, session,
//!   purpose).
//! - [`persona`]: compact personas (shared schema + small values, interned strings).
//! - [`calendar`]: the simulated calendar and holidays.
//! - [`inputs`]: catalog, history, wallet and cart as scripts see them.
//! - [`outputs`]: validation of decisions (errors name file, function and field).
//! - [`reload`]: the folder watcher: recompile, dry-run, swap atomically, keep the last good.
//! - [`world`]: the shared read-only catalog cache the scripts decide from.
//! - [`population`]: personas for many agents (`shopsim seed --persona-set`).

pub mod calendar;
pub mod engine;
pub mod error;
pub mod inputs;
pub mod outputs;
pub mod persona;
pub mod population;
pub mod reload;
pub mod rng;
pub mod set;
pub mod world;

pub use error::BehaviorError;
pub use set::{Agent, Decision, Outcome, PersonaSet, Vocab};

#[cfg(test)]
mod tests;
