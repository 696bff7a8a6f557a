//! The service kit: everything a switchboard microservice shares.
//!
//! A service names its operations and gives a function for each; the kit
//! serves them on `POST /rpc` in both dialects of [`protocol`], and adds
//! `GET /health`, `GET /ready` and `GET /metrics`, request ids, input limits,
//! per-operation metrics, one log line per call and a graceful drain on
//! SIGTERM. The HTTP server loop ([`http`]) and the shutdown signal
//! ([`shutdown`]) are also used by the gateway and the load balancer.
//!
//! ```no_run
//! use switchboard_service::{Service, ServiceConfig, reply};
//!
//! # async fn run() -> std::io::Result<()> {
//! let echo = Service::builder("echo")
//!     .op("count", |call| reply(call.numbers()?.len()))
//!     .build();
//! echo.run(ServiceConfig::default(), telemetry::registry("echo")).await
//! # }
//! ```

pub mod config;
pub mod http;
pub mod kit;
mod metrics;
pub mod shutdown;

pub use config::{ServerConfig, ServiceConfig};
pub use kit::{Call, Handler, Service, ServiceBuilder, reply};
pub use shutdown::Shutdown;
