//! `switchboard up`, `call` and `top` against a whole stack of real processes.

mod common;

use common::{Proc, binary, free_addr, tempdir};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A running `switchboard up`, stopped with SIGTERM when dropped.
struct Stack {
    child: Child,
    port: u16,
    logs: tempdir::Dir,
    table: String,
}

impl Stack {
    fn start() -> Stack {
        let logs = tempdir::Dir::new("up");
        let port = free_addr().port();
        let mut child = Command::new(binary())
            .args(["up", "--port", &port.to_string(), "--log-dir"])
            .arg(logs.path())
            .args([
                "--static-root",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../static"),
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn up");
        let table = read_table(&mut child);
        Stack {
            child,
            port,
            logs,
            table,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/rpc", self.port)
    }

    fn components(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.logs.path().join("stack.json")).expect("stack file");
        serde_json::from_str(&text).expect("stack json")
    }

    fn pid_of(&self, name: &str) -> u32 {
        let components = self.components();
        let entry = components
            .iter()
            .find(|c| c["name"] == name)
            .expect("component");
        entry["pid"].as_u64().expect("pid") as u32
    }

    fn call(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary())
            .arg("call")
            .arg("--url")
            .arg(self.url())
            .args(args)
            .output()
            .expect("run call")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        kill(self.child.id(), "TERM");
        let _ = self.child.wait();
    }
}

/// Reads `up`'s stdout until the table and the hints are printed.
fn read_table(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut table = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            table.push_str(&line);
            table.push('\n');
            if line.starts_with("Ctrl-C") {
                let _ = tx.send(table.clone());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("up printed its table within 60 s")
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purpose: it serves nothing.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn up_answers_the_seed_request_survives_a_calc_kill_and_stops_cleanly() {
    let mut stack = Stack::start();
    for name in [
        "lb",
        "gateway-1",
        "gateway-2",
        "calc-1",
        "calc-2",
        "calc-3",
        "stats-1",
        "static-1",
    ] {
        assert!(
            stack.table.contains(name),
            "table lacks {name}:\n{}",
            stack.table
        );
    }
    assert!(stack.table.contains("curl"), "{}", stack.table);

    let out = stack.call(&["calc.summ", "1", "5", "-8", "156", "-24"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "130");

    // Steady load while one calc child is killed outright.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let url = stack.url();
    let load = {
        let (stop, failures, sent) = (stop.clone(), failures.clone(), sent.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async move {
                let client = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::Relaxed);
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(r#"{"method":"calc.mult","data":{"args":[6,7]}}"#)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    let ok = match answer {
                        Ok(r) if r.status() == 200 => r
                            .text()
                            .await
                            .map(|t| t.contains("\"result\":42"))
                            .unwrap_or(false),
                        _ => false,
                    };
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let victim = stack.pid_of("calc-2");
    kill(victim, "KILL");

    // The supervisor brings calc-2 back on the same port.
    let calc2: SocketAddrText = stack
        .components()
        .iter()
        .find(|c| c["name"] == "calc-2")
        .map(|c| c["addr"].as_str().expect("addr").to_owned())
        .expect("calc-2");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let addr = calc2.parse().expect("socket addr");
        if !alive(victim) && common::http_get_status(addr, "/ready") == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "calc-2 did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    assert!(
        sent.load(Ordering::Relaxed) > 100,
        "too little load to judge"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed requests while calc-2 was killed"
    );

    // SIGTERM stops every child and leaves nothing behind.
    let pids: Vec<u32> = stack
        .components()
        .iter()
        .filter_map(|c| c["pid"].as_u64())
        .map(|p| p as u32)
        .collect();
    assert!(pids.len() >= 8);
    kill(stack.child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "up did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids.iter().filter(|&&p| p != victim) {
        assert!(!alive(*pid), "child {pid} still running after up exited");
    }
}

type SocketAddrText = String;

/// Kills its tmux session when dropped, so a failed assertion leaves no `top`
/// running.
struct TmuxSession(String);

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn call_exit_codes_and_output_for_each_class() {
    let calc = Proc::start(&["calc"]);
    let url = format!("{}/rpc", calc.url());
    let call = |args: &[&str]| {
        Command::new(binary())
            .args(["call", "--url", &url])
            .args(args)
            .output()
            .expect("run call")
    };
    let ok = call(&["calc.summ", "1", "5", "-8", "156", "-24"]);
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "130");

    let json = call(&["--json", "--request-id", "abc", "calc.div", "7", "2"]);
    assert_eq!(json.status.code(), Some(0));
    let answer: Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(
        answer,
        serde_json::json!({"requestId": "abc", "result": 3.5})
    );

    for (args, code) in [
        (vec!["calc.div", "1", "0"], "division_by_zero"),
        (vec!["calc.summ", "1", "x"], "invalid_params"),
        (vec!["calc.mult", "9223372036854775807", "2"], "overflow"),
        (vec!["calc.pow", "2"], "method_not_found"),
    ] {
        let out = call(&args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!("error: {code}: ")),
            "{args:?}: {stderr}"
        );
    }

    let refused = Command::new(binary())
        .args([
            "call",
            "--url",
            &format!("http://{}/rpc", free_addr()),
            "calc.summ",
            "1",
        ])
        .output()
        .expect("run");
    assert_eq!(refused.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no answer"));

    // A gateway with no live instance answers 503 unavailable: exit 4.
    let gateway = Proc::start(&["gateway", "--service", &format!("calc={}", free_addr())]);
    let out = Command::new(binary())
        .args([
            "call",
            "--url",
            &format!("{}/rpc", gateway.url()),
            "calc.summ",
            "1",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: unavailable"));

    let load = call(&[
        "--repeat",
        "200",
        "--concurrency",
        "4",
        "calc.summ",
        "1",
        "2",
    ]);
    assert_eq!(load.status.code(), Some(0));
    let report = String::from_utf8_lossy(&load.stdout);
    assert!(report.contains("requests     200"), "{report}");
    assert!(report.contains("p99"), "{report}");
    assert!(report.contains("200: 200"), "{report}");
}

#[test]
fn top_shows_methods_and_pools_in_80_by_24_and_quits_on_q() {
    let stack = Stack::start();
    let session = format!("sbtop{}", std::process::id());
    let stack_file = stack.logs.path().join("stack.json");
    let command = format!(
        "{} top --stack {}",
        binary().display(),
        stack_file.display()
    );
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            &session,
            &command,
        ])
        .status();
    let Ok(status) = started else {
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_PROMTOOL").is_none(),
            "tmux is required in CI"
        );
        eprintln!("skipping: no tmux");
        return;
    };
    assert!(status.success());
    let _session_guard = TmuxSession(session.clone());
    for _ in 0..3 {
        stack.call(&[
            "--repeat",
            "100",
            "--concurrency",
            "2",
            "calc.summ",
            "1",
            "2",
        ]);
    }
    let screen = |session: &str| {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", session])
            .output()
            .expect("capture");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut text = screen(&session);
    while !(text.contains("calc.summ") && text.contains("2/2 seen up") && text.contains("static")) {
        assert!(
            Instant::now() < deadline,
            "top never showed the stack:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
        stack.call(&["--repeat", "50", "calc.summ", "1", "2"]);
        text = screen(&session);
    }
    println!("{text}");
    assert!(text.lines().count() <= 24);
    assert!(text.lines().all(|l| l.chars().count() <= 80));
    assert!(text.contains("components up 8/8"), "{text}");
    assert!(
        text.contains("2/2 seen up"),
        "each calc is seen by both gateways: {text}"
    );

    let _ = Command::new("tmux")
        .args(["send-keys", "-t", &session, "q"])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = Command::new("tmux")
            .args(["has-session", "-t", &session])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !alive {
            break;
        }
        assert!(Instant::now() < deadline, "top did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    }
}
