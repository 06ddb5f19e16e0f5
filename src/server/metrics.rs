//! The reference server's own Prometheus endpoint, `GET /metrics` on the server's port: its
//! API requests by method, route and status class, and their latency. A registry of its own,
//! apart from the simulation host's (`shopsim run --metrics-addr`), so in the embedded default
//! the server's view and the shoppers' view never mix.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::sim::prometheus::{CONTENT_TYPE, LATENCY_BUCKETS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

type Durations = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The server's request metrics.
#[derive(Debug)]
pub struct ServerMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Durations,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerMetrics {
    /// Empty metrics in a registry of their own.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("shopsim_server");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: Durations = Family::new_with_constructor(latency_histogram);
        registry.register(
            "requests",
            "API requests answered, by method, route and status class (2xx, 4xx, 5xx).",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "API request latency in the server, by method and route.",
            durations.clone(),
        );
        ServerMetrics {
            registry,
            requests,
            durations,
        }
    }

    /// The OpenMetrics text of the registry.
    pub fn render(&self) -> Response {
        let mut body = String::new();
        match prometheus_client::encoding::text::encode(&mut body, &self.registry) {
            Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
            Err(e) => (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding the metrics failed: {e}"),
            )
                .into_response(),
        }
    }
}

/// Middleware (a route layer, so the matched route is known): counts and times each request.
pub async fn track(
    State(metrics): State<Arc<ServerMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = format!("{}xx", response.status().as_u16() / 100);
    metrics
        .durations
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .inc();
    response
}
