//! The calc service: `calc.summ`, `calc.sub`, `calc.mult` and `calc.div`.
//!
//! The arithmetic lives in [`arith`]; this file only names the operations for
//! the service kit, which does the rest (HTTP, decoding, limits, metrics).

pub mod arith;

use protocol::Number;
use service::kit::OpResult;
use service::{Call, Service, reply};

/// The calc service definition.
pub fn service() -> Service {
    Service::builder("calc")
        .op("summ", |call| op(call, arith::summ))
        .op("sub", |call| op(call, arith::sub))
        .op("mult", |call| op(call, arith::mult))
        .op("div", |call| op(call, arith::div))
        .build()
}

fn op(call: &Call<'_>, f: fn(&[Number]) -> Result<Number, protocol::RpcError>) -> OpResult {
    reply(f(&call.numbers()?)?)
}
