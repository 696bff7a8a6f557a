//! Writing answers in the dialect of the request.

use crate::envelope::Flavor;
use crate::error::{ErrorCode, RpcError};
use crate::request_id::RequestId;
use serde::Serialize;
use serde_json::value::RawValue;

/// What a call produced: a raw JSON result or an error.
pub type CallResult<'r> = Result<&'r RawValue, &'r RpcError>;

#[derive(Serialize)]
struct NativeAnswer<'a> {
    #[serde(rename = "requestId")]
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<NativeError<'a>>,
}

#[derive(Serialize)]
struct NativeError<'a> {
    code: ErrorCode,
    message: &'a str,
}

#[derive(Serialize)]
struct JsonRpcAnswer<'a> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JsonRpcError<'a>>,
}

#[derive(Serialize)]
struct JsonRpcError<'a> {
    code: i32,
    message: &'a str,
    data: ErrorData,
}

/// The stable string code travels in `data`, so JSON-RPC clients can match on
/// it as native clients do.
#[derive(Serialize)]
struct ErrorData {
    code: ErrorCode,
}

/// Appends the answer to one call to `out`. Writes nothing for a notification
/// and returns whether anything was written.
pub fn write_answer(
    out: &mut Vec<u8>,
    flavor: Flavor<'_>,
    request_id: &RequestId,
    result: CallResult<'_>,
) -> bool {
    let written = match flavor {
        Flavor::Native => serde_json::to_writer(&mut *out, &native(request_id, result)),
        Flavor::JsonRpc { id: None } => return false,
        Flavor::JsonRpc { id: Some(id) } => serde_json::to_writer(&mut *out, &jsonrpc(id, result)),
    };
    // Serialising borrowed strings and pre-validated raw JSON into a Vec
    // cannot fail; the assertion documents that.
    debug_assert!(written.is_ok());
    true
}

fn native<'a>(request_id: &'a RequestId, result: CallResult<'a>) -> NativeAnswer<'a> {
    NativeAnswer {
        request_id: request_id.as_str(),
        result: result.ok(),
        error: result.err().map(|e| NativeError {
            code: e.code,
            message: &e.message,
        }),
    }
}

fn jsonrpc<'a>(id: &'a RawValue, result: CallResult<'a>) -> JsonRpcAnswer<'a> {
    JsonRpcAnswer {
        jsonrpc: "2.0",
        id,
        result: result.ok(),
        error: result.err().map(|e| JsonRpcError {
            code: e.code.jsonrpc_code(),
            message: &e.message,
            data: ErrorData { code: e.code },
        }),
    }
}

/// The answer to a single call, or `None` for a notification.
pub fn encode_single(
    flavor: Flavor<'_>,
    request_id: &RequestId,
    result: CallResult<'_>,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(96);
    write_answer(&mut out, flavor, request_id, result).then_some(out)
}

/// Joins already-encoded answers into a batch answer, skipping notifications.
/// `None` when every call was a notification: the spec says answer nothing.
pub fn encode_batch<'a>(answers: impl IntoIterator<Item = Option<&'a [u8]>>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    for answer in answers.into_iter().flatten() {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(answer);
    }
    out.push(b']');
    (out.len() > 2).then_some(out)
}

/// An error that concerns the whole body (bad JSON, over a limit), answered in
/// the dialect the body seems to speak: JSON-RPC when it mentions `jsonrpc`.
pub fn encode_body_error(body: &[u8], request_id: &RequestId, error: &RpcError) -> Vec<u8> {
    let flavor = match memmem(body, b"\"jsonrpc\"") {
        true => Flavor::JsonRpc {
            id: Some(RawValue::NULL),
        },
        false => Flavor::Native,
    };
    encode_single(flavor, request_id, Err(error)).unwrap_or_default()
}

/// HTTP status of a single answer: JSON-RPC answers are 200 whatever they
/// carry (as JSON-RPC clients expect), native ones follow their error code.
pub fn http_status(flavor: Flavor<'_>, result: Result<(), ErrorCode>) -> u16 {
    match (flavor, result) {
        (Flavor::JsonRpc { id: None }, _) => 204,
        (_, Ok(())) | (Flavor::JsonRpc { .. }, Err(_)) => 200,
        (Flavor::Native, Err(code)) => code.http_status(),
    }
}

fn memmem(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> RequestId {
        RequestId::parse("r-1").expect("valid")
    }

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).expect("json")
    }

    #[test]
    fn native_result_and_error() {
        let ok = encode_single(Flavor::Native, &id(), Ok(raw("130"))).expect("answer");
        assert_eq!(ok, br#"{"requestId":"r-1","result":130}"#);
        let err = RpcError::new(ErrorCode::DivisionByZero, "argument 1 is zero");
        let out = encode_single(Flavor::Native, &id(), Err(&err)).expect("answer");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"{"requestId":"r-1","error":{"code":"division_by_zero","message":"argument 1 is zero"}}"#
        );
    }

    #[test]
    fn jsonrpc_error_carries_numeric_and_string_codes() {
        let err = RpcError::invalid_params("argument 0 is not a number");
        let flavor = Flavor::JsonRpc {
            id: Some(raw("\"a\"")),
        };
        let out = encode_single(flavor, &id(), Err(&err)).expect("answer");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["id"], "a");
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(v["error"]["data"]["code"], "invalid_params");
    }

    #[test]
    fn notifications_get_nothing() {
        let flavor = Flavor::JsonRpc { id: None };
        assert!(encode_single(flavor, &id(), Ok(raw("1"))).is_none());
        assert!(encode_batch([None, None]).is_none());
        assert_eq!(
            encode_batch([Some(&b"1"[..]), None, Some(b"2")]).expect("some"),
            b"[1,2]"
        );
    }

    #[test]
    fn statuses_follow_the_dialect() {
        let rpc = Flavor::JsonRpc {
            id: Some(RawValue::NULL),
        };
        assert_eq!(http_status(Flavor::Native, Err(ErrorCode::Overflow)), 422);
        assert_eq!(http_status(rpc, Err(ErrorCode::Overflow)), 200);
        assert_eq!(http_status(Flavor::JsonRpc { id: None }, Ok(())), 204);
    }

    #[test]
    fn body_errors_guess_the_dialect() {
        let err = RpcError::parse("bad");
        let out = encode_body_error(br#"{"jsonrpc":"2.0","#, &id(), &err);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["error"]["code"], -32700);
        assert!(v["id"].is_null());
    }
}
