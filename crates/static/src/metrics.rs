//! Metrics of the static gateway: `switchboard_static_requests_total` by status
//! class and `switchboard_static_request_duration_seconds`.

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Handles resolved once at start.
pub(crate) struct StaticMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
}

impl StaticMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let family = Family::<ClassLabels, Counter>::default();
        let by_class = CLASSES.map(|class| family.get_or_create(&ClassLabels { class }).clone());
        let duration = Histogram::new(telemetry::latency_buckets());
        let r = registry.sub_registry_with_prefix("switchboard_static");
        r.register("requests", "Requests answered, by status class", family);
        r.register(
            "request_duration_seconds",
            "Time to produce response headers",
            duration.clone(),
        );
        StaticMetrics { by_class, duration }
    }

    pub(crate) fn observe(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}
