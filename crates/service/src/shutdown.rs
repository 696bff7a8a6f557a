//! A shutdown signal that many tasks can wait on.

use tokio::sync::watch;

/// Resolves once shutdown has begun. Cheap to clone; every clone sees the
/// same signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Starts the shutdown that its [`Shutdown`]s wait for.
#[derive(Debug, Clone)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

impl Trigger {
    /// Begins shutdown; later calls do nothing.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// A signal and the trigger that fires it.
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger { tx }, Shutdown { rx })
    }

    /// A signal fired by SIGTERM or SIGINT (Ctrl-C), and also when the
    /// parent process dies if [`EXIT_WITH_PARENT_ENV`] is set, so children of
    /// a supervisor that was killed outright do not linger.
    pub fn on_signals() -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        let with_parent = std::env::var_os(EXIT_WITH_PARENT_ENV).is_some_and(|v| v == "1");
        tokio::spawn(async move {
            tokio::select! {
                _ = wait_for_signal() => tracing::info!("shutdown signal received, draining"),
                _ = parent_death(), if with_parent => tracing::warn!("parent process gone, draining"),
            }
            trigger.trigger();
        });
        shutdown
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until shutdown begins.
    pub async fn wait(&mut self) {
        // An error means every trigger was dropped unfired: the owner of the
        // signal is gone, so stopping is the safe reading.
        let _ = self.rx.wait_for(|fired| *fired).await;
    }
}

/// Environment variable that makes [`Shutdown::on_signals`] also fire when the
/// parent process exits; `switchboard up` sets it for its children.
pub const EXIT_WITH_PARENT_ENV: &str = "SWITCHBOARD_EXIT_WITH_PARENT";

/// Resolves when this process is re-parented, which happens when its parent
/// dies. Polling keeps it free of `unsafe` (no `prctl`).
async fn parent_death() {
    let parent = std::os::unix::process::parent_id();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        if std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; SIGTERM will not drain");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
