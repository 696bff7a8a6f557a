//! The RPC gateway: one port in front of many service pools.
//!
//! A call's method names its service (`calc.summ` goes to the `calc` pool). The
//! gateway reads only what routing and error answers need (method, `requestId`,
//! `jsonrpc` and `id`), forwards the body bytes as they came to one instance of
//! that service through an [`upstream::Pool`], and relays the answer. Batches are
//! split by service, the parts sent concurrently and the answers put back in
//! order. Calls it cannot route are answered by the gateway itself, in the
//! dialect of the call.
//!
//! Neighbours: [`protocol`] reads envelopes and writes error answers, the
//! [`service`] kit provides the HTTP server loop and shutdown signal, and
//! [`upstream`] does balancing, health, retries and timeouts. The pool list is
//! reloaded from the config file on SIGHUP or when the file changes.

mod batch;
pub mod config;
mod forward;
mod metrics;
mod reload;
mod routes;
mod server;

pub use config::{ConfigError, GatewayConfig};
pub use reload::Reloader;
pub use server::{Gateway, GatewayError, Parsed, parse as parse_rpc_body};
