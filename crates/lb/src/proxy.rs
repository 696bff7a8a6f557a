//! The proxy: admits, routes, checks and forwards one request, and turns every
//! refusal into an answer in one place ([`Refusal::respond`]).

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use protocol::{ErrorCode, RequestId, RpcError};
use service::http::BoxError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use upstream::{AnsweredBy, Pool, PoolState, UpstreamError};

use crate::access::{Exchange, Logged};
use crate::admission::{InFlight, RateLimiter};
use crate::config::LbConfig;
use crate::error::LbError;
use crate::headers::{self, FramingError};
use crate::metrics::LbMetrics;
use crate::route::{self, Decision, Route};

/// A body boxed for the client, from an upstream or made here.
pub type ClientBody = BoxBody<Bytes, BoxError>;

/// The load balancer's request handling. Cheap to clone.
#[derive(Clone)]
pub struct Lb {
    shared: Arc<Shared>,
}

struct Shared {
    settings: ArcSwap<LbConfig>,
    rpc: Pool,
    statics: Pool,
    metrics: Arc<LbMetrics>,
    in_flight: Arc<InFlight>,
    limiter: RateLimiter,
    /// `X-Forwarded-Proto` value: fixed by whether TLS was on at start.
    proto: &'static str,
}

/// Why a request is answered here rather than by an upstream.
#[derive(Debug)]
enum Refusal {
    Overloaded(u32),
    RateLimited(Duration),
    NotFound(String),
    WrongMethod(&'static str),
    Framing(FramingError),
    TooLarge(usize),
    BodyTimeout,
    BadBody(String),
    Upstream(UpstreamError),
}

impl Lb {
    /// Creates both pools from a validated configuration.
    pub fn new(cfg: &LbConfig, metrics: Arc<LbMetrics>) -> Result<Lb, LbError> {
        let (rpc, statics) = cfg.pools();
        let rpc = Pool::new(rpc, &metrics.pools).map_err(|source| LbError::Pool {
            pool: "rpc",
            source,
        })?;
        let statics = Pool::new(statics, &metrics.pools).map_err(|source| LbError::Pool {
            pool: "static",
            source,
        })?;
        let shared = Shared {
            settings: ArcSwap::from_pointee(cfg.clone()),
            rpc,
            statics,
            in_flight: Arc::new(InFlight::new(metrics.in_flight.clone())),
            metrics,
            limiter: RateLimiter::default(),
            proto: if cfg.tls.is_some() { "https" } else { "http" },
        };
        Ok(Lb {
            shared: Arc::new(shared),
        })
    }

    /// Applies a new configuration: pools and per-request settings change at
    /// once; listener settings (addresses, TLS, timeouts of connections, the
    /// connection cap) need a restart and are only warned about. An invalid
    /// configuration changes nothing.
    pub fn reload(&self, cfg: LbConfig) -> Result<(), LbError> {
        cfg.validate()?;
        warn_restart_only(&self.shared.settings.load(), &cfg);
        let (rpc, statics) = cfg.pools();
        let refused = |pool| move |source| LbError::Pool { pool, source };
        self.shared.rpc.try_update(rpc).map_err(refused("rpc"))?;
        self.shared
            .statics
            .try_update(statics)
            .map_err(refused("static"))?;
        self.shared.settings.store(Arc::new(cfg));
        Ok(())
    }

    /// Snapshots of the `rpc` and `static` pools.
    pub fn pools(&self) -> [PoolState; 2] {
        [self.shared.rpc.state(), self.shared.statics.state()]
    }

    /// The metrics this balancer updates.
    pub fn metrics(&self) -> &LbMetrics {
        &self.shared.metrics
    }

    /// Stops the pools' background tasks.
    pub fn shutdown_pools(&self) {
        self.shared.rpc.shutdown();
        self.shared.statics.shutdown();
    }

    /// Handles one client request; never fails, every refusal is an answer.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Logged> {
        let settings = self.shared.settings.load_full();
        let id = service::http::request_id_of(&req);
        let mut exchange = Exchange::begin(&req, peer, id.as_str());
        let admitted = self.shared.in_flight.try_enter(settings.max_in_flight);
        let result = match admitted {
            None => Err(Refusal::Overloaded(settings.retry_after_s)),
            Some(_) => self.forward(req, peer, &settings, &id, &mut exchange).await,
        };
        let response = result.unwrap_or_else(|refusal| refusal.respond(&id, &self.shared.metrics));
        exchange.status = response.status();
        let (parts, body) = response.into_parts();
        let body = Logged::new(body, exchange, Arc::clone(&self.shared.metrics), admitted);
        Response::from_parts(parts, body)
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        s: &LbConfig,
        id: &RequestId,
        exchange: &mut Exchange,
    ) -> Result<Response<ClientBody>, Refusal> {
        if s.rate_limit.enabled {
            let now = Instant::now();
            let limited = self.shared.limiter.check(peer.ip(), &s.rate_limit, now);
            limited.map_err(Refusal::RateLimited)?;
        }
        let route = match route::decide(req.method(), req.uri().path()) {
            Decision::Forward(route) => route,
            Decision::NotFound => return Err(Refusal::NotFound(req.uri().path().to_owned())),
            Decision::WrongMethod(allow) => return Err(Refusal::WrongMethod(allow)),
        };
        headers::check_framing(&req, s.chunked_requests).map_err(Refusal::Framing)?;

        exchange.route = route;
        let outgoing = self.prepare(req, peer, s, id).await?;
        let mut resp = self
            .pool(route)
            .send(outgoing)
            .await
            .map_err(Refusal::Upstream)?;
        exchange.upstream = resp.extensions().get::<AnsweredBy>().map(|a| a.0);
        headers::clean_response(&mut resp, id);
        Ok(resp.map(|body| body.map_err(BoxError::from).boxed()))
    }

    fn pool(&self, route: Route) -> &Pool {
        match route {
            Route::Static => &self.shared.statics,
            Route::Rpc | Route::Local => &self.shared.rpc,
        }
    }

    /// Reads the body and rewrites the headers of the request to forward.
    async fn prepare(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        s: &LbConfig,
        id: &RequestId,
    ) -> Result<Request<Bytes>, Refusal> {
        headers::ensure_host(&mut req);
        let (mut parts, body) = req.into_parts();
        let timeout = Duration::from_millis(s.body_read_timeout_ms);
        let body = read_body(body, &parts.headers, s.max_body_bytes, timeout).await?;

        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h);
        headers::set_forwarded(h, peer.ip(), s.forwarded_for, self.shared.proto);
        headers::set_request_id(h, id);
        Ok(Request::from_parts(parts, body))
    }
}

/// Reads a whole body of at most `limit` bytes within `timeout`.
async fn read_body(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Refusal::TooLarge(limit));
    }

    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(Refusal::TooLarge(limit)),
        Ok(Err(e)) => Err(Refusal::BadBody(e.to_string())),
        Err(_) => Err(Refusal::BodyTimeout),
    }
}

fn warn_restart_only(old: &LbConfig, new: &LbConfig) {
    let same = old.listen == new.listen
        && old.admin == new.admin
        && old.tls == new.tls
        && old.max_connections == new.max_connections
        && old.header_read_timeout_ms == new.header_read_timeout_ms
        && old.idle_timeout_ms == new.idle_timeout_ms
        && old.drain_timeout_ms == new.drain_timeout_ms;
    if !same {
        tracing::warn!("listener settings changed; they apply after a restart");
    }
}

impl Refusal {
    /// The answer for this refusal; counts it and logs upstream failures.
    fn respond(self, id: &RequestId, metrics: &LbMetrics) -> Response<ClientBody> {
        use service::http as h;
        let response = match self {
            Refusal::Overloaded(after) => {
                metrics.shed.inc();
                let error = RpcError::new(ErrorCode::Overloaded, "too many requests in flight");
                retry_after(
                    h::error_response(id, &error, StatusCode::SERVICE_UNAVAILABLE),
                    after,
                )
            }
            Refusal::RateLimited(wait) => {
                metrics.rate_limited.inc();
                let error = RpcError::new(ErrorCode::Overloaded, "request rate over the limit");
                let secs = u32::try_from(wait.as_secs() + 1).unwrap_or(u32::MAX);
                retry_after(
                    h::error_response(id, &error, StatusCode::TOO_MANY_REQUESTS),
                    secs,
                )
            }
            Refusal::NotFound(path) => h::not_found(id, &path),
            Refusal::WrongMethod(allow) => h::method_not_allowed(id, allow),
            other => return other.refuse_client(id, metrics),
        };
        response.map(boxed)
    }

    /// Answers for a bad request body or framing (closing the connection, whose
    /// remaining bytes cannot be trusted) and for upstream failures.
    fn refuse_client(self, id: &RequestId, metrics: &LbMetrics) -> Response<ClientBody> {
        use service::http as h;
        let (reason, error, status) = match self {
            Refusal::Framing(e) => (
                "framing",
                RpcError::invalid_request(e.message()),
                StatusCode::BAD_REQUEST,
            ),
            Refusal::TooLarge(limit) => (
                "too_large",
                protocol::limits::body_too_large(limit),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            Refusal::BodyTimeout => (
                "body_timeout",
                RpcError::new(ErrorCode::Timeout, "request body arrived too slowly"),
                StatusCode::REQUEST_TIMEOUT,
            ),
            Refusal::BadBody(e) => {
                tracing::debug!(request_id = %id, error = %e, "bad request body");
                (
                    "bad_body",
                    RpcError::invalid_request("malformed request body"),
                    StatusCode::BAD_REQUEST,
                )
            }
            Refusal::Upstream(e) => return upstream_failure(e, id),
            other => {
                // Every other refusal is answered by `respond`.
                tracing::error!(request_id = %id, refusal = ?other, "refusal not mapped");
                return h::error_response(
                    id,
                    &RpcError::internal(),
                    StatusCode::INTERNAL_SERVER_ERROR,
                )
                .map(boxed);
            }
        };
        metrics.refused(reason);
        let mut response = h::error_response(id, &error, status);
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response.map(boxed)
    }
}

/// The answer when no upstream gave a usable response: the detail goes to the
/// log, the client gets only the class of failure.
fn upstream_failure(e: UpstreamError, id: &RequestId) -> Response<ClientBody> {
    let status = e.status();
    let error = match &e {
        UpstreamError::InvalidRequest(message) => RpcError::invalid_request(message.clone()),
        UpstreamError::Timeout => RpcError::new(ErrorCode::Timeout, "upstream timed out"),
        _ => RpcError::new(ErrorCode::Unavailable, "no upstream could answer"),
    };
    if status.is_server_error() {
        tracing::warn!(request_id = %id, error = %e, source = ?std::error::Error::source(&e), "upstream failed");
    }
    service::http::error_response(id, &error, status).map(boxed)
}

fn retry_after(mut response: Response<Full<Bytes>>, secs: u32) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

fn boxed(body: Full<Bytes>) -> ClientBody {
    body.map_err(|never| match never {}).boxed()
}
