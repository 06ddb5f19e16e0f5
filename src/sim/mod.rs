//! The simulation host: simulated clock, scheduler, actions, run records.

pub mod actions;
pub mod clock;
pub mod engine;
pub mod metrics;
pub mod recorder;
pub mod records;
pub mod run;
pub mod session;
pub mod world;
