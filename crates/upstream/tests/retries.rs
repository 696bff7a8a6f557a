//! Timeouts, retries, the retry budget and deadline propagation.

mod common;

use std::time::Duration;

use common::{Mode, TestServer, passive_config, pool, send, send_with};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use switchboard_upstream::{Balance, Pool, PoolMetrics};
use tokio::time::Instant;

#[tokio::test]
async fn stalled_endpoint_times_out_then_retries_elsewhere_when_idempotent() {
    let stalled = TestServer::start("stalled", Mode::Stall).await;
    let good = TestServer::start("good", Mode::Ok).await;
    let mut cfg = passive_config("stall", &[&stalled, &good]);
    cfg.balance = Balance::RoundRobin;
    cfg.idempotent = true;
    cfg.try_timeout = Duration::from_millis(100);
    let pool = pool(cfg);

    let started = Instant::now();
    for _ in 0..4 {
        assert_eq!(send(&pool).await.expect("retried").body, "good");
    }

    assert!(stalled.hits() >= 1, "the stalled endpoint was tried");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn stalled_endpoint_times_out_without_retry_when_not_idempotent() {
    let stalled = TestServer::start("stalled", Mode::Stall).await;
    let good = TestServer::start("good", Mode::Ok).await;
    let mut cfg = passive_config("stall-once", &[&stalled]);
    cfg.endpoints.push(good.addr.to_string());
    cfg.balance = Balance::RoundRobin;
    cfg.try_timeout = Duration::from_millis(100);
    let pool = pool(cfg);

    let mut timeouts = 0;
    for _ in 0..2 {
        match send(&pool).await {
            Ok(answer) => assert_eq!(answer.body, "good"),
            Err(e) => {
                assert!(e.is_timeout(), "{e:?}");
                assert_eq!(e.status(), 504);
                timeouts += 1;
            }
        }
    }

    assert_eq!(
        timeouts, 1,
        "one of two round-robin turns hits the stalled endpoint"
    );
    assert_eq!(good.hits(), 1, "the timed-out request was not repeated");
}

#[tokio::test]
async fn retry_budget_bounds_attempts_when_every_endpoint_fails() {
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(TestServer::start(&format!("s{i}"), Mode::Fail).await);
    }
    let mut cfg = passive_config("budget", &servers.iter().collect::<Vec<_>>());
    cfg.idempotent = true;
    cfg.retry_budget_ratio = 0.2;
    cfg.retry_budget_min_per_sec = 1;
    cfg.health.consecutive_failures = u32::MAX;
    let mut registry = Registry::default();
    let metrics = PoolMetrics::register(&mut registry);
    let pool = Pool::new(cfg, &metrics).expect("valid");

    let requests = 100;
    for _ in 0..requests {
        let answer = send(&pool).await.expect("the 500 is returned");
        assert_eq!(answer.status, 500);
    }

    let attempts: usize = servers.iter().map(TestServer::hits).sum();
    let allowance = 10; // 1 per second over the 10 s window
    assert!(attempts > requests, "some retries happened: {attempts}");
    assert!(
        attempts <= requests * 12 / 10 + allowance,
        "{attempts} attempts"
    );
    let mut text = String::new();
    encode(&mut text, &registry).expect("encodes");
    let exhausted = "switchboard_upstream_retry_budget_exhausted_total{pool=\"budget\"}";
    let line = text
        .lines()
        .find(|l| l.starts_with(exhausted))
        .expect("counter present");
    assert!(!line.ends_with(" 0"), "{line}");
}

#[tokio::test]
async fn deadline_header_shrinks_with_time_spent() {
    let stalled = TestServer::start("stalled", Mode::Stall).await;
    let good = TestServer::start("good", Mode::Ok).await;
    let mut cfg = passive_config("deadline", &[&stalled, &good]);
    cfg.balance = Balance::RoundRobin;
    cfg.idempotent = true;
    cfg.try_timeout = Duration::from_millis(150);
    cfg.health.consecutive_failures = u32::MAX;
    let pool = pool(cfg);

    let mut retried = 0;
    for _ in 0..4 {
        let started = Instant::now();
        let answer = send_with(&pool, Some(1000)).await.expect("answered");
        let seen = answer.seen_timeout_ms.expect("deadline header forwarded");
        assert!(seen <= 1000, "{seen}");
        if started.elapsed() >= Duration::from_millis(150) {
            retried += 1;
            assert!(seen <= 860, "the retry announces what is left: {seen}");
        }
    }
    assert!(retried >= 1);
}

#[tokio::test]
async fn deadline_header_is_capped_by_the_try_timeout() {
    let good = TestServer::start("good", Mode::Ok).await;
    let mut cfg = passive_config("deadline-cap", &[&good]);
    cfg.try_timeout = Duration::from_millis(300);
    let pool = pool(cfg);

    let seen = send(&pool)
        .await
        .expect("answered")
        .seen_timeout_ms
        .expect("header");

    assert!(seen <= 300 && seen > 250, "{seen}");
}

#[tokio::test]
async fn an_expired_client_deadline_fails_at_once() {
    let good = TestServer::start("good", Mode::Ok).await;
    let pool = pool(passive_config("expired", &[&good]));

    let err = send_with(&pool, Some(0)).await.expect_err("no time left");

    assert!(err.is_timeout());
    assert_eq!(good.hits(), 0);
}

#[tokio::test]
async fn overall_deadline_stops_retries() {
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(TestServer::start(&format!("s{i}"), Mode::Stall).await);
    }
    let mut cfg = passive_config("overall", &servers.iter().collect::<Vec<_>>());
    cfg.idempotent = true;
    cfg.try_timeout = Duration::from_millis(200);
    cfg.request_timeout = Duration::from_millis(300);
    let pool = pool(cfg);

    let started = Instant::now();
    let err = send(&pool).await.expect_err("everything stalls");

    assert!(err.is_timeout(), "{err:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(450),
        "{took:?}"
    );
    let attempts: usize = servers.iter().map(TestServer::hits).sum();
    assert_eq!(attempts, 2);
}
