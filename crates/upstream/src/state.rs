//! Serializable snapshots of a pool, for status endpoints and tests.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::endpoint::Endpoint;

/// A point-in-time view of a pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolState {
    /// Pool name.
    pub name: String,
    /// Endpoints taking new requests.
    pub healthy: usize,
    /// Every endpoint, ordered by address.
    pub endpoints: Vec<EndpointState>,
}

/// A point-in-time view of one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointState {
    /// Resolved address.
    pub addr: SocketAddr,
    /// Weight for weighted round robin.
    pub weight: u32,
    /// Last active check passed (true before the first one).
    pub healthy: bool,
    /// Ejected by passive health.
    pub ejected: bool,
    /// Tries waiting for response headers.
    pub in_flight: u64,
    /// Peak-EWMA latency estimate, in milliseconds.
    pub ewma_ms: f64,
    /// Timeouts or 5xx answers in a row.
    pub consecutive_failures: u32,
    /// Tries sent since the endpoint joined.
    pub requests: u64,
}

impl PoolState {
    pub(crate) fn of(name: &str, endpoints: &[Arc<Endpoint>], healthy: usize) -> Self {
        Self {
            name: name.to_owned(),
            healthy,
            endpoints: endpoints.iter().map(|ep| EndpointState::of(ep)).collect(),
        }
    }

    /// The state of the endpoint at `addr`, if it is a member.
    pub fn endpoint(&self, addr: SocketAddr) -> Option<&EndpointState> {
        self.endpoints.iter().find(|ep| ep.addr == addr)
    }
}

impl EndpointState {
    fn of(ep: &Endpoint) -> Self {
        Self {
            addr: ep.addr,
            weight: ep.weight(),
            healthy: ep.is_healthy(),
            ejected: ep.is_ejected(),
            in_flight: ep.in_flight(),
            ewma_ms: ep.ewma.estimate(ep.now_us()) * 1000.0,
            consecutive_failures: ep.consecutive_failures(),
            requests: ep.requests(),
        }
    }
}
