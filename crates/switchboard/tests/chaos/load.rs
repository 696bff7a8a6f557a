//! Open-loop load and its ledger.
//!
//! Requests leave on a timetable (stages of a fixed rate), each in its own
//! task, whether or not earlier ones were answered: a slow system does not slow
//! the load down, as it would with a fixed set of clients. Latency counts from
//! the scheduled time, so a generator running late shows up as latency rather
//! than hiding it. Every request carries a unique `requestId` and random
//! arguments whose exact answer the test computes itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// One stage of a timetable: `rate` requests per second for `length`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stage {
    pub(crate) rate: f64,
    pub(crate) length: Duration,
}

/// A steady timetable.
pub(crate) fn steady(rate: f64, length: Duration) -> Vec<Stage> {
    vec![Stage { rate, length }]
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// 200 with the exact result and our request id.
    Ok,
    /// 200 with anything else.
    Wrong(String),
    /// Another status; `code` is the error code of the body, if any.
    Status {
        status: u16,
        code: String,
        retry_after: bool,
    },
    /// The connection could not be made: the request never left.
    NotSent,
    /// No answer within the client timeout.
    Hang,
    /// The exchange broke after the request left (reset, bad framing).
    Broken(String),
}

/// One line of the ledger.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) id: String,
    /// When the request was due, from the start of the load.
    pub(crate) due: Duration,
    /// From due time to the end of the answer.
    pub(crate) latency: Duration,
    pub(crate) outcome: Outcome,
}

impl Entry {
    pub(crate) fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    pub(crate) fn status(&self) -> Option<u16> {
        match &self.outcome {
            Outcome::Ok | Outcome::Wrong(_) => Some(200),
            Outcome::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Every request of one load run.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub(crate) entries: Vec<Entry>,
}

/// A load run in progress.
pub(crate) struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
    driver: tokio::task::JoinHandle<()>,
}

/// Settings of the client side.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    url: String,
    tag: String,
}

impl Client {
    /// A keep-alive client of the load balancer at `lb`; ids start with `tag`.
    pub(crate) fn new(lb: SocketAddr, tag: &str, timeout: Duration) -> Client {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .build()
            .expect("client");
        Client {
            http,
            url: format!("http://{lb}/rpc"),
            tag: tag.to_owned(),
        }
    }

    /// Sends call number `seq` and judges the answer.
    async fn call(&self, seq: u64) -> Outcome {
        let id = format!("{}-{seq}", self.tag);
        let (method, args, expected) = Call::random(seq).parts();
        let body = json!({"method": method, "data": {"args": args}, "requestId": id});
        let sent = self.http.post(&self.url).json(&body).send().await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => return transport(&e),
        };
        let status = resp.status().as_u16();
        let retry_after = resp.headers().contains_key("retry-after");
        let text = match resp.text().await {
            Ok(text) => text,
            Err(e) => return transport(&e),
        };
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        judge(status, retry_after, &value, &id, expected, &text)
    }
}

fn transport(e: &reqwest::Error) -> Outcome {
    if e.is_connect() {
        return Outcome::NotSent;
    }
    if e.is_timeout() {
        return Outcome::Hang;
    }
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    Outcome::Broken(detail)
}

fn judge(status: u16, retry_after: bool, v: &Value, id: &str, want: i64, text: &str) -> Outcome {
    if status != 200 {
        let code = v["error"]["code"].as_str().unwrap_or_default().to_owned();
        return Outcome::Status {
            status,
            code,
            retry_after,
        };
    }
    if v["result"].as_i64() == Some(want) && v["requestId"] == id {
        return Outcome::Ok;
    }
    Outcome::Wrong(format!("wanted {want} for {id}, got {text}"))
}

/// A call with arguments whose answer is known exactly.
struct Call {
    method: &'static str,
    args: Vec<i64>,
    expected: i64,
}

impl Call {
    /// The call of sequence number `seq`: random, but the same for a given seq.
    fn random(seq: u64) -> Call {
        let mut rng = SplitMix(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed);
        let n = 2 + rng.below(4) as usize;
        match rng.below(4) {
            0 => {
                let args: Vec<i64> = (0..n).map(|_| rng.signed(1_000_000_000)).collect();
                let expected = args.iter().sum();
                call("calc.summ", args, expected)
            }
            1 => {
                let args: Vec<i64> = (0..n).map(|_| rng.signed(1_000_000_000)).collect();
                let expected = args[0] - args[1..].iter().sum::<i64>();
                call("calc.sub", args, expected)
            }
            2 => {
                let args: Vec<i64> = (0..n).map(|_| rng.signed(1000)).collect();
                let expected = args.iter().product();
                call("calc.mult", args, expected)
            }
            _ => {
                let quotient = rng.signed(1_000_000);
                let divisor = 1 + rng.below(1000) as i64;
                call("calc.div", vec![quotient * divisor, divisor], quotient)
            }
        }
    }

    fn parts(self) -> (&'static str, Vec<i64>, i64) {
        (self.method, self.args, self.expected)
    }
}

fn call(method: &'static str, args: Vec<i64>, expected: i64) -> Call {
    Call {
        method,
        args,
        expected,
    }
}

/// A small deterministic generator; the suite needs variety, not quality.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `-bound..=bound`.
    fn signed(&mut self, bound: i64) -> i64 {
        let span = 2 * bound as u64 + 1;
        self.below(span) as i64 - bound
    }
}

impl Load {
    /// Starts sending on `stages` through `client`.
    pub(crate) fn start(client: Client, stages: Vec<Stage>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let started = Instant::now();
        let driver = tokio::spawn(drive(
            client,
            stages,
            started,
            Arc::clone(&stop),
            Arc::clone(&ledger),
        ));
        Load {
            started,
            stop,
            ledger,
            driver,
        }
    }

    /// Time since the load started, to place events on the ledger's clock.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops scheduling new requests; those sent are still awaited by `finish`.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Waits for the timetable to end and every request to be answered.
    pub(crate) async fn finish(self) -> Ledger {
        let Load { driver, ledger, .. } = self;
        driver.await.expect("load driver");
        let mut ledger =
            std::mem::take(&mut *ledger.lock().unwrap_or_else(PoisonError::into_inner));
        ledger.entries.sort_by_key(|e| e.seq);
        ledger
    }
}

async fn drive(
    client: Client,
    stages: Vec<Stage>,
    started: Instant,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut tasks = JoinSet::new();
    let mut seq = 0u64;
    let mut stage_start = Duration::ZERO;
    for stage in stages {
        let count = (stage.rate * stage.length.as_secs_f64()).round() as u64;
        for i in 0..count {
            if stop.load(Ordering::Acquire) {
                break;
            }
            let due = stage_start + Duration::from_secs_f64(i as f64 / stage.rate);
            tokio::time::sleep_until(started + due).await;
            let (client, ledger) = (client.clone(), Arc::clone(&ledger));
            tasks.spawn(async move {
                let outcome = client.call(seq).await;
                let entry = Entry {
                    seq,
                    id: format!("{}-{seq}", client.tag),
                    due,
                    latency: started.elapsed().saturating_sub(due),
                    outcome,
                };
                ledger
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .push(entry);
            });
            seq += 1;
            // Reap finished tasks as we go, so the set stays small.
            while tasks.try_join_next().is_some() {}
        }
        stage_start += stage.length;
    }
    while tasks.join_next().await.is_some() {}
}

impl Ledger {
    pub(crate) fn sent(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn ok(&self) -> usize {
        self.entries.iter().filter(|e| e.ok()).count()
    }

    /// Entries that did not end `Ok`.
    pub(crate) fn failures(&self) -> Vec<&Entry> {
        self.entries.iter().filter(|e| !e.ok()).collect()
    }

    /// Latency percentile (0..=100) over every answered request.
    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let mut all: Vec<Duration> = self.entries.iter().map(|e| e.latency).collect();
        if all.is_empty() {
            return Duration::ZERO;
        }
        all.sort();
        let rank = ((p / 100.0) * (all.len() - 1) as f64).round() as usize;
        all[rank.min(all.len() - 1)]
    }

    /// Panics, listing a few, unless every request ended `Ok`.
    pub(crate) fn assert_all_ok(&self, scenario: &str) {
        let failures = self.failures();
        assert!(
            failures.is_empty(),
            "{scenario}: {} of {} requests failed, first ones: {:#?}",
            failures.len(),
            self.sent(),
            &failures[..failures.len().min(5)]
        );
    }

    /// Panics unless every request id appears exactly once.
    pub(crate) fn assert_ids_unique(&self) {
        let mut ids: Vec<&str> = self.entries.iter().map(|e| e.id.as_str()).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len(), "a request id was answered twice");
    }
}

/// One row of the summary table; printed, and appended to the report file.
pub(crate) fn report(scenario: &str, ledger: &Ledger, extra: &str) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let row = format!(
        "| {scenario} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {extra} |",
        ledger.sent(),
        ledger.ok(),
        ledger.sent() - ledger.ok(),
        ms(ledger.percentile(50.0)),
        ms(ledger.percentile(99.0)),
        ms(ledger.percentile(100.0)),
    );
    println!("| scenario | sent | ok | failed | p50 ms | p99 ms | max ms | figures |");
    println!("{row}");
    if let Ok(path) = std::env::var("SWITCHBOARD_CHAOS_REPORT") {
        use std::io::Write;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut file) = file {
            let _ = writeln!(file, "{row}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_reproducible_and_exact() {
        for seq in 0..2000 {
            let (method, args, expected) = Call::random(seq).parts();
            let (_, again, _) = Call::random(seq).parts();
            assert_eq!(args, again);
            let check = match method {
                "calc.summ" => args.iter().sum(),
                "calc.sub" => args[0] - args[1..].iter().sum::<i64>(),
                "calc.mult" => args.iter().product(),
                _ => args[0] / args[1],
            };
            assert_eq!(check, expected, "{method} {args:?}");
        }
    }
}
