//! The gateway's parse of a `/rpc` body: what it reads to route a call.

// `criterion_group!` generates a public function without a doc comment.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use protocol::Limits;
use std::hint::black_box;
use switchboard_gateway::parse_rpc_body;

const SEED: &str = r#"{"method":"calc.summ","data":{"args":[1,5,-8,156,-24]},"requestId":"5545abec-aab1-4efa-80ef-b3491cb4b6c5"}"#;

fn call_with(n: usize) -> String {
    let args: Vec<String> = (0..n).map(|i| ((i * 37) % 1999).to_string()).collect();
    format!(
        r#"{{"method":"calc.summ","data":{{"args":[{}]}},"requestId":"5545abec-aab1-4efa-80ef-b3491cb4b6c5"}}"#,
        args.join(",")
    )
}

fn routing(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("gateway_parse");
    for n in [5usize, 1_000, 100_000] {
        let body = if n == 5 {
            SEED.to_owned()
        } else {
            call_with(n)
        };
        group.bench_with_input(BenchmarkId::new("single", n), &body, |b, body| {
            b.iter(|| parse_rpc_body(black_box(body.as_bytes()), &limits).map(|_| ()))
        });
    }
    let batch = format!("[{}]", [SEED; 10].join(","));
    group.bench_function("batch/10", |b| {
        b.iter(|| parse_rpc_body(black_box(batch.as_bytes()), &limits).map(|_| ()))
    });
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
