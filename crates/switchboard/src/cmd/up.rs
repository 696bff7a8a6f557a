//! `switchboard up`: the whole stack on one machine, as separate processes.
//!
//! Starts the services, the static gateway, the RPC gateways and the load
//! balancer on free loopback ports, waits until each is ready, prints where
//! everything is, and supervises: a child that dies is restarted on the same
//! port with backoff, so the pools see it leave and come back. Ctrl-C or
//! SIGTERM stops the tiers from the edge inwards (load balancer, gateways,
//! services), each draining before the next, so no accepted request is lost.
//!
//! Each child writes its JSON log to `logs/<name>.log`; their stderr lines are
//! gathered, prefixed with the child's name, into `logs/app.log`.

use crate::cli::CommonArgs;
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use service::Shutdown;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// Flags of `switchboard up`; each overrides the `[up]` section of the config.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Public port of the load balancer [config: up.port, default 8080].
    #[arg(long, env = "SWITCHBOARD_PORT")]
    port: Option<u16>,
    /// RPC gateways to run [up.gateways, 2].
    #[arg(long)]
    gateways: Option<usize>,
    /// calc instances to run [up.calc, 3].
    #[arg(long)]
    calc: Option<usize>,
    /// stats instances to run [up.stats, 1].
    #[arg(long)]
    stats: Option<usize>,
    /// Folder the static gateway serves under /static/ [up.static_root, static].
    #[arg(long)]
    static_root: Option<PathBuf>,
    /// Also start Prometheus (when `prometheus` is on PATH) scraping every
    /// component [up.prometheus, false].
    #[arg(long)]
    prometheus: bool,
    /// Port of Prometheus with --prometheus [up.prometheus_port, 9090].
    #[arg(long)]
    prometheus_port: Option<u16>,
}

/// The `[up]` section: what `switchboard up` runs.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct UpConfig {
    /// Public port of the load balancer.
    pub(crate) port: u16,
    /// RPC gateways to run.
    pub(crate) gateways: usize,
    /// calc instances to run.
    pub(crate) calc: usize,
    /// stats instances to run.
    pub(crate) stats: usize,
    /// Folder the static gateway serves.
    pub(crate) static_root: PathBuf,
    /// Whether to start Prometheus too.
    pub(crate) prometheus: bool,
    /// Port of Prometheus.
    pub(crate) prometheus_port: u16,
}

impl Default for UpConfig {
    fn default() -> Self {
        UpConfig {
            port: 8080,
            gateways: 2,
            calc: 3,
            stats: 1,
            static_root: PathBuf::from("static"),
            prometheus: false,
            prometheus_port: 9090,
        }
    }
}

impl UpConfig {
    /// Lays the flags over the file's settings.
    fn with_flags(mut self, args: &UpArgs) -> anyhow::Result<UpConfig> {
        self.port = args.port.unwrap_or(self.port);
        self.gateways = args.gateways.unwrap_or(self.gateways);
        self.calc = args.calc.unwrap_or(self.calc);
        self.stats = args.stats.unwrap_or(self.stats);
        self.static_root = args.static_root.clone().unwrap_or(self.static_root);
        self.prometheus |= args.prometheus;
        self.prometheus_port = args.prometheus_port.unwrap_or(self.prometheus_port);
        anyhow::ensure!(self.gateways > 0, "up needs at least one gateway");
        anyhow::ensure!(self.calc > 0, "up needs at least one calc instance");
        Ok(self)
    }
}

/// Kinds of child, in start order; shutdown goes the other way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Calc,
    Stats,
    Static,
    Gateway,
    Lb,
    Prometheus,
}

/// One child process to run and keep running.
#[derive(Debug, Clone, Serialize)]
struct Spec {
    name: String,
    kind: Kind,
    /// Where it serves its traffic.
    addr: SocketAddr,
    /// Where its `/metrics` and `/ready` are (the admin port for the LB).
    admin: SocketAddr,
    #[serde(skip)]
    program: PathBuf,
    #[serde(skip)]
    args: Vec<String>,
}

/// Runs the stack until Ctrl-C or SIGTERM.
pub(crate) fn run(args: UpArgs) -> anyhow::Result<()> {
    crate::cli::runtime()?.block_on(up(args))
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let config = crate::cli::load(&args.common)?;
    let settings = config.up.clone().with_flags(&args)?;
    let log_dir = config.log.dir.clone();
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create log folder {}", log_dir.display()))?;
    let tiers = plan(&settings, &args.common, &log_dir)?;
    let app_log = Arc::new(Mutex::new(open_app_log(&log_dir).await?));
    let mut shutdown = Shutdown::on_signals();
    let pids = Pids::default();

    let mut running = Vec::new();
    for tier in &tiers {
        let (trigger, tier_shutdown) = Shutdown::new();
        let mut tasks = JoinSet::new();
        for spec in tier {
            let task = supervise(
                spec.clone(),
                tier_shutdown.clone(),
                app_log.clone(),
                pids.clone(),
            );
            tasks.spawn(task);
        }
        running.push((trigger, tasks));
        for spec in tier {
            tokio::select! {
                ready = wait_ready(spec) => ready?,
                _ = shutdown.wait() => return stop(running).await,
            }
        }
    }

    let all: Vec<&Spec> = tiers.iter().flatten().collect();
    let pids = pids.snapshot();
    write_stack_file(&log_dir, &all, &pids)?;
    print_table(&all, &pids, settings.port);
    shutdown.wait().await;
    stop(running).await
}

/// Stops the tiers from the edge inwards, each drained before the next.
async fn stop(running: Vec<(service::shutdown::Trigger, JoinSet<()>)>) -> anyhow::Result<()> {
    eprintln!("stopping: draining the load balancer, then gateways, then services");
    for (trigger, mut tasks) in running.into_iter().rev() {
        trigger.trigger();
        while tasks.join_next().await.is_some() {}
    }
    eprintln!("stopped");
    Ok(())
}

/// Every child, grouped in tiers in start order.
fn plan(args: &UpConfig, common: &CommonArgs, log_dir: &Path) -> anyhow::Result<Vec<Vec<Spec>>> {
    let program = std::env::current_exe().context("cannot find the switchboard binary")?;
    let common = common_flags(common, log_dir);
    let spec = |name: String, kind, addr, admin, mut extra: Vec<String>| {
        let mut child_args = vec![
            kind_command(kind).to_owned(),
            "--log-file".to_owned(),
            name.clone(),
        ];
        child_args.extend(common.iter().cloned());
        child_args.append(&mut extra);
        Spec {
            name,
            kind,
            addr,
            admin,
            program: program.clone(),
            args: child_args,
        }
    };
    let service = |kind: Kind, count: usize| -> anyhow::Result<Vec<Spec>> {
        (1..=count)
            .map(|i| {
                let addr = free_port()?;
                let name = format!("{}-{i}", kind_command(kind));
                Ok(spec(name, kind, addr, addr, listen(addr)))
            })
            .collect()
    };

    let calc = service(Kind::Calc, args.calc)?;
    let stats = service(Kind::Stats, args.stats)?;
    let static_addr = free_port()?;
    let mut static_args = listen(static_addr);
    static_args.extend(["--root".to_owned(), args.static_root.display().to_string()]);
    let static_files = vec![spec(
        "static-1".into(),
        Kind::Static,
        static_addr,
        static_addr,
        static_args,
    )];

    let mut gateway_flags = Vec::new();
    for (name, pool) in [("calc", &calc), ("stats", &stats)] {
        if !pool.is_empty() {
            gateway_flags.extend([
                "--service".to_owned(),
                format!("{name}={}", join_addrs(pool)),
            ]);
        }
    }
    let gateways = (1..=args.gateways)
        .map(|i| {
            let addr = free_port()?;
            let mut flags = listen(addr);
            flags.extend(gateway_flags.iter().cloned());
            Ok(spec(
                format!("gateway-{i}"),
                Kind::Gateway,
                addr,
                addr,
                flags,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let lb_addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let admin = free_port()?;
    let mut lb_flags = listen(lb_addr);
    lb_flags.extend([
        "--admin".to_owned(),
        admin.to_string(),
        "--rpc".to_owned(),
        join_addrs(&gateways),
        "--static".to_owned(),
        join_addrs(&static_files),
    ]);
    let lb = vec![spec("lb".into(), Kind::Lb, lb_addr, admin, lb_flags)];

    let mut tiers = vec![[calc, stats, static_files].concat(), gateways, lb];
    if args.prometheus {
        tiers.push(prometheus_tier(args, log_dir, &tiers)?);
    }
    Ok(tiers)
}

fn kind_command(kind: Kind) -> &'static str {
    match kind {
        Kind::Calc => "calc",
        Kind::Stats => "stats",
        Kind::Static => "static",
        Kind::Gateway => "gateway",
        Kind::Lb => "lb",
        Kind::Prometheus => "prometheus",
    }
}

fn common_flags(common: &CommonArgs, log_dir: &Path) -> Vec<String> {
    let mut flags = vec!["--log-dir".to_owned(), log_dir.display().to_string()];
    if let Some(config) = &common.config {
        flags.extend(["--config".to_owned(), config.display().to_string()]);
    }
    if let Some(level) = &common.log_level {
        flags.extend(["--log-level".to_owned(), level.clone()]);
    }
    flags
}

fn listen(addr: SocketAddr) -> Vec<String> {
    vec!["--listen".to_owned(), addr.to_string()]
}

fn join_addrs(specs: &[Spec]) -> String {
    specs
        .iter()
        .map(|s| s.addr.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A loopback port free a moment ago. Another process could take it before
/// the child binds it; the child then fails and is restarted on the same
/// port, which shows up clearly in the log.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    Ok(listener.local_addr()?)
}

/// Prometheus with a generated config scraping every child, when installed.
fn prometheus_tier(
    args: &UpConfig,
    log_dir: &Path,
    tiers: &[Vec<Spec>],
) -> anyhow::Result<Vec<Spec>> {
    let Some(program) = which("prometheus") else {
        eprintln!("--prometheus: no `prometheus` on PATH, not starting it");
        return Ok(Vec::new());
    };
    let dir = log_dir.join("prometheus");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        scrape_config(tiers.iter().flatten(), &rule_files()),
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], args.prometheus_port));
    let prometheus_args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={addr}"),
        "--log.level=warn".to_owned(),
    ];
    Ok(vec![Spec {
        name: "prometheus".into(),
        kind: Kind::Prometheus,
        addr,
        admin: addr,
        program,
        args: prometheus_args,
    }])
}

/// The shipped recording and alert rules, when run from the repository.
fn rule_files() -> Vec<PathBuf> {
    let dir = std::env::current_dir()
        .unwrap_or_default()
        .join("deploy/prometheus");
    ["recording.yml", "alerts.yml"]
        .into_iter()
        .map(|f| dir.join(f))
        .filter(|p| p.is_file())
        .collect()
}

fn scrape_config<'a>(specs: impl Iterator<Item = &'a Spec>, rules: &[PathBuf]) -> String {
    let mut out = String::from("global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n");
    if !rules.is_empty() {
        out.push_str("rule_files:\n");
        for rule in rules {
            out.push_str(&format!("  - '{}'\n", rule.display()));
        }
    }
    out.push_str("scrape_configs:\n");
    let mut specs: Vec<&Spec> = specs.collect();
    specs.sort_by_key(|s| kind_command(s.kind));
    for kind in [
        Kind::Lb,
        Kind::Gateway,
        Kind::Calc,
        Kind::Stats,
        Kind::Static,
    ] {
        let targets: Vec<String> = specs
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| format!("'{}'", s.admin))
            .collect();
        if targets.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n",
            kind_command(kind),
            targets.join(", ")
        ));
    }
    out
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

async fn open_app_log(log_dir: &Path) -> anyhow::Result<tokio::fs::File> {
    let path = log_dir.join("app.log");
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Process ids of the running children, by name.
#[derive(Debug, Clone, Default)]
struct Pids(Arc<std::sync::Mutex<BTreeMap<String, u32>>>);

impl Pids {
    fn set(&self, name: &str, pid: Option<u32>) {
        if let (Ok(mut map), Some(pid)) = (self.0.lock(), pid) {
            map.insert(name.to_owned(), pid);
        }
    }

    fn snapshot(&self) -> BTreeMap<String, u32> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Keeps one child running until `shutdown`, restarting it with backoff
/// (100 ms doubling to 5 s, reset after 10 s of good health).
async fn supervise(
    spec: Spec,
    mut shutdown: Shutdown,
    app_log: Arc<Mutex<tokio::fs::File>>,
    pids: Pids,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut child = match spawn(&spec, &app_log) {
            Ok(child) => child,
            Err(e) => {
                eprintln!("{}: cannot start: {e:#}", spec.name);
                return;
            }
        };
        pids.set(&spec.name, child.id());
        let started = Instant::now();
        tokio::select! {
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                eprintln!("{}: exited ({status}); restarting in {backoff:?}", spec.name);
            }
            _ = shutdown.wait() => return terminate(&spec, child).await,
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Tokio's own variable for the worker count of a runtime.
const WORKER_THREADS_ENV: &str = "TOKIO_WORKER_THREADS";

fn spawn(spec: &Spec, app_log: &Arc<Mutex<tokio::fs::File>>) -> anyhow::Result<Child> {
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env("NO_COLOR", "1")
        .env(service::shutdown::EXIT_WITH_PARENT_ENV, "1");
    // The stack's processes outnumber the cores: one worker each spends
    // about a third less CPU per request than one per core, which wakes
    // threads across cores (BENCHMARKS.md). A value set by the caller wins.
    if std::env::var_os(WORKER_THREADS_ENV).is_none() {
        command.env(WORKER_THREADS_ENV, "1");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", spec.program.display()))?;
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward_lines(spec.name.clone(), stderr, app_log.clone()));
    }
    Ok(child)
}

/// Copies a child's stderr into `logs/app.log`, each line prefixed with the
/// child's name.
async fn forward_lines(
    name: String,
    stderr: tokio::process::ChildStderr,
    app_log: Arc<Mutex<tokio::fs::File>>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut file = app_log.lock().await;
        let _ = file
            .write_all(format!("[{name}] {line}\n").as_bytes())
            .await;
    }
}

/// SIGTERM, then up to 15 s to drain, then SIGKILL.
async fn terminate(spec: &Spec, mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
    }
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            eprintln!("{}: did not stop within 15 s; killing it", spec.name);
            let _ = child.kill().await;
        }
    }
}

/// Polls the child's readiness until it answers 200, for at most 30 s.
async fn wait_ready(spec: &Spec) -> anyhow::Result<()> {
    let path = match spec.kind {
        Kind::Prometheus => "/-/ready",
        _ => "/ready",
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if get_status(spec.admin, path).await == Some(200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "{} did not become ready on {} within 30 s; see logs/app.log",
        spec.name,
        spec.admin
    )
}

async fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Where `switchboard top` finds the running stack.
pub(crate) const STACK_FILE: &str = "stack.json";

/// One line of the stack file.
#[derive(Serialize)]
struct StackEntry<'a> {
    #[serde(flatten)]
    spec: &'a Spec,
    pid: Option<u32>,
}

fn write_stack_file(
    log_dir: &Path,
    specs: &[&Spec],
    pids: &BTreeMap<String, u32>,
) -> anyhow::Result<()> {
    let path = log_dir.join(STACK_FILE);
    let entries: Vec<StackEntry<'_>> = specs
        .iter()
        .map(|spec| StackEntry {
            spec,
            pid: pids.get(&spec.name).copied(),
        })
        .collect();
    std::fs::write(&path, serde_json::to_vec_pretty(&entries)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn print_table(specs: &[&Spec], pids: &BTreeMap<String, u32>, port: u16) {
    println!(
        "{:<12} {:<22} {:<30} {:>8}",
        "component", "address", "metrics", "pid"
    );
    for spec in specs {
        let metrics = format!("http://{}/metrics", spec.admin);
        let metrics = match spec.kind {
            Kind::Prometheus => format!("http://{}", spec.admin),
            _ => metrics,
        };
        let pid = pids.get(&spec.name).map_or("-".to_owned(), u32::to_string);
        println!(
            "{:<12} {:<22} {:<30} {:>8}",
            spec.name, spec.addr, metrics, pid
        );
    }
    println!();
    println!("try:");
    println!(
        "  curl -s localhost:{port}/rpc -H 'content-type: application/json' \\\n    -d '{{\"method\":\"calc.summ\",\"data\":{{\"args\":[1,5,-8,156,-24]}}}}'"
    );
    println!("  switchboard call --url http://127.0.0.1:{port}/rpc calc.summ 1 5 -8 156 -24");
    println!("  switchboard top");
    println!("Ctrl-C stops everything.");
}
