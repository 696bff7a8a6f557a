//! Settings of the load balancer: the `[lb]` section of the topology file.
//!
//! Durations are whole milliseconds, as everywhere in switchboard. The two pools
//! are ordinary [`PoolConfig`]s (`[lb.rpc]`, `[lb.static]`); their names are fixed
//! to `rpc` and `static`, which are also their metric labels.

use crate::error::LbError;
use serde::{Deserialize, Serialize};
use service::ServerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use upstream::PoolConfig;

/// Everything that shapes one load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LbConfig {
    /// Public address.
    pub listen: SocketAddr,
    /// Admin address (`/metrics`, `/health`, `/ready`, `/pools`, `/reload`);
    /// keep it on loopback or a private network.
    pub admin: SocketAddr,
    /// Longest wait for a client's request headers.
    pub header_read_timeout_ms: u64,
    /// Longest time to receive a whole request body.
    pub body_read_timeout_ms: u64,
    /// A client connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// Most client connections open at once; more wait in the accept queue.
    pub max_connections: usize,
    /// Longest time to finish in-flight requests after SIGTERM.
    pub drain_timeout_ms: u64,
    /// Largest request body; larger ones get 413 and are never forwarded.
    pub max_body_bytes: usize,
    /// Requests handled at once; past it, 503 `overloaded` at once.
    pub max_in_flight: usize,
    /// Seconds announced in `Retry-After` on 503 `overloaded` answers.
    pub retry_after_s: u32,
    /// What to do with a client's `X-Forwarded-For`.
    pub forwarded_for: ForwardedFor,
    /// Whether HTTP/1.1 request bodies may use chunked transfer coding. Off by
    /// default: any `Transfer-Encoding` then gets 400, which closes request
    /// smuggling through `Content-Length`/`Transfer-Encoding` disagreement.
    pub chunked_requests: bool,
    /// Per-client-address token bucket; off by default.
    pub rate_limit: RateLimitConfig,
    /// TLS termination on the public port; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// The pool of RPC gateways (`POST /rpc`).
    pub rpc: PoolConfig,
    /// The pool of static file servers (`GET /static/...`).
    #[serde(rename = "static")]
    pub static_files: PoolConfig,
}

/// Handling of `X-Forwarded-For` from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardedFor {
    /// Drop what the client sent and set the peer address: right for a public
    /// entry, where the client's header cannot be trusted.
    #[default]
    Replace,
    /// Append the peer address to what the client sent: right behind another
    /// trusted proxy that sets the header itself.
    Append,
}

/// A token bucket per client address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether the limit applies at all.
    pub enabled: bool,
    /// Tokens added per second, i.e. the sustained request rate.
    pub per_second: f64,
    /// Bucket size, i.e. the largest burst.
    pub burst: u32,
}

/// Certificate chain and private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for LbConfig {
    fn default() -> Self {
        LbConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9900)),
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            drain_timeout_ms: 10_000,
            max_body_bytes: 1024 * 1024,
            max_in_flight: 4_096,
            retry_after_s: 1,
            forwarded_for: ForwardedFor::default(),
            chunked_requests: false,
            rate_limit: RateLimitConfig::default(),
            tls: None,
            rpc: pool("rpc", 9000),
            static_files: pool("static", 9300),
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: false,
            per_second: 100.0,
            burst: 200,
        }
    }
}

fn pool(name: &str, port: u16) -> PoolConfig {
    PoolConfig {
        name: name.to_owned(),
        endpoints: vec![format!("127.0.0.1:{port}")],
        ..PoolConfig::default()
    }
}

impl LbConfig {
    /// Checks every setting, the pools included, without starting anything.
    pub fn validate(&self) -> Result<(), LbError> {
        let positive = [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_in_flight", self.max_in_flight as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(LbError::Config(format!("lb.{name} must be above 0")));
        }
        if self.listen == self.admin {
            return Err(LbError::Config("lb.listen and lb.admin must differ".into()));
        }
        self.rate_limit.validate()?;
        let (rpc, statics) = self.pools();
        rpc.check().map_err(|source| LbError::Pool {
            pool: "rpc",
            source,
        })?;
        statics.check().map_err(|source| LbError::Pool {
            pool: "static",
            source,
        })
    }

    /// The two pool configurations with their fixed names.
    pub fn pools(&self) -> (PoolConfig, PoolConfig) {
        let mut rpc = self.rpc.clone();
        rpc.name = "rpc".to_owned();
        let mut statics = self.static_files.clone();
        statics.name = "static".to_owned();
        (rpc, statics)
    }

    /// The server-loop settings of the public listener.
    pub fn server(&self) -> ServerConfig {
        ServerConfig {
            listen: self.listen,
            header_read_timeout_ms: self.header_read_timeout_ms,
            body_read_timeout_ms: self.body_read_timeout_ms,
            max_connections: self.max_connections,
            drain_timeout_ms: self.drain_timeout_ms,
            ..ServerConfig::default()
        }
    }

    /// The idle keep-alive timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

impl RateLimitConfig {
    fn validate(&self) -> Result<(), LbError> {
        if !self.enabled {
            return Ok(());
        }
        let rate_ok = self.per_second.is_finite() && self.per_second > 0.0;
        if !rate_ok || self.burst == 0 {
            return Err(LbError::Config(
                "lb.rate_limit needs per_second > 0 and burst > 0".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let cfg = LbConfig::default();
        cfg.validate().expect("defaults are valid");
        assert!(cfg.admin.ip().is_loopback());
        assert!(!cfg.rate_limit.enabled);
        assert_eq!(cfg.forwarded_for, ForwardedFor::Replace);
    }

    #[test]
    fn pool_names_are_fixed() {
        let mut cfg = LbConfig::default();
        cfg.rpc.name = "whatever".into();
        assert_eq!(cfg.pools().0.name, "rpc");
        assert_eq!(cfg.pools().1.name, "static");
    }

    #[test]
    fn bad_settings_are_named() {
        let cfg = LbConfig {
            max_in_flight: 0,
            ..LbConfig::default()
        };
        let err = cfg.validate().expect_err("zero in flight");
        assert!(err.to_string().contains("max_in_flight"), "{err}");
        let mut cfg = LbConfig::default();
        cfg.rpc.endpoints = vec!["nowhere".into()];
        assert!(matches!(
            cfg.validate(),
            Err(LbError::Pool { pool: "rpc", .. })
        ));
    }
}
