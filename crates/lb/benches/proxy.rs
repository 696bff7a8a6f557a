//! The balancer's own work per request, without I/O: routing, the header
//! rewrite of a forwarded request, and metrics recording.

// `criterion_group!` generates a public function without a doc comment.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, StatusCode};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use switchboard_lb::ForwardedFor;
use switchboard_lb::headers;
use switchboard_lb::metrics::LbMetrics;
use switchboard_lb::route::{self, Route};

fn routing(c: &mut Criterion) {
    c.bench_function("route/decide_rpc", |b| {
        b.iter(|| route::decide(black_box(&Method::POST), black_box("/rpc")))
    });
}

fn header_rewrite(c: &mut Criterion) {
    let req = Request::post("/rpc")
        .header("host", "127.0.0.1:8080")
        .header("user-agent", "wrk")
        .header("content-type", "application/json")
        .header("content-length", "103")
        .header("connection", "keep-alive")
        .body(())
        .expect("valid request");
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    c.bench_function("headers/forward", |b| {
        b.iter(|| {
            let mut h = req.headers().clone();
            let id = service::http::request_id_of(&req);
            headers::strip_hop_by_hop(&mut h);
            headers::set_forwarded(&mut h, client, ForwardedFor::Replace, "http");
            headers::set_request_id(&mut h, &id);
            h
        })
    });
}

fn metrics(c: &mut Criterion) {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = LbMetrics::register(&mut registry);
    c.bench_function("metrics/observe", |b| {
        b.iter(|| {
            metrics.observe(
                black_box(Route::Rpc),
                StatusCode::OK,
                Duration::from_micros(420),
            )
        })
    });
}

criterion_group!(benches, routing, header_rewrite, metrics);
criterion_main!(benches);
