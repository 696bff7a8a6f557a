//! Hot reload of the pool list: on SIGHUP, and when the config file changes.
//!
//! The file is watched by comparing its modification time and length once a
//! second, which costs one `stat` and needs no platform notifier. A configuration
//! that fails to load or validate is refused whole, with one warning, and the
//! pools in force stay as they were. The listen address cannot change this way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use service::Shutdown;
use service::http::BoxError;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::config::GatewayConfig;
use crate::server::State;

/// How often the watched file is looked at.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Loads the configuration again, for reloads.
type LoadFn = dyn Fn() -> Result<GatewayConfig, BoxError> + Send + Sync;

/// Where a reload gets its configuration, and which file to watch for changes.
pub struct Reloader {
    load: Box<LoadFn>,
    watch: Option<PathBuf>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("watch", &self.watch)
            .finish()
    }
}

impl Reloader {
    /// Reloads call `load`, which reads the file and applies command-line flags.
    pub fn new(load: impl Fn() -> Result<GatewayConfig, BoxError> + Send + Sync + 'static) -> Self {
        Reloader {
            load: Box::new(load),
            watch: None,
        }
    }

    /// A reloader that always gives `cfg` back: SIGHUP changes nothing.
    pub fn fixed(cfg: GatewayConfig) -> Self {
        Reloader::new(move || Ok(cfg.clone()))
    }

    /// Also reloads when `path` changes.
    pub fn watching(mut self, path: PathBuf) -> Self {
        self.watch = Some(path);
        self
    }

    /// Loads and applies the configuration once; logs the result.
    fn reload(&self, state: &State, cause: &'static str) {
        let result = (self.load)().and_then(|cfg| {
            warn_on_listen_change(state, &cfg);
            state.routes.apply(&cfg).map_err(BoxError::from)
        });
        state.metrics.reload(result.is_ok());
        match result {
            Ok(()) => info!(cause, "configuration reloaded"),
            Err(error) => {
                warn!(cause, error = %error, "configuration refused, keeping the old one")
            }
        }
    }
}

fn warn_on_listen_change(state: &State, cfg: &GatewayConfig) {
    if cfg.server.listen != state.server.listen {
        warn!(listen = %cfg.server.listen, "a new listen address needs a restart");
    }
}

/// Reloads on SIGHUP or file change until shutdown.
pub(crate) async fn run(reloader: Reloader, state: Arc<State>, mut shutdown: Shutdown) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(error) => {
            warn!(%error, "cannot watch SIGHUP; reload on signal is off");
            None
        }
    };
    let mut seen = stamp(reloader.watch.as_ref());
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            Some(()) = recv(&mut hangup) => reloader.reload(&state, "signal"),
            _ = tick.tick() => {
                let now = stamp(reloader.watch.as_ref());
                if now != seen {
                    seen = now;
                    reloader.reload(&state, "file change");
                }
            }
        }
    }
}

async fn recv(hangup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hangup {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// What tells one version of the watched file from another.
fn stamp(path: Option<&PathBuf>) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path?).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
