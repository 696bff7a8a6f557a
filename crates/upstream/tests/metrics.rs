//! Metrics as a scraper sees them, through a registry the test owns.

mod common;

use std::time::Duration;

use common::{Mode, TestServer, passive_config, send};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use switchboard_upstream::{Pool, PoolMetrics};

fn exposition(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("encodes");
    text
}

fn value(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"));
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number")
}

#[tokio::test]
async fn requests_ejections_and_health_are_counted() {
    let good = TestServer::start("good", Mode::Ok).await;
    let mut dead = TestServer::start("dead", Mode::Ok).await;
    dead.stop().await;
    let mut registry = Registry::default();
    let metrics = PoolMetrics::register(&mut registry);
    let mut cfg = passive_config("m", &[&good, &dead]);
    cfg.health.eject_base = Duration::from_secs(10);
    cfg.health.eject_max = Duration::from_secs(10);
    let pool = Pool::new(cfg, &metrics).expect("valid");

    for _ in 0..20 {
        send(&pool).await.expect("answered by the good endpoint");
    }

    let text = exposition(&registry);
    let (g, d) = (good.addr, dead.addr);
    let ok = format!(
        "switchboard_upstream_requests_total{{pool=\"m\",endpoint=\"{g}\",outcome=\"success\"}}"
    );
    assert_eq!(value(&text, &ok), 20.0);
    let refused = format!(
        "switchboard_upstream_requests_total{{pool=\"m\",endpoint=\"{d}\",\
         outcome=\"connect_error\"}}"
    );
    assert_eq!(value(&text, &refused), 1.0);
    let ejections = format!("switchboard_upstream_ejections_total{{pool=\"m\",endpoint=\"{d}\"}}");
    assert_eq!(value(&text, &ejections), 1.0);
    let retries = "switchboard_upstream_retries_total{pool=\"m\",reason=\"connect\"}";
    assert_eq!(value(&text, retries), 1.0);
    let healthy = format!("switchboard_upstream_endpoint_healthy{{pool=\"m\",endpoint=\"{d}\"}}");
    assert_eq!(value(&text, &healthy), 0.0);
    assert_eq!(
        value(&text, "switchboard_upstream_healthy_endpoints{pool=\"m\"}"),
        1.0
    );
    let in_flight = format!("switchboard_upstream_in_flight{{pool=\"m\",endpoint=\"{g}\"}}");
    assert_eq!(value(&text, &in_flight), 0.0);
    let count = format!(
        "switchboard_upstream_request_duration_seconds_count{{pool=\"m\",endpoint=\"{g}\"}}"
    );
    assert_eq!(value(&text, &count), 20.0);
}
