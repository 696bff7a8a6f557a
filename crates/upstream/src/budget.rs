//! The retry budget: retries may add at most a set share of load, plus a small
//! floor per second, over a sliding ten-second window.
//!
//! The window is a ring of one-second slots of atomic counters: each original
//! request deposits into the current slot, each retry withdraws. A retry is allowed
//! while `ratio × requests − retries + min_per_sec × 10` over the window stays >= 0.
//! Slots are recycled without a lock, so a counter bumped at the very instant its
//! slot turns over may be lost; the budget is a guard rail, not an invoice.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

/// Length of the window, in one-second slots.
const WINDOW_SECS: u64 = 10;

/// One second of deposits and withdrawals.
#[derive(Debug, Default)]
struct Slot {
    /// The second (since the budget epoch) this slot counts, plus one; 0 is unused.
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// A lock-free retry budget shared by every request of a pool.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    epoch: Instant,
    slots: [Slot; WINDOW_SECS as usize],
}

impl RetryBudget {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            slots: Default::default(),
        }
    }

    /// Records an original request.
    pub(crate) fn deposit(&self) {
        self.current().requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry out of the budget; false when the budget is empty.
    pub(crate) fn withdraw(&self, ratio: f64, min_per_sec: u32) -> bool {
        let slot = self.current();
        slot.retries.fetch_add(1, Ordering::Relaxed);
        if self.balance(ratio, min_per_sec) >= 0.0 {
            return true;
        }
        slot.retries.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// What is left over the window, counting retries already taken.
    fn balance(&self, ratio: f64, min_per_sec: u32) -> f64 {
        let now = self.second() + 1;
        let (mut requests, mut retries) = (0u64, 0u64);
        for slot in &self.slots {
            let second = slot.second.load(Ordering::Acquire);
            if second + WINDOW_SECS > now {
                requests += slot.requests.load(Ordering::Relaxed);
                retries += slot.retries.load(Ordering::Relaxed);
            }
        }
        let floor = f64::from(min_per_sec) * WINDOW_SECS as f64;
        ratio * requests as f64 + floor - retries as f64
    }

    /// The slot of this second, cleared first if it still holds an older second.
    fn current(&self) -> &Slot {
        let tag = self.second() + 1;
        let slot = &self.slots[(tag % WINDOW_SECS) as usize];
        let seen = slot.second.load(Ordering::Acquire);
        let recycle = seen != tag
            && slot
                .second
                .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if recycle {
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }

    fn second(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retries_are_a_share_of_requests_plus_a_floor() {
        let budget = RetryBudget::new();
        for _ in 0..100 {
            budget.deposit();
        }
        let allowed = (0..1000).filter(|_| budget.withdraw(0.2, 1)).count();
        assert_eq!(allowed, 20 + 10);
    }

    #[test]
    fn a_zero_budget_allows_nothing() {
        let budget = RetryBudget::new();
        budget.deposit();
        assert!(!budget.withdraw(0.0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn old_requests_leave_the_window() {
        let budget = RetryBudget::new();
        for _ in 0..100 {
            budget.deposit();
        }
        tokio::time::advance(Duration::from_secs(WINDOW_SECS + 1)).await;
        budget.deposit();
        assert!(!budget.withdraw(0.5, 0));
    }
}
