//! The VoiceOffers endpoints: thin handlers that extract, call the domain and answer JSON.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiCtx, ApiQuery, UuidPath, WriteJson, WriteNoBody};
use super::idempotency::run_write;
use super::state::AppState;
use crate::domain::{
    CartSummary, CartView, Ctx, EligibleCoupons, OrdersPage, ProductDetail, ProductFilter,
    ProductPage, Shop, StoresPage, WalletView,
};
use crate::store::Tx;

/// Default page size of product and order lists.
const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
const MAX_LIMIT: i64 = 500;
/// Largest quantity one cart add may ask for.
const MAX_QUANTITY: i64 = 1_000_000;

/// A write operation (what idempotency wraps).
#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    SelectStore(Uuid),
    AddToCart {
        product_id: Uuid,
        quantity: i64,
        /// The store the user last selected through this server, if known (a hint).
        store_hint: Option<Uuid>,
    },
    ClearCart,
    ApplyCoupon(Uuid),
    Checkout,
    Refresh(Uuid),
    /// A product view that records an event (with a session header).
    ViewProduct(Uuid),
    /// The eligible-offers list that records an event (with a session header).
    Eligible,
    /// The wallet read with an `Idempotency-Key`: a resumed session reads the wallet it read
    /// the first time, not one its own later checkout has changed.
    Wallet(Uuid),
}

/// Runs `op` in `tx`; the status and JSON body of the answer on success.
pub(crate) async fn perform(
    shop: &Shop,
    tx: &Tx,
    ctx: &Ctx,
    op: WriteOp,
) -> Result<(StatusCode, serde_json::Value), ApiError> {
    match op {
        WriteOp::SelectStore(store_id) => ok(shop.select_store(tx, ctx, store_id).await?),
        WriteOp::AddToCart {
            product_id,
            quantity,
            store_hint,
        } => ok(shop
            .add_to_cart_in(tx, ctx, product_id, quantity, store_hint)
            .await?),
        WriteOp::ClearCart => ok(shop.clear_cart(tx, ctx).await?),
        WriteOp::ViewProduct(product_id) => ok(shop.get_product(tx, ctx, product_id).await?),
        WriteOp::Eligible => ok(shop.eligible_coupons(tx, ctx).await?),
        WriteOp::ApplyCoupon(coupon_id) => ok(shop.apply_coupon(tx, ctx, coupon_id).await?),
        WriteOp::Checkout => {
            let (_, body) = ok(shop.checkout(tx, ctx).await?)?;
            Ok((StatusCode::CREATED, body))
        }
        // Both answer 404 `user_not_found` for an unknown user (from the read they start with).
        WriteOp::Wallet(user_id) => ok(shop.wallet(tx, user_id, ctx.now).await?),
        WriteOp::Refresh(user_id) => {
            let target = Ctx {
                user_id,
                ..ctx.clone()
            };
            ok(shop.refresh_offers(tx, &target).await?)
        }
    }
}

fn ok<T: Serialize>(v: T) -> Result<(StatusCode, serde_json::Value), ApiError> {
    serde_json::to_value(v)
        .map(|v| (StatusCode::OK, v))
        .map_err(|e| {
            tracing::error!(error = %e, "cannot serialise a response");
            ApiError::internal()
        })
}

/// `GET /health`.
pub(crate) async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /api/stores`.
pub(crate) async fn list_stores(
    State(s): State<AppState>,
    _ctx: ApiCtx,
) -> Result<Json<StoresPage>, ApiError> {
    let tx = s.db.read().await?;
    let page = s.shop.list_stores(&tx).await?;
    tx.commit().await?;
    Ok(Json(page))
}

/// Body of `PUT /api/user/store`.
#[derive(Debug, Deserialize)]
pub(crate) struct SelectStoreBody {
    store_id: Uuid,
}

/// `PUT /api/user/store`.
pub(crate) async fn select_store(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
    req: WriteJson<SelectStoreBody>,
) -> Result<Response, ApiError> {
    let store_id = req.body.store_id;
    let resp = run_write(&s, &ctx, &req.meta, WriteOp::SelectStore(store_id)).await?;
    if resp.status().is_success() {
        s.store_hints.set(ctx.user_id, store_id);
    }
    Ok(resp)
}

/// Query of `GET /api/products`.
#[derive(Debug, Deserialize)]
pub(crate) struct ProductsQuery {
    category: Option<String>,
    brand: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Checks a page request.
fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request(
            "invalid_offset",
            "offset must be 0 or more",
        ));
    }
    Ok((limit, offset))
}

/// `GET /api/products`.
pub(crate) async fn list_products(
    State(s): State<AppState>,
    _ctx: ApiCtx,
    ApiQuery(q): ApiQuery<ProductsQuery>,
) -> Result<Json<ProductPage>, ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let filter = ProductFilter {
        category: q.category.filter(|c| !c.trim().is_empty()),
        brand: q.brand.filter(|b| !b.trim().is_empty()),
        limit,
        offset,
    };
    let tx = s.db.read().await?;
    let page = s.shop.list_products(&tx, &filter).await?;
    tx.commit().await?;
    Ok(Json(page))
}

/// `GET /api/products/{id}` (records a `view_product` event with a session header, and then
/// honours an `Idempotency-Key` like a write, so a retried view records one event).
pub(crate) async fn get_product(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
    UuidPath(id): UuidPath,
    req: WriteNoBody,
) -> Result<Response, ApiError> {
    if ctx.session_id.is_some() {
        return run_write(&s, &ctx, &req.meta, WriteOp::ViewProduct(id)).await;
    }
    let tx = s.db.read().await?;
    let detail: ProductDetail = s.shop.get_product(&tx, &ctx, id).await?;
    tx.commit().await?;
    Ok(Json(detail).into_response())
}

/// `GET /api/cart`.
pub(crate) async fn get_cart(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
) -> Result<Json<CartView>, ApiError> {
    let tx = s.db.read().await?;
    let cart = s.shop.get_cart(&tx, &ctx).await?;
    tx.commit().await?;
    Ok(Json(cart))
}

/// Body of `POST /api/cart/items`.
#[derive(Debug, Deserialize)]
pub(crate) struct AddItemBody {
    product_id: Uuid,
    #[serde(default = "one")]
    quantity: i64,
}

fn one() -> i64 {
    1
}

/// `POST /api/cart/items` and `POST /api/cart/add`.
pub(crate) async fn add_to_cart(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
    req: WriteJson<AddItemBody>,
) -> Result<Response, ApiError> {
    let quantity = req.body.quantity;
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(ApiError::bad_request(
            "invalid_quantity",
            format!("quantity must be between 1 and {MAX_QUANTITY}"),
        ));
    }
    let op = WriteOp::AddToCart {
        product_id: req.body.product_id,
        quantity,
        store_hint: s.store_hints.get(ctx.user_id),
    };
    run_write(&s, &ctx, &req.meta, op).await
}

/// `DELETE /api/cart` (with a session header it marks the session abandoned).
pub(crate) async fn clear_cart(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
    req: WriteNoBody,
) -> Result<Response, ApiError> {
    run_write(&s, &ctx, &req.meta, WriteOp::ClearCart).await
}

/// `GET /api/coupons/eligible` (records a `view_coupons` event with a session header, and then
/// honours an `Idempotency-Key` like a write).
pub(crate) async fn eligible_coupons(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
    req: WriteNoBody,
) -> Result<Response, ApiError> {
    if ctx.session_id.is_some() {
        return run_write(&s, &ctx, &req.meta, WriteOp::Eligible).await;
    }
    let tx = s.db.read().await?;
    let coupons: EligibleCoupons = s.shop.eligible_coupons(&tx, &ctx).await?;
    tx.commit().await?;
    Ok(Json(coupons).into_response())
}

/// Body of `POST /api/cart/coupons`.
#[derive(Debug, Deserialize)]
pub(crate) struct ApplyCouponBody {
    coupon_id: Uuid,
}

/// `POST /api/cart/coupons`.
pub(crate) async fn apply_coupon(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
    req: WriteJson<ApplyCouponBody>,
) -> Result<Response, ApiError> {
    run_write(
        &s,
        &ctx,
        &req.meta,
        WriteOp::ApplyCoupon(req.body.coupon_id),
    )
    .await
}

/// `GET /api/cart/summary`.
pub(crate) async fn cart_summary(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
) -> Result<Json<CartSummary>, ApiError> {
    let tx = s.db.read().await?;
    let summary = s.shop.cart_summary(&tx, &ctx).await?;
    tx.commit().await?;
    Ok(Json(summary))
}

/// `POST /api/orders` and `POST /api/orders/checkout` (201).
pub(crate) async fn checkout(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
    req: WriteNoBody,
) -> Result<Response, ApiError> {
    run_write(&s, &ctx, &req.meta, WriteOp::Checkout).await
}

/// Query of `GET /api/orders`.
#[derive(Debug, Deserialize)]
pub(crate) struct OrdersQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/orders`.
pub(crate) async fn list_orders(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
    ApiQuery(q): ApiQuery<OrdersQuery>,
) -> Result<Json<OrdersPage>, ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let tx = s.db.read().await?;
    let orders = s.shop.list_orders(&tx, &ctx, limit, offset).await?;
    tx.commit().await?;
    Ok(Json(orders))
}

/// `GET /api/offers/wallet/{user_id}` (with an `Idempotency-Key`, answered like a write: the
/// answer is stored and replayed, so a resumed session sees the wallet it saw).
pub(crate) async fn wallet(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
    UuidPath(user_id): UuidPath,
    req: WriteNoBody,
) -> Result<Response, ApiError> {
    if req.meta.key.is_some() {
        return run_write(&s, &ctx, &req.meta, WriteOp::Wallet(user_id)).await;
    }
    let tx = s.db.read().await?;
    let w: WalletView = s.shop.wallet(&tx, user_id, ctx.now).await?;
    tx.commit().await?;
    Ok(Json(w).into_response())
}

/// Body of `POST /api/offers/refresh`.
#[derive(Debug, Deserialize)]
pub(crate) struct RefreshBody {
    user_id: Uuid,
}

/// `POST /api/offers/refresh` and `POST /api/offers/assign`: refresh the offers of `user_id`
/// (nothing changes when the refresh is not due at the request's time).
pub(crate) async fn refresh_offers(
    State(s): State<AppState>,
    ApiCtx(ctx): ApiCtx,
    req: WriteJson<RefreshBody>,
) -> Result<Response, ApiError> {
    run_write(&s, &ctx, &req.meta, WriteOp::Refresh(req.body.user_id)).await
}

/// Unknown route: 404 JSON.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// Known route, wrong method: 405 JSON.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}
