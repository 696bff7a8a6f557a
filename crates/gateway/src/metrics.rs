//! Metrics of the gateway: calls by service, method and outcome, and their latency.
//!
//! Services come from the configuration, so that label is bounded. Methods are
//! strings chosen by clients, so each service learns at most [`MAX_METHODS`] method
//! names (well-formed ones only) and counts every other call as `other`. Calls
//! that name no configured service are counted under the service `unknown`.
//! Handles are looked up in an `arc-swap` snapshot, never under a lock, except
//! when a new method is learned. Pool and instance metrics come from
//! [`upstream::PoolMetrics`], registered beside these.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Most method names one service gets its own label for.
pub(crate) const MAX_METHODS: usize = 64;

/// Longest method name given its own label.
const MAX_METHOD_LEN: usize = 64;

/// Service label of calls that name no configured service, or no method at all.
pub(crate) const UNKNOWN_SERVICE: &str = "unknown";

/// Method label of calls outside the learned set.
const OTHER_METHOD: &str = "other";

/// How one call ended, as the gateway saw it; a fixed set.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Outcome {
    /// The instance answered with a 2xx status (JSON-RPC errors included).
    ok,
    /// The instance answered with a 4xx status.
    client_error,
    /// The instance answered with a 5xx status.
    server_error,
    /// The gateway knows no such service.
    method_not_found,
    /// The call could not be read (bad envelope).
    invalid,
    /// No instance could take the call.
    unavailable,
    /// The deadline passed.
    timeout,
    /// The exchange with the instance failed.
    failed,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Outcome::ok,
        Outcome::client_error,
        Outcome::server_error,
        Outcome::method_not_found,
        Outcome::invalid,
        Outcome::unavailable,
        Outcome::timeout,
        Outcome::failed,
    ];

    /// The outcome of an answer relayed from an instance.
    pub(crate) fn of_status(status: http::StatusCode) -> Outcome {
        match status.as_u16() {
            500.. => Outcome::server_error,
            400..500 => Outcome::client_error,
            _ => Outcome::ok,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    method: String,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The metric families of the gateway. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct GatewayMetrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabels, Histogram, fn() -> Histogram>,
    reloads: Family<ResultLabels, Counter>,
    /// HTTP requests on `/rpc` being handled now.
    pub(crate) in_flight: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(telemetry::latency_buckets())
}

impl GatewayMetrics {
    /// Creates the families and registers them as `switchboard_gateway_*`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = GatewayMetrics {
            calls: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
            reloads: Family::default(),
            in_flight: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("switchboard_gateway");
        r.register(
            "requests",
            "Calls routed, by service, method and outcome",
            m.calls.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from reading a call to the instance's response headers",
            m.durations.clone(),
        );
        r.register(
            "config_reloads",
            "Reloads of the pool list, by result",
            m.reloads.clone(),
        );
        r.register(
            "in_flight_requests",
            "HTTP requests on /rpc being handled",
            m.in_flight.clone(),
        );
        m
    }

    /// Counts one reload attempt.
    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    fn handles(&self, service: &str, method: &str) -> Arc<CallMetrics> {
        let outcomes = Outcome::ALL.map(|outcome| {
            let labels = CallLabels {
                service: service.to_owned(),
                method: method.to_owned(),
                outcome,
            };
            self.calls.get_or_create_owned(&labels)
        });
        let key = MethodLabels {
            service: service.to_owned(),
            method: method.to_owned(),
        };
        let duration = self.durations.get_or_create_owned(&key);
        Arc::new(CallMetrics { outcomes, duration })
    }
}

/// Resolved handles of one (service, method) label pair.
#[derive(Debug)]
pub(crate) struct CallMetrics {
    outcomes: [Counter; Outcome::ALL.len()],
    duration: Histogram,
}

impl CallMetrics {
    /// Counts one call and its latency in seconds.
    pub(crate) fn record(&self, outcome: Outcome, seconds: f64) {
        // `ALL` lists the variants in declaration order.
        self.outcomes[outcome as usize].inc();
        self.duration.observe(seconds);
    }
}

/// The method labels of one service: learned names up to a cap, then `other`.
#[derive(Debug)]
pub(crate) struct MethodTable {
    service: String,
    families: GatewayMetrics,
    known: ArcSwap<HashMap<String, Arc<CallMetrics>>>,
    other: Arc<CallMetrics>,
    grow: Mutex<()>,
}

impl MethodTable {
    /// An empty table for `service`.
    pub(crate) fn new(service: &str, families: &GatewayMetrics) -> Self {
        MethodTable {
            service: service.to_owned(),
            other: families.handles(service, OTHER_METHOD),
            families: families.clone(),
            known: ArcSwap::default(),
            grow: Mutex::new(()),
        }
    }

    /// The handles of `method`, learning it if there is room.
    pub(crate) fn get(&self, method: &str) -> Arc<CallMetrics> {
        if let Some(m) = self.known.load().get(method) {
            return m.clone();
        }
        self.learn(method)
    }

    /// The handles of calls that have no method label of their own.
    pub(crate) fn other(&self) -> Arc<CallMetrics> {
        self.other.clone()
    }

    /// Slow path: adds `method` to a copy of the table, when allowed.
    fn learn(&self, method: &str) -> Arc<CallMetrics> {
        let _grow = self.grow.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.known.load_full();
        if let Some(m) = current.get(method) {
            return m.clone();
        }
        if current.len() >= MAX_METHODS || !is_label_safe(method) {
            return self.other.clone();
        }

        let handles = self.families.handles(&self.service, method);
        let mut next = HashMap::clone(&current);
        next.insert(method.to_owned(), handles.clone());
        self.known.store(Arc::new(next));
        handles
    }
}

/// Short names of letters, digits, `.`, `_` and `-` only.
fn is_label_safe(method: &str) -> bool {
    method.len() <= MAX_METHOD_LEN
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(registry: &Registry) -> String {
        telemetry::encode(registry)
    }

    #[test]
    fn methods_are_learned_up_to_the_cap_then_other() {
        let mut registry = Registry::default();
        let families = GatewayMetrics::register(&mut registry);
        let table = MethodTable::new("calc", &families);
        for i in 0..MAX_METHODS + 10 {
            table.get(&format!("calc.m{i}")).record(Outcome::ok, 0.001);
        }
        table.get("calc.bad\nname").record(Outcome::ok, 0.001);
        let text = exposition(&registry);
        let series = text
            .lines()
            .filter(|l| l.starts_with("switchboard_gateway_requests_total{") && l.contains("ok\"}"))
            .count();
        assert_eq!(series, MAX_METHODS + 1, "learned methods plus other");
        assert!(text.contains(
            "switchboard_gateway_requests_total{service=\"calc\",method=\"other\",outcome=\"ok\"} 11"
        ));
    }

    #[test]
    fn outcomes_follow_the_status_class() {
        use http::StatusCode;
        assert_eq!(Outcome::of_status(StatusCode::OK), Outcome::ok);
        assert_eq!(Outcome::of_status(StatusCode::NO_CONTENT), Outcome::ok);
        assert_eq!(
            Outcome::of_status(StatusCode::UNPROCESSABLE_ENTITY),
            Outcome::client_error
        );
        assert_eq!(
            Outcome::of_status(StatusCode::BAD_GATEWAY),
            Outcome::server_error
        );
    }
}
