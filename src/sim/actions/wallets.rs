//! [`KnownWallets`]: the users' active offers as their last committed session left them.
//!
//! In a run whose sessions are one transaction each, an agent's wallet changes only in that
//! agent's sessions (a refresh, a checkout), which run one after another, and each session
//! ends knowing the user's active offers exactly whenever its cart kept them (see
//! [`SessionCart`]): read at an eligibility check, assigned by a refresh, less those its
//! checkout used. Remembered at the commit, they let the agent's next session answer its
//! eligibility checks and applications without reading the wallet. A session that rolls back
//! leaves the wallet and the memory as they were; one that ends not knowing its offers (a
//! refresh whose coupons the catalog copy lacks) makes the memory forget the user. A restarted
//! process starts with none and reads again.
//!
//! Only for a process that is the only writer of its agents' wallets (in-process actions with
//! a session per transaction; a shard writes only its own agents' wallets).
//!
//! A remembered wallet is small: the offers of one refresh share their `eligible_until`, and a
//! coupon is its two-byte number in the catalog copy ([`KnownCatalog::coupon_number`]); a wallet
//! that does not fit that shape is not remembered.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use uuid::Uuid;

use crate::catalog::Coupon;
use crate::domain::{KnownCatalog, SessionCart};

/// Active offers by user (see the module doc).
pub(crate) struct KnownWallets {
    catalog: Arc<KnownCatalog>,
    wallets: Mutex<HashMap<Uuid, Wallet>>,
}

/// One user's active offers: the coupons' numbers, all usable until `until`.
struct Wallet {
    until: Option<DateTime<Utc>>,
    coupons: Box<[u16]>,
}

impl KnownWallets {
    /// No wallet known yet; coupons are numbered and described by `catalog`.
    pub(crate) fn new(catalog: Arc<KnownCatalog>) -> Self {
        Self {
            catalog,
            wallets: Mutex::new(HashMap::new()),
        }
    }

    /// Gives a new session of `user` the offers their last session left, if known.
    pub(crate) fn lend(&self, user: Uuid, cart: &SessionCart) {
        let offers: Option<Vec<(Coupon, Option<DateTime<Utc>>)>> = {
            let wallets = self.wallets.lock();
            wallets.get(&user).and_then(|w| {
                w.coupons
                    .iter()
                    .map(|n| Some((self.catalog.coupon_at(*n)?.clone(), w.until)))
                    .collect()
            })
        };
        if let Some(offers) = offers {
            cart.keep_offers(&offers);
        }
    }

    /// After `user`'s session committed: remembers the offers its cart kept, or forgets the
    /// user when it kept none (or ones that do not fit a remembered wallet).
    pub(crate) fn remember(&self, user: Uuid, cart: &SessionCart) {
        let wallet = cart.kept_offers().and_then(|offers| self.compact(&offers));
        let mut wallets = self.wallets.lock();
        match wallet {
            Some(w) => {
                wallets.insert(user, w);
            }
            None => {
                wallets.remove(&user);
            }
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

    fn wallets() -> (KnownWallets, Vec<Coupon>) {
        let catalog = generate(7);
        let coupons = catalog.coupons.clone();
        (
            KnownWallets::new(Arc::new(KnownCatalog::from_catalog(&catalog))),
            coupons,
        )
    }

    #[test]
    fn a_session_lends_what_the_last_one_kept() {
        let (w, coupons) = wallets();
        let user = Uuid::from_u128(1);
        let until = Some(Utc::now());
        let mut kept: Vec<_> = coupons[..3].iter().map(|c| (c.clone(), until)).collect();
        kept.sort_by_key(|(c, _)| c.id);
        let first = SessionCart::new();
        first.keep_offers(&kept);
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
        mixed.keep_offers(&[(coupons[0].clone(), until), (coupons[1].clone(), None)]);
        w.remember(user, &first);
        w.remember(user, &mixed);
        let after = SessionCart::new();
        w.lend(user, &after);
        assert_eq!(after.kept_offers(), None);
        // An empty wallet is remembered as empty.
        let empty = SessionCart::new();
        empty.keep_offers(&[]);
        w.remember(user, &empty);
        let after = SessionCart::new();
        w.lend(user, &after);
        assert_eq!(after.kept_offers(), Some(Vec::new()));
    }
}
