//! Writing a [`Catalog`] into the database, and reading one back.
//!
//! Writing is idempotent: rows go in with batched multi-row `INSERT … ON CONFLICT DO NOTHING`
//! inside one write transaction, and the report says what was inserted and what was already
//! there. Seeding twice with the same seed inserts nothing the second time. A database seeded
//! from another seed (same store names, SKUs or coupon codes under other ids) is refused with
//! a clear error instead of mixing two catalogs.
//!
//! Reading ([`load_catalog`]) works on shopsim's schema and on a real VoiceOffers database,
//! where the `products.sku` and `coupons.code` extension columns may be absent: products then
//! get their id text as SKU and coupons their id text as code.

use std::collections::HashSet;

use sea_orm::Value;
use uuid::Uuid;

use super::model::{Catalog, Coupon, CouponKind, DiscountType, InventoryRow, Product, Store};
use crate::store::batch::{MAX_ROWS, insert_ignore};
use crate::store::{Backend, Db, StoreError, Tx};

/// What loading did to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct TableLoad {
    /// Rows inserted by this load.
    pub inserted: u64,
    /// Rows of the catalog that were already there (kept unchanged).
    pub existing: u64,
}

/// What [`seed_catalog`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct LoadReport {
    /// `stores`.
    pub stores: TableLoad,
    /// `products`.
    pub products: TableLoad,
    /// `store_inventory`.
    pub inventory: TableLoad,
    /// `coupons`.
    pub coupons: TableLoad,
}

impl LoadReport {
    /// Rows inserted across all tables.
    pub fn inserted(&self) -> u64 {
        self.tables().iter().map(|(_, t)| t.inserted).sum()
    }

    /// Each table with its counts, in load order.
    pub fn tables(&self) -> [(&'static str, TableLoad); 4] {
        [
            ("stores", self.stores),
            ("products", self.products),
            ("store_inventory", self.inventory),
            ("coupons", self.coupons),
        ]
    }
}

/// Why a catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database already holds a different catalog under the same natural keys.
    #[error(
        "{table} {key} already exists with another id (the database was seeded with another seed or catalog); \
         seed a fresh database, or use the same --seed and --catalog as before"
    )]
    Conflict {
        /// The table.
        table: &'static str,
        /// The natural key that clashes (store name, SKU or coupon code).
        key: String,
    },
}

/// Optional extension columns present in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CatalogColumns {
    /// `products.sku` exists.
    pub product_sku: bool,
    /// `coupons.code` exists.
    pub coupon_code: bool,
}

/// Detects the optional catalog columns with one cheap catalog query.
pub async fn detect_columns(tx: &Tx) -> Result<CatalogColumns, StoreError> {
    let sql = match tx.backend() {
        Backend::Postgres => {
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
             WHERE table_schema = current_schema() \
             AND ((table_name = 'products' AND column_name = 'sku') \
               OR (table_name = 'coupons' AND column_name = 'code'))"
        }
        Backend::Sqlite => {
            "SELECT 'products' AS t, name AS c FROM pragma_table_info('products') WHERE name = 'sku' \
             UNION ALL \
             SELECT 'coupons' AS t, name AS c FROM pragma_table_info('coupons') WHERE name = 'code'"
        }
    };
    let rows = tx.query(sql, vec![]).await?;
    let mut cols = CatalogColumns {
        product_sku: false,
        coupon_code: false,
    };
    for r in rows {
        match (r.string("t")?.as_str(), r.string("c")?.as_str()) {
            ("products", "sku") => cols.product_sku = true,
            ("coupons", "code") => cols.coupon_code = true,
            _ => {}
        }
    }
    Ok(cols)
}

/// Writes `catalog` in one write transaction and commits it.
pub async fn seed_catalog(db: &Db, catalog: &Catalog) -> Result<LoadReport, LoadError> {
    let tx = db.write().await?;
    let report = insert_catalog(&tx, catalog).await?;
    tx.commit().await?;
    Ok(report)
}

/// Writes `catalog` inside the caller's transaction (rows already present are kept).
pub async fn insert_catalog(tx: &Tx, catalog: &Catalog) -> Result<LoadReport, LoadError> {
    let codec = tx.codec();
    let cols = detect_columns(tx).await?;
    let mut report = LoadReport::default();

    let rows = catalog
        .stores
        .iter()
        .map(|s| vec![codec.uuid(s.id), s.name.clone().into()])
        .collect();
    report.stores = counted(
        insert_ignore(tx, "stores", &["id", "name"], rows).await?,
        catalog.stores.len(),
    );
    if report.stores.existing > 0 {
        ensure_present(
            tx,
            "stores",
            catalog.stores.iter().map(|s| (s.id, s.name.as_str())),
        )
        .await?;
    }

    let mut product_cols = vec![
        "id",
        "name",
        "description",
        "price",
        "rating",
        "review_count",
        "category",
        "brand",
        "in_stock",
    ];
    if cols.product_sku {
        product_cols.push("sku");
    }
    let rows = catalog
        .products
        .iter()
        .map(|p| {
            let mut row = vec![
                codec.uuid(p.id),
                p.name.clone().into(),
                p.description.clone().into(),
                codec.money(p.price),
                p.rating.into(),
                p.review_count.into(),
                p.category.clone().into(),
                p.brand.clone().into(),
                p.in_stock.into(),
            ];
            if cols.product_sku {
                row.push(p.sku.clone().into());
            }
            row
        })
        .collect();
    report.products = counted(
        insert_ignore(tx, "products", &product_cols, rows).await?,
        catalog.products.len(),
    );
    if report.products.existing > 0 {
        ensure_present(
            tx,
            "products",
            catalog.products.iter().map(|p| (p.id, p.sku.as_str())),
        )
        .await?;
    }

    let rows = catalog
        .inventory
        .iter()
        .map(|r| {
            vec![
                codec.uuid(r.store_id),
                codec.uuid(r.product_id),
                r.quantity.into(),
            ]
        })
        .collect();
    report.inventory = counted(
        insert_ignore(
            tx,
            "store_inventory",
            &["store_id", "product_id", "quantity"],
            rows,
        )
        .await?,
        catalog.inventory.len(),
    );

    let mut coupon_cols = vec![
        "id",
        "type",
        "discount_details",
        "category_or_brand",
        "discount_type",
        "discount_value",
        "min_purchase_amount",
        "max_discount",
        "expiration_date",
        "is_active",
    ];
    if cols.coupon_code {
        coupon_cols.push("code");
    }
    let rows = catalog
        .coupons
        .iter()
        .map(|c| {
            let mut row = vec![
                codec.uuid(c.id),
                c.kind.as_str().into(),
                c.discount_details.clone().into(),
                c.category_or_brand.clone().into(),
                c.discount_type.as_str().into(),
                codec.money(c.discount_value),
                codec.opt_money(c.min_purchase_amount),
                codec.opt_money(c.max_discount),
                codec.opt_ts(c.expiration_date),
                c.is_active.into(),
            ];
            if cols.coupon_code {
                row.push(c.code.clone().into());
            }
            row
        })
        .collect();
    report.coupons = counted(
        insert_ignore(tx, "coupons", &coupon_cols, rows).await?,
        catalog.coupons.len(),
    );
    if report.coupons.existing > 0 {
        ensure_present(
            tx,
            "coupons",
            catalog.coupons.iter().map(|c| (c.id, c.code.as_str())),
        )
        .await?;
    }
    Ok(report)
}

fn counted(inserted: u64, total: usize) -> TableLoad {
    TableLoad {
        inserted,
        existing: (total as u64).saturating_sub(inserted),
    }
}

/// After a load that skipped rows, checks that every skipped row is there under *our* id (and
/// so is the same entity); a row skipped because its natural key belongs to another id means
/// the database holds another catalog.
async fn ensure_present<'a>(
    tx: &Tx,
    table: &'static str,
    entities: impl Iterator<Item = (Uuid, &'a str)>,
) -> Result<(), LoadError> {
    let codec = tx.codec();
    let entities: Vec<(Uuid, &str)> = entities.collect();
    for chunk in entities.chunks(MAX_ROWS) {
        let placeholders = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT id FROM {table} WHERE id IN ({placeholders})");
        let values: Vec<Value> = chunk.iter().map(|(id, _)| codec.uuid(*id)).collect();
        let found: HashSet<Uuid> = tx
            .query(&sql, values)
            .await?
            .iter()
            .map(|r| r.uuid("id"))
            .collect::<Result<_, _>>()?;
        if let Some((_, key)) = chunk.iter().find(|(id, _)| !found.contains(id)) {
            return Err(LoadError::Conflict {
                table,
                key: format!("`{key}`"),
            });
        }
    }
    Ok(())
}

/// Reads the whole catalog back, in canonical order (stores by name, products by SKU, coupons
/// by code, inventory by store id then product id). Missing optional values of a real
/// VoiceOffers database read as empty text, rating 0 and review count 0.
pub async fn load_catalog(tx: &Tx) -> Result<Catalog, StoreError> {
    let cols = detect_columns(tx).await?;

    let mut stores = tx
        .query("SELECT id, name FROM stores", vec![])
        .await?
        .iter()
        .map(|r| -> Result<Store, StoreError> {
            Ok(Store {
                id: r.uuid("id")?,
                name: r.string("name")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    stores.sort_by(|a, b| a.name.cmp(&b.name));

    let sku_col = if cols.product_sku { ", sku" } else { "" };
    let sql = format!(
        "SELECT id, name, description, price, rating, review_count, category, brand, in_stock{sku_col} \
         FROM products"
    );
    let mut products = tx
        .query(&sql, vec![])
        .await?
        .iter()
        .map(|r| -> Result<Product, StoreError> {
            let id = r.uuid("id")?;
            let sku = if cols.product_sku {
                r.opt_string("sku")?
            } else {
                None
            };
            Ok(Product {
                id,
                sku: sku.unwrap_or_else(|| id.to_string()),
                name: r.string("name")?,
                description: r.opt_string("description")?.unwrap_or_default(),
                price: r.money("price")?,
                rating: r.opt_f64("rating")?.unwrap_or(0.0),
                review_count: r.opt_i64("review_count")?.unwrap_or(0),
                category: r.string("category")?,
                brand: r.opt_string("brand")?.unwrap_or_default(),
                in_stock: r.bool("in_stock")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    products.sort_by(|a, b| a.sku.cmp(&b.sku));

    let code_col = if cols.coupon_code { ", code" } else { "" };
    let sql = format!(
        "SELECT id, \"type\", discount_details, category_or_brand, discount_type, discount_value, \
         min_purchase_amount, max_discount, expiration_date, is_active{code_col} FROM coupons"
    );
    let mut coupons = tx
        .query(&sql, vec![])
        .await?
        .iter()
        .map(|r| -> Result<Coupon, StoreError> {
            let id = r.uuid("id")?;
            let code = if cols.coupon_code {
                r.opt_string("code")?
            } else {
                None
            };
            let kind_text = r.string("type")?;
            let kind = CouponKind::parse(&kind_text).ok_or_else(|| StoreError::Decode {
                column: "coupons.type".into(),
                reason: format!("`{kind_text}` is not frontstore, category or brand"),
            })?;
            let dtype_text = r.string("discount_type")?;
            let discount_type =
                DiscountType::parse(&dtype_text).ok_or_else(|| StoreError::Decode {
                    column: "coupons.discount_type".into(),
                    reason: format!("`{dtype_text}` is not percent, fixed, bogo or free_shipping"),
                })?;
            Ok(Coupon {
                id,
                code: code.unwrap_or_else(|| id.to_string()),
                kind,
                discount_details: r.opt_string("discount_details")?.unwrap_or_default(),
                category_or_brand: r.opt_string("category_or_brand")?,
                discount_type,
                discount_value: r.money("discount_value")?,
                min_purchase_amount: r.opt_money("min_purchase_amount")?,
                max_discount: r.opt_money("max_discount")?,
                expiration_date: r.opt_ts("expiration_date")?,
                is_active: r.bool("is_active")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    coupons.sort_by(|a, b| a.code.cmp(&b.code));

    let mut inventory = tx
        .query(
            "SELECT store_id, product_id, quantity FROM store_inventory",
            vec![],
        )
        .await?
        .iter()
        .map(|r| -> Result<InventoryRow, StoreError> {
            Ok(InventoryRow {
                store_id: r.uuid("store_id")?,
                product_id: r.uuid("product_id")?,
                quantity: r.i64("quantity")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    inventory.sort_by_key(|r| (r.store_id, r.product_id));

    Ok(Catalog {
        stores,
        products,
        coupons,
        inventory,
    })
}
