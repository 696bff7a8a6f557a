//! Envelope parsing: the full parse every service runs, and the routing parse
//! the gateway runs, which steps over the arguments.

// `criterion_group!` generates a public function without a doc comment.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use switchboard_protocol::{Limits, parse_body, parse_routing};

const SEED: &str = r#"{"method":"calc.summ","data":{"args":[1,5,-8,156,-24]},"requestId":"5545abec-aab1-4efa-80ef-b3491cb4b6c5"}"#;

fn body_with(n: usize) -> String {
    let args: Vec<String> = (0..n).map(|i| ((i * 37) % 1999).to_string()).collect();
    format!(
        r#"{{"method":"calc.summ","data":{{"args":[{}]}},"requestId":"5545abec-aab1-4efa-80ef-b3491cb4b6c5"}}"#,
        args.join(",")
    )
}

fn envelope(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("envelope");
    for n in [5usize, 1_000, 100_000] {
        let body = if n == 5 {
            SEED.to_owned()
        } else {
            body_with(n)
        };
        group.bench_with_input(BenchmarkId::new("full", n), &body, |b, body| {
            b.iter(|| parse_body(black_box(body.as_bytes()), &limits).map(|_| ()))
        });
        group.bench_with_input(BenchmarkId::new("routing", n), &body, |b, body| {
            b.iter(|| parse_routing(black_box(body.as_bytes()), &limits).map(|_| ()))
        });
    }
    group.finish();
    c.bench_function("numbers/1000", |b| {
        let args: Vec<String> = (0..1_000).map(|i| i.to_string()).collect();
        let data = format!(r#"{{"args":[{}]}}"#, args.join(","));
        let raw: &serde_json::value::RawValue = serde_json::from_str(&data).expect("valid");
        b.iter(|| {
            switchboard_protocol::parse_numbers(Some(black_box(raw)), &limits).map(|v| v.len())
        })
    });
}

criterion_group!(benches, envelope);
criterion_main!(benches);
