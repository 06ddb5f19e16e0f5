//! What scripts read, built by the host per call from its own compact state.
//!
//! The catalog is a registered read-only type over one shared `Arc` (never a map rebuilt per
//! call); the history and wallet are `Arc`s the host already holds; only the small calendar and
//! the cart are built per call. Products and stores are referred to by index (an `int`), which
//! is what outputs use too.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use rhai::{Array, Dynamic, Engine, EvalAltResult, INT, ImmutableString, Map, Position};

use crate::catalog::{Catalog, CouponKind, DiscountType};
use crate::money::Money;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn rt_err(msg: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(msg.into(), Position::NONE))
}

/// One product as scripts see it.
#[derive(Debug, Clone)]
pub struct ProductInfo {
    /// Display name.
    pub name: ImmutableString,
    /// Category (shared vocabulary).
    pub category: ImmutableString,
    /// Brand.
    pub brand: ImmutableString,
    /// Unit price.
    pub price: Money,
    /// Average rating.
    pub rating: f64,
    /// Review count.
    pub reviews: i64,
}

/// A coupon's terms as scripts see them, built once per catalog (an offer in a wallet refers
/// to them by the coupon's index instead of carrying a copy).
#[derive(Debug, Clone)]
pub struct CouponTerms {
    /// What it discounts.
    pub kind: CouponKind,
    /// Category or brand targeted (empty for frontstore).
    pub target: ImmutableString,
    /// How the discount is computed.
    pub discount_type: DiscountType,
    /// Percent or amount.
    pub value: Money,
    /// Minimum purchase.
    pub min_purchase: Money,
}

/// The catalog, indexed for scripts. Built once per catalog and shared by every call.
#[derive(Debug)]
pub struct CatalogIndex {
    products: Vec<ProductInfo>,
    coupons: Vec<CouponTerms>,
    categories: Array,
    by_category: BTreeMap<String, Array>,
    brands_by_category: BTreeMap<String, Array>,
    stores: Vec<ImmutableString>,
}

impl CatalogIndex {
    /// Indexes a catalog. Product `i` is `catalog.products[i]`; store `i` is `catalog.stores[i]`.
    pub fn new(catalog: &Catalog) -> Self {
        let mut by_category: BTreeMap<String, Array> = BTreeMap::new();
        let mut brands: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let products: Vec<ProductInfo> = catalog
            .products
            .iter()
            .enumerate()
            .map(|(i, p)| {
                by_category
                    .entry(p.category.clone())
                    .or_default()
                    .push(Dynamic::from_int(i as INT));
                let b = brands.entry(p.category.clone()).or_default();
                if !b.contains(&p.brand) {
                    b.push(p.brand.clone());
                }
                ProductInfo {
                    name: p.name.as_str().into(),
                    category: p.category.as_str().into(),
                    brand: p.brand.as_str().into(),
                    price: p.price,
                    rating: p.rating,
                    reviews: p.review_count,
                }
            })
            .collect();
        let categories = by_category
            .keys()
            .map(|c| Dynamic::from(c.clone()))
            .collect();
        let brands_by_category = brands
            .into_iter()
            .map(|(c, mut v)| {
                v.sort();
                (c, v.into_iter().map(Dynamic::from).collect())
            })
            .collect();
        let coupons = catalog
            .coupons
            .iter()
            .map(|c| CouponTerms {
                kind: c.kind,
                target: c.category_or_brand.as_deref().unwrap_or_default().into(),
                discount_type: c.discount_type,
                value: c.discount_value,
                min_purchase: c.min_purchase_amount.unwrap_or(Money::ZERO),
            })
            .collect();
        CatalogIndex {
            products,
            coupons,
            categories,
            by_category,
            brands_by_category,
            stores: catalog
                .stores
                .iter()
                .map(|s| s.name.as_str().into())
                .collect(),
        }
    }

    /// Number of products.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// True when there are no products.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Number of stores.
    pub fn store_count(&self) -> usize {
        self.stores.len()
    }

    /// A product by index.
    pub fn product(&self, i: usize) -> Option<&ProductInfo> {
        self.products.get(i)
    }

    /// The terms of coupon `i` (its index in the catalog's coupon list).
    pub fn coupon(&self, i: u32) -> Option<&CouponTerms> {
        self.coupons.get(i as usize)
    }

    /// The script's view of a held offer, or `None` for a coupon not in the catalog.
    pub fn offer(&self, held: HeldOffer) -> Option<Offer> {
        let c = self.coupon(held.coupon)?;
        Some(Offer {
            coupon: held.coupon,
            kind: c.kind,
            target: c.target.clone(),
            discount_type: c.discount_type,
            value: c.value,
            min_purchase: c.min_purchase,
            eligible_until: held.eligible_until,
        })
    }

    /// Category names present in the catalog, sorted.
    pub fn category_names(&self) -> Vec<String> {
        self.by_category.keys().cloned().collect()
    }

    fn idx(&self, what: &str, i: INT) -> RhaiResult<&ProductInfo> {
        usize::try_from(i)
            .ok()
            .and_then(|u| self.products.get(u))
            .ok_or_else(|| {
                rt_err(format!(
                    "catalog.{what}({i}): no product {i} (products are 0..{})",
                    self.products.len()
                ))
            })
    }
}

/// The script-facing catalog: a cheap handle on a shared [`CatalogIndex`].
#[derive(Debug, Clone)]
pub struct CatalogView(pub Arc<CatalogIndex>);

/// An agent's history as the host keeps it (compact; updated by the host after each session).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Date of the last session (any outcome).
    pub last_session: Option<NaiveDate>,
    /// Date of the last completed order.
    pub last_order: Option<NaiveDate>,
    /// Completed orders so far.
    pub orders: u32,
    /// Sessions so far.
    pub sessions: u32,
    week: (i32, u32),
    week_spend: Money,
    month: (i32, u32),
    month_spend: Money,
    /// Most recent baskets first (product indices), at most [`History::RECENT`].
    recent: RecentBaskets,
}

/// An agent's last few baskets in one allocation (a million agents each hold some): each
/// basket is its length followed by its product indices, most recent first.
#[derive(Debug, Clone, Default)]
struct RecentBaskets(Box<[u32]>);

impl RecentBaskets {
    /// Puts `products` first and keeps at most `keep` baskets.
    fn push(&mut self, products: &[u32], keep: usize) {
        let older: Vec<&[u32]> = self.iter().take(keep.saturating_sub(1)).collect();
        let mut words = Vec::with_capacity(
            1 + products.len() + older.iter().map(|b| 1 + b.len()).sum::<usize>(),
        );
        for b in std::iter::once(products).chain(older) {
            // A basket holds at most a few hundred lines, far below u32::MAX.
            words.push(b.len() as u32);
            words.extend_from_slice(b);
        }
        self.0 = words.into();
    }

    /// The baskets, most recent first.
    fn iter(&self) -> impl Iterator<Item = &[u32]> {
        let mut rest = &self.0[..];
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_first()?;
            let (basket, after) = tail.split_at((*len as usize).min(tail.len()));
            rest = after;
            Some(basket)
        })
    }
}

impl History {
    /// How many recent baskets are kept.
    pub const RECENT: usize = 4;

    /// Records a session on `date`.
    pub fn record_session(&mut self, date: NaiveDate) {
        self.sessions += 1;
        self.last_session = Some(date);
    }

    /// Records a completed order on `date`.
    pub fn record_order(&mut self, date: NaiveDate, products: &[u32], total: Money) {
        self.orders += 1;
        self.last_order = Some(date);
        let w = (date.iso_week().year(), date.iso_week().week());
        if self.week != w {
            self.week = w;
            self.week_spend = Money::ZERO;
        }
        self.week_spend += total;
        let m = (date.year(), date.month());
        if self.month != m {
            self.month = m;
            self.month_spend = Money::ZERO;
        }
        self.month_spend += total;
        self.recent.push(products, Self::RECENT);
    }

    /// Spend in the calendar week (Monday–Sunday) of `date`.
    pub fn spend_week(&self, date: NaiveDate) -> Money {
        if self.week == (date.iso_week().year(), date.iso_week().week()) {
            self.week_spend
        } else {
            Money::ZERO
        }
    }

    /// Spend in the calendar month of `date`.
    pub fn spend_month(&self, date: NaiveDate) -> Money {
        if self.month == (date.year(), date.month()) {
            self.month_spend
        } else {
            Money::ZERO
        }
    }
}

/// The script-facing history: the host's `Arc<History>` seen from a given date.
#[derive(Debug, Clone)]
pub struct HistoryView {
    /// The history.
    pub history: Arc<History>,
    /// The date of the decision.
    pub today: NaiveDate,
}

fn days_since(d: Option<NaiveDate>, today: NaiveDate) -> INT {
    d.map_or(-1, |d| (today - d).num_days())
}

fn basket_array(b: &[u32]) -> Array {
    b.iter().map(|p| Dynamic::from_int(*p as INT)).collect()
}

/// An offer in an agent's wallet, as scripts see it.
#[derive(Debug, Clone)]
pub struct Offer {
    /// Index of the coupon in the catalog's coupon list (stable within a run).
    pub coupon: u32,
    /// What it discounts.
    pub kind: CouponKind,
    /// Category or brand targeted (empty for frontstore).
    pub target: ImmutableString,
    /// How the discount is computed.
    pub discount_type: DiscountType,
    /// Percent or amount.
    pub value: Money,
    /// Minimum purchase.
    pub min_purchase: Money,
    /// Last date it can be used.
    pub eligible_until: NaiveDate,
}

impl Offer {
    /// The script-facing map (`index` is the position in the list it was given in).
    pub fn to_map(&self, index: usize, today: NaiveDate) -> Map {
        let mut m = Map::new();
        m.insert("index".into(), Dynamic::from_int(index as INT));
        m.insert("kind".into(), Dynamic::from(self.kind.as_str()));
        m.insert("target".into(), Dynamic::from(self.target.clone()));
        m.insert(
            "discount_type".into(),
            Dynamic::from(self.discount_type.as_str()),
        );
        m.insert("value".into(), Dynamic::from_float(self.value.to_f64()));
        m.insert(
            "min_purchase".into(),
            Dynamic::from_float(self.min_purchase.to_f64()),
        );
        m.insert(
            "days_left".into(),
            Dynamic::from_int((self.eligible_until - today).num_days()),
        );
        m
    }
}

/// An offer as an agent holds it between sessions: the coupon (its index in the catalog's
/// coupon list) and the last date it can be used; the terms are the catalog's (an [`Offer`]
/// with them is five times the size). A [`Wallet`] stores them more compactly still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldOffer {
    /// Index of the coupon in the catalog's coupon list.
    pub coupon: u32,
    /// Last date it can be used.
    pub eligible_until: NaiveDate,
}

/// An agent's active offers (shared with the calls that read them), in the order read. One
/// shared slice of `u32`s: a header word, then — when every offer has the same last date, as
/// the offers of one refresh do — the date once and 4 bytes per coupon; otherwise each coupon
/// with its date. About 150 bytes for the usual 32 offers, where a slice of [`HeldOffer`]s
/// takes 270: a million agents each hold one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet(Arc<[u32]>);

/// Header of a wallet whose offers share one date (`[UNIFORM, date, coupon…]`).
const UNIFORM: u32 = 0;
/// Header of a wallet whose offers have their own dates (`[MIXED, coupon, date, …]`).
const MIXED: u32 = 1;

impl Wallet {
    /// Number of offers.
    pub fn len(&self) -> usize {
        match self.0.first() {
            None => 0,
            Some(&UNIFORM) => self.0.len().saturating_sub(2),
            Some(_) => (self.0.len() - 1) / 2,
        }
    }

    /// No offers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offer `i`.
    pub fn get(&self, i: usize) -> Option<HeldOffer> {
        let (coupon, date) = match *self.0.first()? {
            UNIFORM => (*self.0.get(2 + i)?, self.0[1]),
            _ => (*self.0.get(1 + 2 * i)?, *self.0.get(2 + 2 * i)?),
        };
        Some(HeldOffer {
            coupon,
            eligible_until: decode_date(date),
        })
    }

    /// The offers in order.
    pub fn iter(&self) -> impl Iterator<Item = HeldOffer> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

impl Default for Wallet {
    fn default() -> Self {
        Wallet(Arc::from(Vec::new()))
    }
}

impl FromIterator<HeldOffer> for Wallet {
    fn from_iter<I: IntoIterator<Item = HeldOffer>>(iter: I) -> Self {
        let offers: Vec<HeldOffer> = iter.into_iter().collect();
        let Some(first) = offers.first() else {
            return Wallet::default();
        };
        let date = first.eligible_until;
        let words: Vec<u32> = if offers.iter().all(|o| o.eligible_until == date) {
            [UNIFORM, encode_date(date)]
                .into_iter()
                .chain(offers.iter().map(|o| o.coupon))
                .collect()
        } else {
            std::iter::once(MIXED)
                .chain(
                    offers
                        .iter()
                        .flat_map(|o| [o.coupon, encode_date(o.eligible_until)]),
                )
                .collect()
        };
        Wallet(words.into())
    }
}

impl From<Vec<HeldOffer>> for Wallet {
    fn from(offers: Vec<HeldOffer>) -> Self {
        offers.into_iter().collect()
    }
}

/// A date as a word: its days from the common era (`NaiveDate` spans ±262,000 years, well
/// inside `i32`), bit for bit.
fn encode_date(d: NaiveDate) -> u32 {
    d.num_days_from_ce() as u32
}

fn decode_date(w: u32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(w as i32).unwrap_or(NaiveDate::MAX)
}

/// The script-facing wallet: the agent's active offers, with their terms from the catalog.
#[derive(Debug, Clone)]
pub struct WalletView {
    /// The offers (the host's shared slice).
    pub offers: Wallet,
    /// The catalog the offers' coupons are in.
    pub catalog: CatalogView,
    /// The date of the decision.
    pub today: NaiveDate,
}

impl WalletView {
    fn terms(&self) -> impl Iterator<Item = &CouponTerms> {
        self.offers
            .iter()
            .filter_map(|o| self.catalog.0.coupon(o.coupon))
    }

    fn map(&self, i: usize) -> Option<Map> {
        let held = self.offers.get(i)?;
        Some(self.catalog.0.offer(held)?.to_map(i, self.today))
    }
}

/// One cart line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartLine {
    /// Product index.
    pub product: u32,
    /// Quantity.
    pub qty: u32,
}

/// The cart a stage sees: lines, totals, eligible and applied offers.
#[derive(Debug, Clone, Default)]
pub struct CartState {
    /// Lines in the order they were added.
    pub lines: Vec<CartLine>,
    /// Sum of line totals.
    pub subtotal: Money,
    /// Discounts of the applied offers.
    pub discount: Money,
    /// Offers that would apply to this cart now.
    pub eligible: Vec<Offer>,
    /// Offers applied.
    pub applied: Vec<Offer>,
}

impl CartState {
    /// The script-facing map.
    pub fn to_map(&self, catalog: &CatalogIndex, today: NaiveDate) -> Map {
        let mut m = Map::new();
        let mut units: INT = 0;
        let items: Array = self
            .lines
            .iter()
            .map(|l| {
                units += l.qty as INT;
                let price = catalog
                    .product(l.product as usize)
                    .map_or(Money::ZERO, |p| p.price);
                let mut it = Map::new();
                it.insert("product".into(), Dynamic::from_int(l.product as INT));
                it.insert("qty".into(), Dynamic::from_int(l.qty as INT));
                it.insert("price".into(), Dynamic::from_float(price.to_f64()));
                it.insert(
                    "line".into(),
                    Dynamic::from_float((price * i64::from(l.qty)).to_f64()),
                );
                Dynamic::from_map(it)
            })
            .collect();
        m.insert("lines".into(), Dynamic::from_int(items.len() as INT));
        m.insert("items".into(), Dynamic::from_array(items));
        m.insert("units".into(), Dynamic::from_int(units));
        m.insert(
            "subtotal".into(),
            Dynamic::from_float(self.subtotal.to_f64()),
        );
        m.insert(
            "discount".into(),
            Dynamic::from_float(self.discount.to_f64()),
        );
        let total = if self.subtotal > self.discount {
            self.subtotal - self.discount
        } else {
            Money::ZERO
        };
        m.insert("total".into(), Dynamic::from_float(total.to_f64()));
        let offers = |v: &[Offer]| -> Array {
            v.iter()
                .enumerate()
                .map(|(i, o)| Dynamic::from_map(o.to_map(i, today)))
                .collect()
        };
        m.insert(
            "eligible".into(),
            Dynamic::from_array(offers(&self.eligible)),
        );
        m.insert("applied".into(), Dynamic::from_array(offers(&self.applied)));
        m
    }
}

/// Registers `Catalog`, `History` and `Wallet` (documented in `behaviors/README.md`).
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<CatalogView>("Catalog")
        .register_get("categories", |c: &mut CatalogView| c.0.categories.clone())
        .register_get("product_count", |c: &mut CatalogView| {
            c.0.products.len() as INT
        })
        .register_get("store_count", |c: &mut CatalogView| c.0.stores.len() as INT)
        .register_fn("products", |c: &mut CatalogView, cat: &str| {
            c.0.by_category.get(cat).cloned().unwrap_or_default()
        })
        .register_fn("count", |c: &mut CatalogView, cat: &str| {
            c.0.by_category.get(cat).map_or(0, |v| v.len() as INT)
        })
        .register_fn("product", |c: &mut CatalogView, cat: &str, k: INT| {
            let list = c.0.by_category.get(cat).ok_or_else(|| {
                rt_err(format!(
                    "catalog.product(\"{cat}\", {k}): no category `{cat}`"
                ))
            })?;
            usize::try_from(k)
                .ok()
                .and_then(|k| list.get(k))
                .cloned()
                .ok_or_else(|| {
                    rt_err(format!(
                        "catalog.product(\"{cat}\", {k}): `{cat}` has {} products",
                        list.len()
                    ))
                })
        })
        .register_fn("brands", |c: &mut CatalogView, cat: &str| {
            c.0.brands_by_category.get(cat).cloned().unwrap_or_default()
        })
        .register_fn("price", |c: &mut CatalogView, i: INT| {
            c.0.idx("price", i).map(|p| p.price.to_f64())
        })
        .register_fn("name", |c: &mut CatalogView, i: INT| {
            c.0.idx("name", i).map(|p| p.name.clone())
        })
        .register_fn("category", |c: &mut CatalogView, i: INT| {
            c.0.idx("category", i).map(|p| p.category.clone())
        })
        .register_fn("brand", |c: &mut CatalogView, i: INT| {
            c.0.idx("brand", i).map(|p| p.brand.clone())
        })
        .register_fn("rating", |c: &mut CatalogView, i: INT| {
            c.0.idx("rating", i).map(|p| p.rating)
        })
        .register_fn("reviews", |c: &mut CatalogView, i: INT| {
            c.0.idx("reviews", i).map(|p| p.reviews as INT)
        });

    engine
        .register_type_with_name::<HistoryView>("History")
        .register_get("orders", |h: &mut HistoryView| h.history.orders as INT)
        .register_get("sessions", |h: &mut HistoryView| h.history.sessions as INT)
        .register_get("days_since_last_order", |h: &mut HistoryView| {
            days_since(h.history.last_order, h.today)
        })
        .register_get("days_since_last_session", |h: &mut HistoryView| {
            days_since(h.history.last_session, h.today)
        })
        .register_get(
            "last_order_date",
            |h: &mut HistoryView| -> ImmutableString {
                h.history
                    .last_order
                    .map_or(String::new(), |d| d.format("%Y-%m-%d").to_string())
                    .into()
            },
        )
        .register_get("spend_week", |h: &mut HistoryView| {
            h.history.spend_week(h.today).to_f64()
        })
        .register_get("spend_month", |h: &mut HistoryView| {
            h.history.spend_month(h.today).to_f64()
        })
        .register_get("recent_baskets", |h: &mut HistoryView| -> Array {
            h.history
                .recent
                .iter()
                .map(|b| Dynamic::from_array(basket_array(b)))
                .collect()
        })
        .register_get("last_basket", |h: &mut HistoryView| -> Array {
            h.history
                .recent
                .iter()
                .next()
                .map_or_else(Array::new, basket_array)
        });

    engine
        .register_type_with_name::<WalletView>("Wallet")
        .register_get("len", |w: &mut WalletView| w.offers.len() as INT)
        .register_fn("get", |w: &mut WalletView, i: INT| {
            usize::try_from(i)
                .ok()
                .and_then(|u| w.map(u))
                .ok_or_else(|| {
                    rt_err(format!(
                        "wallet.get({i}): the wallet has {} offers",
                        w.offers.len()
                    ))
                })
        })
        .register_fn("all", |w: &mut WalletView| -> Array {
            (0..w.offers.len())
                .filter_map(|i| w.map(i).map(Dynamic::from_map))
                .collect()
        })
        .register_fn("count_for", |w: &mut WalletView, target: &str| {
            w.terms()
                .filter(|c| c.target.eq_ignore_ascii_case(target))
                .count() as INT
        })
        .register_fn("has_frontstore", |w: &mut WalletView| {
            w.terms().any(|c| c.kind == CouponKind::Frontstore)
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wallet gives back every offer it was made from, in order, whatever their dates.
    #[test]
    fn wallets_keep_every_offer_and_share_a_common_date() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let held = |coupon, eligible_until| HeldOffer {
            coupon,
            eligible_until,
        };
        let empty = Wallet::default();
        assert_eq!(
            (empty.len(), empty.get(0), empty.iter().count()),
            (0, None, 0)
        );
        assert_eq!(Wallet::from(Vec::new()), empty);

        // A refresh's offers share their date: stored once.
        let same: Vec<HeldOffer> = (0..32).map(|c| held(c * 7, d(2024, 3, 15))).collect();
        let w = Wallet::from(same.clone());
        assert_eq!(w.0.len(), 2 + 32, "header, date, one word per coupon");
        assert_eq!(w.len(), 32);
        assert_eq!(w.iter().collect::<Vec<_>>(), same);
        assert_eq!(w.get(31), Some(same[31]));
        assert_eq!(w.get(32), None);

        // Different dates (and the extremes of the calendar) come back as they went in.
        let mixed = vec![
            held(3, d(2024, 3, 15)),
            held(u32::MAX, NaiveDate::MAX),
            held(0, NaiveDate::MIN),
            held(9, d(1999, 12, 31)),
        ];
        let w: Wallet = mixed.iter().copied().collect();
        assert_eq!(w.len(), 4);
        assert_eq!(w.iter().collect::<Vec<_>>(), mixed);
        assert_eq!(w.get(1), Some(mixed[1]));
        assert_eq!(w.get(4), None);
        let one = Wallet::from(vec![held(5, NaiveDate::MIN)]);
        assert_eq!(
            one.iter().collect::<Vec<_>>(),
            vec![held(5, NaiveDate::MIN)]
        );
    }

    /// The script's wallet reads each held offer's terms from the catalog.
    #[test]
    fn wallet_offers_carry_their_coupons_terms() {
        let catalog = crate::catalog::generate::generate(1);
        let view = CatalogView(Arc::new(CatalogIndex::new(&catalog)));
        let today = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let until = NaiveDate::from_ymd_opt(2024, 1, 15).unwrap();
        let front = catalog
            .coupons
            .iter()
            .position(|c| c.kind == CouponKind::Frontstore)
            .unwrap();
        let targeted = catalog
            .coupons
            .iter()
            .position(|c| c.kind != CouponKind::Frontstore)
            .unwrap();
        let target = catalog.coupons[targeted].category_or_brand.clone().unwrap();
        let held = |i: usize| HeldOffer {
            coupon: i as u32,
            eligible_until: until,
        };
        let wallet = |offers: Vec<HeldOffer>| WalletView {
            offers: offers.into(),
            catalog: view.clone(),
            today,
        };
        let mut engine = Engine::new();
        register(&mut engine);
        let eval = |w: WalletView, script: &str| -> Dynamic {
            let mut scope = rhai::Scope::new();
            scope.push("wallet", w);
            scope.push("target", target.to_uppercase());
            engine
                .eval_with_scope::<Dynamic>(&mut scope, script)
                .unwrap()
        };
        let both = || wallet(vec![held(targeted), held(front)]);
        assert_eq!(eval(both(), "wallet.len").as_int().unwrap(), 2);
        let first = eval(both(), "wallet.get(0)").cast::<Map>();
        let c = &catalog.coupons[targeted];
        assert_eq!(first["target"].clone().into_string().unwrap(), target);
        assert_eq!(
            first["kind"].clone().into_string().unwrap(),
            c.kind.as_str()
        );
        assert_eq!(
            first["value"].as_float().unwrap(),
            c.discount_value.to_f64()
        );
        assert_eq!(first["days_left"].as_int().unwrap(), 14);
        assert_eq!(first["index"].as_int().unwrap(), 0);
        let all = eval(both(), "wallet.all()").cast::<Array>();
        assert_eq!(all.len(), 2);
        let second = all[1].clone().cast::<Map>();
        assert_eq!(second["index"].as_int().unwrap(), 1);
        assert_eq!(second["kind"].clone().into_string().unwrap(), "frontstore");
        assert_eq!(
            eval(both(), "wallet.count_for(target)").as_int().unwrap(),
            1
        );
        assert!(eval(both(), "wallet.has_frontstore()").as_bool().unwrap());
        assert!(
            !eval(wallet(vec![held(targeted)]), "wallet.has_frontstore()")
                .as_bool()
                .unwrap()
        );
        let mut scope = rhai::Scope::new();
        scope.push("wallet", both());
        let err = engine
            .eval_with_scope::<Dynamic>(&mut scope, "wallet.get(2)")
            .unwrap_err();
        assert!(err.to_string().contains("the wallet has 2 offers"), "{err}");
    }

    #[test]
    fn recent_baskets_keep_the_last_few_most_recent_first() {
        let mut r = RecentBaskets::default();
        assert_eq!(r.iter().count(), 0);
        for (i, b) in [&[1u32, 2][..], &[], &[3, 4, 5], &[6], &[7, 8]]
            .iter()
            .enumerate()
        {
            r.push(b, 4);
            assert_eq!(r.iter().next(), Some(*b), "after push {i}");
        }
        let kept: Vec<&[u32]> = r.iter().collect();
        assert_eq!(kept, [&[7, 8][..], &[6], &[3, 4, 5], &[]]);
        assert_eq!(r.0.len(), 4 + 6);
    }

    #[test]
    fn history_windows_follow_the_calendar() {
        let d = |m, dd| NaiveDate::from_ymd_opt(2024, m, dd).unwrap();
        let mut h = History::default();
        h.record_order(d(1, 29), &[1, 2], Money::cents(1000));
        h.record_order(d(1, 31), &[3], Money::cents(500));
        assert_eq!(h.spend_week(d(1, 31)), Money::cents(1500));
        assert_eq!(h.spend_month(d(1, 31)), Money::cents(1500));
        // 2024-02-01 is in the same ISO week, a new month.
        assert_eq!(h.spend_week(d(2, 1)), Money::cents(1500));
        assert_eq!(h.spend_month(d(2, 1)), Money::ZERO);
        assert_eq!(h.spend_week(d(2, 5)), Money::ZERO);
        assert_eq!(h.recent.iter().collect::<Vec<_>>(), [&[3][..], &[1, 2]]);
        assert_eq!(days_since(h.last_order, d(2, 3)), 3);
    }
}
