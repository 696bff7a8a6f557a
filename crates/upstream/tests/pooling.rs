//! Connection reuse: keep-alive in steady state, and servers closing idle connections.

mod common;

use std::time::Duration;

use common::{Mode, TestServer, config, passive_config, pool, send};

#[tokio::test]
async fn sequential_requests_reuse_keep_alive_connections() {
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(TestServer::start(&format!("s{i}"), Mode::Ok).await);
    }
    let pool = pool(config("keepalive", &servers.iter().collect::<Vec<_>>()));

    for _ in 0..200 {
        send(&pool).await.expect("answered");
    }

    let hits: usize = servers.iter().map(TestServer::hits).sum();
    let accepted: usize = servers.iter().map(TestServer::accepted).sum();
    assert_eq!(hits, 200);
    assert!(accepted <= 6, "{accepted} connections for 200 requests");
}

#[tokio::test]
async fn connections_closed_while_idle_do_not_fail_requests() {
    let idle = Mode::CloseIdle(Duration::from_millis(30));
    let a = TestServer::start("a", idle).await;
    let b = TestServer::start("b", idle).await;
    let pool = pool(passive_config("idle-close", &[&a, &b]));

    for i in 0..40u64 {
        send(&pool)
            .await
            .expect("a closed idle connection is not a failure");
        // Pauses around the server's idle limit, to hit the close race now and then.
        tokio::time::sleep(Duration::from_millis(20 + (i * 7) % 25)).await;
    }

    assert!(
        a.accepted() + b.accepted() > 2,
        "the servers did close idle connections"
    );
    assert_eq!(pool.healthy_count(), 2);
}
