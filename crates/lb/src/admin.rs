//! The admin listener: `/metrics`, `/health`, `/ready`, `/pools` and
//! `POST /reload`, on their own address (loopback by default). The public
//! port never routes to any of them.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use protocol::RpcError;
use service::{ServerConfig, Shutdown};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

use crate::proxy::Lb;
use crate::server::{Reloader, reload};

/// What the admin endpoints read and act on. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    lb: Lb,
    registry: Arc<Registry>,
    reloader: Reloader,
    draining: Shutdown,
}

impl Admin {
    /// The admin endpoints of `lb`; `/ready` turns 503 once `draining` fires.
    pub fn new(lb: Lb, registry: Registry, reloader: Reloader, draining: Shutdown) -> Admin {
        Admin {
            lb,
            registry: Arc::new(registry),
            reloader,
            draining,
        }
    }

    /// Answers one admin request.
    pub fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        use service::http as h;
        let id = h::request_id_of(req);
        let text = "text/plain; charset=utf-8";
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => h::text_response(
                StatusCode::OK,
                telemetry::METRICS_CONTENT_TYPE,
                telemetry::encode(&self.registry),
            ),
            (&Method::GET, "/health") => h::text_response(StatusCode::OK, text, "ok\n"),
            (&Method::GET, "/ready") if self.draining.is_triggered() => {
                h::text_response(StatusCode::SERVICE_UNAVAILABLE, text, "draining\n")
            }
            (&Method::GET, "/ready") => h::text_response(StatusCode::OK, text, "ready\n"),
            (&Method::GET, "/pools") => self.pools(&id),
            (&Method::POST, "/reload") => self.reload(&id),
            (_, "/metrics" | "/health" | "/ready" | "/pools") => h::method_not_allowed(&id, "GET"),
            (_, "/reload") => h::method_not_allowed(&id, "POST"),
            (_, path) => h::not_found(&id, path),
        }
    }

    fn pools(&self, id: &protocol::RequestId) -> Response<Full<Bytes>> {
        let [rpc, statics] = self.lb.pools();
        let body = serde_json::json!({ "rpc": rpc, "static": statics });
        service::http::json_response(StatusCode::OK, id, body.to_string().into_bytes())
    }

    fn reload(&self, id: &protocol::RequestId) -> Response<Full<Bytes>> {
        match reload(&self.lb, &self.reloader) {
            Ok(()) => {
                let body = serde_json::json!({ "reloaded": true }).to_string();
                service::http::json_response(StatusCode::OK, id, body.into_bytes())
            }
            Err(e) => {
                let error = RpcError::invalid_request(e.to_string());
                service::http::error_response(id, &error, StatusCode::BAD_REQUEST)
            }
        }
    }
}

/// Serves the admin endpoints until `shutdown` fires.
pub async fn serve(listener: TcpListener, addr: SocketAddr, admin: Admin, shutdown: Shutdown) {
    let cfg = ServerConfig {
        listen: addr,
        max_connections: 64,
        drain_timeout_ms: 1_000,
        ..ServerConfig::default()
    };
    service::http::serve(listener, &cfg, shutdown, move |req, _peer| {
        let response = admin.handle(&req);
        async move { response }
    })
    .await;
}
