//! Reading request bodies: one envelope or a batch of them, native or JSON-RPC.
//!
//! Parsing borrows from the body and never builds a tree of the arguments:
//! `data` and `params` stay raw JSON until the operation that owns them reads
//! them. A malformed item of a batch fails alone; its siblings still run.

use crate::error::{ErrorCode, RpcError};
use crate::limits::Limits;
use crate::request_id::RequestId;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Which dialect a request spoke, and so how to answer it.
#[derive(Debug, Clone, Copy)]
pub enum Flavor<'a> {
    /// The native envelope: `method`, `data`, `requestId`.
    Native,
    /// JSON-RPC 2.0. `id` is `None` for a notification, which gets no answer.
    JsonRpc {
        /// The raw `id` member, echoed as it came.
        id: Option<&'a RawValue>,
    },
}

impl Flavor<'_> {
    /// Whether this is the native dialect.
    pub fn is_native(&self) -> bool {
        matches!(self, Flavor::Native)
    }

    /// Whether the request expects no answer (a JSON-RPC notification).
    pub fn is_notification(&self) -> bool {
        matches!(self, Flavor::JsonRpc { id: None })
    }
}

/// One parsed call.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// Full method name, `service.operation`.
    pub method: Cow<'a, str>,
    /// Dialect, with the JSON-RPC id.
    pub flavor: Flavor<'a>,
    /// The `requestId` member of a native envelope, when present.
    pub request_id: Option<RequestId>,
    /// Raw `data` (native) or `params` (JSON-RPC), when present.
    pub params: Option<&'a RawValue>,
}

impl Envelope<'_> {
    /// The service part of the method: `calc` of `calc.summ`.
    pub fn service(&self) -> &str {
        split_method(&self.method).0
    }

    /// The operation part of the method: `summ` of `calc.summ`.
    pub fn operation(&self) -> &str {
        split_method(&self.method).1
    }
}

/// Splits `service.operation` at the first dot; no dot means no service.
pub fn split_method(method: &str) -> (&str, &str) {
    method.split_once('.').unwrap_or(("", method))
}

/// A call that could not be parsed, with what is needed to answer it.
#[derive(Debug, Clone)]
pub struct Rejected<'a> {
    /// How to answer: JSON-RPC errors carry the id when it could be read.
    pub flavor: Flavor<'a>,
    /// The native `requestId`, when it could be read.
    pub request_id: Option<RequestId>,
    /// Why the call was refused.
    pub error: RpcError,
}

/// One item of a body: a call, or the reason it was refused.
pub type Item<'a> = Result<Envelope<'a>, Rejected<'a>>;

/// A parsed body.
#[derive(Debug)]
pub enum Body<'a> {
    /// A single call.
    Single(Item<'a>),
    /// A JSON array of calls, answered by an array in the same order.
    Batch(Vec<Item<'a>>),
}

/// Parses a request body under `limits`.
///
/// Errors that concern the body as a whole (size, depth, syntax, an empty or
/// oversized batch) are returned as `Err`; they are answered as one error
/// with no request id of the client's.
pub fn parse_body<'a>(body: &'a [u8], limits: &Limits) -> Result<Body<'a>, RpcError> {
    limits.check_body_len(body.len())?;
    limits.check_depth(body)?;
    let text = std::str::from_utf8(body)
        .map_err(|e| RpcError::parse(format!("body is not UTF-8: {e}")))?;

    match text.trim_start().as_bytes().first() {
        Some(b'[') => parse_batch(text, limits).map(Body::Batch),
        Some(_) => {
            let raw: &RawValue = serde_json::from_str(text).map_err(json_error)?;
            Ok(Body::Single(parse_item(raw)))
        }
        None => Err(RpcError::parse("empty body")),
    }
}

fn parse_batch<'a>(text: &'a str, limits: &Limits) -> Result<Vec<Item<'a>>, RpcError> {
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(json_error)?;
    if items.is_empty() {
        return Err(RpcError::invalid_request("empty batch"));
    }
    if items.len() > limits.max_batch {
        return Err(RpcError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "batch of {} calls, the limit is {}",
                items.len(),
                limits.max_batch
            ),
        ));
    }
    Ok(items.into_iter().map(parse_item).collect())
}

/// The members we look at; anything else is ignored. Every member stays raw so
/// that a wrong type in one still lets us read the others to answer.
#[derive(Deserialize, Default)]
pub(crate) struct Wire<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow, rename = "requestId")]
    request_id: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

impl<'a> Wire<'a> {
    /// Drops the arguments, read only as present or not.
    pub(crate) fn forget_args(&mut self) {
        (self.data, self.params) = (None, None);
    }

    /// The place of a member we look at, by its key.
    pub(crate) fn slot(&mut self, key: &str) -> Option<&mut Option<&'a RawValue>> {
        match key {
            "jsonrpc" => Some(&mut self.jsonrpc),
            "method" => Some(&mut self.method),
            "id" => Some(&mut self.id),
            "requestId" => Some(&mut self.request_id),
            "data" => Some(&mut self.data),
            "params" => Some(&mut self.params),
            _ => None,
        }
    }
}

/// The refusal of a call that repeats a member, as the full parser words it.
pub(crate) fn duplicate<'a>(key: &str) -> Rejected<'a> {
    let error = RpcError::invalid_request(format!("duplicate field `{key}`"));
    reject(Flavor::Native, None, error)
}

/// Parses one call from raw JSON already known to be valid.
pub fn parse_item(raw: &RawValue) -> Item<'_> {
    if !raw.get().starts_with('{') {
        return Err(Rejected {
            flavor: Flavor::Native,
            request_id: None,
            error: RpcError::invalid_request("a call must be a JSON object"),
        });
    }
    let wire: Wire<'_> = serde_json::from_str(raw.get()).map_err(|e| Rejected {
        flavor: Flavor::Native,
        request_id: None,
        error: json_error(e),
    })?;
    parse_wire(wire)
}

/// Reads a call from its members.
pub(crate) fn parse_wire(wire: Wire<'_>) -> Item<'_> {
    match wire.jsonrpc {
        Some(version) => parse_jsonrpc(wire, version),
        None => parse_native(wire),
    }
}

fn parse_native(wire: Wire<'_>) -> Item<'_> {
    let request_id = match wire.request_id.map(read_request_id).transpose() {
        Ok(id) => id,
        Err(error) => return Err(reject(Flavor::Native, None, error)),
    };
    let method = match read_method(wire.method) {
        Ok(m) => m,
        Err(error) => return Err(reject(Flavor::Native, request_id, error)),
    };
    Ok(Envelope {
        method,
        flavor: Flavor::Native,
        request_id,
        params: wire.data.filter(|d| d.get() != "null"),
    })
}

fn parse_jsonrpc<'a>(wire: Wire<'a>, version: &'a RawValue) -> Item<'a> {
    let id = wire.id.filter(|id| is_valid_id(id));
    // An id of the wrong type cannot be echoed: the spec answers with null.
    let flavor = Flavor::JsonRpc {
        id: id.or_else(|| wire.id.map(|_| RawValue::NULL)),
    };
    if version.get() != "\"2.0\"" {
        let error = RpcError::invalid_request("jsonrpc must be \"2.0\"");
        return Err(reject(flavor, None, error));
    }
    if wire.id.is_some() && id.is_none() {
        let error = RpcError::invalid_request("id must be a string, a number or null");
        return Err(reject(flavor, None, error));
    }
    let method = read_method(wire.method).map_err(|e| reject(flavor, None, e))?;
    Ok(Envelope {
        method,
        flavor,
        request_id: None,
        params: wire.params,
    })
}

fn reject<'a>(flavor: Flavor<'a>, request_id: Option<RequestId>, error: RpcError) -> Rejected<'a> {
    Rejected {
        flavor,
        request_id,
        error,
    }
}

fn read_method(raw: Option<&RawValue>) -> Result<Cow<'_, str>, RpcError> {
    let raw = raw.ok_or_else(|| RpcError::invalid_request("method is missing"))?;
    let method =
        raw_str(raw).ok_or_else(|| RpcError::invalid_request("method must be a string"))?;
    if method.is_empty() {
        return Err(RpcError::invalid_request("method is empty"));
    }
    Ok(method)
}

fn read_request_id(raw: &RawValue) -> Result<RequestId, RpcError> {
    let text =
        raw_str(raw).ok_or_else(|| RpcError::invalid_request("requestId must be a string"))?;
    RequestId::parse(&text)
}

/// Reads a JSON string without copying unless it holds escapes.
pub fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

fn is_valid_id(raw: &RawValue) -> bool {
    matches!(
        raw.get().as_bytes().first(),
        Some(b'"' | b'-' | b'0'..=b'9' | b'n')
    )
}

/// Maps a serde_json error to `parse_error` (bad syntax) or `invalid_request`
/// (valid JSON of the wrong shape).
pub fn json_error(e: serde_json::Error) -> RpcError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => RpcError::parse(e.to_string()),
        Category::Data => RpcError::invalid_request(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(body: &str) -> Item<'_> {
        match parse_body(body.as_bytes(), &Limits::default()).expect("parses") {
            Body::Single(item) => item,
            Body::Batch(_) => panic!("not a batch"),
        }
    }

    #[test]
    fn native_envelope_is_read() {
        let body = r#"{"method":"calc.summ","data":{"args":[1,2]},"requestId":"r1"}"#;
        let env = single(body).expect("valid");
        assert_eq!(env.service(), "calc");
        assert_eq!(env.operation(), "summ");
        assert_eq!(env.request_id.expect("id").as_str(), "r1");
        assert_eq!(env.params.expect("data").get(), r#"{"args":[1,2]}"#);
        assert!(env.flavor.is_native());
    }

    #[test]
    fn jsonrpc_request_and_notification() {
        let env = single(r#"{"jsonrpc":"2.0","method":"calc.mult","params":[2,3],"id":7}"#)
            .expect("valid");
        assert!(matches!(env.flavor, Flavor::JsonRpc { id: Some(id) } if id.get() == "7"));
        let note =
            single(r#"{"jsonrpc":"2.0","method":"calc.mult","params":[2,3]}"#).expect("valid");
        assert!(note.flavor.is_notification());
    }

    #[test]
    fn wrong_version_keeps_the_id_for_the_answer() {
        let rejected = single(r#"{"jsonrpc":"1.0","method":"m","id":"x"}"#).expect_err("bad");
        assert_eq!(rejected.error.code, ErrorCode::InvalidRequest);
        assert!(matches!(rejected.flavor, Flavor::JsonRpc { id: Some(id) } if id.get() == "\"x\""));
    }

    #[test]
    fn missing_or_mistyped_method_is_invalid_request() {
        for body in [
            r#"{"data":{}}"#,
            r#"{"method":5}"#,
            r#"{"method":""}"#,
            "[1]",
        ] {
            let err = match parse_body(body.as_bytes(), &Limits::default()).expect("json") {
                Body::Single(item) => item.expect_err("invalid").error,
                Body::Batch(items) => items[0].clone().expect_err("invalid").error,
            };
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{body}");
        }
    }

    #[test]
    fn syntax_errors_are_parse_errors() {
        for body in ["{", r#"{"method":"a""#, "nope", "", "\u{feff}{}"] {
            let err = parse_body(body.as_bytes(), &Limits::default()).expect_err(body);
            assert_eq!(err.code, ErrorCode::ParseError, "{body:?}");
        }
        let err = parse_body(b"{\"method\":\"\xff\"}", &Limits::default()).expect_err("utf8");
        assert_eq!(err.code, ErrorCode::ParseError);
    }

    #[test]
    fn batches_keep_order_and_fail_item_by_item() {
        let body = r#"[{"method":"a.b"}, 3, {"jsonrpc":"2.0","method":"c.d","id":1}]"#;
        let Ok(Body::Batch(items)) = parse_body(body.as_bytes(), &Limits::default()) else {
            panic!("batch expected");
        };
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_err() && items[2].is_ok());
    }

    #[test]
    fn empty_and_oversized_batches_are_refused() {
        let err = parse_body(b" [ ]", &Limits::default()).expect_err("empty");
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        let limits = Limits {
            max_batch: 2,
            ..Limits::default()
        };
        let err = parse_body(
            br#"[{"method":"a"},{"method":"a"},{"method":"a"}]"#,
            &limits,
        )
        .expect_err("too many");
        assert_eq!(err.code, ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn escaped_method_names_are_decoded() {
        let env = single(r#"{"method":"calc.\u0073umm"}"#).expect("valid");
        assert_eq!(env.method, "calc.summ");
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let body = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = parse_body(body.as_bytes(), &Limits::default()).expect_err("deep");
        assert_eq!(err.code, ErrorCode::InvalidRequest);
    }
}
