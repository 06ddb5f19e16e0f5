//! Checkout (cart → order, stock decremented, offers redeemed) and order history.

use std::collections::HashMap;

use chrono::SecondsFormat;
use serde_json::json;
use uuid::Uuid;

use crate::ids;
use crate::money::Money;
use crate::store::combine::{exec_all, shift_placeholders};
use crate::store::{Backend, Codec, Row, Stmt, StoreError, Tx};

use super::catalog_reads::validate_page;
use super::rows::{NOT_PADDING, in_list, pad_rows, padded_uuid_values, placeholders};
use super::sessions::{EventSlot, SessionEnd};
use super::{
    CartSummary, CheckoutResult, Ctx, DomainError, DomainResult, OrderItemView, OrderView,
    OrdersPage, RejectCode, Shop, Totals,
};

/// The deterministic id of the order a user places at `now`, in shopping session `session`
/// if the checkout is part of one. The same checkout always gets the same id (a run is
/// reproducible, a resumed run finds its orders); a session's id names its run, so another
/// run over the same simulated days on the same database — same users, same instants — places
/// orders of its own rather than colliding with the first run's.
pub fn order_id(user_id: Uuid, session: Option<Uuid>, now: chrono::DateTime<chrono::Utc>) -> Uuid {
    let at = now.to_rfc3339_opts(SecondsFormat::Nanos, true);
    match session {
        Some(session) => ids::child_uuid(&session, "order", &at),
        None => ids::child_uuid(&user_id, "order", &at),
    }
}

/// Order lines from cart lines and their pricing, in product-id order (the order stock is
/// decremented in and order items are listed in).
fn order_items(items: &[super::CartItemView], summary: &CartSummary) -> Vec<OrderItemView> {
    let mut out: Vec<OrderItemView> = items
        .iter()
        .map(|item| {
            let discount = summary
                .item_discounts
                .iter()
                .find(|d| d.product_id == item.product_id);
            let discount_amount = discount.map_or(Money::ZERO, |d| d.amount);
            OrderItemView {
                product_id: item.product_id,
                product_name: item.product_name.clone(),
                product_price: item.unit_price,
                quantity: item.quantity,
                applied_coupon_id: discount.map(|d| d.coupon_id),
                discount_amount,
                line_total: item.line_total - discount_amount,
            }
        })
        .collect();
    out.sort_by_key(|i| i.product_id);
    out
}

impl Shop {
    /// Turns the cart of the selected store into a completed order: prices it with
    /// [`super::price_cart`], decrements stock (never below zero, even under concurrency),
    /// records the order and its items, marks the offers that gave a discount as used, empties
    /// the cart and completes the session. On any error nothing of this is left behind.
    pub async fn checkout(&self, tx: &Tx, ctx: &Ctx) -> DomainResult<CheckoutResult> {
        let state = self.cart_state(tx, ctx).await?;
        let (Some(store), false) = (state.store.as_ref(), state.items.is_empty()) else {
            return Err(DomainError::rejected(
                RejectCode::EmptyCart,
                "the cart is empty; add products before checking out",
            ));
        };
        let summary = state.summary();
        let order = OrderView {
            id: order_id(ctx.user_id, ctx.session_id, ctx.now),
            store_id: Some(store.id),
            items: order_items(&state.items, &summary),
            totals: Totals {
                subtotal: summary.subtotal,
                discount_total: summary.discount_total,
                final_total: summary.final_total,
            },
            status: "completed".to_string(),
            item_count: state.items.iter().map(|i| i.quantity).sum(),
            shopping_session_id: ctx.session_id,
            frontstore_coupon_id: summary.frontstore_coupon_id,
            created_at: ctx.now,
        };
        let held = ctx.events.as_ref().map(super::SessionEvents::snapshot);
        match self.write_order(tx, ctx, store.id, &order, &summary).await {
            Ok(()) => Ok(CheckoutResult {
                success: true,
                order,
            }),
            Err(e) => {
                // An event held back by this checkout goes with it.
                if let (Some(buffer), Some(held)) = (&ctx.events, held) {
                    buffer.restore(held);
                }
                Err(e)
            }
        }
    }

    /// Takes the stock, then records the order. A rejection (stock short half-way, a session
    /// of another user) leaves nothing behind and the caller's transaction usable: stock
    /// already taken is put back, which costs a statement only when it happens, where a
    /// savepoint would cost two round trips on every checkout. A database error leaves the
    /// transaction to be rolled back by the caller, as every caller does. On PostgreSQL, when
    /// the event cannot be refused (it is held for the session's last statement), one
    /// statement takes the stock and writes the order ([`Shop::take_stock_and_record`]).
    async fn write_order(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        store_id: Uuid,
        order: &OrderView,
        summary: &CartSummary,
    ) -> DomainResult<()> {
        if tx.backend() == Backend::Postgres
            && distinct_products(&order.items)
            && ctx.events_record_freely(tx.backend())
        {
            return self
                .take_stock_and_record(tx, ctx, store_id, order, summary)
                .await;
        }
        self.take_stock(tx, store_id, &order.items).await?;
        match self.record_order(tx, ctx, store_id, order, summary).await {
            Err(e @ DomainError::Store(_)) => Err(e),
            Err(e) => {
                put_back_stock(tx, store_id, &order.items).await?;
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    /// Decrements the store's stock of every item (never below zero, even under concurrency);
    /// on a shortfall puts back what it took and rejects the checkout.
    async fn take_stock(
        &self,
        tx: &Tx,
        store_id: Uuid,
        items: &[OrderItemView],
    ) -> DomainResult<()> {
        let codec = tx.codec();
        // One statement needs distinct products (a cart's lines for one store are); the items
        // are in product-id order, so neighbours tell.
        if tx.backend() == Backend::Postgres && items.len() > 1 && distinct_products(items) {
            let stmt = take_stock_stmt(codec, store_id, items, Vec::new());
            let row = tx.query_opt(&stmt.sql, stmt.values).await?;
            return shortfall(row.as_ref(), items);
        }
        // Product-id order: concurrent checkouts lock rows in the same order (no deadlocks).
        for (n, item) in items.iter().enumerate() {
            let updated = tx
                .exec(
                    "UPDATE store_inventory SET quantity = quantity - $1 \
                     WHERE store_id = $2 AND product_id = $3 AND quantity >= $1",
                    vec![
                        item.quantity.into(),
                        codec.uuid(store_id),
                        codec.uuid(item.product_id),
                    ],
                )
                .await?;
            if updated == 0 {
                put_back_stock(tx, store_id, &items[..n]).await?;
                return Err(short_of(item));
            }
        }
        Ok(())
    }

    /// Records the order's writes ([`order_writes`]: one round trip on PostgreSQL, independent
    /// writes, see [`crate::store::combine`]) and the checkout's event, whose session is
    /// checked (or refused) before the writes.
    async fn record_order(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        store_id: Uuid,
        order: &OrderView,
        summary: &CartSummary,
    ) -> DomainResult<()> {
        let slot = self.event_slot(tx, ctx, SessionEnd::Completed).await?;
        exec_all(tx, order_writes(tx, ctx, store_id, order, summary, "")).await?;
        self.order_recorded(tx, ctx, slot, order, summary).await
    }

    /// [`Shop::write_order`] in one statement (PostgreSQL, distinct products, an event that
    /// records freely): the stock statement of [`take_stock_stmt`] with the order's writes,
    /// each of which happens only if no item is short, so a shortfall leaves nothing behind.
    /// The event is recorded (held, written nothing now) once the order is in.
    async fn take_stock_and_record(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        store_id: Uuid,
        order: &OrderView,
        summary: &CartSummary,
    ) -> DomainResult<()> {
        // Writes nothing now (the event records freely); a shortfall's rejection restores
        // the held events as they were (see `Shop::checkout`).
        let slot = self.event_slot(tx, ctx, SessionEnd::Completed).await?;
        let writes = order_writes(
            tx,
            ctx,
            store_id,
            order,
            summary,
            " AND NOT EXISTS (SELECT 1 FROM short)",
        );
        let stmt = take_stock_stmt(tx.codec(), store_id, &order.items, writes);
        let row = tx.query_opt(&stmt.sql, stmt.values).await?;
        shortfall(row.as_ref(), &order.items)?;
        self.order_recorded(tx, ctx, slot, order, summary).await
    }

    /// Once the order is written: records the checkout's event in the slot taken before the
    /// writes, and the session cart is empty, in memory as it would be in the database, with
    /// the offers the order used no longer active (the others are as they were).
    async fn order_recorded(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        slot: Option<EventSlot>,
        order: &OrderView,
        summary: &CartSummary,
    ) -> DomainResult<()> {
        if let Some(slot) = slot {
            let payload = json!({"order_id": order.id, "final_total": order.totals.final_total,
                                 "item_count": order.item_count});
            self.fill_slot(tx, ctx, slot, "checkout_complete", payload)
                .await?;
        }
        if let Some(cart) = ctx.exact_cart() {
            cart.clear();
            cart.drop_offers(&used_offers(summary));
        }
        Ok(())
    }

    /// The user's orders, newest first, with their items (three queries for any page size).
    pub async fn list_orders(
        &self,
        tx: &Tx,
        ctx: &Ctx,
        limit: i64,
        offset: i64,
    ) -> DomainResult<OrdersPage> {
        validate_page(limit, offset)?;
        let codec = tx.codec();
        let total = tx
            .query_one(
                "SELECT COUNT(*) AS n FROM orders WHERE user_id = $1",
                vec![codec.uuid(ctx.user_id)],
            )
            .await?
            .i64("n")?;
        let rows = tx
            .query(
                "SELECT id, store_id, subtotal, discount_total, final_total, status, item_count, \
                   shopping_session_id, created_at FROM orders WHERE user_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
                vec![codec.uuid(ctx.user_id), limit.into(), offset.into()],
            )
            .await?;
        let mut orders = rows.iter().map(order_view).collect::<Result<Vec<_>, _>>()?;
        attach_items(tx, ctx.user_id, &mut orders).await?;
        Ok(OrdersPage { orders, total })
    }
}

/// The offers that gave the order a discount, by coupon id.
fn used_offers(summary: &CartSummary) -> Vec<Uuid> {
    let mut used: Vec<Uuid> = summary
        .item_discounts
        .iter()
        .map(|d| d.coupon_id)
        .chain(summary.frontstore_coupon_id)
        .collect();
    used.sort();
    used.dedup();
    used
}

/// A cart's lines are for distinct products (the lines of one store are; the items are in
/// product-id order, so neighbours tell).
fn distinct_products(items: &[OrderItemView]) -> bool {
    items.windows(2).all(|w| w[0].product_id != w[1].product_id)
}

/// The writes of an order: the order and its items, the offers that gave a discount marked as
/// used, and (for a cart in the database) the cart emptied. Independent of each other (see
/// [`crate::store::combine`]). `guard` is appended to every statement's condition (`""`, or
/// `" AND …"` to make the writes conditional in [`take_stock_stmt`]).
fn order_writes(
    tx: &Tx,
    ctx: &Ctx,
    store_id: Uuid,
    order: &OrderView,
    summary: &CartSummary,
    guard: &str,
) -> Vec<Stmt> {
    let codec = tx.codec();
    let mut writes = vec![Stmt::new(
        format!(
            "INSERT INTO orders (id, user_id, store_id, subtotal, discount_total, final_total, \
               status, item_count, shopping_session_id, is_simulated, created_at) \
             SELECT * FROM (VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)) AS v \
             WHERE {NOT_PADDING}{guard}"
        ),
        vec![
            codec.uuid(order.id),
            codec.uuid(ctx.user_id),
            codec.uuid(store_id),
            codec.money(order.totals.subtotal),
            codec.money(order.totals.discount_total),
            codec.money(order.totals.final_total),
            order.status.clone().into(),
            order.item_count.into(),
            codec.opt_uuid(order.shopping_session_id),
            ctx.simulated.into(),
            codec.ts(ctx.now),
        ],
    )];
    let mut values = Vec::with_capacity(order.items.len() * 9);
    for (n, item) in order.items.iter().enumerate() {
        values.extend([
            codec.uuid(ids::child_uuid(&order.id, "item", &n.to_string())),
            codec.uuid(order.id),
            codec.uuid(item.product_id),
            item.product_name.clone().into(),
            codec.money(item.product_price),
            item.quantity.into(),
            codec.opt_uuid(item.applied_coupon_id),
            codec.money(item.discount_amount),
            codec.money(item.line_total),
        ]);
    }
    let rows = pad_rows(&mut values, 9, tx.backend());
    writes.push(Stmt::new(
        format!(
            "INSERT INTO order_items (id, order_id, product_id, product_name, product_price, \
               quantity, applied_coupon_id, discount_amount, line_total) \
             SELECT * FROM (VALUES {}) AS v WHERE {NOT_PADDING}{guard}",
            placeholders(rows, 9, 1)
        ),
        values,
    ));
    let used = used_offers(summary);
    if !used.is_empty() {
        let mut values = vec![
            codec.uuid(order.id),
            codec.ts(ctx.now),
            codec.uuid(ctx.user_id),
        ];
        values.extend(padded_uuid_values(tx, &used));
        writes.push(Stmt::new(
            format!(
                "UPDATE user_coupons SET status = 'used', order_id = $1, redeemed_at = $2 \
                 WHERE user_id = $3 AND status = 'active' AND coupon_id IN ({}){guard}",
                in_list(values.len() - 3, 4)
            ),
            values,
        ));
    }
    // A cart held in memory has no rows to delete (see `SessionCart`).
    if ctx.exact_cart().is_none() {
        writes.push(Stmt::new(
            format!("DELETE FROM cart_items WHERE user_id = $1{guard}"),
            vec![codec.uuid(ctx.user_id)],
        ));
        writes.push(Stmt::new(
            format!("DELETE FROM cart_coupons WHERE user_id = $1{guard}"),
            vec![codec.uuid(ctx.user_id)],
        ));
    }
    writes
}

/// Puts back the stock a checkout took for `items` (rows it holds locked: no waiting).
async fn put_back_stock(tx: &Tx, store_id: Uuid, items: &[OrderItemView]) -> DomainResult<()> {
    let codec = tx.codec();
    let writes = items
        .iter()
        .map(|item| {
            Stmt::new(
                "UPDATE store_inventory SET quantity = quantity + $1 \
                 WHERE store_id = $2 AND product_id = $3",
                vec![
                    item.quantity.into(),
                    codec.uuid(store_id),
                    codec.uuid(item.product_id),
                ],
            )
        })
        .collect();
    exec_all(tx, writes).await?;
    Ok(())
}

/// [`Shop::take_stock`] in one statement (PostgreSQL, distinct products): locks the store's
/// rows of every item in product-id order (the order every checkout and the restock lock in),
/// finds the first item, in `items` order, that is short (or has no stock row), and takes
/// every item's units only if none is. A shortfall takes nothing, so nothing is put back; it is
/// rejected as the line-by-line path rejects it (the same first short item), see
/// [`shortfall`]. `writes` join the statement after the stock's own queries: they may refer to
/// `short` (the short item's row, if any), as [`order_writes`]' guard does.
fn take_stock_stmt(
    codec: Codec,
    store_id: Uuid,
    items: &[OrderItemView],
    writes: Vec<Stmt>,
) -> Stmt {
    let mut want = Vec::with_capacity(items.len() * 3 + 3);
    for (n, item) in items.iter().enumerate() {
        want.extend([
            codec.uuid(item.product_id),
            item.quantity.into(),
            (n as i64).into(),
        ]);
    }
    let padded = pad_rows(&mut want, 3, codec.backend());
    let mut values = vec![codec.uuid(store_id)];
    values.extend(want);
    // `locked` is materialised: its rows are locked (in its order) before the update reads
    // the short item; the update then changes the newest versions of rows this statement holds.
    // `taken`, like every data-modifying WITH query, runs whether or not it is read.
    let mut sql = format!(
        "WITH want (product_id, qty, n) AS (SELECT * FROM (VALUES {}) AS v WHERE {NOT_PADDING}), \
         locked AS MATERIALIZED (SELECT i.product_id, i.quantity FROM store_inventory i \
           WHERE i.store_id = $1 AND i.product_id IN (SELECT product_id FROM want) \
           ORDER BY i.product_id FOR UPDATE), \
         short AS (SELECT w.n FROM want w LEFT JOIN locked l ON l.product_id = w.product_id \
           WHERE l.quantity IS NULL OR l.quantity < w.qty ORDER BY w.n LIMIT 1), \
         taken AS (UPDATE store_inventory i SET quantity = i.quantity - w.qty FROM want w \
           WHERE i.store_id = $1 AND i.product_id = w.product_id \
             AND NOT EXISTS (SELECT 1 FROM short) RETURNING 1)",
        placeholders(padded, 3, 2)
    );
    for (n, w) in writes.into_iter().enumerate() {
        sql.push_str(&format!(", order{n} AS ("));
        sql.push_str(&shift_placeholders(&w.sql, values.len()));
        sql.push(')');
        values.extend(w.values);
    }
    sql.push_str(" SELECT (SELECT n FROM short) AS short");
    Stmt::new(sql, values)
}

/// The answer of [`take_stock_stmt`]: the rejection of the first short item, if any.
fn shortfall(row: Option<&Row>, items: &[OrderItemView]) -> DomainResult<()> {
    let row = row.ok_or_else(|| StoreError::Decode {
        column: "short".into(),
        reason: "the stock statement returned no row".into(),
    })?;
    let Some(n) = row.opt_i64("short")? else {
        return Ok(());
    };
    let item = usize::try_from(n)
        .ok()
        .and_then(|n| items.get(n))
        .ok_or_else(|| StoreError::Decode {
            column: "short".into(),
            reason: format!("no item {n} in the checkout"),
        })?;
    Err(short_of(item))
}

/// The rejection of a checkout short of `item`'s units.
fn short_of(item: &OrderItemView) -> DomainError {
    DomainError::rejected(
        RejectCode::InsufficientInventory,
        format!(
            "not enough units of {} ({}) left in the store for {} in the cart",
            item.product_name, item.product_id, item.quantity
        ),
    )
}

/// The order placed in shopping session `session_id`, if any (with its items): how a resumed
/// host reconciles a session whose checkout may have reached an API that cannot say so.
pub async fn session_order(tx: &Tx, session_id: Uuid) -> DomainResult<Option<OrderView>> {
    let rows = tx
        .query(
            "SELECT id, user_id, store_id, subtotal, discount_total, final_total, status, \
               item_count, shopping_session_id, created_at FROM orders \
             WHERE shopping_session_id = $1 ORDER BY created_at, id LIMIT 1",
            vec![tx.codec().uuid(session_id)],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let user_id = row.uuid("user_id")?;
    let mut orders = vec![order_view(row)?];
    attach_items(tx, user_id, &mut orders).await?;
    Ok(orders.pop())
}

/// Fills the orders' items and frontstore coupons (three queries for any number of orders).
async fn attach_items(tx: &Tx, user_id: Uuid, orders: &mut [OrderView]) -> DomainResult<()> {
    if orders.is_empty() {
        return Ok(());
    }
    let codec = tx.codec();
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    let listed = padded_uuid_values(tx, &ids);
    let item_rows = tx
        .query(
            &format!(
                "SELECT order_id, product_id, product_name, product_price, quantity, \
                   applied_coupon_id, discount_amount, line_total FROM order_items \
                 WHERE order_id IN ({}) ORDER BY order_id, product_id",
                in_list(listed.len(), 1)
            ),
            listed.clone(),
        )
        .await?;
    // The frontstore coupon is not an orders column: it is the redeemed frontstore offer.
    let mut values = listed;
    values.push(codec.uuid(user_id));
    let frontstore_rows = tx
        .query(
            &format!(
                "SELECT uc.order_id, uc.coupon_id FROM user_coupons uc \
                 JOIN coupons c ON c.id = uc.coupon_id \
                 WHERE uc.order_id IN ({}) AND uc.user_id = ${} AND c.type = 'frontstore'",
                in_list(values.len() - 1, 1),
                values.len()
            ),
            values,
        )
        .await?;
    let mut items: HashMap<Uuid, Vec<OrderItemView>> = HashMap::new();
    for r in &item_rows {
        items
            .entry(r.uuid("order_id")?)
            .or_default()
            .push(order_item_view(r)?);
    }
    let mut frontstore: HashMap<Uuid, Uuid> = HashMap::new();
    for r in &frontstore_rows {
        frontstore.insert(r.uuid("order_id")?, r.uuid("coupon_id")?);
    }
    for order in orders.iter_mut() {
        order.items = items.remove(&order.id).unwrap_or_default();
        order.frontstore_coupon_id = frontstore.get(&order.id).copied();
    }
    Ok(())
}

fn order_view(r: &Row) -> Result<OrderView, StoreError> {
    Ok(OrderView {
        id: r.uuid("id")?,
        store_id: r.opt_uuid("store_id")?,
        items: Vec::new(),
        totals: Totals {
            subtotal: r.money("subtotal")?,
            discount_total: r.money("discount_total")?,
            final_total: r.money("final_total")?,
        },
        status: r.string("status")?,
        item_count: r.i64("item_count")?,
        shopping_session_id: r.opt_uuid("shopping_session_id")?,
        frontstore_coupon_id: None,
        created_at: r.ts("created_at")?,
    })
}

fn order_item_view(r: &Row) -> Result<OrderItemView, StoreError> {
    Ok(OrderItemView {
        product_id: r.uuid("product_id")?,
        product_name: r.string("product_name")?,
        product_price: r.money("product_price")?,
        quantity: r.i64("quantity")?,
        applied_coupon_id: r.opt_uuid("applied_coupon_id")?,
        discount_amount: r.money("discount_amount")?,
        line_total: r.money("line_total")?,
    })
}
