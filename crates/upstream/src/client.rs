//! The HTTP/1.1 client under a pool, and the shape of each outgoing try.
//!
//! One `hyper_util` legacy client per pool keeps a keep-alive connection pool for
//! every endpoint. A [`Template`] holds the caller's request once, so every try is a
//! cheap copy (the body is reference-counted `Bytes`) aimed at one endpoint.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Method, Request, Version};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::Error as ClientError;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::PoolConfig;
use crate::endpoint::Endpoint;
use crate::error::UpstreamError;

/// The client type every pool uses.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Header carrying a relative deadline in integer milliseconds, both ways.
pub const DEADLINE_HEADER: &str = "x-request-timeout-ms";

/// Idle connections kept per endpoint; more are closed once they turn idle.
const MAX_IDLE_PER_HOST: usize = 64;

/// Headers that describe one hop and must not be forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    // The body is re-framed by the client from its exact length.
    header::CONTENT_LENGTH,
];

/// Builds the keep-alive client of a pool.
pub(crate) fn build(cfg: &PoolConfig) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(cfg.connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(30)));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(cfg.idle_timeout)
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .build(connector)
}

/// How a failed exchange ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// No connection was made: the request never left.
    Connect,
    /// The connection closed or reset before any response byte.
    Closed,
    /// Anything else after the request was sent.
    Other,
}

/// Sorts a client error by whether the request may have reached the instance.
///
/// A connection closed before any response is counted as not sent: that is what a
/// pooled connection closed by the server while idle looks like. It is also what an
/// instance crashing mid-request looks like, so such a request can run twice.
pub(crate) fn classify(err: &ClientError) -> FailureKind {
    if err.is_connect() {
        return FailureKind::Connect;
    }
    let mut source = err.source();
    while let Some(cause) = source {
        if closed_before_response(cause) {
            return FailureKind::Closed;
        }
        source = cause.source();
    }
    FailureKind::Other
}

fn closed_before_response(cause: &(dyn StdError + 'static)) -> bool {
    if let Some(e) = cause.downcast_ref::<hyper::Error>() {
        return e.is_canceled() || e.is_incomplete_message() || e.is_closed();
    }
    if let Some(e) = cause.downcast_ref::<io::Error>() {
        use io::ErrorKind::*;
        return matches!(
            e.kind(),
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
        );
    }
    false
}

/// The caller's request, kept so that it can be sent to any endpoint, any number of times.
#[derive(Debug)]
pub(crate) struct Template {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
    body: Bytes,
    /// The deadline the caller asked for in [`DEADLINE_HEADER`], if any.
    pub(crate) deadline: Option<Duration>,
}

impl Template {
    /// Takes the request apart; fails only on a header that cannot be forwarded.
    pub(crate) fn new(req: Request<Bytes>) -> Result<Self, UpstreamError> {
        let (parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut headers = parts.headers;
        let deadline = take_deadline(&mut headers)?;
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        Ok(Self {
            method: parts.method,
            path,
            headers,
            body,
            deadline,
        })
    }

    /// One try at `ep`, announcing `budget` as the time the instance has.
    pub(crate) fn build(&self, ep: &Endpoint, budget: Duration) -> Request<Full<Bytes>> {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(ep.authority.clone());
        uri.path_and_query = Some(self.path.clone());
        let uri = Uri::from_parts(uri).expect("scheme, authority and path make a valid uri");

        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = self.headers.clone();
        let headers = req.headers_mut();
        headers
            .entry(header::HOST)
            .or_insert_with(|| ep.host.clone());
        let ms = budget.as_millis().max(1);
        headers.insert(
            DEADLINE_HEADER,
            HeaderValue::from(u64::try_from(ms).unwrap_or(u64::MAX)),
        );
        req
    }
}

/// Removes and parses the caller's deadline header.
fn take_deadline(headers: &mut HeaderMap) -> Result<Option<Duration>, UpstreamError> {
    let Some(value) = headers.remove(DEADLINE_HEADER) else {
        return Ok(None);
    };
    let ms = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| UpstreamError::InvalidRequest(format!("bad {DEADLINE_HEADER} header")))?;
    Ok(Some(Duration::from_millis(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::tests::endpoint;

    fn request(deadline: Option<&str>) -> Request<Bytes> {
        let mut builder = Request::post("http://client.example/rpc?x=1")
            .header(header::CONNECTION, "keep-alive")
            .header(header::CONTENT_LENGTH, "2");
        if let Some(d) = deadline {
            builder = builder.header(DEADLINE_HEADER, d);
        }
        builder
            .body(Bytes::from_static(b"{}"))
            .expect("valid request")
    }

    #[test]
    fn tries_target_the_endpoint_and_keep_the_path() {
        let template = Template::new(request(None)).expect("forwardable");
        let ep = endpoint(1, 1);
        let req = template.build(&ep, Duration::from_millis(750));
        assert_eq!(req.uri().to_string(), "http://127.0.0.1:10001/rpc?x=1");
        assert_eq!(req.headers()[header::HOST], "127.0.0.1:10001");
        assert_eq!(req.headers()[DEADLINE_HEADER], "750");
        assert!(!req.headers().contains_key(header::CONNECTION));
        assert_eq!(template.deadline, None);
    }

    #[test]
    fn the_callers_deadline_is_read_and_checked() {
        let template = Template::new(request(Some("1500"))).expect("forwardable");
        assert_eq!(template.deadline, Some(Duration::from_millis(1500)));
        let err = Template::new(request(Some("soon"))).expect_err("not a number");
        assert_eq!(err.status(), 400);
    }
}
