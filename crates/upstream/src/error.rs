//! Errors of the pool: bad configuration, and requests that got no usable answer.

use http::StatusCode;
use hyper_util::client::legacy::Error as ClientError;

/// A pool configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The pool has no name.
    #[error("pool name is empty")]
    EmptyName,
    /// `max_attempts` is zero, so no request could ever be sent.
    #[error("max_attempts must be at least 1")]
    ZeroAttempts,
    /// The retry budget ratio is negative or not a number.
    #[error("retry_budget_ratio must be a finite number >= 0, got {0}")]
    BadRatio(f64),
    /// A duration or count that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroValue(&'static str),
    /// The health path is not an absolute path.
    #[error("health.path must start with '/', got {0:?}")]
    BadHealthPath(String),
    /// `eject_base` is zero or above `eject_max`.
    #[error("health.eject_base must be > 0 and <= health.eject_max")]
    BadEjection,
    /// An endpoint entry cannot be parsed.
    #[error("bad endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        /// The entry as written.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `Pool::new` was called outside a Tokio runtime.
    #[error("the pool must be created inside a tokio runtime")]
    NoRuntime,
}

/// Why a request sent through a pool got no usable response.
///
/// Every case is the upstream side's fault or a lack of capacity, except
/// [`UpstreamError::InvalidRequest`], which is the caller's.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No endpoint is healthy, or every healthy one was already tried.
    #[error("no healthy endpoint")]
    NoHealthyEndpoint,
    /// The overall deadline, or the last per-try timeout, passed before response headers.
    #[error("upstream timed out")]
    Timeout,
    /// The last try could not connect (refused, unreachable, connect timeout).
    #[error("cannot connect to upstream")]
    Connect(#[source] ClientError),
    /// The connection closed before any response arrived.
    #[error("upstream closed the connection")]
    Closed(#[source] ClientError),
    /// The request was sent but the exchange failed (bad answer, reset).
    #[error("upstream request failed")]
    Http(#[source] ClientError),
    /// The request cannot be forwarded as given (bad path or header).
    #[error("request cannot be forwarded: {0}")]
    InvalidRequest(String),
    /// The pool was shut down.
    #[error("pool is shut down")]
    Shutdown,
}

impl UpstreamError {
    /// Whether a deadline ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// Whether no connection could be made on the last try.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }

    /// Whether no endpoint was available at all.
    pub fn is_no_endpoint(&self) -> bool {
        matches!(self, Self::NoHealthyEndpoint)
    }

    /// The status a proxy should answer with: 503 when there is no capacity,
    /// 504 on timeout, 502 on a bad upstream answer, 400 for an unusable request.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoHealthyEndpoint | Self::Connect(_) | Self::Shutdown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Closed(_) | Self::Http(_) => StatusCode::BAD_GATEWAY,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_fault() {
        assert_eq!(UpstreamError::NoHealthyEndpoint.status(), 503);
        assert_eq!(UpstreamError::Timeout.status(), 504);
        assert_eq!(UpstreamError::InvalidRequest("x".into()).status(), 400);
        assert!(UpstreamError::Timeout.is_timeout());
        assert!(!UpstreamError::Shutdown.is_timeout());
    }
}
