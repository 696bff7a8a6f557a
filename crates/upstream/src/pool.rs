//! The pool: picks an endpoint per try, sends, retries within limits, and learns.
//!
//! The request path loads two `arc-swap` snapshots (settings, candidates) and touches
//! atomics only. Membership, health and discovery run beside it and publish new
//! snapshots; the background tasks hold a weak reference, so they stop when the last
//! [`Pool`] clone is dropped or on [`Pool::shutdown`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, trace, warn};

use crate::balance::Candidates;
use crate::budget::RetryBudget;
use crate::client::{self, FailureKind, HttpClient, Template};
use crate::config::{EndpointSpec, PoolConfig};
use crate::endpoint::Endpoint;
use crate::error::{ConfigError, UpstreamError};
use crate::members::Members;
use crate::metrics::{Outcome, PoolHandles, PoolMetrics, RetryReason};
use crate::state::PoolState;
use crate::{discovery, health};

/// A validated configuration with its parsed endpoints.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) cfg: PoolConfig,
    pub(crate) specs: Vec<EndpointSpec>,
}

/// State shared by every clone of a [`Pool`] and its background tasks.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) settings: ArcSwap<Settings>,
    pub(crate) members: Mutex<Members>,
    pub(crate) candidates: ArcSwap<Candidates>,
    pub(crate) metrics: PoolMetrics,
    pub(crate) handles: PoolHandles,
    pub(crate) epoch: Instant,
    pub(crate) wake_resolver: Arc<Notify>,
    cursor: AtomicUsize,
    client: ArcSwap<HttpClient>,
    budget: RetryBudget,
    shutdown: watch::Sender<bool>,
}

/// A set of instances of one service, with balancing, health and retries.
///
/// Cheap to clone; every clone drives the same endpoints.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// Response extension naming the endpoint that answered, for access logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnsweredBy(pub std::net::SocketAddr);

/// What one try produced.
type TryResult = Result<Response<Incoming>, UpstreamError>;

impl Pool {
    /// Creates a pool and starts its health checker and resolver.
    ///
    /// Must run inside a Tokio runtime. Static endpoints take requests at once;
    /// host names join when their first resolution ends (see [`Pool::resolve_now`]).
    pub fn new(cfg: PoolConfig, metrics: &PoolMetrics) -> Result<Pool, ConfigError> {
        let specs = cfg.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let inner = Arc::new(Inner {
            name: cfg.name.clone(),
            handles: metrics.pool(&cfg.name),
            metrics: metrics.clone(),
            client: ArcSwap::from_pointee(client::build(&cfg)),
            settings: ArcSwap::from_pointee(Settings { cfg, specs }),
            members: Mutex::default(),
            candidates: ArcSwap::default(),
            epoch: Instant::now(),
            wake_resolver: Arc::default(),
            cursor: AtomicUsize::new(0),
            budget: RetryBudget::new(),
            shutdown: watch::Sender::new(false),
        });
        inner.apply_membership();

        let weak = Arc::downgrade(&inner);
        runtime.spawn(health::run(weak.clone(), inner.shutdown.subscribe()));
        runtime.spawn(discovery::run(weak, inner.shutdown.subscribe()));
        Ok(Pool { inner })
    }

    /// Sends a request to one endpoint, retrying elsewhere when allowed.
    ///
    /// The URI only needs a path and query; scheme, authority and (if absent) `Host`
    /// are set per endpoint. Returns once response headers arrive; the body streams.
    /// 5xx answers are returned as responses, unless retried (idempotent pools).
    pub async fn send(&self, req: Request<Bytes>) -> Result<Response<Incoming>, UpstreamError> {
        if *self.inner.shutdown.borrow() {
            return Err(UpstreamError::Shutdown);
        }

        let template = Template::new(req)?;
        let settings = self.inner.settings.load_full();
        let cfg = &settings.cfg;
        let overall = template
            .deadline
            .map_or(cfg.request_timeout, |d| d.min(cfg.request_timeout));
        let deadline = Instant::now() + overall;
        self.inner.budget.deposit();
        self.inner.attempts(&template, cfg, deadline).await
    }

    /// Applies a new configuration; an invalid one is logged and ignored.
    pub fn update(&self, cfg: PoolConfig) {
        if let Err(error) = self.try_update(cfg) {
            warn!(pool = %self.inner.name, %error, "pool update refused");
        }
    }

    /// Applies a new configuration, or says why it cannot be used.
    ///
    /// Endpoints that stay keep their state; removed ones take no new requests while
    /// their in-flight requests finish. The pool name is fixed at creation.
    pub fn try_update(&self, cfg: PoolConfig) -> Result<(), ConfigError> {
        let specs = cfg.validate()?;
        let inner = &self.inner;
        let old = inner.settings.load_full();
        if cfg.connect_timeout != old.cfg.connect_timeout
            || cfg.idle_timeout != old.cfg.idle_timeout
        {
            inner.client.store(Arc::new(client::build(&cfg)));
        }
        inner.settings.store(Arc::new(Settings { cfg, specs }));
        inner.apply_membership();
        inner.wake_resolver.notify_one();
        Ok(())
    }

    /// Resolves the configured host names now, instead of waiting for the resolver.
    pub async fn resolve_now(&self) {
        self.inner.resolve_names(&mut HashSet::new()).await;
    }

    /// A snapshot of the pool for status pages.
    pub fn state(&self) -> PoolState {
        PoolState::of(
            &self.inner.name,
            &self.inner.endpoints(),
            self.healthy_count(),
        )
    }

    /// The endpoint the balancing algorithm picks now, without sending to it
    /// (for status tools and the balancing benchmark).
    pub fn pick_addr(&self) -> Option<SocketAddr> {
        self.inner.pick(&[]).map(|ep| ep.addr)
    }

    /// How many endpoints take new requests.
    pub fn healthy_count(&self) -> usize {
        self.inner.candidates.load().list.len()
    }

    /// Stops the background tasks; later requests fail with [`UpstreamError::Shutdown`].
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

impl Inner {
    pub(crate) fn client(&self) -> HttpClient {
        HttpClient::clone(&self.client.load())
    }

    /// Picks an endpoint not tried yet by this request.
    fn pick(&self, tried: &[u64]) -> Option<Arc<Endpoint>> {
        let balance = self.settings.load().cfg.balance;
        let ep = self.candidates.load().pick(balance, &self.cursor, tried)?;
        trace!(pool = %self.name, endpoint = %ep.addr, "picked");
        Some(ep)
    }

    /// Runs tries until one gives an answer worth returning.
    async fn attempts(
        &self,
        template: &Template,
        cfg: &PoolConfig,
        deadline: Instant,
    ) -> TryResult {
        let mut tried = Vec::with_capacity(cfg.max_attempts as usize);
        let mut ep = self.pick(&tried).ok_or(UpstreamError::NoHealthyEndpoint)?;
        loop {
            let Some(budget) = try_budget(cfg, deadline) else {
                return Err(UpstreamError::Timeout);
            };
            let result = self.try_once(&ep, template, budget).await;
            tried.push(ep.id);

            let Some(reason) = retry_reason(&result, cfg) else {
                return result;
            };
            match self.next_endpoint(&tried, reason, cfg, deadline) {
                Some(next) => ep = next,
                None => return result,
            }
        }
    }

    /// The endpoint of a retry, if attempts, time, candidates and budget allow one.
    fn next_endpoint(
        &self,
        tried: &[u64],
        reason: RetryReason,
        cfg: &PoolConfig,
        deadline: Instant,
    ) -> Option<Arc<Endpoint>> {
        if tried.len() >= cfg.max_attempts as usize || Instant::now() >= deadline {
            return None;
        }
        let ep = self.pick(tried)?;
        if !self
            .budget
            .withdraw(cfg.retry_budget_ratio, cfg.retry_budget_min_per_sec)
        {
            self.handles.budget_exhausted.inc();
            debug!(pool = %self.name, "retry budget exhausted");
            return None;
        }

        self.handles.retry(reason);
        debug!(pool = %self.name, endpoint = %ep.addr, ?reason, "retrying");
        Some(ep)
    }

    /// One try at `ep`, bounded by `budget` until response headers.
    async fn try_once(&self, ep: &Endpoint, template: &Template, budget: Duration) -> TryResult {
        let req = template.build(ep, budget);
        let client = self.client();
        let _in_flight = ep.start();
        let started = Instant::now();
        let result = tokio::time::timeout(budget, client.request(req)).await;
        let elapsed = started.elapsed();

        let (outcome, result) = match result {
            Err(_) => (Outcome::Timeout, Err(UpstreamError::Timeout)),
            Ok(Err(e)) => failure(e),
            Ok(Ok(resp)) if resp.status().is_server_error() => (Outcome::ServerError, Ok(resp)),
            Ok(Ok(resp)) => (Outcome::Success, Ok(resp)),
        };
        let result = result.map(|mut resp| {
            resp.extensions_mut().insert(AnsweredBy(ep.addr));
            resp
        });
        self.record(ep, outcome, elapsed);
        result
    }

    fn record(&self, ep: &Endpoint, outcome: Outcome, elapsed: Duration) {
        ep.metrics.outcome(outcome);
        ep.metrics.duration.observe(elapsed.as_secs_f64());
        if matches!(
            outcome,
            Outcome::Success | Outcome::ServerError | Outcome::Timeout
        ) {
            ep.ewma.observe(elapsed, ep.now_us());
        }
        self.observe_outcome(ep, outcome);
    }
}

/// Maps a client error to its outcome and the error returned if it is the last.
fn failure(e: hyper_util::client::legacy::Error) -> (Outcome, TryResult) {
    match client::classify(&e) {
        FailureKind::Connect => (Outcome::ConnectError, Err(UpstreamError::Connect(e))),
        FailureKind::Closed => (Outcome::Closed, Err(UpstreamError::Closed(e))),
        FailureKind::Other => (Outcome::Error, Err(UpstreamError::Http(e))),
    }
}

/// Why this result may be retried, if it may: never-sent requests always, timeouts
/// and 5xx answers only in idempotent pools.
fn retry_reason(result: &TryResult, cfg: &PoolConfig) -> Option<RetryReason> {
    match result {
        Err(UpstreamError::Connect(_)) => Some(RetryReason::Connect),
        Err(UpstreamError::Closed(_)) => Some(RetryReason::Closed),
        Err(UpstreamError::Timeout) if cfg.idempotent => Some(RetryReason::Timeout),
        Ok(resp) if cfg.idempotent && resp.status().is_server_error() => {
            Some(RetryReason::ServerError)
        }
        _ => None,
    }
}

/// Time allowed to the next try: the per-try timeout, cut by the deadline.
fn try_budget(cfg: &PoolConfig, deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    Some(left.min(cfg.try_timeout))
}
