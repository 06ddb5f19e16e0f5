//! The simulation host: simulated clock, scheduler, actions, run records.

pub mod actions;
pub mod clock;
pub mod metrics;
pub mod engine;
pub mod session;
pub mod world;
pub mod records;
pub mod recorder;
pub mod run;
