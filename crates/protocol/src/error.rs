//! Stable error codes and the error type every handler returns.
//!
//! A code never changes once published: clients match on it. Each code fixes
//! the HTTP status of a native answer and the numeric code of a JSON-RPC one.

use serde::Serialize;
use std::fmt;

/// The stable error codes of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON.
    ParseError,
    /// Valid JSON, but not a request: missing method, wrong types, bad id.
    InvalidRequest,
    /// No service or operation of that name.
    MethodNotFound,
    /// The arguments do not suit the operation.
    InvalidParams,
    /// A divisor is zero.
    DivisionByZero,
    /// The result does not fit the number type.
    Overflow,
    /// The body, the batch or the argument list is over a limit.
    PayloadTooLarge,
    /// No answer within the deadline.
    Timeout,
    /// No healthy instance can take the request.
    Unavailable,
    /// The process sheds load; try again later.
    Overloaded,
    /// A fault of ours; details are in our logs, never in the answer.
    Internal,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::ParseError,
        ErrorCode::InvalidRequest,
        ErrorCode::MethodNotFound,
        ErrorCode::InvalidParams,
        ErrorCode::DivisionByZero,
        ErrorCode::Overflow,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Timeout,
        ErrorCode::Unavailable,
        ErrorCode::Overloaded,
        ErrorCode::Internal,
    ];

    /// The code as it appears on the wire and in metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ParseError => "parse_error",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MethodNotFound => "method_not_found",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::DivisionByZero => "division_by_zero",
            ErrorCode::Overflow => "overflow",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Internal => "internal",
        }
    }

    /// HTTP status of a native answer carrying this error.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::ParseError | ErrorCode::InvalidRequest => 400,
            ErrorCode::MethodNotFound => 404,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::InvalidParams | ErrorCode::DivisionByZero | ErrorCode::Overflow => 422,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable | ErrorCode::Overloaded => 503,
            ErrorCode::Timeout => 504,
        }
    }

    /// JSON-RPC 2.0 numeric code: the spec's own where one fits, else one of the
    /// implementation-defined server errors (-32000 to -32099).
    pub const fn jsonrpc_code(self) -> i32 {
        match self {
            ErrorCode::ParseError => -32700,
            ErrorCode::InvalidRequest => -32600,
            ErrorCode::MethodNotFound => -32601,
            ErrorCode::InvalidParams => -32602,
            ErrorCode::Internal => -32603,
            ErrorCode::DivisionByZero => -32001,
            ErrorCode::Overflow => -32002,
            ErrorCode::PayloadTooLarge => -32003,
            ErrorCode::Timeout => -32004,
            ErrorCode::Unavailable => -32005,
            ErrorCode::Overloaded => -32006,
        }
    }

    /// Whether the client is at fault (4xx), as opposed to us or an upstream.
    pub const fn is_client_error(self) -> bool {
        self.http_status() < 500
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer: a stable code and a message for people.
///
/// Messages of client errors say what was wrong with the input; messages of
/// internal errors stay generic, the detail goes to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RpcError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl RpcError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// `parse_error` with the parser's own explanation.
    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ParseError, message)
    }

    /// `invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// `invalid_params`.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParams, message)
    }

    /// `method_not_found` for a method name.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            ErrorCode::MethodNotFound,
            format!("no method named {:?}", truncate(method, 64)),
        )
    }

    /// `internal`, with a message safe to show to clients.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, for messages that
/// quote client input.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_wire_name_and_jsonrpc_code() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        let mut codes: Vec<_> = ErrorCode::ALL.iter().map(|c| c.jsonrpc_code()).collect();
        names.sort_unstable();
        names.dedup();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert_eq!(codes.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn serde_name_matches_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).expect("serialises");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
