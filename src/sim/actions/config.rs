//! Settings of the remote actions: where the API is, how to authenticate, the endpoint paths,
//! timeouts, the retry policy, the circuit breakers and outage probing. Defaults follow the
//! VoiceOffers contract and the engineering notes.

use std::fmt;
use std::time::Duration;

use crate::sim::metrics::Endpoint;

/// A setting that cannot be used, or a client that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ActionsSetupError {
    /// A setting is out of range or malformed; the message names it and what to do.
    #[error("invalid actions setting: {0}")]
    Invalid(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

fn invalid<T>(message: impl Into<String>) -> Result<T, ActionsSetupError> {
    Err(ActionsSetupError::Invalid(message.into()))
}

/// How requests authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer dev:<agent_id>` (the reference server's simulation mode).
    Dev,
    /// An HS256 JWT per agent (`sub` = user id, `aud` = `role` = `authenticated`), as the real
    /// backend (Supabase) expects.
    Jwt {
        /// The signing secret (the CLI reads `SHOPSIM_JWT_SECRET`).
        secret: String,
        /// Lifetime of a minted token.
        ttl: Duration,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Dev => f.write_str("Dev"),
            // Never print the secret.
            Auth::Jwt { ttl, .. } => f
                .debug_struct("Jwt")
                .field("secret", &"<redacted>")
                .field("ttl", ttl)
                .finish(),
        }
    }
}

impl Auth {
    /// JWT auth with `secret` and a one-hour token lifetime.
    pub fn jwt(secret: impl Into<String>) -> Self {
        Auth::Jwt {
            secret: secret.into(),
            ttl: Duration::from_secs(3600),
        }
    }
}

/// The API paths (the contract's defaults; the scaling plan's spellings work too).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EndpointPaths {
    /// `GET /health` (outage probe).
    pub health: String,
    /// `GET /api/stores` (database outage probe).
    pub stores: String,
    /// `PUT /api/user/store`.
    pub select_store: String,
    /// `POST /api/offers/refresh` (or `/api/offers/assign`).
    pub refresh_offers: String,
    /// `GET /api/products/{id}`; must contain `{id}`.
    pub product: String,
    /// `POST /api/cart/items` (or `/api/cart/add`).
    pub add_to_cart: String,
    /// `GET /api/coupons/eligible`.
    pub eligible_coupons: String,
    /// `POST /api/cart/coupons`.
    pub apply_coupon: String,
    /// `GET /api/cart/summary`.
    pub cart_summary: String,
    /// `POST /api/orders` (or `/api/orders/checkout`).
    pub checkout: String,
    /// `DELETE /api/cart`.
    pub abandon: String,
    /// `GET /api/offers/wallet/{user_id}`; must contain `{user_id}`.
    pub wallet: String,
}

impl Default for EndpointPaths {
    fn default() -> Self {
        Self {
            health: "/health".into(),
            stores: "/api/stores".into(),
            select_store: "/api/user/store".into(),
            refresh_offers: "/api/offers/refresh".into(),
            product: "/api/products/{id}".into(),
            add_to_cart: "/api/cart/items".into(),
            eligible_coupons: "/api/coupons/eligible".into(),
            apply_coupon: "/api/cart/coupons".into(),
            cart_summary: "/api/cart/summary".into(),
            checkout: "/api/orders".into(),
            abandon: "/api/cart".into(),
            wallet: "/api/offers/wallet/{user_id}".into(),
        }
    }
}

impl EndpointPaths {
    /// The path of an endpoint (`{id}` / `{user_id}` not yet substituted).
    pub fn of(&self, endpoint: Endpoint) -> &str {
        self.path_ref(endpoint)
    }

    /// Checks every path: absolute (`/…`), no query or fragment, `{id}` in the product path,
    /// `{user_id}` in the wallet path.
    pub fn validate(&self) -> Result<(), ActionsSetupError> {
        let all = [("health", &self.health), ("stores", &self.stores)]
            .into_iter()
            .chain(Endpoint::ALL.iter().map(|&e| (e.name(), self.path_ref(e))));
        for (name, path) in all {
            if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
                return invalid(format!(
                    "path of endpoint `{name}` is `{path}`; it must start with `/` and have no \
                     query, fragment or spaces (e.g. /api/cart/items)"
                ));
            }
        }
        if !self.product.contains("{id}") {
            return invalid(format!(
                "path of endpoint `view_product` is `{}`; it must contain `{{id}}` (e.g. \
                 /api/products/{{id}})",
                self.product
            ));
        }
        if !self.wallet.contains("{user_id}") {
            return invalid(format!(
                "path of endpoint `wallet` is `{}`; it must contain `{{user_id}}` (e.g. \
                 /api/offers/wallet/{{user_id}})",
                self.wallet
            ));
        }
        Ok(())
    }

    fn path_ref(&self, endpoint: Endpoint) -> &String {
        match endpoint {
            Endpoint::SelectStore => &self.select_store,
            Endpoint::ViewProduct => &self.product,
            Endpoint::AddToCart => &self.add_to_cart,
            Endpoint::EligibleCoupons => &self.eligible_coupons,
            Endpoint::ApplyCoupon => &self.apply_coupon,
            Endpoint::CartSummary => &self.cart_summary,
            Endpoint::Checkout => &self.checkout,
            Endpoint::Abandon => &self.abandon,
            Endpoint::RefreshOffers => &self.refresh_offers,
            Endpoint::Wallet => &self.wallet,
        }
    }
}

/// Retries of failed requests (5xx, timeouts, connection resets), waits on 429 and on 409
/// `idempotency_in_flight`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Failed attempts after which a step fails (the first attempt counts).
    pub max_attempts: u32,
    /// Base of the full-jitter exponential backoff.
    pub base_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Retry budget: tokens earned per request (0.2 = retries may add 20 % to the load).
    pub budget_ratio: f64,
    /// Retry budget: tokens earned per second regardless of traffic (a floor for quiet runs).
    pub budget_floor_per_sec: f64,
    /// Retry budget: most tokens kept.
    pub budget_max: f64,
    /// Wait after a 429 without a usable `Retry-After`.
    pub default_retry_after: Duration,
    /// Longest wait honoured from one `Retry-After`.
    pub max_retry_after: Duration,
    /// Longest total time one step may wait on 429s before it fails.
    pub max_rate_limit_wait: Duration,
    /// First wait after a 409 `idempotency_in_flight` (doubles, up to 1 s).
    pub in_flight_wait: Duration,
    /// Longest total time one step may wait on 409s before it fails.
    pub max_in_flight_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            budget_ratio: 0.2,
            budget_floor_per_sec: 10.0,
            budget_max: 100.0,
            default_retry_after: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
            max_rate_limit_wait: Duration::from_secs(300),
            in_flight_wait: Duration::from_millis(50),
            max_in_flight_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Checks the values, naming the bad one.
    pub fn validate(&self) -> Result<(), ActionsSetupError> {
        if self.max_attempts == 0 {
            return invalid("retry max_attempts must be at least 1");
        }
        if self.base_backoff.is_zero() || self.base_backoff > self.max_backoff {
            return invalid(format!(
                "retry backoff base {:?} must be > 0 and at most the cap {:?}",
                self.base_backoff, self.max_backoff
            ));
        }
        for (name, v) in [
            ("budget_ratio", self.budget_ratio),
            ("budget_floor_per_sec", self.budget_floor_per_sec),
            ("budget_max", self.budget_max),
        ] {
            if !v.is_finite() || v < 0.0 {
                return invalid(format!("retry {name} is {v}; use a number ≥ 0"));
            }
        }
        if self.in_flight_wait.is_zero() {
            return invalid("retry in_flight_wait must be > 0");
        }
        Ok(())
    }
}

/// The circuit breaker of each endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: u32,
    /// Window over which the failure rate is measured.
    pub window: Duration,
    /// Requests a window needs before its failure rate may open the breaker.
    pub min_requests: u32,
    /// Failure rate (0–1) in a window that opens the breaker.
    pub failure_rate: f64,
    /// How long the breaker stays open before one probe is let through.
    pub cooldown: Duration,
    /// Longest a step waits at an open breaker before it fails with "circuit open".
    pub max_wait: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            window: Duration::from_secs(10),
            min_requests: 20,
            failure_rate: 0.5,
            cooldown: Duration::from_secs(5),
            max_wait: Duration::from_secs(60),
        }
    }
}

impl BreakerConfig {
    /// Checks the values, naming the bad one.
    pub fn validate(&self) -> Result<(), ActionsSetupError> {
        if self.consecutive_failures == 0 {
            return invalid("breaker consecutive_failures must be at least 1");
        }
        if !self.failure_rate.is_finite() || !(0.0..=1.0).contains(&self.failure_rate) {
            return invalid(format!(
                "breaker failure_rate {} is out of range; use 0.0 to 1.0",
                self.failure_rate
            ));
        }
        if self.window.is_zero() || self.cooldown.is_zero() {
            return invalid("breaker window and cooldown must be > 0");
        }
        Ok(())
    }
}

/// How an outage (API or database unreachable) is probed.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageConfig {
    /// First probe delay (doubles after every failed probe).
    pub probe_initial: Duration,
    /// Longest delay between probes.
    pub probe_max: Duration,
    /// Longest outage waited out; after it the run stops (resumable). None: no limit.
    pub max: Option<Duration>,
}

impl Default for OutageConfig {
    fn default() -> Self {
        Self {
            probe_initial: Duration::from_millis(100),
            probe_max: Duration::from_secs(5),
            max: None,
        }
    }
}

impl OutageConfig {
    /// Checks the values, naming the bad one.
    pub fn validate(&self) -> Result<(), ActionsSetupError> {
        if self.probe_initial.is_zero() || self.probe_initial > self.probe_max {
            return invalid(format!(
                "outage probe delay {:?} must be > 0 and at most {:?}",
                self.probe_initial, self.probe_max
            ));
        }
        Ok(())
    }
}

/// Everything [`super::HttpActions`] needs.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The API's base URL (`http://127.0.0.1:8080`, `https://api.example.com/v1`).
    pub base_url: String,
    /// How requests authenticate.
    pub auth: Auth,
    /// The endpoint paths.
    pub paths: EndpointPaths,
    /// Longest a request may take, connect to last byte.
    pub request_timeout: Duration,
    /// Longest a TCP (and TLS) connect may take.
    pub connect_timeout: Duration,
    /// Idle pooled connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// Retries.
    pub retry: RetryPolicy,
    /// Circuit breakers.
    pub breaker: BreakerConfig,
    /// Outage probing.
    pub outage: OutageConfig,
    /// Seed of the backoff jitter streams (the run seed).
    pub seed: u64,
    /// The API's database: before a resumed session's checkout is sent again, the host looks
    /// there for the session's order (an API without idempotency keys cannot say whether the
    /// first checkout went through).
    pub reconcile_db: Option<crate::store::Db>,
}

impl HttpConfig {
    /// Defaults for `base_url` with dev auth.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            auth: Auth::Dev,
            paths: EndpointPaths::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 256,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            outage: OutageConfig::default(),
            seed: 42,
            reconcile_db: None,
        }
    }

    /// Checks every setting and returns the base URL without a trailing `/`.
    pub fn validate(&self) -> Result<String, ActionsSetupError> {
        let base = normalise_base_url(&self.base_url)?;
        self.paths.validate()?;
        self.retry.validate()?;
        self.breaker.validate()?;
        self.outage.validate()?;
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return invalid("request and connect timeouts must be > 0");
        }
        if let Auth::Jwt { secret, ttl } = &self.auth {
            if secret.is_empty() {
                return invalid(
                    "JWT auth needs a signing secret: set SHOPSIM_JWT_SECRET (or use --auth dev)",
                );
            }
            if *ttl < Duration::from_secs(120) {
                return invalid(format!(
                    "JWT lifetime {ttl:?} is too short; use ≥ 2 minutes"
                ));
            }
        }
        Ok(base)
    }
}

/// Checks an API base URL (`http`/`https`, a host, no query or fragment) and drops a trailing
/// `/`.
pub fn normalise_base_url(raw: &str) -> Result<String, ActionsSetupError> {
    let text = raw.trim();
    let bad = |why: &str| {
        invalid(format!(
            "API URL `{text}` {why}; use e.g. http://127.0.0.1:8080 or https://api.example.com"
        ))
    };
    let url = match url::Url::parse(text) {
        Ok(u) => u,
        Err(e) => return bad(&format!("is not a URL ({e})")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad("must start with http:// or https://");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("has no host");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("must not have a query or fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("must not contain credentials");
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_normalised() {
        assert_eq!(
            normalise_base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            normalise_base_url(" https://api.example.com/v1/ ").unwrap(),
            "https://api.example.com/v1"
        );
        for bad in [
            "localhost:8080",
            "ftp://x",
            "http://",
            "http://h/?q=1",
            "nonsense",
            "http://u:p@h",
        ] {
            let e = normalise_base_url(bad).unwrap_err().to_string();
            assert!(e.contains("API URL"), "{bad}: {e}");
        }
    }

    #[test]
    fn paths_and_policies_are_validated() {
        assert!(EndpointPaths::default().validate().is_ok());
        let p = EndpointPaths {
            product: "/api/products".into(),
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("{id}"));
        let p = EndpointPaths {
            checkout: "api/orders".into(),
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("checkout"));
        let p = EndpointPaths {
            wallet: "/api/offers/wallet".into(),
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("{user_id}"));
        let r = RetryPolicy {
            max_attempts: 0,
            ..Default::default()
        };
        assert!(r.validate().is_err());
        let b = BreakerConfig {
            failure_rate: 2.0,
            ..Default::default()
        };
        assert!(b.validate().is_err());
        let mut c = HttpConfig::new("http://127.0.0.1:1");
        c.auth = Auth::jwt("");
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("SHOPSIM_JWT_SECRET")
        );
        assert!(!format!("{:?}", Auth::jwt("s3cret")).contains("s3cret"));
    }
}
