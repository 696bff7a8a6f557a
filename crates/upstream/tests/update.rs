//! Hot updates and discovery: endpoints join and leave while requests flow.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Mode, TestServer, config, pool, send, wait_until};
use switchboard_upstream::{Pool, PoolConfig};
use tokio::task::JoinHandle;

/// Sends requests from a few workers until stopped; returns the failures.
fn load(pool: &Pool, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<usize>> {
    (0..3)
        .map(|_| {
            let (pool, stop) = (pool.clone(), stop.clone());
            tokio::spawn(async move {
                let mut failed = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = send(&pool).await {
                        eprintln!("request failed: {e:?}");
                        failed += 1;
                    }
                }
                failed
            })
        })
        .collect()
}

fn with_endpoints(base: &PoolConfig, servers: &[&TestServer]) -> PoolConfig {
    let endpoints = servers.iter().map(|s| s.addr.to_string()).collect();
    PoolConfig {
        endpoints,
        ..base.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_adds_and_removes_endpoints_while_requests_flow() {
    let a = TestServer::start("a", Mode::Ok).await;
    let b = TestServer::start("b", Mode::Slow(Duration::from_millis(5))).await;
    let c = TestServer::start("c", Mode::Ok).await;
    let base = config("update", &[&a, &b]);
    let pool = pool(base.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&pool, &stop);
    tokio::time::sleep(Duration::from_millis(100)).await;

    pool.update(with_endpoints(&base, &[&b, &c]));
    wait_until(Duration::from_secs(2), "c to take requests", || {
        c.hits() > 10
    })
    .await;
    pool.update(with_endpoints(&base, &[&c]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (a_hits, b_hits) = (a.hits(), b.hits());
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);

    let mut failed = 0;
    for w in workers {
        failed += w.await.expect("worker");
    }
    assert_eq!(failed, 0);
    assert_eq!(a.hits(), a_hits, "a left and takes no new requests");
    assert_eq!(b.hits(), b_hits, "b left and takes no new requests");
    let state = pool.state();
    assert_eq!(state.endpoints.len(), 1);
    assert_eq!(state.endpoints[0].addr, c.addr);
}

#[tokio::test]
async fn endpoints_that_stay_keep_their_state() {
    let a = TestServer::start("a", Mode::Ok).await;
    let b = TestServer::start("b", Mode::Ok).await;
    let base = config("keep-state", &[&a]);
    let pool = pool(base.clone());
    for _ in 0..5 {
        send(&pool).await.expect("answered");
    }

    pool.update(with_endpoints(&base, &[&a, &b]));

    let state = pool.state();
    assert_eq!(state.endpoint(a.addr).expect("a stays").requests, 5);
    assert_eq!(state.endpoint(b.addr).expect("b joined").requests, 0);
}

#[tokio::test]
async fn removed_endpoint_finishes_requests_in_flight() {
    let slow = TestServer::start("slow", Mode::Slow(Duration::from_millis(200))).await;
    let other = TestServer::start("other", Mode::Ok).await;
    let base = config("drain", &[&slow]);
    let pool = pool(base.clone());

    let in_flight = {
        let pool = pool.clone();
        tokio::spawn(async move { send(&pool).await })
    };
    wait_until(Duration::from_secs(1), "request in flight", || {
        slow.hits() == 1
    })
    .await;
    pool.update(with_endpoints(&base, &[&other]));

    let answer = in_flight
        .await
        .expect("task")
        .expect("finished despite removal");
    assert_eq!(answer.body, "slow");
    assert_eq!(send(&pool).await.expect("answered").body, "other");
}

#[tokio::test]
async fn an_invalid_update_is_refused_and_changes_nothing() {
    let a = TestServer::start("a", Mode::Ok).await;
    let base = config("bad-update", &[&a]);
    let pool = pool(base.clone());

    let bad = PoolConfig {
        endpoints: vec!["no-port".into()],
        ..base
    };
    assert!(pool.try_update(bad.clone()).is_err());
    pool.update(bad);

    assert_eq!(pool.state().endpoints.len(), 1);
    send(&pool).await.expect("still served");
}

#[tokio::test]
async fn host_names_are_resolved_into_endpoints() {
    let a = TestServer::start("a", Mode::Ok).await;
    let mut cfg = config("dns", &[]);
    cfg.endpoints = vec![format!("localhost:{}", a.addr.port())];
    let pool = pool(cfg);

    pool.resolve_now().await;

    let state = pool.state();
    assert!(state.endpoint(a.addr).is_some(), "{state:?}");
    // localhost may also give ::1, where nothing listens: that one is ejected and retried.
    for _ in 0..10 {
        assert_eq!(send(&pool).await.expect("answered").body, "a");
    }
}

#[tokio::test]
async fn shutdown_refuses_new_requests() {
    let a = TestServer::start("a", Mode::Ok).await;
    let pool = pool(config("shutdown", &[&a]));
    send(&pool).await.expect("answered");

    pool.shutdown();

    let err = send(&pool).await.expect_err("shut down");
    assert_eq!(err.status(), 503);
}
