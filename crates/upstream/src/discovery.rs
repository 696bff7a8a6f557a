//! Discovery: host-name endpoints are resolved at start and every `resolve_interval`.
//!
//! One name may give many addresses, each becoming an endpoint. When a name fails to
//! resolve (or resolves to nothing) its last good addresses stay, and a warning is
//! logged once until it resolves again.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::Target;
use crate::pool::Inner;

/// Longest wait for one name; the system resolver has its own timeouts too.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

impl Inner {
    /// Resolves every configured host name once; `failing` holds names already warned about.
    pub(crate) async fn resolve_names(&self, failing: &mut HashSet<String>) {
        for name in self.names() {
            match lookup(&name).await {
                Ok(addrs) => {
                    if failing.remove(&name) {
                        info!(pool = %self.name, name = %name, "host name resolves again");
                    }
                    debug!(pool = %self.name, name = %name, count = addrs.len(), "resolved");
                    self.set_resolved(&name, addrs);
                }
                Err(error) => {
                    if failing.insert(name.clone()) {
                        let pool = self.name.as_str();
                        warn!(pool, name = %name, %error, "cannot resolve, keeping last addresses");
                    }
                }
            }
        }
    }

    fn names(&self) -> Vec<String> {
        let settings = self.settings.load();
        settings
            .specs
            .iter()
            .filter_map(|spec| match &spec.target {
                Target::Name(name) => Some(name.clone()),
                Target::Static(_) => None,
            })
            .collect()
    }
}

/// The sorted, distinct addresses of `host:port`; an empty answer is an error.
async fn lookup(name: &str) -> std::io::Result<Vec<SocketAddr>> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "lookup timed out");
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host(name))
        .await
        .map_err(|_| timed_out())??;
    let mut addrs: Vec<SocketAddr> = found.collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address",
        ));
    }
    Ok(addrs)
}

/// The resolver loop of a pool; ends on shutdown or when the pool is dropped.
pub(crate) async fn run(pool: Weak<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut failing = HashSet::new();
    loop {
        let Some(inner) = pool.upgrade() else { return };
        if *shutdown.borrow() {
            return;
        }
        inner.resolve_names(&mut failing).await;
        let pause = inner.settings.load().cfg.resolve_interval;
        let wake = inner.wake_resolver.clone();
        drop(inner);

        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
