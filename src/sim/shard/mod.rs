//! Sharded runs: one run simulated by several processes (Kubernetes Indexed Job pods, or
//! processes on one machine) sharing one database.
//!
//! - [`ShardSpec`]: which slice of the agents a process simulates (`--shard I/N`): the agents
//!   whose stable hash falls in the slice, so every agent belongs to exactly one shard.
//! - [`lease`]: the slice's lease (a row with a heartbeat and a fencing number) and the
//!   heartbeat that keeps it.
//! - [`clock_sync`]: paced shards share the run's clock through the database.
//!
//! A single-process run is shard 0 of 1 and takes the same lease, so two processes can never
//! simulate the same run (or slice) at once.

pub mod clock_sync;
pub mod lease;

use crate::ids;

pub use lease::{Lease, LeaseConfig};

/// How a process takes part in a run: which shard, and how long its lease lasts.
#[derive(Debug, Clone, Copy)]
pub struct ShardOptions {
    /// The shard this process simulates (`0/1` for an unsharded run).
    pub spec: ShardSpec,
    /// A lease not renewed for this long may be taken over by another process.
    pub lease_ttl: std::time::Duration,
}

/// The default of `--lease-ttl`.
pub const DEFAULT_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl Default for ShardOptions {
    fn default() -> Self {
        Self {
            spec: ShardSpec::SINGLE,
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }
}

/// Which shard of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    /// This shard's index, `0..count`.
    pub index: u32,
    /// How many shards the run has.
    pub count: u32,
}

/// Error parsing a shard spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardSpecError {
    /// Not `I/N`.
    #[error("`{0}` is not a shard: use I/N with 0 <= I < N, e.g. 0/3 for the first of three")]
    Syntax(String),
    /// I out of range.
    #[error("shard index {index} is out of range for {count} shards (use 0 to {})", count.saturating_sub(1))]
    OutOfRange {
        /// The index given.
        index: u32,
        /// The count given.
        count: u32,
    },
    /// N is zero.
    #[error("a run needs at least 1 shard")]
    NoShards,
}

impl ShardSpec {
    /// The one shard of an unsharded run.
    pub const SINGLE: ShardSpec = ShardSpec { index: 0, count: 1 };

    /// A checked spec.
    pub fn new(index: u32, count: u32) -> Result<Self, ShardSpecError> {
        if count == 0 {
            return Err(ShardSpecError::NoShards);
        }
        if index >= count {
            return Err(ShardSpecError::OutOfRange { index, count });
        }
        Ok(Self { index, count })
    }

    /// True when the run has more than one shard.
    pub fn is_sharded(self) -> bool {
        self.count > 1
    }

    /// The shard an agent belongs to: its key's stable hash, scaled into `0..count` (a slice
    /// of the hash space per shard). Independent of the seed and of the number of agents, so
    /// an agent stays in its shard when the population grows.
    pub fn shard_of(key: &str, count: u32) -> u32 {
        let h = ids::hash64(0, &["shard".into(), key.into()]);
        ((u128::from(h) * u128::from(count.max(1))) >> 64) as u32
    }

    /// True when this shard simulates the agent.
    pub fn owns(self, key: &str) -> bool {
        self.count <= 1 || Self::shard_of(key, self.count) == self.index
    }
}

impl std::str::FromStr for ShardSpec {
    type Err = ShardSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (i, n) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| ShardSpecError::Syntax(s.to_string()))?;
        let parse = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| ShardSpecError::Syntax(s.to_string()))
        };
        ShardSpec::new(parse(i)?, parse(n)?)
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_specs() {
        assert_eq!(
            "1/3".parse::<ShardSpec>(),
            Ok(ShardSpec { index: 1, count: 3 })
        );
        assert_eq!(" 0 / 1 ".parse::<ShardSpec>(), Ok(ShardSpec::SINGLE));
        assert_eq!(
            "3/3".parse::<ShardSpec>(),
            Err(ShardSpecError::OutOfRange { index: 3, count: 3 })
        );
        assert_eq!("0/0".parse::<ShardSpec>(), Err(ShardSpecError::NoShards));
        assert!(matches!(
            "2".parse::<ShardSpec>(),
            Err(ShardSpecError::Syntax(_))
        ));
        assert!(matches!(
            "a/3".parse::<ShardSpec>(),
            Err(ShardSpecError::Syntax(_))
        ));
        assert!(
            "3/3"
                .parse::<ShardSpec>()
                .unwrap_err()
                .to_string()
                .contains("0 to 2")
        );
    }

    #[test]
    fn every_agent_belongs_to_exactly_one_shard_and_slices_are_even() {
        let keys: Vec<String> = (0..30_000).map(|i| format!("agent-{i:06}")).collect();
        for n in [1u32, 2, 3, 7] {
            let mut sizes = vec![0usize; n as usize];
            for k in &keys {
                let owners: Vec<u32> = (0..n)
                    .filter(|&i| ShardSpec::new(i, n).unwrap().owns(k))
                    .collect();
                assert_eq!(owners.len(), 1, "{k} with {n} shards: {owners:?}");
                sizes[owners[0] as usize] += 1;
            }
            let even = keys.len() / n as usize;
            for s in sizes {
                assert!(
                    s.abs_diff(even) < even / 20 + 10,
                    "{n} shards: {s} vs {even}"
                );
            }
        }
        // Stable across versions: a running sharded run's slices must not move under an
        // upgrade. These values are pinned.
        let pinned: Vec<u32> = (1..=8)
            .map(|n| ShardSpec::shard_of(&format!("agent_{n:03}"), 3))
            .collect();
        assert_eq!(pinned, [1, 1, 2, 0, 0, 2, 0, 2]);
    }
}
