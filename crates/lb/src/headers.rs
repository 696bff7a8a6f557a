//! Header handling at the proxy boundary: framing checks, hop-by-hop removal,
//! and the `X-Forwarded-*`, `X-Request-Id` and `Host` headers.
//!
//! Framing: hyper already refuses a request whose `Content-Length` values
//! disagree, a non-chunked `Transfer-Encoding`, `Transfer-Encoding` on
//! HTTP/1.0 and malformed chunks (the body read fails). It merges identical
//! duplicate `Content-Length` lines into one, and lets `Transfer-Encoding` win
//! over `Content-Length` (RFC 9112 §6.3), dropping the latter. Since that last
//! case cannot be seen from here, `Transfer-Encoding` on a request is refused
//! unless `chunked_requests` is on. Either way the upstream gets a body
//! re-framed by its exact length, never the client's framing.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use protocol::RequestId;
use std::net::IpAddr;

use crate::config::ForwardedFor;

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Hop-by-hop headers removed in both directions, beyond those `Connection`
/// names and any `Proxy-*`.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Why a request's framing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// More than one `Content-Length` line reached us.
    DuplicateLength,
    /// `Transfer-Encoding` while chunked bodies are refused.
    TransferEncoding,
    /// Both `Content-Length` and `Transfer-Encoding`.
    Conflicting,
    /// A `Transfer-Encoding` other than one `chunked`: a list of codings, or
    /// several lines, that a server behind could decode otherwise.
    UnsupportedCoding,
}

impl FramingError {
    /// A message for the client.
    pub fn message(self) -> &'static str {
        match self {
            FramingError::DuplicateLength => "duplicate Content-Length",
            FramingError::TransferEncoding => {
                "Transfer-Encoding is not accepted; send Content-Length"
            }
            FramingError::Conflicting => "both Content-Length and Transfer-Encoding",
            FramingError::UnsupportedCoding => "only Transfer-Encoding: chunked is accepted",
        }
    }
}

/// Refuses any request whose body framing could be read two ways.
pub fn check_framing<B>(req: &Request<B>, chunked_ok: bool) -> Result<(), FramingError> {
    let headers = req.headers();
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    if lengths > 1 {
        return Err(FramingError::DuplicateLength);
    }
    if has_te && lengths > 0 {
        return Err(FramingError::Conflicting);
    }
    if has_te && !chunked_ok {
        return Err(FramingError::TransferEncoding);
    }
    if has_te && !is_plain_chunked(headers) {
        return Err(FramingError::UnsupportedCoding);
    }
    Ok(())
}

/// Whether `Transfer-Encoding` is one line saying `chunked` and nothing else.
/// hyper reads only the last coding of a list (`identity, chunked` and
/// `chunked, chunked` both decode as one `chunked`), so anything more is
/// refused rather than read one way here and maybe another way behind.
fn is_plain_chunked(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::TRANSFER_ENCODING).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked")),
        _ => false,
    }
}

/// Removes hop-by-hop headers: the fixed list, every `Proxy-*` header, and
/// the headers the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// Other headers that claim to name the client's address. In `Replace` mode
/// the client cannot be trusted, so a client's copy is dropped rather than
/// passed on beside the address we set.
const CLIENT_ADDRESS: [HeaderName; 2] = [header::FORWARDED, HeaderName::from_static("x-real-ip")];

/// Sets `X-Forwarded-For` (replacing or appending to the client's) and
/// `X-Forwarded-Proto` (always replaced). Replacing also drops the client's
/// `Forwarded` and `X-Real-IP`.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    mode: ForwardedFor,
    proto: &'static str,
) {
    let peer = peer.to_string();
    let value = match mode {
        ForwardedFor::Replace => {
            for name in &CLIENT_ADDRESS {
                headers.remove(name);
            }
            peer
        }
        ForwardedFor::Append => appended(headers, &peer),
    };
    headers.remove(X_FORWARDED_FOR);
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
}

/// The client's `X-Forwarded-For` lines joined, with `peer` appended.
fn appended(headers: &HeaderMap, peer: &str) -> String {
    let mut parts: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    parts.push(peer);
    parts.join(", ")
}

/// Sets `X-Request-Id` to `id` (the client's when valid, else a fresh one).
pub fn set_request_id(headers: &mut HeaderMap, id: &RequestId) {
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        headers.insert(protocol::REQUEST_ID_HEADER, value);
    }
}

/// Gives HTTP/2 requests, which carry the host in `:authority`, a `Host`
/// header, so that upstreams see the name the client asked for.
pub fn ensure_host<B>(req: &mut Request<B>) {
    if req.headers().contains_key(header::HOST) {
        return;
    }
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    if let Some(value) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
        req.headers_mut().insert(header::HOST, value);
    }
}

/// Prepares an upstream response for the client: no hop-by-hop headers, and
/// the request id echoed.
pub fn clean_response<B>(resp: &mut Response<B>, id: &RequestId) {
    strip_hop_by_hop(resp.headers_mut());
    set_request_id(resp.headers_mut(), id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::post("/rpc");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("valid request")
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let req = request(&[("content-length", "3"), ("content-length", "3")]);
        assert_eq!(
            check_framing(&req, true),
            Err(FramingError::DuplicateLength)
        );
        let req = request(&[("content-length", "3"), ("transfer-encoding", "chunked")]);
        assert_eq!(check_framing(&req, true), Err(FramingError::Conflicting));
        let req = request(&[("transfer-encoding", "chunked")]);
        assert_eq!(
            check_framing(&req, false),
            Err(FramingError::TransferEncoding)
        );
        assert_eq!(check_framing(&req, true), Ok(()));
        assert_eq!(
            check_framing(&request(&[("content-length", "3")]), false),
            Ok(())
        );
    }

    #[test]
    fn only_one_plain_chunked_coding_is_read() {
        let ok = request(&[("transfer-encoding", " Chunked ")]);
        assert_eq!(check_framing(&ok, true), Ok(()));
        for value in ["identity, chunked", "chunked, chunked", "gzip, chunked"] {
            let req = request(&[("transfer-encoding", value)]);
            let refused = Err(FramingError::UnsupportedCoding);
            assert_eq!(check_framing(&req, true), refused, "{value}");
        }
        let twice = request(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ]);
        assert_eq!(
            check_framing(&twice, true),
            Err(FramingError::UnsupportedCoding)
        );
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_go() {
        let mut req = request(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "basic x"),
            ("proxy-connection", "keep-alive"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("x-request-id", "abc"),
        ]);
        strip_hop_by_hop(req.headers_mut());
        let mut left: Vec<&str> = req.headers().keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["traceparent", "x-request-id"]);
    }

    #[test]
    fn forwarded_for_is_replaced_or_appended() {
        let peer: IpAddr = [10, 0, 0, 9].into();
        let mut req = request(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(req.headers_mut(), peer, ForwardedFor::Replace, "http");
        assert_eq!(req.headers()[X_FORWARDED_FOR], "10.0.0.9");
        assert_eq!(req.headers()[X_FORWARDED_PROTO], "http");
        let mut req = request(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
        ]);
        set_forwarded(req.headers_mut(), peer, ForwardedFor::Append, "https");
        assert_eq!(req.headers()[X_FORWARDED_FOR], "1.2.3.4, 5.6.7.8, 10.0.0.9");
        assert_eq!(req.headers().get_all(X_FORWARDED_FOR).iter().count(), 1);
    }

    #[test]
    fn replacing_drops_every_client_claim_of_an_address() {
        let peer: IpAddr = [10, 0, 0, 9].into();
        let claims = [
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6;proto=https"),
            ("x-real-ip", "6.6.6.6"),
        ];
        let mut req = request(&claims);
        set_forwarded(req.headers_mut(), peer, ForwardedFor::Replace, "http");
        assert_eq!(req.headers()[X_FORWARDED_FOR], "10.0.0.9");
        assert!(!req.headers().contains_key(header::FORWARDED));
        assert!(!req.headers().contains_key("x-real-ip"));

        // Behind a trusted proxy, what it set is kept.
        let mut req = request(&claims);
        set_forwarded(req.headers_mut(), peer, ForwardedFor::Append, "http");
        assert_eq!(req.headers()[header::FORWARDED], "for=6.6.6.6;proto=https");
        assert_eq!(req.headers()["x-real-ip"], "6.6.6.6");
    }

    #[test]
    fn http2_authority_becomes_host() {
        let mut req = Request::get("http://example.test:8080/static/a")
            .body(())
            .expect("req");
        ensure_host(&mut req);
        assert_eq!(req.headers()[header::HOST], "example.test:8080");
        let mut req = request(&[("host", "kept")]);
        ensure_host(&mut req);
        assert_eq!(req.headers()[header::HOST], "kept");
    }
}
