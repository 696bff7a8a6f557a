//! What the bad-input and security tests share: the whole chain (load
//! balancer, gateway, calc) with short timeouts, raw HTTP exchanges that no
//! client library tidies up, resident memory readings, and small upstreams
//! written here that record every request or answer garbage.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Proc, free_addr, tempdir};
use serde_json::Value;

/// The seed request: its answer is 130.
pub const SEED: &str = r#"{"method":"calc.summ","data":{"args":[1,5,-8,156,-24]}}"#;

/// Largest body the gateway and calc read (`[limits]`).
pub const SERVICE_BODY_LIMIT: usize = 256 * 1024;

/// Largest body the load balancer reads.
pub const LB_BODY_LIMIT: usize = 512 * 1024;

/// Header and body read timeouts of every tier, in milliseconds.
pub const READ_TIMEOUT_MS: u64 = 1000;

/// Growth of resident memory allowed over a whole test, in KiB.
pub const RSS_BOUND_KIB: u64 = 16 * 1024;

/// LB -> gateway -> calc, each a real process.
pub struct Stack {
    pub calc: Proc,
    pub gateway: Proc,
    pub lb: Proc,
    pub admin: SocketAddr,
    pub dir: tempdir::Dir,
}

/// The `[limits]`, `[calc]` and `[gateway]` sections shared by the services.
fn services_config() -> String {
    let t = READ_TIMEOUT_MS;
    format!(
        "[limits]\nmax_body_bytes = {SERVICE_BODY_LIMIT}\n\
         [calc]\nheader_read_timeout_ms = {t}\nbody_read_timeout_ms = {t}\n\
         [gateway]\nheader_read_timeout_ms = {t}\nbody_read_timeout_ms = {t}\n"
    )
}

/// An `[lb]` section over `rpc`, with `extra` lines in `[lb]` and `pool` lines
/// in `[lb.rpc]`. The static pool points nowhere and is not probed.
pub fn lb_config(rpc: SocketAddr, extra: &str, pool: &str) -> String {
    let t = READ_TIMEOUT_MS;
    format!(
        "[lb]\nheader_read_timeout_ms = {t}\nbody_read_timeout_ms = {t}\n\
         max_body_bytes = {LB_BODY_LIMIT}\n{extra}\n\
         [lb.rpc]\nendpoints = [\"{rpc}\"]\nidempotent = true\nconnect_timeout_ms = 300\n{pool}\n\
         [lb.static]\nendpoints = [\"{}\"]\n[lb.static.health]\ninterval_ms = 0\n",
        free_addr()
    )
}

/// Writes `text` as a config file in `dir`.
pub fn write_config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path.to_string_lossy().into_owned()
}

impl Stack {
    /// Starts calc, a gateway routing `calc` to it and an LB in front, each
    /// logging at `level` into its own log folder.
    pub fn start(level: &str) -> Stack {
        let dir = tempdir::Dir::new("hostile");
        let services = write_config(dir.path(), "services.toml", &services_config());
        let calc = Proc::start_with(&["calc", "--config", &services], free_addr(), level);
        let route = format!("calc={}", calc.addr);
        let gateway = Proc::start_with(
            &["gateway", "--config", &services, "--service", &route],
            free_addr(),
            level,
        );
        let lb_text = lb_config(gateway.addr, "", "");
        let lb_path = write_config(dir.path(), "lb.toml", &lb_text);
        let admin = free_addr();
        let lb = Proc::start_lb(&["--config", &lb_path], free_addr(), admin, level);
        Stack {
            calc,
            gateway,
            lb,
            admin,
            dir,
        }
    }

    /// The three processes, front first, with their names.
    pub fn tiers(&self) -> [(&'static str, &Proc); 3] {
        [
            ("lb", &self.lb),
            ("gateway", &self.gateway),
            ("calc", &self.calc),
        ]
    }

    /// Resident memory of each tier, in KiB.
    pub fn rss(&self) -> [u64; 3] {
        self.tiers().map(|(_, p)| rss_kib(p.child.id()))
    }

    /// Asserts that no tier grew by more than [`RSS_BOUND_KIB`] since `before`.
    pub fn assert_rss_bounded(&self, before: [u64; 3], what: &str) {
        let after = self.rss();
        for (i, (name, _)) in self.tiers().iter().enumerate() {
            let grown = after[i].saturating_sub(before[i]);
            eprintln!("rss {what}: {name} {} -> {} KiB", before[i], after[i]);
            assert!(
                grown <= RSS_BOUND_KIB,
                "{what}: {name} grew from {} KiB to {} KiB",
                before[i],
                after[i]
            );
        }
    }

    /// Asserts that every process is running and the seed request answers
    /// 130 through the whole chain.
    pub fn assert_serving(&mut self, after: &str) {
        for proc in [&mut self.lb, &mut self.gateway, &mut self.calc] {
            let status = proc.child.try_wait().expect("try_wait");
            assert!(
                status.is_none(),
                "after {after}: a process exited: {status:?}"
            );
        }
        let answer = post(self.lb.addr, SEED.as_bytes(), "");
        assert_eq!(answer.status, 200, "after {after}: {answer:?}");
        assert_eq!(answer.json()["result"], 130, "after {after}: {answer:?}");
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One HTTP answer, read off the wire.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code; 0 when the server sent nothing readable.
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whole answer, for failure messages.
    pub raw: String,
}

impl Reply {
    pub fn parse(raw: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(raw).into_owned();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
        let (head, body) = match split {
            Some(i) => (&text[..i], raw[i + 4..].to_vec()),
            None => (text.as_str(), Vec::new()),
        };
        let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body,
            raw: text,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; `Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The stable error code of a native or JSON-RPC error answer.
    pub fn code(&self) -> String {
        let v = self.json();
        match v["error"]["code"].as_str() {
            Some(code) => code.to_owned(),
            None => v["error"]["data"]["code"].as_str().unwrap_or("").to_owned(),
        }
    }
}

/// Sends `request` on a fresh connection and reads until the server closes
/// or 5 s pass.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Reply {
    exchange_within(addr, request, Duration::from_secs(5))
}

/// As [`exchange`], with a chosen read timeout.
pub fn exchange_within(addr: SocketAddr, request: &[u8], timeout: Duration) -> Reply {
    Reply::parse(&crate::common::raw_exchange(addr, request, timeout))
}

/// `POST /rpc` with `body`, a Content-Length and `extra` header lines (each
/// ending in CRLF), on a connection closed after the answer.
pub fn post(addr: SocketAddr, body: &[u8], extra: &str) -> Reply {
    let mut request = format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    exchange(addr, &request)
}

/// How long a connection stays open while the client trickles `unit` every
/// `every`, up to `limit`; returns the time the server took to close it and
/// what it answered.
pub fn trickle(
    addr: SocketAddr,
    first: &[u8],
    unit: &[u8],
    every: Duration,
    limit: Duration,
) -> (Duration, Reply) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let started = Instant::now();
    let _ = stream.write_all(first);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        if stream.write_all(unit).is_err() {
            break;
        }
        let until = Instant::now() + every;
        let mut closed = false;
        while Instant::now() < until {
            match stream.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            break;
        }
    }
    (started.elapsed(), Reply::parse(&answer))
}

/// One request as an in-test upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Index of the connection it came on.
    pub connection: usize,
    /// Request line and headers, as received.
    pub head: String,
}

/// What an in-test upstream answers to a request head.
pub type Answer = fn(&str) -> Vec<u8>;

/// A TCP server standing in for a gateway or calc: it records every request
/// head it reads and answers with what `answer` makes of it, keeping the
/// connection open afterwards so that any reuse shows.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<Mutex<usize>>,
}

impl Upstream {
    pub fn start(answer: Answer) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let upstream = Upstream {
            addr,
            seen: Arc::default(),
            connections: Arc::default(),
        };
        let shared = upstream.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let index = {
                    let mut n = shared.connections.lock().expect("lock");
                    *n += 1;
                    *n - 1
                };
                let shared = shared.clone();
                std::thread::spawn(move || shared.serve(stream, index, answer));
            }
        });
        upstream
    }

    /// A well-behaved calc stand-in answering 130 to anything.
    pub fn answering_130() -> Upstream {
        Upstream::start(|_| {
            let body = r#"{"requestId":"upstream","result":130}"#;
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
    }

    fn serve(&self, stream: TcpStream, connection: usize, answer: Answer) {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        while let Some(head) = read_head(&mut reader) {
            let length = content_length(&head);
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let reply = answer(&head);
            self.seen
                .lock()
                .expect("lock")
                .push(Seen { connection, head });
            if writer.write_all(&reply).is_err() {
                return;
            }
        }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Requests received on `path` (health probes left out).
    pub fn seen_on(&self, path: &str) -> Vec<Seen> {
        let prefix = format!(" {path} ");
        self.seen()
            .into_iter()
            .filter(|s| s.head.lines().next().is_some_and(|l| l.contains(&prefix)))
            .collect()
    }

    pub fn connections(&self) -> usize {
        *self.connections.lock().expect("lock")
    }
}

fn read_head(reader: &mut impl BufRead) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// Every line of every log file under `dir`.
pub fn log_text(dir: &Path) -> String {
    let mut text = String::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                text.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    text
}

/// Polls `check` every 20 ms until it holds, for at most `timeout`.
pub fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
