//! `switchboard top`: a live view of a running stack, read from `/metrics`.
//!
//! Finds the components in the stack file `switchboard up` writes
//! (`logs/stack.json`), scrapes each one every second and shows, per method,
//! calls and errors per second and latency percentiles (from the services'
//! histograms), and per pool, each instance with its health as the gateways
//! and the load balancer see it. Fits 80x24; `q` quits.

use anyhow::Context;
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Row, Table};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use telemetry::scrape::{Sample, parse};

/// Flags of `switchboard top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Stack file written by `switchboard up`.
    #[arg(long, default_value = "logs/stack.json")]
    stack: PathBuf,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

/// A component as the stack file lists it.
#[derive(Debug, Clone, Deserialize)]
struct Component {
    admin: SocketAddr,
}

/// One round of scrapes.
struct Scrape {
    at: Instant,
    /// Samples per component; `None` when it did not answer.
    samples: Vec<(Component, Option<Vec<Sample>>)>,
}

/// Runs the live view until `q`.
pub(crate) fn run(args: TopArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.stack).with_context(|| {
        format!(
            "cannot read {}: is `switchboard up` running here?",
            args.stack.display()
        )
    })?;
    let components: Vec<Component> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a stack file", args.stack.display()))?;
    let runtime = crate::cli::runtime()?;
    let interval = Duration::from_secs_f64(args.interval.max(0.2));

    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        let mut previous = runtime.block_on(scrape(&components));
        let mut view = View::default();
        loop {
            terminal.draw(|frame| view.render(frame))?;
            if quit_requested(interval)? {
                return Ok(());
            }
            let current = runtime.block_on(scrape(&components));
            view = View::compute(&previous, &current);
            previous = current;
        }
    })();
    ratatui::restore();
    result
}

/// Waits up to `wait` for a key; true for `q`, Esc or Ctrl-C.
fn quit_requested(wait: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if !event::poll(left)? {
            break;
        }
        if let Event::Key(key) = event::read()? {
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

async fn scrape(components: &[Component]) -> Scrape {
    let fetches = components.iter().map(|c| async move {
        let samples = fetch_metrics(c.admin).await.map(|text| parse(&text));
        (c.clone(), samples)
    });
    let mut samples = Vec::with_capacity(components.len());
    for fetch in fetches {
        samples.push(fetch.await);
    }
    Scrape {
        at: Instant::now(),
        samples,
    }
}

async fn fetch_metrics(addr: SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8(out).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
    };
    tokio::time::timeout(Duration::from_millis(800), exchange)
        .await
        .ok()?
}

/// What the screen shows, computed from two scrapes.
#[derive(Default)]
struct View {
    up: usize,
    total: usize,
    methods: Vec<MethodRow>,
    pools: Vec<PoolRow>,
    retries_per_sec: f64,
    ejections: f64,
    shed_per_sec: f64,
}

struct MethodRow {
    method: String,
    rps: f64,
    errors: f64,
    p50: Option<f64>,
    p99: Option<f64>,
}

struct PoolRow {
    pool: String,
    instance: String,
    /// Routers that see the instance healthy...
    healthy: usize,
    /// ...out of those that route to it.
    observers: usize,
    in_flight: f64,
}

impl View {
    fn compute(prev: &Scrape, cur: &Scrape) -> View {
        let dt = cur.at.duration_since(prev.at).as_secs_f64().max(1e-3);
        let rate = |name: &str, filter: &dyn Fn(&Sample) -> bool| {
            (sum(cur, name, filter) - sum(prev, name, filter)).max(0.0) / dt
        };
        View {
            up: cur.samples.iter().filter(|(_, s)| s.is_some()).count(),
            total: cur.samples.len(),
            methods: method_rows(prev, cur, dt),
            pools: pool_rows(cur),
            retries_per_sec: rate("switchboard_upstream_retries_total", &|_| true),
            ejections: sum(cur, "switchboard_upstream_ejections_total", &|_| true),
            shed_per_sec: rate("switchboard_rpc_errors_total", &|s| {
                s.label("code") == Some("overloaded")
            }),
        }
    }

    fn render(&self, frame: &mut ratatui::Frame<'_>) {
        let [title, methods, pools, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(6),
            Constraint::Min(8),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        let status = format!(
            " switchboard top   components up {}/{}   retries/s {:.1}   ejections {}   shed/s {:.1}",
            self.up, self.total, self.retries_per_sec, self.ejections, self.shed_per_sec
        );
        frame.render_widget(
            Line::styled(status, Style::new().add_modifier(Modifier::BOLD)),
            title,
        );
        frame.render_widget(self.methods_table(), methods);
        frame.render_widget(self.pools_table(), pools);
        frame.render_widget(
            Line::from(" q quit   refreshed every second from /metrics"),
            footer,
        );
    }

    fn methods_table(&self) -> Table<'_> {
        let header = Row::new(["method", "req/s", "err/s", "p50 ms", "p99 ms"]).style(bold());
        let rows = self.methods.iter().map(|m| {
            Row::new([
                m.method.clone(),
                format!("{:.1}", m.rps),
                format!("{:.1}", m.errors),
                ms(m.p50),
                ms(m.p99),
            ])
        });
        let widths = [
            Constraint::Length(22),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
        ];
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" methods "))
    }

    fn pools_table(&self) -> Table<'_> {
        let header = Row::new(["pool", "instance", "healthy", "in flight"]).style(bold());
        let rows = self.pools.iter().map(|p| {
            let color = match p.healthy {
                0 => Color::Red,
                n if n < p.observers => Color::Yellow,
                _ => Color::Green,
            };
            Row::new([
                p.pool.clone(),
                p.instance.clone(),
                format!("{}/{} seen up", p.healthy, p.observers),
                format!("{:.0}", p.in_flight),
            ])
            .style(Style::new().fg(color))
        });
        let widths = [
            Constraint::Length(10),
            Constraint::Length(22),
            Constraint::Length(14),
            Constraint::Length(9),
        ];
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" pools (health as the routers see it) "))
    }
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

fn ms(seconds: Option<f64>) -> String {
    seconds.map_or("-".to_owned(), |s| format!("{:.2}", s * 1000.0))
}

fn samples<'a>(
    scrape: &'a Scrape,
    name: &'a str,
) -> impl Iterator<Item = (&'a Component, &'a Sample)> + 'a {
    scrape.samples.iter().flat_map(move |(component, samples)| {
        samples
            .iter()
            .flatten()
            .filter(move |s| s.name == name)
            .map(move |s| (component, s))
    })
}

fn sum(scrape: &Scrape, name: &str, filter: &dyn Fn(&Sample) -> bool) -> f64 {
    samples(scrape, name)
        .filter(|(_, s)| filter(s))
        .map(|(_, s)| s.value)
        .sum()
}

/// Per-method rates and latency quantiles over the last interval, summed over
/// every instance of every service.
fn method_rows(prev: &Scrape, cur: &Scrape, dt: f64) -> Vec<MethodRow> {
    let calls = |scrape: &Scrape| {
        let mut by: BTreeMap<(String, String), f64> = BTreeMap::new();
        for (_, s) in samples(scrape, "switchboard_rpc_requests_total") {
            let key = (
                s.label("method").unwrap_or("").to_owned(),
                s.label("outcome").unwrap_or("").to_owned(),
            );
            *by.entry(key).or_default() += s.value;
        }
        by
    };
    let (before, now) = (calls(prev), calls(cur));
    let delta = |method: &str, outcome: &str| {
        let key = (method.to_owned(), outcome.to_owned());
        (now.get(&key).copied().unwrap_or(0.0) - before.get(&key).copied().unwrap_or(0.0)).max(0.0)
    };
    // Methods never called stay off the screen, so the busy ones fit.
    let methods: std::collections::BTreeSet<&String> = now
        .iter()
        .filter(|(_, count)| **count > 0.0)
        .map(|((m, _), _)| m)
        .collect();
    let buckets = (buckets(prev), buckets(cur));
    methods
        .into_iter()
        .map(|method| {
            let window = bucket_delta(&buckets.0, &buckets.1, method);
            MethodRow {
                method: method.clone(),
                rps: (delta(method, "ok") + delta(method, "error")) / dt,
                errors: delta(method, "error") / dt,
                p50: quantile(&window, 0.50),
                p99: quantile(&window, 0.99),
            }
        })
        .collect()
}

type Buckets = BTreeMap<String, BTreeMap<u64, f64>>;

/// Latency buckets per method, keyed by the bound in nanoseconds.
fn buckets(scrape: &Scrape) -> Buckets {
    let mut by: Buckets = BTreeMap::new();
    for (_, s) in samples(scrape, "switchboard_rpc_request_duration_seconds_bucket") {
        let (Some(method), Some(le)) = (s.label("method"), s.label("le")) else {
            continue;
        };
        let bound = match le {
            "+Inf" => u64::MAX,
            le => le.parse::<f64>().map_or(u64::MAX, |b| (b * 1e9) as u64),
        };
        *by.entry(method.to_owned())
            .or_default()
            .entry(bound)
            .or_default() += s.value;
    }
    by
}

fn bucket_delta(prev: &Buckets, cur: &Buckets, method: &str) -> Vec<(u64, f64)> {
    let Some(now) = cur.get(method) else {
        return Vec::new();
    };
    let before = prev.get(method);
    now.iter()
        .map(|(bound, count)| {
            let old = before.and_then(|b| b.get(bound)).copied().unwrap_or(0.0);
            (*bound, (count - old).max(0.0))
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated inside the bucket as
/// Prometheus's `histogram_quantile` does.
fn quantile(buckets: &[(u64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0u64, 0.0f64);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound == u64::MAX {
                return Some(lower.0 as f64 / 1e9);
            }
            let span = (count - lower.1).max(1e-9);
            let frac = (rank - lower.1) / span;
            return Some((lower.0 as f64 + (bound - lower.0) as f64 * frac) / 1e9);
        }
        lower = (bound, count);
    }
    None
}

/// Every instance of every pool, with how many of the gateways and load
/// balancers that route to it see it healthy.
fn pool_rows(cur: &Scrape) -> Vec<PoolRow> {
    let mut rows: BTreeMap<(String, String), PoolRow> = BTreeMap::new();
    for (_, s) in samples(cur, "switchboard_upstream_endpoint_healthy") {
        let key = (label(s, "pool"), label(s, "endpoint"));
        let row = rows.entry(key.clone()).or_insert_with(|| PoolRow {
            pool: key.0,
            instance: key.1,
            healthy: 0,
            observers: 0,
            in_flight: 0.0,
        });
        row.observers += 1;
        row.healthy += usize::from(s.value > 0.5);
    }
    for (_, s) in samples(cur, "switchboard_upstream_in_flight") {
        if let Some(row) = rows.get_mut(&(label(s, "pool"), label(s, "endpoint"))) {
            row.in_flight += s.value;
        }
    }
    rows.into_values().collect()
}

fn label(sample: &Sample, key: &str) -> String {
    sample.label(key).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let b = [(1_000_000, 50.0), (2_000_000, 100.0), (u64::MAX, 100.0)];
        assert_eq!(quantile(&b, 0.5), Some(0.001));
        let p75 = quantile(&b, 0.75).expect("some");
        assert!((p75 - 0.0015).abs() < 1e-9, "{p75}");
        assert_eq!(quantile(&[(1, 0.0)], 0.5), None);
    }
}
