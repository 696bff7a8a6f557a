//! Limits that keep hostile input from costing unbounded memory or time.

use crate::error::{ErrorCode, RpcError};
use serde::{Deserialize, Serialize};

/// Input limits, all configurable; the defaults suit a public endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most arguments one call may carry.
    pub max_args: usize,
    /// Deepest nesting of JSON arrays and objects.
    pub max_depth: usize,
    /// Most calls in one batch.
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_args: 100_000,
            max_depth: 32,
            max_batch: 1_000,
        }
    }
}

impl Limits {
    /// Refuses a body longer than `max_body_bytes`.
    pub fn check_body_len(&self, len: usize) -> Result<(), RpcError> {
        if len > self.max_body_bytes {
            return Err(body_too_large(self.max_body_bytes));
        }
        Ok(())
    }

    /// Refuses JSON nested deeper than `max_depth`, before any parser recurses
    /// into it. Runs in one pass over the bytes without allocating.
    pub fn check_depth(&self, body: &[u8]) -> Result<(), RpcError> {
        match nesting_depth_exceeds(body, self.max_depth) {
            false => Ok(()),
            true => Err(RpcError::new(
                ErrorCode::InvalidRequest,
                format!("JSON nested deeper than {} levels", self.max_depth),
            )),
        }
    }
}

/// The `payload_too_large` error for a body over `limit` bytes.
pub fn body_too_large(limit: usize) -> RpcError {
    RpcError::new(
        ErrorCode::PayloadTooLarge,
        format!("body larger than {limit} bytes"),
    )
}

/// Whether brackets outside strings nest deeper than `max`. Invalid JSON is
/// left for the parser to describe.
fn nesting_depth_exceeds(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_only_brackets_outside_strings() {
        let limits = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        assert!(limits.check_depth(br#"{"a":[1,2]}"#).is_ok());
        assert!(limits.check_depth(br#"{"a":"[[[[[\"[[["}"#).is_ok());
        assert!(limits.check_depth(br#"{"a":[[1]]}"#).is_err());
    }

    #[test]
    fn body_limit_is_inclusive() {
        let limits = Limits {
            max_body_bytes: 10,
            ..Limits::default()
        };
        assert!(limits.check_body_len(10).is_ok());
        let err = limits.check_body_len(11).expect_err("over the limit");
        assert_eq!(err.code, ErrorCode::PayloadTooLarge);
    }
}
