//! The monitoring of deploy/ against a real stack and a real Prometheus.
//!
//! Starts two calc instances, stats, static, a gateway and a load balancer,
//! then Prometheus (Debian's `prometheus`) scraping them through a file_sd
//! targets file, as `deploy/prometheus/prometheus.yml` reads them, with the
//! rule files of deploy/prometheus loaded. After a short load, every PromQL
//! expression of the Grafana dashboards and of the alert and recording rules
//! is run through the HTTP API: each must parse, every rule must evaluate
//! without error, and every expression except the alerts' conditions must
//! return series, as must every metric they name.
//!
//! Skips when `prometheus` is not on PATH, unless SWITCHBOARD_REQUIRE_PROMTOOL=1.

mod common;

use common::{Proc, binary, free_addr, tempdir};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the load runs: long enough for a few scrapes at 1 s.
const LOAD: Duration = Duration::from_secs(6);

/// How long an expression may take to return series once the load is over:
/// recording rules need two evaluations after two scrapes.
const SETTLE: Duration = Duration::from_secs(20);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The stack under test and where each part serves /metrics.
struct Stack {
    procs: Vec<Proc>,
    /// (job, metrics address) of every process.
    targets: Vec<(&'static str, SocketAddr)>,
    /// The public address of the load balancer.
    entry: SocketAddr,
    _static_root: tempdir::Dir,
}

fn start_stack() -> Stack {
    let calc = [Proc::start(&["calc"]), Proc::start(&["calc"])];
    let stats = Proc::start(&["stats"]);
    let root = tempdir::Dir::new("monitoring-static");
    std::fs::write(root.path().join("hello.txt"), "hello\n").expect("write static file");
    let static_root = root.path().to_string_lossy().into_owned();
    let files = Proc::start(&["static", "--root", &static_root]);
    let calc_pool = format!("calc={},{}", calc[0].addr, calc[1].addr);
    let stats_pool = format!("stats={}", stats.addr);
    let gateway = Proc::start(&["gateway", "--service", &calc_pool, "--service", &stats_pool]);

    let (listen, admin) = (free_addr(), free_addr());
    let (rpc, statics) = (gateway.addr.to_string(), files.addr.to_string());
    let lb_args = ["--rpc", &rpc, "--static", &statics];
    let lb = Proc::start_lb(&lb_args, listen, admin, "warn");

    let targets = vec![
        ("calc", calc[0].addr),
        ("calc", calc[1].addr),
        ("stats", stats.addr),
        ("static", files.addr),
        ("gateway", gateway.addr),
        ("lb", admin),
    ];
    let [c0, c1] = calc;
    Stack {
        procs: vec![c0, c1, stats, files, gateway, lb],
        targets,
        entry: listen,
        _static_root: root,
    }
}

/// Prometheus on a free port, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempdir::Dir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The targets file in the format `switchboard up` writes for
/// deploy/prometheus/prometheus.yml: one group per process, `job` = component.
fn targets_json(targets: &[(&str, SocketAddr)]) -> String {
    let groups: Vec<Value> = targets
        .iter()
        .map(|(job, addr)| json!({"targets": [addr.to_string()], "labels": {"job": job}}))
        .collect();
    serde_json::to_string_pretty(&groups).expect("serialize targets")
}

fn start_prometheus(targets: &[(&str, SocketAddr)]) -> Prometheus {
    let dir = tempdir::Dir::new("prometheus");
    let rules = deploy_dir().join("prometheus");
    std::fs::create_dir_all(dir.path().join("targets")).expect("targets dir");
    std::fs::write(dir.path().join("targets/up.json"), targets_json(targets)).expect("targets");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n  - {}\n\
         scrape_configs:\n  - job_name: switchboard\n    file_sd_configs:\n\
         \x20     - files: ['{}/targets/*.json']\n        refresh_interval: 1s\n",
        rules.join("recording.yml").display(),
        rules.join("alerts.yml").display(),
        dir.path().display(),
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write prometheus.yml");
    let addr = free_addr();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn prometheus");
    let mut prometheus = Prometheus {
        child,
        addr,
        _dir: dir,
    };
    wait_prometheus_ready(&mut prometheus);
    prometheus
}

fn wait_prometheus_ready(prometheus: &mut Prometheus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::http_get_status(prometheus.addr, "/-/ready") != Some(200) {
        if let Ok(Some(status)) = prometheus.child.try_wait() {
            panic!("prometheus exited before it was ready: {status}");
        }
        assert!(Instant::now() < deadline, "prometheus not ready in 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Calls of every method, some of them errors, and a static file, through the
/// load balancer, for [`LOAD`].
async fn load(entry: SocketAddr) -> usize {
    let calls = [
        r#"{"method":"calc.summ","data":{"args":[1,2,3]}}"#,
        r#"{"method":"calc.sub","data":{"args":[9,4]}}"#,
        r#"{"method":"calc.mult","data":{"args":[6,7]}}"#,
        r#"{"method":"calc.div","data":{"args":[1,0]}}"#,
        r#"{"method":"stats.mean","data":{"args":[1,2,3,4]}}"#,
        r#"{"method":"calc.nope","data":{"args":[]}}"#,
    ];
    let client = client();
    let rpc = format!("http://{entry}/rpc");
    let file = format!("http://{entry}/static/hello.txt");
    let (deadline, mut sent) = (Instant::now() + LOAD, 0);
    while Instant::now() < deadline {
        for body in calls {
            let response = client
                .post(&rpc)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("call through the load balancer");
            let _ = response.bytes().await;
            sent += 1;
        }
        let _ = client
            .get(&file)
            .send()
            .await
            .expect("static file")
            .bytes()
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent
}

/// `application/x-www-form-urlencoded` for one value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Runs an instant query; `Err` carries Prometheus's error text.
async fn query(prometheus: SocketAddr, expr: &str) -> Result<Vec<Value>, String> {
    let response = client()
        .post(format!("http://{prometheus}/api/v1/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("query={}", form_encode(expr)))
        .send()
        .await
        .expect("query prometheus");
    let body: Value = response.json().await.expect("prometheus answers JSON");
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    match &body["data"]["result"] {
        Value::Array(series) => Ok(series.clone()),
        // A scalar or a string: one value.
        other => Ok(vec![other.clone()]),
    }
}

/// One PromQL expression to check, and where it came from.
#[derive(Debug)]
struct Expr {
    origin: String,
    promql: String,
    /// Alert conditions hold no series while all is well.
    may_be_empty: bool,
}

/// Grafana's variables replaced by values Prometheus accepts.
fn substitute_grafana_variables(expr: &str) -> String {
    let mut out = expr
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h");
    for name in ["job", "instance"] {
        out = out
            .replace(&format!("${{{name}}}"), ".*")
            .replace(&format!("${name}"), ".*");
    }
    out
}

/// `label_values(SELECTOR, label)` becomes SELECTOR.
fn variable_query(query: &str) -> Option<String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, _label) = inner.rsplit_once(',')?;
    Some(selector.trim().to_owned())
}

fn collect_panels(panels: &[Value], board: &str, out: &mut Vec<Expr>) {
    for panel in panels {
        if let Some(inner) = panel["panels"].as_array() {
            collect_panels(inner, board, out);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            out.push(Expr {
                origin: format!("{board} / {} / {}", panel["title"], target["refId"]),
                promql: substitute_grafana_variables(expr),
                may_be_empty: false,
            });
        }
    }
}

fn dashboard_exprs() -> Vec<Expr> {
    let dir = deploy_dir().join("grafana/dashboards");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/grafana/dashboards")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        collect_panels(board["panels"].as_array().expect("panels"), &name, &mut out);
        for var in board["templating"]["list"].as_array().into_iter().flatten() {
            let text = var["query"]["query"].as_str().or(var["query"].as_str());
            if let Some(selector) = text.and_then(variable_query) {
                out.push(Expr {
                    origin: format!("{name} / variable {}", var["name"]),
                    promql: substitute_grafana_variables(&selector),
                    may_be_empty: false,
                });
            }
        }
    }
    out
}

/// Number of `- record:` and `- alert:` entries in the rule files, to make
/// sure Prometheus loaded them all.
fn rules_in_files() -> usize {
    ["recording.yml", "alerts.yml"]
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(deploy_dir().join("prometheus").join(file))
                .expect("read rule file");
            text.lines()
                .map(str::trim_start)
                .filter(|l| l.starts_with("- record:") || l.starts_with("- alert:"))
                .count()
        })
        .sum()
}

/// The rules as Prometheus loaded them, once each has been evaluated; fails
/// on any rule whose evaluation errs.
async fn loaded_rules(prometheus: SocketAddr) -> Vec<Expr> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let body: Value = client()
            .get(format!("http://{prometheus}/api/v1/rules"))
            .send()
            .await
            .expect("rules API")
            .json()
            .await
            .expect("rules JSON");
        let rules: Vec<&Value> = body["data"]["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().expect("rules").iter())
            .collect();
        let errors: Vec<String> = rules
            .iter()
            .filter(|r| r["health"] == "err")
            .map(|r| format!("{}: {}", r["name"], r["lastError"]))
            .collect();
        assert!(errors.is_empty(), "rules fail to evaluate: {errors:#?}");
        if rules.iter().all(|r| r["health"] == "ok") {
            assert_eq!(
                rules.len(),
                rules_in_files(),
                "Prometheus loaded every rule"
            );
            return rules.iter().map(|r| rule_expr(r)).collect();
        }
        assert!(
            Instant::now() < deadline,
            "rules not all evaluated within {SETTLE:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn rule_expr(rule: &Value) -> Expr {
    let alert = rule["type"] == "alerting";
    Expr {
        origin: format!(
            "{} {}",
            if alert { "alert" } else { "record" },
            rule["name"]
        ),
        promql: rule["query"].as_str().expect("rule query").to_owned(),
        may_be_empty: alert,
    }
}

/// Metric names an expression reads: raw ones (`switchboard_*`, `process_*`,
/// `up`) and recorded ones (`level:metric:operations`).
fn metric_names(promql: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut label_block = false;
    let mut in_string = false;
    let mut token = String::new();
    for c in promql.chars().chain(std::iter::once(' ')) {
        if in_string {
            in_string = c != '"';
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
            continue;
        }
        let is_metric = token.contains(':')
            || token.starts_with("switchboard_")
            || token.starts_with("process_");
        if !label_block && is_metric && !names.contains(&token) {
            names.push(token.clone());
        }
        token.clear();
        match c {
            '"' => in_string = true,
            '{' => label_block = true,
            '}' => label_block = false,
            _ => {}
        }
    }
    names
}

/// Runs `expr`, retrying an empty answer until `deadline` (shared by all
/// expressions, so a run with failures stays short).
async fn check(prometheus: SocketAddr, expr: &Expr, deadline: Instant, failures: &mut Vec<String>) {
    loop {
        let empty = match query(prometheus, &expr.promql).await {
            Err(e) => {
                failures.push(format!(
                    "{}: invalid: {e}\n    {}",
                    expr.origin, expr.promql
                ));
                return;
            }
            Ok(series) => series.is_empty(),
        };
        if !empty || expr.may_be_empty {
            return;
        }
        if Instant::now() >= deadline {
            failures.push(format!("{}: no series\n    {}", expr.origin, expr.promql));
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_expression_runs_against_a_real_stack() {
    if !on_path("prometheus") {
        assert!(
            std::env::var("SWITCHBOARD_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
            "prometheus is required (SWITCHBOARD_REQUIRE_PROMTOOL=1) but not on PATH"
        );
        eprintln!("skipped: no `prometheus` on PATH (apt-get install prometheus)");
        return;
    }
    let started = Instant::now();
    let stack = start_stack();
    let prometheus = start_prometheus(&stack.targets);
    let sent = load(stack.entry).await;
    assert!(sent > 50, "only {sent} calls went through");

    let mut exprs = dashboard_exprs();
    exprs.extend(loaded_rules(prometheus.addr).await);
    let mut names: Vec<String> = exprs.iter().flat_map(|e| metric_names(&e.promql)).collect();
    names.sort();
    names.dedup();
    exprs.extend(names.into_iter().map(|name| Expr {
        origin: format!("metric {name}"),
        promql: name,
        may_be_empty: false,
    }));

    let mut failures = Vec::new();
    let deadline = Instant::now() + SETTLE;
    for expr in &exprs {
        check(prometheus.addr, expr, deadline, &mut failures).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} expressions failed:\n{}",
        failures.len(),
        exprs.len(),
        failures.join("\n")
    );
    assert_eq!(stack.procs.len(), stack.targets.len());
    eprintln!(
        "{} expressions checked in {:?}",
        exprs.len(),
        started.elapsed()
    );
}

#[test]
fn metric_names_skip_labels_strings_and_functions() {
    let names = metric_names(
        r#"sum by (job) (rate(switchboard_rpc_requests_total{outcome="error",a="x:y"}[1m]))
           / job_method:switchboard_rpc_requests:rate1m > 0 and process_open_fds"#,
    );
    assert_eq!(
        names,
        [
            "switchboard_rpc_requests_total",
            "job_method:switchboard_rpc_requests:rate1m",
            "process_open_fds"
        ]
    );
}

#[test]
fn grafana_variables_become_promql() {
    assert_eq!(
        substitute_grafana_variables(
            r#"rate(x{job=~"$job",instance=~"${instance}"}[$__rate_interval])"#
        ),
        r#"rate(x{job=~".*",instance=~".*"}[1m])"#
    );
    assert_eq!(
        variable_query(r#"label_values(switchboard_build_info{job=~"$job"}, instance)"#).as_deref(),
        Some(r#"switchboard_build_info{job=~"$job"}"#)
    );
}

#[test]
fn kubernetes_config_map_is_a_valid_switchboard_config() {
    let path = deploy_dir().join("k8s/switchboard.toml");
    let output = Command::new(binary())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run check-config");
    assert!(
        output.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}
