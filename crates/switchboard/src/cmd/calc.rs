//! `switchboard calc`: the calc service.

use crate::config::Config;

/// Runs calc until SIGTERM or Ctrl-C.
pub(crate) fn run(config: Config) -> anyhow::Result<()> {
    let guard = telemetry::logging::init(&config.log)?;
    let mut registry = telemetry::registry("calc");
    guard.register_metrics(&mut registry);
    let cfg = service::ServiceConfig {
        server: config.calc,
        limits: config.limits,
    };
    crate::cli::runtime()?.block_on(calc::service().run(cfg, registry))?;
    Ok(())
}
