//! Settings of the static gateway: the `[static]` section of the topology file.

use serde::{Deserialize, Serialize};
use service::ServerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where to listen and which folder to serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder served under `/static/`; nothing outside it is ever read.
    pub root: PathBuf,
    /// Longest wait for a client's request headers, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Most client connections open at once.
    pub max_connections: usize,
    /// Longest time to finish in-flight requests after SIGTERM, in milliseconds.
    pub drain_timeout_ms: u64,
}

impl Default for StaticConfig {
    fn default() -> Self {
        StaticConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9300)),
            root: PathBuf::from("static"),
            header_read_timeout_ms: 10_000,
            max_connections: 10_000,
            drain_timeout_ms: 10_000,
        }
    }
}

impl StaticConfig {
    /// The server-loop settings.
    pub fn server(&self) -> ServerConfig {
        ServerConfig {
            listen: self.listen,
            header_read_timeout_ms: self.header_read_timeout_ms,
            max_connections: self.max_connections,
            drain_timeout_ms: self.drain_timeout_ms,
            ..ServerConfig::default()
        }
    }
}
