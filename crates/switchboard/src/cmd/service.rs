//! `switchboard calc` and `switchboard stats`: a service built on the kit.

use crate::config::Config;
use service::{ServerConfig, Service};

/// Runs `definition` as the component `name` with `server` settings until
/// SIGTERM or Ctrl-C.
pub(crate) fn run(
    config: &Config,
    name: &'static str,
    server: ServerConfig,
    definition: Service,
) -> anyhow::Result<()> {
    let guard = telemetry::logging::init(&config.log)?;
    let mut registry = telemetry::registry(name);
    guard.register_metrics(&mut registry);
    let cfg = service::ServiceConfig {
        server,
        limits: config.limits,
    };
    crate::cli::runtime()?.block_on(definition.run(cfg, registry))?;
    Ok(())
}
