//! The simulation host: simulated clock, scheduler, actions, run records.

pub mod actions;
pub mod clock;
pub mod metrics;
