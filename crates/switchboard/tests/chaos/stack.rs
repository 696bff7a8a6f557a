//! The topology under test: every component a separate process on loopback,
//! all reading one generated config file.
//!
//! Pools are tuned for quick verdicts (probes every 200 ms, 300 ms per try at
//! the gateway) so that a scenario sees ejection and readmission within
//! seconds. Gateways and the load balancer take their pools from the file, not
//! from flags, so that rewriting it and reloading changes them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_addr, http_get_status, tempdir};

/// The binary under test.
fn binary() -> PathBuf {
    match std::env::var_os("SWITCHBOARD_CHAOS_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_switchboard")),
    }
}

/// The processes' log filter: `SWITCHBOARD_CHAOS_LOG_LEVEL`, or `warn`.
fn log_level() -> String {
    std::env::var("SWITCHBOARD_CHAOS_LOG_LEVEL").unwrap_or_else(|_| "warn".to_owned())
}

/// One component process; killed when dropped.
pub(crate) struct Node {
    pub(crate) name: String,
    /// The address it serves requests on.
    pub(crate) addr: SocketAddr,
    /// Where `/ready`, `/metrics` and `/pools` are: the admin port of the load
    /// balancer, the serving port of everything else.
    pub(crate) admin: SocketAddr,
    args: Vec<String>,
    child: Child,
    logs: Option<tempdir::Dir>,
}

impl Node {
    /// Starts `switchboard <args>`; call [`Node::wait_ready`] before use.
    fn spawn(name: &str, args: Vec<String>, addr: SocketAddr, admin: SocketAddr) -> Node {
        let logs = tempdir::Dir::new("chaos-logs");
        let child = Command::new(binary())
            .args(&args)
            .arg("--log-dir")
            .arg(logs.path())
            .env("RUST_LOG", log_level())
            .env_remove("SWITCHBOARD_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchboard");
        Node {
            name: name.to_owned(),
            addr,
            admin,
            args,
            child,
            logs: Some(logs),
        }
    }

    /// Polls `/ready` until it answers 200.
    pub(crate) fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited before it was ready: {status}", self.name);
            }
            if http_get_status(self.admin, "/ready") == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "{} not ready", self.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`KILL`, `STOP`, `CONT`, `TERM`, `HUP`).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.name);
    }

    /// `kill -9`, and waits until the process is gone.
    pub(crate) fn kill9(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, up to `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Starts the same command again, on the same addresses, and waits until
    /// it is ready. The old process must have exited.
    pub(crate) fn restart(&mut self) {
        let _ = self.child.wait();
        let fresh = Node::spawn(&self.name, self.args.clone(), self.addr, self.admin);
        *self = fresh;
        self.wait_ready();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A scenario may end with the process stopped; continue it first.
        let _ = Command::new("kill")
            .args(["-CONT", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("SWITCHBOARD_CHAOS_KEEP_LOGS").is_some()
            && let Some(logs) = self.logs.take()
        {
            eprintln!("{} logs kept in {}", self.name, logs.path().display());
            std::mem::forget(logs);
        }
    }
}

/// Settings of one stack; `Default` is the standard topology.
#[derive(Clone)]
pub(crate) struct Settings {
    /// Real calc processes.
    pub(crate) calc: usize,
    /// More calc endpoints, served by the test (bad instances).
    pub(crate) extra_calc: Vec<SocketAddr>,
    /// `key = value` lines replacing defaults of `[gateway.services.calc]`.
    pub(crate) calc_pool: &'static str,
    /// Same, for `[gateway.services.calc.health]`.
    pub(crate) calc_health: &'static str,
    /// Same, for `[lb.rpc]`.
    pub(crate) rpc_pool: &'static str,
    /// Same, for `[lb.rpc.health]`.
    pub(crate) rpc_health: &'static str,
    /// Same, for `[lb]`.
    pub(crate) lb: &'static str,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            calc: 3,
            extra_calc: Vec::new(),
            calc_pool: "",
            calc_health: "",
            rpc_pool: "",
            rpc_health: "",
            lb: "",
        }
    }
}

const CALC_POOL: &[&str] = &[
    "idempotent = true",
    "connect_timeout_ms = 200",
    "try_timeout_ms = 300",
    "request_timeout_ms = 3000",
    "max_attempts = 3",
    "retry_budget_ratio = 0.2",
    "retry_budget_min_per_sec = 5",
];

const RPC_POOL: &[&str] = &[
    "idempotent = true",
    "connect_timeout_ms = 200",
    "try_timeout_ms = 2000",
    "request_timeout_ms = 4000",
    "max_attempts = 2",
];

const HEALTH: &[&str] = &[
    "interval_ms = 200",
    "timeout_ms = 150",
    "consecutive_failures = 3",
    "eject_base_ms = 500",
    "eject_max_ms = 4000",
];

const LB: &[&str] = &["drain_timeout_ms = 5000", "idle_timeout_ms = 60000"];

/// `lines` plus each default whose key `lines` does not set.
fn table(lines: &str, defaults: &[&str]) -> String {
    let mut out: Vec<String> = lines
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    for default in defaults {
        let key = default.split(' ').next().unwrap_or_default();
        let set = out.iter().any(|l| l.split(' ').next() == Some(key));
        if !set {
            out.push((*default).to_owned());
        }
    }
    out.join("\n")
}

fn quoted(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    list.join(", ")
}

/// A running topology.
pub(crate) struct Stack {
    pub(crate) calc: Vec<Node>,
    pub(crate) gateways: Vec<Node>,
    pub(crate) statics: Node,
    pub(crate) lb: Node,
    pub(crate) settings: Settings,
    config: PathBuf,
    dir: tempdir::Dir,
}

impl Stack {
    /// Starts the topology and waits until every process is ready.
    pub(crate) fn start(settings: Settings) -> Stack {
        let dir = tempdir::Dir::new("chaos");
        let config = dir.path().join("switchboard.toml");
        let root = dir.path().join("static");
        std::fs::create_dir_all(&root).expect("static root");
        std::fs::write(root.join("hello.txt"), "hello\n").expect("static file");

        let calc_addrs: Vec<SocketAddr> = (0..settings.calc).map(|_| free_addr()).collect();
        let gw_addrs = [free_addr(), free_addr()];
        let static_addr = free_addr();
        let (lb_addr, admin) = (free_addr(), free_addr());
        let mut endpoints = calc_addrs.clone();
        endpoints.extend(&settings.extra_calc);
        let text = render(&settings, &endpoints, &gw_addrs, static_addr);
        write_atomically(&config, &text);

        let cfg = config.to_string_lossy().into_owned();
        let mut calc: Vec<Node> = calc_addrs
            .iter()
            .enumerate()
            .map(|(i, a)| serve(&format!("calc{i}"), &["calc", "--config", &cfg], *a))
            .collect();
        let root_arg = root.to_string_lossy().into_owned();
        let static_args = ["static", "--config", &cfg, "--root", &root_arg];
        let mut statics = serve("static", &static_args, static_addr);
        let mut gateways: Vec<Node> = gw_addrs
            .iter()
            .enumerate()
            .map(|(i, a)| serve(&format!("gw{i}"), &["gateway", "--config", &cfg], *a))
            .collect();
        let lb_args = ["lb", "--config", &cfg, "--admin", &admin.to_string()];
        let lb_args = lb_args.iter().map(|s| (*s).to_owned()).collect();
        let lb_with_listen = with_listen(lb_args, lb_addr);
        let mut lb = Node::spawn("lb", lb_with_listen, lb_addr, admin);

        calc.iter_mut().for_each(Node::wait_ready);
        statics.wait_ready();
        gateways.iter_mut().for_each(Node::wait_ready);
        lb.wait_ready();
        Stack {
            calc,
            gateways,
            statics,
            lb,
            settings,
            config,
            dir,
        }
    }

    /// Starts one more calc process reading the stack's config (not yet in
    /// any pool).
    pub(crate) fn spare_calc(&self, name: &str) -> Node {
        let cfg = self.config.to_string_lossy().into_owned();
        let mut node = serve(name, &["calc", "--config", &cfg], free_addr());
        node.wait_ready();
        node
    }

    /// Rewrites the config file with `calc` as the calc pool. Gateways see the
    /// change on their next look at the file (once a second), or on SIGHUP.
    pub(crate) fn set_calc_endpoints(&self, calc: &[SocketAddr]) {
        let gw: Vec<SocketAddr> = self.gateways.iter().map(|g| g.addr).collect();
        let text = render(&self.settings, calc, &gw, self.statics.addr);
        write_atomically(&self.config, &text);
    }

    /// Replaces the config file with `text` as is.
    pub(crate) fn write_config(&self, text: &str) {
        write_atomically(&self.config, text);
    }

    /// Where the stack's scratch files live.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn with_listen(mut args: Vec<String>, addr: SocketAddr) -> Vec<String> {
    args.push("--listen".to_owned());
    args.push(addr.to_string());
    args
}

/// Spawns a component that serves and reports readiness on `addr`.
fn serve(name: &str, args: &[&str], addr: SocketAddr) -> Node {
    let args = args.iter().map(|s| (*s).to_owned()).collect();
    Node::spawn(name, with_listen(args, addr), addr, addr)
}

fn render(s: &Settings, calc: &[SocketAddr], gw: &[SocketAddr], statics: SocketAddr) -> String {
    format!(
        "[log]\nlevel = \"warn\"\nto_file = true\n\n\
         [calc]\ndrain_timeout_ms = 5000\n\n\
         [gateway]\ndrain_timeout_ms = 5000\n\n\
         [gateway.services.calc]\nendpoints = [{calc}]\n{calc_pool}\n\n\
         [gateway.services.calc.health]\n{calc_health}\n\n\
         [lb]\n{lb}\n\n\
         [lb.rpc]\nendpoints = [{gw}]\n{rpc_pool}\n\n\
         [lb.rpc.health]\n{rpc_health}\n\n\
         [lb.static]\nendpoints = [\"{statics}\"]\n",
        calc = quoted(calc),
        gw = quoted(gw),
        calc_pool = table(s.calc_pool, CALC_POOL),
        calc_health = table(s.calc_health, HEALTH),
        lb = table(s.lb, LB),
        rpc_pool = table(s.rpc_pool, RPC_POOL),
        rpc_health = table(s.rpc_health, HEALTH),
    )
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("replace config");
}

/// A calc process outside any stack (behind an in-test proxy, say), ready.
pub(crate) fn standalone_calc(name: &str) -> Node {
    let mut node = serve(name, &["calc", "--config", "/dev/null"], free_addr());
    node.wait_ready();
    node
}
