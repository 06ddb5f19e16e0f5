//! [`KnownUsers`]: what the users' last committed sessions left that the next one would read
//! — their active offers and their store selection.
//!
//! In a run whose sessions are one transaction each, an agent's wallet, store selection and
//! cart change only in that agent's sessions, which run one after another.
//!
//! - **Offers.** Each session ends knowing the user's active offers exactly whenever its cart
//!   kept them (see [`SessionCart`]): read at an eligibility check, assigned by a refresh, less
//!   those its checkout used. Remembered at the commit, they let the agent's next session
//!   answer its eligibility checks and applications without reading the wallet. One that ends
//!   not knowing its offers (a refresh whose coupons the catalog copy lacks) makes the memory
//!   forget them.
//! - **Store.** A session whose cart stayed in memory ([`SessionCart::exact_store`]) leaves
//!   the user's selection naming its store and their database cart empty, so the next
//!   session's first selection of the same store changes nothing in the database: it is
//!   answered from memory, as the database would answer it (the store, nothing cleared).
//!
//! A session that rolls back leaves the database and the memory as they were. A restarted
//! process starts with nothing and reads again.
//!
//! Only for a process that is the only writer of its agents' wallets, selections and carts
//! (in-process actions with a session per transaction; a shard writes only its own agents').
//!
//! A remembered user is small: the offers of one refresh share their `eligible_until`, and a
//! coupon or store is its two-byte number in the catalog copy ([`KnownCatalog::coupon_number`],
//! [`KnownCatalog::store_number`]); offers that do not fit that shape are not remembered.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use uuid::Uuid;

use crate::catalog::{Coupon, Store};
use crate::domain::{KnownCatalog, SessionCart};

/// What is known of each user (see the module doc).
pub(crate) struct KnownUsers {
    catalog: Arc<KnownCatalog>,
    users: Mutex<HashMap<Uuid, Known>>,
}

/// One user's remembered state; a user with neither part known is not kept.
struct Known {
    /// Their active offers, when known.
    offers: Option<Wallet>,
    /// The number of the store their selection names while their database cart is empty.
    store: Option<u16>,
}

/// One user's active offers: the coupons' numbers, all usable until `until`.
struct Wallet {
    until: Option<DateTime<Utc>>,
    coupons: Box<[u16]>,
}

impl KnownUsers {
    /// No user known yet; coupons and stores are numbered and described by `catalog`.
    pub(crate) fn new(catalog: Arc<KnownCatalog>) -> Self {
        Self {
            catalog,
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Gives a new session of `user` the offers their last session left, if known.
    pub(crate) fn lend(&self, user: Uuid, cart: &SessionCart) {
        let offers: Option<Vec<(Coupon, Option<DateTime<Utc>>)>> = {
            let users = self.users.lock();
            users
                .get(&user)
                .and_then(|k| k.offers.as_ref())
                .and_then(|w| {
                    w.coupons
                        .iter()
                        .map(|n| Some((self.catalog.coupon_at(*n)?.clone(), w.until)))
                        .collect()
                })
        };
        if let Some(offers) = offers {
            cart.keep_offers(offers);
        }
    }

    /// The store `store_id` when `user`'s last committed session left their selection on it
    /// and their database cart empty: selecting it again changes nothing in the database.
    pub(crate) fn selected(&self, user: Uuid, store_id: Uuid) -> Option<Store> {
        let number = self.users.lock().get(&user)?.store?;
        self.catalog
            .store_at(number)
            .filter(|s| s.id == store_id)
            .cloned()
    }

    /// After `user`'s session committed: remembers the offers its cart kept and the store it
    /// left selected with an empty database cart; what it does not know is forgotten.
    pub(crate) fn remember(&self, user: Uuid, cart: &SessionCart) {
        let offers = cart.kept_offers().and_then(|offers| self.compact(&offers));
        let store = cart
            .exact_store()
            .and_then(|id| self.catalog.store_number(id));
        let mut users = self.users.lock();
        if offers.is_none() && store.is_none() {
            users.remove(&user);
        } else {
            users.insert(user, Known { offers, store });
        }
    }

    /// `offers` as a remembered wallet: `None` unless they share one `eligible_until` and the
    /// catalog copy numbers every coupon.
    fn compact(&self, offers: &[(Coupon, Option<DateTime<Utc>>)]) -> Option<Wallet> {
        let until = offers.first().and_then(|(_, until)| *until);
        if offers.iter().any(|(_, u)| *u != until) {
            return None;
        }
        let coupons = offers
            .iter()
            .map(|(c, _)| self.catalog.coupon_number(c.id))
            .collect::<Option<Box<[u16]>>>()?;
        Some(Wallet { until, coupons })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::generate;

    fn known() -> (KnownUsers, Vec<Coupon>) {
        let catalog = generate(7);
        let coupons = catalog.coupons.clone();
        (
            KnownUsers::new(Arc::new(KnownCatalog::from_catalog(&catalog))),
            coupons,
        )
    }

    #[test]
    fn a_session_lends_what_the_last_one_kept() {
        let (w, coupons) = known();
        let user = Uuid::from_u128(1);
        let until = Some(Utc::now());
        let mut kept: Vec<_> = coupons[..3].iter().map(|c| (c.clone(), until)).collect();
        kept.sort_by_key(|(c, _)| c.id);
        let first = SessionCart::new();
        first.keep_offers(kept.clone());
        w.remember(user, &first);
        let next = SessionCart::new();
        w.lend(user, &next);
        assert_eq!(next.kept_offers(), Some(kept.clone()));
        // Another user's session gets nothing.
        let other = SessionCart::new();
        w.lend(Uuid::from_u128(2), &other);
        assert_eq!(other.kept_offers(), None);
        // A session that kept none makes the memory forget the user.
        w.remember(user, &SessionCart::new());
        let after = SessionCart::new();
        w.lend(user, &after);
        assert_eq!(after.kept_offers(), None);
        // So does one whose offers have different windows.
        let mixed = SessionCart::new();
        mixed.keep_offers(vec![
            (coupons[0].clone(), until),
            (coupons[1].clone(), None),
        ]);
        w.remember(user, &first);
        w.remember(user, &mixed);
        let after = SessionCart::new();
        w.lend(user, &after);
        assert_eq!(after.kept_offers(), None);
        // An empty wallet is remembered as empty.
        let empty = SessionCart::new();
        empty.keep_offers(Vec::new());
        w.remember(user, &empty);
        let after = SessionCart::new();
        w.lend(user, &after);
        assert_eq!(after.kept_offers(), Some(Vec::new()));
    }

    #[test]
    fn a_selection_is_known_while_the_database_cart_is_empty() {
        let catalog = generate(7);
        let (a, b) = (catalog.stores[0].clone(), catalog.stores[1].clone());
        let (k, _) = known();
        let user = Uuid::from_u128(1);
        assert_eq!(k.selected(user, a.id), None, "nothing remembered yet");
        // A session whose cart stayed in memory on store A.
        let cart = SessionCart::new();
        cart.selected(&a, true);
        k.remember(user, &cart);
        assert_eq!(k.selected(user, a.id), Some(a.clone()));
        assert_eq!(k.selected(user, b.id), None, "another store is a change");
        assert_eq!(k.selected(Uuid::from_u128(2), a.id), None, "another user");
        // Remembering the store alone lends no offers.
        let next = SessionCart::new();
        k.lend(user, &next);
        assert_eq!(next.kept_offers(), None);
        // A session that used the database's cart (it had rows) leaves it unknown.
        let on_db = SessionCart::new();
        on_db.selected(&a, false);
        k.remember(user, &on_db);
        assert_eq!(k.selected(user, a.id), None);
        // So does one that selected no store.
        cart.selected(&b, true);
        k.remember(user, &cart);
        assert_eq!(k.selected(user, b.id), Some(b.clone()));
        k.remember(user, &SessionCart::new());
        assert_eq!(k.selected(user, b.id), None);
    }
}
