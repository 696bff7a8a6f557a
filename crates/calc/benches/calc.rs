//! Calc arithmetic alone, and a whole call through the service kit (envelope,
//! arguments, operation, metrics recording, answer encoding), without HTTP.

// `criterion_group!` generates a public function without a doc comment.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use protocol::{Limits, Number, RequestId};
use std::hint::black_box;

const SEED: &[u8] = br#"{"method":"calc.summ","data":{"args":[1,5,-8,156,-24]},"requestId":"5545abec-aab1-4efa-80ef-b3491cb4b6c5"}"#;

fn arithmetic(c: &mut Criterion) {
    let ints: Vec<Number> = (1..=1_000).map(Number::Int).collect();
    let floats: Vec<Number> = (1..=1_000).map(|i| Number::Float(i as f64 / 7.0)).collect();
    c.bench_function("arith/summ_int_1000", |b| {
        b.iter(|| switchboard_calc::arith::summ(black_box(&ints)))
    });
    c.bench_function("arith/mult_float_1000", |b| {
        b.iter(|| switchboard_calc::arith::mult(black_box(&floats)))
    });
    c.bench_function("arith/div_int_1000", |b| {
        b.iter(|| switchboard_calc::arith::div(black_box(&ints)))
    });
}

fn whole_call(c: &mut Criterion) {
    let mut registry = prometheus_client::registry::Registry::default();
    let dispatcher = switchboard_calc::service().dispatcher(&mut registry, Limits::default());
    let id = RequestId::generate();
    c.bench_function("dispatch/seed", |b| {
        b.iter(|| dispatcher.handle(black_box(SEED), id.clone()).status)
    });
}

criterion_group!(benches, arithmetic, whole_call);
criterion_main!(benches);
