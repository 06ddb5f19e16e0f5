//! Request extractors whose rejections are JSON errors (never axum's plain-text ones, never a
//! 500): the caller's context, JSON bodies, UUID path segments and query strings.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::auth::authenticate;
use super::error::ApiError;
use super::simtime::{request_time, restock_if_new_day, session_id};
use super::state::AppState;
use crate::domain::Ctx;

/// Largest accepted request body.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest accepted `Idempotency-Key`.
const MAX_KEY_LEN: usize = 255;
/// The idempotency header.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The authenticated caller, the request's (simulated) time and its shopping session. Building
/// it restocks first when the request opens a new simulated day.
pub(crate) struct ApiCtx(pub Ctx);

impl FromRequestParts<AppState> for ApiCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user_id = authenticate(state, &parts.headers).await?;
        let (now, simulated) = request_time(&parts.headers)?;
        let session_id = session_id(&parts.headers)?;
        if simulated {
            restock_if_new_day(state, now).await?;
        }
        Ok(ApiCtx(Ctx {
            user_id,
            now,
            session_id,
            simulated,
            events: None,
            cart: None,
        }))
    }
}

/// What idempotency needs to know about a write request.
#[derive(Debug, Clone)]
pub(crate) struct WriteMeta {
    /// The `Idempotency-Key`, if sent.
    pub key: Option<String>,
    /// sha256 of method, path and body (hex).
    pub hash: String,
}

/// A write request with a JSON body of type `T`.
pub(crate) struct WriteJson<T> {
    /// The parsed body.
    pub body: T,
    /// Key and hash.
    pub meta: WriteMeta,
}

/// A write request whose body is ignored (it still counts in the request hash).
pub(crate) struct WriteNoBody {
    /// Key and hash.
    pub meta: WriteMeta,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for WriteJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let (meta, bytes) = read_write_request(req).await?;
        Ok(WriteJson {
            body: parse_json(&bytes)?,
            meta,
        })
    }
}

impl<S: Send + Sync> FromRequest<S> for WriteNoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let (meta, _) = read_write_request(req).await?;
        Ok(WriteNoBody { meta })
    }
}

/// A JSON body without idempotency (admin endpoints).
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req.into_body()).await?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

async fn read_write_request(req: Request) -> Result<(WriteMeta, axum::body::Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let key = match parts.headers.get(IDEMPOTENCY_HEADER) {
        None => None,
        Some(v) => {
            let key = v.to_str().map(str::trim).unwrap_or_default();
            if key.is_empty() || key.len() > MAX_KEY_LEN {
                return Err(ApiError::bad_request(
                    "invalid_idempotency_key",
                    format!("Idempotency-Key must be 1–{MAX_KEY_LEN} visible ASCII characters"),
                ));
            }
            Some(key.to_string())
        }
    };
    let bytes = read_body(body).await?;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let hash = request_hash(parts.method.as_str(), canonical_path(path), &bytes);
    Ok((WriteMeta { key, hash }, bytes))
}

async fn read_body(body: axum::body::Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("request body is unreadable or larger than {MAX_BODY_BYTES} bytes"),
            )
        })
}

/// The contract's spelling of an endpoint that has two (the scaling plan's aliases), so a retry
/// through the other spelling is recognised as the same request.
fn canonical_path(path: &str) -> &str {
    match path {
        "/api/cart/add" => "/api/cart/items",
        "/api/orders/checkout" => "/api/orders",
        "/api/offers/assign" => "/api/offers/refresh",
        other => other,
    }
}

/// sha256 of `method \n path \n body`, hex.
pub(crate) fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b"\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a JSON body: syntax errors are `invalid_json`, wrong shapes `invalid_request`.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "request body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                ApiError::bad_request("invalid_request", format!("invalid request body: {e}"))
            }
            _ => ApiError::bad_request(
                "invalid_json",
                format!("request body is not valid JSON: {e}"),
            ),
        }
    })
}

/// A UUID path segment (`/{id}`); anything else is 400 `invalid_request`.
pub(crate) struct UuidPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for UuidPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<Uuid>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| UuidPath(id))
            .map_err(|_| {
                ApiError::bad_request("invalid_request", "the id in the path must be a UUID")
            })
    }
}

/// A query string of type `T`; bad values are 400 `invalid_request`.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_request",
                    format!("invalid query string: {}", e.body_text()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        id: Uuid,
    }

    #[test]
    fn json_errors_are_classified() {
        assert_eq!(parse_json::<Body>(b"").unwrap_err().code(), "invalid_json");
        assert_eq!(
            parse_json::<Body>(b"{oops").unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(
            parse_json::<Body>(b"{}").unwrap_err().code(),
            "invalid_request"
        );
        assert_eq!(
            parse_json::<Body>(br#"{"id":"not-a-uuid"}"#)
                .unwrap_err()
                .code(),
            "invalid_request"
        );
    }

    #[test]
    fn request_hash_covers_method_path_and_body() {
        let a = request_hash("POST", "/api/cart/items", b"{}");
        assert_eq!(a, request_hash("POST", "/api/cart/items", b"{}"));
        assert_ne!(a, request_hash("POST", "/api/orders", b"{}"));
        assert_eq!(canonical_path("/api/cart/add"), "/api/cart/items");
        assert_eq!(canonical_path("/api/orders/checkout"), "/api/orders");
        assert_ne!(a, request_hash("POST", "/api/cart/items", b"{ }"));
        assert_ne!(a, request_hash("PUT", "/api/cart/items", b"{}"));
    }
}
