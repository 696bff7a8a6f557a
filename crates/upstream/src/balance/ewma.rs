//! A peak-sensitive, time-decayed moving average of latency, kept in atomics.
//!
//! A sample above the current estimate replaces it at once, so a slowing instance is
//! avoided immediately; faster samples pull it down with a ~10 s time constant. When
//! read, an estimate without fresh samples fades, so an instance avoided for being slow
//! is eventually probed again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Time constant of the decay, in seconds.
const TAU_SECS: f64 = 10.0;

/// Estimate given to a new endpoint before its first sample, in seconds.
const DEFAULT_RTT_SECS: f64 = 0.005;

/// Latency estimate of one endpoint.
#[derive(Debug)]
pub(crate) struct Ewma {
    /// Estimate in seconds, as `f64` bits.
    secs: AtomicU64,
    /// Time of the last sample, in microseconds since the pool epoch.
    stamp_us: AtomicU64,
}

impl Ewma {
    /// An estimate starting at a small default latency.
    pub(crate) fn new(now_us: u64) -> Self {
        Self {
            secs: AtomicU64::new(DEFAULT_RTT_SECS.to_bits()),
            stamp_us: AtomicU64::new(now_us),
        }
    }

    /// Folds one latency sample in.
    ///
    /// Two samples racing may lose one of them; that only blurs an estimate.
    pub(crate) fn observe(&self, rtt: Duration, now_us: u64) {
        let sample = rtt.as_secs_f64();
        let previous = self.stamp_us.swap(now_us, Ordering::Relaxed);
        let elapsed = now_us.saturating_sub(previous) as f64 / 1e6;
        let keep = (-elapsed / TAU_SECS).exp();
        let update = |bits: u64| {
            let old = f64::from_bits(bits);
            let new = if sample > old {
                sample
            } else {
                old * keep + sample * (1.0 - keep)
            };
            Some(new.to_bits())
        };
        let _ = self
            .secs
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, update);
    }

    /// The estimate in seconds, faded by the time since the last sample.
    pub(crate) fn estimate(&self, now_us: u64) -> f64 {
        let secs = f64::from_bits(self.secs.load(Ordering::Relaxed));
        let stamp = self.stamp_us.load(Ordering::Relaxed);
        let idle = now_us.saturating_sub(stamp) as f64 / 1e6;
        secs * (-idle / TAU_SECS).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_sample_raises_the_estimate_at_once() {
        let ewma = Ewma::new(0);
        ewma.observe(Duration::from_millis(200), 1_000);
        assert!((ewma.estimate(1_000) - 0.2).abs() < 1e-9);
    }

    #[test]
    fn fast_samples_lower_it_slowly() {
        let ewma = Ewma::new(0);
        ewma.observe(Duration::from_millis(100), 0);
        ewma.observe(Duration::from_millis(1), 1_000_000);
        let est = ewma.estimate(1_000_000);
        assert!(est > 0.05 && est < 0.1, "{est}");
    }

    #[test]
    fn an_idle_estimate_fades() {
        let ewma = Ewma::new(0);
        ewma.observe(Duration::from_millis(100), 0);
        assert!(ewma.estimate(30_000_000) < 0.01);
    }
}
