//! Security at the process boundary: request smuggling, header and request-id
//! injection, spoofed forwarding headers, static path traversal in every
//! encoding, the admin surface seen from the public port, and metric label
//! cardinality under thousands of made-up methods.
//!
//! Where a request must never be forwarded, an upstream written here counts
//! what reaches it; where nothing may be copied raw, its received heads and
//! every tier's log files are read back.

mod common;
mod hostile;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Proc, free_addr, tempdir};
use hostile::{
    Reply, SEED, Stack, Upstream, eventually, exchange, lb_config, log_text, post, write_config,
};

/// A load balancer in front of `upstream`, with `extra` lines in `[lb]`.
fn lb_before(upstream: SocketAddr, extra: &str) -> (Proc, tempdir::Dir) {
    let dir = tempdir::Dir::new("security-lb");
    let path = write_config(dir.path(), "lb.toml", &lb_config(upstream, extra, ""));
    let lb = Proc::start_lb(&["--config", &path], free_addr(), free_addr(), "warn");
    (lb, dir)
}

const HEAD: &str = "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";

/// Framing that a proxy and the server behind it could read two ways. Each
/// ends with a second request hidden where a lax parser would find it.
fn smuggling() -> Vec<(&'static str, String)> {
    let hidden = "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    let te = |value: &str| {
        format!("{HEAD}Transfer-Encoding: {value}\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{hidden}")
    };
    vec![
        (
            "two lengths",
            format!("{HEAD}Content-Length: 2\r\nContent-Length: 40\r\n\r\n{{}}{hidden}"),
        ),
        (
            "a list of lengths",
            format!("{HEAD}Content-Length: 2, 40\r\n\r\n{{}}{hidden}"),
        ),
        (
            "a signed length",
            format!("{HEAD}Content-Length: +2\r\n\r\n{{}}{hidden}"),
        ),
        (
            "a negative length",
            format!("{HEAD}Content-Length: -1\r\n\r\n{{}}{hidden}"),
        ),
        (
            "a hex length",
            format!("{HEAD}Content-Length: 0x2\r\n\r\n{{}}{hidden}"),
        ),
        (
            "two numbers in one length",
            format!("{HEAD}Content-Length: 2 2\r\n\r\n{{}}{hidden}"),
        ),
        (
            "a length past u64",
            format!("{HEAD}Content-Length: 18446744073709551618\r\n\r\n{{}}"),
        ),
        (
            "length and chunked",
            format!(
                "{HEAD}Content-Length: 5\r\n{}",
                &te("chunked")[HEAD.len()..]
            ),
        ),
        ("chunked, identity", te("chunked, identity")),
        ("identity, chunked", te("identity, chunked")),
        ("xchunked", te("xchunked")),
        ("chunked in capitals", te("CHUNKED")),
        ("chunked with a tab", te("\tchunked")),
        ("chunked twice", te("chunked, chunked")),
        ("chunked with a parameter", te("chunked;q=1")),
        ("quoted chunked", te("\"chunked\"")),
        (
            "two transfer-encoding lines",
            format!(
                "{HEAD}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n\
                 2\r\n{{}}\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "space before the colon",
            format!("{HEAD}Transfer-Encoding : chunked\r\nContent-Length: 2\r\n\r\n{{}}{hidden}"),
        ),
        (
            "folded transfer-encoding",
            format!("{HEAD}X-A: b\r\n Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{{}}"),
        ),
        (
            "lowercase name",
            format!("{HEAD}transfer-encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "vertical tab in the value",
            format!("{HEAD}Transfer-Encoding: \u{b}chunked\r\nContent-Length: 2\r\n\r\n{{}}"),
        ),
        (
            "bare LF line ends",
            "POST /rpc HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nContent-Length: 2\n\n{}"
                .to_owned(),
        ),
        (
            "HTTP/1.0 chunked",
            format!(
                "POST /rpc HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                 2\r\n{{}}\r\n0\r\n\r\n{hidden}"
            ),
        ),
    ]
}

/// Chunk framings that are malformed or abusive; the LB reads them only when
/// chunked bodies are on. All get 400, except a body that never ends (a chunk
/// promising more than is sent, no last chunk): the LB waits for the rest and
/// answers 408 at its body timeout.
fn bad_chunks() -> Vec<(&'static str, String)> {
    let long_extension = format!("2;{}\r\n{{}}\r\n0\r\n\r\n", "e".repeat(100_000));
    vec![
        ("a non-hex size", "zz\r\n{}\r\n0\r\n\r\n".to_owned()),
        ("a negative size", "-2\r\n{}\r\n0\r\n\r\n".to_owned()),
        ("a 0x size", "0x2\r\n{}\r\n0\r\n\r\n".to_owned()),
        (
            "a size past u64",
            "1ffffffffffffffff\r\n{}\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "a size larger than the data",
            "20\r\n{}\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "a size smaller than the data",
            "1\r\n{}\r\n0\r\n\r\n".to_owned(),
        ),
        ("no CRLF after the data", "2\r\n{}XX0\r\n\r\n".to_owned()),
        ("no last chunk", "2\r\n{}\r\n".to_owned()),
        ("a 100 kB chunk extension", long_extension),
        ("a bare LF after the size", "2\n{}\r\n0\r\n\r\n".to_owned()),
        (
            "a space inside the size",
            "2 2\r\n{}\r\n0\r\n\r\n".to_owned(),
        ),
    ]
}

/// Sends `request` and requires one 400 answer (408 for a body that never
/// ends), a closed connection and no second answer for whatever followed the
/// refused body.
fn assert_refused(lb: SocketAddr, name: &str, request: &[u8]) -> Reply {
    let reply = exchange(lb, request);
    let never_ends = ["a size larger than the data", "no last chunk"].contains(&name);
    let status = if never_ends { 408 } else { 400 };
    assert_eq!(reply.status, status, "{name}: {}", reply.raw);
    assert_eq!(
        reply.raw.matches("HTTP/1.1 ").count(),
        1,
        "{name}: {}",
        reply.raw
    );
    reply
}

#[test]
fn smuggling_variants_get_400_and_never_reach_the_upstream() {
    let upstream = Upstream::answering_130();
    let (lb, _dir) = lb_before(upstream.addr, "");
    for (name, request) in smuggling() {
        let reply = assert_refused(lb.addr, name, request.as_bytes());
        if !reply.body.is_empty() {
            assert_eq!(reply.code(), "invalid_request", "{name}: {}", reply.raw);
        }
    }
    assert_eq!(
        upstream.seen_on("/rpc").len(),
        0,
        "a refused request was forwarded"
    );

    // The same balancer still forwards a clean request, exactly once.
    let reply = post(lb.addr, b"{}", "");
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(upstream.seen_on("/rpc").len(), 1);
}

#[test]
fn with_chunked_bodies_on_only_clean_chunking_is_forwarded() {
    let upstream = Upstream::answering_130();
    let (lb, _dir) = lb_before(upstream.addr, "chunked_requests = true");
    let chunked = format!("{HEAD}Transfer-Encoding: chunked\r\n\r\n");
    for (name, chunks) in bad_chunks() {
        assert_refused(lb.addr, name, format!("{chunked}{chunks}").as_bytes());
    }
    let mut statuses = Vec::new();
    let mut answers = 0;
    for (name, request) in smuggling() {
        let reply = exchange(lb.addr, request.as_bytes());
        let count = reply.raw.matches("HTTP/1.1 ").count();
        // After a valid chunked body without a length, the next request on
        // the connection is plain pipelining and is answered too.
        let pipelined = matches!(
            name,
            "chunked in capitals" | "chunked with a tab" | "lowercase name"
        );
        let expected = if pipelined { 2 } else { 1 };
        assert_eq!(count, expected, "{name}: {}", reply.raw);
        answers += count;
        statuses.push((name, reply.status));
    }
    // Valid chunking: one `chunked` in other letters or spacing, or beside a
    // length, which hyper drops, reading the body by its chunks and closing
    // the connection after the answer (RFC 9112 §6.1), so the request hidden
    // after the body is never read. A list of codings is refused.
    let valid = [
        "length and chunked",
        "chunked in capitals",
        "chunked with a tab",
        "lowercase name",
    ];
    for (name, status) in &statuses {
        let expected = if valid.contains(name) { 200 } else { 400 };
        assert_eq!(*status, expected, "{name}; all: {statuses:?}");
    }
    let refused = statuses.iter().filter(|(_, s)| *s == 400).count();
    let forwarded = upstream.seen_on("/rpc");
    assert_eq!(
        forwarded.len(),
        answers - refused,
        "only valid ones: {forwarded:?}"
    );
    for seen in forwarded {
        let head = seen.head.to_ascii_lowercase();
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert!(
            head.contains("content-length: 2\r\n"),
            "re-framed by length: {head}"
        );
    }
}

/// Ways to smuggle a header line or a log line in through a value.
fn injections() -> Vec<(&'static str, String)> {
    vec![
        (
            "bare CR in a header",
            format!("{HEAD}X-Request-Id: a\rX-Injected: 1\r\n"),
        ),
        (
            "bare LF in a header",
            format!("{HEAD}X-Request-Id: a\nX-Injected: 1\r\n"),
        ),
        (
            "folded header",
            format!("{HEAD}X-Request-Id: a\r\n X-Injected: 1\r\n"),
        ),
        (
            "NUL in a header",
            format!("{HEAD}X-Request-Id: a\0X-Injected: 1\r\n"),
        ),
        (
            "tab in a request id",
            format!("{HEAD}X-Request-Id: a\tX-Injected:1\r\n"),
        ),
        (
            "non-ASCII request id",
            format!("{HEAD}X-Request-Id: caf\u{e9}-X-Injected\r\n"),
        ),
        (
            "space in a request id",
            format!("{HEAD}X-Request-Id: a X-Injected: 1\r\n"),
        ),
        (
            "overlong request id",
            format!("{HEAD}X-Request-Id: X-Injected{}\r\n", "a".repeat(200)),
        ),
    ]
}

#[test]
fn cr_lf_in_headers_and_request_ids_never_reach_upstream_headers_or_logs() {
    let mut stack = Stack::start("info");
    let upstream = Upstream::answering_130();
    let (lb, _dir) = lb_before(upstream.addr, "");

    let body = SEED.as_bytes();
    for (name, head) in injections() {
        let request = format!(
            "{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut request = request.into_bytes();
        request.extend_from_slice(body);
        for target in [lb.addr, stack.lb.addr] {
            let reply = exchange(target, &request);
            eprintln!("injection {name:?} at {target}: {}", reply.status);
            assert!(matches!(reply.status, 200 | 400), "{name}: {}", reply.raw);
            let id = reply.header("x-request-id").unwrap_or("");
            assert!(
                !id.to_ascii_lowercase().contains("injected"),
                "{name}: id {id:?}"
            );
        }
    }

    // Escaped CR/LF in the body's ids: refused where they are read, and
    // never turned into a header.
    let bodies = [
        r#"{"method":"calc.summ","data":{"args":[1]},"requestId":"a\r\nX-Injected: 1"}"#,
        r#"{"method":"calc.summ","data":{"args":[1]},"requestId":"a\u000d\u000aX-Injected: 1"}"#,
        r#"{"method":"calc.summ\r\nX-Injected: 1","data":{"args":[1]}}"#,
        r#"{"jsonrpc":"2.0","method":"calc.summ","params":[1],"id":"a\r\nX-Injected: 1"}"#,
        r#"[{"method":"calc.summ","data":{"args":[1]},"requestId":"a\r\nX-Injected: 1"}]"#,
    ];
    for body in bodies {
        let reply = post(stack.lb.addr, body.as_bytes(), "");
        assert!(
            matches!(reply.status, 200 | 400 | 404),
            "{body}: {}",
            reply.raw
        );
        assert!(
            !reply.raw.contains("\r\nX-Injected"),
            "{body}: {}",
            reply.raw
        );
        let reply = post(lb.addr, body.as_bytes(), "");
        assert_eq!(
            reply.status, 200,
            "the LB does not read bodies: {}",
            reply.raw
        );
    }

    // Whatever reached the recorder is made of clean lines, and its request
    // id is never the client's malformed one. A bare LF ends a header line
    // (RFC 9112 lets a recipient read it so); the LB then sees two headers and
    // forwards two well-formed lines, exactly what the upstream parses.
    for seen in upstream.seen() {
        let head = seen
            .head
            .strip_suffix("\r\n\r\n")
            .expect("a CRLF-framed head");
        for line in head.split("\r\n") {
            assert!(!line.contains(['\r', '\n', '\0']), "a raw byte in {line:?}");
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("x-request-id") {
                let value = value.trim();
                assert!(value.bytes().all(|b| b.is_ascii_graphic()), "{line:?}");
                assert!(!value.contains("Injected"), "{line:?}");
            }
        }
    }

    stack.assert_serving("injections");
    // Log lines are written by a background thread: wait until each tier's
    // files hold whole lines.
    for (tier, proc) in stack.tiers() {
        let dir = proc.log_dir.path();
        eventually(Duration::from_secs(5), tier, || {
            let text = log_text(dir);
            !text.is_empty() && text.ends_with('\n')
        });
    }
    for (tier, proc) in stack.tiers() {
        assert_log_lines_are_json(tier, &log_text(proc.log_dir.path()));
    }
}

/// Every log line is one JSON object, so that nothing a client sent can start
/// a line of its own.
fn assert_log_lines_are_json(tier: &str, text: &str) {
    assert!(!text.is_empty(), "{tier}: no log lines");
    for line in text.lines() {
        let parsed = serde_json::from_str::<serde_json::Value>(line);
        assert!(
            parsed.is_ok_and(|v| v.is_object()),
            "{tier}: a raw line: {line:?}"
        );
        assert!(!line.starts_with("X-Injected"), "{tier}: {line:?}");
    }
}

#[test]
fn spoofed_forwarding_headers_are_overwritten() {
    let upstream = Upstream::answering_130();
    let (lb, _dir) = lb_before(upstream.addr, "");
    let spoofs = "X-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7, 8.8.8.8\r\n\
                  X-FORWARDED-FOR: 9.9.9.9\r\nX-Forwarded-Proto: https\r\n\
                  Forwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\n";
    let reply = post(lb.addr, b"{}", spoofs);
    assert_eq!(reply.status, 200, "{}", reply.raw);

    let seen = upstream.seen_on("/rpc");
    let head = seen.last().expect("forwarded").head.to_ascii_lowercase();
    let values = |name: &str| -> Vec<String> {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    };
    assert_eq!(values("x-forwarded-for"), ["127.0.0.1"], "{head}");
    assert_eq!(values("x-forwarded-proto"), ["http"], "{head}");
    for spoofed in ["6.6.6.6", "7.7.7.7", "8.8.8.8", "9.9.9.9", "https"] {
        assert!(
            !head.contains(spoofed),
            "{spoofed} reached the upstream: {head}"
        );
    }
}

/// A site with a secret beside its root and symlinks that lead out of it.
struct Site {
    proc: Proc,
    dir: tempdir::Dir,
}

const SECRET: &str = "secret-beside-the-root";

impl Site {
    fn start() -> Site {
        let dir = tempdir::Dir::new("traversal");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("docs")).expect("root");
        std::fs::write(root.join("docs/index.html"), "docs").expect("index");
        std::fs::write(root.join("a.txt"), "a").expect("file");
        std::fs::write(dir.path().join("secret.txt"), SECRET).expect("secret");
        let link = |target: &std::path::Path, name: &str| {
            std::os::unix::fs::symlink(target, root.join(name)).expect("symlink");
        };
        link(&dir.path().join("secret.txt"), "leak.txt");
        link(dir.path(), "parent");
        link(std::path::Path::new("/etc"), "etc");
        link(std::path::Path::new("../secret.txt"), "relative-leak.txt");
        link(&root.join("leak.txt"), "chain.txt");
        let root_arg = root.to_string_lossy().into_owned();
        let proc = Proc::start(&["static", "--root", &root_arg]);
        Site { proc, dir }
    }
}

/// Every spelling of a way out of the root we know of.
const TRAVERSALS: &[&str] = &[
    "/static/../secret.txt",
    "/static/docs/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2e/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/%2e./secret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/%25252e%25252e/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%2Fsecret.txt",
    "/static/docs%2f..%2f..%2fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/..%252fsecret.txt",
    "/static/..%5csecret.txt",
    "/static/..%5Csecret.txt",
    "/static/%5c..%5csecret.txt",
    "/static/..\\secret.txt",
    "/static/docs\\..\\..\\secret.txt",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/%2Fetc/passwd",
    "/static/%00",
    "/static/secret.txt%00.html",
    "/static/docs/..%00/../secret.txt",
    "/static/%c0%ae%c0%ae/secret.txt",
    "/static/%c0%ae%c0%ae%c0%afsecret.txt",
    "/static/%e0%80%ae%e0%80%ae/secret.txt",
    "/static/%c1%9c..%c1%9csecret.txt",
    "/static/%ef%bc%8e%ef%bc%8e/secret.txt",
    "/static/%u002e%u002e/secret.txt",
    "/static/..;/secret.txt",
    "/static/./../secret.txt",
    "/static/docs/./../../secret.txt",
    "/static/.../secret.txt",
    "/static/leak.txt",
    "/static/chain.txt",
    "/static/relative-leak.txt",
    "/static/parent/secret.txt",
    "/static/parent/root/../secret.txt",
    "/static/etc/passwd",
    "/static/etc/hostname",
    "/static/..",
    "/static/../",
    "/static/%2e%2e",
    "/../secret.txt",
    "http://x/static/../secret.txt",
];

#[test]
fn static_path_traversal_is_refused_in_every_encoding_direct_and_through_the_lb() {
    let site = Site::start();
    let calc = Proc::start(&["calc"]);
    let dir = tempdir::Dir::new("traversal-lb");
    let text = format!(
        "[lb.rpc]\nendpoints = [\"{}\"]\n[lb.static]\nendpoints = [\"{}\"]\n",
        calc.addr, site.proc.addr
    );
    let path = write_config(dir.path(), "lb.toml", &text);
    let lb = Proc::start_lb(&["--config", &path], free_addr(), free_addr(), "warn");
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_else(|_| "root:x:".into());
    let first_passwd_line = passwd.lines().next().unwrap_or("root:x:").to_owned();

    for (tier, addr) in [("static", site.proc.addr), ("lb", lb.addr)] {
        for target in TRAVERSALS {
            for method in ["GET", "HEAD"] {
                let request =
                    format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let reply = exchange(addr, request.as_bytes());
                assert!(
                    matches!(reply.status, 400 | 404),
                    "{tier}: {method} {target}: {}",
                    reply.raw
                );
                assert!(
                    !reply.raw.contains(SECRET),
                    "{tier}: {target} leaked the secret"
                );
                assert!(
                    !reply.raw.contains(&first_passwd_line),
                    "{tier}: {target} leaked /etc"
                );
            }
        }
        // What is inside the root is still served, through links inside too.
        let reply = exchange(
            addr,
            b"GET /static/docs/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(reply.status, 200, "{tier}: {}", reply.raw);
    }
    assert!(site.dir.path().join("secret.txt").exists());
}

/// Ways to ask the public port for what only the admin port serves.
fn admin_attempts(admin: SocketAddr) -> Vec<String> {
    let mut requests = Vec::new();
    let paths = [
        "/metrics",
        "/metrics/",
        "//metrics",
        "/METRICS",
        "/%6detrics",
        "/metrics?x=1",
        "/metrics%00",
        "/metrics;x",
        "/rpc/../metrics",
        "/static/../metrics",
        "/./metrics",
        "/health",
        "/ready",
        "/pools",
        "/reload",
        "/static/../pools",
        "/static/%2e%2e/metrics",
    ];
    for path in paths {
        for method in ["GET", "POST", "HEAD"] {
            requests.push(format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            ));
        }
    }
    for path in ["/metrics", "/reload", "/pools"] {
        requests.push(format!(
            "GET http://{admin}{path} HTTP/1.1\r\nHost: {admin}\r\n"
        ));
        requests.push(format!(
            "POST {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\n"
        ));
        requests.push(format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nX-Original-URL: {path}\r\n"
        ));
    }
    requests.push(format!("CONNECT {admin} HTTP/1.1\r\nHost: {admin}\r\n"));
    requests.push("OPTIONS * HTTP/1.1\r\nHost: x\r\n".to_owned());
    requests
}

#[test]
fn admin_and_metrics_are_unreachable_from_the_public_listener() {
    let mut stack = Stack::start("warn");
    for head in admin_attempts(stack.admin) {
        let request = format!("{head}Connection: close\r\n\r\n");
        let reply = exchange(stack.lb.addr, request.as_bytes());
        let line = head.lines().next().unwrap_or_default();
        // `/static/...` goes to the static pool, which has no live server here.
        let routed = line.contains(" /static/") && !line.starts_with("POST");
        let allowed: &[u16] = if routed { &[503] } else { &[400, 404, 405] };
        assert!(allowed.contains(&reply.status), "{line}: {}", reply.raw);
        for private in ["# HELP", "switchboard_", "\"rpc\"", "reloaded", "ready\n"] {
            assert!(
                !reply.raw.contains(private),
                "{line} reached {private:?}: {}",
                reply.raw
            );
        }
    }
    // The admin port itself still answers.
    let reply = exchange(
        stack.admin,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
    stack.assert_serving("admin attempts");
}

/// Series (sample lines) in a `/metrics` text, and the distinct values of
/// the `method` label.
fn series(addr: SocketAddr) -> (usize, BTreeSet<String>) {
    let reply = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.status, 200, "{}", reply.raw);
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let methods = samples
        .iter()
        .filter_map(|l| l.split_once("method=\"").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('"').map(|(m, _)| m.to_owned()))
        .collect();
    (samples.len(), methods)
}

/// Sends `count` calls with methods never seen before (unknown services,
/// unknown operations of calc, names with odd bytes) and as many requests on
/// unknown paths, 8 at a time over keep-alive connections.
async fn unknown_methods(lb: SocketAddr, round: usize, count: usize) {
    let client = Arc::new(reqwest::Client::new());
    let tasks: Vec<_> = (0..8)
        .map(|worker| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                for i in (worker..count).step_by(8) {
                    let n = round * count + i;
                    let method = match i % 3 {
                        0 => format!("svc{n}.op"),
                        1 => format!("calc.op{n}"),
                        _ => format!("calc.\\u00e9\\n{n}"),
                    };
                    let body = format!(r#"{{"method":"{method}","data":{{"args":[1]}}}}"#);
                    let resp = client
                        .post(format!("http://{lb}/rpc"))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(resp.status(), 404, "{method}");
                    let resp = client
                        .get(format!("http://{lb}/p{n}"))
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(resp.status(), 404);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("worker");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_label_cardinality_stays_bounded_under_10000_unknown_methods() {
    let stack = tokio::task::spawn_blocking(|| Stack::start("warn"))
        .await
        .expect("stack");
    let ports = [
        ("lb", stack.admin),
        ("gateway", stack.gateway.addr),
        ("calc", stack.calc.addr),
    ];
    let before = ports.map(|(_, addr)| series(addr));

    unknown_methods(stack.lb.addr, 0, 5_000).await;
    let middle = ports.map(|(_, addr)| series(addr));
    unknown_methods(stack.lb.addr, 1, 5_000).await;
    let after = ports.map(|(_, addr)| series(addr));

    for (i, (tier, _)) in ports.iter().enumerate() {
        let (b, m, a) = (&before[i], &middle[i], &after[i]);
        eprintln!(
            "{tier}: {} series before, {} after 5000, {} after 10000",
            b.0, m.0, a.0
        );
        assert_eq!(a.0, m.0, "{tier}: 5000 more unknown methods added series");
        assert_eq!(a.1, m.1, "{tier}: new method labels");
    }
    // calc labels only its own operations and `unknown`; the gateway learns
    // at most 64 names per service and counts the rest as `other`; the LB
    // has no method label at all.
    assert!(after[2].1.len() <= 5, "calc methods: {:?}", after[2].1);
    assert!(
        after[1].1.len() <= 64 + 2,
        "gateway methods: {}",
        after[1].1.len()
    );
    assert!(after[0].1.is_empty(), "lb methods: {:?}", after[0].1);
    let gateway_growth = after[1].0 - before[1].0;
    assert!(
        gateway_growth < 64 * 40,
        "gateway grew by {gateway_growth} series"
    );
    for i in [0, 2] {
        assert!(
            after[i].0 - before[i].0 <= 20,
            "{}: grew from {} to {}",
            ports[i].0,
            before[i].0,
            after[i].0
        );
    }
    drop(stack);
}
