//! [`HttpActions`]: the session steps as requests to the VoiceOffers API (or the reference
//! server), through one shared `Transport` (hyper HTTP/1.1 connections for `http://`, reqwest
//! for `https://`).
//!
//! Every request carries `Authorization`, `X-Sim-Time` (the step's simulated time) and
//! `X-Shopping-Session-Id`; every write — and every read that records a session event (product
//! view, eligible offers) — carries the step's `Idempotency-Key`, so a resent step
//! never applies twice. How an answer is handled:
//!
//! | answer | handling | metrics outcome |
//! |---|---|---|
//! | 2xx | parsed into the contract view; a product's detail, which nothing reads, only checked to be one (unparseable → fails, `other_4xx`) | `ok` |
//! | 4xx with a [`RejectCode`] | [`ActionError::Rejected`], not retried | rejection class |
//! | 409 `idempotency_in_flight` | wait briefly, resend (same key); not a failure | not recorded |
//! | 429 | wait `Retry-After` (default 1 s), resend; no budget spent | `rate_limited` |
//! | other 4xx | fails at once | `other_4xx` |
//! | 503 `database_unavailable` | database outage: gate closed, probe, resend | `api_5xx` |
//! | other 5xx, timeout, reset | retry with full-jitter backoff within the retry budget | `api_5xx` / `timeout` / `connection` |
//! | connect failure (refused, DNS, TCP timeout) | API outage: gate closed, probe `/health`, resend | `connection` |
//!
//! Retries and resends go through the endpoint's circuit breaker (see [`super::breaker`]) and
//! are counted in `Counter::Retries`. The transport itself never resends a request it wrote.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::SecondsFormat;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::breaker::{Blocked, Breaker, BreakerState, Feedback};
use super::config::{ActionsSetupError, Auth, HttpConfig};
use super::jwt::Minter;
use super::outage::{OutageGate, OutageInfo, Probe, sleep_or_cancel};
use super::retry::{RetryBudget, backoff};
use super::transport::{Limits, Request, Transport, TransportError};
use super::{ActionError, ActionResult, Actions, SessionActions, SessionInfo, Step, outcome_of};
use crate::domain::{
    AddToCartResult, ApplyCouponResult, CartSummary, CheckoutResult, ClearCartResult,
    EligibleCoupons, RefreshResult, RejectCode, SelectStoreResult, WalletView,
};
use crate::sim::metrics::{Counter, Endpoint, Metrics, Outcome};
use crate::sim::session::SessionReport;

static SIM_TIME: HeaderName = HeaderName::from_static(crate::server::SIM_TIME_HEADER);
static SESSION: HeaderName = HeaderName::from_static(crate::server::SESSION_HEADER);
static IDEMPOTENCY: HeaderName = HeaderName::from_static(crate::server::IDEMPOTENCY_HEADER);

/// The HTTP actions: one client, one breaker per endpoint, one retry budget, one outage gate,
/// shared by every session. Cheap to clone.
#[derive(Clone)]
pub struct HttpActions {
    shared: Arc<Shared>,
}

struct Shared {
    transport: Arc<Transport>,
    base: String,
    /// `base`'s origin (`http://host:port`): a request's URL is this and its target.
    origin: String,
    /// Every endpoint's request target, percent-encoded once, in [`Endpoint::ALL`] order: a
    /// request's target is built by concatenation, not by parsing a URL.
    targets: Vec<TargetTemplate>,
    config: HttpConfig,
    breakers: Vec<Breaker>,
    budget: RetryBudget,
    outage: Arc<OutageGate>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    jwt: Option<Minter>,
}

impl std::fmt::Debug for HttpActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpActions")
            .field("base_url", &self.shared.base)
            .finish()
    }
}

impl HttpActions {
    /// Builds the client and checks `config` (a bad base URL or path is a clear error).
    /// `cancel` ends waits (backoff, breaker, outage) with [`ActionError::Interrupted`]; an
    /// outage's probe task is spawned on the tokio runtime of the step that detects it.
    pub fn new(
        config: HttpConfig,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> Result<Self, ActionsSetupError> {
        let base = config.validate()?;
        let base_url = reqwest::Url::parse(&base)
            .map_err(|e| ActionsSetupError::Invalid(format!("API URL `{base}`: {e}")))?;
        let limits = Limits {
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
            max_idle: config.pool_max_idle_per_host,
        };
        let transport = Transport::new(&base_url, limits).map_err(ActionsSetupError::Client)?;
        let targets = Endpoint::ALL
            .iter()
            .map(|&e| TargetTemplate::new(&base_url, config.paths.of(e), path_parameter(e)))
            .collect();
        let jwt = match &config.auth {
            Auth::Dev => None,
            Auth::Jwt { secret, ttl } => Some(Minter::new(secret, *ttl)),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                transport: Arc::new(transport),
                base,
                origin: base_url.origin().ascii_serialization(),
                targets,
                breakers: Endpoint::ALL
                    .iter()
                    .map(|&e| Breaker::new(e, config.breaker.clone()))
                    .collect(),
                budget: RetryBudget::new(&config.retry),
                outage: Arc::new(OutageGate::new(
                    "API",
                    config.outage.clone(),
                    cancel.clone(),
                )),
                metrics,
                cancel,
                jwt,
                config,
            }),
        })
    }

    /// The state of every endpoint's circuit breaker, in [`Endpoint::ALL`] order.
    pub fn breaker_states(&self) -> Vec<(Endpoint, BreakerState)> {
        Endpoint::ALL
            .iter()
            .map(|&e| (e, self.shared.breakers[e as usize].state()))
            .collect()
    }

    /// The ongoing outage (API or database unreachable), if any.
    pub fn outage(&self) -> Option<OutageInfo> {
        self.shared.outage.current()
    }

    /// The configuration in use.
    pub fn config(&self) -> &HttpConfig {
        &self.shared.config
    }

    /// The base URL in use (validated, no trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.shared.base
    }

    /// A session driver (the concrete type behind [`Actions::open_session`]).
    pub fn session(&self, info: SessionInfo) -> ActionResult<HttpSession> {
        // Check once that the agent id can travel in a header; a dev token never changes.
        let auth = self.shared.auth_header(&info)?;
        Ok(HttpSession {
            dev_auth: (self.shared.jwt.is_none()).then_some(auth),
            key_prefix: info.idempotency_key_prefix(),
            shared: self.shared.clone(),
            session_header: HeaderValue::from_str(&info.session_id.to_string())
                .map_err(|e| fail(Outcome::Other4xx, format!("session id header: {e}"), 0))?,
            info,
            scheduled: None,
        })
    }
}

#[async_trait]
impl Actions for HttpActions {
    async fn open_session(&self, session: SessionInfo) -> ActionResult<Box<dyn SessionActions>> {
        Ok(Box::new(self.session(session)?))
    }

    fn mode(&self) -> &'static str {
        "http"
    }

    fn breakers(&self) -> Vec<(Endpoint, BreakerState)> {
        self.breaker_states()
    }

    fn current_outage(&self) -> Option<OutageInfo> {
        self.outage()
    }

    fn outage_gave_up(&self) -> Option<String> {
        self.shared.outage.gave_up()
    }
}

fn fail(class: Outcome, reason: String, attempts: u32) -> ActionError {
    ActionError::Failed {
        class,
        reason,
        attempts,
    }
}

impl Shared {
    /// The request target of `endpoint` with its path parameter (if it has one) `param`.
    fn target(&self, endpoint: Endpoint, param: Option<Uuid>) -> String {
        self.targets[endpoint as usize].with(param)
    }

    fn auth_header(&self, info: &SessionInfo) -> ActionResult<HeaderValue> {
        let value = match &self.jwt {
            None => format!("Bearer dev:{}", info.agent_id),
            Some(m) => format!(
                "Bearer {}",
                m.token(&info.agent_id, info.user_id, chrono::Utc::now().timestamp())
            ),
        };
        HeaderValue::from_str(&value).map_err(|_| {
            fail(
                Outcome::Other4xx,
                format!(
                    "agent id `{}` cannot be sent in an Authorization header (use printable \
                     ASCII agent ids)",
                    info.agent_id
                ),
                0,
            )
        })
    }

    fn breaker(&self, endpoint: Endpoint) -> &Breaker {
        &self.breakers[endpoint as usize]
    }

    /// A probe of the API itself (`GET /health`).
    fn api_probe(&self) -> Probe {
        self.probe(&self.config.paths.health, HeaderMap::new(), |s| {
            s.is_success()
        })
    }

    /// A probe of the API's database: an authenticated read that needs it (`GET /api/stores`);
    /// any answer but 503 means the database is back.
    fn database_probe(&self, auth: HeaderValue) -> Probe {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        self.probe(&self.config.paths.stores, headers, |s| {
            s != StatusCode::SERVICE_UNAVAILABLE
        })
    }

    /// A probe sending `GET` `path` (on the base URL) with `headers`: up when `up` holds for
    /// the answer's status. A path that does not make a URL (config validation rules that
    /// out) never comes up.
    fn probe(&self, path: &str, headers: HeaderMap, up: fn(StatusCode) -> bool) -> Probe {
        let transport = self.transport.clone();
        let request = reqwest::Url::parse(&format!("{}{path}", self.base))
            .ok()
            .map(|url| Request {
                method: Method::GET,
                target: super::transport::target_of(&url),
                headers,
                body: None,
            });
        Box::new(move || {
            let (transport, request) = (transport.clone(), request.clone());
            Box::pin(async move {
                match request {
                    Some(r) => matches!(transport.send(r).await, Ok(a) if up(a.status)),
                    None => false,
                }
            })
        })
    }
}

/// One request of a step.
struct Call {
    endpoint: Endpoint,
    method: Method,
    /// The value of the endpoint's path parameter ([`path_parameter`]).
    param: Option<Uuid>,
    body: Option<bytes::Bytes>,
    write: bool,
    /// Sent with the session's header (every session step; not a plain catalog read).
    session: bool,
}

/// How one attempt ended.
enum Answer {
    Ok(bytes::Bytes),
    Rejected(RejectCode, String),
    RateLimited(Duration),
    InFlight,
    Other4xx(String),
    DatabaseDown(String),
    Unreachable(String),
    Retryable(Outcome, String),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

/// The driver of one session over HTTP.
pub struct HttpSession {
    shared: Arc<Shared>,
    info: SessionInfo,
    session_header: HeaderValue,
    /// The `Authorization` value with dev auth (fixed); JWTs are minted (cached) per request.
    dev_auth: Option<HeaderValue>,
    /// [`SessionInfo::idempotency_key_prefix`], formatted once.
    key_prefix: String,
    scheduled: Option<Instant>,
}

impl HttpSession {
    /// The order already placed in this session, read from the API's database (a resumed
    /// session). A failed read is logged and the checkout is sent with its original key.
    async fn placed_order(&self) -> Option<crate::domain::OrderView> {
        let db = self.shared.config.reconcile_db.as_ref()?;
        let read = async {
            let tx = db.read().await?;
            let order = crate::domain::session_order(&tx, self.info.session_id).await?;
            tx.commit().await?;
            Ok::<_, crate::domain::DomainError>(order)
        };
        match read.await {
            Ok(order) => order,
            Err(e) => {
                tracing::warn!(session = %self.info.session_id, error = %e, "could not look for the resumed session's order; sending its checkout with the original key");
                None
            }
        }
    }
}

impl std::fmt::Debug for HttpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSession")
            .field("info", &self.info)
            .finish()
    }
}

impl HttpSession {
    /// The session.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The `Idempotency-Key` of a step ([`SessionInfo::idempotency_key`]).
    fn key(&self, step: Step) -> String {
        let mut key = String::with_capacity(self.key_prefix.len() + 10);
        key.push_str(&self.key_prefix);
        key.push_str(&step.seq.to_string());
        key
    }

    /// The idempotency key `call` sends at `step`: keyed calls only (writes, and reads that
    /// record an event).
    fn key_of(&self, call: &Call, step: Step) -> Option<String> {
        call.write.then(|| self.key(step))
    }

    async fn run<T: DeserializeOwned>(&mut self, step: Step, call: Call) -> ActionResult<T> {
        let shared = self.shared.clone();
        let cancel = &shared.cancel;
        let policy = &shared.config.retry;
        let endpoint = call.endpoint;
        // A read makes its key only if it is retried (the backoff's seed).
        let key = self.key_of(&call, step);
        let scheduled = self.scheduled.take();
        let interrupted =
            |what: &str| ActionError::Interrupted(format!("{} {what}", endpoint.name()));
        let mut rng = None;
        let mut sent = 0u32;
        let mut failures = 0u32;
        let mut rate_limited_wait = Duration::ZERO;
        let mut in_flight_wait = Duration::ZERO;
        let mut in_flight_delay = policy.in_flight_wait;
        let mut last_failure: Option<(Outcome, String)> = None;
        shared.budget.deposit();
        loop {
            if shared.outage.wait_open(cancel).await.is_err() {
                return Err(interrupted("not sent: shutting down during an outage"));
            }
            if cancel.is_cancelled() {
                return Err(interrupted("not sent: shutting down"));
            }
            let deadline = Instant::now() + shared.config.breaker.max_wait;
            let permit = match shared.breaker(endpoint).acquire(deadline, cancel).await {
                Ok(p) => p,
                Err(Blocked::Cancelled) => {
                    return Err(interrupted("not sent: shutting down at an open circuit"));
                }
                Err(Blocked::TimedOut) => {
                    let (class, last) = last_failure
                        .map(|(c, r)| (c, format!("; last failure: {r}")))
                        .unwrap_or((Outcome::Api5xx, String::new()));
                    return Err(fail(
                        class,
                        format!(
                            "circuit open: {} stayed unavailable for {:?}{last}",
                            endpoint.name(),
                            shared.config.breaker.max_wait
                        ),
                        sent,
                    ));
                }
            };
            let started = Instant::now();
            let from = if sent == 0 {
                scheduled.unwrap_or(started)
            } else {
                started
            };
            sent += 1;
            let answer = self.attempt(&call, step, key.as_deref()).await;
            let latency = Instant::now().saturating_duration_since(from);
            let record = |o: Outcome| shared.metrics.record_request(endpoint, latency, o);
            tracing::debug!(endpoint = endpoint.name(), key = key.as_deref(), attempt = sent, latency = ?latency, "request");
            match answer {
                Answer::Ok(bytes) => {
                    permit.record(Feedback::Success);
                    return match serde_json::from_slice::<T>(&bytes) {
                        Ok(v) => {
                            record(Outcome::Ok);
                            Ok(v)
                        }
                        Err(e) => {
                            record(Outcome::Other4xx);
                            Err(fail(
                                Outcome::Other4xx,
                                format!("unparseable response from {}: {e}", endpoint.name()),
                                sent,
                            ))
                        }
                    };
                }
                Answer::Rejected(code, message) => {
                    permit.record(Feedback::Success);
                    record(outcome_of(code));
                    return Err(ActionError::Rejected { code, message });
                }
                Answer::Other4xx(reason) => {
                    permit.record(Feedback::Success);
                    record(Outcome::Other4xx);
                    return Err(fail(Outcome::Other4xx, reason, sent));
                }
                Answer::RateLimited(wait) => {
                    permit.record(Feedback::Neutral);
                    record(Outcome::RateLimited);
                    rate_limited_wait += wait;
                    if rate_limited_wait > policy.max_rate_limit_wait {
                        return Err(fail(
                            Outcome::RateLimited,
                            format!(
                                "rate limited (429) for more than {:?}",
                                policy.max_rate_limit_wait
                            ),
                            sent,
                        ));
                    }
                    shared.metrics.add(Counter::Retries, 1);
                    if !sleep_or_cancel(wait, cancel).await {
                        return Err(interrupted("not resent: shutting down after a 429"));
                    }
                }
                Answer::InFlight => {
                    // The first request with this key is still running: not a failure.
                    permit.record(Feedback::Neutral);
                    in_flight_wait += in_flight_delay;
                    if in_flight_wait > policy.max_in_flight_wait {
                        return Err(fail(
                            Outcome::Other4xx,
                            format!(
                                "idempotency key {} stayed in flight for more than {:?}",
                                key.as_deref().unwrap_or_default(),
                                policy.max_in_flight_wait
                            ),
                            sent,
                        ));
                    }
                    shared.metrics.add(Counter::Retries, 1);
                    if !sleep_or_cancel(in_flight_delay, cancel).await {
                        return Err(interrupted("not resent: shutting down after a 409"));
                    }
                    in_flight_delay = (in_flight_delay * 2).min(Duration::from_secs(1));
                }
                Answer::Unreachable(reason) => {
                    permit.record(Feedback::Neutral);
                    record(Outcome::Connection);
                    shared.outage.report(reason, shared.api_probe());
                    shared.metrics.add(Counter::Retries, 1);
                }
                Answer::DatabaseDown(reason) => {
                    permit.record(Feedback::Neutral);
                    record(Outcome::Api5xx);
                    let auth = shared.auth_header(&self.info)?;
                    shared.outage.report(reason, shared.database_probe(auth));
                    shared.metrics.add(Counter::Retries, 1);
                }
                Answer::Retryable(class, reason) => {
                    permit.record(Feedback::Failure);
                    record(class);
                    failures += 1;
                    if failures >= policy.max_attempts {
                        return Err(fail(class, reason, sent));
                    }
                    if !shared.budget.withdraw() {
                        return Err(fail(
                            class,
                            format!("{reason} (retry budget exhausted)"),
                            sent,
                        ));
                    }
                    last_failure = Some((class, reason));
                    shared.metrics.add(Counter::Retries, 1);
                    let rng = rng.get_or_insert_with(|| {
                        let key = key.clone().unwrap_or_else(|| self.key(step));
                        crate::ids::rng(
                            shared.config.seed,
                            &["backoff".into(), key.as_str().into()],
                        )
                    });
                    let wait = backoff(policy, failures, rng);
                    if !sleep_or_cancel(wait, cancel).await {
                        return Err(interrupted("not retried: shutting down"));
                    }
                }
            }
        }
    }

    /// Sends one attempt and classifies its answer.
    async fn attempt(&self, call: &Call, step: Step, key: Option<&str>) -> Answer {
        let shared = &self.shared;
        let mut headers = HeaderMap::with_capacity(6);
        if let Err(e) = self.set_headers(&mut headers, call, step, key) {
            return Answer::Other4xx(e.to_string());
        }
        let request = Request {
            method: call.method.clone(),
            target: shared.target(call.endpoint, call.param),
            headers,
            body: call.body.clone(),
        };
        let resp = match shared.transport.send(request).await {
            Ok(r) => r,
            Err(e) => return transport_failure(e),
        };
        let retry_after = resp
            .retry_after
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        classify(
            resp.status,
            retry_after,
            resp.body,
            &shared.config.retry,
            call.endpoint,
        )
    }

    /// Sets the headers shopsim sends with a step's request (the transport adds `host` and
    /// `content-length`): `Authorization`, `X-Sim-Time`, `X-Shopping-Session-Id`, and for
    /// keyed calls `Idempotency-Key` (`key`, [`HttpSession::key_of`]); `Content-Type` with a
    /// body.
    fn set_headers(
        &self,
        headers: &mut HeaderMap,
        call: &Call,
        step: Step,
        key: Option<&str>,
    ) -> ActionResult<()> {
        let auth = match &self.dev_auth {
            Some(a) => a.clone(),
            None => self.shared.auth_header(&self.info)?,
        };
        headers.insert(AUTHORIZATION, auth);
        let at = step.at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        // RFC 3339 text is always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&at) {
            headers.insert(&SIM_TIME, v);
        }
        if call.session {
            headers.insert(&SESSION, self.session_header.clone());
        }
        if let Some(key) = key {
            let v = HeaderValue::from_str(key).map_err(|_| {
                fail(
                    Outcome::Other4xx,
                    format!(
                        "idempotency key `{key}` cannot be sent in a header (use printable ASCII \
                         run and agent ids)"
                    ),
                    0,
                )
            })?;
            headers.insert(&IDEMPOTENCY, v);
        }
        if call.body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok(())
    }

    /// The request [`HttpSession::read_product`] sends for `step`: method, URL and the headers
    /// shopsim sets, exactly as sent (the transport adds `host`). For replaying the same
    /// request with another load generator (`shopsim loadtest --print-request`).
    pub fn read_product_request(
        &self,
        step: Step,
        product_id: Uuid,
    ) -> ActionResult<(Method, String, HeaderMap)> {
        self.request_of(&Self::product_call(product_id, false), step)
    }

    fn request_of(&self, call: &Call, step: Step) -> ActionResult<(Method, String, HeaderMap)> {
        let mut headers = HeaderMap::new();
        let key = self.key_of(call, step);
        self.set_headers(&mut headers, call, step, key.as_deref())?;
        let url = format!(
            "{}{}",
            self.shared.origin,
            self.shared.target(call.endpoint, call.param)
        );
        Ok((call.method.clone(), url, headers))
    }

    /// Reads a product's detail as a catalog read, outside the session (no session header,
    /// hence no view event and no idempotency key): the server's cheapest answer on the
    /// product endpoint, which `shopsim loadtest` measures the host's HTTP path on.
    pub async fn read_product(&mut self, step: Step, product_id: Uuid) -> ActionResult<()> {
        self.run::<ViewedProduct>(step, Self::product_call(product_id, false))
            .await
            .map(|_| ())
    }

    /// `GET /api/products/{id}`: in the session it records a view event, so it is keyed like
    /// a write (a retried view records it once); outside it, a plain read.
    fn product_call(product_id: Uuid, in_session: bool) -> Call {
        let mut call = Self::call(Endpoint::ViewProduct, Method::GET, None);
        call.param = Some(product_id);
        call.write = in_session;
        call.session = in_session;
        call
    }

    fn call(endpoint: Endpoint, method: Method, body: Option<serde_json::Value>) -> Call {
        Call {
            endpoint,
            write: method != Method::GET,
            method,
            param: None,
            // Serialising a JSON value cannot fail.
            body: body.map(|b| serde_json::to_vec(&b).unwrap_or_default().into()),
            session: true,
        }
    }
}

/// What a product read checks of its answer: a product detail (`ProductDetail`: the product,
/// with its id, and its stock) without decoding the rest, which nothing reads — decoding every
/// field was a quarter of the host's user-space instructions per `shopsim loadtest` request,
/// and the check costs about two thirds of that (`BENCHMARKS.md`, step 17).
#[derive(Deserialize)]
struct ViewedProduct {
    #[serde(rename = "product")]
    _product: ProductId,
    #[serde(rename = "inventory")]
    _inventory: serde::de::IgnoredAny,
}

/// A product's id, the one field of the product a read checks.
#[derive(Deserialize)]
struct ProductId {
    #[serde(rename = "id")]
    _id: Uuid,
}

/// The placeholder of `endpoint`'s path parameter, if its path has one (the config checks
/// it is there).
fn path_parameter(endpoint: Endpoint) -> Option<&'static str> {
    match endpoint {
        Endpoint::ViewProduct => Some("{id}"),
        Endpoint::Wallet => Some("{user_id}"),
        _ => None,
    }
}

/// An endpoint's request target with the API's base path, percent-encoded and normalised as
/// `Url::set_path` does it, made once: the literal parts around its path parameter, which a
/// request joins with the parameter's value.
#[derive(Debug)]
enum TargetTemplate {
    /// The parts between the parameter's occurrences (one part: no parameter).
    Parts(Vec<String>),
    /// A path the parts would not rebuild exactly (one with a `%01` of its own): built
    /// through the URL per request, as before templates.
    ByUrl {
        base: reqwest::Url,
        path: String,
        parameter: Option<&'static str>,
    },
}

impl TargetTemplate {
    /// The template of `path` (an endpoint's configured path) on `base`, its parameter
    /// `parameter` (`{id}`) if it has one.
    fn new(base: &reqwest::Url, path: &str, parameter: Option<&'static str>) -> Self {
        // A control character cannot be in a path as sent: `set_path` encodes it as `%01`.
        const MARKER: &str = "\u{1}";
        const ENCODED: &str = "%01";
        let marked = match parameter {
            Some(p) => path.replace(p, MARKER),
            None => path.to_string(),
        };
        let encoded = by_url(base, &marked, None);
        let parts: Vec<String> = match parameter {
            Some(_) => encoded.split(ENCODED).map(str::to_string).collect(),
            None => vec![encoded],
        };
        let template = TargetTemplate::Parts(parts);
        let by_url = TargetTemplate::ByUrl {
            base: base.clone(),
            path: path.to_string(),
            parameter,
        };
        // Every id is 36 characters of `0-9a-f-`, which nothing encodes: one check holds
        // for all.
        let probe = Some(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef));
        if template.with(probe) == by_url.with(probe) {
            template
        } else {
            by_url
        }
    }

    /// The target with `param` in the parameter's places. Every call of an endpoint with a
    /// parameter gives its value; without one, the parameter's places are left empty.
    fn with(&self, param: Option<Uuid>) -> String {
        match self {
            TargetTemplate::Parts(parts) => {
                let mut buffer = Uuid::encode_buffer();
                let id = match param {
                    Some(id) => &*id.hyphenated().encode_lower(&mut buffer),
                    None => "",
                };
                let len = parts.iter().map(String::len).sum::<usize>() + id.len() * parts.len();
                let mut target = String::with_capacity(len);
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        target.push_str(id);
                    }
                    target.push_str(part);
                }
                target
            }
            TargetTemplate::ByUrl {
                base,
                path,
                parameter,
            } => by_url(base, path, parameter.zip(param)),
        }
    }
}

/// The target of `path` on `base` with `param`'s placeholder replaced by its value, through
/// `Url::set_path` (percent-encoding, dot segments).
fn by_url(base: &reqwest::Url, path: &str, param: Option<(&str, Uuid)>) -> String {
    let prefix = base.path().trim_end_matches('/');
    let full = match param {
        Some((name, id)) => format!("{prefix}{}", path.replace(name, &id.to_string())),
        None => format!("{prefix}{path}"),
    };
    let mut url = base.clone();
    url.set_path(&full);
    super::transport::target_of(&url)
}

/// A failed send: connect failures (refused, DNS, TCP timeout) mean the API is unreachable.
fn transport_failure(e: TransportError) -> Answer {
    match e {
        TransportError::Connect(reason) => Answer::Unreachable(reason),
        TransportError::Timeout(reason) => Answer::Retryable(Outcome::Timeout, reason),
        TransportError::Exchange(reason) => Answer::Retryable(Outcome::Connection, reason),
    }
}

/// An error with its sources (reqwest's own message hides the cause).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    bytes: bytes::Bytes,
    policy: &super::config::RetryPolicy,
    endpoint: Endpoint,
) -> Answer {
    if status.is_success() {
        return Answer::Ok(bytes);
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let wait = retry_after
            .unwrap_or(policy.default_retry_after)
            .min(policy.max_retry_after);
        return Answer::RateLimited(wait);
    }
    let error = serde_json::from_slice::<ErrorBody>(&bytes)
        .ok()
        .map(|b| b.error);
    let code = error.as_ref().map(|e| e.code.as_str()).unwrap_or("");
    let describe = || match &error {
        Some(e) => format!(
            "{} answered {status} {}: {}",
            endpoint.name(),
            e.code,
            e.message
        ),
        None => format!(
            "{} answered {status}: {}",
            endpoint.name(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ),
    };
    if status.is_client_error() {
        if status == StatusCode::CONFLICT && code == "idempotency_in_flight" {
            return Answer::InFlight;
        }
        if let (Some(e), Some(rc)) = (
            &error,
            RejectCode::ALL.into_iter().find(|r| r.as_str() == code),
        ) {
            return Answer::Rejected(rc, e.message.clone());
        }
        return Answer::Other4xx(describe());
    }
    if status == StatusCode::SERVICE_UNAVAILABLE && code == "database_unavailable" {
        return Answer::DatabaseDown(describe());
    }
    if status.is_server_error() {
        return Answer::Retryable(Outcome::Api5xx, describe());
    }
    Answer::Other4xx(format!("unexpected status: {}", describe()))
}

/// `Retry-After`: delta seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds();
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

#[async_trait]
impl SessionActions for HttpSession {
    async fn select_store(
        &mut self,
        step: Step,
        store_id: Uuid,
    ) -> ActionResult<SelectStoreResult> {
        let body = serde_json::json!({ "store_id": store_id });
        self.run(
            step,
            Self::call(Endpoint::SelectStore, Method::PUT, Some(body)),
        )
        .await
    }

    async fn refresh_offers(&mut self, step: Step) -> ActionResult<RefreshResult> {
        let body = serde_json::json!({ "user_id": self.info.user_id });
        self.run(
            step,
            Self::call(Endpoint::RefreshOffers, Method::POST, Some(body)),
        )
        .await
    }

    async fn wallet(&mut self, step: Step) -> ActionResult<WalletView> {
        let mut call = Self::call(Endpoint::Wallet, Method::GET, None);
        call.param = Some(self.info.user_id);
        // Keyed like a write: a resumed session must read the wallet it read the first time,
        // not one its own later checkout has changed.
        call.write = true;
        self.run(step, call).await
    }

    async fn view_product(&mut self, step: Step, product_id: Uuid) -> ActionResult<()> {
        // Parsed all the same: an answer that is not a product is a bad response.
        self.run::<ViewedProduct>(step, Self::product_call(product_id, true))
            .await
            .map(|_| ())
    }

    async fn add_to_cart(
        &mut self,
        step: Step,
        product_id: Uuid,
        quantity: i64,
    ) -> ActionResult<AddToCartResult> {
        let body = serde_json::json!({ "product_id": product_id, "quantity": quantity });
        self.run(
            step,
            Self::call(Endpoint::AddToCart, Method::POST, Some(body)),
        )
        .await
    }

    async fn eligible_coupons(&mut self, step: Step) -> ActionResult<EligibleCoupons> {
        let mut call = Self::call(Endpoint::EligibleCoupons, Method::GET, None);
        // It records a view_coupons event: keyed like a write, so a retry records it once.
        call.write = true;
        self.run(step, call).await
    }

    async fn apply_coupon(
        &mut self,
        step: Step,
        coupon_id: Uuid,
    ) -> ActionResult<ApplyCouponResult> {
        let body = serde_json::json!({ "coupon_id": coupon_id });
        self.run(
            step,
            Self::call(Endpoint::ApplyCoupon, Method::POST, Some(body)),
        )
        .await
    }

    async fn cart_summary(&mut self, step: Step) -> ActionResult<CartSummary> {
        self.run(step, Self::call(Endpoint::CartSummary, Method::GET, None))
            .await
    }

    async fn checkout(&mut self, step: Step) -> ActionResult<CheckoutResult> {
        if self.info.resumed
            && let Some(order) = self.placed_order().await
        {
            tracing::info!(session = %self.info.session_id, order = %order.id, "the resumed session's order is already in the database; its checkout is not sent again");
            return Ok(CheckoutResult {
                success: true,
                order,
            });
        }
        self.run(step, Self::call(Endpoint::Checkout, Method::POST, None))
            .await
    }

    async fn abandon(&mut self, step: Step) -> ActionResult<ClearCartResult> {
        self.run(step, Self::call(Endpoint::Abandon, Method::DELETE, None))
            .await
    }

    fn set_scheduled(&mut self, release: Instant) {
        self.scheduled = Some(release);
    }

    async fn close(self: Box<Self>, _report: &SessionReport) -> ActionResult<bool> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> super::super::config::RetryPolicy {
        Default::default()
    }

    fn body(code: &str) -> bytes::Bytes {
        bytes::Bytes::from(format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#))
    }

    #[test]
    fn answers_are_classified() {
        let e = Endpoint::Checkout;
        let p = policy();
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, body("empty_cart"), &p, e),
            Answer::Rejected(RejectCode::EmptyCart, _)
        ));
        assert!(matches!(
            classify(
                StatusCode::NOT_FOUND,
                None,
                body("offer_not_in_wallet"),
                &p,
                e
            ),
            Answer::Rejected(RejectCode::OfferNotInWallet, _)
        ));
        assert!(matches!(
            classify(
                StatusCode::NOT_FOUND,
                None,
                body("product_not_found"),
                &p,
                e
            ),
            Answer::Other4xx(_)
        ));
        assert!(matches!(
            classify(
                StatusCode::CONFLICT,
                None,
                body("idempotency_in_flight"),
                &p,
                e
            ),
            Answer::InFlight
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, None, body("rate_limited"), &p, e),
            Answer::RateLimited(d) if d == Duration::from_secs(1)
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(3600)), body("x"), &p, e),
            Answer::RateLimited(d) if d == Duration::from_secs(60)
        ));
        assert!(matches!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                body("database_unavailable"),
                &p,
                e
            ),
            Answer::DatabaseDown(_)
        ));
        assert!(matches!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                body("injected_fault"),
                &p,
                e
            ),
            Answer::Retryable(Outcome::Api5xx, _)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, None, bytes::Bytes::from_static(b"<html>"), &p, e),
            Answer::Retryable(Outcome::Api5xx, r) if r.contains("<html>")
        ));
    }

    #[test]
    fn targets_are_those_of_the_url_with_the_path_set() {
        let id = Uuid::from_u128(0xabcdef);
        let bases = [
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/",
            "https://api.example.com/v1",
            "http://h/a%20b/",
        ];
        let paths = [
            "/api/products/{id}",
            "/api/products/{id}/detail",
            "/api/{id}",
            "/api/wallet/{id}/x/{id}",
            "/api/ünï/{id}/ç",
            "/api/a b/{id}",
            "/api/./x/../{id}",
            "/api/x/..{id}",
            "/api/%7Bid%7D/{id}",
            "/api/cart/items",
            "/api/no-parameter-here",
        ];
        for base in bases {
            let parsed = reqwest::Url::parse(base).unwrap();
            for path in paths {
                let template = TargetTemplate::new(&parsed, path, Some("{id}"));
                assert_eq!(
                    template.with(Some(id)),
                    by_url(&parsed, path, Some(("{id}", id))),
                    "{base} {path}"
                );
                let plain = TargetTemplate::new(&parsed, path, None);
                assert_eq!(
                    plain.with(None),
                    by_url(&parsed, path, None),
                    "{base} {path}"
                );
            }
            // The contract's paths are joined from parts, not built through a URL.
            let paths = super::super::config::EndpointPaths::default();
            for e in Endpoint::ALL {
                let template = TargetTemplate::new(&parsed, paths.of(e), path_parameter(e));
                assert!(
                    matches!(template, TargetTemplate::Parts(_)),
                    "{base} {e:?}: {template:?}"
                );
            }
        }
        // A path with a `%01` of its own does not split at it.
        let parsed = reqwest::Url::parse(bases[0]).unwrap();
        let odd = TargetTemplate::new(&parsed, "/api/%01/{id}", Some("{id}"));
        assert!(matches!(odd, TargetTemplate::ByUrl { .. }), "{odd:?}");
        assert_eq!(odd.with(Some(id)), format!("/api/%01/{id}"));
    }

    #[test]
    fn a_product_read_checks_its_answer_is_a_product() {
        let id = Uuid::from_u128(5);
        let good = format!(
            r#"{{"product":{{"id":"{id}","name":"Milk","price":1.5,"tags":["a"]}},"inventory":{{"stores":[]}}}}"#
        );
        assert!(serde_json::from_str::<ViewedProduct>(&good).is_ok());
        for bad in [
            r#"{"product":{"name":"Milk"},"inventory":{}}"#.to_string(),
            r#"{"product":{"id":"not-a-uuid"},"inventory":{}}"#.to_string(),
            format!(r#"{{"product":{{"id":"{id}"}}}}"#),
            format!(r#"{{"product":{{"id":"{id}"}},"inventory":{{"#),
            r#"{"products":[]}"#.to_string(),
        ] {
            assert!(
                serde_json::from_str::<ViewedProduct>(&bad).is_err(),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn requests_carry_the_session_headers_and_the_base_path() {
        let actions = HttpActions::new(
            HttpConfig::new("http://127.0.0.1:1/v1/"),
            Arc::new(Metrics::new()),
            CancellationToken::new(),
        )
        .unwrap();
        let info = SessionInfo {
            run_id: "r".into(),
            agent_id: "agent_001".into(),
            user_id: Uuid::nil(),
            session_id: Uuid::from_u128(7),
            sim_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 5).unwrap(),
            session_seq: 2,
            resumed: false,
        };
        let step = Step {
            seq: 11,
            at: chrono::DateTime::parse_from_rfc3339("2026-01-05T09:30:00Z")
                .unwrap()
                .to_utc(),
        };
        let session = actions.session(info.clone()).unwrap();
        assert_eq!(session.key(step), info.idempotency_key(step));
        assert_eq!(info.idempotency_key(step), "r/agent_001/2026-01-05/2/11");
        let product = Uuid::from_u128(9);
        let (method, url, headers) = session
            .request_of(&HttpSession::product_call(product, true), step)
            .unwrap();
        assert_eq!(method, Method::GET);
        assert_eq!(url, format!("http://127.0.0.1:1/v1/api/products/{product}"));
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(header("authorization"), "Bearer dev:agent_001");
        assert_eq!(header("idempotency-key"), "r/agent_001/2026-01-05/2/11");
        assert_eq!(header("x-sim-time"), "2026-01-05T09:30:00Z");
        assert_eq!(
            header("x-shopping-session-id"),
            Uuid::from_u128(7).to_string()
        );
        // A plain read of the same product: no session, no key.
        let (method, read_url, headers) = session.read_product_request(step, product).unwrap();
        assert_eq!((method, read_url), (Method::GET, url));
        let names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["authorization", "x-sim-time"]);
    }

    #[test]
    fn retry_after_takes_seconds_or_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = parse_retry_after(&later).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
