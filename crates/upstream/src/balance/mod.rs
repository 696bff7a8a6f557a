//! Choosing the endpoint of each try.
//!
//! The pool keeps an immutable [`Candidates`] snapshot of the endpoints that take
//! requests, rebuilt only when membership or health changes. A pick reads that
//! snapshot and a shared cursor, so it takes no lock and its cost does not grow with
//! the pool: p2c draws two random entries, round robin and weighted round robin step
//! a cursor. Entries turning unavailable between rebuilds, or already tried by the
//! same request, are skipped; only when nearly all are skipped does a pick fall back
//! to a scan, which in practice means a pool of a handful of endpoints.

pub(crate) mod ewma;
mod p2c;
mod round_robin;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::config::Balance;
use crate::endpoint::Endpoint;

/// The endpoints that take new requests, as seen at the last rebuild.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    pub(crate) list: Vec<Arc<Endpoint>>,
    /// Smooth weighted order over `list`, only built for weighted round robin.
    schedule: Vec<u32>,
}

impl Candidates {
    /// A snapshot of `list`; builds the weighted schedule when `balance` needs it.
    ///
    /// Building the schedule costs O(n × total weight); it runs on changes, not picks.
    pub(crate) fn new(list: Vec<Arc<Endpoint>>, balance: Balance) -> Self {
        let schedule = match balance {
            Balance::WeightedRoundRobin => round_robin::smooth_schedule(&list),
            _ => Vec::new(),
        };
        Self { list, schedule }
    }

    /// Chooses an available endpoint whose id is not in `tried`.
    pub(crate) fn pick(
        &self,
        balance: Balance,
        cursor: &AtomicUsize,
        tried: &[u64],
    ) -> Option<Arc<Endpoint>> {
        let usable = |ep: &Endpoint| ep.is_available() && !tried.contains(&ep.id);
        let chosen = match balance {
            Balance::P2cLeastRequest => p2c::pick(&self.list, usable, |ep| ep.in_flight() as f64),
            Balance::PeakEwma => p2c::pick(&self.list, usable, Endpoint::ewma_cost),
            Balance::RoundRobin => round_robin::pick(&self.list, None, cursor, usable),
            Balance::WeightedRoundRobin => {
                round_robin::pick(&self.list, Some(&self.schedule), cursor, usable)
            }
        };
        chosen.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::tests::endpoint;

    #[test]
    fn every_balance_skips_tried_and_unavailable_endpoints() {
        let list: Vec<_> = (0..3).map(|id| Arc::new(endpoint(id, 1))).collect();
        list[1].set_healthy(false);
        let cursor = AtomicUsize::new(0);
        let all = [
            Balance::P2cLeastRequest,
            Balance::PeakEwma,
            Balance::RoundRobin,
            Balance::WeightedRoundRobin,
        ];
        for balance in all {
            let candidates = Candidates::new(list.clone(), balance);
            for _ in 0..50 {
                let ep = candidates
                    .pick(balance, &cursor, &[0])
                    .expect("endpoint 2 is left");
                assert_eq!(ep.id, 2, "{balance:?}");
            }
            assert!(candidates.pick(balance, &cursor, &[0, 2]).is_none());
        }
    }
}
