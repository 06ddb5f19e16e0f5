//! How many events each open shopping session has, as far as this server knows: the guess a
//! write request's session statement numbers its events from (see `Shop::write_held`). A
//! wrong or missing guess costs a second statement, never a wrong id, so the map is only a
//! hint: bounded, and forgotten when full.

use std::collections::HashMap;

use parking_lot::Mutex;
use uuid::Uuid;

/// Sessions remembered at most; beyond this the map starts again empty (a busy server's open
/// sessions are far fewer: each agent has at most one).
const MAX_SESSIONS: usize = 200_000;

/// Session id → events it has (committed by this server).
#[derive(Default)]
pub(crate) struct EventCounts(Mutex<HashMap<Uuid, i64>>);

impl EventCounts {
    /// The events `session` is expected to have: what this server last wrote, else 0 (a new
    /// session: the common case for a session this server has not seen).
    pub fn expected(&self, session: Uuid) -> i64 {
        self.0.lock().get(&session).copied().unwrap_or(0)
    }

    /// `session` has `events` now.
    pub fn set(&self, session: Uuid, events: i64) {
        let mut map = self.0.lock();
        if map.len() >= MAX_SESSIONS && !map.contains_key(&session) {
            map.clear();
        }
        map.insert(session, events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_stays_bounded() {
        let counts = EventCounts::default();
        let a = Uuid::from_u128(1);
        assert_eq!(counts.expected(a), 0);
        counts.set(a, 3);
        assert_eq!(counts.expected(a), 3);
        counts.set(a, 4);
        assert_eq!(counts.expected(a), 4);
        for n in 0..MAX_SESSIONS as u128 + 10 {
            counts.set(Uuid::from_u128(n + 10), 1);
        }
        assert!(counts.0.lock().len() <= MAX_SESSIONS);
    }
}
