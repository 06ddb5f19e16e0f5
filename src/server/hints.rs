//! What this server remembers to save round trips, per session or per user: bounded maps of
//! guesses that the statements using them check. A wrong or missing guess costs a second
//! statement, never a wrong answer, so each map is only a hint: bounded, and forgotten when
//! full.
//!
//! - Events per open session ([`Hints::expected_events`]): the number a write request's session
//!   statement numbers its events from (see `Shop::write_held`).
//! - The store each user last selected here: the hint that makes adding to the cart one
//!   statement (see `Shop::add_to_cart_in`).

use std::collections::HashMap;

use parking_lot::Mutex;
use uuid::Uuid;

/// Keys remembered at most; beyond this a map starts again empty (a busy server's open
/// sessions and active users are far fewer: each agent has at most one session open).
const MAX_KEYS: usize = 200_000;

/// Session or user id → the value last seen.
pub(crate) struct Hints<V>(Mutex<HashMap<Uuid, V>>);

impl<V> Default for Hints<V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<V: Copy> Hints<V> {
    /// The value last remembered for `key`.
    pub fn get(&self, key: Uuid) -> Option<V> {
        self.0.lock().get(&key).copied()
    }

    /// Remembers `value` for `key`.
    pub fn set(&self, key: Uuid, value: V) {
        let mut map = self.0.lock();
        if map.len() >= MAX_KEYS && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, value);
    }
}

impl Hints<i64> {
    /// The events `session` is expected to have: what this server last wrote, else 0 (a new
    /// session: the common case for a session this server has not seen).
    pub fn expected_events(&self, session: Uuid) -> i64 {
        self.get(session).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_stays_bounded() {
        let counts = Hints::<i64>::default();
        let a = Uuid::from_u128(1);
        assert_eq!(counts.expected_events(a), 0);
        counts.set(a, 3);
        assert_eq!(counts.expected_events(a), 3);
        counts.set(a, 4);
        assert_eq!(counts.expected_events(a), 4);
        for n in 0..MAX_KEYS as u128 + 10 {
            counts.set(Uuid::from_u128(n + 10), 1);
        }
        assert!(counts.0.lock().len() <= MAX_KEYS);
        let stores = Hints::<Uuid>::default();
        assert_eq!(stores.get(a), None);
        stores.set(a, Uuid::from_u128(7));
        assert_eq!(stores.get(a), Some(Uuid::from_u128(7)));
    }
}
