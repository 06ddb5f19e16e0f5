//! The catalog: the shared category vocabulary, the deterministic generator, CSV catalogs,
//! loading into the database, and agent users.

pub mod model;

pub use model::{Catalog, Coupon, CouponKind, DiscountType, InventoryRow, Product, Store};
