//! The cart: store selection, lines, applied coupons, eligibility and the priced summary.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::catalog::{Coupon, CouponKind, Store};
use crate::ids;
use crate::money::Money;
use crate::store::{Backend, StoreError, Tx};

use super::catalog_reads::product_not_found;
use super::pricing::{PricedLine, meets_minimum, price_cart};
use super::rows::{self, COUPON_COLS, active_offer_condition, in_list, padded_uuid_values};
use super::session_cart::{ReadProduct, SessionCart};
use super::sessions::SessionEnd;
use super::{
    AddToCartResult, ApplyCouponResult, CartItemView, CartSummary, CartView, ClearCartResult, Ctx,
    DomainError, DomainResult, EligibleCoupons, IneligibleCoupon, RejectCode, SelectStoreResult,
    Shop,
};

/// Largest quantity one add may carry.
pub const MAX_ADD_QUANTITY: i64 = 99;

impl CartItemView {
    /// The line as pricing sees it.
    pub fn priced(&self) -> PricedLine {
        PricedLine {
            product_id: self.product_id,
            category: self.category.clone(),
            brand: self.brand.clone(),
            unit_price: self.unit_price,
            quantity: self.quantity,
        }
    }
}

/// Which coupons [`Shop::cart_and_coupons`] reads with the cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CouponsOf {
    /// Applied to the cart and still active offers in the wallet.
    Applied,
    /// Every active offer in the wallet.
    Active,
}

/// NULL for the cart columns of [`Shop::cart_and_coupons`]'s query (after `part`), in coupon rows.
const PADDING: &str = "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL";

/// [`COUPON_COLS`]' aliases as NULL columns (`NULL AS c_id, …`), to pad a query that `UNION`s
/// with coupon rows.
static NULL_COUPON_COLS: LazyLock<String> = LazyLock::new(|| {
    COUPON_COLS
        .split(',')
        .filter_map(|col| col.split(" AS ").nth(1))
        .map(|alias| format!("NULL AS {}", alias.trim()))
        .collect::<Vec<_>>()
        .join(", ")
});

/// The cart as read for pricing: the selected store, its lines and the usable coupons.
pub(crate) struct CartState {
    pub store: Option<Store>,
    pub items: Vec<CartItemView>,
    pub coupons: Vec<Coupon>,
}

impl CartState {
    pub(crate) fn priced_lines(&self) -> Vec<PricedLine> {
        self.items.iter().map(CartItemView::priced).collect()
    }

    pub(crate) fn summary(&self) -> CartSummary {
        price_cart(&self.priced_lines(), &self.coupons)
    }
}

fn item_view(row: &crate::store::Row) -> Result<CartItemView, StoreError> {
    Ok(ProductFacts::of(row)?.line(
        row.uuid("id")?,
        row.uuid("product_id")?,
        row.i64("quantity")?,
    ))
}

/// The user's store selection (followed by its values).
const SELECTION_UPSERT: &str = "INSERT INTO sim_user_stores (user_id, store_id, updated_at)";

/// A new selection replaces the previous one.
const SELECTION_CONFLICT: &str = "ON CONFLICT (user_id) DO UPDATE SET \
       store_id = excluded.store_id, updated_at = excluded.updated_at";

/// How many cart rows (lines and applied coupons) user `$1` has in the database.
const KEPT: &str = "(SELECT COUNT(*) FROM cart_items WHERE user_id = $1) \
       + (SELECT COUNT(*) FROM cart_coupons WHERE user_id = $1)";

/// The refusal of a coupon that is not an active offer of the user's wallet.
fn not_in_wallet(coupon_id: Uuid) -> DomainError {
    DomainError::rejected(
        RejectCode::OfferNotInWallet,
        format!("coupon {coupon_id} is not an active offer in this user's wallet"),
    )
}

/// The refusal of an add before any store is selected.
fn no_store_selected() -> DomainError {
    DomainError::rejected(
        RejectCode::NoStoreSelected,
        "select a store before adding to the cart",
    )
}

/// Refuses an add of `quantity` units when `stock` cannot cover them on top of `in_cart`.
fn enough_stock(stock: i64, in_cart: i64, quantity: i64) -> DomainResult<()> {
    if stock < in_cart + quantity {
        return Err(DomainError::rejected(
            RejectCode::InsufficientInventory,
            format!(
                "only {stock} units in store; the cart already has {in_cart}, {quantity} more requested"
            ),
        ));
    }
    Ok(())
}

/// What a cart line shows of its product, from a row with its `sku`, `name`, `category`,
/// `brand` and `price` (a cart read's or an add's).
#[derive(Debug, Clone)]
pub(crate) struct ProductFacts {
    pub(crate) sku: Option<String>,
    pub(crate) name: String,
    pub(crate) category: String,
    pub(crate) brand: Option<String>,
    pub(crate) price: Money,
}

impl ProductFacts {
    fn of(row: &crate::store::Row) -> Result<Self, StoreError> {
        Ok(Self {
            sku: row.opt_string("sku")?,
            name: row.string("name")?,
            category: row.string("category")?,
            brand: row.opt_string("brand")?,
            price: row.money("price")?,
        })
    }

    /// The payload of `cart_add_item` for `quantity` units.
    fn add_event(&self, product_id: Uuid, quantity: i64) -> serde_json::Value {
        json!({"product_id": product_id, "sku": self.sku, "quantity": quantity,
               "unit_price": self.price})
    }

    /// A cart line of `quantity` units.
    fn line(self, id: Uuid, product_id: Uuid, quantity: i64) -> CartItemView {
        CartItemView {
            id,
            product_id,
            sku: self.sku,
            product_name: self.name,
            category: self.category,
            brand: self.brand,
            unit_price: self.price,
            quantity,
            line_total: self.price * quantity,
        }
    }
}

/// The error for an unknown store.
fn store_not_found(store_id: Uuid) -> DomainError {
    DomainError::NotFound {
        code: "store_not_found",
        what: format!("store {store_id}"),
    }
}

/// How a new cart line meets an existing one: it grows.
const LINE_UPSERT: &str = "ON CONFLICT (user_id, store_id, product_id) DO UPDATE SET \
       quantity = cart_items.quantity + excluded.quantity, updated_at = excluded.updated_at \
     RETURNING id, quantity";

/// The deterministic id of a cart line (one line per user, store and product).
fn cart_item_id(user_id: Uuid, store_id: Uuid, product_id: Uuid) -> Uuid {
    ids::child_uuid(&user_id, "cart_item", &format!("{store_id}/{product_id}"))
}

impl Shop {
    /// The user's selected store, its cart lines (first added first) and `coupons` (by id), in
    /// one query: a `UNION ALL` of the lines (`part` 0) and the coupons (`part` 1), each padded
    /// with the other's columns as NULL. One round trip where two queries took two.
    pub(crate) async fn cart_and_coupons(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        coupons: CouponsOf,
    ) -> Result<CartState, StoreError> {
        if let Some(cart) = ctx.exact_cart() {
            let mut state = cart.state(ctx.now);
            if coupons == CouponsOf::Active {
                // Read once per session while its wallet does not change: kept for its
                // applications and later checks (see `SessionCart::offer`).
                let offers = match cart.offers(ctx.now) {
                    Some(kept) => kept,
                    None => {
                        let read = self.active_offers(tx, ctx, None).await?;
                        cart.keep_offers(read.clone());
                        read
                    }
                };
                state.coupons = offers.into_iter().map(|(c, _)| c).collect();
            }
            return Ok(state);
        }
        self.read_cart(tx, ctx, coupons, None)
            .await
            .map(|(state, _)| state)
    }

    /// [`Shop::cart_and_coupons`]; with `apply` (PostgreSQL only), the same statement also
    /// reads that coupon as an active offer of the user's wallet and applies it to the cart
    /// (`part` 2): the offer is returned, and the state counts it among the applied coupons
    /// (the statement's own read does not see its insert).
    async fn read_cart(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        coupons: CouponsOf,
        apply: Option<Uuid>,
    ) -> Result<(CartState, Option<Coupon>), StoreError> {
        let codec = tx.codec();
        let active = active_offer_condition("$2");
        let mut values = vec![codec.uuid(ctx.user_id), codec.ts(ctx.now)];
        let (offer_cte, offer_part) = match apply {
            Some(coupon_id) => {
                values.push(codec.uuid(coupon_id));
                (
                    format!(
                        "WITH offer AS (SELECT {COUPON_COLS} FROM user_coupons uc \
                           JOIN coupons c ON c.id = uc.coupon_id \
                           WHERE uc.user_id = $1 AND uc.coupon_id = $3 AND {active}), \
                         applied AS (INSERT INTO cart_coupons (user_id, coupon_id, created_at) \
                           SELECT $1, c_id, $2 FROM offer \
                           ON CONFLICT (user_id, coupon_id) DO NOTHING) "
                    ),
                    format!("UNION ALL SELECT 2, {PADDING}, offer.* FROM offer "),
                )
            }
            None => (String::new(), String::new()),
        };
        let coupons_from = match coupons {
            CouponsOf::Applied => {
                "FROM cart_coupons cc JOIN coupons c ON c.id = cc.coupon_id \
                 JOIN user_coupons uc ON uc.user_id = cc.user_id AND uc.coupon_id = cc.coupon_id \
                 WHERE cc.user_id = $1"
            }
            CouponsOf::Active => {
                "FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id WHERE uc.user_id = $1"
            }
        };
        // `part` is a BIGINT: the row reader takes a 64-bit integer first, and a 32-bit one
        // would cost it a failed attempt on every row.
        let rows = tx
            .query(
                &format!(
                    "{offer_cte}SELECT CAST(0 AS BIGINT) AS part, s.id AS store_id, s.name AS store_name, \
                       ci.id AS id, ci.product_id AS product_id, ci.quantity AS quantity, p.sku AS sku, \
                       p.name AS name, p.category AS category, p.brand AS brand, \
                       p.price AS price, ci.created_at AS line_at, {null_coupon} \
                     FROM sim_user_stores us JOIN stores s ON s.id = us.store_id \
                     LEFT JOIN cart_items ci ON ci.user_id = us.user_id AND ci.store_id = us.store_id \
                     LEFT JOIN products p ON p.id = ci.product_id \
                     WHERE us.user_id = $1 \
                     UNION ALL \
                     SELECT 1, {PADDING}, {COUPON_COLS} {coupons_from} AND {active} \
                     {offer_part}ORDER BY part, line_at, id, c_id",
                    null_coupon = *NULL_COUPON_COLS,
                ),
                values,
            )
            .await?;
        let mut state = CartState {
            store: None,
            items: Vec::new(),
            coupons: Vec::new(),
        };
        let mut offer = None;
        for row in &rows {
            match row.i64("part")? {
                1 => {
                    state.coupons.push(rows::coupon(row)?);
                    continue;
                }
                2 => {
                    offer = Some(rows::coupon(row)?);
                    continue;
                }
                _ => {}
            }
            if state.store.is_none() {
                state.store = Some(Store {
                    id: row.uuid("store_id")?,
                    name: row.string("store_name")?,
                });
            }
            // A store without lines comes back as one row with no line.
            if row.opt_uuid("id")?.is_some() {
                state.items.push(item_view(row)?);
            }
        }
        if let Some(coupon) = &offer {
            // In the coupons' order (by id), unless it was applied already.
            if let Err(at) = state.coupons.binary_search_by_key(&coupon.id, |c| c.id) {
                state.coupons.insert(at, coupon.clone());
            }
        }
        Ok((state, offer))
    }

    /// The selected store, its cart lines and the usable applied coupons.
    pub(crate) async fn cart_state(&self, tx: &Tx, ctx: &Ctx) -> Result<CartState, StoreError> {
        self.cart_and_coupons(tx, ctx, CouponsOf::Applied).await
    }

    /// The user's active offers at `ctx.now` (only those among `ids`, if given), by coupon
    /// id, each with its `eligible_until`: what a [`SessionCart`] keeps of an applied offer.
    pub(crate) async fn active_offers(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        ids: Option<&[Uuid]>,
    ) -> Result<Vec<(Coupon, Option<DateTime<Utc>>)>, StoreError> {
        let codec = tx.codec();
        let mut values = vec![codec.uuid(ctx.user_id), codec.ts(ctx.now)];
        let only = match ids {
            Some(ids) => {
                let listed = padded_uuid_values(tx, ids);
                let only = format!("AND uc.coupon_id IN ({})", in_list(listed.len(), 3));
                values.extend(listed);
                only
            }
            None => String::new(),
        };
        let rows = tx
            .query(
                &format!(
                    "SELECT {COUPON_COLS}, uc.eligible_until AS uc_until FROM user_coupons uc \
                     JOIN coupons c ON c.id = uc.coupon_id \
                     WHERE uc.user_id = $1 AND {} {only} ORDER BY c_id",
                    active_offer_condition("$2")
                ),
                values,
            )
            .await?;
        rows.iter()
            .map(|row| Ok((rows::coupon(row)?, row.opt_ts("uc_until")?)))
            .collect()
    }

    /// Selects the user's store. Switching to another store empties the cart (lines and
    /// coupons); `cart_cleared` tells whether anything was removed.
    pub async fn select_store(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        store_id: Uuid,
    ) -> DomainResult<SelectStoreResult> {
        if tx.backend() == Backend::Postgres {
            return self.select_store_at_once(tx, ctx, store_id).await;
        }
        let codec = tx.codec();
        // One round trip: the store and the user's current selection.
        let row = tx
            .query_opt(
                "SELECT s.id, s.name, \
                   (SELECT us.store_id FROM sim_user_stores us WHERE us.user_id = $2) AS previous \
                 FROM stores s WHERE s.id = $1",
                vec![codec.uuid(store_id), codec.uuid(ctx.user_id)],
            )
            .await?;
        let Some(row) = row else {
            return Err(store_not_found(store_id));
        };
        let store = Store {
            id: row.uuid("id")?,
            name: row.string("name")?,
        };
        let previous = row.opt_uuid("previous")?;
        let mut cart_cleared = false;
        if previous.is_some_and(|p| p != store_id) {
            let (items, coupons) = self.delete_cart(tx, ctx.user_id).await?;
            cart_cleared = items + coupons > 0;
        }
        if previous != Some(store_id) {
            tx.exec(
                &format!("{SELECTION_UPSERT} VALUES ($1, $2, $3) {SELECTION_CONFLICT}"),
                vec![
                    codec.uuid(ctx.user_id),
                    codec.uuid(store_id),
                    codec.ts(ctx.now),
                ],
            )
            .await?;
        }
        if let Some(cart) = &ctx.cart {
            let kept = tx
                .query_one(
                    &format!("SELECT {KEPT} AS kept"),
                    vec![codec.uuid(ctx.user_id)],
                )
                .await?
                .i64("kept")?;
            cart_cleared |= cart.selected(&store, kept == 0);
        }
        Ok(SelectStoreResult {
            success: true,
            store,
            cart_cleared,
        })
    }

    /// [`Shop::select_store`] on PostgreSQL: one statement reads the store and the previous
    /// selection, empties the cart when the store changes and records the new selection.
    async fn select_store_at_once(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        store_id: Uuid,
    ) -> DomainResult<SelectStoreResult> {
        let codec = tx.codec();
        // With a session cart: whether the user's database cart is empty after this
        // statement (a switch empties it; the statement's reads do not see its deletes).
        let kept = match ctx.cart {
            Some(_) => format!(
                ", CASE WHEN EXISTS (SELECT 1 FROM switch) THEN 0 ELSE {} END AS kept",
                KEPT.replace("$1", "$2")
            ),
            None => String::new(),
        };
        let row = tx
            .query_opt(
                &format!(
                    "WITH s AS (SELECT id, name FROM stores WHERE id = $1), \
                     prev AS (SELECT store_id FROM sim_user_stores WHERE user_id = $2), \
                     switch AS (SELECT 1 FROM s, prev WHERE prev.store_id <> $1), \
                     items AS (DELETE FROM cart_items WHERE user_id = $2 \
                       AND EXISTS (SELECT 1 FROM switch) RETURNING 1), \
                     coupons AS (DELETE FROM cart_coupons WHERE user_id = $2 \
                       AND EXISTS (SELECT 1 FROM switch) RETURNING 1), \
                     chosen AS ({SELECTION_UPSERT} SELECT $2, s.id, $3 FROM s \
                       WHERE NOT EXISTS (SELECT 1 FROM prev WHERE store_id = $1) \
                       {SELECTION_CONFLICT}) \
                     SELECT s.id, s.name, \
                       (SELECT COUNT(*) FROM items) + (SELECT COUNT(*) FROM coupons) AS removed\
                       {kept} FROM s"
                ),
                vec![
                    codec.uuid(store_id),
                    codec.uuid(ctx.user_id),
                    codec.ts(ctx.now),
                ],
            )
            .await?;
        let Some(row) = row else {
            return Err(store_not_found(store_id));
        };
        let store = Store {
            id: row.uuid("id")?,
            name: row.string("name")?,
        };
        let mut cart_cleared = row.i64("removed")? > 0;
        if let Some(cart) = &ctx.cart {
            cart_cleared |= cart.selected(&store, row.i64("kept")? == 0);
        }
        Ok(SelectStoreResult {
            success: true,
            store,
            cart_cleared,
        })
    }

    /// Deletes every cart line and applied coupon of the user: (lines, coupons) removed.
    async fn delete_cart(&self, tx: &Tx, user_id: Uuid) -> Result<(u64, u64), StoreError> {
        let codec = tx.codec();
        let user = codec.uuid(user_id);
        if tx.backend() == Backend::Postgres {
            // One round trip (data-modifying WITH queries, different tables).
            let row = tx
                .query_one(
                    "WITH items AS (DELETE FROM cart_items WHERE user_id = $1 RETURNING 1), \
                       coupons AS (DELETE FROM cart_coupons WHERE user_id = $1 RETURNING 1) \
                     SELECT (SELECT COUNT(*) FROM items) AS items, \
                       (SELECT COUNT(*) FROM coupons) AS coupons",
                    vec![user],
                )
                .await?;
            let count = |col| row.i64(col).map(|n| u64::try_from(n).unwrap_or(0));
            return Ok((count("items")?, count("coupons")?));
        }
        let items = tx
            .exec(
                "DELETE FROM cart_items WHERE user_id = $1",
                vec![user.clone()],
            )
            .await?;
        let coupons = tx
            .exec("DELETE FROM cart_coupons WHERE user_id = $1", vec![user])
            .await?;
        Ok((items, coupons))
    }

    /// The cart: lines of the selected store, applied coupons still usable, the store.
    pub async fn get_cart(&self, tx: &Tx, ctx: &Ctx) -> DomainResult<CartView> {
        let state = self.cart_state(tx, ctx).await?;
        Ok(CartView {
            item_count: state.items.iter().map(|i| i.quantity).sum(),
            items: state.items,
            coupons: state.coupons,
            store: state.store,
        })
    }

    /// Adds `quantity` (1–99) units of a product to the cart of the selected store; an
    /// existing line grows. Records `cart_add_item`.
    pub async fn add_to_cart(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        product_id: Uuid,
        quantity: i64,
    ) -> DomainResult<AddToCartResult> {
        self.add_to_cart_in(tx, ctx, product_id, quantity, None)
            .await
    }

    /// [`Shop::add_to_cart`] for a caller that knows which store the user selected
    /// (`store_hint`, e.g. a session that selected it): on PostgreSQL, when the hint is right
    /// and the session's event can be held back without a write, the checks and the new line
    /// are one statement instead of two. A wrong hint only costs the second statement.
    pub async fn add_to_cart_in(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        product_id: Uuid,
        quantity: i64,
        store_hint: Option<Uuid>,
    ) -> DomainResult<AddToCartResult> {
        if !(1..=MAX_ADD_QUANTITY).contains(&quantity) {
            return Err(DomainError::Invalid {
                code: "invalid_quantity",
                message: format!(
                    "quantity must be between 1 and {MAX_ADD_QUANTITY}, got {quantity}"
                ),
            });
        }
        if let Some(cart) = ctx.exact_cart() {
            return self
                .add_to_session_cart(tx, ctx, cart, product_id, quantity)
                .await;
        }
        let codec = tx.codec();
        // The event is recorded after the line when that writes nothing and cannot be refused
        // (a rejection must leave the session untouched); otherwise before, as a first event
        // checks the session before any work.
        let hint = store_hint.filter(|_| {
            tx.backend() == Backend::Postgres && ctx.events_record_freely(tx.backend())
        });
        // One round trip: the product, the selected store, its stock and what the cart holds
        // (and, with a store hint, the line itself when the store is the hinted one and the
        // stock suffices).
        let read = "SELECT p.sku, p.name, p.category, p.brand, p.price, us.store_id, \
               (SELECT i.quantity FROM store_inventory i \
                WHERE i.store_id = us.store_id AND i.product_id = p.id) AS stock, \
               (SELECT ci.quantity FROM cart_items ci WHERE ci.user_id = $2 \
                AND ci.store_id = us.store_id AND ci.product_id = p.id) AS in_cart \
             FROM products p LEFT JOIN sim_user_stores us ON us.user_id = $2 \
             WHERE p.id = $1";
        let row = match hint {
            Some(store) => {
                tx.query_opt(
                    &format!(
                        "WITH r AS ({read}), \
                         line AS ( \
                           INSERT INTO cart_items \
                             (id, user_id, store_id, product_id, quantity, created_at, updated_at) \
                           SELECT $3, $2, r.store_id, $1, $5, $6, $6 FROM r \
                           WHERE r.store_id = $4 \
                             AND COALESCE(r.stock, 0) >= COALESCE(r.in_cart, 0) + $5 \
                           {LINE_UPSERT}) \
                         SELECT r.*, line.id AS line_id, line.quantity AS line_quantity \
                         FROM r LEFT JOIN line ON true"
                    ),
                    vec![
                        codec.uuid(product_id),
                        codec.uuid(ctx.user_id),
                        codec.uuid(cart_item_id(ctx.user_id, store, product_id)),
                        codec.uuid(store),
                        quantity.into(),
                        codec.ts(ctx.now),
                    ],
                )
                .await?
            }
            None => {
                tx.query_opt(read, vec![codec.uuid(product_id), codec.uuid(ctx.user_id)])
                    .await?
            }
        };
        let Some(row) = row else {
            return Err(product_not_found(product_id));
        };
        let Some(store_id) = row.opt_uuid("store_id")? else {
            return Err(no_store_selected());
        };
        let stock = row.opt_i64("stock")?.unwrap_or(0);
        let in_cart = row.opt_i64("in_cart")?.unwrap_or(0);
        enough_stock(stock, in_cart, quantity)?;
        let facts = ProductFacts::of(&row)?;
        let event = facts.add_event(product_id, quantity);
        let line = match hint.and_then(|_| row.opt_uuid("line_id").transpose()) {
            Some(id) => {
                let line = (id?, row.i64("line_quantity")?);
                self.record_event(tx, ctx, "cart_add_item", event, SessionEnd::Open)
                    .await?;
                line
            }
            None => {
                self.record_event(tx, ctx, "cart_add_item", event, SessionEnd::Open)
                    .await?;
                let line = tx
                    .query_one(
                        &format!(
                            "INSERT INTO cart_items \
                               (id, user_id, store_id, product_id, quantity, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $6) {LINE_UPSERT}"
                        ),
                        vec![
                            codec.uuid(cart_item_id(ctx.user_id, store_id, product_id)),
                            codec.uuid(ctx.user_id),
                            codec.uuid(store_id),
                            codec.uuid(product_id),
                            quantity.into(),
                            codec.ts(ctx.now),
                        ],
                    )
                    .await?;
                (line.uuid("id")?, line.i64("quantity")?)
            }
        };
        let (line_id, total_quantity) = line;
        Ok(AddToCartResult {
            success: true,
            cart_item: facts.line(line_id, product_id, total_quantity),
        })
    }

    /// [`Shop::add_to_cart_in`] with the cart in a [`SessionCart`]: the product and the
    /// selected store's stock (read with the session's other expected adds at the first of
    /// them, see [`SessionCart::expect`]), the checks against the lines held, the event.
    async fn add_to_session_cart(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        cart: &SessionCart,
        product_id: Uuid,
        quantity: i64,
    ) -> DomainResult<AddToCartResult> {
        let Some(store) = cart.store() else {
            return Err(no_store_selected());
        };
        if let Some(ids) = cart.to_read(store.id, product_id) {
            let read = self.read_for_adds(tx, store.id, &ids).await?;
            cart.keep_read(store.id, read);
        }
        let Some((facts, stock)) = cart.read_product(store.id, product_id) else {
            return Err(product_not_found(product_id));
        };
        enough_stock(stock, cart.quantity_of(product_id), quantity)?;
        let event = facts.add_event(product_id, quantity);
        let line = facts.line(
            cart_item_id(ctx.user_id, store.id, product_id),
            product_id,
            quantity,
        );
        self.record_event(tx, ctx, "cart_add_item", event, SessionEnd::Open)
            .await?;
        Ok(AddToCartResult {
            success: true,
            cart_item: cart.add(line, ctx.now),
        })
    }

    /// Products `ids` as adds in `store` need them: their facts and the store's stock (0 for
    /// a product the store does not stock). Unknown ids are left out.
    async fn read_for_adds(
        &self,
        tx: &Tx,
        store: Uuid,
        ids: &[Uuid],
    ) -> DomainResult<Vec<ReadProduct>> {
        let codec = tx.codec();
        let listed = padded_uuid_values(tx, ids);
        let n = listed.len();
        let mut values = Vec::with_capacity(n + 1);
        values.push(codec.uuid(store));
        values.extend(listed);
        let rows = tx
            .query(
                &format!(
                    "SELECT p.id, p.sku, p.name, p.category, p.brand, p.price, \
                       (SELECT i.quantity FROM store_inventory i \
                        WHERE i.store_id = $1 AND i.product_id = p.id) AS stock \
                     FROM products p WHERE p.id IN ({})",
                    in_list(n, 2)
                ),
                values,
            )
            .await?;
        rows.iter()
            .map(|r| {
                let stock = r.opt_i64("stock")?.unwrap_or(0);
                Ok((r.uuid("id")?, ProductFacts::of(r)?, stock))
            })
            .collect::<Result<_, StoreError>>()
            .map_err(Into::into)
    }

    /// Empties the cart (lines and coupons). With a session, records `cart_abandon` and marks
    /// the session abandoned.
    pub async fn clear_cart(&self, tx: &Tx, ctx: &Ctx) -> DomainResult<ClearCartResult> {
        // The session is checked (or refused) before deleting; the event, which carries the
        // count, is recorded after.
        let slot = self.event_slot(tx, ctx, SessionEnd::Abandoned).await?;
        let (items_removed, coupons_removed) = match ctx.exact_cart() {
            Some(cart) => cart.clear(),
            None => self.delete_cart(tx, ctx.user_id).await?,
        };
        if let Some(slot) = slot {
            let payload = json!({ "items_removed": items_removed });
            self.fill_slot(tx, ctx, slot, "cart_abandon", payload)
                .await?;
        }
        Ok(ClearCartResult {
            success: true,
            items_removed,
            coupons_removed,
        })
    }

    /// The user's active offers, split into those that would discount the current cart and
    /// those that would not (with the reason). Records `view_coupons` with both counts and the
    /// coupon ids of each list (`eligible_ids`, `ineligible_ids`).
    pub async fn eligible_coupons(&self, tx: &Tx, ctx: &Ctx) -> DomainResult<EligibleCoupons> {
        let CartState {
            items,
            coupons: offers,
            ..
        } = self.cart_and_coupons(tx, ctx, CouponsOf::Active).await?;
        let lines: Vec<PricedLine> = items.iter().map(CartItemView::priced).collect();
        let cart_subtotal: Money = lines.iter().map(PricedLine::amount).sum();
        let mut eligible = Vec::new();
        let mut ineligible = Vec::new();
        for coupon in offers {
            match ineligibility(&lines, &coupon) {
                None => eligible.push(coupon),
                Some(reason) => ineligible.push(IneligibleCoupon { coupon, reason }),
            }
        }
        self.record_event(
            tx,
            ctx,
            "view_coupons",
            // Counts for a quick look; ids so an export can tell which offers were shown.
            json!({"eligible": eligible.len(), "ineligible": ineligible.len(),
                   "eligible_ids": eligible.iter().map(|c| c.id).collect::<Vec<_>>(),
                   "ineligible_ids": ineligible.iter().map(|i| i.coupon.id).collect::<Vec<_>>()}),
            SessionEnd::Open,
        )
        .await?;
        Ok(EligibleCoupons {
            eligible,
            ineligible,
            cart_subtotal,
        })
    }

    /// Applies a wallet offer to the cart (idempotent per user and coupon). Records
    /// `coupon_apply`.
    pub async fn apply_coupon(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        coupon_id: Uuid,
    ) -> DomainResult<ApplyCouponResult> {
        if let Some(cart) = ctx.exact_cart() {
            // The offers the session's eligibility read, else a read of this one.
            let offer = match cart.offer(coupon_id, ctx.now) {
                Some(known) => known,
                None => self.active_offers(tx, ctx, Some(&[coupon_id])).await?.pop(),
            };
            let Some((coupon, until)) = offer else {
                return Err(not_in_wallet(coupon_id));
            };
            self.record_applied(tx, ctx, &coupon).await?;
            cart.apply(&coupon, until);
            return Ok(ApplyCouponResult {
                success: true,
                coupon,
                summary: cart.state(ctx.now).summary(),
            });
        }
        let codec = tx.codec();
        if tx.backend() == Backend::Postgres && ctx.events_record_freely(tx.backend()) {
            // One statement: the offer, its application and the cart to price (the event,
            // which cannot be refused here, is held for later).
            let (state, offer) = self
                .read_cart(tx, ctx, CouponsOf::Applied, Some(coupon_id))
                .await?;
            let Some(coupon) = offer else {
                return Err(not_in_wallet(coupon_id));
            };
            self.record_applied(tx, ctx, &coupon).await?;
            return Ok(ApplyCouponResult {
                success: true,
                coupon,
                summary: state.summary(),
            });
        }
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {COUPON_COLS} FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id \
                     WHERE uc.user_id = $1 AND uc.coupon_id = $2 AND {}",
                    active_offer_condition("$3")
                ),
                vec![
                    codec.uuid(ctx.user_id),
                    codec.uuid(coupon_id),
                    codec.ts(ctx.now),
                ],
            )
            .await?;
        let Some(row) = row else {
            return Err(not_in_wallet(coupon_id));
        };
        let coupon = rows::coupon(&row)?;
        self.record_applied(tx, ctx, &coupon).await?;
        tx.exec(
            "INSERT INTO cart_coupons (user_id, coupon_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, coupon_id) DO NOTHING",
            vec![
                codec.uuid(ctx.user_id),
                codec.uuid(coupon_id),
                codec.ts(ctx.now),
            ],
        )
        .await?;
        let summary = self.cart_state(tx, ctx).await?.summary();
        Ok(ApplyCouponResult {
            success: true,
            coupon,
            summary,
        })
    }

    /// Records `coupon_apply` for `coupon`.
    async fn record_applied(&self, tx: &Tx, ctx: &Ctx, coupon: &Coupon) -> DomainResult<()> {
        self.record_event(
            tx,
            ctx,
            "coupon_apply",
            json!({"coupon_id": coupon.id, "code": coupon.code}),
            SessionEnd::Open,
        )
        .await
    }

    /// The priced cart, exactly as checkout would price it now.
    pub async fn cart_summary(&self, tx: &Tx, ctx: &Ctx) -> DomainResult<CartSummary> {
        Ok(self.cart_state(tx, ctx).await?.summary())
    }
}

/// Why `coupon` alone would not discount the cart `lines`, or `None` when it would.
pub fn ineligibility(lines: &[PricedLine], coupon: &Coupon) -> Option<String> {
    if lines.is_empty() {
        return Some("cart is empty".to_string());
    }
    let alone = price_cart(lines, std::slice::from_ref(coupon));
    if alone.discount_total > Money::ZERO {
        return None;
    }
    let target = coupon
        .category_or_brand
        .as_deref()
        .map(|t| t.trim().to_lowercase());
    // The amounts the coupon would be judged on: the subtotal, or each matching line.
    let amounts: Vec<Money> = match coupon.kind {
        CouponKind::Frontstore => vec![alone.subtotal],
        CouponKind::Category | CouponKind::Brand => lines
            .iter()
            .filter(|l| {
                let value = match coupon.kind {
                    CouponKind::Category => Some(l.category.trim().to_lowercase()),
                    _ => l.brand.as_deref().map(|b| b.trim().to_lowercase()),
                };
                value.is_some() && value == target
            })
            .map(PricedLine::amount)
            .collect(),
    };
    if amounts.is_empty() {
        return Some("no matching items in cart".to_string());
    }
    match coupon.min_purchase_amount {
        Some(min) if !amounts.iter().any(|a| meets_minimum(coupon, *a)) => {
            Some(format!("minimum purchase {min} not met"))
        }
        _ => Some("no discount on this cart".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::DiscountType;

    fn coupon(kind: CouponKind, target: Option<&str>, min: Option<i64>) -> Coupon {
        Coupon {
            id: Uuid::from_u128(1),
            code: "C1".into(),
            kind,
            discount_details: String::new(),
            category_or_brand: target.map(str::to_string),
            discount_type: DiscountType::Fixed,
            discount_value: Money(100),
            min_purchase_amount: min.map(Money),
            max_discount: None,
            expiration_date: None,
            is_active: true,
        }
    }

    #[test]
    fn ineligibility_reasons() {
        let lines = vec![PricedLine {
            product_id: Uuid::from_u128(9),
            category: "Snacks".into(),
            brand: Some("Crunch".into()),
            unit_price: Money(500),
            quantity: 2,
        }];
        assert_eq!(
            ineligibility(&[], &coupon(CouponKind::Frontstore, None, None)).as_deref(),
            Some("cart is empty")
        );
        assert_eq!(
            ineligibility(&lines, &coupon(CouponKind::Frontstore, None, None)),
            None
        );
        assert_eq!(
            ineligibility(&lines, &coupon(CouponKind::Category, Some("snacks"), None)),
            None
        );
        assert_eq!(
            ineligibility(&lines, &coupon(CouponKind::Brand, Some("Other"), None)).as_deref(),
            Some("no matching items in cart")
        );
        assert_eq!(
            ineligibility(
                &lines,
                &coupon(CouponKind::Brand, Some("crunch"), Some(2500))
            )
            .as_deref(),
            Some("minimum purchase 25.00 not met")
        );
        assert_eq!(
            ineligibility(&lines, &coupon(CouponKind::Frontstore, None, Some(1001))).as_deref(),
            Some("minimum purchase 10.01 not met")
        );
        let mut free = coupon(CouponKind::Frontstore, None, None);
        free.discount_type = DiscountType::FreeShipping;
        assert_eq!(
            ineligibility(&lines, &free).as_deref(),
            Some("no discount on this cart")
        );
    }
}
