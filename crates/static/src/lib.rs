//! The static gateway: serves the files under one root folder.
//!
//! Files are served under the URL prefix `/static/` (the load balancer forwards
//! `/static/...` unchanged), so the server's own `/health`, `/ready` and
//! `/metrics` can never be reached through the balancer. [`resolve`] turns a
//! URL path into a file that is certainly inside the root, or refuses it;
//! [`file`] answers with content type, `ETag`, `Last-Modified`, 304s and
//! single byte ranges, streaming the file.

pub mod config;
pub mod file;
mod metrics;
pub mod mime;
pub mod resolve;

pub use config::StaticConfig;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use service::Shutdown;
use service::http::BoxError;
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::StaticMetrics;
use crate::resolve::Root;

/// Response body of the static server: a file stream or a small buffer.
pub type StaticBody = BoxBody<Bytes, BoxError>;

/// Binds `cfg.listen` and serves the root until `shutdown` fires, then drains.
pub async fn run(
    cfg: StaticConfig,
    mut registry: Registry,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let root = Root::open(&cfg.root)?;
    let metrics = StaticMetrics::register(&mut registry);
    let listener = service::http::bind(cfg.listen).await?;
    tracing::info!(listen = %cfg.listen, root = %root.path().display(), "static serving");
    let server = Arc::new(Server {
        root,
        metrics,
        registry,
        shutdown: shutdown.clone(),
    });
    service::http::serve(listener, &cfg.server(), shutdown, move |req, _peer| {
        let server = Arc::clone(&server);
        async move { server.handle(req).await }
    })
    .await;
    Ok(())
}

/// The state every request reads.
struct Server {
    root: Root,
    metrics: StaticMetrics,
    registry: Registry,
    shutdown: Shutdown,
}

impl Server {
    async fn handle(&self, req: Request<Incoming>) -> Response<StaticBody> {
        let started = Instant::now();
        let response = self.route(&req).await;
        self.metrics.observe(response.status(), started.elapsed());
        response
    }

    async fn route(&self, req: &Request<Incoming>) -> Response<StaticBody> {
        use service::http as h;
        let id = h::request_id_of(req);
        let text = "text/plain; charset=utf-8";
        let path = req.uri().path();
        let get = matches!(*req.method(), Method::GET | Method::HEAD);
        match path {
            "/health" if get => boxed(h::text_response(StatusCode::OK, text, "ok\n")),
            "/ready" if get && self.shutdown.is_triggered() => boxed(h::text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                text,
                "draining\n",
            )),
            "/ready" if get => boxed(h::text_response(StatusCode::OK, text, "ready\n")),
            "/metrics" if get => boxed(h::text_response(
                StatusCode::OK,
                telemetry::METRICS_CONTENT_TYPE,
                telemetry::encode(&self.registry),
            )),
            _ if !path.starts_with(resolve::PREFIX) => boxed(h::not_found(&id, path)),
            _ if !get => boxed(h::method_not_allowed(&id, "GET, HEAD")),
            _ => self.file(req, &id).await,
        }
    }

    async fn file(
        &self,
        req: &Request<Incoming>,
        id: &protocol::RequestId,
    ) -> Response<StaticBody> {
        let found = self.root.resolve(req.uri().path()).await;
        match found {
            Ok(path) => file::serve(&path, req.method(), req.headers()).await,
            Err(refused) => {
                tracing::debug!(request_id = %id, path = req.uri().path(), ?refused, "refused");
                boxed(refused.response(id))
            }
        }
    }
}

/// Boxes a small buffered response.
pub fn boxed(response: Response<http_body_util::Full<Bytes>>) -> Response<StaticBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed())
}
