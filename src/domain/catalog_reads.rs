//! Reads of the catalog and of users: stores, products, product detail, agent → user.

use serde_json::json;
use uuid::Uuid;

use crate::catalog::Store;
use crate::store::Tx;

use super::rows::{self, PRODUCT_COLS};
use super::sessions::SessionEnd;
use super::{
    Ctx, DomainError, DomainResult, InventoryView, ProductDetail, ProductFilter, ProductPage, Shop,
    StoresPage,
};

/// Largest page a listing may ask for.
pub const MAX_PAGE: i64 = 500;

/// Checks a page request: `limit` in 1..=[`MAX_PAGE`], `offset` ≥ 0.
pub(crate) fn validate_page(limit: i64, offset: i64) -> DomainResult<()> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(DomainError::Invalid {
            code: "invalid_limit",
            message: format!("limit must be between 1 and {MAX_PAGE}, got {limit}"),
        });
    }
    if offset < 0 {
        return Err(DomainError::Invalid {
            code: "invalid_offset",
            message: format!("offset must be 0 or more, got {offset}"),
        });
    }
    Ok(())
}

impl Shop {
    /// All stores, by name.
    pub async fn list_stores(&self, tx: &Tx) -> DomainResult<StoresPage> {
        let rows = tx
            .query("SELECT id, name FROM stores ORDER BY name, id", vec![])
            .await?;
        let stores = rows
            .iter()
            .map(|r| {
                Ok(Store {
                    id: r.uuid("id")?,
                    name: r.string("name")?,
                })
            })
            .collect::<Result<Vec<_>, crate::store::StoreError>>()?;
        Ok(StoresPage {
            count: stores.len(),
            stores,
        })
    }

    /// One page of products, filtered by category and brand (case-insensitive), ordered by
    /// name then id, with the number of matches.
    pub async fn list_products(
        &self,
        tx: &Tx,
        filter: &ProductFilter,
    ) -> DomainResult<ProductPage> {
        validate_page(filter.limit, filter.offset)?;
        let mut conditions = Vec::new();
        let mut values: Vec<sea_orm::Value> = Vec::new();
        if let Some(category) = filter.category.as_deref().filter(|s| !s.trim().is_empty()) {
            values.push(category.trim().to_string().into());
            conditions.push(format!("LOWER(p.category) = LOWER(${})", values.len()));
        }
        if let Some(brand) = filter.brand.as_deref().filter(|s| !s.trim().is_empty()) {
            values.push(brand.trim().to_string().into());
            conditions.push(format!("LOWER(p.brand) = LOWER(${})", values.len()));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let total = tx
            .query_one(
                &format!("SELECT COUNT(*) AS n FROM products p{where_clause}"),
                values.clone(),
            )
            .await?
            .i64("n")?;
        let n = values.len();
        values.push(filter.limit.into());
        values.push(filter.offset.into());
        let rows = tx
            .query(
                &format!(
                    "SELECT {PRODUCT_COLS} FROM products p{where_clause} \
                     ORDER BY p.name, p.id LIMIT ${} OFFSET ${}",
                    n + 1,
                    n + 2
                ),
                values,
            )
            .await?;
        let products = rows
            .iter()
            .map(rows::product)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProductPage {
            products,
            total,
            limit: filter.limit,
            offset: filter.offset,
        })
    }

    /// A product with its stock in the user's selected store (summed over all stores when
    /// none is selected). Records `view_product` in the session.
    pub async fn get_product(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        product_id: Uuid,
    ) -> DomainResult<ProductDetail> {
        let codec = tx.codec();
        // One round trip: the product, the selected store and the stock that counts.
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {PRODUCT_COLS}, us.store_id AS selected_store, \
                       CASE WHEN us.store_id IS NULL THEN \
                         (SELECT COALESCE(SUM(i.quantity), 0) FROM store_inventory i \
                          WHERE i.product_id = p.id) \
                       ELSE (SELECT COALESCE(SUM(i.quantity), 0) FROM store_inventory i \
                          WHERE i.product_id = p.id AND i.store_id = us.store_id) END AS available \
                     FROM products p LEFT JOIN sim_user_stores us ON us.user_id = $2 \
                     WHERE p.id = $1"
                ),
                vec![codec.uuid(product_id), codec.uuid(ctx.user_id)],
            )
            .await?;
        let Some(row) = row else {
            return Err(product_not_found(product_id));
        };
        let product = rows::product(&row)?;
        let inventory = InventoryView {
            available: row.i64("available")?,
            store_id: row.opt_uuid("selected_store")?,
        };
        self.record_event(
            tx,
            ctx,
            "view_product",
            json!({"product_id": product.id, "sku": product.sku, "price": product.price}),
            SessionEnd::Open,
        )
        .await?;
        Ok(ProductDetail { product, inventory })
    }

    /// Records that the user viewed a product, as [`Shop::get_product`] does, without the
    /// detail: a product of the shop's read-only catalog copy
    /// ([`Shop::with_known_catalog`]) costs no read; any other is read (and may be
    /// `product_not_found`).
    pub async fn view_product(&self, tx: &Tx, ctx: &Ctx, product_id: Uuid) -> DomainResult<()> {
        let Some((sku, price)) = self.known.as_ref().and_then(|k| k.product(product_id)) else {
            return self.get_product(tx, ctx, product_id).await.map(|_| ());
        };
        self.record_event(
            tx,
            ctx,
            "view_product",
            json!({"product_id": product_id, "sku": sku, "price": price}),
            SessionEnd::Open,
        )
        .await
    }

    /// The user of an agent (`agents.agent_id`, e.g. `agent_001`), if there is one.
    pub async fn user_for_agent(&self, tx: &Tx, agent_id: &str) -> DomainResult<Option<Uuid>> {
        let row = tx
            .query_opt(
                "SELECT user_id FROM agents WHERE agent_id = $1",
                vec![agent_id.to_string().into()],
            )
            .await?;
        Ok(row.map(|r| r.uuid("user_id")).transpose()?)
    }
}

/// The error for an unknown product id.
pub(crate) fn product_not_found(product_id: Uuid) -> DomainError {
    DomainError::NotFound {
        code: "product_not_found",
        what: format!("product {product_id}"),
    }
}
