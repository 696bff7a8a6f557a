//! The HTTP server loop every component runs, and response helpers.
//!
//! One accept loop serves HTTP/1.1 with keep-alive and HTTP/2 (h2c) on the same
//! port, caps open connections, times out slow request headers, and on
//! shutdown stops accepting, lets in-flight requests finish and closes idle
//! keep-alive connections, all within the drain timeout.

use crate::config::ServerConfig;
use crate::shutdown::Shutdown;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use protocol::{ErrorCode, RequestId, RpcError};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Boxed error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `handler` on `listener` until `shutdown` fires, then drains.
///
/// `handler` gets each request with the client's address. Returns once every
/// connection is closed or the drain timeout has passed.
pub async fn serve<F, Fut, B>(
    listener: TcpListener,
    cfg: &ServerConfig,
    mut shutdown: Shutdown,
    handler: F,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let builder = builder(cfg);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(cfg.max_connections.max(1)));

    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => break,
            permit = permits.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = accept(&listener) => accepted,
        };
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let response = handler(req, peer);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    drain(graceful, cfg.drain_timeout()).await;
}

fn builder(cfg: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout())
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)));
    builder
}

/// Accepts one connection with `TCP_NODELAY` set, riding out transient errors
/// such as running out of file descriptors instead of spinning or giving up.
/// Shared with the load balancer's own accept loop.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Small RPC answers must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn drain(graceful: GracefulShutdown, timeout: Duration) {
    let count = graceful.count();
    tracing::info!(connections = count, "draining");
    match tokio::time::timeout(timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            ?timeout,
            "drain timeout passed; closing remaining connections"
        ),
    }
}

/// A response with a JSON body.
pub fn json_response(
    status: StatusCode,
    request_id: &RequestId,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(protocol::CONTENT_TYPE),
    );
    if let Ok(id) = HeaderValue::from_str(request_id.as_str()) {
        headers.insert(protocol::REQUEST_ID_HEADER, id);
    }
    response
}

/// A response with no body, carrying the request id.
pub fn empty_response(status: StatusCode, request_id: &RequestId) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    if let Ok(id) = HeaderValue::from_str(request_id.as_str()) {
        response
            .headers_mut()
            .insert(protocol::REQUEST_ID_HEADER, id);
    }
    response
}

/// A native error answer outside `/rpc` dispatch (wrong path, wrong method).
pub fn error_response(
    request_id: &RequestId,
    error: &RpcError,
    status: StatusCode,
) -> Response<Full<Bytes>> {
    let body = protocol::encode_single(protocol::Flavor::Native, request_id, Err(error))
        .unwrap_or_default();
    json_response(status, request_id, body)
}

/// 404 for a path no route serves.
pub fn not_found(request_id: &RequestId, path: &str) -> Response<Full<Bytes>> {
    let error = RpcError::new(
        ErrorCode::MethodNotFound,
        format!("no route for {}", protocol::error::truncate(path, 128)),
    );
    error_response(request_id, &error, StatusCode::NOT_FOUND)
}

/// 405 for a known path asked with the wrong HTTP method.
pub fn method_not_allowed(request_id: &RequestId, allow: &'static str) -> Response<Full<Bytes>> {
    let error = RpcError::invalid_request(format!("this path takes {allow} only"));
    let mut response = error_response(request_id, &error, StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A small plain-text response, for health endpoints.
pub fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The request id of an incoming request: its `X-Request-Id` when valid,
/// else a fresh one.
pub fn request_id_of<B>(req: &Request<B>) -> RequestId {
    RequestId::from_header(
        req.headers()
            .get(protocol::REQUEST_ID_HEADER)
            .map(HeaderValue::as_bytes),
    )
}

/// Whether a request's content type allows a JSON body: absent, or
/// `application/json` with any parameters.
pub fn is_json_content_type<B>(req: &Request<B>) -> bool {
    let Some(value) = req.headers().get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case(protocol::CONTENT_TYPE)
}

/// Binds a listener, with the address in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Reads a whole request body, refusing more than `limit` bytes (declared or
/// sent) and bodies that trickle in slower than `timeout`.
pub async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, RpcError> {
    use http_body_util::{BodyExt, Limited};

    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(protocol::limits::body_too_large(limit));
    }
    let collect = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(protocol::limits::body_too_large(limit))
        }
        Ok(Err(e)) => Err(RpcError::invalid_request(format!("cannot read body: {e}"))),
        Err(_) => Err(RpcError::new(
            ErrorCode::Timeout,
            "request body arrived too slowly",
        )),
    }
}

/// HTTP status of a body-reading error: 408 when the client was too slow.
pub fn body_error_status(error: &RpcError) -> StatusCode {
    match error.code {
        ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
        code => StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
    }
}
