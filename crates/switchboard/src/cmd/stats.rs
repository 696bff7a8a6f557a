//! `switchboard stats`: the stats service.

use crate::config::Config;

/// Runs stats until SIGTERM or Ctrl-C.
pub(crate) fn run(config: Config) -> anyhow::Result<()> {
    let guard = telemetry::logging::init(&config.log)?;
    let mut registry = telemetry::registry("stats");
    guard.register_metrics(&mut registry);
    let cfg = service::ServiceConfig {
        server: config.stats,
        limits: config.limits,
    };
    crate::cli::runtime()?.block_on(stats::service().run(cfg, registry))?;
    Ok(())
}
