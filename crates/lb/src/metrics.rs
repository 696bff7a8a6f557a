//! Metrics of the load balancer, all named `switchboard_lb_*`, beside the pool
//! metrics (`switchboard_upstream_*`) of its two pools.
//!
//! Labels are bounded: `route` is `rpc`, `static` or `local` and `class` a
//! status class. Handles are resolved once at start, never per request.

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;
use upstream::PoolMetrics;

use crate::route::Route;

/// Status classes, the values of the `class` label.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Handles of one route.
#[derive(Debug, Clone)]
struct RouteHandles {
    by_class: [Counter; 5],
    duration: Histogram,
}

/// Every metric the balancer updates.
#[derive(Debug, Clone)]
pub struct LbMetrics {
    routes: [RouteHandles; 3],
    refused: Family<ReasonLabels, Counter>,
    reloads: Family<OutcomeLabels, Counter>,
    /// Requests being handled now.
    pub in_flight: Gauge,
    /// Requests shed with 503 `overloaded`.
    pub shed: Counter,
    /// Requests refused by the per-client rate limit.
    pub rate_limited: Counter,
    /// Client connections open now.
    pub connections: Gauge,
    /// The families of both pools.
    pub pools: PoolMetrics,
}

impl LbMetrics {
    /// Creates the families and registers them on `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let pools = PoolMetrics::register(registry);
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let metrics = LbMetrics {
            routes: Route::ALL.map(|route| handles(&requests, &durations, route)),
            refused: Family::default(),
            reloads: Family::default(),
            in_flight: Gauge::default(),
            shed: Counter::default(),
            rate_limited: Counter::default(),
            connections: Gauge::default(),
            pools,
        };
        metrics.register_families(registry, requests, durations);
        metrics
    }

    fn register_families(
        &self,
        registry: &mut Registry,
        requests: Family<RequestLabels, Counter>,
        durations: Family<RouteLabels, Histogram>,
    ) {
        let r = registry.sub_registry_with_prefix("switchboard_lb");
        r.register(
            "requests",
            "Requests answered, by route and status class",
            requests,
        );
        r.register(
            "request_duration_seconds",
            "Time from request headers to the end of the response body",
            durations,
        );
        r.register(
            "in_flight",
            "Requests being handled now",
            self.in_flight.clone(),
        );
        r.register(
            "shed",
            "Requests shed with 503 overloaded",
            self.shed.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by the per-client rate limit",
            self.rate_limited.clone(),
        );
        r.register(
            "refused",
            "Requests refused before forwarding, by reason",
            self.refused.clone(),
        );
        r.register(
            "open_connections",
            "Client connections open now",
            self.connections.clone(),
        );
        r.register(
            "reloads",
            "Configuration reloads, by outcome",
            self.reloads.clone(),
        );
    }

    /// Counts one answered request.
    pub fn observe(&self, route: Route, status: StatusCode, elapsed: Duration) {
        let handles = &self.routes[route_index(route)];
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        handles.by_class[class].inc();
        handles.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts one request refused before forwarding (`framing`, `too_large`,
    /// `body_timeout`, `bad_body`).
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts one reload attempt (`ok` or `refused`).
    pub fn reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

fn handles(
    requests: &Family<RequestLabels, Counter>,
    durations: &Family<RouteLabels, Histogram>,
    route: Route,
) -> RouteHandles {
    let route = route.as_str();
    RouteHandles {
        by_class: CLASSES.map(|class| {
            requests
                .get_or_create(&RequestLabels { route, class })
                .clone()
        }),
        duration: durations.get_or_create(&RouteLabels { route }).clone(),
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(telemetry::latency_buckets())
}

fn route_index(route: Route) -> usize {
    match route {
        Route::Rpc => 0,
        Route::Static => 1,
        Route::Local => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_and_class() {
        let mut registry = Registry::default();
        let metrics = LbMetrics::register(&mut registry);
        metrics.observe(Route::Rpc, StatusCode::OK, Duration::from_millis(3));
        metrics.observe(
            Route::Local,
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::ZERO,
        );
        metrics.shed.inc();
        let text = telemetry::encode(&registry);
        assert!(
            text.contains(r#"switchboard_lb_requests_total{route="rpc",class="2xx"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"switchboard_lb_requests_total{route="local",class="5xx"} 1"#));
        assert!(text.contains("switchboard_lb_shed_total 1"));
        assert!(text.contains("switchboard_lb_request_duration_seconds_bucket"));
    }
}
