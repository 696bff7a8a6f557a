//! Bad input against the real chain (load balancer -> gateway -> calc) and
//! against each tier where the answer differs: malformed, deep, wide and
//! oversized bodies, numbers out of range, slow clients, oversized heads, and
//! an upstream that answers garbage.
//!
//! Every case must get a clear 4xx (502 for the garbage upstream) with the
//! stable error code, leave every process serving (the seed request still
//! answers 130) and leave resident memory within [`hostile::RSS_BOUND_KIB`].

mod common;
mod hostile;

use std::time::Duration;

use common::{Proc, free_addr, tempdir};
use hostile::{
    Answer, LB_BODY_LIMIT, READ_TIMEOUT_MS, SERVICE_BODY_LIMIT, Stack, Upstream, exchange,
    exchange_within, lb_config, post, trickle, write_config,
};

/// One malformed body and the answer every tier gives it.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(name: &'static str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
    Case {
        name,
        body: body.into(),
        status,
        code,
    }
}

fn summ(args: &str) -> String {
    format!(r#"{{"method":"calc.summ","data":{{"args":[{args}]}}}}"#)
}

/// Bodies that are malformed, deep, wide, out of range or of the wrong
/// shape; all fit under the body limit.
fn cases() -> Vec<Case> {
    let deep = format!("{}1{}", "[".repeat(60_000), "]".repeat(60_000));
    let wide_object: Vec<String> = (0..10_000).map(|i| format!("\"k{i}\":{i}")).collect();
    let wide_batch = format!("[{}]", vec![SUMM_1; 1001].join(","));
    vec![
        case("deep JSON", summ(&deep), 400, "invalid_request"),
        case(
            "deep JSON batch",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            400,
            "invalid_request",
        ),
        case(
            "33 levels",
            summ(&format!("{}1{}", "[".repeat(30), "]".repeat(30))),
            400,
            "invalid_request",
        ),
        case(
            "wide object",
            format!(
                r#"{{"method":"calc.summ","data":{{{}}}}}"#,
                wide_object.join(",")
            ),
            422,
            "invalid_params",
        ),
        case(
            "100001 arguments",
            summ(&"1,".repeat(100_000).add("1")),
            413,
            "payload_too_large",
        ),
        case(
            "1001 calls in a batch",
            wide_batch,
            413,
            "payload_too_large",
        ),
        case(
            "5000-digit integer",
            summ(&"9".repeat(5000)),
            422,
            "overflow",
        ),
        case("2^63", summ("9223372036854775808"), 422, "overflow"),
        case("exponent out of range", summ("1e999999"), 422, "overflow"),
        case(
            "negative exponent out of range",
            summ("-1.5e400"),
            422,
            "overflow",
        ),
        case("string argument", summ(r#"1,"2""#), 422, "invalid_params"),
        case("boolean argument", summ("true"), 422, "invalid_params"),
        case("null argument", summ("null"), 422, "invalid_params"),
        case("nested argument", summ("[1]"), 422, "invalid_params"),
        case("NaN literal", summ("NaN"), 400, "parse_error"),
        case("Infinity literal", summ("Infinity"), 400, "parse_error"),
        case("hex literal", summ("0x10"), 400, "parse_error"),
        case("leading zeros", summ("007"), 400, "parse_error"),
        case(
            "args not a list",
            r#"{"method":"calc.summ","data":{"args":5}}"#,
            422,
            "invalid_params",
        ),
        case(
            "data not an object",
            r#"{"method":"calc.summ","data":"x"}"#,
            422,
            "invalid_params",
        ),
        case(
            "missing args",
            r#"{"method":"calc.sub","data":{}}"#,
            422,
            "invalid_params",
        ),
        case(
            "missing data",
            r#"{"method":"calc.sub"}"#,
            422,
            "invalid_params",
        ),
        case(
            "missing method",
            r#"{"data":{"args":[1]}}"#,
            400,
            "invalid_request",
        ),
        case("null method", r#"{"method":null}"#, 400, "invalid_request"),
        case("numeric method", r#"{"method":7}"#, 400, "invalid_request"),
        case("empty method", r#"{"method":""}"#, 400, "invalid_request"),
        case(
            "lone surrogate in method",
            r#"{"method":"calc.\ud800"}"#,
            400,
            "invalid_request",
        ),
        case(
            "two methods",
            r#"{"method":"calc.summ","method":"calc.mult","data":{"args":[2,3]}}"#,
            400,
            "invalid_request",
        ),
        case(
            "unknown service",
            r#"{"method":"nosuch.op"}"#,
            404,
            "method_not_found",
        ),
        case(
            "unknown operation",
            r#"{"method":"calc.pow"}"#,
            404,
            "method_not_found",
        ),
        case(
            "method without a service",
            r#"{"method":"summ"}"#,
            404,
            "method_not_found",
        ),
        case(
            "request id with a control byte",
            r#"{"method":"calc.summ","requestId":"a\u0001b"}"#,
            400,
            "invalid_request",
        ),
        case(
            "request id over 128 bytes",
            format!(
                r#"{{"method":"calc.summ","requestId":"{}"}}"#,
                "a".repeat(129)
            ),
            400,
            "invalid_request",
        ),
        case(
            "invalid UTF-8",
            b"{\"method\":\"calc.summ\xff\"}".to_vec(),
            400,
            "parse_error",
        ),
        case(
            "overlong UTF-8",
            b"{\"method\":\"calc\xc0\xae\"}".to_vec(),
            400,
            "parse_error",
        ),
        case("UTF-16 body", utf16(SUMM_1), 400, "parse_error"),
        case("empty body", "", 400, "parse_error"),
        case("whitespace only", " \r\n\t ", 400, "parse_error"),
        case("NUL bytes", vec![0u8; 64], 400, "parse_error"),
        case("truncated", &SUMM_1[..SUMM_1.len() - 3], 400, "parse_error"),
        case("trailing bytes", format!("{SUMM_1}xyz"), 400, "parse_error"),
        case(
            "ends inside an escape",
            r#"{"method":"calc.summ","data":"\"#,
            400,
            "parse_error",
        ),
        case("a bare number", "42", 400, "invalid_request"),
        case("an empty batch", "[]", 400, "invalid_request"),
        case(
            "JSON-RPC with a bad argument",
            r#"{"jsonrpc":"2.0","method":"calc.summ","params":["x"],"id":1}"#,
            200,
            "invalid_params",
        ),
        case(
            "JSON-RPC with a wrong version",
            r#"{"jsonrpc":"1.0","method":"calc.summ","params":[1],"id":1}"#,
            200,
            "invalid_request",
        ),
    ]
}

const SUMM_1: &str = r#"{"method":"calc.summ","data":{"args":[1]}}"#;

fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

trait Add {
    fn add(self, tail: &str) -> String;
}

impl Add for String {
    fn add(mut self, tail: &str) -> String {
        self.push_str(tail);
        self
    }
}

#[test]
fn malformed_bodies_get_a_clear_4xx_with_the_stable_code_at_every_tier() {
    let mut stack = Stack::start("warn");
    let before = stack.rss();
    let cases = cases();
    for (tier, addr) in stack.tiers().map(|(name, p)| (name, p.addr)) {
        for c in &cases {
            let reply = post(addr, &c.body, "");
            assert_eq!(reply.status, c.status, "{tier}, {}: {}", c.name, reply.raw);
            assert_eq!(reply.code(), c.code, "{tier}, {}: {}", c.name, reply.raw);
            let request_id = reply.header("x-request-id").unwrap_or_default();
            assert!(!request_id.is_empty(), "{tier}, {}: no request id", c.name);
        }
    }
    stack.assert_serving("every malformed body");
    stack.assert_rss_bounded(before, "malformed bodies");
}

#[test]
fn wrong_content_types_get_415_from_the_gateway_through_the_lb() {
    let mut stack = Stack::start("warn");
    for content_type in [
        "text/plain",
        "application/jsonx",
        "multipart/form-data; boundary=x",
    ] {
        let request = format!(
            "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{SUMM_1}",
            SUMM_1.len()
        );
        let reply = exchange(stack.lb.addr, request.as_bytes());
        assert_eq!(reply.status, 415, "{content_type}: {}", reply.raw);
        assert_eq!(reply.code(), "invalid_request", "{content_type}");
    }
    stack.assert_serving("wrong content types");
}

/// A body of `len` bytes that is valid JSON, so that only its size matters.
fn padded_body(len: usize) -> Vec<u8> {
    let mut body = SUMM_1.as_bytes().to_vec();
    body.resize(len, b' ');
    body
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 1000 + 16);
    for chunk in body.chunks(16 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn chunked_request(body: &[u8]) -> Vec<u8> {
    let mut request = b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    request.extend_from_slice(&chunked(body));
    request
}

#[test]
fn oversize_bodies_are_refused_at_each_tier_with_and_without_length() {
    let mut stack = Stack::start("warn");
    let before = stack.rss();

    // A declared length over the limit is refused before the body is read:
    // the head alone gets the answer, at every tier.
    for (tier, proc) in stack.tiers() {
        let head = "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    Content-Length: 1073741824\r\n\r\n";
        let reply = exchange_within(proc.addr, head.as_bytes(), Duration::from_secs(3));
        assert_eq!(reply.status, 413, "{tier}: {}", reply.raw);
        assert_eq!(reply.code(), "payload_too_large", "{tier}");
    }

    // Over the LB's limit: refused there, and the connection closed.
    let reply = post(stack.lb.addr, &padded_body(LB_BODY_LIMIT + 1), "");
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (413, "payload_too_large")
    );
    assert_eq!(reply.header("connection"), Some("close"));

    // Under the LB's limit but over the services': the gateway's 413 comes
    // back through the LB.
    let between = padded_body(SERVICE_BODY_LIMIT + 1);
    let reply = post(stack.lb.addr, &between, "");
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (413, "payload_too_large"),
        "{}",
        reply.raw
    );
    let at_limit = padded_body(SERVICE_BODY_LIMIT);
    let reply = post(stack.lb.addr, &at_limit, "");
    assert_eq!(
        reply.status, 200,
        "a body at the limit is served: {}",
        reply.raw
    );

    // Chunked: the LB refuses any Transfer-Encoding (smuggling guard); the
    // gateway and calc count the chunks against the limit.
    let reply = exchange(stack.lb.addr, &chunked_request(&between));
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (400, "invalid_request"),
        "{}",
        reply.raw
    );
    for (tier, proc) in [("gateway", &stack.gateway), ("calc", &stack.calc)] {
        let reply = exchange(proc.addr, &chunked_request(&between));
        assert_eq!(reply.status, 413, "{tier}: {}", reply.raw);
        assert_eq!(reply.code(), "payload_too_large", "{tier}");
        let reply = exchange(proc.addr, &chunked_request(SUMM_1.as_bytes()));
        assert_eq!(
            reply.status, 200,
            "{tier}: a small chunked body: {}",
            reply.raw
        );
    }

    // Many oversized bodies at once do not pile up in memory.
    let senders: Vec<_> = (0..16)
        .map(|i| {
            let addr = [stack.lb.addr, stack.gateway.addr][i % 2];
            let body = padded_body(LB_BODY_LIMIT * 2);
            std::thread::spawn(move || post(addr, &body, "").status)
        })
        .collect();
    for sender in senders {
        assert_eq!(sender.join().expect("sender"), 413);
    }
    stack.assert_serving("oversize bodies");
    stack.assert_rss_bounded(before, "oversize bodies");
}

#[test]
fn an_lb_that_accepts_chunked_bodies_still_counts_them_against_its_limit() {
    let calc = Proc::start(&["calc"]);
    let dir = tempdir::Dir::new("chunked-lb");
    let text = lb_config(calc.addr, "chunked_requests = true", "");
    let path = write_config(dir.path(), "lb.toml", &text);
    let lb = Proc::start_lb(&["--config", &path], free_addr(), free_addr(), "warn");

    let reply = exchange(lb.addr, &chunked_request(&padded_body(LB_BODY_LIMIT + 1)));
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (413, "payload_too_large"),
        "{}",
        reply.raw
    );
    let reply = exchange(lb.addr, &chunked_request(hostile::SEED.as_bytes()));
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(reply.json()["result"], 130);
}

/// Longest time a tier may keep a client that is too slow, past its timeout.
const SLACK: Duration = Duration::from_millis(1500);

#[test]
fn slow_headers_and_slow_bodies_are_cut_off_at_each_tier() {
    let mut stack = Stack::start("warn");
    let before = stack.rss();
    let timeout = Duration::from_millis(READ_TIMEOUT_MS);
    let every = Duration::from_millis(100);
    let limit = Duration::from_secs(8);
    for (tier, proc) in stack.tiers() {
        // Headers trickling in one short line at a time never end.
        let first = b"POST /rpc HTTP/1.1\r\nHost: x\r\n";
        let (held, _) = trickle(proc.addr, first, b"X-Slow: a\r\n", every, limit);
        eprintln!("slow headers at {tier}: closed after {held:?}");
        assert!(
            held < timeout + SLACK,
            "{tier}: slow headers held for {held:?}"
        );

        // A body trickling in a byte at a time gets 408 `timeout`.
        let head = b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                     Content-Length: 100000\r\n\r\n";
        let (held, reply) = trickle(proc.addr, head, b" ", every, limit);
        eprintln!("slow body at {tier}: {} after {held:?}", reply.status);
        assert!(
            held < timeout + SLACK,
            "{tier}: slow body held for {held:?}"
        );
        assert_eq!(reply.status, 408, "{tier}: {}", reply.raw);
        assert_eq!(reply.code(), "timeout", "{tier}");
    }

    // A crowd of slow clients on every tier at once does not stop the seed.
    let crowd: Vec<_> = stack
        .tiers()
        .iter()
        .flat_map(|(_, p)| std::iter::repeat_n(p.addr, 30))
        .map(|addr| {
            std::thread::spawn(move || {
                trickle(addr, b"POST /rpc HTTP/1.1\r\n", b"X: y\r\n", every, limit).0
            })
        })
        .collect();
    stack.assert_serving("a crowd of slow clients");
    for client in crowd {
        let held = client.join().expect("slow client");
        assert!(held < timeout + SLACK * 2, "a slow client held {held:?}");
    }
    stack.assert_serving("slow clients");
    stack.assert_rss_bounded(before, "slow clients");
}

#[test]
fn oversized_request_lines_and_heads_are_refused_at_each_tier() {
    let mut stack = Stack::start("warn");
    let before = stack.rss();
    let long_path = format!("/rpc?{}", "a".repeat(70_000));
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_header = format!("X-Big: {}\r\n", "b".repeat(1024 * 1024));
    let cases = [
        (
            "70 kB request line",
            format!("POST {long_path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
            &[414, 431][..],
        ),
        (
            "200 header lines",
            format!("POST /rpc HTTP/1.1\r\nHost: x\r\n{many_headers}Content-Length: 0\r\n\r\n"),
            &[431][..],
        ),
        (
            "1 MB header",
            format!("POST /rpc HTTP/1.1\r\nHost: x\r\n{huge_header}Content-Length: 0\r\n\r\n"),
            &[431][..],
        ),
        (
            "request line without a version",
            "POST /rpc\r\nHost: x\r\n\r\n".to_owned(),
            &[400][..],
        ),
        (
            "binary request line",
            "\u{1}\u{2}\u{3} / HTTP/1.1\r\n\r\n".to_owned(),
            &[400][..],
        ),
        (
            "header without a colon",
            "POST /rpc HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".to_owned(),
            &[400][..],
        ),
    ];
    for (tier, proc) in stack.tiers() {
        for (name, request, allowed) in &cases {
            let reply = exchange(proc.addr, request.as_bytes());
            assert!(
                allowed.contains(&reply.status),
                "{tier}, {name}: {}",
                short(&reply.raw)
            );
        }
    }
    stack.assert_serving("oversized heads");
    stack.assert_rss_bounded(before, "oversized heads");
}

fn short(text: &str) -> &str {
    &text[..text.len().min(300)]
}

/// Answers that are not HTTP, or HTTP that cannot be read one way only.
fn garbage_answers() -> [(&'static str, Answer); 5] {
    [
        ("random bytes", |_| b"\x00\xff\x13garbage\r\n\r\n".to_vec()),
        ("not HTTP", |_| b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()),
        ("bad length", |_| {
            b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n{}".to_vec()
        }),
        ("two lengths", |_| {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}".to_vec()
        }),
        ("bad status line", |_| b"HTTP/1.1 2000 OK\r\n\r\n".to_vec()),
    ]
}

/// A pool whose instance never gets ejected, so that every request reaches
/// the garbage and shows what the proxy makes of it.
const NEVER_EJECT: &str = "interval_ms = 0\nconsecutive_failures = 1000";

#[test]
fn garbage_from_an_upstream_gets_502_and_its_connection_is_not_reused() {
    for (name, answer) in garbage_answers() {
        let garbage = Upstream::start(answer);
        let dir = tempdir::Dir::new("garbage");

        // The LB in front of it.
        let pool = format!("[lb.rpc.health]\n{NEVER_EJECT}");
        let lb_path = write_config(dir.path(), "lb.toml", &lb_config(garbage.addr, "", &pool));
        let lb = Proc::start_lb(&["--config", &lb_path], free_addr(), free_addr(), "warn");

        // A gateway in front of it.
        let gw_text = format!(
            "[gateway.services.calc]\nendpoints = [\"{}\"]\nidempotent = true\n\
             [gateway.services.calc.health]\n{NEVER_EJECT}\n",
            garbage.addr
        );
        let gw_path = write_config(dir.path(), "gateway.toml", &gw_text);
        let gateway = Proc::start(&["gateway", "--config", &gw_path]);

        for (tier, addr) in [("lb", lb.addr), ("gateway", gateway.addr)] {
            for _ in 0..3 {
                let reply = post(addr, SUMM_1.as_bytes(), "");
                assert_eq!(reply.status, 502, "{tier}, {name}: {}", reply.raw);
                assert_eq!(reply.code(), "unavailable", "{tier}, {name}: {}", reply.raw);
            }
        }
        let seen = garbage.seen_on("/rpc");
        assert!(seen.len() >= 6, "{name}: {} requests arrived", seen.len());
        let mut connections: Vec<usize> = seen.iter().map(|s| s.connection).collect();
        connections.sort_unstable();
        connections.dedup();
        assert_eq!(
            connections.len(),
            seen.len(),
            "{name}: a connection that answered garbage was used again"
        );
    }
}

#[test]
fn unreadable_deadline_headers_get_400_at_each_proxy_tier() {
    let mut stack = Stack::start("warn");
    let bad = ["abc", "-1", "1.5", "18446744073709551616", "", "1 2"];
    for (tier, addr) in [("lb", stack.lb.addr), ("gateway", stack.gateway.addr)] {
        for value in bad {
            let header = format!("X-Request-Timeout-Ms: {value}\r\n");
            let reply = post(addr, SUMM_1.as_bytes(), &header);
            assert_eq!(reply.status, 400, "{tier}, {value:?}: {}", reply.raw);
            assert_eq!(reply.code(), "invalid_request", "{tier}, {value:?}");
        }
        // A deadline already gone is a timeout, not a hang.
        let reply = post(addr, SUMM_1.as_bytes(), "X-Request-Timeout-Ms: 0\r\n");
        assert_eq!(reply.status, 504, "{tier}: {}", reply.raw);
        assert_eq!(reply.code(), "timeout", "{tier}");
    }
    stack.assert_serving("bad deadlines");
}
