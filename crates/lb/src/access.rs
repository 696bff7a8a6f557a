//! The access log: one JSON line per request, written when the response body
//! ends (or the client goes away), so that bytes and duration are complete.
//!
//! Lines go through `tracing` with the target `switchboard::access` into the
//! component's JSON log file; `--log-level 'info,switchboard::access=off'`
//! turns them off. The same moment feeds the request metrics.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};
use service::http::BoxError;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use crate::admission::Admitted;
use crate::metrics::LbMetrics;
use crate::route::Route;

/// Longest path written to the log.
const MAX_LOGGED_PATH: usize = 256;

/// What the access line says about one request.
#[derive(Debug)]
pub struct Exchange {
    /// Client address.
    pub client: SocketAddr,
    /// HTTP method.
    pub method: http::Method,
    /// Path and query, cut to 256 bytes.
    pub path: String,
    /// Request id, as forwarded.
    pub request_id: String,
    /// Route that answered.
    pub route: Route,
    /// Endpoint that answered, when one did.
    pub upstream: Option<SocketAddr>,
    /// Status sent.
    pub status: StatusCode,
    /// When the request headers were read.
    pub started: Instant,
}

impl Exchange {
    /// The record of a request just received.
    pub fn begin<B>(req: &http::Request<B>, client: SocketAddr, request_id: &str) -> Exchange {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        Exchange {
            client,
            method: req.method().clone(),
            path: protocol::error::truncate(path, MAX_LOGGED_PATH).to_owned(),
            request_id: request_id.to_owned(),
            route: Route::Local,
            upstream: None,
            status: StatusCode::OK,
            started: Instant::now(),
        }
    }
}

/// A response body that counts its bytes and logs the exchange when done.
///
/// It also holds the request's admission, so a request counts as in flight
/// until its body has been sent.
pub struct Logged {
    inner: BoxBody<Bytes, BoxError>,
    exchange: Exchange,
    bytes: u64,
    metrics: Arc<LbMetrics>,
    _admitted: Option<Admitted>,
}

impl Logged {
    /// Wraps `inner`; the line is written when the wrapper is dropped.
    pub fn new(
        inner: BoxBody<Bytes, BoxError>,
        exchange: Exchange,
        metrics: Arc<LbMetrics>,
        admitted: Option<Admitted>,
    ) -> Logged {
        Logged {
            inner,
            exchange,
            bytes: 0,
            metrics,
            _admitted: admitted,
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            let len = frame.data_ref().map_or(0, Bytes::len);
            self.bytes += len as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let elapsed = self.exchange.started.elapsed();
        let e = &self.exchange;
        self.metrics.observe(e.route, e.status, elapsed);
        if tracing::enabled!(target: "switchboard::access", tracing::Level::INFO) {
            log_line(e, self.bytes, elapsed);
        }
    }
}

/// Writes the access line; the caller checked that the target is enabled, so
/// that nothing here is formatted when access lines are off.
fn log_line(e: &Exchange, bytes: u64, elapsed: std::time::Duration) {
    let upstream = e.upstream.map(|a| a.to_string());
    tracing::info!(
        target: "switchboard::access",
        time = %unix_time(),
        client = %e.client.ip(),
        method = %e.method,
        path = %e.path,
        status = e.status.as_u16(),
        bytes,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        route = e.route.as_str(),
        upstream = upstream.as_deref().unwrap_or("-"),
        requestId = %e.request_id,
        "access"
    );
}

/// Seconds since the Unix epoch with milliseconds, for the `time` field.
fn unix_time() -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", now.as_secs(), now.subsec_millis())
}
