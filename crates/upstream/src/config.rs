//! Pool configuration: what an operator writes, its defaults and its validation.
//!
//! Durations are written in milliseconds in serialized form (`connect_timeout_ms`), and
//! an endpoint may carry a weight after an `@` (`"10.0.0.7:9000@3"`), used only by
//! weighted round robin.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Largest weight accepted on one endpoint; keeps the weighted schedule small.
pub const MAX_WEIGHT: u32 = 100;

/// Everything that shapes one upstream pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Pool name, used in logs and as the `pool` metric label (e.g. `"calc"`).
    pub name: String,
    /// Endpoints as `ip:port` (static) or `host:port` (resolved, may give many
    /// addresses), each optionally followed by `@weight` (1..=100, default 1).
    pub endpoints: Vec<String>,
    /// Balancing algorithm.
    pub balance: Balance,
    /// TCP connect timeout.
    #[serde(rename = "connect_timeout_ms", with = "millis")]
    pub connect_timeout: Duration,
    /// Time allowed to one try, until response headers arrive.
    #[serde(rename = "try_timeout_ms", with = "millis")]
    pub try_timeout: Duration,
    /// Overall deadline of a request, retries included.
    #[serde(rename = "request_timeout_ms", with = "millis")]
    pub request_timeout: Duration,
    /// Whether requests may be repeated after a try timed out or answered 5xx.
    pub idempotent: bool,
    /// Most tries for one request, the first one included.
    pub max_attempts: u32,
    /// Share of extra load retries may add, over a ten-second window.
    pub retry_budget_ratio: f64,
    /// Retries per second always allowed, so that low traffic can still retry.
    pub retry_budget_min_per_sec: u32,
    /// Active and passive health checking.
    pub health: HealthConfig,
    /// How often host names are resolved again.
    #[serde(rename = "resolve_interval_ms", with = "millis")]
    pub resolve_interval: Duration,
    /// How long a pooled connection may stay idle before it is closed.
    #[serde(rename = "idle_timeout_ms", with = "millis")]
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            endpoints: Vec::new(),
            balance: Balance::default(),
            connect_timeout: Duration::from_secs(1),
            try_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            idempotent: false,
            max_attempts: 3,
            retry_budget_ratio: 0.2,
            retry_budget_min_per_sec: 5,
            health: HealthConfig::default(),
            resolve_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Health checking: active probes and passive ejection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Path probed with `GET`; a 2xx answer means healthy.
    pub path: String,
    /// Time between probes; zero turns active checking off.
    #[serde(rename = "interval_ms", with = "millis")]
    pub interval: Duration,
    /// Time allowed to one probe.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Timeouts or 5xx answers in a row that eject an endpoint, and failed
    /// probes in a row that mark it unhealthy.
    pub consecutive_failures: u32,
    /// First ejection length; doubles for each repeated ejection.
    #[serde(rename = "eject_base_ms", with = "millis")]
    pub eject_base: Duration,
    /// Longest ejection.
    #[serde(rename = "eject_max_ms", with = "millis")]
    pub eject_max: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            path: "/health".to_owned(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            consecutive_failures: 3,
            eject_base: Duration::from_secs(1),
            eject_max: Duration::from_secs(30),
        }
    }
}

/// How a pool chooses the endpoint of each try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Two random candidates, the one with fewer requests in flight wins.
    #[default]
    #[serde(rename = "p2c", alias = "p2c_least_request")]
    P2cLeastRequest,
    /// Two random candidates, the lower `latency_ewma * (in_flight + 1)` wins.
    PeakEwma,
    /// Each candidate in turn.
    RoundRobin,
    /// Smooth weighted round robin over a precomputed schedule.
    WeightedRoundRobin,
}

/// Where an endpoint entry points to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// A literal socket address.
    Static(SocketAddr),
    /// A host name and port to resolve.
    Name(String),
}

/// One parsed entry of [`PoolConfig::endpoints`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointSpec {
    pub(crate) target: Target,
    pub(crate) weight: u32,
}

impl PoolConfig {
    /// Checks the configuration without building a pool, e.g. before a reload
    /// that must apply to several pools or to none.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.validate().map(|_| ())
    }

    /// Checks every field and parses the endpoint entries.
    pub(crate) fn validate(&self) -> Result<Vec<EndpointSpec>, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::ZeroAttempts);
        }
        let ratio_ok = self.retry_budget_ratio.is_finite() && self.retry_budget_ratio >= 0.0;
        if !ratio_ok {
            return Err(ConfigError::BadRatio(self.retry_budget_ratio));
        }
        self.validate_durations()?;
        self.health.validate()?;
        self.endpoints.iter().map(|e| parse_endpoint(e)).collect()
    }

    fn validate_durations(&self) -> Result<(), ConfigError> {
        let fields = [
            ("connect_timeout", self.connect_timeout),
            ("try_timeout", self.try_timeout),
            ("request_timeout", self.request_timeout),
            ("resolve_interval", self.resolve_interval),
            ("idle_timeout", self.idle_timeout),
        ];
        match fields.iter().find(|(_, d)| d.is_zero()) {
            Some((name, _)) => Err(ConfigError::ZeroValue(name)),
            None => Ok(()),
        }
    }
}

impl HealthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') {
            return Err(ConfigError::BadHealthPath(self.path.clone()));
        }
        if self.consecutive_failures == 0 {
            return Err(ConfigError::ZeroValue("health.consecutive_failures"));
        }
        if self.interval > Duration::ZERO && self.timeout.is_zero() {
            return Err(ConfigError::ZeroValue("health.timeout"));
        }
        if self.eject_base.is_zero() || self.eject_max < self.eject_base {
            return Err(ConfigError::BadEjection);
        }
        Ok(())
    }
}

/// Parses `"addr"`, `"addr@weight"`, `"host:port"` or `"host:port@weight"`.
pub(crate) fn parse_endpoint(text: &str) -> Result<EndpointSpec, ConfigError> {
    let bad = |reason: &'static str| ConfigError::BadEndpoint {
        endpoint: text.to_owned(),
        reason,
    };
    let (target, weight) = match text.rsplit_once('@') {
        Some((t, w)) => (
            t,
            w.parse::<u32>()
                .map_err(|_| bad("weight is not a number"))?,
        ),
        None => (text, 1),
    };
    if weight == 0 || weight > MAX_WEIGHT {
        return Err(bad("weight must be within 1..=100"));
    }
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok(EndpointSpec {
            target: Target::Static(addr),
            weight,
        });
    }
    let (host, port) = target.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
    if host.is_empty() || host.contains(['/', ' ', '[']) {
        return Err(bad("bad host name"));
    }
    port.parse::<u16>().map_err(|_| bad("bad port"))?;
    Ok(EndpointSpec {
        target: Target::Name(target.to_owned()),
        weight,
    })
}

/// Serde helper: a [`Duration`] written as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        s.serialize_u64(ms)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_humane() {
        let cfg = PoolConfig::default();
        assert_eq!(cfg.balance, Balance::P2cLeastRequest);
        assert_eq!(cfg.try_timeout, Duration::from_secs(2));
        assert_eq!(cfg.health.path, "/health");
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn json_uses_millisecond_fields_and_rejects_unknown_ones() {
        let json = r#"{"name":"calc","endpoints":["127.0.0.1:1@3"],"balance":"peak_ewma",
            "try_timeout_ms":250,"health":{"interval_ms":0}}"#;
        let cfg: PoolConfig = serde_json::from_str(json).expect("valid config");
        assert_eq!(cfg.try_timeout, Duration::from_millis(250));
        assert_eq!(cfg.health.interval, Duration::ZERO);
        assert_eq!(cfg.balance, Balance::PeakEwma);
        assert_eq!(cfg.max_attempts, 3);
        let unknown = serde_json::from_str::<PoolConfig>(r#"{"nmae":"x"}"#);
        assert!(unknown.is_err());
    }

    #[test]
    fn balance_names_are_short() {
        let b: Balance = serde_json::from_str("\"p2c\"").expect("p2c");
        assert_eq!(b, Balance::P2cLeastRequest);
        let b: Balance = serde_json::from_str("\"weighted_round_robin\"").expect("wrr");
        assert_eq!(b, Balance::WeightedRoundRobin);
    }

    #[test]
    fn endpoints_parse_with_weights_and_names() {
        let spec = parse_endpoint("127.0.0.1:9001@3").expect("static");
        assert_eq!(spec.weight, 3);
        assert!(matches!(spec.target, Target::Static(_)));
        let spec = parse_endpoint("calc:9000").expect("name");
        assert_eq!(spec.target, Target::Name("calc:9000".to_owned()));
        assert!(parse_endpoint("[::1]:80").is_ok());
        assert!(parse_endpoint("calc").is_err());
        assert!(parse_endpoint("calc:x").is_err());
        assert!(parse_endpoint("127.0.0.1:1@0").is_err());
    }

    #[test]
    fn invalid_values_are_refused() {
        let cfg = PoolConfig {
            max_attempts: 0,
            ..PoolConfig::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::ZeroAttempts)));
        let cfg = PoolConfig {
            retry_budget_ratio: f64::NAN,
            ..PoolConfig::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::BadRatio(_))));
    }
}
