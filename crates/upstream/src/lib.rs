//! Upstream pools for switchboard: how a gateway reaches service instances, and how
//! the load balancer reaches gateways.
//!
//! A [`Pool`] owns a set of endpoints (static addresses and resolved host names), a
//! keep-alive HTTP/1.1 connection pool to each, a balancer, active and passive health
//! checks, per-try and overall timeouts, and retries held back by a retry budget. The
//! request path takes no lock: it reads `arc-swap` snapshots and bumps atomics, and a
//! pick costs the same for three endpoints as for three hundred.
//!
//! Callers hand [`Pool::send`] a fully buffered request (so it can be retried) and map
//! an [`UpstreamError`] to a response with [`UpstreamError::status`]. Metrics go to
//! the [`PoolMetrics`] families registered once by the component.

mod balance;
mod budget;
mod client;
mod config;
mod discovery;
mod endpoint;
mod error;
mod health;
mod members;
mod metrics;
mod pool;
mod state;

pub use client::DEADLINE_HEADER;
pub use config::{Balance, HealthConfig, MAX_WEIGHT, PoolConfig};
pub use error::{ConfigError, UpstreamError};
pub use metrics::PoolMetrics;
pub use pool::{AnsweredBy, Pool};
pub use state::{EndpointState, PoolState};
