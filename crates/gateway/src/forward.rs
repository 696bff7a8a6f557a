//! Forwarding one call: the request sent upstream, the answer relayed back, and
//! the error answers the gateway writes itself.
//!
//! The body goes upstream as the client sent it. Only the headers a service needs
//! travel with it: the content type, `X-Request-Id`, the W3C trace context and
//! the client's deadline. The instance's answer is relayed as it streams, with
//! hop-by-hop headers removed and the request id and trace context made sure of.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use protocol::{ErrorCode, Flavor, RequestId, RpcError};
use upstream::UpstreamError;

use crate::metrics::Outcome;

/// Body of every gateway response: written here, or relayed from an instance.
pub(crate) type GwBody = Either<Full<Bytes>, Incoming>;

/// W3C trace context headers, passed through unchanged.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const REQUEST_ID: HeaderName = HeaderName::from_static(protocol::REQUEST_ID_HEADER);
const DEADLINE: HeaderName = HeaderName::from_static(upstream::DEADLINE_HEADER);

/// Headers of the answer that describe one hop and must not be relayed.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// The client headers that travel upstream with every call of a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Forwarded {
    traceparent: Option<HeaderValue>,
    tracestate: Option<HeaderValue>,
    deadline: Option<HeaderValue>,
}

impl Forwarded {
    /// Picks the forwarded headers out of a client request.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        Forwarded {
            traceparent: headers.get(&TRACEPARENT).cloned(),
            tracestate: headers.get(&TRACESTATE).cloned(),
            deadline: headers.get(&DEADLINE).cloned(),
        }
    }

    /// `POST /rpc` carrying `body` and these headers, for [`upstream::Pool::send`].
    pub(crate) fn request(&self, body: Bytes, request_id: &RequestId) -> Request<Bytes> {
        let mut req = Request::new(body);
        *req.method_mut() = Method::POST;
        *req.uri_mut() = Uri::from_static("/rpc");
        let headers = req.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(protocol::CONTENT_TYPE),
        );
        if let Ok(id) = HeaderValue::from_str(request_id.as_str()) {
            headers.insert(REQUEST_ID, id);
        }
        let extra = [
            (TRACEPARENT, &self.traceparent),
            (TRACESTATE, &self.tracestate),
            (DEADLINE, &self.deadline),
        ];
        for (name, value) in extra {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
        req
    }

    /// Relays an instance's answer: same status, headers and streaming body.
    pub(crate) fn relay(
        &self,
        resp: Response<Incoming>,
        request_id: &RequestId,
    ) -> Response<GwBody> {
        let (parts, body) = resp.into_parts();
        let mut out = Response::new(Either::Right(body));
        *out.status_mut() = parts.status;
        *out.headers_mut() = parts.headers;
        let headers = out.headers_mut();
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        if !headers.contains_key(&REQUEST_ID)
            && let Ok(id) = HeaderValue::from_str(request_id.as_str())
        {
            headers.insert(REQUEST_ID, id);
        }
        self.echo_trace(headers);
        out
    }

    /// Adds the client's trace context to an answer that lacks it.
    pub(crate) fn echo_trace(&self, headers: &mut HeaderMap) {
        if let Some(tp) = &self.traceparent {
            headers.entry(TRACEPARENT).or_insert_with(|| tp.clone());
        }
        if let Some(ts) = &self.tracestate {
            headers.entry(TRACESTATE).or_insert_with(|| ts.clone());
        }
    }
}

/// The error answered for a call the pool could not deliver, and its outcome.
pub(crate) fn upstream_failure(error: &UpstreamError, service: &str) -> (RpcError, Outcome) {
    match error {
        UpstreamError::NoHealthyEndpoint | UpstreamError::Connect(_) | UpstreamError::Shutdown => (
            RpcError::new(
                ErrorCode::Unavailable,
                format!("no instance of {service} can take the call"),
            ),
            Outcome::unavailable,
        ),
        UpstreamError::Timeout => (
            RpcError::new(
                ErrorCode::Timeout,
                format!("{service} did not answer in time"),
            ),
            Outcome::timeout,
        ),
        UpstreamError::InvalidRequest(message) => {
            (RpcError::invalid_request(message.clone()), Outcome::invalid)
        }
        // Closed or failed mid-exchange; the detail is logged, not answered.
        _ => (
            RpcError::new(ErrorCode::Unavailable, format!("{service} failed the call")),
            Outcome::failed,
        ),
    }
}

/// A single-call answer written by the gateway, in the call's dialect.
pub(crate) fn error_answer(
    flavor: Flavor<'_>,
    request_id: &RequestId,
    error: &RpcError,
) -> Response<GwBody> {
    let status = protocol::answer::http_status(flavor, Err(error.code));
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let response = match protocol::encode_single(flavor, request_id, Err(error)) {
        Some(body) => service::http::json_response(status, request_id, body),
        None => service::http::empty_response(StatusCode::NO_CONTENT, request_id),
    };
    response.map(Either::Left)
}

/// The answer to a single call the pool could not deliver.
///
/// A failed exchange (the instance closed the connection or answered something
/// that is not HTTP) is the instance's fault, so it gets 502, as the load
/// balancer answers the same failure; the code alone would say 503, which
/// means no capacity. JSON-RPC answers stay 200 whatever they carry.
pub(crate) fn failure_answer(
    flavor: Flavor<'_>,
    request_id: &RequestId,
    error: &RpcError,
    outcome: Outcome,
) -> Response<GwBody> {
    let mut answer = error_answer(flavor, request_id, error);
    if outcome == Outcome::failed && answer.status() == StatusCode::SERVICE_UNAVAILABLE {
        *answer.status_mut() = StatusCode::BAD_GATEWAY;
    }
    answer
}

/// A response the gateway wrote, with its body type widened.
pub(crate) fn local(response: Response<Full<Bytes>>) -> Response<GwBody> {
    response.map(Either::Left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> RequestId {
        RequestId::parse("r-1").expect("valid id")
    }

    #[test]
    fn requests_carry_only_the_forwarded_headers() {
        let mut client = HeaderMap::new();
        client.insert(TRACEPARENT, HeaderValue::from_static("00-abc-def-01"));
        client.insert(DEADLINE, HeaderValue::from_static("250"));
        client.insert(header::COOKIE, HeaderValue::from_static("secret"));
        let req = Forwarded::of(&client).request(Bytes::from_static(b"{}"), &id());
        assert_eq!(req.uri(), "/rpc");
        assert_eq!(req.headers()[&REQUEST_ID], "r-1");
        assert_eq!(req.headers()[&TRACEPARENT], "00-abc-def-01");
        assert_eq!(req.headers()[&DEADLINE], "250");
        assert!(!req.headers().contains_key(header::COOKIE));
        assert_eq!(req.body().as_ref(), b"{}");
    }

    #[test]
    fn pool_errors_map_to_stable_codes() {
        let (err, outcome) = upstream_failure(&UpstreamError::NoHealthyEndpoint, "calc");
        assert_eq!(
            (err.code, outcome),
            (ErrorCode::Unavailable, Outcome::unavailable)
        );
        let (err, outcome) = upstream_failure(&UpstreamError::Timeout, "calc");
        assert_eq!((err.code, outcome), (ErrorCode::Timeout, Outcome::timeout));
    }

    #[test]
    fn a_failed_exchange_is_a_bad_gateway_and_no_capacity_stays_503() {
        let (failed, outcome) = upstream_failure(&UpstreamError::InvalidRequest("x".into()), "c");
        assert_eq!(outcome, Outcome::invalid);
        let native = failure_answer(Flavor::Native, &id(), &failed, outcome);
        assert_eq!(native.status(), StatusCode::BAD_REQUEST);

        let err = RpcError::new(ErrorCode::Unavailable, "calc failed the call");
        let native = failure_answer(Flavor::Native, &id(), &err, Outcome::failed);
        assert_eq!(native.status(), StatusCode::BAD_GATEWAY);
        let rpc = Flavor::JsonRpc {
            id: Some(serde_json::value::RawValue::NULL),
        };
        assert_eq!(
            failure_answer(rpc, &id(), &err, Outcome::failed).status(),
            StatusCode::OK
        );
        let (none, outcome) = upstream_failure(&UpstreamError::NoHealthyEndpoint, "calc");
        let native = failure_answer(Flavor::Native, &id(), &none, outcome);
        assert_eq!(native.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn error_answers_follow_the_dialect() {
        let err = RpcError::new(ErrorCode::Unavailable, "down");
        let native = error_answer(Flavor::Native, &id(), &err);
        assert_eq!(native.status(), StatusCode::SERVICE_UNAVAILABLE);
        let rpc = Flavor::JsonRpc {
            id: Some(serde_json::value::RawValue::NULL),
        };
        assert_eq!(error_answer(rpc, &id(), &err).status(), StatusCode::OK);
        let note = Flavor::JsonRpc { id: None };
        assert_eq!(
            error_answer(note, &id(), &err).status(),
            StatusCode::NO_CONTENT
        );
    }
}
