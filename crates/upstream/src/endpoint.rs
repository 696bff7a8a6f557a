//! One instance behind a pool, with the state that balancing and health need.
//!
//! Everything here is an atomic: the request path reads and bumps counters, and the
//! rare state changes (ejection, readmission, health flips) are decided by a
//! compare-and-swap so exactly one caller logs and rebuilds the candidate list.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use http::uri::Authority;
use tokio::time::Instant;

use crate::balance::ewma::Ewma;
use crate::metrics::EndpointMetrics;

/// One resolved address of a pool.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// Identity inside the pool, used to exclude already-tried endpoints.
    pub(crate) id: u64,
    pub(crate) addr: SocketAddr,
    pub(crate) authority: Authority,
    pub(crate) host: HeaderValue,
    pub(crate) ewma: Ewma,
    pub(crate) metrics: EndpointMetrics,
    epoch: Instant,
    weight: AtomicU32,
    in_flight: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU32,
    probe_failures: AtomicU32,
    healthy: AtomicBool,
    ejected: AtomicBool,
    ejected_until_ms: AtomicU64,
    ejection_streak: AtomicU32,
    readmitted_ms: AtomicU64,
}

impl Endpoint {
    /// A new endpoint, healthy until told otherwise.
    pub(crate) fn new(
        id: u64,
        addr: SocketAddr,
        weight: u32,
        epoch: Instant,
        metrics: EndpointMetrics,
    ) -> Self {
        let text = addr.to_string();
        let authority =
            Authority::try_from(text.as_str()).expect("a socket address is an authority");
        let host =
            HeaderValue::try_from(text.as_str()).expect("a socket address is a header value");
        metrics.healthy.set(1);
        let now_us = micros_since(epoch);
        Self {
            id,
            addr,
            authority,
            host,
            ewma: Ewma::new(now_us),
            metrics,
            epoch,
            weight: AtomicU32::new(weight),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            probe_failures: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            ejected: AtomicBool::new(false),
            ejected_until_ms: AtomicU64::new(0),
            ejection_streak: AtomicU32::new(0),
            readmitted_ms: AtomicU64::new(0),
        }
    }

    /// Whether the endpoint may take new requests.
    pub(crate) fn is_available(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.ejected.load(Ordering::Relaxed)
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    pub(crate) fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn set_weight(&self, weight: u32) -> bool {
        self.weight.swap(weight, Ordering::Relaxed) != weight
    }

    /// Microseconds since the pool epoch, the time base of this endpoint.
    pub(crate) fn now_us(&self) -> u64 {
        micros_since(self.epoch)
    }

    /// Peak-EWMA cost: latency estimate weighted by the load already sent.
    pub(crate) fn ewma_cost(&self) -> f64 {
        self.ewma.estimate(self.now_us()) * (self.in_flight() + 1) as f64
    }

    /// Marks one try as started; the guard ends it when dropped.
    pub(crate) fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.metrics.in_flight.inc();
        InFlight { endpoint: self }
    }

    /// A try succeeded: the failure streak ends.
    pub(crate) fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A try timed out or answered 5xx; true once `threshold` failures are in a row.
    pub(crate) fn record_failure(&self, threshold: u32) -> bool {
        self.failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
            >= threshold
    }

    /// Records a probe result; returns the health verdict it leads to.
    ///
    /// A passing probe makes the endpoint healthy at once; failing ones only
    /// after `threshold` in a row, so that one slow probe (a busy instance, a
    /// starved prober) cannot take every endpoint of a pool out together.
    pub(crate) fn record_probe(&self, ok: bool, threshold: u32) -> bool {
        if ok {
            self.probe_failures.store(0, Ordering::Relaxed);
            return true;
        }
        let failed = self.probe_failures.fetch_add(1, Ordering::Relaxed);
        failed.saturating_add(1) < threshold
    }

    /// Ejects the endpoint; returns the ejection length if this call did it.
    ///
    /// The length doubles with each ejection that follows a readmission by less
    /// than `max`, and starts again from `base` after a long enough calm.
    pub(crate) fn eject(&self, base: Duration, max: Duration) -> Option<Duration> {
        if self.ejected.swap(true, Ordering::AcqRel) {
            return None;
        }
        let now = self.now_ms();
        let calm = now.saturating_sub(self.readmitted_ms.load(Ordering::Relaxed));
        if calm >= millis(max) {
            self.ejection_streak.store(0, Ordering::Relaxed);
        }
        let streak = self.ejection_streak.fetch_add(1, Ordering::Relaxed).min(20);
        let length = base.saturating_mul(1 << streak).min(max);
        self.ejected_until_ms
            .store(now + millis(length), Ordering::Relaxed);
        self.metrics.ejections.inc();
        self.sync_gauge();
        Some(length)
    }

    /// Whether the ejection backoff has run out.
    pub(crate) fn backoff_over(&self) -> bool {
        self.now_ms() >= self.ejected_until_ms.load(Ordering::Relaxed)
    }

    /// Lifts an ejection; true if this call did it.
    pub(crate) fn readmit(&self) -> bool {
        if !self.ejected.swap(false, Ordering::AcqRel) {
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        self.readmitted_ms.store(self.now_ms(), Ordering::Relaxed);
        self.sync_gauge();
        true
    }

    /// Records an active check result; true if the health flag changed.
    pub(crate) fn set_healthy(&self, healthy: bool) -> bool {
        let changed = self.healthy.swap(healthy, Ordering::AcqRel) != healthy;
        self.sync_gauge();
        changed
    }

    fn sync_gauge(&self) {
        self.metrics.healthy.set(i64::from(self.is_available()));
    }

    fn now_ms(&self) -> u64 {
        self.now_us() / 1000
    }
}

fn micros_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A try in progress on an endpoint; dropping it ends the try.
#[derive(Debug)]
pub(crate) struct InFlight<'a> {
    endpoint: &'a Endpoint,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.endpoint.metrics.in_flight.dec();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::PoolMetrics;

    /// An endpoint on `127.0.0.1:port` for unit tests.
    pub(crate) fn endpoint(id: u64, weight: u32) -> Endpoint {
        let addr = SocketAddr::from(([127, 0, 0, 1], 10_000 + id as u16));
        let metrics = PoolMetrics::default().endpoint("t", &addr.to_string());
        Endpoint::new(id, addr, weight, Instant::now(), metrics)
    }

    #[test]
    fn ejection_doubles_and_is_capped() {
        let ep = endpoint(1, 1);
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(3));
        assert_eq!(ep.eject(base, max), Some(base));
        assert_eq!(ep.eject(base, max), None, "already ejected");
        assert!(!ep.is_available());
        assert!(ep.readmit());
        assert_eq!(ep.eject(base, max), Some(Duration::from_secs(2)));
        assert!(ep.readmit());
        assert_eq!(ep.eject(base, max), Some(max));
    }

    #[test]
    fn failures_count_until_success() {
        let ep = endpoint(1, 1);
        assert!(!ep.record_failure(2));
        ep.record_success();
        assert!(!ep.record_failure(2));
        assert!(ep.record_failure(2));
    }

    #[test]
    fn one_failed_probe_is_not_a_verdict() {
        let ep = endpoint(1, 1);
        assert!(ep.record_probe(false, 3), "first failure");
        assert!(ep.record_probe(false, 3), "second failure");
        assert!(!ep.record_probe(false, 3), "third in a row");
        assert!(!ep.record_probe(false, 3), "still failing");
        assert!(ep.record_probe(true, 3), "one pass heals");
        assert!(ep.record_probe(false, 3), "the count starts again");
        assert!(
            !ep.record_probe(false, 1),
            "a threshold of one is immediate"
        );
    }

    #[test]
    fn in_flight_guard_counts_and_releases() {
        let ep = endpoint(1, 1);
        let guard = ep.start();
        assert_eq!(ep.in_flight(), 1);
        drop(guard);
        assert_eq!(ep.in_flight(), 0);
        assert_eq!(ep.requests(), 1);
    }
}
