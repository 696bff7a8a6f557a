//! The calc service as a real process over real sockets: answers, every error
//! code it can produce, limits, a third-party JSON-RPC client, metrics, drain.

mod common;

use common::{Proc, free_addr, raw_exchange, tempdir};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const SEED: &str = r#"{"method":"calc.summ","data":{"args":[1,5,-8,156,-24]},"requestId":"5545abec-aab1-4efa-80ef-b3491cb4b6c5"}"#;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn post(
    proc: &Proc,
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client()
        .post(format!("{}/rpc", proc.url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let value = match text.is_empty() {
        true => Value::Null,
        false => serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
    };
    (status, headers, value)
}

fn calc() -> Proc {
    Proc::start(&["calc"])
}

/// A config file in a temp folder; kept alive by the returned guard.
fn config_file(text: &str) -> (tempdir::Dir, String) {
    let dir = tempdir::Dir::new("config");
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, text).expect("write config");
    let path = path.to_string_lossy().into_owned();
    (dir, path)
}

#[tokio::test]
async fn seed_request_answers_130_and_echoes_the_request_id() {
    let proc = calc();
    let (status, headers, body) = post(&proc, SEED).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"requestId": "5545abec-aab1-4efa-80ef-b3491cb4b6c5", "result": 130})
    );
    assert_eq!(
        headers["x-request-id"],
        "5545abec-aab1-4efa-80ef-b3491cb4b6c5"
    );
    assert_eq!(headers["content-type"], "application/json");
}

#[tokio::test]
async fn missing_request_id_is_generated_or_taken_from_the_header() {
    let proc = calc();
    let (_, headers, body) = post(&proc, r#"{"method":"calc.mult","data":{"args":[6,7]}}"#).await;
    let id = body["requestId"].as_str().expect("generated id");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(headers["x-request-id"], id);
    assert_eq!(body["result"], 42);

    let response = client()
        .post(format!("{}/rpc", proc.url()))
        .header("x-request-id", "from-header-1")
        .body(r#"{"method":"calc.sub","data":{"args":[10,4]}}"#)
        .send()
        .await
        .expect("send");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, json!({"requestId": "from-header-1", "result": 6}));
}

#[tokio::test]
async fn integer_and_float_results() {
    let proc = calc();
    for (method, args, expected) in [
        ("calc.div", json!([6, 3]), json!(2)),
        ("calc.div", json!([7, 2]), json!(3.5)),
        ("calc.summ", json!([]), json!(0)),
        ("calc.mult", json!([]), json!(1)),
        ("calc.summ", json!([0.1, 0.2]), json!(0.1 + 0.2)),
        ("calc.sub", json!([i64::MAX, -0]), json!(i64::MAX)),
    ] {
        let body = json!({"method": method, "data": {"args": args}}).to_string();
        let (status, _, answer) = post(&proc, body).await;
        assert_eq!(status, 200, "{method} {args}");
        assert_eq!(answer["result"], expected, "{method} {args}");
    }
}

/// Every error code calc itself can produce, with its status and a message
/// that says what was wrong.
#[tokio::test]
async fn each_error_code_has_its_status() {
    let proc = calc();
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            r#"{"method":"calc.summ","data":{"args":[1,2]"#.into(),
            400,
            "parse_error",
            "EOF",
        ),
        ("not json".into(), 400, "parse_error", "expected"),
        (
            r#"{"data":{"args":[1]}}"#.into(),
            400,
            "invalid_request",
            "method is missing",
        ),
        (
            r#"{"method":42}"#.into(),
            400,
            "invalid_request",
            "method must be a string",
        ),
        (
            r#"{"method":"calc.summ","requestId":7}"#.into(),
            400,
            "invalid_request",
            "requestId",
        ),
        (deep, 400, "invalid_request", "nested deeper"),
        (
            r#"{"method":"calc.pow","data":{"args":[2]}}"#.into(),
            404,
            "method_not_found",
            "calc.pow",
        ),
        (
            r#"{"method":"calc.summ","data":{"args":[1,"2"]}}"#.into(),
            422,
            "invalid_params",
            "argument 1",
        ),
        (
            r#"{"method":"calc.summ","data":{"args":[1,null]}}"#.into(),
            422,
            "invalid_params",
            "argument 1",
        ),
        (
            r#"{"method":"calc.summ","data":{"nums":[1]}}"#.into(),
            422,
            "invalid_params",
            "args",
        ),
        (
            r#"{"method":"calc.sub","data":{"args":[]}}"#.into(),
            422,
            "invalid_params",
            "at least one",
        ),
        (
            r#"{"method":"calc.div","data":{"args":[1,0]}}"#.into(),
            422,
            "division_by_zero",
            "argument 1 is zero",
        ),
        (
            r#"{"method":"calc.mult","data":{"args":[9223372036854775807,2]}}"#.into(),
            422,
            "overflow",
            "out of range",
        ),
        (
            r#"{"method":"calc.summ","data":{"args":[123456789012345678901234567890]}}"#.into(),
            422,
            "overflow",
            "argument 0",
        ),
        (
            r#"{"method":"calc.mult","data":{"args":[1e308,10.0]}}"#.into(),
            422,
            "overflow",
            "out of range",
        ),
    ];
    for (body, status, code, message) in cases {
        let (got_status, _, answer) = post(&proc, body.clone()).await;
        assert_eq!(got_status, status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}");
        let text = answer["error"]["message"].as_str().expect("message");
        assert!(
            text.contains(message),
            "{body}: message {text:?} lacks {message:?}"
        );
        assert!(answer["requestId"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn oversize_bodies_are_refused_with_and_without_length() {
    let proc = calc();
    let big = format!(
        r#"{{"method":"calc.summ","data":{{"args":[{}1]}}}}"#,
        "1,".repeat(600_000)
    );
    let (status, _, answer) = post(&proc, big.clone()).await;
    assert_eq!(status, 413);
    assert_eq!(answer["error"]["code"], "payload_too_large");

    // Chunked, so there is no Content-Length to refuse up front.
    let mut request =
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for chunk in big.as_bytes().chunks(64 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(proc.addr, &request, Duration::from_secs(5));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // The process is still there and serving.
    assert_eq!(post(&proc, SEED).await.0, 200);
}

#[tokio::test]
async fn too_many_args_are_refused() {
    let proc = calc();
    let body = format!(
        r#"{{"method":"calc.summ","data":{{"args":[{}1]}}}}"#,
        "1,".repeat(100_000)
    );
    let (status, _, answer) = post(&proc, body).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("100001 arguments")
    );
}

#[tokio::test]
async fn wrong_method_path_and_content_type() {
    let proc = calc();
    let c = client();
    let get = c
        .get(format!("{}/rpc", proc.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let missing = c
        .post(format!("{}/nope", proc.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "method_not_found");
    let form = c
        .post(format!("{}/rpc", proc.url()))
        .header("content-type", "text/plain")
        .body(SEED)
        .send()
        .await
        .expect("send");
    assert_eq!(form.status(), 415);
    let body: Value = form.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_request");
    let invalid_utf8 = c
        .post(format!("{}/rpc", proc.url()))
        .body(b"{\"method\":\"calc.\xff\"}".to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(invalid_utf8.status(), 400);
}

#[tokio::test]
async fn native_batches_answer_in_order() {
    let proc = calc();
    let body = json!([
        {"method": "calc.summ", "data": {"args": [1, 2]}, "requestId": "a"},
        {"method": "calc.div", "data": {"args": [1, 0]}, "requestId": "b"},
        {"method": "calc.nope", "requestId": "c"},
        42
    ]);
    let (status, _, answer) = post(&proc, body.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(answer[0], json!({"requestId": "a", "result": 3}));
    assert_eq!(answer[1]["error"]["code"], "division_by_zero");
    assert_eq!(answer[2]["error"]["code"], "method_not_found");
    assert_eq!(answer[3]["error"]["code"], "invalid_request");
}

#[tokio::test]
async fn jsonrpc_batches_and_notifications() {
    let proc = calc();
    let body = json!([
        {"jsonrpc": "2.0", "method": "calc.summ", "params": [1, 2], "id": 1},
        {"jsonrpc": "2.0", "method": "calc.summ", "params": [1, 2]},
        {"jsonrpc": "2.0", "method": "calc.div", "params": {"args": [1, 0]}, "id": "z"}
    ]);
    let (status, _, answer) = post(&proc, body.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(answer.as_array().expect("array").len(), 2, "{answer}");
    assert_eq!(answer[0], json!({"jsonrpc": "2.0", "id": 1, "result": 3}));
    assert_eq!(answer[1]["id"], "z");
    assert_eq!(answer[1]["error"]["code"], -32001);

    let only_notes = json!([{"jsonrpc": "2.0", "method": "calc.summ", "params": [1]}]);
    let (status, _, answer) = post(&proc, only_notes.to_string()).await;
    assert_eq!((status, answer), (204, Value::Null));
    let (status, _, answer) = post(&proc, "[]").await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], "invalid_request");
}

#[tokio::test]
async fn a_third_party_jsonrpc_client_talks_to_calc() {
    use jsonrpsee::core::client::{BatchResponse, ClientT};
    use jsonrpsee::core::params::{ArrayParams, BatchRequestBuilder};
    use jsonrpsee::http_client::HttpClientBuilder;
    use jsonrpsee::rpc_params;

    let proc = calc();
    let client = HttpClientBuilder::default()
        .build(format!("{}/rpc", proc.url()))
        .expect("jsonrpsee client");
    let sum: i64 = client
        .request("calc.summ", rpc_params![1, 5, -8, 156, -24])
        .await
        .expect("summ");
    assert_eq!(sum, 130);
    let quotient: f64 = client
        .request("calc.div", rpc_params![7, 2])
        .await
        .expect("div");
    assert_eq!(quotient, 3.5);

    let err = client
        .request::<i64, ArrayParams>("calc.div", rpc_params![1, 0])
        .await
        .expect_err("division by zero");
    let jsonrpsee::core::ClientError::Call(call) = err else {
        panic!("expected a call error, got {err:?}");
    };
    assert_eq!(call.code(), -32001);
    assert_eq!(call.message(), "argument 1 is zero");
    let missing = client
        .request::<i64, ArrayParams>("calc.pow", rpc_params![2])
        .await
        .expect_err("unknown method");
    assert!(matches!(missing, jsonrpsee::core::ClientError::Call(c) if c.code() == -32601));

    let mut batch = BatchRequestBuilder::new();
    batch
        .insert("calc.mult", rpc_params![6, 7])
        .expect("insert");
    batch
        .insert("calc.sub", rpc_params![10, 1, 2])
        .expect("insert");
    let answers: BatchResponse<'_, i64> = client.batch_request(batch).await.expect("batch");
    let values: Vec<i64> = answers.into_ok().expect("all ok").collect();
    assert_eq!(values, vec![42, 7]);
    client
        .notification("calc.summ", rpc_params![1])
        .await
        .expect("notification accepted");
}

#[tokio::test]
async fn metrics_count_calls_and_pass_promtool() {
    let proc = calc();
    post(&proc, SEED).await;
    post(&proc, r#"{"method":"calc.div","data":{"args":[1,0]}}"#).await;
    for i in 0..50 {
        post(&proc, format!(r#"{{"method":"calc.unknown{i}"}}"#)).await;
    }
    let text = client()
        .get(format!("{}/metrics", proc.url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(r#"switchboard_rpc_requests_total{method="calc.summ",outcome="ok"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"switchboard_rpc_errors_total{code="division_by_zero"} 1"#));
    assert!(
        text.contains(r#"switchboard_rpc_requests_total{method="unknown",outcome="error"} 50"#)
    );
    assert!(
        !text.contains("unknown7"),
        "unknown methods must not become labels"
    );
    assert!(text.contains("process_resident_memory_bytes"));
    assert!(text.contains("switchboard_rpc_request_duration_seconds_bucket"));
    promtool_check(&text);
}

/// Runs `promtool check metrics`. CI installs promtool and sets
/// `SWITCHBOARD_REQUIRE_PROMTOOL=1`, so there a missing binary is a failure.
fn promtool_check(text: &str) {
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if std::env::var_os("SWITCHBOARD_REQUIRE_PROMTOOL").is_none() => {
            eprintln!("skipping promtool check: {e}");
            return;
        }
        Err(e) => panic!("promtool is required here: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn health_and_ready() {
    let proc = calc();
    let c = client();
    for path in ["/health", "/ready"] {
        let status = c
            .get(format!("{}{path}", proc.url()))
            .send()
            .await
            .expect("get")
            .status();
        assert_eq!(status, 200, "{path}");
    }
}

#[test]
fn slow_bodies_time_out_and_overload_is_shed() {
    let (_dir, path) = config_file("[calc]\nbody_read_timeout_ms = 300\nmax_in_flight = 1\n");
    let proc = Proc::start(&["calc", "--config", &path]);

    // A body that never completes holds the only in-flight slot...
    let mut slow = TcpStream::connect(proc.addr).expect("connect");
    write!(
        slow,
        "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{\"me"
    )
    .expect("write");
    std::thread::sleep(Duration::from_millis(50));

    // ...so a second request is shed at once with Retry-After.
    let request = format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SEED}",
        SEED.len()
    );
    let shed = String::from_utf8(raw_exchange(
        proc.addr,
        request.as_bytes(),
        Duration::from_secs(5),
    ))
    .expect("utf8");
    assert!(shed.starts_with("HTTP/1.1 503"), "{shed}");
    assert!(
        shed.to_ascii_lowercase().contains("retry-after: 1"),
        "{shed}"
    );
    assert!(shed.contains("\"overloaded\""), "{shed}");

    // The slow one gets 408 with the stable timeout code.
    slow.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = vec![0u8; 4096];
    let n = slow.read(&mut answer).expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"timeout\""), "{answer}");
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut proc = calc();
    let mut slow = TcpStream::connect(proc.addr).expect("connect");
    let (head, tail) = SEED.split_at(20);
    write!(
        slow,
        "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{head}",
        SEED.len()
    )
    .expect("write head");
    std::thread::sleep(Duration::from_millis(100));

    proc.signal("TERM");
    // Ready turns false while draining; new connections are refused.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        TcpStream::connect(proc.addr).is_err(),
        "listener still open while draining"
    );

    slow.write_all(tail.as_bytes()).expect("write tail");
    slow.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = vec![0u8; 4096];
    let n = slow.read(&mut answer).expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"result\":130"), "{answer}");

    let status = proc
        .wait_exit(Duration::from_secs(10))
        .expect("exits after drain");
    assert!(status.success(), "{status}");
}

#[test]
fn every_call_is_logged_as_a_json_line_with_its_request_id() {
    let proc = Proc::start_with(&["calc"], free_addr(), "info");
    let request = format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SEED}",
        SEED.len()
    );
    raw_exchange(proc.addr, request.as_bytes(), Duration::from_secs(5));
    let log = proc.log_dir.path().join("app.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let line = text
            .lines()
            .find(|l| l.contains("5545abec-aab1-4efa-80ef-b3491cb4b6c5"));
        if let Some(line) = line {
            let v: Value = serde_json::from_str(line).expect("JSON line");
            assert_eq!(v["fields"]["method"], "calc.summ");
            assert_eq!(v["fields"]["outcome"], "ok");
            assert!(v["fields"]["duration_us"].is_u64());
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_config_fails_at_start_naming_file_and_key() {
    let (_dir, path) = config_file("[calc]\nlisten = \"127.0.0.1:1\"\nmax_conections = 5\n");
    let out = std::process::Command::new(common::binary())
        .args([
            "calc",
            "--config",
            &path,
            "--listen",
            &free_addr().to_string(),
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&path), "{stderr}");
    assert!(stderr.contains("max_conections"), "{stderr}");

    let out = std::process::Command::new(common::binary())
        .args(["calc", "--config", "/nonexistent/switchboard.toml"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/switchboard.toml"));
}
