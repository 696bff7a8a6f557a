//! What the suite reads from the processes: `/metrics`, `/pools`, and memory
//! and file descriptors from `/proc`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use telemetry::scrape::{self, Sample};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

/// Every sample of `addr`'s `/metrics`.
pub(crate) async fn metrics(addr: SocketAddr) -> Vec<Sample> {
    let url = format!("http://{addr}/metrics");
    let resp = http().get(url).send().await.expect("metrics answer");
    scrape::parse(&resp.text().await.expect("metrics text"))
}

/// Sum of the samples called `name` whose labels include all of `labels`.
pub(crate) fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

/// As [`sum`], over the `/metrics` of several processes.
pub(crate) async fn sum_over(addrs: &[SocketAddr], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for addr in addrs {
        total += sum(&metrics(*addr).await, name, labels);
    }
    total
}

/// The `/pools` entry of `endpoint` in `pool`, as `addr` sees it.
pub(crate) async fn endpoint(addr: SocketAddr, pool: &str, endpoint: SocketAddr) -> Option<Value> {
    let url = format!("http://{addr}/pools");
    let resp = http().get(url).send().await.ok()?;
    let pools: Value = resp.json().await.ok()?;
    let list = pools["pools"].as_array()?;
    let pool = list.iter().find(|p| p["name"] == pool)?;
    let eps = pool["endpoints"].as_array()?;
    eps.iter()
        .find(|e| e["addr"] == endpoint.to_string())
        .cloned()
}

/// Whether `endpoint` takes new requests in `pool` of `addr`.
pub(crate) async fn in_rotation(addr: SocketAddr, pool: &str, ep: SocketAddr) -> bool {
    match endpoint(addr, pool, ep).await {
        Some(e) => e["healthy"] == true && e["ejected"] == false,
        None => false,
    }
}

/// Whether `endpoint` is out of rotation in `pool` of every one of `watchers`.
pub(crate) async fn out_everywhere(watchers: &[SocketAddr], pool: &str, ep: SocketAddr) -> bool {
    for w in watchers {
        if in_rotation(*w, pool, ep).await {
            return false;
        }
    }
    true
}

/// Whether `endpoint` is in rotation in `pool` of every one of `watchers`.
pub(crate) async fn in_everywhere(watchers: &[SocketAddr], pool: &str, ep: SocketAddr) -> bool {
    for w in watchers {
        if !in_rotation(*w, pool, ep).await {
            return false;
        }
    }
    true
}

/// Polls `check` every 10 ms until it holds; the time it took, or `None`
/// after `timeout`.
pub(crate) async fn within<F, Fut>(timeout: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Resident memory of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS line")
}

/// Open file descriptors of a process.
pub(crate) fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .count()
}

/// Milliseconds, for summary rows.
pub(crate) fn ms(d: Duration) -> u128 {
    d.as_millis()
}
