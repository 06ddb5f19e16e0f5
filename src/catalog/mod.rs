//! The catalog: the shared category vocabulary, the deterministic generator, CSV catalogs,
//! loading into the database, and agent users.
//!
//! - [`vocabulary`]: the one list of categories (with price ranges, nouns, sizes, brands)
//!   shared by catalogs and persona sets.
//! - [`generate`]: a whole catalog from a seed, pure and deterministic.
//! - [`model`]: the catalog as plain values.

pub mod generate;
pub mod model;
pub mod vocabulary;

pub use generate::{CatalogSpec, SpecError, generate, generate_with};
pub use model::{Catalog, Coupon, CouponKind, DiscountType, InventoryRow, Product, Store};
pub use vocabulary::{CategoryInfo, categories, category_names, is_category};
