//! Round robin and smooth weighted round robin, driven by one atomic cursor.
//!
//! Weighted round robin follows the smooth interleaving popularised by nginx, but the
//! order is computed once per candidate rebuild into a schedule, so a pick is one
//! `fetch_add` and an index instead of a locked O(n) pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::endpoint::Endpoint;

/// Picks the next usable entry, following `schedule` if given, else `list` in order.
///
/// Skipped entries cost one step each; a full turn without a usable entry gives `None`.
pub(super) fn pick<'a>(
    list: &'a [Arc<Endpoint>],
    schedule: Option<&[u32]>,
    cursor: &AtomicUsize,
    usable: impl Fn(&Endpoint) -> bool,
) -> Option<&'a Arc<Endpoint>> {
    let len = schedule.map_or(list.len(), <[u32]>::len);
    if len == 0 {
        return None;
    }

    let start = cursor.fetch_add(1, Ordering::Relaxed);
    (0..len)
        .map(|step| (start.wrapping_add(step)) % len)
        .map(|slot| schedule.map_or(slot, |s| s[slot] as usize))
        .filter_map(|index| list.get(index))
        .find(|ep| usable(ep))
}

/// One turn of smooth weighted round robin over `list`, as indexes into it.
///
/// Weights are divided by their greatest common divisor first, so the turn is
/// `sum(weights) / gcd` long.
pub(super) fn smooth_schedule(list: &[Arc<Endpoint>]) -> Vec<u32> {
    let divisor = list.iter().map(|ep| ep.weight()).fold(0, gcd).max(1);
    let weights: Vec<i64> = list
        .iter()
        .map(|ep| i64::from(ep.weight() / divisor))
        .collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let best = heaviest(&current);
        current[best] -= total;
        schedule.push(u32::try_from(best).unwrap_or(u32::MAX));
    }
    schedule
}

/// Index of the largest value, the first one on ties.
fn heaviest(values: &[i64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::tests::endpoint;

    fn endpoints(weights: &[u32]) -> Vec<Arc<Endpoint>> {
        let ids = 0u64..;
        ids.zip(weights)
            .map(|(id, w)| Arc::new(endpoint(id, *w)))
            .collect()
    }

    #[test]
    fn round_robin_takes_turns() {
        let list = endpoints(&[1, 1, 1]);
        let cursor = AtomicUsize::new(0);
        let ids: Vec<u64> = (0..6)
            .map(|_| pick(&list, None, &cursor, |_| true).expect("one").id)
            .collect();
        assert_eq!(ids, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn smooth_schedule_interleaves_heavy_endpoints() {
        let list = endpoints(&[5, 1, 1]);
        assert_eq!(smooth_schedule(&list), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_are_reduced_by_their_gcd() {
        let list = endpoints(&[20, 40]);
        assert_eq!(smooth_schedule(&list).len(), 3);
    }

    #[test]
    fn weighted_picks_follow_the_weights() {
        let list = endpoints(&[1, 2, 3]);
        let schedule = smooth_schedule(&list);
        let cursor = AtomicUsize::new(0);
        let mut counts = [0; 3];
        for _ in 0..600 {
            let ep = pick(&list, Some(&schedule), &cursor, |_| true).expect("one");
            counts[ep.id as usize] += 1;
        }
        assert_eq!(counts, [100, 200, 300]);
    }
}
