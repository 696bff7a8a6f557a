//! Balancing over real servers: spread, weights, and avoiding slow instances.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Mode, TestServer, config, pool, send};
use switchboard_upstream::{Balance, Pool};

async fn three(mode: [Mode; 3]) -> Vec<TestServer> {
    let mut servers = Vec::new();
    for (i, m) in mode.into_iter().enumerate() {
        servers.push(TestServer::start(&format!("s{i}"), m).await);
    }
    servers
}

async fn counts(pool: &Pool, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let answer = send(pool).await.expect("request succeeds");
        *counts.entry(answer.body).or_default() += 1;
    }
    counts
}

/// Runs `total` requests from `workers` concurrent tasks; counts answers per server.
async fn concurrent_counts(pool: &Pool, workers: usize, total: usize) -> HashMap<String, usize> {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let pool = pool.clone();
        tasks.push(tokio::spawn(
            async move { counts(&pool, total / workers).await },
        ));
    }
    let mut all = HashMap::new();
    for task in tasks {
        for (k, v) in task.await.expect("worker") {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

#[tokio::test]
async fn p2c_spreads_requests_over_three_endpoints() {
    let servers = three([Mode::Ok; 3]).await;
    let pool = pool(config("spread", &servers.iter().collect::<Vec<_>>()));

    let counts = counts(&pool, 300).await;

    for s in &servers {
        let n = counts.get(&s.id).copied().unwrap_or(0);
        assert!(n > 50, "{} got {n} of 300: {counts:?}", s.id);
    }
}

#[tokio::test]
async fn round_robin_takes_strict_turns() {
    let servers = three([Mode::Ok; 3]).await;
    let mut cfg = config("rr", &servers.iter().collect::<Vec<_>>());
    cfg.balance = Balance::RoundRobin;
    let pool = pool(cfg);

    let counts = counts(&pool, 300).await;

    assert!(counts.values().all(|&n| n == 100), "{counts:?}");
}

#[tokio::test]
async fn weighted_round_robin_follows_weights() {
    let servers = three([Mode::Ok; 3]).await;
    let mut cfg = config("wrr", &[]);
    cfg.endpoints = servers
        .iter()
        .zip(1..)
        .map(|(s, w)| format!("{}@{w}", s.addr))
        .collect();
    cfg.balance = Balance::WeightedRoundRobin;
    let pool = pool(cfg);

    let counts = counts(&pool, 600).await;

    assert_eq!(counts["s0"], 100, "{counts:?}");
    assert_eq!(counts["s1"], 200, "{counts:?}");
    assert_eq!(counts["s2"], 300, "{counts:?}");
}

#[tokio::test]
async fn p2c_least_request_avoids_a_slow_endpoint_under_concurrency() {
    let slow = Mode::Slow(Duration::from_millis(40));
    let servers = three([Mode::Ok, Mode::Ok, slow]).await;
    let pool = pool(config("p2c-slow", &servers.iter().collect::<Vec<_>>()));

    let counts = concurrent_counts(&pool, 6, 600).await;

    let slow = counts.get("s2").copied().unwrap_or(0);
    assert!(slow < 60, "slow endpoint got {slow} of 600: {counts:?}");
}

#[tokio::test]
async fn peak_ewma_avoids_a_slow_endpoint_even_sequentially() {
    let slow = Mode::Slow(Duration::from_millis(30));
    let servers = three([Mode::Ok, Mode::Ok, slow]).await;
    let mut cfg = config("ewma-slow", &servers.iter().collect::<Vec<_>>());
    cfg.balance = Balance::PeakEwma;
    let pool = pool(cfg);

    let counts = counts(&pool, 200).await;

    let slow = counts.get("s2").copied().unwrap_or(0);
    assert!(slow < 10, "slow endpoint got {slow} of 200: {counts:?}");
    let state = pool.state();
    let slow_state = state.endpoint(servers[2].addr).expect("member");
    assert!(slow_state.ewma_ms > 10.0, "{slow_state:?}");
}
