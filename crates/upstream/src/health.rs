//! Health: passive ejection from request outcomes, active probes, readmission.
//!
//! A connect failure ejects an endpoint at once; timeouts and 5xx answers eject it
//! after `consecutive_failures` in a row, unless it is the last one available. An
//! ejection lasts a backoff, after which the endpoint comes back once a probe
//! answers 2xx (or, with probes turned off, as soon as the backoff ends). Probes
//! also mark endpoints unhealthy while they fail, after `consecutive_failures` of
//! them in a row; one passing probe marks an endpoint healthy again. Each change
//! is logged once at info.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::info;

use crate::client::HttpClient;
use crate::endpoint::Endpoint;
use crate::metrics::Outcome;
use crate::pool::Inner;

/// Shortest and longest pause of the readmission loop when probes are off.
const MIN_TICK: Duration = Duration::from_millis(10);
const MAX_TICK: Duration = Duration::from_secs(1);

impl Inner {
    /// Feeds one try's outcome to passive health.
    pub(crate) fn observe_outcome(&self, ep: &Endpoint, outcome: Outcome) {
        let threshold = self.settings.load().cfg.health.consecutive_failures;
        match outcome {
            Outcome::Success => ep.record_success(),
            Outcome::ConnectError => self.eject(ep, "connect error"),
            Outcome::Timeout | Outcome::ServerError => {
                if ep.record_failure(threshold) && self.others_available(ep) {
                    self.eject(ep, "consecutive failures");
                }
            }
            Outcome::Closed | Outcome::Error => {}
        }
    }

    /// Whether some endpoint besides `ep` takes requests.
    ///
    /// Timeouts and 5xx answers never eject the last one: when every endpoint
    /// fails alike, the fault most likely lies behind them (a gateway whose
    /// services are all down answers 503), and ejecting it would only add the
    /// backoff to the recovery once that fault is gone.
    fn others_available(&self, ep: &Endpoint) -> bool {
        let candidates = self.candidates.load();
        candidates
            .list
            .iter()
            .any(|other| other.id != ep.id && other.is_available())
    }

    fn eject(&self, ep: &Endpoint, reason: &'static str) {
        let health = &self.settings.load().cfg.health;
        let Some(backoff) = ep.eject(health.eject_base, health.eject_max) else {
            return;
        };

        let backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
        info!(pool = %self.name, endpoint = %ep.addr, reason, backoff_ms, "endpoint ejected");
        self.rebuild();
    }

    /// One round of the health loop; returns how long to wait before the next.
    async fn health_round(self: &Arc<Self>) -> Duration {
        let health = self.settings.load().cfg.health.clone();
        if health.interval.is_zero() {
            self.readmit_expired();
            return (health.eject_base / 4).clamp(MIN_TICK, MAX_TICK);
        }

        let results = probe_all(
            self.client(),
            self.endpoints(),
            &health.path,
            health.timeout,
        )
        .await;
        for (ep, ok) in results {
            self.apply_probe(&ep, ok, health.consecutive_failures);
        }
        health.interval
    }

    /// Readmits every endpoint whose backoff ended (probes off).
    ///
    /// Without probes nothing can call an endpoint unhealthy, so a verdict left from
    /// before probes were turned off is dropped as well.
    fn readmit_expired(&self) {
        for ep in self.endpoints() {
            if ep.set_healthy(true) {
                self.rebuild();
            }
            if ep.is_ejected() && ep.backoff_over() {
                self.readmit(&ep);
            }
        }
    }

    fn apply_probe(&self, ep: &Endpoint, ok: bool, threshold: u32) {
        let healthy = ep.record_probe(ok, threshold);
        if ep.set_healthy(healthy) {
            let state = if healthy { "healthy" } else { "unhealthy" };
            info!(pool = %self.name, endpoint = %ep.addr, state, "endpoint health changed");
            self.rebuild();
        }
        // Only a probe that passed readmits; a tolerated failure does not.
        if ok && ep.is_ejected() && ep.backoff_over() {
            self.readmit(ep);
        }
    }

    fn readmit(&self, ep: &Endpoint) {
        if ep.readmit() {
            info!(pool = %self.name, endpoint = %ep.addr, "endpoint readmitted");
            self.rebuild();
        }
    }
}

/// Probes every endpoint at once; true for those answering 2xx in time.
async fn probe_all(
    client: HttpClient,
    endpoints: Vec<Arc<Endpoint>>,
    path: &str,
    timeout: Duration,
) -> Vec<(Arc<Endpoint>, bool)> {
    let mut set = JoinSet::new();
    for ep in endpoints {
        let (client, path) = (client.clone(), path.to_owned());
        set.spawn(async move {
            let ok = tokio::time::timeout(timeout, probe(&client, &ep, &path)).await;
            (ep, ok.unwrap_or(false))
        });
    }
    set.join_all().await
}

/// One `GET path`, its body read so the connection can be reused.
async fn probe(client: &HttpClient, ep: &Endpoint, path: &str) -> bool {
    let uri = format!("http://{}{}", ep.addr, path);
    let Ok(req) = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .body(Full::default())
    else {
        return false;
    };
    let Ok(resp) = client.request(req).await else {
        return false;
    };
    let ok = resp.status().is_success();
    ok && resp.into_body().collect().await.is_ok()
}

/// The health loop of a pool; ends on shutdown or when the pool is dropped.
pub(crate) async fn run(pool: Weak<Inner>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let Some(inner) = pool.upgrade() else { return };
        if *shutdown.borrow() {
            return;
        }
        let pause = inner.health_round().await;
        drop(inner);

        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}
