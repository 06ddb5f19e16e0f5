//! Loopback-only administration of fault injection: `GET /admin/faults`,
//! `PUT /admin/faults`, `POST /admin/faults/reset`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Serialize;

use super::error::ApiError;
use super::extract::JsonBody;
use super::faults::{FaultCounters, FaultPatch, FaultSettings, Faults};

/// Admits only peers on the loopback interface (403 otherwise, including when the peer
/// address is unknown).
pub(crate) struct Loopback;

impl<S: Send + Sync> FromRequestParts<S> for Loopback {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) if peer.ip().is_loopback() => Ok(Loopback),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "admin endpoints answer only on loopback",
            )),
        }
    }
}

/// What the admin endpoints answer.
#[derive(Debug, Serialize)]
pub(crate) struct FaultsView {
    #[serde(flatten)]
    settings: FaultSettings,
    fault_seed: u64,
    counters: FaultCounters,
}

fn view(f: &Faults) -> Json<FaultsView> {
    Json(FaultsView {
        settings: f.settings(),
        fault_seed: f.seed(),
        counters: f.counters(),
    })
}

/// `GET /admin/faults`.
pub(crate) async fn get_faults(_: Loopback, State(f): State<Arc<Faults>>) -> Json<FaultsView> {
    view(&f)
}

/// `PUT /admin/faults`.
pub(crate) async fn put_faults(
    _: Loopback,
    State(f): State<Arc<Faults>>,
    JsonBody(patch): JsonBody<FaultPatch>,
) -> Result<Json<FaultsView>, ApiError> {
    f.update(patch)
        .map_err(|e| ApiError::bad_request("invalid_request", e))?;
    tracing::info!(settings = ?f.settings(), "fault settings changed");
    Ok(view(&f))
}

/// `POST /admin/faults/reset`.
pub(crate) async fn reset_faults(_: Loopback, State(f): State<Arc<Faults>>) -> Json<FaultsView> {
    f.reset_counters();
    view(&f)
}
