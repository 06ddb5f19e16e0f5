//! The simulation host: simulated clock, scheduler, actions, run records.

pub mod clock;
pub mod metrics;
pub mod actions;
