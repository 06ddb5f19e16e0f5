//! The deterministic catalog generator: stores, products, inventory and coupons from a seed.
//!
//! Pure and fast (no database): the same seed gives the identical catalog — ids, values and
//! order — and a different seed a different one. Every entity draws from its own named random
//! stream (`ids::rng(seed, ["product", index])` …), so changing one count does not reshuffle
//! the other entities. Ids are `ids::stable_uuid(seed, kind, natural_key)`.
//!
//! The result is in *canonical order* (stores by name, products by SKU, coupons by code,
//! inventory by store id then product id), which is also the order
//! [`load_catalog`](super::load::load_catalog) reads a catalog back in.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use rand::RngExt;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;

use super::model::{Catalog, Coupon, CouponKind, DiscountType, InventoryRow, Product, Store};
use super::vocabulary::{self, CategoryInfo, Department};
use crate::ids;
use crate::money::Money;

/// How big a generated catalog is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CatalogSpec {
    /// Number of stores.
    pub stores: usize,
    /// Number of products (ignored when products come from a CSV file).
    pub products: usize,
    /// Number of coupons.
    pub coupons: usize,
    /// Smallest initial stock of a product in a store.
    pub inventory_min: i64,
    /// Largest initial stock of a product in a store.
    pub inventory_max: i64,
    /// Expiry of every coupon, on the simulated calendar (far away: offers must outlive any run).
    pub coupon_expiration: DateTime<Utc>,
}

impl Default for CatalogSpec {
    /// 10 stores, 360 products, 300 coupons, 200–600 units of stock per (store, product) —
    /// enough that stock does not bind for several hundred agents shopping daily between
    /// restocks — and coupons expiring on 2100-01-01.
    fn default() -> Self {
        Self {
            stores: 10,
            products: 360,
            coupons: 300,
            inventory_min: 200,
            inventory_max: 600,
            coupon_expiration: Utc
                .with_ymd_and_hms(2100, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

/// A [`CatalogSpec`] that cannot produce a usable catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A catalog needs at least one store.
    #[error("a catalog needs at least one store (got 0); set the store count to 1 or more")]
    NoStores,
    /// A catalog needs at least one product.
    #[error("a catalog needs at least one product (got 0); set the product count or give a CSV file with rows")]
    NoProducts,
    /// The stock range is empty or negative.
    #[error("inventory range {min}..={max} is not valid: need 0 <= min <= max")]
    InventoryRange {
        /// Smallest stock asked for.
        min: i64,
        /// Largest stock asked for.
        max: i64,
    },
}

impl CatalogSpec {
    /// Checks that the spec can produce a catalog.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.stores == 0 {
            return Err(SpecError::NoStores);
        }
        if self.inventory_min < 0 || self.inventory_min > self.inventory_max {
            return Err(SpecError::InventoryRange {
                min: self.inventory_min,
                max: self.inventory_max,
            });
        }
        Ok(())
    }
}

/// The default catalog for `seed` ([`CatalogSpec::default`]).
pub fn generate(seed: u64) -> Catalog {
    // The default spec is valid (checked by a unit test), so this never falls back; if it ever
    // did, an empty catalog is returned rather than a panic.
    generate_with(seed, &CatalogSpec::default()).unwrap_or_default()
}

/// A catalog of the size `spec` asks for.
pub fn generate_with(seed: u64, spec: &CatalogSpec) -> Result<Catalog, SpecError> {
    if spec.products == 0 {
        return Err(SpecError::NoProducts);
    }
    spec.validate()?;
    catalog_around(seed, spec, generate_products(seed, spec.products))
}

/// Stores, inventory and coupons generated from `seed` around given products (from a CSV file
/// or [`generate_products`]). Category and brand coupons target the products' own categories
/// and brands. Products are put in canonical order (by SKU).
pub fn catalog_around(
    seed: u64,
    spec: &CatalogSpec,
    mut products: Vec<Product>,
) -> Result<Catalog, SpecError> {
    spec.validate()?;
    if products.is_empty() {
        return Err(SpecError::NoProducts);
    }
    products.sort_by(|a, b| a.sku.cmp(&b.sku));
    let stores = generate_stores(seed, spec.stores);
    let inventory = generate_inventory(seed, spec, &stores, &products);
    let coupons = generate_coupons(seed, spec, &products);
    Ok(Catalog {
        stores,
        products,
        coupons,
        inventory,
    })
}

/// Store names, in the style of neighbourhood branches.
const STORE_NAMES: &[&str] = &[
    "Downtown",
    "Riverside",
    "Hillcrest",
    "Lakeside",
    "Midtown",
    "Oak Park",
    "Westgate",
    "Northfield",
    "Harbor View",
    "Maple Grove",
    "Eastside",
    "Cedar Hills",
    "Southpoint",
    "Pine Ridge",
    "University District",
    "Old Town",
    "Brookside",
    "Fairview",
    "Sunset Plaza",
    "Willow Creek",
    "Union Square",
    "Greenwood",
    "Bayshore",
    "Meadowlands",
];

/// `count` stores with names drawn from the seed, sorted by name. Beyond the name list, names
/// repeat with a branch number ("Downtown 2").
pub fn generate_stores(seed: u64, count: usize) -> Vec<Store> {
    let mut names: Vec<&str> = STORE_NAMES.to_vec();
    names.shuffle(&mut ids::rng(seed, &["stores".into()]));
    let mut stores: Vec<Store> = (0..count)
        .map(|i| {
            let base = names[i % names.len()];
            let round = i / names.len();
            let name = if round == 0 {
                base.to_string()
            } else {
                format!("{base} {}", round + 1)
            };
            Store {
                id: ids::stable_uuid(seed, "store", &name),
                name,
            }
        })
        .collect();
    stores.sort_by(|a, b| a.name.cmp(&b.name));
    stores
}

/// The SKU of the `n`-th generated product (1-based): `SKU-00001`.
pub fn sku(n: usize) -> String {
    format!("SKU-{n:05}")
}

/// The code of the `n`-th generated coupon (1-based): `CPN-0001`.
pub fn coupon_code(n: usize) -> String {
    format!("CPN-{n:04}")
}

/// `count` products spread evenly over every category of the vocabulary, in SKU order.
pub fn generate_products(seed: u64, count: usize) -> Vec<Product> {
    let cats = vocabulary::categories();
    let mut names: HashSet<String> = HashSet::with_capacity(count);
    (0..count)
        .map(|i| {
            let cat = &cats[i % cats.len()];
            let mut rng = ids::rng(seed, &["product".into(), (i as u64).into()]);
            let (brand, noun, size) = unique_name_parts(&mut rng, cat, &mut names);
            let sku = sku(i + 1);
            let name = format!("{brand} {noun} {size}");
            let price = draw_price(&mut rng, cat);
            let rating = draw_rating(&mut rng);
            let review_count = draw_review_count(&mut rng);
            let description = describe(cat, brand, noun, size);
            names.insert(name.clone());
            Product {
                id: ids::stable_uuid(seed, "product", &sku),
                sku,
                name,
                description,
                price,
                rating,
                review_count,
                category: cat.name.to_string(),
                brand: brand.to_string(),
                in_stock: true,
            }
        })
        .collect()
}

/// Brand, noun and size giving a name not used yet (a few redraws; after that a repeated name
/// is accepted, which only happens when a category has fewer combinations than products).
fn unique_name_parts(
    rng: &mut ChaCha8Rng,
    cat: &'static CategoryInfo,
    used: &mut HashSet<String>,
) -> (&'static str, &'static str, &'static str) {
    let pick = |rng: &mut ChaCha8Rng| {
        (
            *cat.brands.choose(rng).unwrap_or(&vocabulary::STORE_BRAND_GROCERY),
            *cat.nouns.choose(rng).unwrap_or(&"Item"),
            *cat.sizes.choose(rng).unwrap_or(&"1 ct"),
        )
    };
    let mut parts = pick(rng);
    for _ in 0..16 {
        if !used.contains(&format!("{} {} {}", parts.0, parts.1, parts.2)) {
            break;
        }
        parts = pick(rng);
    }
    parts
}

/// A shelf price inside the category's range: log-scale with a peak in the middle (the sum of
/// two uniforms), ending in a "charm" price such as .99 or .49.
fn draw_price(rng: &mut ChaCha8Rng, cat: &CategoryInfo) -> Money {
    let lo = cat.price_min.as_cents() as f64;
    let hi = cat.price_max.as_cents() as f64;
    let u = (rng.random::<f64>() + rng.random::<f64>()) / 2.0;
    let raw = (lo.ln() + u * (hi.ln() - lo.ln())).exp();
    let ending = *[99i64, 49, 29, 79, 19, 69].choose(rng).unwrap_or(&99);
    let cents = (raw / 100.0).floor() as i64 * 100 + ending;
    Money::cents(cents.clamp(cat.price_min.as_cents(), cat.price_max.as_cents()))
}

/// A rating in 2.5–5.0 with one decimal, skewed towards good ratings as on real shops.
fn draw_rating(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random();
    let r = 2.5 + 2.5 * (1.0 - u * u);
    ((r * 10.0).round() / 10.0).clamp(2.5, 5.0)
}

/// A review count from 0 to a few thousand, heavily skewed (most products have few reviews).
fn draw_review_count(rng: &mut ChaCha8Rng) -> i64 {
    let u: f64 = rng.random();
    (10f64.powf(3.6 * u.powf(1.5)) - 1.0).round().max(0.0) as i64
}

fn describe(cat: &CategoryInfo, brand: &str, noun: &str, size: &str) -> String {
    let aisle = match cat.department {
        Department::Pharmacy => "health & wellness",
        Department::Grocery => "grocery",
    };
    let who = if vocabulary::is_store_brand(brand) {
        "our own store brand"
    } else {
        brand
    };
    format!(
        "{noun} ({size}) from {who}. Found in the {} aisle of our {aisle} department.",
        cat.name
    )
}

/// Stock for every (store, product), uniform in `spec.inventory_min..=spec.inventory_max`.
fn generate_inventory(
    seed: u64,
    spec: &CatalogSpec,
    stores: &[Store],
    products: &[Product],
) -> Vec<InventoryRow> {
    let span = (spec.inventory_max - spec.inventory_min) as u64 + 1;
    let mut rows: Vec<InventoryRow> = Vec::with_capacity(stores.len() * products.len());
    for s in stores {
        for p in products {
            let h = ids::hash64(
                seed,
                &["inventory".into(), (&s.name).into(), (&p.sku).into()],
            );
            rows.push(InventoryRow {
                store_id: s.id,
                product_id: p.id,
                quantity: spec.inventory_min + (h % span) as i64,
            });
        }
    }
    rows.sort_by(|a, b| (a.store_id, a.product_id).cmp(&(b.store_id, b.product_id)));
    rows
}

/// The first coupons cover every kind × discount type, so even a small catalog exercises all
/// pricing rules.
const EVERY_COMBINATION: [(CouponKind, DiscountType); 12] = [
    (CouponKind::Frontstore, DiscountType::Percent),
    (CouponKind::Category, DiscountType::Percent),
    (CouponKind::Brand, DiscountType::Percent),
    (CouponKind::Frontstore, DiscountType::Fixed),
    (CouponKind::Category, DiscountType::Fixed),
    (CouponKind::Brand, DiscountType::Fixed),
    (CouponKind::Frontstore, DiscountType::Bogo),
    (CouponKind::Category, DiscountType::Bogo),
    (CouponKind::Brand, DiscountType::Bogo),
    (CouponKind::Frontstore, DiscountType::FreeShipping),
    (CouponKind::Category, DiscountType::FreeShipping),
    (CouponKind::Brand, DiscountType::FreeShipping),
];

/// Coupons: a fifth frontstore, the rest split between category and brand coupons, which
/// target the products' categories and brands in turn (so every category and brand gets
/// offers).
fn generate_coupons(seed: u64, spec: &CatalogSpec, products: &[Product]) -> Vec<Coupon> {
    let categories: Vec<&str> = products
        .iter()
        .map(|p| p.category.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut brands: Vec<&str> = products
        .iter()
        .map(|p| p.brand.as_str())
        .filter(|b| !b.trim().is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    brands.shuffle(&mut ids::rng(seed, &["coupon-brands".into()]));
    let mut offset_rng = ids::rng(seed, &["coupon-targets".into()]);
    let cat_offset = offset_rng.random_range(0..categories.len().max(1));
    let (mut n_cat, mut n_brand) = (0usize, 0usize);
    (0..spec.coupons)
        .map(|i| {
            let code = coupon_code(i + 1);
            let mut rng = ids::rng(seed, &["coupon".into(), (&code).into()]);
            let (mut kind, dtype) = match EVERY_COMBINATION.get(i) {
                Some(&combo) => combo,
                None => {
                    let kind = match i % 5 {
                        0 => CouponKind::Frontstore,
                        1 | 2 => CouponKind::Category,
                        _ => CouponKind::Brand,
                    };
                    (kind, draw_discount_type(&mut rng, kind))
                }
            };
            // Without brands (a CSV could in principle have none), target categories instead.
            if kind == CouponKind::Brand && brands.is_empty() {
                kind = CouponKind::Category;
            }
            let target = match kind {
                CouponKind::Frontstore => None,
                CouponKind::Category => {
                    let t = categories[(cat_offset + n_cat) % categories.len()];
                    n_cat += 1;
                    Some(t.to_string())
                }
                CouponKind::Brand => {
                    let t = brands[n_brand % brands.len()];
                    n_brand += 1;
                    Some(t.to_string())
                }
            };
            let terms = draw_terms(&mut rng, kind, dtype);
            let discount_details = details(kind, target.as_deref(), dtype, &terms);
            Coupon {
                id: ids::stable_uuid(seed, "coupon", &code),
                code,
                kind,
                discount_details,
                category_or_brand: target,
                discount_type: dtype,
                discount_value: terms.value,
                min_purchase_amount: terms.min_purchase,
                max_discount: terms.max_discount,
                expiration_date: Some(spec.coupon_expiration),
                is_active: true,
            }
        })
        .collect()
}

fn draw_discount_type(rng: &mut ChaCha8Rng, kind: CouponKind) -> DiscountType {
    // Weights out of 100. Buy-one-get-one is a line offer; free shipping is a frontstore perk.
    let table: &[(DiscountType, u32)] = match kind {
        CouponKind::Frontstore => &[
            (DiscountType::Percent, 45),
            (DiscountType::Fixed, 40),
            (DiscountType::FreeShipping, 15),
        ],
        CouponKind::Category | CouponKind::Brand => &[
            (DiscountType::Percent, 40),
            (DiscountType::Fixed, 30),
            (DiscountType::Bogo, 25),
            (DiscountType::FreeShipping, 5),
        ],
    };
    let mut roll = rng.random_range(0..100u32);
    for &(t, w) in table {
        if roll < w {
            return t;
        }
        roll -= w;
    }
    DiscountType::Percent
}

/// The amounts of a coupon.
struct Terms {
    value: Money,
    min_purchase: Option<Money>,
    max_discount: Option<Money>,
}

fn dollars(d: i64) -> Money {
    Money::cents(d * 100)
}

fn pick(rng: &mut ChaCha8Rng, cents: &[i64]) -> Money {
    Money::cents(*cents.choose(rng).unwrap_or(&0))
}

/// Values, minimum purchases and caps that make commercial sense: percent 5–40% always capped;
/// a fixed amount never exceeds its minimum purchase; BOGO 50–100%; free shipping needs a
/// basket worth shipping.
fn draw_terms(rng: &mut ChaCha8Rng, kind: CouponKind, dtype: DiscountType) -> Terms {
    let front = kind == CouponKind::Frontstore;
    match dtype {
        DiscountType::Percent => {
            let pct = 5 * rng.random_range(1..=8i64);
            let (cap, min) = if front {
                (
                    pick(rng, &[500, 1000, 1500, 2000, 2500]),
                    Some(pick(rng, &[1500, 2000, 2500, 3000, 4000, 5000])),
                )
            } else {
                let cap = pick(rng, &[300, 500, 750, 1000, 1500]);
                let min = rng
                    .random_bool(0.5)
                    .then(|| pick(rng, &[500, 1000, 1500]));
                (cap, min)
            };
            Terms {
                value: dollars(pct),
                min_purchase: min,
                max_discount: Some(cap),
            }
        }
        DiscountType::Fixed => {
            let value = if front {
                pick(rng, &[200, 300, 500, 750, 1000])
            } else {
                pick(rng, &[100, 150, 200, 300, 400, 500])
            };
            // At least three (frontstore) or two (line) times the value, in whole dollars.
            let factor = if front {
                rng.random_range(3..=6i64)
            } else {
                rng.random_range(2..=4i64)
            };
            let min_cents = (value.as_cents() * factor).div_euclid(100).max(1) * 100;
            Terms {
                value,
                min_purchase: Some(Money::cents(min_cents.max(if front { 1500 } else { 0 }))),
                max_discount: None,
            }
        }
        DiscountType::Bogo => Terms {
            value: pick(rng, &[5000, 7500, 10000]),
            min_purchase: None,
            max_discount: None,
        },
        DiscountType::FreeShipping => Terms {
            value: Money::ZERO,
            min_purchase: Some(pick(rng, &[2500, 3500, 4900])),
            max_discount: None,
        },
    }
}

/// The customer-facing text of a coupon ("20% off Vitamins & Supplements (up to $10.00)").
fn details(kind: CouponKind, target: Option<&str>, dtype: DiscountType, t: &Terms) -> String {
    let on = match (kind, target) {
        (CouponKind::Category, Some(c)) => c.to_string(),
        (CouponKind::Brand, Some(b)) => format!("{b} products"),
        _ => "your purchase".to_string(),
    };
    let min = t
        .min_purchase
        .filter(|m| m.as_cents() > 0)
        .map(|m| format!(" of ${m} or more"))
        .unwrap_or_default();
    let pct = t.value.as_cents() / 100;
    match dtype {
        DiscountType::Percent => {
            let cap = t
                .max_discount
                .map(|c| format!(" (up to ${c})"))
                .unwrap_or_default();
            format!("{pct}% off {on}{min}{cap}")
        }
        DiscountType::Fixed => format!("${} off {on}{min}", t.value),
        DiscountType::Bogo if pct >= 100 => format!("Buy one, get one free on {on}"),
        DiscountType::Bogo => format!("Buy one, get one {pct}% off on {on}"),
        DiscountType::FreeShipping => match (kind, target) {
            (CouponKind::Frontstore, _) | (_, None) => {
                format!("Free shipping on orders{min}")
            }
            (_, Some(_)) => format!("Free shipping on {on}{min}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn default_spec_is_valid() {
        assert!(CatalogSpec::default().validate().is_ok());
    }

    #[test]
    fn same_seed_same_catalog_different_seed_different() {
        let a = generate(42);
        let b = generate(42);
        assert_eq!(a, b);
        let c = generate(43);
        assert_ne!(a.products, c.products);
        assert_ne!(a.stores[0].id, c.stores[0].id);
        assert_ne!(a.coupons, c.coupons);
    }

    #[test]
    fn meets_size_thresholds() {
        let c = generate(7);
        assert!(c.stores.len() >= 10);
        assert!(c.products.len() >= 300);
        assert!(c.coupons.len() >= 250);
        assert_eq!(c.inventory.len(), c.stores.len() * c.products.len());
        let cats: HashSet<&str> = c.products.iter().map(|p| p.category.as_str()).collect();
        assert!(cats.len() >= 15, "{} categories", cats.len());
        assert_eq!(cats.len(), vocabulary::categories().len());
        let brands: HashSet<&str> = c.products.iter().map(|p| p.brand.as_str()).collect();
        assert!(brands.len() >= 40, "{} brands", brands.len());
        let combos: HashSet<(CouponKind, DiscountType)> = c
            .coupons
            .iter()
            .map(|k| (k.kind, k.discount_type))
            .collect();
        assert_eq!(combos.len(), 12, "every kind x discount type: {combos:?}");
        // The offer engine draws 2 frontstore and 30 targeted offers per weekly refresh and
        // excludes four weeks of history: there must be plenty of each.
        let front = c
            .coupons
            .iter()
            .filter(|k| k.kind == CouponKind::Frontstore)
            .count();
        assert!(front >= 20, "{front} frontstore coupons");
        assert!(c.coupons.len() - front >= 150);
    }

    #[test]
    fn values_are_sane_and_unique() {
        let c = generate(99);
        let ids: HashSet<_> = c.products.iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), c.products.len());
        let names: HashSet<_> = c.products.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), c.products.len(), "product names are unique");
        let store_names: HashSet<_> = c.stores.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(store_names.len(), c.stores.len());
        assert_eq!(c.products[0].sku, "SKU-00001");
        assert_eq!(c.coupons[0].code, "CPN-0001");
        for p in &c.products {
            let cat = vocabulary::category(&p.category).expect("category in vocabulary");
            assert!(
                p.price >= cat.price_min && p.price <= cat.price_max,
                "{} {} outside {}..{}",
                p.name,
                p.price,
                cat.price_min,
                cat.price_max
            );
            assert!(cat.brands.contains(&p.brand.as_str()), "{}", p.name);
            assert!(p.name.starts_with(&p.brand), "{}", p.name);
            assert!((2.5..=5.0).contains(&p.rating), "{}", p.rating);
            assert!(p.review_count >= 0);
        }
        assert!(
            c.products.iter().filter(|p| p.review_count < 100).count() > c.products.len() / 3,
            "review counts are skewed towards few"
        );
        let mut by_brand_cats: HashSet<&str> = HashSet::new();
        for k in &c.coupons {
            assert!(k.is_active);
            assert!(k.expiration_date.is_some_and(|d| d.timestamp() > 4_000_000_000));
            assert!(!k.discount_details.is_empty());
            match k.kind {
                CouponKind::Frontstore => assert!(k.category_or_brand.is_none()),
                CouponKind::Category => {
                    let t = k.category_or_brand.as_deref().unwrap();
                    assert!(vocabulary::is_category(t));
                    by_brand_cats.insert(t);
                }
                CouponKind::Brand => {
                    let t = k.category_or_brand.as_deref().unwrap();
                    assert!(c.products.iter().any(|p| p.brand == t), "{t}");
                }
            }
            match k.discount_type {
                DiscountType::Percent => {
                    let v = k.discount_value.as_cents();
                    assert!((500..=4000).contains(&v), "{v}");
                    let cap = k.max_discount.expect("percent coupons are capped");
                    assert!(cap.as_cents() > 0);
                }
                DiscountType::Fixed => {
                    let v = k.discount_value;
                    assert!(v >= Money::cents(100) && v <= Money::cents(1000), "{v}");
                    assert!(k.min_purchase_amount.expect("fixed has a minimum") >= v * 2);
                }
                DiscountType::Bogo => {
                    let v = k.discount_value.as_cents();
                    assert!((5000..=10000).contains(&v), "{v}");
                }
                DiscountType::FreeShipping => {
                    assert_eq!(k.discount_value, Money::ZERO);
                    assert!(k.min_purchase_amount.is_some());
                }
            }
        }
        assert_eq!(by_brand_cats.len(), vocabulary::categories().len());
        for row in &c.inventory {
            assert!((200..=600).contains(&row.quantity));
        }
    }

    #[test]
    fn output_is_in_canonical_order() {
        let c = generate(5);
        assert!(c.stores.windows(2).all(|w| w[0].name < w[1].name));
        assert!(c.products.windows(2).all(|w| w[0].sku < w[1].sku));
        assert!(c.coupons.windows(2).all(|w| w[0].code < w[1].code));
        assert!(
            c.inventory
                .windows(2)
                .all(|w| (w[0].store_id, w[0].product_id) < (w[1].store_id, w[1].product_id))
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        let spec = CatalogSpec {
            stores: 0,
            ..CatalogSpec::default()
        };
        assert_eq!(generate_with(1, &spec), Err(SpecError::NoStores));
        let spec = CatalogSpec {
            inventory_min: 10,
            inventory_max: 5,
            ..CatalogSpec::default()
        };
        assert!(matches!(
            generate_with(1, &spec),
            Err(SpecError::InventoryRange { .. })
        ));
        let small = CatalogSpec {
            stores: 30,
            products: 5,
            coupons: 3,
            ..CatalogSpec::default()
        };
        let c = generate_with(1, &small).unwrap();
        assert_eq!(c.stores.len(), 30);
        let names: HashSet<_> = c.stores.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 30, "names beyond the list get branch numbers");
    }
}
