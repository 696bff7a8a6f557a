//! The `[gateway]` section: where the gateway listens and which pools it routes to.
//!
//! ```toml
//! [gateway]
//! listen = "127.0.0.1:9000"
//!
//! [gateway.services.calc]
//! endpoints = ["127.0.0.1:9101", "calc.internal:9101"]
//! idempotent = true
//! balance = "p2c"
//! try_timeout_ms = 1000
//! ```
//!
//! Each entry of `services` is an [`upstream::PoolConfig`] whose name is the key,
//! which is also the method prefix routed to it. Server settings (`listen`,
//! timeouts, `max_connections`, `drain_timeout_ms`) sit beside `services`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use service::ServerConfig;
use upstream::PoolConfig;

/// Everything the gateway reads from its config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// The HTTP server (listen address, timeouts, drain).
    #[serde(flatten)]
    pub server: ServerConfig,
    /// The pools, by service name (the method prefix); each pool is named after
    /// its key.
    #[serde(deserialize_with = "named_pools")]
    pub services: BTreeMap<String, PoolConfig>,
    /// Keys nobody claimed; refused by [`GatewayConfig::validate`]. Needed because
    /// serde cannot deny unknown fields next to a flattened struct.
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, IgnoredAny>,
}

/// A gateway configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key the section does not know, most likely a typo.
    #[error("unknown key {0:?} in [gateway]")]
    UnknownKey(String),
    /// A service name that cannot be a method prefix.
    #[error("service name {0:?} must be non-empty and contain no '.'")]
    BadServiceName(String),
    /// A pool setting is wrong.
    #[error("[gateway.services.{service}]: {source}")]
    Pool {
        /// The service whose pool is wrong.
        service: String,
        /// What is wrong with it.
        #[source]
        source: upstream::ConfigError,
    },
    /// A `--service` flag is not `name=addr[,addr...]`.
    #[error("--service {0:?}: expected NAME=ADDR[,ADDR...]")]
    BadServiceFlag(String),
    /// `max_connections` is zero.
    #[error("gateway.max_connections must be above 0")]
    ZeroConnections,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let services = [("calc", 9101), ("stats", 9201)]
            .into_iter()
            .map(|(name, port)| (name.to_owned(), local_pool(name, port)))
            .collect();
        GatewayConfig {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
                ..ServerConfig::default()
            },
            services,
            unknown: BTreeMap::new(),
        }
    }
}

/// A pool of one loopback instance, idempotent: calc and stats are pure.
fn local_pool(name: &str, port: u16) -> PoolConfig {
    PoolConfig {
        name: name.to_owned(),
        endpoints: vec![format!("127.0.0.1:{port}")],
        idempotent: true,
        ..PoolConfig::default()
    }
}

impl GatewayConfig {
    /// Checks every key, service name and pool, without starting anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(key) = self.unknown.keys().next() {
            return Err(ConfigError::UnknownKey(key.clone()));
        }
        if self.server.max_connections == 0 {
            return Err(ConfigError::ZeroConnections);
        }
        for (name, pool) in self.pools() {
            if name.is_empty() || name.contains('.') {
                return Err(ConfigError::BadServiceName(name.to_owned()));
            }
            pool.check().map_err(|source| ConfigError::Pool {
                service: name.to_owned(),
                source,
            })?;
        }
        Ok(())
    }

    /// The pool configurations, each named after its service.
    pub fn pools(&self) -> impl Iterator<Item = (&str, PoolConfig)> + '_ {
        self.services.iter().map(|(name, pool)| {
            let pool = PoolConfig {
                name: name.clone(),
                ..pool.clone()
            };
            (name.as_str(), pool)
        })
    }

    /// Applies `--service name=addr,addr` flags: when any is given, they name the
    /// services and their endpoints; settings of a service also in the file stay.
    pub fn apply_service_flags(&mut self, flags: &[String]) -> Result<(), ConfigError> {
        if flags.is_empty() {
            return Ok(());
        }
        let mut services = BTreeMap::new();
        for flag in flags {
            let (name, endpoints) = parse_service_flag(flag)?;
            let mut pool = self.services.remove(name).unwrap_or_else(|| PoolConfig {
                name: name.to_owned(),
                idempotent: true,
                ..PoolConfig::default()
            });
            pool.endpoints = endpoints;
            services.insert(name.to_owned(), pool);
        }
        self.services = services;
        Ok(())
    }
}

/// Reads the pool table, naming each pool after its key.
fn named_pools<'de, D>(d: D) -> Result<BTreeMap<String, PoolConfig>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let mut pools = BTreeMap::<String, PoolConfig>::deserialize(d)?;
    for (name, pool) in &mut pools {
        pool.name.clone_from(name);
    }
    Ok(pools)
}

/// Splits `name=a,b` into the name and its endpoints.
fn parse_service_flag(flag: &str) -> Result<(&str, Vec<String>), ConfigError> {
    let bad = || ConfigError::BadServiceFlag(flag.to_owned());
    let (name, list) = flag.split_once('=').ok_or_else(bad)?;
    let endpoints: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    if name.is_empty() || endpoints.is_empty() {
        return Err(bad());
    }
    Ok((name.trim(), endpoints))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> GatewayConfig {
        serde_json::from_str(text).expect("valid json")
    }

    #[test]
    fn defaults_route_calc_and_stats_on_loopback() {
        let cfg = GatewayConfig::default();
        assert_eq!(cfg.server.listen.port(), 9000);
        assert_eq!(cfg.services["calc"].endpoints, ["127.0.0.1:9101"]);
        assert_eq!(cfg.services["stats"].endpoints, ["127.0.0.1:9201"]);
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn server_keys_sit_beside_services() {
        let cfg = parse(
            r#"{"listen":"127.0.0.1:7","drain_timeout_ms":5,
                "services":{"calc":{"endpoints":["127.0.0.1:1"],"try_timeout_ms":250}}}"#,
        );
        assert_eq!(cfg.server.listen.port(), 7);
        assert_eq!(cfg.server.drain_timeout_ms, 5);
        assert_eq!(cfg.services["calc"].try_timeout, Duration::from_millis(250));
        assert_eq!(cfg.services["calc"].name, "calc");
        assert!(cfg.validate().is_ok());
        let (name, pool) = cfg.pools().next().expect("one pool");
        assert_eq!((name, pool.name.as_str()), ("calc", "calc"));
    }

    #[test]
    fn unknown_keys_and_bad_pools_are_named() {
        let err = parse(r#"{"lisen":"x"}"#).validate().expect_err("typo");
        assert!(err.to_string().contains("lisen"), "{err}");
        let err = parse(r#"{"services":{"calc":{"endpoints":["nowhere"]}}}"#)
            .validate()
            .expect_err("bad endpoint");
        assert!(err.to_string().contains("calc"), "{err}");
        let err = parse(r#"{"services":{"a.b":{}}}"#)
            .validate()
            .expect_err("dot");
        assert!(matches!(err, ConfigError::BadServiceName(_)));
    }

    #[test]
    fn service_flags_replace_the_list_and_keep_settings() {
        let mut cfg = GatewayConfig::default();
        cfg.services.get_mut("calc").expect("calc").max_attempts = 7;
        let flags = [
            "calc=127.0.0.1:1, host:2".to_owned(),
            "geo=127.0.0.1:3".to_owned(),
        ];
        cfg.apply_service_flags(&flags).expect("valid flags");
        assert_eq!(cfg.services.len(), 2);
        assert_eq!(cfg.services["calc"].endpoints, ["127.0.0.1:1", "host:2"]);
        assert_eq!(cfg.services["calc"].max_attempts, 7);
        assert!(cfg.services["geo"].idempotent);
        assert!(cfg.apply_service_flags(&["calc".to_owned()]).is_err());
        assert!(cfg.apply_service_flags(&["calc=".to_owned()]).is_err());
    }
}
