//! The public accept loop and the life of the balancer: start, SIGHUP reloads,
//! graceful drain.
//!
//! The loop is the balancer's own rather than `service::http::serve` because
//! a public entry needs per-connection control that loop does not give: TLS,
//! an idle keep-alive timeout and a drain that counts connections. Each
//! connection serves HTTP/1.1 with keep-alive or HTTP/2 (h2c, or ALPN `h2`
//! over TLS). A connection is closed gracefully (never cutting a response)
//! when no request has started for `idle_timeout_ms`, and on shutdown.

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::registry::Registry;
use service::Shutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::admin::{self, Admin};
use crate::config::LbConfig;
use crate::error::LbError;
use crate::metrics::LbMetrics;
use crate::proxy::Lb;

/// Longest wait, at the start of a drain, before idle keep-alive connections
/// are closed.
const MAX_GRACE: Duration = Duration::from_secs(1);

/// Produces the configuration to apply on reload (re-reads the file and
/// re-applies the command-line flags).
pub type Reloader = Arc<dyn Fn() -> Result<LbConfig, LbError> + Send + Sync>;

/// Settings of client connections, fixed at start.
#[derive(Clone)]
struct ConnSettings {
    builder: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    idle: Duration,
    handshake_timeout: Duration,
    /// Time between the start of a drain and the close of a connection's
    /// keep-alive: meanwhile each HTTP/1.1 answer says `Connection: close`.
    grace: Duration,
}

/// Runs the balancer until `shutdown` fires, then drains and returns.
pub async fn run(
    cfg: LbConfig,
    mut registry: Registry,
    reloader: Reloader,
    shutdown: Shutdown,
) -> Result<(), LbError> {
    cfg.validate()?;
    let metrics = Arc::new(LbMetrics::register(&mut registry));
    let lb = Lb::new(&cfg, metrics)?;
    let tls = cfg.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    let public = service::http::bind(cfg.listen).await?;
    let admin_listener = service::http::bind(cfg.admin).await?;
    tracing::info!(listen = %cfg.listen, admin = %cfg.admin, tls = tls.is_some(), "lb serving");

    let (admin_stop, admin_shutdown) = Shutdown::new();
    let admin = Admin::new(
        lb.clone(),
        registry,
        Arc::clone(&reloader),
        shutdown.clone(),
    );
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        cfg.admin,
        admin,
        admin_shutdown,
    ));
    let hangup = tokio::spawn(reload_on_hangup(lb.clone(), reloader));

    serve_public(public, &cfg, tls, shutdown, lb.clone()).await;
    hangup.abort();
    admin_stop.trigger();
    let _ = admin_task.await;
    lb.shutdown_pools();
    Ok(())
}

/// Reloads on every SIGHUP; a refused configuration leaves the old one.
async fn reload_on_hangup(lb: Lb, reloader: Reloader) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reload only via the admin port");
        return;
    };
    while hangup.recv().await.is_some() {
        let _ = reload(&lb, &reloader);
    }
}

/// Loads and applies a new configuration, logging and counting the outcome.
pub(crate) fn reload(lb: &Lb, reloader: &Reloader) -> Result<(), LbError> {
    let result = reloader().and_then(|cfg| lb.reload(cfg));
    match &result {
        Ok(()) => {
            lb.metrics().reload("ok");
            tracing::info!("configuration reloaded");
        }
        Err(error) => {
            lb.metrics().reload("refused");
            tracing::warn!(%error, "reload refused; keeping the running configuration");
        }
    }
    result
}

/// Accepts client connections until shutdown, then waits for them to finish
/// within the drain timeout.
async fn serve_public(
    listener: TcpListener,
    cfg: &LbConfig,
    tls: Option<TlsAcceptor>,
    mut shutdown: Shutdown,
    lb: Lb,
) {
    let max = u32::try_from(cfg.max_connections).unwrap_or(u32::MAX);
    let permits = Arc::new(Semaphore::new(max as usize));
    let settings = ConnSettings {
        builder: builder(cfg),
        tls,
        idle: cfg.idle_timeout(),
        handshake_timeout: Duration::from_millis(cfg.header_read_timeout_ms),
        grace: Duration::from_millis(cfg.drain_timeout_ms / 4).min(MAX_GRACE),
    };
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => break,
            permit = Arc::clone(&permits).acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = service::http::accept(&listener) => accepted,
        };
        let conn = connection(stream, peer, settings.clone(), lb.clone(), shutdown.clone());
        tokio::spawn(async move {
            conn.await;
            drop(permit);
        });
    }
    drop(listener);
    drain(&permits, max, cfg.drain_timeout_ms).await;
}

fn builder(cfg: &LbConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(cfg.header_read_timeout_ms))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Waits until every connection task has given back its permit.
async fn drain(permits: &Arc<Semaphore>, max: u32, timeout_ms: u64) {
    let open = max as usize - permits.available_permits();
    tracing::info!(connections = open, "draining");
    let timeout = Duration::from_millis(timeout_ms);
    match tokio::time::timeout(timeout, permits.acquire_many(max)).await {
        Ok(_) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            ?timeout,
            "drain timeout passed; closing remaining connections"
        ),
    }
}

/// Serves one client connection, over TLS when configured.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    s: ConnSettings,
    lb: Lb,
    shutdown: Shutdown,
) {
    let gauge = lb.metrics().connections.clone();
    gauge.inc();
    match &s.tls {
        None => drive(TokioIo::new(stream), peer, &s, lb, shutdown).await,
        Some(acceptor) => {
            match tokio::time::timeout(s.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => drive(TokioIo::new(tls), peer, &s, lb, shutdown).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
            }
        }
    }
    gauge.dec();
}

/// Drives the HTTP connection until it ends, closing it gracefully when idle
/// too long or on shutdown.
///
/// On shutdown, closing an idle HTTP/1.1 keep-alive connection at once races
/// with a client that is just sending its next request on it, which would then
/// be lost. So a drain first answers requests with `Connection: close` for a
/// short grace, which tells busy clients to stop reusing the connection, and
/// only then closes what is left (never cutting a response).
async fn drive<I>(io: I, peer: SocketAddr, s: &ConnSettings, lb: Lb, mut shutdown: Shutdown)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Activity::begin(&activity);
            let lb = lb.clone();
            let http1 = req.version() <= http::Version::HTTP_11;
            async move {
                let mut response = lb.handle(req, peer).await;
                if http1 && busy.0.draining.load(Ordering::Acquire) {
                    let close = http::HeaderValue::from_static("close");
                    response
                        .headers_mut()
                        .insert(http::header::CONNECTION, close);
                }
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = s.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    let mut close_at: Option<Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.wait(), if close_at.is_none() => {
                activity.draining.store(true, Ordering::Release);
                close_at = Some(Instant::now() + s.grace);
            }
            _ = sleep_until_some(close_at), if !closing && close_at.is_some() => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep_until(activity.idle_deadline(s.idle)), if !closing => {
                if activity.is_idle(s.idle) {
                    tracing::debug!(%peer, "closing idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// When a connection last started or finished a request, how many run, and
/// whether it is draining.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
    draining: AtomicBool,
}

/// A request running on a connection; counted until dropped.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
        }
    }

    fn begin(this: &Arc<Activity>) -> Busy {
        this.busy.fetch_add(1, Ordering::AcqRel);
        this.touch();
        Busy(Arc::clone(this))
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Release);
    }

    /// When the connection turns idle if nothing starts before.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        if self.busy.load(Ordering::Acquire) > 0 {
            return Instant::now() + idle;
        }
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Acquire)) + idle
    }

    fn is_idle(&self, idle: Duration) -> bool {
        self.busy.load(Ordering::Acquire) == 0 && Instant::now() >= self.idle_deadline(idle)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}
