//! The load balancer: the public HTTP entry of switchboard.
//!
//! It routes `POST /rpc` to the pool of RPC gateways and `GET`/`HEAD /static/...`
//! to the pool of static file servers, both built on the [`upstream`] crate (the
//! same balancing, health checks, timeouts, retries and retry budget as the
//! gateway). It is an HTTP-level proxy: it never parses bodies. It does read the
//! whole request body (up to `max_body_bytes`) before the first try, so that a
//! request can be retried on another upstream; responses stream back.
//!
//! Around the proxy ([`proxy`]) sit the parts a public entry needs: framing
//! checks against request smuggling ([`headers`]), overload shedding and
//! per-client rate limits ([`admission`]), its own accept loop with TLS, an idle
//! keep-alive timeout, a connection cap and a graceful drain ([`server`]), a
//! separate admin listener ([`admin`]), hot reload of pools and settings
//! ([`Lb::reload`]), an access log line per request ([`access`]) and metrics
//! ([`metrics`]).

pub mod access;
pub mod admin;
pub mod admission;
pub mod config;
mod error;
pub mod headers;
pub mod metrics;
pub mod proxy;
pub mod route;
pub mod server;
pub mod tls;

pub use config::{ForwardedFor, LbConfig, RateLimitConfig, TlsConfig};
pub use error::LbError;
pub use proxy::Lb;
pub use server::{Reloader, run};
