//! The shared, read-only catalog cache of a run: the behaviour host's indexed catalog (products
//! and coupons by script position for the scripts, ids for the actions), loaded once and shared
//! by every agent.

pub use crate::behavior::world::World;
