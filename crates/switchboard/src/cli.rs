//! Command-line interface: parses flags, layers them over the config file and
//! starts the chosen component.

use crate::config::Config;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// A distributed RPC system: load balancer, gateway and services.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the calc service (calc.summ, calc.sub, calc.mult, calc.div).
    Calc(ServeArgs),
    /// Run the stats service (stats.mean, stats.median, stats.min, stats.max).
    Stats(ServeArgs),
    /// Run the RPC gateway, routing each call to the pool of its service.
    Gateway(GatewayArgs),
    /// Run the load balancer, the public entry in front of the gateways.
    Lb(LbArgs),
    /// Run the static gateway, serving files under one root at /static/.
    Static(StaticArgs),
    /// Check a config file and print the effective configuration.
    CheckConfig(CommonArgs),
    /// Call a method and print the result, or put load on an entry point.
    Call(crate::cmd::call::CallArgs),
    /// Run the whole stack on this machine: load balancer, gateways, services.
    Up(crate::cmd::up::UpArgs),
    /// Live view of a running stack: rates, errors, latency, pool health.
    Top(crate::cmd::top::TopArgs),
}

/// Flags every component takes.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// Config file (TOML); default: config/switchboard.toml when it exists.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Log level filter, e.g. `info` or `warn,switchboard::access=off`.
    #[arg(long, env = "SWITCHBOARD_LOG_LEVEL")]
    pub(crate) log_level: Option<String>,
    /// Stem of the JSON log file under the log folder (`app` writes
    /// logs/app.log).
    #[arg(long, env = "SWITCHBOARD_LOG_FILE")]
    log_file: Option<String>,
    /// Folder of the JSON log files.
    #[arg(long, env = "SWITCHBOARD_LOG_DIR")]
    pub(crate) log_dir: Option<PathBuf>,
}

/// Flags of a component that serves HTTP.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Address to listen on, e.g. 127.0.0.1:9101 (overrides the file).
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Time to finish in-flight requests after SIGTERM, in milliseconds.
    #[arg(long, env = "SWITCHBOARD_DRAIN_TIMEOUT_MS")]
    pub(crate) drain_timeout_ms: Option<u64>,
}

/// Flags of the gateway.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    /// A service and its instances, e.g. `calc=127.0.0.1:9101,calc-2:9101`;
    /// repeatable. When given, these flags name every routed service.
    #[arg(long = "service", value_name = "NAME=ADDR[,ADDR...]")]
    pub(crate) services: Vec<String>,
}

/// Flags of the load balancer.
#[derive(Debug, Args)]
pub(crate) struct LbArgs {
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    /// Admin address (/metrics, /health, /ready, /pools, /reload).
    #[arg(long, env = "SWITCHBOARD_ADMIN")]
    pub(crate) admin: Option<SocketAddr>,
    /// Gateways of the `POST /rpc` pool (replaces `[lb.rpc] endpoints`).
    #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    pub(crate) rpc: Vec<String>,
    /// Static servers of the `/static/` pool (replaces `[lb.static] endpoints`).
    #[arg(long = "static", value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    pub(crate) static_files: Vec<String>,
}

/// Flags of the static gateway.
#[derive(Debug, Args)]
pub(crate) struct StaticArgs {
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    /// Folder to serve (overrides `[static] root`).
    #[arg(long, env = "SWITCHBOARD_STATIC_ROOT")]
    pub(crate) root: Option<PathBuf>,
}

impl CommonArgs {
    /// The config file in use, if any: the one given, or the default one when it
    /// exists.
    pub(crate) fn config_file(&self) -> Option<PathBuf> {
        let path = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH));
        path.exists().then_some(path)
    }
}

/// Parses the command line, runs the command, and maps any error to one line
/// on stderr and a non-zero exit.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Calc(args) => {
            let mut config = load(&args.common)?;
            apply_serve_flags(&mut config.calc, &args);
            let server = config.calc.clone();
            crate::cmd::service::run(&config, "calc", server, calc::service())
        }
        Command::Call(args) => crate::cmd::call::run(args),
        Command::Up(args) => crate::cmd::up::run(args),
        Command::Top(args) => crate::cmd::top::run(args),
        Command::Stats(args) => {
            let mut config = load(&args.common)?;
            apply_serve_flags(&mut config.stats, &args);
            let server = config.stats.clone();
            crate::cmd::service::run(&config, "stats", server, stats::service())
        }
        Command::Gateway(args) => crate::cmd::gateway::run(args),
        Command::Lb(args) => crate::cmd::lb::run(args),
        Command::Static(args) => crate::cmd::static_files::run(args),
        Command::CheckConfig(args) => {
            let config = load(&args)?;
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
    }
}

pub(crate) fn load(args: &CommonArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(level) = &args.log_level {
        config.log.level = level.clone();
    }
    if let Some(file) = &args.log_file {
        config.log.file = file.clone();
    }
    if let Some(dir) = &args.log_dir {
        config.log.dir = dir.clone();
    }
    Ok(config)
}

pub(crate) fn apply_serve_flags(server: &mut service::ServerConfig, args: &ServeArgs) {
    if let Some(listen) = args.listen {
        server.listen = listen;
    }
    if let Some(ms) = args.drain_timeout_ms {
        server.drain_timeout_ms = ms;
    }
}

/// The multi-threaded runtime every long-running component uses.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
