//! Helpers for tests that run switchboard components as real processes.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchboard"))
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr")
}

/// A component running as a child process; killed when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    pub log_dir: tempdir::Dir,
}

pub mod tempdir {
    use std::path::{Path, PathBuf};

    /// A folder removed when dropped.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos();
            let path =
                std::env::temp_dir().join(format!("switchboard-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Proc {
    /// Starts `switchboard <args> --listen <free addr>` with its logs in a
    /// temporary folder, and waits until `GET /ready` answers 200.
    pub fn start(args: &[&str]) -> Proc {
        let addr = free_addr();
        Proc::start_on(args, addr)
    }

    /// As [`Proc::start`], on a chosen address.
    pub fn start_on(args: &[&str], addr: SocketAddr) -> Proc {
        Proc::start_with(args, addr, "warn")
    }

    /// As [`Proc::start_on`], with a log level filter.
    pub fn start_with(args: &[&str], addr: SocketAddr, log_level: &str) -> Proc {
        let listen = ["--listen".to_owned(), addr.to_string()];
        Proc::spawn(args, &listen, addr, addr, log_level)
    }

    /// Starts `switchboard lb <args> --listen <listen> --admin <admin>` and
    /// waits until the admin port's `/ready` answers 200 (the public port
    /// never serves it).
    pub fn start_lb(args: &[&str], listen: SocketAddr, admin: SocketAddr, log_level: &str) -> Proc {
        let args: Vec<&str> = ["lb"].into_iter().chain(args.iter().copied()).collect();
        let addrs = [
            "--listen".to_owned(),
            listen.to_string(),
            "--admin".to_owned(),
            admin.to_string(),
        ];
        Proc::spawn(&args, &addrs, listen, admin, log_level)
    }

    /// Runs `switchboard <args> <addr_args>` with its logs in a temporary
    /// folder, waits for `GET /ready` on `ready_on`, and serves as `addr`.
    fn spawn(
        args: &[&str],
        addr_args: &[String],
        addr: SocketAddr,
        ready_on: SocketAddr,
        log_level: &str,
    ) -> Proc {
        let log_dir = tempdir::Dir::new("logs");
        let child = Command::new(binary())
            .args(args)
            .args(addr_args)
            .arg("--log-dir")
            .arg(log_dir.path())
            .env("RUST_LOG", log_level)
            .env_remove("SWITCHBOARD_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchboard");
        let mut proc = Proc {
            child,
            addr: ready_on,
            log_dir,
        };
        proc.wait_ready("/ready", Duration::from_secs(20));
        proc.addr = addr;
        proc
    }

    /// Base URL, `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Polls `path` until it answers 200; panics after `timeout` or if the
    /// process exits.
    pub fn wait_ready(&mut self, path: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("process exited before it was ready: {status}");
            }
            if http_get_status(self.addr, path) == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {timeout:?}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal to the process (`libc` names: "TERM", "KILL", "STOP").
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status of a plain `GET`, without any client library, for readiness polls.
pub fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 12];
    stream.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

/// Sends raw bytes and returns everything the server answers until it closes
/// the connection or `timeout` passes.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    let _ = stream.write_all(request);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}
