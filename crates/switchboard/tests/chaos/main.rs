//! The reliability suite: the whole topology as real processes, open-loop load
//! with a ledger of every request, and real faults.
//!
//! Each scenario starts its own stack on loopback (1 load balancer, 2 gateways,
//! 3 calc, 1 static; see [`stack`]), drives load at a fixed rate on a timetable
//! that never waits for answers ([`load`]), injects a fault ([`fault`]: signals,
//! in-test bad instances, nftables partitions), and checks the figure the
//! scenario promises against the ledger and the components' `/metrics`
//! ([`observe`]). Every scenario prints one row of the summary table.
//!
//! Scenarios run one at a time whatever `--test-threads` says: on a small
//! machine two stacks under load would measure each other. Knobs, all optional:
//!
//! - `SWITCHBOARD_CHAOS_BIN`: the binary to run (e.g. `target/release/switchboard`);
//!   the debug binary cargo built for the tests otherwise.
//! - `SWITCHBOARD_CHAOS_RATE`: requests per second of the steady scenarios.
//! - `SWITCHBOARD_SOAK_SECS`: length of the `load_held_soak` run (ignored test).
//! - `SWITCHBOARD_CHAOS_REPORT`: a file to which each summary row is appended.
//! - `SWITCHBOARD_CHAOS_KEEP_LOGS`, `SWITCHBOARD_CHAOS_LOG_LEVEL`: keep each
//!   process's JSON logs (filter `warn` unless set) and print where they are.
//! - `SWITCHBOARD_REQUIRE_NETNS=1`: the partition scenario fails instead of
//!   skipping when nftables or root is missing (set in CI).

#[path = "../common/mod.rs"]
mod common;

mod fault;
mod faults_survived;
mod load;
mod load_held;
mod observe;
mod stack;

use std::future::Future;
use std::sync::{Mutex, PoisonError};

/// Held by the scenario running now.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs one scenario on its own runtime, after any other has finished.
pub(crate) fn scenario<F: Future<Output = ()>>(body: F) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime");
    runtime.block_on(body);
}

/// Requests per second of the steady scenarios.
pub(crate) fn rate() -> f64 {
    std::env::var("SWITCHBOARD_CHAOS_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200.0)
}
