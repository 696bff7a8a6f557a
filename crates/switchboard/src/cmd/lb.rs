//! `switchboard lb`: the load balancer, the public entry of the system.
//!
//! The configuration is the `[lb]` section with the command-line flags laid
//! over it. A reload (SIGHUP or `POST /reload` on the admin port) reads the
//! file again and lays the same flags over it, so `--rpc` and `--static` keep
//! winning; to change pools by reload, name them in the file only.

use std::sync::Arc;

use lb::{LbConfig, LbError};

use crate::cli::{self, LbArgs};

/// Runs the load balancer until SIGTERM or Ctrl-C, then drains.
pub(crate) fn run(args: LbArgs) -> anyhow::Result<()> {
    let config = cli::load(&args.serve.common)?;
    let lb_cfg = effective(&args, config.lb.clone())?;
    let guard = telemetry::logging::init(&config.log)?;
    let mut registry = telemetry::registry("lb");
    guard.register_metrics(&mut registry);

    let args = Arc::new(args);
    let reloader: lb::Reloader = Arc::new(move || reload(&args));
    cli::runtime()?.block_on(async move {
        lb::run(lb_cfg, registry, reloader, service::Shutdown::on_signals()).await
    })?;
    Ok(())
}

/// The `[lb]` section with the flags applied, checked.
fn effective(args: &LbArgs, mut cfg: LbConfig) -> Result<LbConfig, LbError> {
    let serve = &args.serve;
    if let Some(listen) = serve.listen {
        cfg.listen = listen;
    }
    if let Some(ms) = serve.drain_timeout_ms {
        cfg.drain_timeout_ms = ms;
    }
    if let Some(admin) = args.admin {
        cfg.admin = admin;
    }
    if !args.rpc.is_empty() {
        cfg.rpc.endpoints = args.rpc.clone();
    }
    if !args.static_files.is_empty() {
        cfg.static_files.endpoints = args.static_files.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Reads the config file again for a reload.
fn reload(args: &LbArgs) -> Result<LbConfig, LbError> {
    let config = cli::load(&args.serve.common).map_err(|e| LbError::Reload(format!("{e:#}")))?;
    effective(args, config.lb)
}
