//! Power of two choices: draw two distinct entries, keep the cheaper.

use std::sync::Arc;

use crate::endpoint::Endpoint;

/// Rounds of random draws before falling back to a scan.
const DRAWS: usize = 4;

/// Picks among `list` by `cost`, considering only entries for which `usable` holds.
pub(super) fn pick(
    list: &[Arc<Endpoint>],
    usable: impl Fn(&Endpoint) -> bool,
    cost: impl Fn(&Endpoint) -> f64,
) -> Option<&Arc<Endpoint>> {
    if list.len() < 2 {
        return list.first().filter(|ep| usable(ep));
    }

    for _ in 0..DRAWS {
        let (a, b) = two_distinct(list.len());
        let (a, b) = (&list[a], &list[b]);
        match (usable(a), usable(b)) {
            (true, true) => return Some(if cost(b) < cost(a) { b } else { a }),
            (true, false) => return Some(a),
            (false, true) => return Some(b),
            (false, false) => continue,
        }
    }
    cheapest(list, usable, cost)
}

/// Two different indexes below `n` (n >= 2), uniformly.
fn two_distinct(n: usize) -> (usize, usize) {
    let a = fastrand::usize(..n);
    let b = fastrand::usize(..n - 1);
    (a, if b >= a { b + 1 } else { b })
}

/// The scan behind the draws: reached when most entries are unusable.
fn cheapest(
    list: &[Arc<Endpoint>],
    usable: impl Fn(&Endpoint) -> bool,
    cost: impl Fn(&Endpoint) -> f64,
) -> Option<&Arc<Endpoint>> {
    list.iter()
        .filter(|ep| usable(ep))
        .min_by(|a, b| cost(a).total_cmp(&cost(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::tests::endpoint;
    use std::time::Duration;

    #[test]
    fn least_request_never_picks_the_busiest_of_two() {
        let list: Vec<_> = (0..2).map(|id| Arc::new(endpoint(id, 1))).collect();
        let _busy = list[0].start();
        for _ in 0..100 {
            let ep = pick(&list, |_| true, |ep| ep.in_flight() as f64).expect("one");
            assert_eq!(ep.id, 1);
        }
    }

    #[test]
    fn least_request_spreads_over_idle_endpoints() {
        let list: Vec<_> = (0..3).map(|id| Arc::new(endpoint(id, 1))).collect();
        let mut counts = [0; 3];
        for _ in 0..3000 {
            let ep = pick(&list, |_| true, |ep| ep.in_flight() as f64).expect("one");
            counts[ep.id as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }

    #[test]
    fn peak_ewma_prefers_the_fast_endpoint() {
        let list: Vec<_> = (0..3).map(|id| Arc::new(endpoint(id, 1))).collect();
        let now = list[0].now_us();
        list[0].ewma.observe(Duration::from_millis(300), now);
        for _ in 0..200 {
            let ep = pick(&list, |_| true, Endpoint::ewma_cost).expect("one");
            assert_ne!(ep.id, 0);
        }
    }

    #[test]
    fn falls_back_to_a_scan_when_draws_miss() {
        let list: Vec<_> = (0..50).map(|id| Arc::new(endpoint(id, 1))).collect();
        for _ in 0..100 {
            let ep = pick(&list, |ep| ep.id == 33, |_| 0.0).expect("one usable");
            assert_eq!(ep.id, 33);
        }
    }
}
