//! Metrics of a service: calls by method and outcome, latency, errors by
//! code, in-flight requests.
//!
//! Label values come only from the registered operations and the fixed error
//! codes; an unknown method is counted as `unknown`, so hostile clients cannot
//! grow the label set. Handles are resolved once at start, never per call.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use protocol::ErrorCode;

/// Label value of a method no operation is registered for.
pub(crate) const UNKNOWN: &str = "unknown";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Outcome {
    ok,
    error,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    method: String,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

/// The metric families of one service.
pub(crate) struct ServiceMetrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabels, Histogram>,
    errors: [Counter; ErrorCode::ALL.len()],
    /// Requests being handled now.
    pub(crate) in_flight: Gauge,
}

/// Pre-resolved handles for one method label.
#[derive(Clone)]
pub(crate) struct MethodMetrics {
    ok: Counter,
    error: Counter,
    duration: Histogram,
}

impl ServiceMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix(telemetry::PREFIX);
        let calls = Family::<CallLabels, Counter>::default();
        let durations = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(telemetry::latency_buckets())
        });
        let errors_family = Family::<CodeLabels, Counter>::default();
        let errors = ErrorCode::ALL.map(|code| {
            errors_family
                .get_or_create(&CodeLabels {
                    code: code.as_str(),
                })
                .clone()
        });
        let in_flight = Gauge::default();
        registry.register(
            "rpc_requests",
            "RPC calls handled, by method and outcome",
            calls.clone(),
        );
        registry.register(
            "rpc_request_duration_seconds",
            "Time to handle one RPC call, by method",
            durations.clone(),
        );
        registry.register(
            "rpc_errors",
            "RPC errors answered, by stable code",
            errors_family,
        );
        registry.register(
            "rpc_in_flight_requests",
            "HTTP requests being handled",
            in_flight.clone(),
        );
        ServiceMetrics {
            calls,
            durations,
            errors,
            in_flight,
        }
    }

    /// Handles for `method`, created now so every series exists from start.
    pub(crate) fn method(&self, method: &str) -> MethodMetrics {
        let labels = |outcome| CallLabels {
            method: method.to_owned(),
            outcome,
        };
        // One statement per lookup: `get_or_create` returns a read guard, and
        // a second lookup in the same expression would wait on it forever.
        let ok = self.calls.get_or_create(&labels(Outcome::ok)).clone();
        let error = self.calls.get_or_create(&labels(Outcome::error)).clone();
        let key = MethodLabels {
            method: method.to_owned(),
        };
        let duration = self.durations.get_or_create(&key).clone();
        MethodMetrics {
            ok,
            error,
            duration,
        }
    }

    /// Counts an answered error by its code.
    pub(crate) fn error(&self, code: ErrorCode) {
        // `ALL` lists the codes in declaration order, so the discriminant is
        // the index.
        self.errors[code as usize].inc();
    }
}

impl MethodMetrics {
    pub(crate) fn record(&self, ok: bool, seconds: f64) {
        match ok {
            true => self.ok.inc(),
            false => self.error.inc(),
        };
        self.duration.observe(seconds);
    }
}
