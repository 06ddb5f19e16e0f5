//! The catalog: the shared category vocabulary, the deterministic generator, CSV catalogs,
//! loading into the database, and agent users.
//!
//! - [`vocabulary`]: the one list of categories (with price ranges, nouns, sizes, brands)
//!   shared by catalogs and persona sets.
//! - [`generate`](mod@generate): a whole catalog from a seed, pure and deterministic.
//! - [`csv`]: products from a CSV file (format documented there and in `docs/catalog-csv.md`),
//!   with stores, inventory and coupons generated around them.
//! - [`load`]: idempotent batched writes of a catalog, and reading one back.
//! - [`agents`]: agent users `agent_001` … with optional personas.
//! - [`model`]: the catalog as plain values.

pub mod agents;
pub mod csv;
pub mod generate;
pub mod load;
pub mod model;
pub mod vocabulary;

pub use agents::{
    AgentError, AgentOptions, AgentSummary, AgentsReport, PersonaRecord, PersonaSource, agent_keys,
    agent_name, count_agents, create_agents, list_agents,
};
pub use csv::{CsvCatalogError, catalog_from_csv};
pub use generate::{CatalogSpec, SpecError, generate, generate_with};
pub use load::{LoadError, LoadReport, TableLoad, insert_catalog, load_catalog, seed_catalog};
pub use model::{Catalog, Coupon, CouponKind, DiscountType, InventoryRow, Product, Store};
pub use vocabulary::{CategoryInfo, categories, category_names, is_category};
