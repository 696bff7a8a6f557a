//! The topology file: one TOML document describing every component.
//!
//! Layering, lowest first: built-in defaults, the file, environment variables,
//! command-line flags. The last two are applied by the CLI.

use anyhow::Context;
use protocol::Limits;
use serde::{Deserialize, Serialize};
use service::ServerConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use telemetry::logging::LogConfig;

/// Where the file is looked for when `--config` is not given.
pub(crate) const DEFAULT_PATH: &str = "config/switchboard.toml";

/// The whole topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// Logging of every component.
    pub(crate) log: LogConfig,
    /// Input limits of every component.
    pub(crate) limits: Limits,
    /// The calc service.
    pub(crate) calc: ServerConfig,
    /// The stats service.
    pub(crate) stats: ServerConfig,
    /// The RPC gateway and the pools it routes to.
    pub(crate) gateway: gateway::GatewayConfig,
    /// The load balancer and its two pools.
    pub(crate) lb: lb::LbConfig,
    /// The static gateway.
    #[serde(rename = "static")]
    pub(crate) static_files: static_files::StaticConfig,
    /// What `switchboard up` runs.
    pub(crate) up: crate::cmd::up::UpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log: LogConfig::default(),
            limits: Limits::default(),
            calc: server_on(9101),
            stats: server_on(9201),
            gateway: gateway::GatewayConfig::default(),
            lb: lb::LbConfig::default(),
            static_files: static_files::StaticConfig::default(),
            up: crate::cmd::up::UpConfig::default(),
        }
    }
}

fn server_on(port: u16) -> ServerConfig {
    ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        ..ServerConfig::default()
    }
}

impl Config {
    /// Loads `path`, or the default file when `path` is `None` and the default
    /// exists, or the built-in defaults. An explicit path must exist.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        if !required && !path.exists() {
            return Ok(Config::default());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses the TOML text of a config file.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let l = &self.limits;
        anyhow::ensure!(
            l.max_body_bytes > 0,
            "limits.max_body_bytes must be above 0"
        );
        anyhow::ensure!(l.max_depth > 0, "limits.max_depth must be above 0");
        anyhow::ensure!(l.max_batch > 0, "limits.max_batch must be above 0");
        anyhow::ensure!(
            self.calc.max_connections > 0,
            "calc.max_connections must be above 0"
        );
        anyhow::ensure!(
            self.stats.max_connections > 0,
            "stats.max_connections must be above 0"
        );
        self.gateway.validate()?;
        self.lb.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_parses_and_matches_defaults() {
        let text = include_str!("../../../config/switchboard.toml");
        let config = Config::parse(text).expect("shipped config is valid");
        assert_eq!(config.limits, Limits::default());
    }

    #[test]
    fn shipped_gateway_routes_calc_and_stats() {
        let text = include_str!("../../../config/switchboard.toml");
        let config = Config::parse(text).expect("shipped config is valid");
        let services = &config.gateway.services;
        assert_eq!(services["calc"].endpoints, ["127.0.0.1:9101"]);
        assert_eq!(services["stats"].endpoints, ["127.0.0.1:9201"]);
        assert_eq!(config.stats.listen.port(), 9201);
        let err = Config::parse("[gateway]\nlisen = \"x\"\n").expect_err("typo");
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[calc]\nlisen = \"127.0.0.1:1\"\n").expect_err("typo");
        let text = format!("{err:#}");
        assert!(text.contains("lisen"), "{text}");
    }

    #[test]
    fn bad_values_are_explained() {
        let err = Config::parse("[calc]\nlisten = \"nowhere\"\n").expect_err("bad address");
        assert!(format!("{err:#}").contains("listen"), "{err:#}");
        let err = Config::parse("[limits]\nmax_depth = 0\n").expect_err("zero");
        assert!(format!("{err:#}").contains("max_depth"));
    }
}
