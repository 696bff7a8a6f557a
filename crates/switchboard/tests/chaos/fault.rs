//! Faults the suite injects besides signals: bad instances served by the test
//! itself, and network partitions made with nftables.
//!
//! A [`BadInstance`] speaks just enough HTTP/1.1 with keep-alive to sit in a
//! gateway's pool: `/health` and `/ready` answer 200, and `/rpc` follows its
//! [`Mode`] (always 500, fail a share and forward the rest to a real calc, or
//! forward everything but close connections that go idle).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a bad instance does with `/rpc`.
#[derive(Clone)]
pub(crate) enum Mode {
    /// Always 500.
    Always500,
    /// 500 for a `share` (0..=1) of calls, the rest forwarded to `backend`.
    Flaky { share: f64, backend: SocketAddr },
    /// Every call forwarded to `backend`, and each connection closed once it
    /// has been idle for a random time below `max_idle`, as servers with an
    /// idle timeout do. One answer in 64 is followed by a lost race: it is
    /// closed just as the next request reaches it, unread (the client sees a
    /// reset, and the instance never saw the call).
    IdleClose {
        backend: SocketAddr,
        max_idle: Duration,
    },
}

/// Counters of a bad instance.
#[derive(Default)]
pub(crate) struct Counts {
    /// `/rpc` requests received.
    pub(crate) rpc: AtomicU64,
    /// `/rpc` requests answered 500 on purpose.
    pub(crate) failed: AtomicU64,
    /// Connections accepted.
    pub(crate) connections: AtomicU64,
    /// Idle connections closed by the instance.
    pub(crate) idle_closes: AtomicU64,
    /// Connections closed as a request arrived on them, unread.
    pub(crate) raced: AtomicU64,
}

/// An in-test instance; stops when dropped.
pub(crate) struct BadInstance {
    pub(crate) addr: SocketAddr,
    pub(crate) counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl BadInstance {
    pub(crate) async fn start(mode: Mode) -> BadInstance {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let counts = Arc::new(Counts::default());
        let shared = Arc::new(Shared {
            mode,
            counts: Arc::clone(&counts),
            http: reqwest::Client::new(),
        });
        let task = tokio::spawn(async move {
            let mut seed = 1u64;
            while let Ok((stream, _)) = listener.accept().await {
                shared.counts.connections.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                tokio::spawn(connection(stream, Arc::clone(&shared), seed));
            }
        });
        BadInstance { addr, counts, task }
    }

    pub(crate) fn rpc(&self) -> u64 {
        self.counts.rpc.load(Ordering::Relaxed)
    }
}

impl Drop for BadInstance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    mode: Mode,
    counts: Arc<Counts>,
    http: reqwest::Client,
}

/// A parsed request: path, request id header and body.
struct Request {
    path: String,
    request_id: Option<String>,
    body: Vec<u8>,
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>, mut seed: u64) {
    let mut buf = Vec::new();
    loop {
        let idle = match &shared.mode {
            Mode::IdleClose { max_idle, .. } => {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let nanos = max_idle.as_nanos() as u64;
                Some(Duration::from_nanos((seed >> 33) % nanos.max(1)))
            }
            _ => None,
        };
        let next = read_request(&mut stream, &mut buf, idle).await;
        let Some(req) = next else {
            if idle.is_some() && buf.is_empty() {
                shared.counts.idle_closes.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        let (status, body) = answer(&shared, &req, &mut seed).await;
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(&body);
        if stream.write_all(&out).await.is_err() {
            return;
        }
        if matches!(shared.mode, Mode::IdleClose { .. }) && seed >> 58 == 0 {
            // Close as the next request arrives, without reading it.
            if stream.readable().await.is_ok() {
                shared.counts.raced.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    }
}

async fn answer(shared: &Shared, req: &Request, seed: &mut u64) -> (u16, Vec<u8>) {
    if req.path != "/rpc" {
        return (200, b"{}".to_vec());
    }
    let counts = &shared.counts;
    counts.rpc.fetch_add(1, Ordering::Relaxed);
    *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let draw = (*seed >> 11) as f64 / (1u64 << 53) as f64;
    let backend = match &shared.mode {
        Mode::Always500 => None,
        Mode::Flaky { share, backend } => (draw >= *share).then_some(*backend),
        Mode::IdleClose { backend, .. } => Some(*backend),
    };
    match backend {
        Some(backend) => forward(&shared.http, backend, req).await,
        None => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            let body = br#"{"error":{"code":"internal","message":"injected failure"}}"#;
            (500, body.to_vec())
        }
    }
}

async fn forward(http: &reqwest::Client, backend: SocketAddr, req: &Request) -> (u16, Vec<u8>) {
    let mut call = http
        .post(format!("http://{backend}/rpc"))
        .header("content-type", "application/json")
        .body(req.body.clone());
    if let Some(id) = &req.request_id {
        call = call.header("x-request-id", id);
    }
    match call.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (
                status,
                resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
            )
        }
        Err(_) => (502, b"{}".to_vec()),
    }
}

/// Reads one request (head and `Content-Length` body) from `stream`; `None` on
/// end of stream, on garbage, or when `idle` passes before its first byte.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    idle: Option<Duration>,
) -> Option<Request> {
    let end = loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 8192];
        let read = match (idle, buf.is_empty()) {
            (Some(idle), true) => tokio::time::timeout(idle, stream.read(&mut chunk))
                .await
                .ok()?,
            _ => stream.read(&mut chunk).await,
        };
        match read {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
    let length = length.unwrap_or(0);
    while buf.len() < end + 4 + length {
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[end + 4..end + 4 + length].to_vec();
    buf.drain(..end + 4 + length);
    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
    let request_id = header(&head, "x-request-id").map(str::to_owned);
    Some(Request {
        path,
        request_id,
        body,
    })
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Why partitions cannot be made here, if they cannot.
pub(crate) fn nft_unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok();
    let root = uid.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("not root".to_owned());
    }
    let listed = Command::new("nft")
        .args(["list", "tables"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match listed {
        Ok(status) if status.success() => None,
        Ok(status) => Some(format!("nft list tables failed: {status}")),
        Err(e) => Some(format!("no nft binary: {e}")),
    }
}

/// Loopback traffic to one TCP port, cut by an nftables table of its own;
/// the table is deleted when this is dropped.
pub(crate) struct Partition {
    table: String,
    port: u16,
}

impl Partition {
    /// Creates the (empty, so still open) table for traffic to `port`.
    pub(crate) fn new(port: u16) -> Partition {
        let table = format!("switchboard_chaos_{}_{port}", std::process::id());
        nft(&format!(
            "add table inet {table}\n\
             add chain inet {table} out {{ type filter hook output priority 0; }}"
        ));
        Partition { table, port }
    }

    /// Packets to the port vanish: connects and requests get no answer.
    pub(crate) fn drop_silently(&self) {
        self.set_rule("drop");
    }

    /// Packets to the port are answered with a TCP reset: fast refusal.
    pub(crate) fn reject(&self) {
        self.set_rule("reject with tcp reset");
    }

    /// Traffic flows again.
    pub(crate) fn heal(&self) {
        nft(&format!("flush chain inet {} out", self.table));
    }

    fn set_rule(&self, verdict: &str) {
        let (table, port) = (&self.table, self.port);
        nft(&format!(
            "flush chain inet {table} out\n\
             add rule inet {table} out ip daddr 127.0.0.1 tcp dport {port} {verdict}"
        ));
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

/// Runs an nft script, panicking on failure.
fn nft(script: &str) {
    let output = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run nft");
    assert!(
        output.status.success(),
        "nft failed: {}\n{script}",
        String::from_utf8_lossy(&output.stderr)
    );
}
