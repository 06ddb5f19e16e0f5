//! The shared, read-only catalog cache of a run: loaded once from the database, indexed for the
//! behaviour scripts (products and coupons by position) and for the actions (ids).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::behavior::inputs::{CartLine, CatalogIndex, CatalogView, Offer};
use crate::catalog::{Catalog, Coupon};
use crate::domain::PricedLine;
use crate::money::Money;

/// The catalog as the engine uses it. One per run, shared by every agent.
pub struct World {
    catalog: Catalog,
    view: CatalogView,
    coupon_pos: HashMap<Uuid, u32>,
}

impl World {
    /// Indexes `catalog` (products and stores keep their catalog order).
    pub fn new(catalog: Catalog) -> Arc<Self> {
        let view = CatalogView(Arc::new(CatalogIndex::new(&catalog)));
        let coupon_pos = catalog
            .coupons
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i as u32))
            .collect();
        Arc::new(Self {
            catalog,
            view,
            coupon_pos,
        })
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The script-facing view.
    pub fn view(&self) -> &CatalogView {
        &self.view
    }

    /// Product id of script product `i`.
    pub fn product_id(&self, i: u32) -> Option<Uuid> {
        self.catalog.products.get(i as usize).map(|p| p.id)
    }

    /// Store id of script store `i`.
    pub fn store_id(&self, i: u32) -> Option<Uuid> {
        self.catalog.stores.get(i as usize).map(|s| s.id)
    }

    /// A coupon by id.
    pub fn coupon(&self, id: Uuid) -> Option<&Coupon> {
        self.coupon_pos
            .get(&id)
            .map(|&i| &self.catalog.coupons[i as usize])
    }

    /// A coupon id by script position.
    pub fn coupon_id(&self, i: u32) -> Option<Uuid> {
        self.catalog.coupons.get(i as usize).map(|c| c.id)
    }

    /// The script's view of a wallet offer, or `None` for a coupon not in the catalog cache.
    pub fn offer(&self, coupon_id: Uuid, eligible_until: NaiveDate) -> Option<Offer> {
        let i = *self.coupon_pos.get(&coupon_id)?;
        let c = &self.catalog.coupons[i as usize];
        Some(Offer {
            coupon: i,
            kind: c.kind,
            target: c.category_or_brand.clone().unwrap_or_default().into(),
            discount_type: c.discount_type,
            value: c.discount_value,
            min_purchase: c.min_purchase_amount.unwrap_or(Money::ZERO),
            eligible_until,
        })
    }

    /// Cart lines priced for the domain's pricing function.
    pub fn priced(&self, lines: &[CartLine]) -> Vec<PricedLine> {
        lines
            .iter()
            .filter_map(|l| {
                let p = self.catalog.products.get(l.product as usize)?;
                Some(PricedLine {
                    product_id: p.id,
                    category: p.category.clone(),
                    brand: Some(p.brand.clone()),
                    unit_price: p.price,
                    quantity: i64::from(l.qty),
                })
            })
            .collect()
    }
}
