//! `switchboard gateway`: the RPC gateway in front of the service pools.
//!
//! The configuration is the `[gateway]` section with the command-line flags laid
//! over it. A reload (SIGHUP, or a change of the config file) reads the file again
//! and lays the same flags over it, so `--service` flags keep winning.

use std::sync::Arc;

use gateway::{Gateway, GatewayConfig, Reloader};

use crate::cli::{self, GatewayArgs};

/// Runs the gateway until SIGTERM or Ctrl-C, then drains.
pub(crate) fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let config = cli::load(&args.serve.common)?;
    let gateway_cfg = effective(&args, config.gateway.clone())?;
    let guard = telemetry::logging::init(&config.log)?;
    let mut registry = telemetry::registry("gateway");
    guard.register_metrics(&mut registry);

    let watch = args.serve.common.config_file();
    let args = Arc::new(args);
    // `{:#}` keeps anyhow's context chain in the one-line warning.
    let mut reloader = Reloader::new(move || reload(&args).map_err(|e| format!("{e:#}").into()));
    if let Some(path) = watch {
        reloader = reloader.watching(path);
    }
    cli::runtime()?.block_on(async move {
        let gateway = Gateway::new(&gateway_cfg, config.limits, registry, reloader)?;
        gateway.run(service::Shutdown::on_signals()).await
    })?;
    Ok(())
}

/// The `[gateway]` section with the flags applied, checked.
fn effective(args: &GatewayArgs, mut cfg: GatewayConfig) -> anyhow::Result<GatewayConfig> {
    cli::apply_serve_flags(&mut cfg.server, &args.serve);
    cfg.apply_service_flags(&args.services)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Reads the config file again for a reload.
fn reload(args: &GatewayArgs) -> anyhow::Result<GatewayConfig> {
    let config = cli::load(&args.serve.common)?;
    effective(args, config.gateway)
}
