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

    /// A signal fired by SIGTERM or SIGINT (Ctrl-C).
    pub fn on_signals() -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received, draining");
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
