//! Passive and active health: ejection, fast failure, readmission.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Mode, TestServer, config, passive_config, pool, send, wait_until};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_endpoint_is_ejected_and_no_request_fails() {
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(TestServer::start(&format!("s{i}"), Mode::Ok).await);
    }
    let mut cfg = config("kill", &servers.iter().collect::<Vec<_>>());
    cfg.health.eject_base = std::time::Duration::from_secs(5);
    cfg.health.eject_max = std::time::Duration::from_secs(5);
    let pool = pool(cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (pool, stop, failures) = (pool.clone(), stop.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            let mut done = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = send(&pool).await {
                    eprintln!("request failed: {e:?}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                done += 1;
            }
            done
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    servers[1].stop().await;
    let killed_at = Instant::now();
    let dead = servers[1].addr;
    wait_until(Duration::from_secs(2), "ejection", || {
        pool.state()
            .endpoint(dead)
            .is_some_and(|e| e.ejected || !e.healthy)
    })
    .await;
    let took = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for w in workers {
        total += w.await.expect("worker");
    }
    assert!(total > 100, "load was too light: {total}");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "of {total}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(pool.healthy_count(), 2);
}

#[tokio::test]
async fn all_endpoints_down_fails_fast_with_bounded_attempts() {
    let mut servers = Vec::new();
    for i in 0..4 {
        let mut s = TestServer::start(&format!("s{i}"), Mode::Ok).await;
        s.stop().await;
        servers.push(s);
    }
    let mut cfg = passive_config("down", &servers.iter().collect::<Vec<_>>());
    cfg.connect_timeout = Duration::from_millis(800);
    let pool = pool(cfg);

    let started = Instant::now();
    let err = send(&pool).await.expect_err("nothing listens");
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(err.status(), 503);
    let state = pool.state();
    let tried: u64 = state.endpoints.iter().map(|e| e.requests).sum();
    assert_eq!(tried, 3, "max_attempts bounds the tries: {state:?}");

    // The fourth endpoint goes too, and then nothing is even attempted.
    let _ = send(&pool).await;
    let started = Instant::now();
    let err = send(&pool).await.expect_err("all ejected");
    assert!(err.is_no_endpoint(), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(50));
    let tried: u64 = pool.state().endpoints.iter().map(|e| e.requests).sum();
    assert_eq!(tried, 4);
    assert_eq!(pool.healthy_count(), 0);
}

#[tokio::test]
async fn ejected_endpoint_is_readmitted_when_back_on_the_same_port() {
    let mut server = TestServer::start("s0", Mode::Ok).await;
    let other = TestServer::start("s1", Mode::Ok).await;
    let pool = pool(config("readmit", &[&server, &other]));
    server.stop().await;

    // Requests keep succeeding on the other endpoint while this one is ejected.
    wait_until(Duration::from_secs(2), "ejection", || {
        pool.healthy_count() == 1
    })
    .await;
    for _ in 0..5 {
        assert_eq!(send(&pool).await.expect("other endpoint").body, "s1");
    }

    server.restart().await;
    wait_until(Duration::from_secs(3), "readmission", || {
        pool.healthy_count() == 2
    })
    .await;
    let mut reached = false;
    for _ in 0..50 {
        reached |= send(&pool).await.expect("both up").body == "s0";
    }
    assert!(reached, "the readmitted endpoint takes requests again");
}

#[tokio::test]
async fn readmission_without_probes_follows_the_backoff() {
    let mut server = TestServer::start("s0", Mode::Ok).await;
    let other = TestServer::start("s1", Mode::Ok).await;
    let pool = pool(passive_config("readmit-passive", &[&server, &other]));
    server.stop().await;
    // Picks are random: send until one lands on the dead endpoint and ejects it.
    for _ in 0..50 {
        send(&pool).await.expect("retried on the other endpoint");
        if pool.healthy_count() == 1 {
            break;
        }
    }
    assert_eq!(pool.healthy_count(), 1);

    server.restart().await;
    wait_until(Duration::from_secs(2), "backoff end", || {
        pool.healthy_count() == 2
    })
    .await;
}

#[tokio::test]
async fn consecutive_server_errors_eject_an_endpoint() {
    let bad = TestServer::start("bad", Mode::Fail).await;
    let good = TestServer::start("good", Mode::Ok).await;
    let mut cfg = passive_config("five-hundreds", &[&bad, &good]);
    cfg.health.eject_base = Duration::from_secs(10);
    cfg.health.eject_max = Duration::from_secs(10);
    let pool = pool(cfg);

    for _ in 0..40 {
        let _ = send(&pool).await.expect("an answer");
    }

    assert_eq!(bad.hits(), 3, "ejected after three 500s in a row");
    assert!(pool.state().endpoint(bad.addr).expect("member").ejected);
}

#[tokio::test]
async fn failing_probes_mark_an_endpoint_unhealthy() {
    let bad = TestServer::start("bad", Mode::Fail).await;
    let good = TestServer::start("good", Mode::Ok).await;
    let pool = pool(config("probes", &[&bad, &good]));

    wait_until(Duration::from_secs(2), "probe", || {
        pool.healthy_count() == 1
    })
    .await;

    let state = pool.state();
    assert!(!state.endpoint(bad.addr).expect("member").healthy);
    assert!(state.endpoint(good.addr).expect("member").healthy);
    let before = bad.hits();
    for _ in 0..20 {
        assert_eq!(send(&pool).await.expect("good answers").body, "good");
    }
    assert_eq!(bad.hits(), before);
}

#[tokio::test]
async fn probes_stop_when_the_last_pool_clone_is_dropped() {
    let server = TestServer::start("s0", Mode::Ok).await;
    let mut cfg = config("drop", &[&server]);
    cfg.health.interval = Duration::from_millis(10);
    let pool = pool(cfg);
    let clone = pool.clone();
    wait_until(Duration::from_secs(1), "probes", || server.probes() > 2).await;

    drop(pool);
    wait_until(Duration::from_secs(1), "more probes", || {
        server.probes() > 4
    })
    .await;
    drop(clone);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let probes = server.probes();
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(
        server.probes(),
        probes,
        "no probe after the last clone is gone"
    );
}

#[tokio::test]
async fn probes_stop_on_shutdown() {
    let server = TestServer::start("s0", Mode::Ok).await;
    let mut cfg = config("shutdown-probes", &[&server]);
    cfg.health.interval = Duration::from_millis(10);
    let pool = pool(cfg);
    wait_until(Duration::from_secs(1), "probes", || server.probes() > 2).await;

    pool.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let probes = server.probes();
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(server.probes(), probes);
}

#[tokio::test]
async fn one_failed_probe_does_not_take_an_endpoint_out() {
    // Probes time out every time; the verdict must wait for three in a row, so a
    // single slow probe (a burst of load, a starved prober) takes nothing out.
    let slow = TestServer::start("slow", Mode::Slow(Duration::from_millis(300))).await;
    let mut cfg = config("one-probe", &[&slow]);
    cfg.health.interval = Duration::from_millis(100);
    cfg.health.timeout = Duration::from_millis(50);
    cfg.health.consecutive_failures = 3;
    let started = std::time::Instant::now();
    let pool = pool(cfg);

    wait_until(Duration::from_secs(3), "three failed probes", || {
        pool.healthy_count() == 0
    })
    .await;
    // Failures end near 50, 200 and 350 ms.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "unhealthy after {took:?}"
    );
}

#[tokio::test]
async fn server_errors_never_eject_the_last_endpoint() {
    // Both answer 500, as gateways do when every instance behind them is down:
    // one is ejected, the other stays, so the pool recovers as soon as the
    // fault behind them is gone instead of after an ejection backoff.
    let a = TestServer::start("a", Mode::Fail).await;
    let b = TestServer::start("b", Mode::Fail).await;
    let pool = pool(passive_config("last-one", &[&a, &b]));

    for _ in 0..20 {
        let answer = send(&pool).await.expect("a 500 is an answer");
        assert_eq!(answer.status, 500);
    }
    assert!(pool.healthy_count() >= 1, "one of two ejected, never both");
}
