//! [`Transport`]: how [`super::http`] sends one request and reads its whole answer.
//!
//! - `http://` APIs (the reference server, a local or in-cluster target): hyper's HTTP/1.1
//!   connections, kept alive in a pool shared by every session, each driven by its own task;
//!   no redirect, retry or timeout layers around them and no URL re-parsing: the session's own
//!   retry policy decides what is resent. This is the generator's hot path (`BENCHMARKS.md`,
//!   target 3: about a quarter less CPU per request than reqwest). Driving a connection from
//!   the request's own task was tried: less user CPU, but more wake-ups between the runtime's
//!   worker threads (futex calls), and no cheaper in all.
//! - `https://` APIs: `reqwest` (rustls), which brings TLS, certificate roots and ALPN.
//!
//! A pooled connection the server has closed meanwhile (keep-alive timeouts: uvicorn closes
//! idle connections after 5 s) is noticed by its task and not used, or — when the close races
//! the send — the request hyper hands back unsent goes out on another connection. A request that
//! was sent and then lost is the caller's to retry (it carries an idempotency key).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use reqwest::header::{HOST, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use tokio::net::TcpStream;

/// One request: method, target on the API's origin, headers and body.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The request target: path (the base URL's own path included) and query, from `/`,
    /// percent-encoded ([`target_of`]). Not a whole URL: the transport knows the origin, and
    /// a request's URL is neither built nor parsed per request.
    pub target: String,
    /// Headers (the transport adds `host` and `content-length`).
    pub headers: HeaderMap,
    /// The body, if any.
    pub body: Option<Bytes>,
}

/// A whole answer.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<HeaderValue>,
    /// The body, read to its end.
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// No connection could be made (refused, unresolvable host, connect timeout): the API is
    /// unreachable.
    Connect(String),
    /// No whole answer within the request timeout.
    Timeout(String),
    /// The connection failed during the exchange (reset, closed, malformed answer).
    Exchange(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Connect(r)
            | TransportError::Timeout(r)
            | TransportError::Exchange(r) => f.write_str(r),
        }
    }
}

/// One `GET` of an absolute `url` on a transport of its own (start-up checks: the API's
/// health, the loadtest's product lookup). A URL that does not parse is an `Exchange` error.
pub async fn get_once(
    url: &str,
    headers: HeaderMap,
    timeout: Duration,
) -> Result<Response, TransportError> {
    let url = Url::parse(url).map_err(|e| TransportError::Exchange(format!("URL `{url}`: {e}")))?;
    let target = target_of(&url);
    let limits = Limits {
        request_timeout: timeout,
        connect_timeout: timeout,
        max_idle: 0,
    };
    let transport = Transport::new(&url, limits).map_err(TransportError::Exchange)?;
    transport
        .send(Request {
            method: Method::GET,
            target,
            headers,
            body: None,
        })
        .await
}

/// The request target of `url`: its path and query (`/api/x?y=1`), as [`Request::target`].
pub fn target_of(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// Timeouts and pool size of a [`Transport`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Whole request, from taking a connection to the last byte of the body.
    pub request_timeout: Duration,
    /// Resolving and connecting.
    pub connect_timeout: Duration,
    /// Idle connections kept for reuse.
    pub max_idle: usize,
}

/// Sends requests to one API. Cheap to share (`Arc`), used concurrently by every session.
pub enum Transport {
    /// `http://`: hyper HTTP/1.1 connections in a keep-alive pool.
    Plain(PlainPool),
    /// `https://`: reqwest with rustls, and the origin (`https://host[:port]`) targets are on.
    Tls(reqwest::Client, String),
}

impl Transport {
    /// A transport for APIs at `base` (its scheme picks the kind).
    pub fn new(base: &Url, limits: Limits) -> Result<Self, String> {
        if base.scheme() == "http" {
            return PlainPool::new(base, limits).map(Transport::Plain);
        }
        use_ring_for_tls();
        reqwest::Client::builder()
            .timeout(limits.request_timeout)
            .connect_timeout(limits.connect_timeout)
            .pool_max_idle_per_host(limits.max_idle)
            .no_proxy()
            .retry(reqwest::retry::never())
            .build()
            .map(|client| Transport::Tls(client, base.origin().ascii_serialization()))
            .map_err(|e| super::http::error_chain(&e))
    }

    /// Sends `request` and reads the whole answer.
    pub async fn send(&self, request: Request) -> Result<Response, TransportError> {
        match self {
            Transport::Plain(pool) => pool.send(request).await,
            Transport::Tls(client, origin) => send_reqwest(client, origin, request).await,
        }
    }
}

/// Makes `ring` the process's TLS provider unless one is set: reqwest is built without a
/// default one, and panics building a client without it.
fn use_ring_for_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn send_reqwest(
    client: &reqwest::Client,
    origin: &str,
    request: Request,
) -> Result<Response, TransportError> {
    let url = url_of(origin, &request.target)?;
    let mut builder = client.request(request.method, url);
    builder = builder.headers(request.headers);
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    let failed = |e: reqwest::Error| {
        let reason = super::http::error_chain(&e);
        if e.is_connect() {
            TransportError::Connect(reason)
        } else if e.is_timeout() {
            TransportError::Timeout(reason)
        } else {
            TransportError::Exchange(reason)
        }
    };
    let resp = builder.send().await.map_err(failed)?;
    let status = resp.status();
    let retry_after = resp.headers().get(RETRY_AFTER).cloned();
    let body = resp.bytes().await.map_err(failed)?;
    Ok(Response {
        status,
        retry_after,
        body,
    })
}

/// The whole URL of `target` on `origin` (reqwest takes URLs, not targets).
fn url_of(origin: &str, target: &str) -> Result<Url, TransportError> {
    let url = format!("{origin}{target}");
    Url::parse(&url).map_err(|e| TransportError::Exchange(format!("request URL `{url}`: {e}")))
}

/// Where a plain connection goes: a resolved address, or a name resolved per connect.
#[derive(Debug, Clone)]
enum Target {
    Addr(SocketAddr),
    Name(String, u16),
}

/// The sending half of a connection; its other half runs as its own task.
type Conn = http1::SendRequest<Full<Bytes>>;

/// Kept-alive HTTP/1.1 connections to one `http://` origin.
pub struct PlainPool {
    target: Target,
    host: HeaderValue,
    limits: Limits,
    /// Idle connections with the instant each went idle; the most recent last.
    idle: Mutex<Vec<(Instant, Conn)>>,
}

/// Idle connections older than this are closed rather than reused (as reqwest's pool does):
/// a server has likely closed them, and they should not linger half-closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

impl std::fmt::Debug for PlainPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainPool")
            .field("target", &self.target)
            .field("idle", &self.idle.lock().len())
            .finish()
    }
}

impl PlainPool {
    fn new(base: &Url, limits: Limits) -> Result<Self, String> {
        let port = base.port_or_known_default().unwrap_or(80);
        let (target, host) = match base.host() {
            Some(url::Host::Ipv4(ip)) => (Target::Addr((ip, port).into()), ip.to_string()),
            Some(url::Host::Ipv6(ip)) => (Target::Addr((ip, port).into()), format!("[{ip}]")),
            Some(url::Host::Domain(d)) => (Target::Name(d.to_string(), port), d.to_string()),
            None => return Err(format!("API URL `{base}` has no host")),
        };
        let host = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let host = HeaderValue::from_str(&host)
            .map_err(|_| format!("API URL `{base}`: host `{host}` is not a valid header"))?;
        Ok(Self {
            target,
            host,
            limits,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Idle connections held now.
    #[cfg(test)]
    fn idle_connections(&self) -> usize {
        self.idle.lock().len()
    }

    async fn send(&self, request: Request) -> Result<Response, TransportError> {
        let timeout = self.limits.request_timeout;
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout(format!(
                "no whole answer within the request timeout ({timeout:?})"
            ))),
        }
    }

    async fn exchange(&self, request: Request) -> Result<Response, TransportError> {
        let mut message = self.message(request)?;
        loop {
            let (mut conn, reused) = match self.take_idle() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            // A pooled connection's task may still be finishing the previous answer.
            if let Err(e) = conn.ready().await {
                if reused {
                    continue;
                }
                return Err(TransportError::Exchange(exchange_error(&e)));
            }
            let answer = conn.try_send_request(message).await;
            let resp = match answer {
                Ok(resp) => resp,
                Err(mut e) => match e.take_message() {
                    // Never written: the pooled connection had closed. Another one.
                    Some(m) if reused => {
                        message = m;
                        continue;
                    }
                    _ => return Err(TransportError::Exchange(exchange_error(e.error()))),
                },
            };
            let (parts, body) = resp.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => return Err(TransportError::Exchange(exchange_error(&e))),
            };
            self.put_back(conn);
            return Ok(Response {
                status: parts.status,
                retry_after: parts.headers.get(RETRY_AFTER).cloned(),
                body,
            });
        }
    }

    fn message(&self, request: Request) -> Result<hyper::Request<Full<Bytes>>, TransportError> {
        let mut message = hyper::Request::new(Full::new(request.body.unwrap_or_default()));
        *message.method_mut() = request.method;
        let target = request.target;
        *message.uri_mut() = hyper::Uri::try_from(target.as_str())
            .map_err(|e| TransportError::Exchange(format!("request path `{target}`: {e}")))?;
        *message.headers_mut() = request.headers;
        message.headers_mut().insert(HOST, self.host.clone());
        Ok(message)
    }

    /// An idle connection that is still open (most recently used first: it is the least
    /// likely to have been closed by the server).
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock();
        while let Some((since, conn)) = idle.pop() {
            if since.elapsed() < IDLE_TIMEOUT && !conn.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    fn put_back(&self, conn: Conn) {
        if conn.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock();
        // The oldest are first: drop the expired ones there.
        let expired = idle
            .iter()
            .take_while(|(since, _)| now.duration_since(*since) >= IDLE_TIMEOUT)
            .count();
        idle.drain(..expired);
        if idle.len() < self.limits.max_idle {
            idle.push((now, conn));
        }
    }

    async fn connect(&self) -> Result<Conn, TransportError> {
        let timeout = self.limits.connect_timeout;
        let stream = match tokio::time::timeout(timeout, self.open_stream()).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(TransportError::Connect(format!(
                    "connecting to {} timed out after {timeout:?}",
                    self.target_name()
                )));
            }
        };
        // Requests are small and answered at once: do not wait to fill segments.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| TransportError::Connect(exchange_error(&e)))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    async fn open_stream(&self) -> Result<TcpStream, TransportError> {
        let failed = |e: std::io::Error| {
            TransportError::Connect(format!("connecting to {}: {e}", self.target_name()))
        };
        match &self.target {
            Target::Addr(addr) => TcpStream::connect(addr).await.map_err(failed),
            Target::Name(host, port) => TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(failed),
        }
    }

    fn target_name(&self) -> String {
        match &self.target {
            Target::Addr(a) => a.to_string(),
            Target::Name(h, p) => format!("{h}:{p}"),
        }
    }
}

fn exchange_error(e: &hyper::Error) -> String {
    super::http::error_chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn limits() -> Limits {
        Limits {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_idle: 8,
        }
    }

    fn get(base: &Url, path: &str) -> Request {
        Request {
            method: Method::GET,
            target: target_of(&base.join(path).unwrap()),
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// A listener on a free loopback port and its base URL.
    async fn listen() -> (TcpListener, Url) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        (listener, base)
    }

    /// A tiny HTTP/1.1 server: answers every request on a connection with `200 path` (keeping
    /// it open unless `close_after` requests were served on it), counting connections.
    async fn server(close_after: Option<usize>) -> (Url, Arc<AtomicUsize>) {
        let (listener, base) = listen().await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut served = 0;
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("").to_string();
                        let host = head
                            .lines()
                            .find_map(|l| l.strip_prefix("host: "))
                            .unwrap_or("")
                            .to_string();
                        let body = format!("{path} {host}");
                        served += 1;
                        let close = close_after == Some(served);
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nretry-after: 3\r\n{}\r\n{body}",
                            body.len(),
                            if close { "connection: close\r\n" } else { "" }
                        );
                        if s.write_all(reply.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        (base, accepted)
    }

    #[tokio::test]
    async fn connections_are_kept_alive_and_reused() {
        let (base, accepted) = server(None).await;
        let t = Transport::new(&base, limits()).unwrap();
        for i in 0..5 {
            let r = t.send(get(&base, &format!("a/{i}?x=1"))).await.unwrap();
            assert_eq!(r.status, StatusCode::OK);
            let host = base.host_str().unwrap();
            let port = base.port().unwrap();
            assert_eq!(r.body, format!("/a/{i}?x=1 {host}:{port}"));
            assert_eq!(r.retry_after, Some(HeaderValue::from_static("3")));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection for all");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_an_error() {
        // The server closes after each answer (`connection: close`).
        let (base, accepted) = server(Some(1)).await;
        let t = Transport::new(&base, limits()).unwrap();
        for _ in 0..3 {
            let r = t.send(get(&base, "p")).await.unwrap();
            assert_eq!(r.status, StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        if let Transport::Plain(p) = &t {
            assert_eq!(p.idle_connections(), 0, "closed connections are not pooled");
        }
    }

    #[tokio::test]
    async fn an_idle_connection_closed_by_the_server_is_replaced() {
        let (listener, base) = listen().await;
        // Answers one request per connection without `connection: close`, then hangs up,
        // as a server's keep-alive timeout does.
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                });
            }
        });
        let t = Transport::new(&base, limits()).unwrap();
        for _ in 0..4 {
            let r = t.send(get(&base, "x")).await.unwrap();
            assert_eq!(&r.body[..], b"ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn refused_connections_and_slow_answers_are_told_apart() {
        let (listener, base) = listen().await;
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let t = Transport::new(&base, limits()).unwrap();
        match t.send(get(&base, "x")).await {
            Err(TransportError::Connect(m)) => assert!(m.contains(&addr.to_string()), "{m}"),
            other => panic!("expected a connect error, got {other:?}"),
        }

        // Accepts and never answers.
        let (listener, base) = listen().await;
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let mut l = limits();
        l.request_timeout = Duration::from_millis(200);
        let t = Transport::new(&base, l).unwrap();
        match t.send(get(&base, "x")).await {
            Err(TransportError::Timeout(m)) => assert!(m.contains("200ms"), "{m}"),
            other => panic!("expected a timeout, got {other:?}"),
        }

        // Answers garbage and hangs up.
        let (listener, base) = listen().await;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"NOT HTTP\r\n\r\n").await;
            }
        });
        let t = Transport::new(&base, limits()).unwrap();
        assert!(matches!(
            t.send(get(&base, "x")).await,
            Err(TransportError::Exchange(_))
        ));
    }

    #[tokio::test]
    async fn concurrent_requests_use_their_own_connections_and_pool_them() {
        let (base, accepted) = server(None).await;
        let t = Arc::new(Transport::new(&base, limits()).unwrap());
        for _ in 0..3 {
            let tasks: Vec<_> = (0..4)
                .map(|i| {
                    let (t, base) = (t.clone(), base.clone());
                    tokio::spawn(async move { t.send(get(&base, &format!("c{i}"))).await })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap().unwrap().status, StatusCode::OK);
            }
        }
        let n = accepted.load(Ordering::SeqCst);
        assert!((1..=4).contains(&n), "{n} connections for 4 at a time");
    }

    #[test]
    fn tls_requests_go_to_their_target_on_the_origin() {
        for url in [
            "https://api.example.com/v1/api/products/9?x=1",
            "https://api.example.com:8443/api/cart/items",
            "https://[::1]:9443/a%20b/c",
        ] {
            let url = Url::parse(url).unwrap();
            let origin = url.origin().ascii_serialization();
            assert_eq!(url_of(&origin, &target_of(&url)).unwrap(), url);
        }
    }

    #[test]
    fn hosts_are_sent_as_in_the_url() {
        let l = limits();
        for (url, host) in [
            ("http://127.0.0.1:8080/api", "127.0.0.1:8080"),
            ("http://[::1]:9/", "[::1]:9"),
            ("http://example.test/", "example.test"),
            ("http://example.test:80/", "example.test"),
        ] {
            let p = PlainPool::new(&url.parse().unwrap(), l).unwrap();
            assert_eq!(p.host, host, "{url}");
        }
    }
}
