//! Admission control: overload shedding and per-client rate limits.
//!
//! Both answer at once instead of queueing: past `max_in_flight` a request gets
//! 503 `overloaded` with `Retry-After`, and a client over its token bucket gets
//! 429 with `Retry-After`. A queue that grows under overload only adds latency
//! to requests that will time out anyway.

use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::RateLimitConfig;

/// Counts requests being handled, and refuses those past the limit.
#[derive(Debug)]
pub struct InFlight {
    count: AtomicUsize,
    gauge: Gauge,
}

/// One admitted request; leaving is counted when it is dropped.
#[derive(Debug)]
pub struct Admitted {
    owner: Arc<InFlight>,
}

impl InFlight {
    /// A counter that mirrors its value into `gauge`.
    pub fn new(gauge: Gauge) -> Self {
        InFlight {
            count: AtomicUsize::new(0),
            gauge,
        }
    }

    /// Admits one request unless `limit` are already in flight.
    pub fn try_enter(self: &Arc<Self>, limit: usize) -> Option<Admitted> {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.gauge.inc();
        Some(Admitted {
            owner: Arc::clone(self),
        })
    }

    /// Requests in flight now.
    pub fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.owner.count.fetch_sub(1, Ordering::AcqRel);
        self.owner.gauge.dec();
    }
}

/// Buckets kept before idle ones are swept out.
const SWEEP_AT: usize = 65_536;

/// Token buckets keyed by client address.
///
/// One short lock per request; the map is swept of full buckets when it grows
/// past [`SWEEP_AT`] entries, so address churn cannot grow it without bound.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Takes one token for `client`, or says how long until one is there.
    pub fn check(
        &self,
        client: IpAddr,
        cfg: &RateLimitConfig,
        now: Instant,
    ) -> Result<(), Duration> {
        let burst = f64::from(cfg.burst);
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock means a panic elsewhere; admit rather than fail closed.
            return Ok(());
        };
        if buckets.len() >= SWEEP_AT {
            sweep(&mut buckets, cfg, now);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.refill(cfg.per_second, burst, now);
        bucket.take(cfg.per_second)
    }
}

impl Bucket {
    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
    }

    fn take(&mut self, rate: f64) -> Result<(), Duration> {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }
}

/// Drops buckets that would be full by now: forgetting them changes nothing.
fn sweep(buckets: &mut HashMap<IpAddr, Bucket>, cfg: &RateLimitConfig, now: Instant) {
    let full_after = Duration::from_secs_f64(f64::from(cfg.burst) / cfg.per_second);
    buckets.retain(|_, b| now.saturating_duration_since(b.updated) < full_after);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_refuses_past_the_limit_and_frees_on_drop() {
        let gauge = Gauge::default();
        let in_flight = Arc::new(InFlight::new(gauge.clone()));
        let a = in_flight.try_enter(2).expect("first");
        let _b = in_flight.try_enter(2).expect("second");
        assert!(in_flight.try_enter(2).is_none());
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert!(in_flight.try_enter(2).is_some());
        assert_eq!(in_flight.current(), 1);
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let cfg = RateLimitConfig {
            enabled: true,
            per_second: 10.0,
            burst: 3,
        };
        let limiter = RateLimiter::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(ip, &cfg, t0).is_ok());
        }
        let wait = limiter.check(ip, &cfg, t0).expect_err("bucket empty");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(
            limiter
                .check(ip, &cfg, t0 + Duration::from_millis(100))
                .is_ok()
        );
        let other: IpAddr = [10, 0, 0, 2].into();
        assert!(limiter.check(other, &cfg, t0).is_ok());
    }
}
