//! The gateway's HTTP face: `/rpc`, `/health`, `/ready`, `/metrics` and `/pools`.
//!
//! `/rpc` reads the body, parses the envelope (or the list of calls of a batch),
//! and hands single calls to the pool of their service; batches go to [`batch`].
//! `/ready` turns 503 once a drain has begun, so a balancer in front stops sending.
//! `/pools` shows every pool's endpoints with their health, load and latency.
//!
//! [`batch`]: crate::batch

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use protocol::envelope::{Item, json_error};
use protocol::{Body, ErrorCode, Limits, RequestId, RpcError};
use serde_json::value::RawValue;
use service::http as h;
use service::{ServerConfig, Shutdown};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use upstream::PoolMetrics;

use crate::batch;
use crate::config::{ConfigError, GatewayConfig};
use crate::forward::{self, Forwarded, GwBody, error_answer, failure_answer, local};
use crate::metrics::{GatewayMetrics, Outcome};
use crate::reload::{self, Reloader};
use crate::routes::{Route, Routes};

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address cannot be bound.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// State shared by every request.
pub(crate) struct State {
    pub(crate) routes: Routes,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) server: ServerConfig,
    limits: Limits,
    registry: Registry,
    draining: AtomicBool,
}

/// A gateway with its pools built, ready to serve.
pub struct Gateway {
    state: Arc<State>,
    reloader: Reloader,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.state.server.listen)
            .finish()
    }
}

impl Gateway {
    /// Registers the metrics and builds a pool per service. Must run inside a
    /// Tokio runtime, since pools start their health checks at once.
    pub fn new(
        cfg: &GatewayConfig,
        limits: Limits,
        mut registry: Registry,
        reloader: Reloader,
    ) -> Result<Self, GatewayError> {
        let metrics = GatewayMetrics::register(&mut registry);
        let pool_metrics = PoolMetrics::register(&mut registry);
        let routes = Routes::new(cfg, pool_metrics, metrics.clone())?;
        let state = State {
            routes,
            metrics,
            server: cfg.server.clone(),
            limits,
            registry,
            draining: AtomicBool::new(false),
        };
        Ok(Gateway {
            state: Arc::new(state),
            reloader,
        })
    }

    /// Binds the configured address and serves until `shutdown`, then drains.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), GatewayError> {
        let listener = h::bind(self.state.server.listen).await?;
        info!(listen = %self.state.server.listen, "gateway serving");
        self.serve(listener, shutdown).await;
        Ok(())
    }

    /// Serves on `listener` until `shutdown`, then drains and stops the pools.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) {
        let state = self.state;
        tokio::spawn(mark_draining(state.clone(), shutdown.clone()));
        tokio::spawn(reload::run(self.reloader, state.clone(), shutdown.clone()));
        let server = state.server.clone();
        let handler_state = state.clone();
        h::serve(listener, &server, shutdown, move |req, peer| {
            let state = handler_state.clone();
            async move { route(&state, req, peer).await }
        })
        .await;
        state.routes.shutdown();
    }
}

async fn mark_draining(state: Arc<State>, mut shutdown: Shutdown) {
    shutdown.wait().await;
    state.draining.store(true, Ordering::Release);
}

async fn route(state: &State, req: Request<Incoming>, _peer: SocketAddr) -> Response<GwBody> {
    match (req.uri().path(), req.method()) {
        ("/rpc", &Method::POST) => rpc(state, req).await,
        ("/health", &Method::GET | &Method::HEAD) => {
            local(h::text_response(StatusCode::OK, "text/plain", "ok\n"))
        }
        ("/ready", &Method::GET | &Method::HEAD) => ready(state),
        ("/metrics", &Method::GET) => metrics(state),
        ("/pools", &Method::GET) => pools(state),
        ("/rpc", _) => local(h::method_not_allowed(&h::request_id_of(&req), "POST")),
        ("/health" | "/ready" | "/metrics" | "/pools", _) => {
            local(h::method_not_allowed(&h::request_id_of(&req), "GET"))
        }
        (path, _) => local(h::not_found(&h::request_id_of(&req), path)),
    }
}

fn ready(state: &State) -> Response<GwBody> {
    let response = match state.draining.load(Ordering::Acquire) {
        false => h::text_response(StatusCode::OK, "text/plain", "ready\n"),
        true => h::text_response(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n"),
    };
    local(response)
}

fn metrics(state: &State) -> Response<GwBody> {
    let text = telemetry::encode(&state.registry);
    local(h::text_response(
        StatusCode::OK,
        telemetry::METRICS_CONTENT_TYPE,
        text,
    ))
}

fn pools(state: &State) -> Response<GwBody> {
    #[derive(serde::Serialize)]
    struct View {
        pools: Vec<upstream::PoolState>,
    }
    let view = View {
        pools: state.routes.states(),
    };
    let body = serde_json::to_vec_pretty(&view).unwrap_or_default();
    local(h::text_response(StatusCode::OK, "application/json", body))
}

/// Counts a `/rpc` request as in flight until dropped, even if the client leaves.
struct InFlight<'a>(&'a GatewayMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

async fn rpc(state: &State, req: Request<Incoming>) -> Response<GwBody> {
    let started = Instant::now();
    let response = rpc_inner(state, req).await;
    access_line(&response, started);
    response
}

/// One line per request under `switchboard::access` (muted by `[log] access
/// = false`), so a request id can be followed through the gateway too.
fn access_line(response: &Response<GwBody>, started: Instant) {
    let request_id = response
        .headers()
        .get(protocol::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    info!(
        target: telemetry::logging::ACCESS_TARGET,
        request_id,
        status = response.status().as_u16(),
        duration_us = started.elapsed().as_micros() as u64,
        "rpc"
    );
}

async fn rpc_inner(state: &State, req: Request<Incoming>) -> Response<GwBody> {
    state.metrics.in_flight.inc();
    let _in_flight = InFlight(&state.metrics);
    let header_id = h::request_id_of(&req);
    let forwarded = Forwarded::of(req.headers());
    if !h::is_json_content_type(&req) {
        let error = RpcError::invalid_request("content type must be application/json");
        return local(h::error_response(
            &header_id,
            &error,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ));
    }

    let limit = state.limits.max_body_bytes;
    let body = match h::read_body(req, limit, state.server.body_read_timeout()).await {
        Ok(body) => body,
        Err(error) => {
            let status = h::body_error_status(&error);
            return local(h::error_response(&header_id, &error, status));
        }
    };
    dispatch(state, &body, header_id, &forwarded).await
}

/// A parsed `/rpc` body: one call, or the raw calls of a batch.
#[derive(Debug)]
pub enum Parsed<'a> {
    /// One call, read or refused.
    Single(Item<'a>),
    /// The calls of a batch, each still raw: they are read one by one when
    /// grouped by service.
    Batch(Vec<&'a RawValue>),
}

async fn dispatch(
    state: &State,
    body: &Bytes,
    header_id: RequestId,
    forwarded: &Forwarded,
) -> Response<GwBody> {
    match parse(body, &state.limits) {
        Ok(Parsed::Single(item)) => single(state, body, item, header_id, forwarded).await,
        Ok(Parsed::Batch(raws)) => {
            let ctx = batch::Context {
                routes: &state.routes,
                forwarded,
                request_id: &header_id,
                body_timeout: state.server.body_read_timeout(),
            };
            batch::handle(&ctx, body, &raws).await
        }
        Err(error) => body_error(state, body, &header_id, &error),
    }
}

/// Parses a body; a batch is only split into its raw calls here.
///
/// A single call is read for routing only: its arguments are stepped over,
/// not parsed, so the gateway's cost does not grow with them (the service
/// checks them). Public so that the fuzz targets and the corpus replay tests
/// call the very function the request path calls.
pub fn parse<'a>(body: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, RpcError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return match protocol::parse_routing(body, limits)? {
            Body::Single(item) => Ok(Parsed::Single(item)),
            // parse_body reads a batch only from a body starting with '['.
            Body::Batch(_) => Err(RpcError::invalid_request("unexpected batch")),
        };
    }

    limits.check_body_len(body.len())?;
    limits.check_depth(body)?;
    let raws: Vec<&RawValue> = serde_json::from_slice(body).map_err(json_error)?;
    if raws.is_empty() {
        return Err(RpcError::invalid_request("empty batch"));
    }
    if raws.len() > limits.max_batch {
        let message = format!(
            "batch of {} calls, the limit is {}",
            raws.len(),
            limits.max_batch
        );
        return Err(RpcError::new(ErrorCode::PayloadTooLarge, message));
    }
    Ok(Parsed::Batch(raws))
}

/// An error about the whole body, in the dialect the body seems to speak.
fn body_error(state: &State, body: &[u8], id: &RequestId, error: &RpcError) -> Response<GwBody> {
    state.routes.unknown().record(Outcome::invalid, 0.0);
    let encoded = protocol::encode_body_error(body, id, error);
    let status = match encoded.starts_with(b"{\"jsonrpc\"") {
        true => StatusCode::OK,
        false => StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
    };
    local(h::json_response(status, id, encoded))
}

async fn single(
    state: &State,
    body: &Bytes,
    item: Item<'_>,
    header_id: RequestId,
    forwarded: &Forwarded,
) -> Response<GwBody> {
    let env = match item {
        Ok(env) => env,
        Err(rejected) => {
            state.routes.unknown().record(Outcome::invalid, 0.0);
            let id = rejected.request_id.unwrap_or(header_id);
            return traced(
                forwarded,
                error_answer(rejected.flavor, &id, &rejected.error),
            );
        }
    };

    // A native call's own requestId wins over the header.
    let request_id = env.request_id.clone().unwrap_or(header_id);
    let Some(route) = state.routes.get(env.service()) else {
        state
            .routes
            .unknown()
            .record(Outcome::method_not_found, 0.0);
        let error = RpcError::method_not_found(&env.method);
        return traced(forwarded, error_answer(env.flavor, &request_id, &error));
    };
    let call = Single {
        env: &env,
        request_id: &request_id,
        forwarded,
    };
    call.forward(&route, body.clone()).await
}

/// One routable call and what travels with it.
struct Single<'c, 'a> {
    env: &'c protocol::Envelope<'a>,
    request_id: &'c RequestId,
    forwarded: &'c Forwarded,
}

impl Single<'_, '_> {
    async fn forward(&self, route: &Route, body: Bytes) -> Response<GwBody> {
        let metrics = route.methods.get(&self.env.method);
        let started = Instant::now();
        let req = self.forwarded.request(body, self.request_id);
        let result = route.pool.send(req).await;
        let seconds = started.elapsed().as_secs_f64();

        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                let (error, outcome) = forward::upstream_failure(&e, self.env.service());
                metrics.record(outcome, seconds);
                self.log_failure(&e, outcome);
                let answer = failure_answer(self.env.flavor, self.request_id, &error, outcome);
                return traced(self.forwarded, answer);
            }
        };
        metrics.record(Outcome::of_status(resp.status()), seconds);
        debug!(request_id = %self.request_id, method = %self.env.method, status = %resp.status(), "relayed");
        self.forwarded.relay(resp, self.request_id)
    }

    fn log_failure(&self, error: &upstream::UpstreamError, outcome: Outcome) {
        let (id, method) = (self.request_id, &self.env.method);
        match outcome {
            Outcome::failed => warn!(request_id = %id, %method, %error, "call failed"),
            _ => debug!(request_id = %id, %method, %error, ?outcome, "call not delivered"),
        }
    }
}

fn traced(forwarded: &Forwarded, mut response: Response<GwBody>) -> Response<GwBody> {
    forwarded.echo_trace(response.headers_mut());
    response
}
