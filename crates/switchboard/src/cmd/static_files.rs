//! `switchboard static`: the static gateway, serving one folder under
//! `/static/`.

use crate::cli::{self, StaticArgs};

/// Runs the static gateway until SIGTERM or Ctrl-C, then drains.
pub(crate) fn run(args: StaticArgs) -> anyhow::Result<()> {
    let config = cli::load(&args.serve.common)?;
    let mut cfg = config.static_files.clone();
    if let Some(listen) = args.serve.listen {
        cfg.listen = listen;
    }
    if let Some(ms) = args.serve.drain_timeout_ms {
        cfg.drain_timeout_ms = ms;
    }
    if let Some(root) = &args.root {
        cfg.root = root.clone();
    }
    let guard = telemetry::logging::init(&config.log)?;
    let mut registry = telemetry::registry("static");
    guard.register_metrics(&mut registry);
    // The signal watcher is spawned, so it must be made inside the runtime.
    cli::runtime()?.block_on(async {
        static_files::run(cfg, registry, service::Shutdown::on_signals()).await
    })?;
    Ok(())
}
