//! The catalog as plain values: what `seed` writes, what the reference server sells and what
//! the behaviour scripts see (read-only).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Money;

/// A store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Store {
    /// Stable id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
}

/// A product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Stable id.
    pub id: Uuid,
    /// Natural key (product code), unique.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Unit price.
    pub price: Money,
    /// Average rating 1–5.
    pub rating: f64,
    /// Number of reviews.
    pub review_count: i64,
    /// Category, from the shared vocabulary.
    pub category: String,
    /// Brand.
    pub brand: String,
    /// Listed as in stock.
    pub in_stock: bool,
}

/// Which part of a basket a coupon discounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CouponKind {
    /// The whole order.
    Frontstore,
    /// Lines of one category.
    Category,
    /// Lines of one brand.
    Brand,
}

impl CouponKind {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CouponKind::Frontstore => "frontstore",
            CouponKind::Category => "category",
            CouponKind::Brand => "brand",
        }
    }

    /// Parses the contract's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "frontstore" => Some(CouponKind::Frontstore),
            "category" => Some(CouponKind::Category),
            "brand" => Some(CouponKind::Brand),
            _ => None,
        }
    }
}

/// How a coupon's discount is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscountType {
    /// `value` percent of the amount, capped at `max_discount`.
    Percent,
    /// `value` off, at most the amount.
    Fixed,
    /// Buy one get one: `(amount / 2) × value / 100`.
    Bogo,
    /// Free shipping: no discount on goods.
    FreeShipping,
}

impl DiscountType {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscountType::Percent => "percent",
            DiscountType::Fixed => "fixed",
            DiscountType::Bogo => "bogo",
            DiscountType::FreeShipping => "free_shipping",
        }
    }

    /// Parses the contract's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "percent" => Some(DiscountType::Percent),
            "fixed" => Some(DiscountType::Fixed),
            "bogo" => Some(DiscountType::Bogo),
            "free_shipping" => Some(DiscountType::FreeShipping),
            _ => None,
        }
    }
}

/// A coupon (an "offer" once it is in a user's wallet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coupon {
    /// Stable id.
    pub id: Uuid,
    /// Natural key (coupon code), unique.
    pub code: String,
    /// What it discounts.
    #[serde(rename = "type")]
    pub kind: CouponKind,
    /// Human description ("20% off Vitamins & Supplements").
    pub discount_details: String,
    /// The category or brand it targets (`None` for frontstore coupons).
    pub category_or_brand: Option<String>,
    /// How the discount is computed.
    pub discount_type: DiscountType,
    /// Percent (e.g. 20.00) or amount, depending on `discount_type`.
    pub discount_value: Money,
    /// Minimum amount the coupon applies to.
    pub min_purchase_amount: Option<Money>,
    /// Cap on a percent discount.
    pub max_discount: Option<Money>,
    /// Expiry on the simulated calendar.
    pub expiration_date: Option<DateTime<Utc>>,
    /// Can be assigned and used.
    pub is_active: bool,
}

/// Stock of one product in one store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryRow {
    /// The store.
    pub store_id: Uuid,
    /// The product.
    pub product_id: Uuid,
    /// Units available.
    pub quantity: i64,
}

/// A whole catalog: stores, products, coupons and inventory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Stores.
    pub stores: Vec<Store>,
    /// Products.
    pub products: Vec<Product>,
    /// Coupons.
    pub coupons: Vec<Coupon>,
    /// Inventory per (store, product).
    pub inventory: Vec<InventoryRow>,
}
