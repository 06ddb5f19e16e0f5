//! The catalog as the behaviour host sees it: one shared, read-only cache.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDate};

use super::inputs::{CartLine, CatalogIndex, CatalogView, HeldOffer, Offer, Wallet};
use super::set::Vocab;
use crate::catalog::{Catalog, Coupon, CouponKind};
use crate::domain::PricedLine;

/// The shared, read-only catalog cache: the catalog, its script-facing index, the persona
/// vocabulary and the coupon pools. Built once per run and shared by every agent.
pub struct World {
    catalog: Arc<Catalog>,
    view: CatalogView,
    vocab: Vocab,
    frontstore: Vec<uuid::Uuid>,
    targeted: Vec<uuid::Uuid>,
    coupon_index: HashMap<uuid::Uuid, u32>,
}

impl World {
    /// Indexes a catalog; persona vocabulary is the shared category vocabulary.
    pub fn new(catalog: Catalog) -> Self {
        let view = CatalogView(Arc::new(CatalogIndex::new(&catalog)));
        let vocab = super::population::vocab(catalog.stores.len());
        let frontstore: Vec<uuid::Uuid> = catalog
            .coupons
            .iter()
            .filter(|c| c.is_active && c.kind == CouponKind::Frontstore)
            .map(|c| c.id)
            .collect();
        let targeted: Vec<uuid::Uuid> = catalog
            .coupons
            .iter()
            .filter(|c| c.is_active && c.kind != CouponKind::Frontstore)
            .map(|c| c.id)
            .collect();
        let coupon_index = catalog
            .coupons
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i as u32))
            .collect();
        World {
            catalog: Arc::new(catalog),
            view,
            vocab,
            frontstore,
            targeted,
            coupon_index,
        }
    }

    /// The script-facing catalog.
    pub fn view(&self) -> &CatalogView {
        &self.view
    }

    /// The persona vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Product id of script product `i`.
    pub fn product_id(&self, i: u32) -> Option<uuid::Uuid> {
        self.catalog.products.get(i as usize).map(|p| p.id)
    }

    /// Store id of script store `i`.
    pub fn store_id(&self, i: u32) -> Option<uuid::Uuid> {
        self.catalog.stores.get(i as usize).map(|s| s.id)
    }

    /// Coupon id of script coupon `i`.
    pub fn coupon_id(&self, i: u32) -> Option<uuid::Uuid> {
        self.catalog.coupons.get(i as usize).map(|c| c.id)
    }

    /// A coupon by id.
    pub fn coupon_by_id(&self, id: uuid::Uuid) -> Option<&Coupon> {
        self.coupon_index.get(&id).map(|&i| self.coupon(i))
    }

    /// Wallet offer `coupon_id` usable until `until` as an agent holds it, or `None` for a
    /// coupon not in the catalog.
    pub fn held_for(&self, coupon_id: uuid::Uuid, until: NaiveDate) -> Option<HeldOffer> {
        self.coupon_index.get(&coupon_id).map(|&coupon| HeldOffer {
            coupon,
            eligible_until: until,
        })
    }

    /// Script coupon `coupon` usable until `until` as an agent holds it, or `None` for an
    /// index not in the catalog (a recorded outcome of another catalog).
    pub fn held(&self, coupon: u32, until: NaiveDate) -> Option<HeldOffer> {
        self.view.0.coupon(coupon).map(|_| HeldOffer {
            coupon,
            eligible_until: until,
        })
    }

    /// The script's view of wallet offer `coupon_id` usable until `until`, or `None` for a
    /// coupon not in the catalog.
    pub fn offer_for(&self, coupon_id: uuid::Uuid, until: NaiveDate) -> Option<Offer> {
        self.view.0.offer(self.held_for(coupon_id, until)?)
    }

    /// The script's view of a held offer.
    pub fn offer(&self, held: HeldOffer) -> Option<Offer> {
        self.view.0.offer(held)
    }

    fn coupon(&self, i: u32) -> &Coupon {
        &self.catalog.coupons[i as usize]
    }

    /// Cart lines (script product indexes) priced for the domain's pricing function.
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

impl World {
    /// A wallet with the first frontstore and targeted coupons (for dry runs and benchmarks).
    pub fn sample_wallet(&self, today: NaiveDate) -> Wallet {
        let until = today + Duration::days(14);
        self.frontstore
            .iter()
            .take(2)
            .chain(self.targeted.iter().take(30))
            .filter_map(|id| self.held_for(*id, until))
            .collect()
    }
}

/// The agent keys of a population: `agent_001` … (three digits at least, like the original).
pub fn agent_key(i: usize) -> String {
    crate::catalog::agent_name(i as u64 + 1)
}
