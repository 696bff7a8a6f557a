//! Metrics and logs shared by every switchboard component.
//!
//! The registry is made once in `main`, handed to each component and read back
//! by its `/metrics` endpoint; nothing here is a global. [`process`] adds the
//! standard `process_*` metrics, [`logging`] sets up the stderr and JSON-file
//! logs.

pub mod logging;
pub mod process;
pub mod scrape;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use prometheus_client;

/// Prefix of every metric switchboard defines itself.
pub const PREFIX: &str = "switchboard";

/// Content type of the classic Prometheus text format that `/metrics` serves.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A root registry holding the process metrics and `switchboard_build_info`
/// for `component`. Components add their own metrics under [`PREFIX`].
pub fn registry(component: &'static str) -> Registry {
    let mut root = Registry::default();
    process::register(&mut root);
    let build_info = prometheus_client::metrics::family::Family::<BuildInfo, Gauge>::default();
    build_info
        .get_or_create(&BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            component,
        })
        .set(1);
    root.sub_registry_with_prefix(PREFIX).register(
        "build_info",
        "Build of the running binary; always 1",
        build_info,
    );
    root
}

/// Labels of `switchboard_build_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct BuildInfo {
    version: &'static str,
    component: &'static str,
}

/// The registry in the classic Prometheus text format, which `promtool check
/// metrics` accepts (it rejects this crate's OpenMetrics output).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

/// Latency buckets in seconds, from 50 µs to 10 s: fine enough at the low end
/// for in-process calls, wide enough for timeouts.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_exposes_build_info_and_process_metrics() {
        let text = encode(&registry("calc"));
        assert!(text.contains("switchboard_build_info{version="), "{text}");
        assert!(text.contains("component=\"calc\""));
        assert!(text.contains("process_resident_memory_bytes "));
        assert!(text.contains("process_cpu_seconds_total "));
    }
}
