//! The stats service: `stats.mean`, `stats.median`, `stats.min` and `stats.max`.
//!
//! A second service on the kit, next to calc, so that the gateway's routing by
//! method prefix is proven on two pools. The numbers live in [`summary`]; this
//! file only names the operations.

pub mod summary;

use protocol::{Number, RpcError};
use service::kit::OpResult;
use service::{Call, Service, reply};

/// The stats service definition.
pub fn service() -> Service {
    Service::builder("stats")
        .op("mean", |call| op(call, summary::mean))
        .op("median", |call| op(call, summary::median))
        .op("min", |call| op(call, summary::min))
        .op("max", |call| op(call, summary::max))
        .build()
}

fn op(call: &Call<'_>, f: fn(&[Number]) -> Result<Number, RpcError>) -> OpResult {
    reply(f(&call.numbers()?)?)
}
