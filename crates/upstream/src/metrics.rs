//! Prometheus metrics of the pools of one component.
//!
//! [`PoolMetrics`] is registered once (in `main`) and handed to every pool. Each
//! endpoint resolves its labelled handles when it joins, so the request path only
//! touches atomics (and the per-series lock a histogram takes on observe).

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a pool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

/// Labels naming one endpoint of a pool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    pool: String,
    endpoint: String,
}

/// Labels of one finished try.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    pool: String,
    endpoint: String,
    outcome: Outcome,
}

/// Labels of one retry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    pool: String,
    reason: RetryReason,
}

/// How one try ended; a fixed set so the label stays bounded.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Response headers arrived with a status below 500.
    Success,
    /// Response headers arrived with a 5xx status.
    ServerError,
    /// The per-try timeout or the deadline passed.
    Timeout,
    /// No connection could be made.
    ConnectError,
    /// The connection closed before any response.
    Closed,
    /// Any other failure of the exchange.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Success,
        Outcome::ServerError,
        Outcome::Timeout,
        Outcome::ConnectError,
        Outcome::Closed,
        Outcome::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ServerError => "server_error",
            Outcome::Timeout => "timeout",
            Outcome::ConnectError => "connect_error",
            Outcome::Closed => "closed",
            Outcome::Error => "error",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Why a request was tried again; a fixed set so the label stays bounded.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum RetryReason {
    /// The previous try could not connect.
    Connect,
    /// The previous connection closed before any response.
    Closed,
    /// The previous try timed out (idempotent pools only).
    Timeout,
    /// The previous try answered 5xx (idempotent pools only).
    ServerError,
}

impl RetryReason {
    const ALL: [RetryReason; 4] = [
        RetryReason::Connect,
        RetryReason::Closed,
        RetryReason::Timeout,
        RetryReason::ServerError,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RetryReason::Connect => "connect",
            RetryReason::Closed => "closed",
            RetryReason::Timeout => "timeout",
            RetryReason::ServerError => "server_error",
        }
    }
}

impl EncodeLabelValue for RetryReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

fn duration_histogram() -> Histogram {
    // 0.5 ms up to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metric families shared by every pool of a component. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PoolMetrics {
    requests: Family<OutcomeLabels, Counter>,
    duration: Family<InstanceLabels, Histogram, fn() -> Histogram>,
    retries: Family<RetryLabels, Counter>,
    budget_exhausted: Family<PoolLabels, Counter>,
    ejections: Family<InstanceLabels, Counter>,
    endpoint_healthy: Family<InstanceLabels, Gauge>,
    healthy_endpoints: Family<PoolLabels, Gauge>,
    in_flight: Family<InstanceLabels, Gauge>,
}

impl Default for PoolMetrics {
    /// Families that are not registered anywhere, for tests and tools.
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            retries: Family::default(),
            budget_exhausted: Family::default(),
            ejections: Family::default(),
            endpoint_healthy: Family::default(),
            healthy_endpoints: Family::default(),
            in_flight: Family::default(),
        }
    }
}

impl PoolMetrics {
    /// Creates the families and registers them, all named `switchboard_upstream_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("switchboard_upstream");
        r.register(
            "requests",
            "Tries sent to an endpoint, by outcome",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from sending a try to its response headers",
            m.duration.clone(),
        );
        r.register(
            "retries",
            "Tries repeated on another endpoint",
            m.retries.clone(),
        );
        r.register(
            "retry_budget_exhausted",
            "Retries refused because the retry budget was empty",
            m.budget_exhausted.clone(),
        );
        r.register(
            "ejections",
            "Endpoints ejected by passive health",
            m.ejections.clone(),
        );
        r.register(
            "endpoint_healthy",
            "1 when the endpoint takes new requests, else 0",
            m.endpoint_healthy.clone(),
        );
        r.register(
            "healthy_endpoints",
            "Endpoints taking new requests",
            m.healthy_endpoints.clone(),
        );
        r.register(
            "in_flight",
            "Tries waiting for response headers",
            m.in_flight.clone(),
        );
        m
    }

    /// Handles for one pool.
    pub(crate) fn pool(&self, pool: &str) -> PoolHandles {
        let labels = PoolLabels {
            pool: pool.to_owned(),
        };
        let retries = RetryReason::ALL.map(|reason| {
            let labels = RetryLabels {
                pool: pool.to_owned(),
                reason,
            };
            self.retries.get_or_create_owned(&labels)
        });
        PoolHandles {
            retries,
            budget_exhausted: self.budget_exhausted.get_or_create_owned(&labels),
            healthy_endpoints: self.healthy_endpoints.get_or_create_owned(&labels),
        }
    }

    /// Handles for one endpoint of a pool, resolved once when it joins.
    pub(crate) fn endpoint(&self, pool: &str, instance: &str) -> EndpointMetrics {
        let labels = InstanceLabels {
            pool: pool.to_owned(),
            endpoint: instance.to_owned(),
        };
        let outcomes = Outcome::ALL.map(|outcome| {
            let labels = OutcomeLabels {
                pool: pool.to_owned(),
                endpoint: instance.to_owned(),
                outcome,
            };
            self.requests.get_or_create_owned(&labels)
        });
        EndpointMetrics {
            outcomes,
            duration: self.duration.get_or_create_owned(&labels),
            ejections: self.ejections.get_or_create_owned(&labels),
            healthy: self.endpoint_healthy.get_or_create_owned(&labels),
            in_flight: self.in_flight.get_or_create_owned(&labels),
            families: self.clone(),
            labels,
        }
    }
}

/// Labelled handles of one pool.
#[derive(Debug)]
pub(crate) struct PoolHandles {
    retries: [Counter; 4],
    pub(crate) budget_exhausted: Counter,
    pub(crate) healthy_endpoints: Gauge,
}

impl PoolHandles {
    /// Counts one retry.
    pub(crate) fn retry(&self, reason: RetryReason) {
        let index = RetryReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.retries[index].inc();
    }
}

/// Labelled handles of one endpoint.
#[derive(Debug)]
pub(crate) struct EndpointMetrics {
    outcomes: [Counter; 6],
    pub(crate) duration: Histogram,
    pub(crate) ejections: Counter,
    pub(crate) healthy: Gauge,
    pub(crate) in_flight: Gauge,
    families: PoolMetrics,
    labels: InstanceLabels,
}

impl EndpointMetrics {
    /// Counts one finished try.
    pub(crate) fn outcome(&self, outcome: Outcome) {
        let index = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[index].inc();
    }

    /// Drops the gauge series of an endpoint that left, so they do not linger.
    pub(crate) fn remove_gauges(&self) {
        self.families.endpoint_healthy.remove(&self.labels);
        self.families.in_flight.remove(&self.labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn exposition_uses_prefixed_names_and_total_suffix() {
        let mut registry = Registry::default();
        let metrics = PoolMetrics::register(&mut registry);
        let ep = metrics.endpoint("calc", "127.0.0.1:1");
        ep.outcome(Outcome::ServerError);
        metrics.pool("calc").retry(RetryReason::Timeout);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        assert!(text.contains(
            "switchboard_upstream_requests_total{pool=\"calc\",endpoint=\"127.0.0.1:1\",\
             outcome=\"server_error\"} 1"
        ));
        assert!(
            text.contains("switchboard_upstream_retries_total{pool=\"calc\",reason=\"timeout\"} 1")
        );
        assert!(text.contains("switchboard_upstream_request_duration_seconds_bucket"));
    }
}
