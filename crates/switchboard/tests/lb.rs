//! The load balancer as a real process over real sockets: in front of calc,
//! gateways, and a small header-echoing upstream written here.
//!
//! Every test starts its own processes on free ports and waits on readiness or
//! on the admin port's `/pools`, never on fixed sleeps.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Proc, free_addr, raw_exchange, tempdir};
use serde_json::{Value, json};

const SEED: &str = r#"{"method":"calc.summ","data":{"args":[1,5,-8,156,-24]}}"#;

/// A load balancer with its config file.
struct Lb {
    proc: Proc,
    admin: SocketAddr,
    config: PathBuf,
    _dir: tempdir::Dir,
}

impl Lb {
    /// Starts an LB whose `[lb]` section is `extra` plus the two pools.
    fn start(rpc: &[SocketAddr], statics: &[SocketAddr], extra: &str) -> Lb {
        let dir = tempdir::Dir::new("lb");
        let config = dir.path().join("switchboard.toml");
        write_config(&config, rpc, statics, extra);
        let (listen, admin) = (free_addr(), free_addr());
        let path = config.to_string_lossy().into_owned();
        let level = "warn,switchboard::access=info";
        let proc = Proc::start_lb(&["--config", &path], listen, admin, level);
        Lb {
            proc,
            admin,
            config,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proc.addr)
    }

    fn pools(&self) -> Value {
        let text = blocking_get(self.admin, "/pools");
        serde_json::from_str(&text).expect("pools JSON")
    }
}

fn endpoints(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    list.join(", ")
}

fn write_config(path: &Path, rpc: &[SocketAddr], statics: &[SocketAddr], extra: &str) {
    let pool = "idempotent = true\nconnect_timeout_ms = 300\ntry_timeout_ms = 2000\n";
    let health = "interval_ms = 200\ntimeout_ms = 300\neject_base_ms = 500\n";
    let text = format!(
        "[lb]\n{extra}\n[lb.rpc]\nendpoints = [{}]\n{pool}[lb.rpc.health]\n{health}\
         [lb.static]\nendpoints = [{}]\n{pool}[lb.static.health]\n{health}",
        endpoints(rpc),
        endpoints(statics),
    );
    std::fs::write(path, text).expect("write config");
}

/// A GET over a fresh connection, returning the body.
fn blocking_get(addr: SocketAddr, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let raw = raw_exchange(addr, request.as_bytes(), Duration::from_secs(3));
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn status_of(raw: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(raw);
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// An upstream that answers every request with its request head as the body,
/// counting `/rpc` requests and optionally waiting before answering.
struct Echo {
    addr: SocketAddr,
    rpc_requests: Arc<AtomicUsize>,
}

impl Echo {
    fn start(delay: Duration) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
        let addr = listener.local_addr().expect("addr");
        let rpc_requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&rpc_requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || echo_connection(stream, &counter, delay));
            }
        });
        Echo { addr, rpc_requests }
    }
}

fn echo_connection(stream: TcpStream, counter: &AtomicUsize, delay: Duration) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if head.starts_with("POST /rpc") {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(delay);
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
            head.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Posts the seed request; the answer's `result`, or why there is none.
async fn seed(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(SEED)
        .send()
        .await
        .map_err(|e| format!("send: {e:?}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| format!("body: {e}"))?;
    match status.as_u16() {
        200 => Ok(body["result"].clone()),
        other => Err(format!("{other}: {body}")),
    }
}

/// Load from `clients` tasks until `stop`; returns (answered, failures).
fn load(
    url: String,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (url, stop) = (url.clone(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let (mut ok, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::SeqCst) {
                        match seed(&client, &url).await {
                            Ok(v) if v == json!(130) => ok += 1,
                            Ok(v) => failures.push(format!("wrong answer {v}")),
                            Err(e) => failures.push(e),
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        let mut total = (0, Vec::new());
        for task in tasks {
            let (ok, failures) = task.await.expect("load task");
            total.0 += ok;
            total.1.extend(failures);
        }
        total
    })
}

/// Polls `check` every 20 ms until it holds, for at most `timeout`.
async fn until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn seed_request_through_lb_gateway_and_calc_answers_130() {
    let calc = Proc::start(&["calc"]);
    let calc_arg = format!("calc={}", calc.addr);
    let gateway = Proc::start(&["gateway", "--service", &calc_arg]);
    let lb = Lb::start(&[gateway.addr], &[free_addr()], "");

    let client = reqwest::Client::new();
    let result = seed(&client, &lb.url("/rpc")).await.expect("answer");
    assert_eq!(result, json!(130));
}

#[tokio::test]
async fn unknown_paths_get_404_wrong_methods_405_and_admin_stays_private() {
    let calc = Proc::start(&["calc"]);
    let lb = Lb::start(&[calc.addr], &[free_addr()], "");
    let client = reqwest::Client::new();

    let resp = client.get(lb.url("/nowhere")).send().await.expect("404");
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "method_not_found", "{body}");
    let resp = client.get(lb.url("/rpc")).send().await.expect("405");
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let resp = client
        .delete(lb.url("/static/a"))
        .send()
        .await
        .expect("405");
    assert_eq!(resp.status(), 405);

    for path in ["/metrics", "/health", "/ready", "/pools"] {
        let resp = client.get(lb.url(path)).send().await.expect("public");
        assert_eq!(resp.status(), 404, "{path} on the public port");
    }
    let resp = client
        .post(lb.url("/reload"))
        .send()
        .await
        .expect("public reload");
    assert_eq!(resp.status(), 404);

    let metrics = blocking_get(lb.admin, "/metrics");
    assert!(
        metrics.contains("switchboard_lb_requests_total{route=\"local\",class=\"4xx\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_upstream_"),
        "pool metrics are exposed"
    );
    assert_eq!(lb.pools()["rpc"]["healthy"], 1);
}

#[tokio::test]
async fn forwarded_headers_are_rewritten_and_hop_by_hop_dropped() {
    let echo = Echo::start(Duration::ZERO);
    let lb = Lb::start(&[echo.addr], &[free_addr()], "");
    let client = reqwest::Client::new();

    let resp = client
        .post(lb.url("/rpc"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "bad id with spaces")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("proxy-authorization", "Basic eDp5")
        .header("te", "trailers")
        .body("{}")
        .send()
        .await
        .expect("echo");
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let head = resp.text().await.expect("head").to_ascii_lowercase();
    assert!(head.contains("x-forwarded-for: 127.0.0.1\r\n"), "{head}");
    assert!(!head.contains("6.6.6.6"), "{head}");
    assert!(head.contains("x-forwarded-proto: http\r\n"), "{head}");
    assert!(
        head.contains("traceparent: 00-0af7651916cd43dd8448eb211c80319c"),
        "{head}"
    );
    assert!(
        head.contains(&format!("x-request-id: {}", id.to_ascii_lowercase())),
        "{head}"
    );
    assert_ne!(id, "bad id with spaces");
    for gone in [
        "x-private",
        "proxy-authorization",
        "te:",
        "connection: keep-alive",
    ] {
        assert!(!head.contains(gone), "{gone} was forwarded: {head}");
    }
    assert!(
        head.contains(&format!("host: {}", lb.proc.addr)),
        "client host kept: {head}"
    );

    let resp = client
        .post(lb.url("/rpc"))
        .header("x-request-id", "client-id-7")
        .body("{}")
        .send()
        .await
        .expect("echo");
    assert_eq!(resp.headers()["x-request-id"], "client-id-7");

    let logs = lb.proc.log_dir.path().to_path_buf();
    until(Duration::from_secs(5), "the access log line", || {
        access_line(&logs, &id)
    })
    .await;
}

/// Whether a JSON access line with `id` is in the log folder.
fn access_line(dir: &Path, id: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        text.lines().any(|line| {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                return false;
            };
            let f = &v["fields"];
            f["requestId"] == id
                && f["status"] == 200
                && f["method"] == "POST"
                && f["path"] == "/rpc"
                && f["upstream"].is_string()
                && f["bytes"].as_u64().is_some_and(|b| b > 0)
        })
    })
}

/// Raw requests that must get 400 and never reach the upstream.
const SMUGGLING: [(&str, &str); 6] = [
    (
        "content-length and transfer-encoding",
        "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nPOST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    ),
    (
        "transfer-encoding before content-length",
        "POST /rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n\
         0\r\n\r\nPOST /rpc HTTP/1.1\r\nHost: x\r\n\r\n",
    ),
    (
        "mismatched content-length",
        "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\n{}",
    ),
    (
        "obfuscated transfer-encoding",
        "POST /rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 2\r\n\r\n{}",
    ),
    (
        "transfer-encoding on HTTP/1.0",
        "POST /rpc HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ),
    (
        "chunked body while chunked requests are off",
        "POST /rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ),
];

#[tokio::test]
async fn smuggling_attempts_get_400_and_are_never_forwarded() {
    let echo = Echo::start(Duration::ZERO);
    let lb = Lb::start(&[echo.addr], &[free_addr()], "");
    for (name, request) in SMUGGLING {
        let raw = raw_exchange(lb.proc.addr, request.as_bytes(), Duration::from_secs(3));
        let text = String::from_utf8_lossy(&raw);
        assert_eq!(status_of(&raw), 400, "{name}: {text}");
        assert_eq!(
            text.matches("HTTP/1.1").count(),
            1,
            "{name}: one answer only: {text}"
        );
    }
    assert_eq!(
        echo.rpc_requests.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );

    // hyper merges identical duplicate lengths into one (RFC 9110 §8.6); the
    // body is then framed one way only and forwarded once.
    let same = "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\
                Connection: close\r\n\r\n{}";
    let raw = raw_exchange(lb.proc.addr, same.as_bytes(), Duration::from_secs(3));
    assert_eq!(status_of(&raw), 200, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(echo.rpc_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn malformed_chunking_gets_400_when_chunked_bodies_are_on() {
    let echo = Echo::start(Duration::ZERO);
    let lb = Lb::start(&[echo.addr], &[free_addr()], "chunked_requests = true");
    let good = "POST /rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                2\r\n{}\r\n0\r\n\r\n";
    let raw = raw_exchange(lb.proc.addr, good.as_bytes(), Duration::from_secs(3));
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert_eq!(status_of(&raw), 200, "{text}");
    assert!(
        text.contains("content-length: 2\r\n") && !text.contains("transfer-encoding"),
        "{text}"
    );

    let bad = [
        "2\r\n{}\r\nzz\r\n\r\n",
        "2\r\n{}XX0\r\n\r\n",
        "-1\r\n{}\r\n0\r\n\r\n",
        "ffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
    ];
    for chunks in bad {
        let request =
            format!("POST /rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}");
        let raw = raw_exchange(lb.proc.addr, request.as_bytes(), Duration::from_secs(3));
        let status = status_of(&raw);
        assert!(
            status == 400 || raw.is_empty(),
            "{chunks:?}: {}",
            String::from_utf8_lossy(&raw)
        );
    }
    assert_eq!(
        echo.rpc_requests.load(Ordering::SeqCst),
        1,
        "only the good request arrived"
    );
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let echo = Echo::start(Duration::ZERO);
    let lb = Lb::start(&[echo.addr], &[free_addr()], "max_body_bytes = 1000");
    let client = reqwest::Client::new();
    let resp = client
        .post(lb.url("/rpc"))
        .body(vec![b' '; 5000])
        .send()
        .await
        .expect("413");
    assert_eq!(resp.status(), 413);
    let resp = client
        .post(lb.url("/rpc"))
        .body(vec![b' '; 900])
        .send()
        .await
        .expect("200");
    assert_eq!(resp.status(), 200);
    assert_eq!(echo.rpc_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn overload_is_shed_at_once_with_503_and_retry_after() {
    let echo = Echo::start(Duration::from_millis(1500));
    let lb = Lb::start(
        &[echo.addr],
        &[free_addr()],
        "max_in_flight = 2\nretry_after_s = 3",
    );
    let url = lb.url("/rpc");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let resp = reqwest::Client::new()
                    .post(url)
                    .body("{}")
                    .send()
                    .await
                    .expect("answer");
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap_or("").to_owned());
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                (status, retry, body, started.elapsed())
            })
        })
        .collect();
    let mut shed = 0;
    for task in tasks {
        let (status, retry, body, elapsed) = task.await.expect("task");
        if status == 503 {
            shed += 1;
            assert_eq!(retry.as_deref(), Some("3"));
            assert!(body.contains("overloaded"), "{body}");
            assert!(
                elapsed < Duration::from_millis(1000),
                "shed at once, took {elapsed:?}"
            );
        } else {
            assert_eq!(status, 200);
        }
    }
    assert!(shed >= 6, "{shed} shed of 8 with a limit of 2");
    let metrics = blocking_get(lb.admin, "/metrics");
    assert!(metrics.contains("switchboard_lb_shed_total"), "{metrics}");
}

#[tokio::test]
async fn kill_9_of_one_of_two_gateways_under_load_fails_no_request() {
    let calc = Proc::start(&["calc"]);
    let calc_arg = format!("calc={}", calc.addr);
    let doomed = Proc::start(&["gateway", "--service", &calc_arg]);
    let survivor = Proc::start(&["gateway", "--service", &calc_arg]);
    let lb = Lb::start(&[doomed.addr, survivor.addr], &[free_addr()], "");

    let stop = Arc::new(AtomicBool::new(false));
    let running = load(lb.url("/rpc"), 8, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(700)).await;
    doomed.signal("KILL");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failures) = running.await.expect("load");
    assert!(ok > 100, "only {ok} answers");
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_accepted_request_and_exits_0() {
    let calc = Proc::start(&["calc"]);
    let mut lb = Lb::start(&[calc.addr], &[free_addr()], "drain_timeout_ms = 5000");
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(lb.url("/rpc"), 8, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(700)).await;
    lb.proc.signal("TERM");
    let status = tokio::task::block_in_place(|| lb.proc.wait_exit(Duration::from_secs(8)));
    stop.store(true, Ordering::SeqCst);
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );

    let (ok, failures) = running.await.expect("load");
    assert!(ok > 50, "only {ok} answers");
    // Once the listener is closed, new connections are refused: those requests
    // were never accepted. Anything else (an error answer, a cut response) is a
    // request accepted and not answered.
    let unanswered: Vec<&String> = failures
        .iter()
        .filter(|f| !f.contains("ConnectError"))
        .collect();
    assert!(
        unanswered.is_empty(),
        "{} unanswered, first: {:?}",
        unanswered.len(),
        unanswered.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_backend_under_load_with_no_failed_request() {
    let first = Proc::start(&["calc"]);
    let second = Proc::start(&["calc"]);
    let lb = Lb::start(&[first.addr], &[free_addr()], "");
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(lb.url("/rpc"), 4, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(500)).await;

    write_config(&lb.config, &[first.addr, second.addr], &[free_addr()], "");
    lb.proc.signal("HUP");
    let added = second.addr.to_string();
    until(
        Duration::from_secs(5),
        "the second backend taking requests",
        || {
            let pools = lb.pools();
            let endpoints = pools["rpc"]["endpoints"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            endpoints
                .iter()
                .any(|e| e["addr"] == added.as_str() && e["requests"].as_u64() > Some(10))
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failures) = running.await.expect("load");
    assert!(ok > 20, "only {ok} answers");
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );

    std::fs::write(&lb.config, "[lb]\nmax_in_flight = 0\n").expect("bad config");
    let refused = reqwest::Client::new()
        .post(format!("http://{}/reload", lb.admin))
        .send()
        .await
        .expect("reload");
    assert_eq!(refused.status(), 400);
    let result = seed(&reqwest::Client::new(), &lb.url("/rpc"))
        .await
        .expect("still serving");
    assert_eq!(result, json!(130));
    assert_eq!(
        lb.pools()["rpc"]["endpoints"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_do_not_stop_a_normal_client() {
    let calc = Proc::start(&["calc"]);
    let lb = Lb::start(
        &[calc.addr],
        &[free_addr()],
        "header_read_timeout_ms = 2000",
    );
    let addr = lb.proc.addr;
    let slow: Vec<TcpStream> = (0..200)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"POST /rpc HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .ok()?;
            Some(s)
        })
        .collect();
    assert_eq!(slow.len(), 200);

    let started = Instant::now();
    let result = seed(&reqwest::Client::new(), &lb.url("/rpc"))
        .await
        .expect("served");
    assert_eq!(result, json!(130));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );

    // The header timeout closes the slow connections.
    let mut first = slow.into_iter().next().expect("one");
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = first.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "slow client held {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn tls_is_terminated_with_a_configured_certificate() {
    let echo = Echo::start(Duration::ZERO);
    let dir = tempdir::Dir::new("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let (cert_path, key_path) = (dir.path().join("lb.pem"), dir.path().join("lb.key"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let tls = format!("[lb.tls]\ncert = {cert_path:?}\nkey = {key_path:?}\n");
    let lb = Lb::start(&[echo.addr], &[free_addr()], &format!("\n{tls}"));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("trust");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(lb.proc.addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request =
        "POST /rpc HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("x-forwarded-proto: https"), "{text}");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let echo = Echo::start(Duration::ZERO);
    let lb = Lb::start(&[echo.addr], &[free_addr()], "idle_timeout_ms = 300");
    let mut stream = TcpStream::connect(lb.proc.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let request = "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    stream.write_all(request.as_bytes()).expect("write");
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert_eq!(
        status_of(&answer),
        200,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let held = started.elapsed();
    assert!(
        held >= Duration::from_millis(250) && held < Duration::from_secs(3),
        "held {held:?}"
    );
}
