//! Settings of a server and of a service.

use protocol::Limits;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Settings of the HTTP server loop, shared by every component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Longest wait for a client's request headers, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Longest time to receive a whole request body, in milliseconds.
    pub body_read_timeout_ms: u64,
    /// Most client connections open at once; further ones wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
    /// Longest time to finish in-flight requests after SIGTERM, in
    /// milliseconds.
    pub drain_timeout_ms: u64,
    /// Most requests handled at once; past it, `overloaded` (503) with
    /// `Retry-After` at once instead of a queue that grows. 0: no limit.
    pub max_in_flight: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9001)),
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            max_connections: 10_000,
            drain_timeout_ms: 10_000,
            max_in_flight: 4_096,
        }
    }
}

impl ServerConfig {
    /// The header read timeout as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The body read timeout as a duration.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// The drain timeout as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

/// Settings of one service process.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceConfig {
    /// The HTTP server.
    pub server: ServerConfig,
    /// Input limits.
    pub limits: Limits,
}
