//! The shop's rules: cart, pricing, checkout, offers, restocking and session events.
//!
//! Every operation runs inside a caller-supplied transaction ([`Tx`](crate::store::Tx)) and
//! takes the simulated time in its [`Ctx`]; nothing here reads the wall clock for business
//! timestamps or knows about HTTP. The reference server wraps these calls with auth and idempotency; the simulation's
//! in-process actions call them directly (a whole session may be one transaction).
//!
//! When a method returns `Err` other than a database error it has left no partial change in the
//! caller's transaction: validation comes before writing, and a checkout short of stock
//! half-way puts back what it took. After a database error the caller rolls back (every
//! caller does: a request, a step or a whole in-process session).
//!
//! ## Layout
//! - [`pricing`]: pure pricing of a cart ([`price_cart`]); summary and checkout both use it.
//! - `catalog_reads`: stores, products, product detail, agent → user.
//! - `cart`: store selection, cart lines, applied coupons, eligibility, summary.
//! - `checkout`: cart → order (stock taken first, put back on a rejection), order history.
//! - `sessions`: shopping sessions and their events (deterministic event ids).
//! - `session_cart`: the cart of a session that is one transaction, held in memory.
//! - `offers`: global offer cycles, per-user refresh and draw, holdout, wallet.
//! - `restock`: once-per-simulated-day restocking.
//! - `rows`: shared row decoding and multi-row statement helpers.

mod cart;
mod catalog_reads;
mod checkout;
pub mod error;
mod offers;
pub mod pricing;
mod restock;
mod rows;
mod session_cart;
mod sessions;
pub mod views;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::catalog;
use crate::money::Money;

pub use cart::{MAX_ADD_QUANTITY, ineligibility};
pub use catalog_reads::MAX_PAGE;
pub use checkout::{order_id, session_order};
pub use error::{DomainError, RejectCode};
pub use offers::{Refreshed, cycle_epoch, cycle_number, draw_offers, is_holdout};
pub use pricing::{PricedLine, coupon_discount, meets_minimum, price_cart};
pub use session_cart::SessionCart;
pub use sessions::{HeldEvents, HeldOutcome, SessionEvents};
pub use views::*;

/// Result of a domain operation.
pub type DomainResult<T> = Result<T, DomainError>;

/// Tunables of the shop. Defaults follow the VoiceOffers contract.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShopConfig {
    /// Seed of the offer engine's draws and of holdout membership.
    pub seed: u64,
    /// Inventory level every (store, product) is raised to at simulated midnight (UTC).
    pub restock_level: i64,
    /// Share of users in the holdout group (no offers), 0–1.
    pub holdout_share: f64,
    /// Frontstore offers drawn per refresh.
    pub frontstore_offers: usize,
    /// Category and brand offers drawn per refresh.
    pub targeted_offers: usize,
    /// Length of an offer cycle in days.
    pub cycle_days: i64,
    /// Days an assigned offer stays usable.
    pub eligibility_days: i64,
    /// Days during which a coupon assigned to a user is not drawn again for them.
    pub exclusion_days: i64,
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            restock_level: 500,
            holdout_share: 0.10,
            frontstore_offers: 2,
            targeted_offers: 30,
            cycle_days: 7,
            eligibility_days: 14,
            exclusion_days: 28,
        }
    }
}

/// Who acts, when (simulated), and in which shopping session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    /// The acting user.
    pub user_id: Uuid,
    /// Simulated time of the action; every row written takes this time.
    pub now: DateTime<Utc>,
    /// The shopping session the action belongs to (events are recorded only with one).
    pub session_id: Option<Uuid>,
    /// Rows are flagged `is_simulated` / `is_simulation`.
    pub simulated: bool,
    /// Where session events wait for the end of the session's transaction (`None`: each
    /// event is written at once, as the reference server does per request).
    pub events: Option<SessionEvents>,
    /// Where the cart is kept when the session is one transaction that nobody else sees
    /// (`None`: the cart is in the database, as the reference server keeps it).
    pub cart: Option<SessionCart>,
}

/// The shop: stateless apart from its configuration and, in-process, a read-only copy of the
/// catalog's products and coupons; all state is in the database.
#[derive(Debug, Clone, Default)]
pub struct Shop {
    config: ShopConfig,
    known: Option<Arc<KnownCatalog>>,
}

/// What the shop may take from a read-only catalog cache instead of reading the database: a
/// product's SKU and price (what a view records: viewing one costs no read), a coupon's
/// terms (the offers a refresh assigns are then known without reading them back) and a
/// store's name (a selection remembered by the in-process actions answers without a read).
#[derive(Debug, Default)]
pub struct KnownCatalog {
    products: HashMap<Uuid, (String, Money)>,
    /// The coupons, each under its number ([`KnownCatalog::coupon_number`]).
    coupons: Vec<catalog::Coupon>,
    numbers: HashMap<Uuid, u16>,
    /// The stores, each under its number ([`KnownCatalog::store_number`]).
    stores: Vec<catalog::Store>,
    store_numbers: HashMap<Uuid, u16>,
}

impl KnownCatalog {
    /// The products and coupons of a catalog loaded from the shop's database. One whose SKU
    /// or code the loader stood in for (no `sku` or `code` column or value: the id's text) is
    /// left out, so that the shop reads it and answers with the value as it is there.
    pub fn from_catalog(catalog: &catalog::Catalog) -> Self {
        let products = catalog
            .products
            .iter()
            .filter(|p| p.sku != p.id.to_string())
            .map(|p| (p.id, (p.sku.clone(), p.price)))
            .collect();
        let (coupons, numbers) = numbered(
            catalog
                .coupons
                .iter()
                .filter(|c| c.code != c.id.to_string()),
            |c| c.id,
        );
        let (stores, store_numbers) = numbered(catalog.stores.iter(), |s| s.id);
        Self {
            products,
            coupons,
            numbers,
            stores,
            store_numbers,
        }
    }

    /// SKU and price of a known product.
    pub fn product(&self, id: Uuid) -> Option<(&str, Money)> {
        self.products
            .get(&id)
            .map(|(sku, price)| (sku.as_str(), *price))
    }

    /// A known coupon's terms.
    pub fn coupon(&self, id: Uuid) -> Option<&catalog::Coupon> {
        self.coupon_at(self.coupon_number(id)?)
    }

    /// A known coupon's number: two bytes that stand for it where many are kept (the first
    /// 65,536 coupons of the catalog are numbered, the rest are not known).
    pub fn coupon_number(&self, id: Uuid) -> Option<u16> {
        self.numbers.get(&id).copied()
    }

    /// The coupon numbered `n`.
    pub fn coupon_at(&self, n: u16) -> Option<&catalog::Coupon> {
        self.coupons.get(usize::from(n))
    }

    /// A known store's number (the first 65,536 stores of the catalog are numbered).
    pub fn store_number(&self, id: Uuid) -> Option<u16> {
        self.store_numbers.get(&id).copied()
    }

    /// The store numbered `n`.
    pub fn store_at(&self, n: u16) -> Option<&catalog::Store> {
        self.stores.get(usize::from(n))
    }
}

/// The first 65,536 of `items`, each numbered by its place, and the numbers by id.
fn numbered<'a, T: Clone + 'a>(
    items: impl Iterator<Item = &'a T>,
    id: impl Fn(&T) -> Uuid,
) -> (Vec<T>, HashMap<Uuid, u16>) {
    let kept: Vec<T> = items.take(usize::from(u16::MAX) + 1).cloned().collect();
    let numbers = kept
        .iter()
        .zip(0..=u16::MAX)
        .map(|(t, n)| (id(t), n))
        .collect();
    (kept, numbers)
}

impl Shop {
    /// A shop with `config`.
    pub fn new(config: ShopConfig) -> Self {
        Self {
            config,
            known: None,
        }
    }

    /// The same shop, taking what `known` holds from memory (see [`KnownCatalog`]). Only for a
    /// catalog that does not change while the shop runs (a simulation's in-process actions);
    /// the reference server reads the database.
    pub fn with_known_catalog(mut self, known: Arc<KnownCatalog>) -> Self {
        self.known = Some(known);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ShopConfig {
        &self.config
    }
}
