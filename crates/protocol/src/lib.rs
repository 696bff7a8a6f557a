//! The wire protocol every switchboard component speaks.
//!
//! A request arrives as one JSON body on `POST /rpc`, in one of two forms:
//!
//! - the native envelope, `{"method": "calc.summ", "data": {"args": [1, 2]},
//!   "requestId": "..."}`, answered by `{"requestId": "...", "result": 3}`;
//! - JSON-RPC 2.0, recognised by `"jsonrpc": "2.0"`, answered as the spec says.
//!
//! Either form may be batched in a JSON array. This crate reads envelopes
//! ([`envelope`]), checks the limits that protect a process from hostile input
//! ([`limits`]), names the stable error codes ([`error`]), reads numeric arguments
//! ([`args`]) and writes answers ([`answer`]). It does no I/O: the service kit, the
//! gateway and the load balancer build on it.

pub mod answer;
pub mod args;
pub mod envelope;
pub mod error;
pub mod limits;
pub mod request_id;
pub mod shallow;

pub use answer::{encode_batch, encode_body_error, encode_single, write_answer};
pub use args::{Number, parse_numbers};
pub use envelope::{Body, Envelope, Flavor, parse_body};
pub use error::{ErrorCode, RpcError};
pub use limits::Limits;
pub use request_id::RequestId;
pub use shallow::parse_routing;

/// Media type of every request and answer body.
pub const CONTENT_TYPE: &str = "application/json";

/// Header that carries the request id across every hop.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
