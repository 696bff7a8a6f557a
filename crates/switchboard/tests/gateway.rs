//! The gateway as a real process in front of real calc and stats processes.
//!
//! Every test starts its own processes on free ports and waits on readiness or on
//! the gateway's `/pools` and `/metrics`, never on fixed sleeps. Faults are real:
//! `kill -9`, `SIGSTOP`, and a slow TCP relay in front of one instance.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Proc, tempdir};
use serde_json::{Value, json};

/// Pool settings written into a test's config file.
struct PoolSpec<'a> {
    endpoints: &'a [SocketAddr],
    /// Extra `key = value` lines of the pool table.
    pool: &'a str,
    /// Extra `key = value` lines of its health table.
    health: &'a str,
}

impl PoolSpec<'_> {
    fn toml(&self, service: &str) -> String {
        let endpoints: Vec<String> = self.endpoints.iter().map(|a| format!("\"{a}\"")).collect();
        let pool = with_defaults(self.pool, &["try_timeout_ms = 1000"]);
        let health = with_defaults(self.health, &["interval_ms = 200", "eject_base_ms = 500"]);
        format!(
            "[gateway.services.{service}]\nendpoints = [{}]\nidempotent = true\n\
             connect_timeout_ms = 500\n{pool}\n\
             [gateway.services.{service}.health]\ntimeout_ms = 300\n{health}\n",
            endpoints.join(", "),
        )
    }
}

/// `lines` plus each default whose key `lines` does not set.
fn with_defaults(lines: &str, defaults: &[&str]) -> String {
    let mut out = lines.to_owned();
    for default in defaults {
        let key = default.split(' ').next().unwrap_or_default();
        if !lines.contains(key) {
            out.push('\n');
            out.push_str(default);
        }
    }
    out
}

/// A gateway process and its config file.
struct Gateway {
    proc: Proc,
    config: PathBuf,
    _dir: tempdir::Dir,
    http: reqwest::Client,
}

impl Gateway {
    fn start(calc: &PoolSpec<'_>, stats: Option<&PoolSpec<'_>>) -> Gateway {
        let dir = tempdir::Dir::new("gateway");
        let config = dir.path().join("switchboard.toml");
        write_config(&config, calc, stats);
        let path = config.to_string_lossy().into_owned();
        let proc = Proc::start(&["gateway", "--config", &path]);
        Gateway {
            proc,
            config,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    /// Rewrites the config file (atomically) and sends SIGHUP.
    fn reload(&self, calc: &PoolSpec<'_>) {
        write_config(&self.config, calc, None);
        self.proc.signal("HUP");
    }

    async fn post(&self, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let resp = self
            .http
            .post(format!("{}/rpc", self.proc.url()))
            .json(body)
            .send()
            .await
            .expect("gateway answers");
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, headers, value)
    }

    async fn summ(&self, a: i64, b: i64) -> Result<(), String> {
        let body = json!({"method": "calc.summ", "data": {"args": [a, b]}});
        let resp = self
            .http
            .post(format!("{}/rpc", self.proc.url()))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = resp.status().as_u16();
        let value: Value = resp.json().await.map_err(|e| format!("body: {e}"))?;
        match value["result"].as_i64() {
            Some(sum) if status == 200 && sum == a + b => Ok(()),
            _ => Err(format!("{status} {value}")),
        }
    }

    async fn pools(&self) -> Value {
        let url = format!("{}/pools", self.proc.url());
        let resp = self.http.get(url).send().await.expect("pools");
        resp.json().await.expect("pools json")
    }

    /// The `/pools` entry of one endpoint of `pool`, if it is a member.
    async fn endpoint(&self, pool: &str, addr: SocketAddr) -> Option<Value> {
        let pools = self.pools().await;
        let pool = pools["pools"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == pool)?;
        let list = pool["endpoints"].as_array()?;
        list.iter().find(|e| e["addr"] == addr.to_string()).cloned()
    }

    async fn requests_of(&self, pool: &str, addr: SocketAddr) -> u64 {
        let ep = self.endpoint(pool, addr).await;
        ep.and_then(|e| e["requests"].as_u64()).unwrap_or(0)
    }

    /// Sum of the `/metrics` samples whose line starts with `prefix`.
    async fn metric(&self, prefix: &str) -> f64 {
        let url = format!("{}/metrics", self.proc.url());
        let text = self.http.get(url).send().await.expect("metrics");
        let text = text.text().await.expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn write_config(path: &Path, calc: &PoolSpec<'_>, stats: Option<&PoolSpec<'_>>) {
    let mut text = String::from("[log]\nto_file = false\n\n");
    text.push_str(&calc.toml("calc"));
    if let Some(stats) = stats {
        text.push_str(&stats.toml("stats"));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("replace config");
}

fn calcs(n: usize) -> Vec<Proc> {
    (0..n).map(|_| Proc::start(&["calc"])).collect()
}

fn addrs(procs: &[Proc]) -> Vec<SocketAddr> {
    procs.iter().map(|p| p.addr).collect()
}

fn default_pool(endpoints: &[SocketAddr]) -> PoolSpec<'_> {
    PoolSpec {
        endpoints,
        pool: "",
        health: "",
    }
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `timeout`.
async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "{what} not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Clients calling `calc.summ` in a loop until stopped, counting results.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(gw: &Arc<Gateway>, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let tasks = (0..workers)
            .map(|w| {
                let (gw, stop, ok) = (gw.clone(), stop.clone(), ok.clone());
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    let mut i = 0i64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        match gw.summ(i, w as i64).await {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                failures.push(e);
                                0
                            }
                        };
                    }
                    failures
                })
            })
            .collect();
        Load { stop, ok, tasks }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients; returns every failure they saw.
    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for task in self.tasks {
            failures.extend(task.await.expect("load task"));
        }
        failures
    }
}

/// Sends `total` calls over `concurrency` clients; all must succeed.
async fn burst(gw: &Arc<Gateway>, total: usize, concurrency: usize) {
    let per = total / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let gw = gw.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    gw.summ(i as i64, w as i64).await.expect("call succeeds");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("burst task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_three_instances() {
    let calc = calcs(3);
    let list = addrs(&calc);
    let gw = Arc::new(Gateway::start(&default_pool(&list), None));

    burst(&gw, 300, 6).await;

    for addr in &list {
        let n = gw.requests_of("calc", *addr).await;
        assert!(n >= 40, "{addr} got only {n} of 300");
    }
}

/// A TCP relay that holds every chunk from the client for `delay` before passing
/// it on: the instance behind it looks slow.
async fn slow_relay(backend: SocketAddr, delay: Duration) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(backend).await else {
                continue;
            };
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut server_rx, mut server_tx) = server.into_split();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n @ 1..) = client_rx.read(&mut buf).await {
                    tokio::time::sleep(delay).await;
                    if server_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_prefers_fast_instances_over_a_slow_one() {
    let calc = calcs(3);
    let slow = slow_relay(calc[2].addr, Duration::from_millis(50)).await;
    let list = [calc[0].addr, calc[1].addr, slow];
    let gw = Arc::new(Gateway::start(&default_pool(&list), None));

    burst(&gw, 400, 8).await;

    let slow_count = gw.requests_of("calc", slow).await;
    let fast: u64 = gw.requests_of("calc", list[0]).await + gw.requests_of("calc", list[1]).await;
    assert!(
        slow_count * 10 < fast,
        "slow instance got {slow_count}, fast ones {fast}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_fails_no_request_and_the_instance_comes_back() {
    let mut calc = calcs(3);
    let list = addrs(&calc);
    let gw = Arc::new(Gateway::start(&default_pool(&list), None));
    let load = Load::start(&gw, 4);
    eventually(Duration::from_secs(5), "load running", || async {
        load.ok() > 50
    })
    .await;

    let victim = list[0];
    calc[0].signal("KILL");
    let ejected = eventually(Duration::from_secs(5), "victim ejected", || async {
        let ep = gw.endpoint("calc", victim).await.expect("member");
        ep["ejected"] == true || ep["healthy"] == false
    })
    .await;
    assert!(
        ejected < Duration::from_secs(2),
        "ejected after {ejected:?}"
    );

    calc[0] = Proc::start_on(&["calc"], victim);
    let before = gw.requests_of("calc", victim).await;
    eventually(Duration::from_secs(10), "victim readmitted", || async {
        let ep = gw.endpoint("calc", victim).await.expect("member");
        let back = ep["ejected"] == false && ep["healthy"] == true;
        back && ep["requests"].as_u64().unwrap_or(0) > before
    })
    .await;

    let served = load.ok();
    let failures = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {served} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_instances_down_is_unavailable_within_the_connect_timeout() {
    let mut calc = calcs(2);
    let list = addrs(&calc);
    let gw = Gateway::start(&default_pool(&list), None);
    for proc in &mut calc {
        proc.signal("KILL");
        proc.wait_exit(Duration::from_secs(5)).expect("killed");
    }

    let started = Instant::now();
    let (status, _, body) = gw
        .post(&json!({"method": "calc.summ", "data": [1, 2]}))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");

    let rpc = json!({"jsonrpc": "2.0", "method": "calc.summ", "params": [1], "id": 9});
    let (status, _, body) = gw.post(&rpc).await;
    assert_eq!(status, 200);
    assert_eq!(body["error"]["data"]["code"], "unavailable", "{body}");
    assert_eq!(body["id"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_instance_times_out_and_the_call_is_retried_elsewhere() {
    let calc = calcs(2);
    let list = addrs(&calc);
    let spec = PoolSpec {
        endpoints: &list,
        pool: "try_timeout_ms = 300\nbalance = \"round_robin\"",
        health: "interval_ms = 0\nconsecutive_failures = 100",
    };
    let gw = Arc::new(Gateway::start(&spec, None));
    calc[0].signal("STOP");

    for i in 0..6 {
        gw.summ(i, 1).await.expect("right answer despite the stall");
    }

    let retried = gw
        .metric("switchboard_upstream_retries_total{pool=\"calc\",reason=\"timeout\"}")
        .await;
    assert!(retried >= 1.0, "no timeout retry happened");
    calc[0].signal("CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_bounds_attempts_when_every_instance_fails() {
    let calc = calcs(3);
    let list = addrs(&calc);
    let spec = PoolSpec {
        endpoints: &list,
        pool: "try_timeout_ms = 100\nmax_attempts = 3\n\
               retry_budget_ratio = 0.2\nretry_budget_min_per_sec = 0",
        health: "interval_ms = 0\nconsecutive_failures = 100000",
    };
    let gw = Arc::new(Gateway::start(&spec, None));
    for proc in &calc {
        proc.signal("STOP");
    }

    let calls = 50;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move {
                for _ in 0..calls / 10 {
                    let (status, _, body) =
                        gw.post(&json!({"method": "calc.summ", "data": [1]})).await;
                    assert_eq!((status, &body["error"]["code"]), (504, &json!("timeout")));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }

    let attempts = gw
        .metric("switchboard_upstream_requests_total{pool=\"calc\"")
        .await;
    let exhausted = gw
        .metric("switchboard_upstream_retry_budget_exhausted_total{pool=\"calc\"}")
        .await;
    let limit = calls as f64 * 1.2 + 1.0;
    assert!(
        attempts >= calls as f64 && attempts <= limit,
        "{attempts} attempts for {calls} calls"
    );
    assert!(exhausted > 0.0, "the budget never ran out");
    for proc in &calc {
        proc.signal("CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_instances_under_load_without_failures() {
    let calc = calcs(3);
    let (a, b, c) = (calc[0].addr, calc[1].addr, calc[2].addr);
    let gw = Arc::new(Gateway::start(&default_pool(&[a, b]), None));
    let load = Load::start(&gw, 4);

    gw.reload(&default_pool(&[a, b, c]));
    eventually(Duration::from_secs(5), "c added and used", || async {
        gw.requests_of("calc", c).await > 10
    })
    .await;

    gw.reload(&default_pool(&[b, c]));
    eventually(Duration::from_secs(5), "a removed", || async {
        gw.endpoint("calc", a).await.is_none()
    })
    .await;
    let after = load.ok();
    eventually(Duration::from_secs(5), "load goes on", || async {
        load.ok() > after + 50
    })
    .await;

    std::fs::write(
        &gw.config,
        "[gateway.services.calc]\nendpoints = [\"nowhere\"]\n",
    )
    .expect("write bad config");
    gw.proc.signal("HUP");
    eventually(Duration::from_secs(5), "bad config refused", || async {
        gw.metric("switchboard_gateway_config_reloads_total{result=\"error\"}")
            .await
            >= 1.0
    })
    .await;
    assert!(gw.endpoint("calc", b).await.is_some(), "old pools kept");

    let failures = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

fn services() -> (Vec<Proc>, Proc, Gateway) {
    let calc = calcs(1);
    let stats = Proc::start(&["stats"]);
    let calc_list = addrs(&calc);
    let stats_list = [stats.addr];
    let gw = Gateway::start(&default_pool(&calc_list), Some(&default_pool(&stats_list)));
    (calc, stats, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_split_across_calc_and_stats_and_answered_in_order() {
    let (_calc, _stats, gw) = services();
    let batch = json!([
        {"method": "stats.median", "data": [5, 1, 3], "requestId": "m"},
        {"jsonrpc": "2.0", "method": "calc.mult", "params": [6, 7], "id": 1},
        {"jsonrpc": "2.0", "method": "stats.max", "params": [1, 2]},
        {"method": "geo.where", "requestId": "g"},
        {"jsonrpc": "2.0", "method": "stats.mean", "params": [], "id": "e"},
        {"method": "calc.summ", "data": [1, 2], "requestId": "s"},
    ]);
    let (status, _, body) = gw.post(&batch).await;
    assert_eq!(status, 200);
    let answers = body.as_array().expect("array");
    assert_eq!(answers.len(), 5, "the notification gets no answer: {body}");
    assert_eq!(answers[0], json!({"requestId": "m", "result": 3}));
    assert_eq!(answers[1]["result"], 42);
    assert_eq!(answers[2]["error"]["code"], "method_not_found");
    assert_eq!(answers[2]["requestId"], "g");
    assert_eq!(answers[3]["error"]["data"]["code"], "invalid_params");
    assert_eq!(answers[4], json!({"requestId": "s", "result": 3}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_service_is_method_not_found_from_the_gateway() {
    let (_calc, _stats, gw) = services();
    let (status, _, body) = gw
        .post(&json!({"method": "geo.where", "requestId": "r7"}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "method_not_found");
    assert_eq!(body["requestId"], "r7");

    let rpc = json!({"jsonrpc": "2.0", "method": "nodot", "id": "x"});
    let (status, _, body) = gw.post(&rpc).await;
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], -32601);
    assert_eq!(body["id"], "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_is_routed_in_its_own_pool() {
    let (calc, stats, gw) = services();
    for _ in 0..5 {
        let (status, _, body) = gw
            .post(&json!({"method": "stats.mean", "data": [1, 2]}))
            .await;
        assert_eq!((status, &body["result"]), (200, &json!(1.5)), "{body}");
    }
    assert_eq!(gw.requests_of("stats", stats.addr).await, 5);
    assert_eq!(gw.requests_of("calc", calc[0].addr).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_and_trace_context_pass_through() {
    let (_calc, _stats, gw) = services();
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let resp = gw
        .http
        .post(format!("{}/rpc", gw.proc.url()))
        .header("x-request-id", "hdr-1")
        .header("traceparent", trace)
        .json(&json!({"jsonrpc": "2.0", "method": "calc.summ", "params": [1], "id": 1}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.headers()["x-request-id"], "hdr-1");
    assert_eq!(resp.headers()["traceparent"], trace);

    let (_, headers, body) = gw
        .post(&json!({"method": "calc.summ", "data": [1], "requestId": "body-id"}))
        .await;
    assert_eq!(headers["x-request-id"], "body-id");
    assert_eq!(body["requestId"], "body-id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() {
    let (_calc, _stats, mut gw) = services();
    gw.proc.signal("TERM");
    let status = gw.proc.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status}");
}

#[test]
fn the_gateway_logs_one_access_line_per_request_with_its_request_id() {
    let calc = Proc::start(&["calc"]);
    let gateway = Proc::start_with(
        &["gateway", "--service", &format!("calc={}", calc.addr)],
        common::free_addr(),
        "info",
    );
    let body = r#"{"method":"calc.summ","data":{"args":[1,2]}}"#;
    let request = format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nX-Request-Id: gw-log-1\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    common::raw_exchange(gateway.addr, request.as_bytes(), Duration::from_secs(5));
    let log = gateway.log_dir.path().join("app.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("gw-log-1")) {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(v["fields"]["status"], 200, "{line}");
            assert!(v["fields"]["duration_us"].is_u64(), "{line}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access line in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
