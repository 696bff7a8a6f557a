//! `switchboard call`: a command-line client, and a small load generator.
//!
//! `switchboard call calc.summ 1 5 -8` prints the result. Arguments that read
//! as JSON are sent as written (so big integers stay exact and the server
//! judges them); anything else is sent as a JSON string. Exit codes: 0 for a
//! result, 3 for an error the client caused (4xx), 4 for a server-side error
//! (5xx), 5 when no answer came (connection refused, timeout).

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Exit code of an answer with a client error (4xx).
const EXIT_CLIENT_ERROR: i32 = 3;
/// Exit code of an answer with a server error (5xx).
const EXIT_SERVER_ERROR: i32 = 4;
/// Exit code when no answer arrived.
const EXIT_NO_ANSWER: i32 = 5;

/// Flags of `switchboard call`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct CallArgs {
    /// Method to call, e.g. calc.summ.
    method: String,
    /// Arguments, e.g. 1 5 -8 156 -24.
    args: Vec<String>,
    /// Entry point.
    #[arg(
        long,
        env = "SWITCHBOARD_URL",
        default_value = "http://127.0.0.1:8080/rpc"
    )]
    url: String,
    /// Print the whole answer, not only the result.
    #[arg(long)]
    json: bool,
    /// Request id to send (default: a fresh UUID).
    #[arg(long)]
    request_id: Option<String>,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Send the call this many times and print throughput and latency.
    #[arg(long, default_value_t = 1)]
    repeat: u64,
    /// Calls in flight at once when repeating.
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Runs the command and exits the process with its exit code.
pub(crate) fn run(args: CallArgs) -> anyhow::Result<()> {
    let runtime = crate::cli::runtime()?;
    let code = runtime.block_on(async {
        match args.repeat > 1 {
            true => load(&args).await,
            false => once(&args).await,
        }
    })?;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// The request body: the native envelope with the arguments as written.
fn body(args: &CallArgs) -> String {
    let list: Vec<String> = args.args.iter().map(|a| json_arg(a)).collect();
    let id = args
        .request_id
        .clone()
        .unwrap_or_else(|| protocol::RequestId::generate().to_string());
    format!(
        r#"{{"method":{},"data":{{"args":[{}]}},"requestId":{}}}"#,
        Value::String(args.method.clone()),
        list.join(","),
        Value::String(id)
    )
}

/// An argument as JSON: itself when it is a JSON number, else a string.
fn json_arg(arg: &str) -> String {
    let is_number = serde_json::from_str::<&serde_json::value::RawValue>(arg)
        .map(|raw| matches!(raw.get().as_bytes().first(), Some(b'-' | b'0'..=b'9')))
        .unwrap_or(false);
    match is_number {
        true => arg.to_owned(),
        false => Value::String(arg.to_owned()).to_string(),
    }
}

/// What one call came back with.
struct Reply {
    status: u16,
    body: Bytes,
}

async fn send(
    client: &HttpClient,
    url: &str,
    body: Bytes,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, protocol::CONTENT_TYPE)
        .body(Full::new(body))?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok(Reply { status, body })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
}

async fn once(args: &CallArgs) -> anyhow::Result<i32> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let reply = match send(&client(), &args.url, Bytes::from(body(args)), timeout).await {
        Ok(reply) => reply,
        Err(e) => {
            eprintln!("error: no answer from {}: {e:#}", args.url);
            return Ok(EXIT_NO_ANSWER);
        }
    };
    Ok(print_reply(args, &reply))
}

fn print_reply(args: &CallArgs, reply: &Reply) -> i32 {
    let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if args.json {
        println!("{}", String::from_utf8_lossy(&reply.body));
    }
    if let Some(result) = answer.get("result") {
        if !args.json {
            println!("{result}");
        }
        return 0;
    }
    let error = &answer["error"];
    match (error["code"].as_str(), error["message"].as_str()) {
        (Some(code), Some(message)) => eprintln!("error: {code}: {message}"),
        _ => eprintln!(
            "error: HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ),
    }
    match reply.status {
        400..=499 => EXIT_CLIENT_ERROR,
        _ => EXIT_SERVER_ERROR,
    }
}

/// Sends `repeat` calls, `concurrency` at a time, and prints a summary.
async fn load(args: &CallArgs) -> anyhow::Result<i32> {
    let client = client();
    let body = Bytes::from(body(args));
    let timeout = Duration::from_millis(args.timeout_ms);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.clamp(1, args.repeat))
        .map(|_| {
            let (client, body, next, url) =
                (client.clone(), body.clone(), next.clone(), args.url.clone());
            let repeat = args.repeat;
            tokio::spawn(async move {
                let mut stats = Stats::default();
                while next.fetch_add(1, Ordering::Relaxed) < repeat {
                    let start = Instant::now();
                    let outcome = send(&client, &url, body.clone(), timeout).await;
                    stats.record(start.elapsed(), outcome);
                }
                stats
            })
        })
        .collect();
    let mut total = Stats::default();
    for worker in workers {
        total.merge(worker.await?);
    }
    total.print(started.elapsed());
    Ok(match total.failed() {
        0 => 0,
        _ => EXIT_SERVER_ERROR,
    })
}

/// Latencies and outcomes of a load run.
#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    by_status: std::collections::BTreeMap<String, u64>,
}

impl Stats {
    fn record(&mut self, elapsed: Duration, outcome: anyhow::Result<Reply>) {
        self.latencies_us.push(elapsed.as_micros() as u64);
        let key = match outcome {
            Ok(reply) => reply.status.to_string(),
            Err(_) => "no answer".to_owned(),
        };
        *self.by_status.entry(key).or_default() += 1;
    }

    fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
        for (k, v) in other.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
    }

    fn failed(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(k, _)| k.as_str() != "200")
            .map(|(_, v)| v)
            .sum()
    }

    fn print(&mut self, elapsed: Duration) {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let pct = |p: f64| {
            let i = ((n as f64 * p).ceil() as usize).clamp(1, n.max(1)) - 1;
            self.latencies_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        println!("requests     {n} in {:.2} s", elapsed.as_secs_f64());
        println!(
            "throughput   {:.0} req/s",
            n as f64 / elapsed.as_secs_f64().max(1e-9)
        );
        println!(
            "latency ms   p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(1.0)
        );
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        println!("status       {}", statuses.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_as_written_and_words_become_strings() {
        assert_eq!(json_arg("-8"), "-8");
        assert_eq!(
            json_arg("123456789012345678901234567890"),
            "123456789012345678901234567890"
        );
        assert_eq!(json_arg("2.5e3"), "2.5e3");
        assert_eq!(json_arg("x"), "\"x\"");
        assert_eq!(json_arg("null"), "\"null\"");
        assert_eq!(json_arg("\"q"), "\"\\\"q\"");
    }
}
