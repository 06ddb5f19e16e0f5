//! `shopsim loadtest`: one read endpoint (`GET /api/products/{id}`, the product detail an agent
//! views) at a fixed number of connections for a fixed time, through the host's own HTTP
//! action path ([`HttpActions`]: the same client settings, breaker, retries and latency
//! histogram as a run), so its figures are those of the code agents use. It prints requests,
//! errors, requests/s, latency percentiles and the CPU time the host spent per request, to be
//! compared with `wrk` or `oha` on the same request (`scripts/bench-http`).
//!
//! Every connection sends the same request again and again: the product's detail read as a
//! catalog read, outside a session (no session header, hence no view event and no
//! `Idempotency-Key`), the server's cheapest answer on that endpoint, so the figures are the
//! host's rather than the server's. It can be replayed byte for byte by another load generator
//! (`--print-request`), so both measure the same server work. (A session's view, which the
//! load test sent before, is a keyed write: repeating one key makes the server redo the work
//! and roll it back before it replays the stored answer, three times its cost of a read.)

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::common::parse_duration;
use crate::sim::actions::config::normalise_base_url;
use crate::sim::actions::{ActionError, HttpActions, HttpSession, SessionInfo, Step};
use crate::sim::metrics::{Endpoint, Metrics, Outcome};
use crate::sim::run::{AuthMode, http_config};

/// Most connections accepted (each is a task and a socket).
const MAX_CONNECTIONS: usize = 100_000;

/// Load one read endpoint — `GET /api/products/{id}`, the product detail an agent views —
/// through shopsim's own HTTP path, and report requests/s, latency and the host's CPU time per
/// request.
///
/// Each of --connections keeps one request in flight (as wrk's -c), all as the same agent,
/// reading the same product's detail outside a session (no view event, no idempotency key),
/// so every request is identical and a plain read for the server.
/// --print-request shows that request for replaying it with wrk, oha or Locust
/// (`scripts/bench-http` does). Latency is measured by the host as in a run (from sending the
/// request to the last byte of the answer). Exits 1 when any request failed.
#[derive(Debug, Clone, Args)]
pub struct LoadtestArgs {
    /// Base URL of the API, e.g. http://127.0.0.1:8000 (`shopsim serve`).
    #[arg(long, value_name = "URL")]
    api_url: String,

    /// Concurrent connections, each with one request in flight (like wrk's -c).
    #[arg(long, short = 'c', default_value_t = 16, value_name = "N")]
    connections: usize,

    /// How long to measure, after the warm-up (e.g. 10s, 1m, 500ms).
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    duration: Duration,

    /// Load before measuring, not counted: connections are opened and caches warmed
    /// (`0s` for none, as wrk and oha).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    warmup: Duration,

    /// The product to read (default: the first of `GET /api/products`).
    #[arg(long, value_name = "UUID")]
    product: Option<Uuid>,

    /// The agent whose token authenticates the requests (`Authorization: Bearer dev:AGENT`);
    /// it must be seeded (`shopsim seed --agents N` creates agent_001 …).
    #[arg(long, default_value_t = crate::catalog::agent_name(1), value_name = "AGENT_ID")]
    agent: String,

    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,

    /// Print the request every connection sends (method and URL, then one `name: value`
    /// header per line) and exit without load: for replaying it with another load generator.
    #[arg(long, conflicts_with = "json")]
    print_request: bool,
}

/// Checked arguments.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    base: String,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    product: Option<Uuid>,
    agent: String,
}

impl LoadtestArgs {
    /// Checks the arguments, naming the bad one and what to use instead.
    fn plan(&self) -> anyhow::Result<Plan> {
        let base =
            normalise_base_url(&self.api_url).map_err(|e| anyhow::anyhow!("--api-url: {e}"))?;
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            anyhow::bail!(
                "--connections is {}; use 1 to {MAX_CONNECTIONS} (wrk's -c, default 16)",
                self.connections
            );
        }
        if self.duration.is_zero() {
            anyhow::bail!("--duration must be longer than 0s; use e.g. 10s");
        }
        let agent = self.agent.trim();
        if agent.is_empty() || !agent.bytes().all(|b| b.is_ascii_graphic()) {
            anyhow::bail!(
                "--agent `{}` cannot be sent in an Authorization header; use an agent id such \
                 as agent_001 (printable ASCII, no spaces)",
                self.agent
            );
        }
        Ok(Plan {
            base,
            connections: self.connections,
            duration: self.duration,
            warmup: self.warmup,
            product: self.product,
            agent: agent.to_string(),
        })
    }
}

/// CPU time used by this process so far.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct CpuTime {
    user: Duration,
    sys: Duration,
}

impl CpuTime {
    /// User + system time of this process (`getrusage(RUSAGE_SELF)`); `None` off Unix.
    fn now() -> Option<CpuTime> {
        #[cfg(unix)]
        {
            // SAFETY: getrusage only writes the rusage struct it is given, which lives here.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
            if rc != 0 {
                return None;
            }
            let tv = |t: libc::timeval| {
                Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                    + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
            };
            Some(CpuTime {
                user: tv(usage.ru_utime),
                sys: tv(usage.ru_stime),
            })
        }
        #[cfg(not(unix))]
        {
            None
        }
    }

    fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }

    fn total(self) -> Duration {
        self.user + self.sys
    }
}

/// Latency of the measured requests, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Latency {
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    /// The distribution of a histogram of microseconds; `None` when it is empty.
    fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        })
    }
}

/// What one load test measured.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    url: String,
    agent: String,
    connections: usize,
    warmup: Duration,
    /// The measured window (the duration, or less after Ctrl-C).
    elapsed: Duration,
    requests: u64,
    /// Failed requests by outcome (5xx, timeouts, …).
    errors: BTreeMap<&'static str, u64>,
    /// The first failed step's error, if any.
    first_error: Option<String>,
    latency: Option<Latency>,
    /// `None` where the platform does not say.
    cpu: Option<CpuTime>,
}

impl Report {
    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn requests_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// CPU microseconds per request.
    fn cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.requests > 0).then(|| cpu.total().as_secs_f64() * 1e6 / self.requests as f64)
    }

    /// The human-readable summary.
    fn text(&self) -> String {
        let mut out = format!(
            "GET {} as {}: {} connections, {:.1}s measured after a {} warm-up\n",
            self.url,
            self.agent,
            self.connections,
            self.elapsed.as_secs_f64(),
            humantime::format_duration(self.warmup)
        );
        out.push_str(&format!("requests      {}\n", self.requests));
        out.push_str(&format!("errors        {}", self.error_count()));
        if !self.errors.is_empty() {
            let parts: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            out.push_str(&format!(" ({})", parts.join(", ")));
        }
        out.push('\n');
        if let Some(e) = &self.first_error {
            out.push_str(&format!("first error   {e}\n"));
        }
        out.push_str(&format!("requests/s    {:.1}\n", self.requests_per_s()));
        match &self.latency {
            Some(l) => out.push_str(&format!(
                "latency ms    mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}\n",
                l.mean, l.p50, l.p90, l.p99, l.max
            )),
            None => out.push_str("latency ms    no requests measured\n"),
        }
        match (self.cpu, self.cpu_us_per_request()) {
            (Some(c), Some(per)) => out.push_str(&format!(
                "CPU           user {:.3}s + sys {:.3}s = {:.3}s, {per:.1} µs/request\n",
                c.user.as_secs_f64(),
                c.sys.as_secs_f64(),
                c.total().as_secs_f64()
            )),
            (Some(c), None) => out.push_str(&format!(
                "CPU           {:.3}s (no requests to divide by)\n",
                c.total().as_secs_f64()
            )),
            (None, _) => out.push_str(
                "CPU           not measured: getrusage is only read on Unix (Linux, macOS)\n",
            ),
        }
        out
    }

    /// The machine-readable summary.
    fn json(&self) -> serde_json::Value {
        let latency = self.latency.map(|l| {
            serde_json::json!({
                "mean": l.mean, "p50": l.p50, "p90": l.p90, "p99": l.p99, "max": l.max,
            })
        });
        let cpu = self.cpu.map(|c| {
            serde_json::json!({
                "user_s": c.user.as_secs_f64(),
                "sys_s": c.sys.as_secs_f64(),
                "total_s": c.total().as_secs_f64(),
                "us_per_request": self.cpu_us_per_request(),
            })
        });
        serde_json::json!({
            "url": self.url,
            "agent": self.agent,
            "connections": self.connections,
            "warmup_s": self.warmup.as_secs_f64(),
            "duration_s": self.elapsed.as_secs_f64(),
            "requests": self.requests,
            "errors": self.error_count(),
            "errors_by_outcome": self.errors,
            "first_error": self.first_error,
            "requests_per_s": self.requests_per_s(),
            "latency_ms": latency,
            "cpu": cpu,
        })
    }
}

/// The figures at one instant: latency histogram, requests by outcome, CPU time, when.
struct Mark {
    latency: Histogram<u64>,
    outcomes: Vec<(Outcome, u64)>,
    cpu: Option<CpuTime>,
    at: Instant,
}

impl Mark {
    fn take(metrics: &Metrics) -> Mark {
        // CPU first and the clock last: the window's CPU time is not understated.
        let cpu = CpuTime::now();
        let latency = metrics.latency_histogram(Endpoint::ViewProduct);
        let outcomes = Outcome::ALL
            .into_iter()
            .map(|o| (o, metrics.outcome_count(Endpoint::ViewProduct, o)))
            .collect();
        Mark {
            latency,
            outcomes,
            cpu,
            at: Instant::now(),
        }
    }
}

/// The same step for every request: step 0 of a session at noon (UTC) of the current day.
fn fixed_step(now: DateTime<Utc>) -> Step {
    let noon = now.date_naive().and_hms_opt(12, 0, 0).unwrap_or_default();
    Step {
        seq: 0,
        at: noon.and_utc(),
    }
}

/// The session every connection drives: agent `agent`'s, of the run `loadtest`.
fn session_info(agent: &str, step: Step) -> SessionInfo {
    SessionInfo {
        run_id: "loadtest".into(),
        agent_id: agent.into(),
        // Not sent with dev auth on a product view.
        user_id: Uuid::nil(),
        session_id: crate::ids::stable_uuid(0, "loadtest_session", agent),
        sim_date: step.at.date_naive(),
        session_seq: 0,
        resumed: false,
    }
}

/// The first product of `GET /api/products`, read with a plain request.
async fn first_product(base: &str, agent: &str) -> anyhow::Result<Uuid> {
    #[derive(Deserialize)]
    struct Page {
        products: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        id: Uuid,
    }
    let url = format!("{base}/api/products?limit=1");
    let mut headers = reqwest::header::HeaderMap::new();
    let auth = format!("Bearer dev:{agent}");
    headers.insert(
        reqwest::header::AUTHORIZATION,
        auth.parse()
            .with_context(|| format!("agent `{agent}` cannot be sent in a header"))?,
    );
    let resp = crate::sim::actions::get_once(&url, headers, Duration::from_secs(30))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the API at {base} ({e}); start it (`shopsim serve`) or check --api-url"
            )
        })?;
    let (status, body) = (resp.status, resp.body);
    if status == reqwest::StatusCode::UNAUTHORIZED {
        anyhow::bail!(
            "GET {url} answered 401: the API does not know agent `{agent}`; seed agents \
             (`shopsim seed --agents 1`) or pass another --agent"
        );
    }
    if !status.is_success() {
        anyhow::bail!(
            "GET {url} answered {status}: {}; pass --product UUID to skip this lookup",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    let page: Page = serde_json::from_slice(&body).with_context(|| {
        format!("GET {url} did not answer a product page; pass --product UUID to skip this lookup")
    })?;
    page.products.first().map(|p| p.id).ok_or_else(|| {
        anyhow::anyhow!(
            "the API at {base} lists no products; seed the catalog (`shopsim seed`) or pass \
             --product UUID"
        )
    })
}

/// One connection: the same read again and again until `stop`.
async fn connection(
    mut session: HttpSession,
    step: Step,
    product: Uuid,
    stop: CancellationToken,
    first_error: Arc<OnceLock<String>>,
) {
    while !stop.is_cancelled() {
        match session.read_product(step, product).await {
            Ok(_) => {}
            Err(ActionError::Interrupted(_)) => break,
            Err(e) => {
                let _ = first_error.set(e.to_string());
            }
        }
    }
}

/// Runs `shopsim loadtest`.
pub async fn run(args: LoadtestArgs) -> anyhow::Result<ExitCode> {
    let plan = args.plan()?;
    let cfg = http_config(plan.base.clone(), AuthMode::Dev, plan.connections)?;
    let metrics = Arc::new(Metrics::new());
    let cancel = CancellationToken::new();
    let actions = HttpActions::new(cfg, metrics.clone(), cancel.clone())?;
    let product = match plan.product {
        Some(p) => p,
        None => first_product(&plan.base, &plan.agent).await?,
    };
    let step = fixed_step(Utc::now());
    let info = session_info(&plan.agent, step);
    let mut probe = actions.session(info.clone())?;
    let (method, url, headers) = probe.read_product_request(step, product)?;
    if args.print_request {
        println!("{method} {url}");
        for (name, value) in &headers {
            println!("{name}: {}", value.to_str().unwrap_or_default());
        }
        return Ok(ExitCode::SUCCESS);
    }
    // One read first: a wrong product or agent is one clear error, not a storm of them.
    probe.read_product(step, product).await.map_err(|e| {
        anyhow::anyhow!(
            "reading product {product} as {} failed: {e}; check --product and --agent",
            plan.agent
        )
    })?;

    let stop = CancellationToken::new();
    let first_error = Arc::new(OnceLock::new());
    let mut tasks = JoinSet::new();
    for _ in 0..plan.connections {
        let session = actions.session(info.clone())?;
        tasks.spawn(connection(
            session,
            step,
            product,
            stop.clone(),
            first_error.clone(),
        ));
    }
    let interrupted = tokio::select! {
        _ = tokio::time::sleep(plan.warmup) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    let start = Mark::take(&metrics);
    let interrupted = interrupted
        || tokio::select! {
            _ = tokio::time::sleep(plan.duration) => false,
            _ = tokio::signal::ctrl_c() => true,
        };
    let end = Mark::take(&metrics);
    stop.cancel();
    cancel.cancel();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}

    let report = measure(&plan, &url, &start, &end, first_error.get().cloned());
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    if interrupted {
        eprintln!("interrupted: the figures cover the time measured until Ctrl-C");
        return Ok(ExitCode::from(130));
    }
    let errors = report.error_count();
    if errors > 0 {
        eprintln!(
            "{errors} of {} requests failed; the server's log or `first error` above says why",
            report.requests
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The figures of the window between two marks.
fn measure(
    plan: &Plan,
    url: &str,
    start: &Mark,
    end: &Mark,
    first_error: Option<String>,
) -> Report {
    let mut latency = end.latency.clone();
    // Both come from the same cumulative histogram, so the earlier one is contained in the
    // later one; a failure would only mean an empty window.
    if latency.subtract(&start.latency).is_err() {
        latency.reset();
    }
    let mut requests = 0;
    let mut errors = BTreeMap::new();
    for (&(outcome, after), &(_, before)) in end.outcomes.iter().zip(&start.outcomes) {
        let n = after.saturating_sub(before);
        requests += n;
        if outcome.is_error() && n > 0 {
            errors.insert(outcome.name(), n);
        }
    }
    Report {
        url: url.to_string(),
        agent: plan.agent.clone(),
        connections: plan.connections,
        warmup: plan.warmup,
        elapsed: end.at.saturating_duration_since(start.at),
        requests,
        errors,
        first_error: if requests > 0 { first_error } else { None },
        latency: Latency::of(&latency),
        cpu: match (start.cpu, end.cpu) {
            (Some(a), Some(b)) => Some(b.since(a)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadtestArgs,
    }

    fn parse(extra: &[&str]) -> Result<LoadtestArgs, clap::Error> {
        let mut argv = vec!["loadtest"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn defaults_are_those_of_wrk_and_the_seeded_agent() {
        let a = parse(&["--api-url", "http://127.0.0.1:8000/"]).unwrap();
        let p = a.plan().unwrap();
        assert_eq!(p.base, "http://127.0.0.1:8000");
        assert_eq!(p.connections, 16);
        assert_eq!(p.duration, Duration::from_secs(10));
        assert_eq!(p.warmup, Duration::from_secs(1));
        assert_eq!(p.agent, "agent_001");
        assert_eq!(p.product, None);
        assert!(!a.json && !a.print_request);
        let a = parse(&[
            "--api-url",
            "http://h:1",
            "-c",
            "64",
            "-d",
            "3s",
            "--warmup",
            "0s",
            "--product",
            "6f1c1f0e-7c1a-4c8e-9d0b-2a5a3f1e9b11",
            "--agent",
            "agent_007",
            "--json",
        ])
        .unwrap();
        let p = a.plan().unwrap();
        assert_eq!(
            (p.connections, p.duration, p.warmup),
            (64, Duration::from_secs(3), Duration::ZERO)
        );
        assert_eq!(p.agent, "agent_007");
        assert!(p.product.is_some() && a.json);
    }

    #[test]
    fn bad_arguments_are_refused_with_what_to_do() {
        assert!(parse(&[]).is_err(), "--api-url is required");
        assert!(parse(&["--api-url", "http://h:1", "--duration", "soon"]).is_err());
        assert!(parse(&["--api-url", "http://h:1", "--product", "nope"]).is_err());
        assert!(parse(&["--api-url", "http://h:1", "--json", "--print-request"]).is_err());
        let err = |extra: &[&str]| parse(extra).unwrap().plan().unwrap_err().to_string();
        let e = err(&["--api-url", "localhost:8000"]);
        assert!(
            e.contains("--api-url") && e.contains("http://127.0.0.1:8080"),
            "{e}"
        );
        let e = err(&["--api-url", "http://h:1", "-c", "0"]);
        assert!(e.contains("--connections is 0"), "{e}");
        let e = err(&["--api-url", "http://h:1", "-d", "0s"]);
        assert!(e.contains("--duration"), "{e}");
        let e = err(&["--api-url", "http://h:1", "--agent", "agent 1"]);
        assert!(e.contains("--agent `agent 1`"), "{e}");
    }

    fn report() -> Report {
        Report {
            url: "http://h:1/api/products/p".into(),
            agent: "agent_001".into(),
            connections: 16,
            warmup: Duration::from_secs(1),
            elapsed: Duration::from_secs(2),
            requests: 1000,
            errors: BTreeMap::new(),
            first_error: None,
            latency: Some(Latency {
                mean: 1.5,
                p50: 1.25,
                p90: 2.0,
                p99: 4.0,
                max: 9.0,
            }),
            cpu: Some(CpuTime {
                user: Duration::from_millis(30),
                sys: Duration::from_millis(20),
            }),
        }
    }

    #[test]
    fn text_and_json_carry_every_figure() {
        let r = report();
        let text = r.text();
        for want in [
            "GET http://h:1/api/products/p as agent_001: 16 connections, 2.0s measured after a 1s warm-up",
            "requests      1000\n",
            "errors        0\n",
            "requests/s    500.0\n",
            "latency ms    mean 1.500  p50 1.250  p90 2.000  p99 4.000  max 9.000\n",
            "CPU           user 0.030s + sys 0.020s = 0.050s, 50.0 µs/request\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        let j = r.json();
        assert_eq!(j["requests"], 1000);
        assert_eq!(j["errors"], 0);
        assert_eq!(j["requests_per_s"], 500.0);
        assert_eq!(j["latency_ms"]["p99"], 4.0);
        assert_eq!(j["cpu"]["us_per_request"], 50.0);
        assert_eq!(j["connections"], 16);

        let mut r = report();
        r.errors.insert("api_5xx", 3);
        r.first_error = Some("api_5xx after 5 attempt(s): boom".into());
        r.cpu = None;
        r.latency = None;
        let text = r.text();
        assert!(text.contains("errors        3 (api_5xx 3)"), "{text}");
        assert!(text.contains("first error   api_5xx after 5"), "{text}");
        assert!(text.contains("no requests measured"), "{text}");
        assert!(text.contains("CPU           not measured"), "{text}");
        assert_eq!(r.json()["errors_by_outcome"]["api_5xx"], 3);
        assert!(r.json()["cpu"].is_null());
    }

    #[test]
    fn the_window_excludes_the_warm_up() {
        let metrics = Metrics::new();
        let ms = Duration::from_millis;
        for _ in 0..10 {
            metrics.record_request(Endpoint::ViewProduct, ms(100), Outcome::Ok);
        }
        let start = Mark::take(&metrics);
        for i in 1..=4u64 {
            metrics.record_request(Endpoint::ViewProduct, ms(i), Outcome::Ok);
        }
        metrics.record_request(Endpoint::ViewProduct, ms(2), Outcome::Api5xx);
        let end = Mark::take(&metrics);
        let plan = parse(&["--api-url", "http://h:1"]).unwrap().plan().unwrap();
        let r = measure(&plan, "u", &start, &end, Some("e".into()));
        assert_eq!(r.requests, 5);
        assert_eq!(r.error_count(), 1);
        let l = r.latency.unwrap();
        assert!((l.max - 4.0).abs() < 0.01, "{l:?}");
        assert!((l.mean - 2.4).abs() < 0.01, "{l:?}");
        #[cfg(unix)]
        assert!(r.cpu.is_some());
    }

    #[test]
    fn every_connection_sends_the_same_step_of_one_session() {
        let now = DateTime::parse_from_rfc3339("2026-03-04T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        let step = fixed_step(now);
        assert_eq!(step.at.to_rfc3339(), "2026-03-04T12:00:00+00:00");
        let a = session_info("agent_001", step);
        assert_eq!(a, session_info("agent_001", fixed_step(now)));
        assert_eq!(a.idempotency_key(step), "loadtest/agent_001/2026-03-04/0/0");
    }
}
