//! [`SessionCart`]: the cart of a session that is one transaction, held in memory.
//!
//! An in-process session that is one transaction never shows its cart to anyone: the lines it
//! adds and the coupons it applies are removed again by its own checkout or abandonment before
//! it commits, and no other transaction can see them meanwhile. Writing them only to delete
//! them is most of the rows such a session costs besides its events and its order (two per
//! line, two per applied coupon), and reading them back costs a round trip at every eligibility
//! check, summary and checkout. With a `SessionCart` in its [`Ctx`](super::Ctx) the shop keeps
//! them here instead and prices from here; the database sees the same orders, events, stock and
//! wallet, and a cart that is empty before and after the session, as it would have.
//!
//! The memory is used only while it is exact: from the session's store selection, and only if
//! the user has no cart rows in the database then (a cart left by a paced run or the reference
//! server, which this session's checkout would have to include and empty, keeps the session on
//! the database's cart). What the database would decide by itself at read time — which applied
//! offers are still usable at the moment — is decided here from what it returned when the offer
//! was applied: the offer's `eligible_until`, and the coupon's own activity and expiry.
//!
//! An add needs its product's facts and the selected store's stock. When the session says
//! which products its plan will add ([`SessionCart::expect`]), the first add reads them all in
//! one statement and the later adds read nothing. Their stock is then the store's at the first
//! add: within a day stock only falls (restocks come between days), so a later add may accept
//! a unit that another session took meanwhile, which the checkout — the one that takes stock,
//! under locks — refuses as it refuses any cart the store can no longer fill.
//!
//! Applying an offer needs it to be one of the user's active offers. The eligibility check
//! reads them all; the session keeps them, and its applications and later eligibility checks
//! answer from them ([`SessionCart::offer`], [`SessionCart::offers`]: an offer whose
//! `eligible_until` or coupon expiry has passed since is left out as the database would leave
//! it out). When the session changes the wallet itself, the offers kept follow where the
//! change is known: a refresh keeps exactly the offers it assigned when the shop's catalog
//! copy knows their coupons (else it forgets them, and the next application or check reads
//! again), a checkout drops the offers it used. A session may also start with the offers its
//! agent's previous session left ([`SessionCart::keep_offers`], see
//! `crate::sim::actions::inprocess`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use uuid::Uuid;

use crate::catalog::{Coupon, Store};

use super::CartItemView;
use super::cart::{CartState, ProductFacts};

/// A session's cart in memory. Cheap to clone (clones share the cart).
#[derive(Clone, Default)]
pub struct SessionCart(Arc<Mutex<Held>>);

#[derive(Default)]
struct Held {
    /// The memory is the cart (see the module doc); `false` until a store selection finds
    /// the user's database cart empty.
    exact: bool,
    /// The store the session selected.
    store: Option<Store>,
    /// Lines with the simulated time each was first added, in the order the database would
    /// return them (first added first, then by id).
    lines: Vec<(CartItemView, DateTime<Utc>)>,
    /// Applied offers with their `eligible_until`, by coupon id.
    coupons: Vec<(Coupon, Option<DateTime<Utc>>)>,
    /// The products the session's plan will add (a hint; kept across [`SessionCart::reset`]).
    expected: Vec<Uuid>,
    /// Products read for adds — their facts and the stock of store `.0` when read — by id.
    read: Option<(Uuid, Vec<ReadProduct>)>,
    /// The user's active offers as the session last read them (eligibility), with their
    /// `eligible_until`, by coupon id; `None` until read, and again after the session's own
    /// writes to the wallet (a refresh, a checkout). See [`SessionCart::offer`].
    offers: Option<Vec<(Coupon, Option<DateTime<Utc>>)>>,
}

impl Held {
    /// The products read for adds in `store` (none when the reads were for another store).
    fn read_in(&self, store: Uuid) -> &[ReadProduct] {
        match &self.read {
            Some((s, read)) if *s == store => read,
            _ => &[],
        }
    }
}

/// A product read for adds: its id, its facts and the stock of the store it was read for.
pub(crate) type ReadProduct = (Uuid, ProductFacts, i64);

/// Whether an applied offer is usable at `now`, as the database's active-offer condition
/// decides it (the offer's status is `active` while it is in the memory: see
/// [`SessionCart::revalidate`]).
fn usable(coupon: &Coupon, until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    until.is_none_or(|u| u > now)
        && coupon.is_active
        && coupon.expiration_date.is_none_or(|e| e > now)
}

impl SessionCart {
    /// An empty cart, not in use until a store selection makes it exact.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything but the expected adds (the transaction the session ran in was lost;
    /// its redone steps fill the cart again and read the products again).
    pub fn reset(&self) {
        let mut held = self.0.lock();
        let expected = std::mem::take(&mut held.expected);
        *held = Held {
            expected,
            ..Held::default()
        };
    }

    /// The products the session's plan will add, so that the first add reads them all.
    pub fn expect(&self, mut products: Vec<Uuid>) {
        products.sort_unstable();
        products.dedup();
        self.0.lock().expected = products;
    }

    /// The products an add of `product_id` in `store` should read: `None` when an earlier
    /// read has it; else the expected adds not read yet, or just `product_id` if it is not one
    /// of them.
    pub(crate) fn to_read(&self, store: Uuid, product_id: Uuid) -> Option<Vec<Uuid>> {
        let held = self.0.lock();
        let read = held.read_in(store);
        let have = |id: &Uuid| read.iter().any(|(p, ..)| p == id);
        if have(&product_id) {
            return None;
        }
        if held.expected.binary_search(&product_id).is_err() {
            return Some(vec![product_id]);
        }
        Some(
            held.expected
                .iter()
                .filter(|id| !have(id))
                .copied()
                .collect(),
        )
    }

    /// Keeps products read for adds in `store` (their facts and stock then).
    pub(crate) fn keep_read(&self, store: Uuid, products: Vec<ReadProduct>) {
        let mut held = self.0.lock();
        match &mut held.read {
            Some((s, read)) if *s == store => read.extend(products),
            slot => *slot = Some((store, products)),
        }
    }

    /// A product read for adds in `store`: its facts and the stock then.
    pub(crate) fn read_product(
        &self,
        store: Uuid,
        product_id: Uuid,
    ) -> Option<(ProductFacts, i64)> {
        self.0
            .lock()
            .read_in(store)
            .iter()
            .find(|(id, ..)| *id == product_id)
            .map(|(_, facts, stock)| (facts.clone(), *stock))
    }

    /// The store the session selected.
    pub(crate) fn store(&self) -> Option<Store> {
        self.0.lock().store.clone()
    }

    /// True when the shop reads and writes the cart here rather than in the database.
    pub(crate) fn is_exact(&self) -> bool {
        self.0.lock().exact
    }

    /// After a store selection: `store` is selected, and `database_empty` tells whether the
    /// user has no cart rows in the database now. A switch to another store empties the cart
    /// as the database's switch does. Returns whether the memory held anything it emptied.
    pub(crate) fn selected(&self, store: &Store, database_empty: bool) -> bool {
        let mut held = self.0.lock();
        let switched = held.store.as_ref().is_some_and(|s| s.id != store.id);
        let mut cleared = false;
        if switched || !database_empty {
            cleared = !held.lines.is_empty() || !held.coupons.is_empty();
            held.lines.clear();
            held.coupons.clear();
        }
        held.store = Some(store.clone());
        held.exact = database_empty;
        cleared
    }

    /// The selected store, its lines and the applied offers usable at `now`.
    pub(crate) fn state(&self, now: DateTime<Utc>) -> CartState {
        let held = self.0.lock();
        CartState {
            store: held.store.clone(),
            items: held.lines.iter().map(|(line, _)| line.clone()).collect(),
            coupons: held
                .coupons
                .iter()
                .filter(|(c, until)| usable(c, *until, now))
                .map(|(c, _)| c.clone())
                .collect(),
        }
    }

    /// Units of `product_id` in the cart.
    pub(crate) fn quantity_of(&self, product_id: Uuid) -> i64 {
        self.0
            .lock()
            .lines
            .iter()
            .find(|(line, _)| line.product_id == product_id)
            .map_or(0, |(line, _)| line.quantity)
    }

    /// Adds a line (`line.quantity` units), or grows the existing line of the same product;
    /// returns the line as it is now.
    pub(crate) fn add(&self, line: CartItemView, now: DateTime<Utc>) -> CartItemView {
        let mut held = self.0.lock();
        if let Some((existing, _)) = held
            .lines
            .iter_mut()
            .find(|(l, _)| l.product_id == line.product_id)
        {
            existing.quantity += line.quantity;
            existing.line_total = existing.unit_price * existing.quantity;
            return existing.clone();
        }
        let at = held
            .lines
            .partition_point(|(l, added)| (*added, l.id) < (now, line.id));
        held.lines.insert(at, (line.clone(), now));
        line
    }

    /// Applies an offer (once: applying it again changes nothing), with its `eligible_until`.
    pub(crate) fn apply(&self, coupon: &Coupon, until: Option<DateTime<Utc>>) {
        let mut held = self.0.lock();
        if let Err(at) = held.coupons.binary_search_by_key(&coupon.id, |(c, _)| c.id) {
            held.coupons.insert(at, (coupon.clone(), until));
        }
    }

    /// Keeps the user's active offers as just read (all of them, at the session's time then).
    pub fn keep_offers(&self, mut offers: Vec<(Coupon, Option<DateTime<Utc>>)>) {
        offers.sort_by_key(|(c, _)| c.id);
        self.0.lock().offers = Some(offers);
    }

    /// Forgets the offers kept: the session changed the wallet.
    pub(crate) fn forget_offers(&self) {
        self.0.lock().offers = None;
    }

    /// The session's checkout used `used`: they are no longer active offers, the others kept
    /// are unchanged.
    pub(crate) fn drop_offers(&self, used: &[Uuid]) {
        if let Some(offers) = self.0.lock().offers.as_mut() {
            offers.retain(|(c, _)| !used.contains(&c.id));
        }
    }

    /// The selected store's id while the cart is exact: once the session commits, the user's
    /// selection names that store and their database cart is empty (an exact cart writes no
    /// cart rows). `None` when no store is selected or the database's cart is in use.
    pub fn exact_store(&self) -> Option<Uuid> {
        let held = self.0.lock();
        held.store.as_ref().filter(|_| held.exact).map(|s| s.id)
    }

    /// The offers kept, as they stand — the user's active offers once the session's writes
    /// are committed, each to be decided at its time of use as [`SessionCart::offer`] decides
    /// it — by coupon id; `None` when none are kept.
    pub fn kept_offers(&self) -> Option<Vec<(Coupon, Option<DateTime<Utc>>)>> {
        self.0.lock().offers.clone()
    }

    /// The user's active offers at `now`, by coupon id, from the offers kept (`None` when none
    /// are kept): what the eligibility check would read again, each decided as
    /// [`SessionCart::offer`] decides one.
    pub(crate) fn offers(
        &self,
        now: DateTime<Utc>,
    ) -> Option<Vec<(Coupon, Option<DateTime<Utc>>)>> {
        let held = self.0.lock();
        let offers = held.offers.as_ref()?;
        Some(
            offers
                .iter()
                .filter(|(c, until)| usable(c, *until, now))
                .cloned()
                .collect(),
        )
    }

    /// Whether `coupon_id` is one of the user's active offers at `now`, from the offers kept:
    /// `None` when none are kept, else the offer with its `eligible_until` if it is usable.
    /// Exact while nothing but the session writes the wallet (the cart being exact says so):
    /// the session's time only moves on, so an offer read as active is active now unless
    /// its `eligible_until` or its coupon's expiry has passed, which [`usable`] decides as the
    /// database would.
    pub(crate) fn offer(
        &self,
        coupon_id: Uuid,
        now: DateTime<Utc>,
    ) -> Option<Option<(Coupon, Option<DateTime<Utc>>)>> {
        let held = self.0.lock();
        let offers = held.offers.as_ref()?;
        Some(
            offers
                .binary_search_by_key(&coupon_id, |(c, _)| c.id)
                .ok()
                .map(|i| offers[i].clone())
                .filter(|(c, until)| usable(c, *until, now)),
        )
    }

    /// The ids of the applied offers (to revalidate after a refresh).
    pub(crate) fn applied_ids(&self) -> Vec<Uuid> {
        self.0.lock().coupons.iter().map(|(c, _)| c.id).collect()
    }

    /// After a refresh changed the wallet: the applied offers that are active offers now,
    /// with their new `eligible_until` (a refresh expires every active offer and may assign
    /// some again). The others stay applied in the database's cart but are never usable
    /// again there, so they are dropped.
    pub(crate) fn revalidate(&self, active: Vec<(Coupon, Option<DateTime<Utc>>)>) {
        let mut held = self.0.lock();
        held.coupons = active;
        held.coupons.sort_by_key(|(c, _)| c.id);
    }

    /// Empties the cart: (lines, coupons) removed.
    pub(crate) fn clear(&self) -> (u64, u64) {
        let mut held = self.0.lock();
        let removed = (held.lines.len() as u64, held.coupons.len() as u64);
        held.lines.clear();
        held.coupons.clear();
        removed
    }
}

impl super::Ctx {
    /// The session's cart when the shop keeps the cart there now (see the module doc).
    pub(crate) fn exact_cart(&self) -> Option<&SessionCart> {
        self.cart.as_ref().filter(|c| c.is_exact())
    }
}

impl std::fmt::Debug for SessionCart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.0.lock();
        f.debug_struct("SessionCart")
            .field("exact", &held.exact)
            .field("lines", &held.lines.len())
            .field("coupons", &held.coupons.len())
            .finish()
    }
}

impl PartialEq for SessionCart {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SessionCart {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CouponKind, DiscountType};
    use crate::money::Money;
    use chrono::TimeZone;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).unwrap() + chrono::Duration::minutes(minute)
    }

    fn line(id: u128, product: u128, quantity: i64) -> CartItemView {
        CartItemView {
            id: Uuid::from_u128(id),
            product_id: Uuid::from_u128(product),
            sku: None,
            product_name: format!("p{product}"),
            category: "Snacks".into(),
            brand: None,
            unit_price: Money(250),
            quantity,
            line_total: Money(250 * quantity),
        }
    }

    fn coupon(id: u128, expires: Option<DateTime<Utc>>) -> Coupon {
        Coupon {
            id: Uuid::from_u128(id),
            code: format!("C{id}"),
            kind: CouponKind::Frontstore,
            discount_details: String::new(),
            category_or_brand: None,
            discount_type: DiscountType::Fixed,
            discount_value: Money(100),
            min_purchase_amount: None,
            max_discount: None,
            expiration_date: expires,
            is_active: true,
        }
    }

    fn store(id: u128) -> Store {
        Store {
            id: Uuid::from_u128(id),
            name: format!("s{id}"),
        }
    }

    #[test]
    fn exact_only_when_the_database_cart_is_empty() {
        let cart = SessionCart::new();
        assert!(!cart.is_exact());
        assert!(!cart.selected(&store(1), false));
        assert!(!cart.is_exact());
        cart.selected(&store(1), true);
        assert!(cart.is_exact());
    }

    #[test]
    fn lines_grow_and_keep_the_database_order() {
        let cart = SessionCart::new();
        cart.selected(&store(1), true);
        cart.add(line(9, 1, 1), at(1));
        // Same minute, smaller id: first, as `ORDER BY created_at, id` has it.
        cart.add(line(3, 2, 1), at(1));
        cart.add(line(1, 3, 2), at(2));
        let grown = cart.add(line(9, 1, 2), at(3));
        assert_eq!((grown.quantity, grown.line_total), (3, Money(750)));
        let ids: Vec<u128> = cart
            .state(at(4))
            .items
            .iter()
            .map(|l| l.id.as_u128())
            .collect();
        assert_eq!(ids, [3, 9, 1]);
        assert_eq!(cart.quantity_of(Uuid::from_u128(1)), 3);
        assert_eq!(cart.quantity_of(Uuid::from_u128(7)), 0);
    }

    #[test]
    fn applied_offers_are_usable_only_while_active() {
        let cart = SessionCart::new();
        cart.selected(&store(1), true);
        cart.apply(&coupon(5, None), Some(at(10)));
        cart.apply(&coupon(2, Some(at(20))), None);
        cart.apply(&coupon(5, None), Some(at(10)));
        let usable_at = |m| {
            cart.state(at(m))
                .coupons
                .iter()
                .map(|c| c.id.as_u128())
                .collect::<Vec<_>>()
        };
        assert_eq!(usable_at(0), [2, 5]);
        assert_eq!(usable_at(10), [2]);
        assert_eq!(usable_at(20), Vec::<u128>::new());
        cart.revalidate(vec![(coupon(5, None), Some(at(30)))]);
        assert_eq!(usable_at(15), [5]);
    }

    #[test]
    fn a_switch_or_a_database_cart_empties_the_memory() {
        let cart = SessionCart::new();
        cart.selected(&store(1), true);
        cart.add(line(1, 1, 1), at(0));
        assert!(!cart.selected(&store(1), true), "same store keeps the cart");
        assert_eq!(cart.state(at(1)).items.len(), 1);
        assert!(cart.selected(&store(2), true), "a switch empties it");
        assert!(cart.state(at(1)).items.is_empty());
        cart.add(line(1, 1, 1), at(2));
        cart.apply(&coupon(4, None), None);
        assert_eq!(cart.clear(), (1, 1));
        assert_eq!(cart.clear(), (0, 0));
    }

    fn facts(name: &str) -> ProductFacts {
        ProductFacts {
            sku: None,
            name: name.into(),
            category: "Snacks".into(),
            brand: None,
            price: Money(250),
        }
    }

    #[test]
    fn the_first_add_reads_the_expected_products_once_per_store() {
        let (p1, p2, p3) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let (s1, s2) = (Uuid::from_u128(51), Uuid::from_u128(52));
        let cart = SessionCart::new();
        cart.expect(vec![p2, p1, p2]);
        // Not expected: read alone.
        assert_eq!(cart.to_read(s1, p3), Some(vec![p3]));
        assert_eq!(cart.to_read(s1, p2), Some(vec![p1, p2]));
        cart.keep_read(s1, vec![(p1, facts("one"), 4), (p2, facts("two"), 0)]);
        assert_eq!(cart.to_read(s1, p2), None);
        assert_eq!(
            cart.read_product(s1, p2).map(|(f, n)| (f.name, n)),
            Some(("two".into(), 0))
        );
        // A product read alone joins what was read.
        assert_eq!(cart.to_read(s1, p3), Some(vec![p3]));
        cart.keep_read(s1, vec![(p3, facts("three"), 7)]);
        assert_eq!(cart.read_product(s1, p3).map(|(_, n)| n), Some(7));
        assert_eq!(cart.read_product(s1, p1).map(|(_, n)| n), Some(4));
        // Another store's stock is another read.
        assert!(cart.read_product(s2, p1).is_none());
        assert_eq!(cart.to_read(s2, p1), Some(vec![p1, p2]));
        cart.keep_read(s2, vec![(p1, facts("one"), 1)]);
        assert!(cart.read_product(s1, p1).is_none());
        // Only the expected products not read yet.
        assert_eq!(cart.to_read(s2, p2), Some(vec![p2]));
        // A lost transaction forgets the reads, not the expectation.
        cart.reset();
        assert!(cart.read_product(s2, p1).is_none());
        assert_eq!(cart.to_read(s2, p1), Some(vec![p1, p2]));
    }

    #[test]
    fn kept_offers_answer_until_forgotten() {
        let cart = SessionCart::new();
        let id = |n: u128| Uuid::from_u128(n);
        assert_eq!(
            cart.offer(id(1), at(0)),
            None,
            "nothing kept: read the database"
        );
        // Kept in any order; one lapses at minute 10, one's coupon expires at minute 20.
        cart.keep_offers(vec![
            (coupon(3, Some(at(20))), None),
            (coupon(1, None), Some(at(10))),
            (coupon(2, None), None),
        ]);
        let found = |n: u128, m: i64| cart.offer(id(n), at(m)).map(|o| o.map(|(c, _)| c.id));
        assert_eq!(found(1, 5), Some(Some(id(1))));
        assert_eq!(found(2, 5), Some(Some(id(2))));
        assert_eq!(found(3, 5), Some(Some(id(3))));
        assert_eq!(found(4, 5), Some(None), "not an offer");
        assert_eq!(found(1, 10), Some(None), "eligible_until passed");
        assert_eq!(found(3, 20), Some(None), "coupon expired");
        assert_eq!(found(2, 30), Some(Some(id(2))));
        let ids = |m: i64| {
            cart.offers(at(m))
                .map(|o| o.iter().map(|(c, _)| c.id).collect::<Vec<_>>())
        };
        assert_eq!(ids(5), Some(vec![id(1), id(2), id(3)]), "by coupon id");
        assert_eq!(ids(15), Some(vec![id(2), id(3)]));
        assert_eq!(ids(25), Some(vec![id(2)]));
        cart.forget_offers();
        assert_eq!(ids(25), None);
        assert_eq!(found(2, 30), None);
        cart.keep_offers(vec![(coupon(2, None), None)]);
        cart.reset();
        assert_eq!(found(2, 30), None, "a lost transaction forgets them");
    }
}
