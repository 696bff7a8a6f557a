//! A balancing pick over a pool of 3 and of 30 endpoints, per algorithm.

// `criterion_group!` generates a public function without a doc comment.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use prometheus_client::registry::Registry;
use std::hint::black_box;
use switchboard_upstream::{Balance, Pool, PoolConfig, PoolMetrics};

fn pool(n: u16, balance: Balance) -> Pool {
    let cfg = PoolConfig {
        name: "bench".to_owned(),
        endpoints: (0..n)
            .map(|i| format!("127.0.0.1:{}", 20_000 + i))
            .collect(),
        balance,
        ..PoolConfig::default()
    };
    let metrics = PoolMetrics::register(&mut Registry::default());
    Pool::new(cfg, &metrics).expect("valid pool")
}

fn pick(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let mut group = c.benchmark_group("pick");
    for n in [3u16, 30] {
        for balance in [
            Balance::P2cLeastRequest,
            Balance::PeakEwma,
            Balance::RoundRobin,
        ] {
            let pool = pool(n, balance);
            let id = BenchmarkId::new(format!("{balance:?}"), n);
            group.bench_function(id, |b| b.iter(|| black_box(&pool).pick_addr()));
        }
    }
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
