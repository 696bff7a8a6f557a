//! Defining a service and dispatching calls to its operations.

use crate::config::ServiceConfig;
use crate::http as h;
use crate::metrics::{MethodMetrics, ServiceMetrics, UNKNOWN};
use crate::shutdown::Shutdown;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use protocol::envelope::{Item, Rejected};
use protocol::{Body, Envelope, ErrorCode, Flavor, Limits, Number, RequestId, RpcError};
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::net::TcpListener;

/// What an operation returns: a JSON result or an error answer.
pub type OpResult = Result<Box<RawValue>, RpcError>;

/// An operation: a pure function of its call. It runs on the server's worker
/// threads, so it must be quick; blocking work belongs on a blocking pool.
pub type Handler = Arc<dyn Fn(&Call<'_>) -> OpResult + Send + Sync>;

/// Serialises an operation's result.
pub fn reply<T: Serialize>(value: T) -> OpResult {
    serde_json::value::to_raw_value(&value).map_err(|e| {
        tracing::error!(error = %e, "result does not serialise");
        RpcError::internal()
    })
}

/// One call as an operation sees it.
pub struct Call<'a> {
    method: &'a str,
    params: Option<&'a RawValue>,
    request_id: &'a RequestId,
    limits: &'a Limits,
}

impl<'a> Call<'a> {
    /// The full method name, `service.operation`.
    pub fn method(&self) -> &str {
        self.method
    }

    /// The raw `data` (native) or `params` (JSON-RPC) of the call.
    pub fn params(&self) -> Option<&'a RawValue> {
        self.params
    }

    /// The request id, for logs.
    pub fn request_id(&self) -> &RequestId {
        self.request_id
    }

    /// The numeric argument list, read exactly and under the limits.
    pub fn numbers(&self) -> Result<Vec<Number>, RpcError> {
        protocol::parse_numbers(self.params, self.limits)
    }
}

/// Collects the operations of a service.
pub struct ServiceBuilder {
    name: String,
    ops: Vec<(String, Handler)>,
}

impl ServiceBuilder {
    /// Registers `operation`, served as `<service>.<operation>`.
    pub fn op<F>(mut self, operation: &str, handler: F) -> Self
    where
        F: Fn(&Call<'_>) -> OpResult + Send + Sync + 'static,
    {
        self.ops.push((operation.to_owned(), Arc::new(handler)));
        self
    }

    /// The finished definition.
    pub fn build(self) -> Service {
        Service {
            name: self.name,
            ops: self.ops,
        }
    }
}

/// A service definition: a name and its operations.
pub struct Service {
    name: String,
    ops: Vec<(String, Handler)>,
}

impl Service {
    /// Starts a definition of the service `name` (the method prefix).
    pub fn builder(name: &str) -> ServiceBuilder {
        ServiceBuilder {
            name: name.to_owned(),
            ops: Vec::new(),
        }
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Full names of the operations, `service.operation`.
    pub fn methods(&self) -> impl Iterator<Item = String> + '_ {
        self.ops.iter().map(|(op, _)| format!("{}.{op}", self.name))
    }

    /// Binds `cfg.server.listen` and serves until SIGTERM or Ctrl-C, then
    /// drains.
    pub async fn run(self, cfg: ServiceConfig, mut registry: Registry) -> std::io::Result<()> {
        let listener = h::bind(cfg.server.listen).await?;
        tracing::info!(service = %self.name, listen = %cfg.server.listen, "serving");
        let dispatcher = self.dispatcher(&mut registry, cfg.limits);
        serve(listener, cfg, dispatcher, registry, Shutdown::on_signals()).await;
        Ok(())
    }

    /// Registers metrics and returns the call dispatcher, for serving or for
    /// calling in-process (tests, benchmarks).
    pub fn dispatcher(self, registry: &mut Registry, limits: Limits) -> Dispatcher {
        let metrics = ServiceMetrics::register(registry);
        let ops = self
            .ops
            .into_iter()
            .map(|(op, handler)| {
                let method = format!("{}.{op}", self.name);
                let metrics = metrics.method(&method);
                (method, Op { handler, metrics })
            })
            .collect();
        let unknown = metrics.method(UNKNOWN);
        Dispatcher {
            name: self.name,
            ops,
            unknown,
            metrics,
            limits,
        }
    }
}

struct Op {
    handler: Handler,
    metrics: MethodMetrics,
}

/// Runs a handler, turning a panic into an `internal` answer so one bad input
/// cannot take the process down.
fn guarded(op: &Op, call: &Call<'_>) -> OpResult {
    let run = std::panic::AssertUnwindSafe(|| (op.handler)(call));
    std::panic::catch_unwind(run).unwrap_or_else(|_| {
        tracing::error!(method = call.method, request_id = %call.request_id, "operation panicked");
        Err(RpcError::internal())
    })
}

/// Routes calls to operations and writes the answers.
pub struct Dispatcher {
    name: String,
    ops: HashMap<String, Op>,
    unknown: MethodMetrics,
    metrics: ServiceMetrics,
    limits: Limits,
}

/// An answer ready to send.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body; `None` when every call was a notification.
    pub body: Option<Vec<u8>>,
    /// The request id the answer carries in `X-Request-Id`.
    pub request_id: RequestId,
}

impl Dispatcher {
    /// Handles one `/rpc` body. `header_id` is the request's `X-Request-Id`
    /// (or a fresh id); a native single call's own `requestId` wins over it.
    pub fn handle(&self, body: &[u8], header_id: RequestId) -> Answer {
        match protocol::parse_body(body, &self.limits) {
            Ok(Body::Single(item)) => self.single(item, header_id),
            Ok(Body::Batch(items)) => self.batch(items, header_id),
            Err(error) => self.body_error(body, header_id, &error),
        }
    }

    fn single(&self, item: Item<'_>, header_id: RequestId) -> Answer {
        let (flavor, request_id, result) = self.call(item, Some(header_id));
        let status =
            protocol::answer::http_status(flavor, result.as_ref().map(|_| ()).map_err(|e| e.code));
        let body = protocol::encode_single(flavor, &request_id, result.as_deref());
        Answer {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
            request_id,
        }
    }

    fn batch(&self, items: Vec<Item<'_>>, header_id: RequestId) -> Answer {
        let mut out = Vec::with_capacity(64 * items.len() + 2);
        out.push(b'[');
        for item in items {
            let (flavor, request_id, result) = self.call(item, None);
            let mark = out.len();
            if out.len() > 1 {
                out.push(b',');
            }
            if !protocol::write_answer(&mut out, flavor, &request_id, result.as_deref()) {
                out.truncate(mark);
            }
        }
        out.push(b']');
        let body = (out.len() > 2).then_some(out);
        let status = match body {
            Some(_) => StatusCode::OK,
            None => StatusCode::NO_CONTENT,
        };
        Answer {
            status,
            body,
            request_id: header_id,
        }
    }

    /// Runs one call: finds the operation, runs it, records metrics and logs
    /// one line. `header_id` is used for a native call without its own id;
    /// in a batch each such call gets a fresh id.
    fn call<'a>(
        &self,
        item: Item<'a>,
        header_id: Option<RequestId>,
    ) -> (Flavor<'a>, RequestId, OpResult) {
        let start = Instant::now();
        let (flavor, request_id, method, result) = match item {
            Ok(env) => {
                let id = env
                    .request_id
                    .clone()
                    .or(header_id)
                    .unwrap_or_else(RequestId::generate);
                let (method, result) = self.run(&env, &id);
                (env.flavor, id, method, result)
            }
            Err(Rejected {
                flavor,
                request_id,
                error,
            }) => {
                let id = request_id.or(header_id).unwrap_or_else(RequestId::generate);
                (flavor, id, None, Err(error))
            }
        };
        self.record(method, &request_id, &result, start);
        (flavor, request_id, result)
    }

    fn run<'s>(
        &'s self,
        env: &Envelope<'_>,
        request_id: &RequestId,
    ) -> (Option<(&'s str, &'s Op)>, OpResult) {
        let Some((name, op)) = self.ops.get_key_value(env.method.as_ref()) else {
            return (None, Err(RpcError::method_not_found(&env.method)));
        };
        let call = Call {
            method: name,
            params: env.params,
            request_id,
            limits: &self.limits,
        };
        (Some((name.as_str(), op)), guarded(op, &call))
    }

    fn record(
        &self,
        method: Option<(&str, &Op)>,
        request_id: &RequestId,
        result: &OpResult,
        start: Instant,
    ) {
        let elapsed = start.elapsed();
        let (name, metrics) = match method {
            Some((name, op)) => (name, &op.metrics),
            None => (UNKNOWN, &self.unknown),
        };
        metrics.record(result.is_ok(), elapsed.as_secs_f64());
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => {
                self.metrics.error(e.code);
                e.code.as_str()
            }
        };
        tracing::info!(
            target: "switchboard::access",
            service = %self.name,
            request_id = %request_id,
            method = name,
            outcome,
            duration_us = elapsed.as_micros() as u64,
            "call"
        );
    }

    fn body_error(&self, body: &[u8], header_id: RequestId, error: &RpcError) -> Answer {
        let start = Instant::now();
        self.record(None, &header_id, &Err(error.clone()), start);
        let encoded = protocol::encode_body_error(body, &header_id, error);
        let jsonrpc = encoded.starts_with(b"{\"jsonrpc\"");
        let status = match jsonrpc {
            true => StatusCode::OK,
            false => {
                StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
        };
        Answer {
            status,
            body: Some(encoded),
            request_id: header_id,
        }
    }

    /// Counts and answers an error found before dispatch (body unreadable).
    pub fn refuse(
        &self,
        header_id: RequestId,
        error: &RpcError,
        status: StatusCode,
    ) -> Response<Full<Bytes>> {
        self.record(None, &header_id, &Err(error.clone()), Instant::now());
        h::error_response(&header_id, error, status)
    }
}

/// Shared state of a running service.
struct State {
    dispatcher: Dispatcher,
    registry: Registry,
    cfg: ServiceConfig,
    draining: AtomicBool,
}

/// Serves a dispatcher on `listener` until `shutdown`, then drains. Used by
/// [`Service::run`] and by tests that need the port first.
pub async fn serve(
    listener: TcpListener,
    cfg: ServiceConfig,
    dispatcher: Dispatcher,
    registry: Registry,
    shutdown: Shutdown,
) {
    let state = Arc::new(State {
        dispatcher,
        registry,
        cfg: cfg.clone(),
        draining: AtomicBool::new(false),
    });
    let watcher = state.clone();
    let mut signal = shutdown.clone();
    tokio::spawn(async move {
        signal.wait().await;
        watcher.draining.store(true, Ordering::Release);
    });
    h::serve(listener, &cfg.server, shutdown, move |req, _peer| {
        let state = state.clone();
        async move { route(&state, req).await }
    })
    .await;
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let request_id = h::request_id_of(&req);
    match (req.uri().path(), req.method()) {
        ("/rpc", &Method::POST) => rpc(state, req, request_id).await,
        ("/rpc", _) => h::method_not_allowed(&request_id, "POST"),
        ("/health", &Method::GET | &Method::HEAD) => {
            h::text_response(StatusCode::OK, "text/plain", "ok\n")
        }
        ("/ready", &Method::GET | &Method::HEAD) => ready(state),
        ("/metrics", &Method::GET) => metrics(state),
        ("/health" | "/ready" | "/metrics", _) => h::method_not_allowed(&request_id, "GET"),
        (path, _) => h::not_found(&request_id, path),
    }
}

async fn rpc(
    state: &State,
    req: Request<Incoming>,
    request_id: RequestId,
) -> Response<Full<Bytes>> {
    let dispatcher = &state.dispatcher;
    let guard = InFlight::enter(&dispatcher.metrics.in_flight);
    let limit = state.cfg.server.max_in_flight;
    if limit > 0 && guard.count > limit as i64 {
        return overloaded(dispatcher, request_id);
    }
    rpc_inner(state, req, request_id).await
}

/// Counts a request in flight until dropped, also when the client goes away
/// and the request's future is dropped half-way.
struct InFlight<'a> {
    gauge: &'a Gauge,
    /// The count including this request.
    count: i64,
}

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a Gauge) -> Self {
        let count = gauge.inc() + 1;
        InFlight { gauge, count }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

fn overloaded(dispatcher: &Dispatcher, request_id: RequestId) -> Response<Full<Bytes>> {
    let error = RpcError::new(
        ErrorCode::Overloaded,
        "too many requests in flight; retry shortly",
    );
    let mut response = dispatcher.refuse(request_id, &error, StatusCode::SERVICE_UNAVAILABLE);
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    response
}

async fn rpc_inner(
    state: &State,
    req: Request<Incoming>,
    request_id: RequestId,
) -> Response<Full<Bytes>> {
    let dispatcher = &state.dispatcher;
    if !h::is_json_content_type(&req) {
        let error = RpcError::invalid_request("content type must be application/json");
        return dispatcher.refuse(request_id, &error, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let limit = dispatcher.limits.max_body_bytes;
    let body = match h::read_body(req, limit, state.cfg.server.body_read_timeout()).await {
        Ok(body) => body,
        Err(error) => {
            let status = h::body_error_status(&error);
            return dispatcher.refuse(request_id, &error, status);
        }
    };
    let answer = dispatcher.handle(&body, request_id);
    match answer.body {
        Some(body) => h::json_response(answer.status, &answer.request_id, body),
        None => h::empty_response(StatusCode::NO_CONTENT, &answer.request_id),
    }
}

fn ready(state: &State) -> Response<Full<Bytes>> {
    match state.draining.load(Ordering::Acquire) {
        false => h::text_response(StatusCode::OK, "text/plain", "ready\n"),
        true => h::text_response(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n"),
    }
}

fn metrics(state: &State) -> Response<Full<Bytes>> {
    let text = telemetry::encode(&state.registry);
    h::text_response(StatusCode::OK, telemetry::METRICS_CONTENT_TYPE, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatcher() -> Dispatcher {
        Service::builder("t")
            .op("ok", |_| reply(1))
            .op("boom", |_| panic!("a bug in an operation"))
            .build()
            .dispatcher(&mut Registry::default(), Limits::default())
    }

    fn answer(body: &str) -> (StatusCode, serde_json::Value) {
        let a = dispatcher().handle(body.as_bytes(), RequestId::generate());
        let v = serde_json::from_slice(&a.body.unwrap_or_default()).unwrap_or_default();
        (a.status, v)
    }

    #[test]
    fn a_panicking_operation_answers_internal_without_detail() {
        let (status, v) = answer(r#"{"method":"t.boom"}"#);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(v["error"]["code"], "internal");
        assert_eq!(v["error"]["message"], "internal error");
    }

    #[test]
    fn a_panic_in_a_batch_fails_only_its_item() {
        let (status, v) = answer(r#"[{"method":"t.boom"},{"method":"t.ok"}]"#);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v[0]["error"]["code"], "internal");
        assert_eq!(v[1]["result"], 1);
    }

    #[test]
    fn native_single_call_keeps_its_own_request_id() {
        let a = dispatcher().handle(
            br#"{"method":"t.ok","requestId":"mine"}"#,
            RequestId::parse("header").expect("valid"),
        );
        assert_eq!(a.request_id.as_str(), "mine");
    }
}
