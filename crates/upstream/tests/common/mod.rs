//! Test helpers: small in-process HTTP servers on 127.0.0.1:0 and pool shortcuts.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use switchboard_upstream::{HealthConfig, Pool, PoolConfig, PoolMetrics, UpstreamError};
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

/// How a test server answers.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// 200 with the server id as body.
    Ok,
    /// 500 to everything, health checks included.
    Fail,
    /// Accepts, reads the request, never answers.
    Stall,
    /// Like `Ok`, after a delay (health checks included).
    Slow(Duration),
    /// Like `Ok`, but closes connections idle for longer than the duration.
    CloseIdle(Duration),
}

#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicUsize,
    hits: AtomicUsize,
    probes: AtomicUsize,
}

/// A server that can be stopped (listener and connections closed) and restarted.
pub struct TestServer {
    pub addr: SocketAddr,
    pub id: String,
    mode: Mode,
    stats: Arc<Stats>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl TestServer {
    pub async fn start(id: &str, mode: Mode) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), id, mode).await
    }

    pub async fn start_on(addr: SocketAddr, id: &str, mode: Mode) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind test server");
        let addr = listener.local_addr().expect("bound address");
        let stats = Arc::new(Stats::default());
        let conns = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn(accept_loop(
            listener,
            id.to_owned(),
            mode,
            stats.clone(),
            conns.clone(),
        ));
        Self {
            addr,
            id: id.to_owned(),
            mode,
            stats,
            accept: Some(accept),
            conns,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    /// Requests received so far, health checks excluded.
    pub fn hits(&self) -> usize {
        self.stats.hits.load(Ordering::SeqCst)
    }

    /// Health checks received so far.
    pub fn probes(&self) -> usize {
        self.stats.probes.load(Ordering::SeqCst)
    }

    /// Drops the listener and closes every connection.
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        for conn in self.conns.lock().expect("conns").drain(..) {
            conn.abort();
        }
        // Let the aborted connection tasks run their drops.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// Starts again on the same port, with fresh counters.
    pub async fn restart(&mut self) {
        self.stop().await;
        *self = Self::start_on(self.addr, &self.id, self.mode).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        if let Ok(mut conns) = self.conns.lock() {
            conns.drain(..).for_each(|c| c.abort());
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    id: String,
    mode: Mode,
    stats: Arc<Stats>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let (id, stats) = (id.clone(), stats.clone());
        let task = tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, id.clone(), mode, stats.clone()));
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new());
            if let Mode::CloseIdle(idle) = mode {
                builder.header_read_timeout(idle);
            }
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
        conns.lock().expect("conns").push(task.abort_handle());
    }
}

async fn handle(
    req: Request<Incoming>,
    id: String,
    mode: Mode,
    stats: Arc<Stats>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let counter = if req.uri().path() == "/health" {
        &stats.probes
    } else {
        &stats.hits
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let seen = req.headers().get("x-request-timeout-ms").cloned();
    let _ = req.into_body().collect().await;
    let status = match mode {
        Mode::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Mode::Stall => std::future::pending().await,
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK
        }
        Mode::Ok | Mode::CloseIdle(_) => StatusCode::OK,
    };
    let mut resp = Response::new(Full::new(Bytes::from(id)));
    *resp.status_mut() = status;
    if let Some(seen) = seen {
        resp.headers_mut().insert("x-seen-timeout-ms", seen);
    }
    Ok(resp)
}

/// A config with short timeouts for tests; active checks every 50 ms.
pub fn config(name: &str, servers: &[&TestServer]) -> PoolConfig {
    PoolConfig {
        name: name.to_owned(),
        endpoints: servers.iter().map(|s| s.addr.to_string()).collect(),
        connect_timeout: Duration::from_millis(500),
        try_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(3),
        health: HealthConfig {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(200),
            eject_base: Duration::from_millis(100),
            eject_max: Duration::from_secs(1),
            ..HealthConfig::default()
        },
        ..PoolConfig::default()
    }
}

/// The same config with active checks off.
pub fn passive_config(name: &str, servers: &[&TestServer]) -> PoolConfig {
    let mut cfg = config(name, servers);
    cfg.health.interval = Duration::ZERO;
    cfg
}

pub fn pool(cfg: PoolConfig) -> Pool {
    Pool::new(cfg, &PoolMetrics::default()).expect("valid pool config")
}

/// A finished exchange: status, body, and the deadline header the server saw.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
    pub seen_timeout_ms: Option<u64>,
}

pub async fn send(pool: &Pool) -> Result<Answer, UpstreamError> {
    send_with(pool, None).await
}

pub async fn send_with(pool: &Pool, deadline_ms: Option<u64>) -> Result<Answer, UpstreamError> {
    let mut req = Request::post("/rpc");
    if let Some(ms) = deadline_ms {
        req = req.header("x-request-timeout-ms", ms);
    }
    let req = req.body(Bytes::from_static(b"{}")).expect("valid request");
    let resp = pool.send(req).await?;
    let status = resp.status();
    let seen_timeout_ms = resp
        .headers()
        .get("x-seen-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let body = String::from_utf8(body.to_vec()).expect("utf-8 body");
    Ok(Answer {
        status,
        body,
        seen_timeout_ms,
    })
}

/// Polls `cond` every 10 ms until it holds; panics after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
