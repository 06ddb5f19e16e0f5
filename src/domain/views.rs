//! What domain operations return: plain values that serialise to the VoiceOffers JSON shapes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::{Coupon, Product, Store};
use crate::money::Money;

/// `GET /api/stores`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoresPage {
    /// The stores, by name.
    pub stores: Vec<Store>,
    /// How many.
    pub count: usize,
}

/// `PUT /api/user/store`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelectStoreResult {
    /// Always true.
    pub success: bool,
    /// The selected store.
    pub store: Store,
    /// True when switching store emptied the cart.
    pub cart_cleared: bool,
}

/// Filter of `GET /api/products`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProductFilter {
    /// Category (case-insensitive).
    pub category: Option<String>,
    /// Brand (case-insensitive).
    pub brand: Option<String>,
    /// Page size (1–500).
    pub limit: i64,
    /// Offset.
    pub offset: i64,
}

/// `GET /api/products`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductPage {
    /// One page, ordered by name then id.
    pub products: Vec<Product>,
    /// Matches in total.
    pub total: i64,
    /// Page size used.
    pub limit: i64,
    /// Offset used.
    pub offset: i64,
}

/// Stock of a product in the user's selected store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryView {
    /// Units available (summed over stores when no store is selected).
    pub available: i64,
    /// The store counted, if one is selected.
    pub store_id: Option<Uuid>,
}

/// `GET /api/products/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductDetail {
    /// The product.
    pub product: Product,
    /// Its stock.
    pub inventory: InventoryView,
}

/// One cart line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CartItemView {
    /// Cart line id.
    pub id: Uuid,
    /// Product id.
    pub product_id: Uuid,
    /// Product code.
    pub sku: Option<String>,
    /// Product name.
    pub product_name: String,
    /// Product category.
    pub category: String,
    /// Product brand.
    pub brand: Option<String>,
    /// Unit price.
    pub unit_price: Money,
    /// Units.
    pub quantity: i64,
    /// `unit_price × quantity`.
    pub line_total: Money,
}

/// `GET /api/cart`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CartView {
    /// Lines, in the order they were first added.
    pub items: Vec<CartItemView>,
    /// Coupons applied to the cart.
    pub coupons: Vec<Coupon>,
    /// The selected store.
    pub store: Option<Store>,
    /// Sum of quantities.
    pub item_count: i64,
}

/// `POST /api/cart/items`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddToCartResult {
    /// Always true.
    pub success: bool,
    /// The line after the add.
    pub cart_item: CartItemView,
}

/// `DELETE /api/cart`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClearCartResult {
    /// Always true.
    pub success: bool,
    /// Lines removed.
    pub items_removed: u64,
    /// Coupons removed.
    pub coupons_removed: u64,
}

/// A wallet coupon that cannot be used on the current cart, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IneligibleCoupon {
    /// The coupon.
    #[serde(flatten)]
    pub coupon: Coupon,
    /// Why not (e.g. `no matching items`, `minimum purchase 25.00 not met`).
    pub reason: String,
}

/// `GET /api/coupons/eligible`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EligibleCoupons {
    /// Usable now, with a discount > 0 on this cart.
    pub eligible: Vec<Coupon>,
    /// In the wallet but not usable now.
    pub ineligible: Vec<IneligibleCoupon>,
    /// Cart subtotal.
    pub cart_subtotal: Money,
}

/// The discount one coupon gives one cart line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemDiscount {
    /// The line's product.
    pub product_id: Uuid,
    /// The coupon used.
    pub coupon_id: Uuid,
    /// Discount amount.
    pub amount: Money,
}

/// Pricing of a cart (`GET /api/cart/summary`); checkout uses exactly the same numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartSummary {
    /// Sum of line totals.
    pub subtotal: Money,
    /// Line discounts (at most one per line).
    pub item_discounts: Vec<ItemDiscount>,
    /// The frontstore coupon's discount.
    pub frontstore_discount: Money,
    /// The frontstore coupon used, if any.
    pub frontstore_coupon_id: Option<Uuid>,
    /// Line discounts plus the frontstore discount.
    pub discount_total: Money,
    /// `max(0, subtotal − discount_total)`.
    pub final_total: Money,
}

/// `POST /api/cart/coupons`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyCouponResult {
    /// Always true.
    pub success: bool,
    /// The applied coupon.
    pub coupon: Coupon,
    /// The cart's pricing afterwards.
    pub summary: CartSummary,
}

/// One order line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderItemView {
    /// Product id.
    pub product_id: Uuid,
    /// Product name at the time of the order.
    pub product_name: String,
    /// Unit price at the time of the order.
    pub product_price: Money,
    /// Units.
    pub quantity: i64,
    /// The coupon that discounted this line.
    pub applied_coupon_id: Option<Uuid>,
    /// The line's discount.
    pub discount_amount: Money,
    /// `product_price × quantity − discount_amount`.
    pub line_total: Money,
}

/// Order totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Sum of line totals before discounts.
    pub subtotal: Money,
    /// All discounts.
    pub discount_total: Money,
    /// What was paid.
    pub final_total: Money,
}

/// An order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderView {
    /// Order id.
    pub id: Uuid,
    /// Store.
    pub store_id: Option<Uuid>,
    /// Lines.
    pub items: Vec<OrderItemView>,
    /// Totals.
    pub totals: Totals,
    /// `completed`.
    pub status: String,
    /// Sum of quantities.
    pub item_count: i64,
    /// The shopping session it completed.
    pub shopping_session_id: Option<Uuid>,
    /// The frontstore coupon used, if any.
    pub frontstore_coupon_id: Option<Uuid>,
    /// Simulated time of the order.
    pub created_at: DateTime<Utc>,
}

/// `POST /api/orders` (201).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckoutResult {
    /// Always true.
    pub success: bool,
    /// The new order.
    pub order: OrderView,
}

/// `GET /api/orders`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrdersPage {
    /// Newest first.
    pub orders: Vec<OrderView>,
    /// All of the user's orders.
    pub total: i64,
}

/// One offer in a wallet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletOffer {
    /// The coupon.
    #[serde(flatten)]
    pub coupon: Coupon,
    /// `active`, `expired`, `used` or `removed`.
    pub status: String,
    /// When it was assigned (simulated).
    pub assigned_at: DateTime<Utc>,
    /// Usable until (simulated).
    pub eligible_until: Option<DateTime<Utc>>,
    /// The offer cycle that assigned it.
    pub offer_cycle_id: Option<Uuid>,
    /// The order that used it.
    pub order_id: Option<Uuid>,
    /// When it was used.
    pub redeemed_at: Option<DateTime<Utc>>,
}

/// `GET /api/offers/wallet/{user_id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletView {
    /// Whose wallet.
    pub user_id: Uuid,
    /// Offers, newest assignment first.
    pub offers: Vec<WalletOffer>,
    /// In the holdout group (gets no offers).
    pub is_holdout: bool,
    /// When the next refresh is due.
    pub next_refresh_at: Option<DateTime<Utc>>,
}

impl WalletView {
    /// The offers still active, in the wallet's order.
    pub fn active_offers(&self) -> Vec<ActiveOffer> {
        self.offers
            .iter()
            .filter(|o| o.status == "active")
            .map(|o| ActiveOffer {
                coupon_id: o.coupon.id,
                eligible_until: o.eligible_until,
            })
            .collect()
    }
}

/// An active offer in a wallet: its coupon and until when it is usable (no end: `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveOffer {
    /// The offer's coupon.
    pub coupon_id: Uuid,
    /// End of the offer's window.
    pub eligible_until: Option<DateTime<Utc>>,
}

/// `POST /api/offers/refresh`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshResult {
    /// Always true.
    pub success: bool,
    /// False when the refresh was not due (nothing changed).
    pub refreshed: bool,
    /// Offers expired by this refresh.
    pub expired_count: u64,
    /// Offers assigned by this refresh.
    pub assigned_count: u64,
    /// In the holdout group.
    pub is_holdout: bool,
    /// When the next refresh is due.
    pub next_refresh_at: Option<DateTime<Utc>>,
}
