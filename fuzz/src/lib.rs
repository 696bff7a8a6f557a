//! The checks behind every fuzz target, shared with the corpus replay test.
//!
//! Each function takes the raw fuzz input, feeds it to the code the request
//! path runs, and asserts what must hold for any input: no panic, no endless
//! loop, and the property that keeps hostile input harmless (an answer that is
//! valid JSON, a request id safe for headers and logs, a file path that stays
//! inside the root, a configuration that survives a round trip). cargo-fuzz
//! runs them under libFuzzer; `crates/switchboard/tests/fuzz_corpora.rs`
//! includes this file and replays every committed corpus input on stable.

use std::path::{Component, Path, PathBuf};

use protocol::envelope::{Item, split_method};
use protocol::{Body, Flavor, Limits, Number, RequestId, RpcError};
use serde_json::value::RawValue;

/// Limits far below the defaults, so that every limit is reached by small
/// inputs as well.
const TIGHT: Limits = Limits {
    max_body_bytes: 4096,
    max_args: 8,
    max_depth: 4,
    max_batch: 4,
};

/// The request envelope parser and the numeric arguments of each call.
///
/// Every body is either refused as a whole with a JSON answer, or read into
/// calls whose method, request id, arguments and answers keep their promises.
pub fn envelope(data: &[u8]) {
    for limits in [Limits::default(), TIGHT] {
        match protocol::parse_body(data, &limits) {
            Ok(Body::Single(item)) => check_item(item, &limits),
            Ok(Body::Batch(items)) => {
                assert!(!items.is_empty() && items.len() <= limits.max_batch);
                items.into_iter().for_each(|item| check_item(item, &limits));
            }
            Err(error) => check_body_error(data, &error),
        }
    }
    // The argument reader on its own, for any JSON value as `params`.
    if let Ok(raw) = serde_json::from_slice::<&RawValue>(data) {
        check_numbers(protocol::parse_numbers(Some(raw), &TIGHT), &TIGHT);
    }
}

fn fixed_id() -> RequestId {
    RequestId::parse("fuzz-1").expect("a valid id")
}

fn check_body_error(body: &[u8], error: &RpcError) {
    let status = error.code.http_status();
    assert!((400..600).contains(&status), "{status} for {error:?}");
    let answer = protocol::encode_body_error(body, &fixed_id(), error);
    assert_json(&answer);
}

fn check_item(item: Item<'_>, limits: &Limits) {
    let env = match item {
        Ok(env) => env,
        Err(rejected) => {
            if let Some(id) = &rejected.request_id {
                assert_header_safe(id);
            }
            let answer =
                protocol::encode_single(rejected.flavor, &fixed_id(), Err(&rejected.error));
            answer.iter().for_each(|a| assert_json(a));
            return;
        }
    };
    assert!(!env.method.is_empty(), "an empty method was accepted");
    check_split(&env.method);
    if let Some(id) = &env.request_id {
        assert_header_safe(id);
    }
    check_numbers(protocol::parse_numbers(env.params, limits), limits);
    let result = RawValue::from_string("[1,2.5]".to_owned()).expect("valid JSON");
    let answer = protocol::encode_single(env.flavor, &fixed_id(), Ok(&result));
    match env.flavor {
        Flavor::JsonRpc { id: None } => assert!(answer.is_none(), "a notification was answered"),
        _ => assert_json(&answer.expect("a call is answered")),
    }
}

fn check_numbers(numbers: Result<Vec<Number>, RpcError>, limits: &Limits) {
    let Ok(numbers) = numbers else { return };
    assert!(numbers.len() <= limits.max_args);
    for n in numbers {
        if let Number::Float(f) = n {
            assert!(f.is_finite(), "a non-finite argument was accepted");
        }
    }
}

/// The service part is what the gateway routes on: together with the
/// operation it must give back the whole method.
fn check_split(method: &str) {
    let (service, operation) = split_method(method);
    assert!(!service.contains('.'), "service {service:?} of {method:?}");
    match service.is_empty() && !method.starts_with('.') {
        true => assert_eq!(operation, method),
        false => assert_eq!(format!("{service}.{operation}"), method),
    }
}

/// What every component copies into `X-Request-Id` and log lines.
fn assert_header_safe(id: &RequestId) {
    let text = id.as_str();
    assert!(!text.is_empty() && text.len() <= protocol::request_id::MAX_LEN);
    assert!(
        text.bytes().all(|b| b.is_ascii_graphic()),
        "request id {text:?} is not safe for headers and logs"
    );
    assert!(http::HeaderValue::from_str(text).is_ok());
}

fn assert_json(bytes: &[u8]) {
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(bytes) {
        panic!(
            "answer is not JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// The method router: the load balancer's decision by HTTP method and path
/// (first line of the input), and the gateway's split of a `/rpc` body into
/// calls and of each call's method into the service it is routed to (the rest).
pub fn router(data: &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    check_decision(head);
    for limits in [Limits::default(), TIGHT] {
        check_agreement(body, &limits);
        match gateway::parse_rpc_body(body, &limits) {
            Ok(gateway::Parsed::Single(item)) => check_routed(item),
            Ok(gateway::Parsed::Batch(raws)) => {
                assert!(!raws.is_empty() && raws.len() <= limits.max_batch);
                for raw in raws {
                    check_routed(protocol::envelope::parse_item(raw));
                }
            }
            Err(error) => check_body_error(body, &error),
        }
    }
}

/// What the gateway reads of a single call to route it must be what the
/// service reads from the same bytes: else the gateway would route one method
/// while the service runs another, log another request id, or refuse a call
/// the service would run. A call the gateway forwards and the service then
/// refuses is fine: the client gets the service's error.
fn check_agreement(body: &[u8], limits: &Limits) {
    let Ok(gateway::Parsed::Single(routed)) = gateway::parse_rpc_body(body, limits) else {
        return;
    };
    let Ok(Body::Single(full)) = protocol::parse_body(body, limits) else {
        return;
    };
    match (routed, full) {
        (Ok(routed), Ok(full)) => {
            assert_eq!(routed.method, full.method, "method of {body:?}");
            assert_eq!(routed.request_id, full.request_id, "request id of {body:?}");
            assert_eq!(flavor_id(routed.flavor), flavor_id(full.flavor), "{body:?}");
        }
        // Forwarded, then refused by the service: safe, the client gets
        // the service's error.
        (Ok(_), Err(_)) | (Err(_), Err(_)) => {}
        (Err(routed), Ok(full)) => panic!(
            "the gateway refuses ({}) a call the service reads as {}: {body:?}",
            routed.error.message, full.method
        ),
    }
}

/// `None` for a native call, else the JSON-RPC id as written.
fn flavor_id(flavor: Flavor<'_>) -> Option<Option<String>> {
    match flavor {
        Flavor::Native => None,
        Flavor::JsonRpc { id } => Some(id.map(|id| id.get().to_owned())),
    }
}

fn check_routed(item: Item<'_>) {
    if let Ok(env) = item {
        check_split(&env.method);
        assert_eq!(env.service(), split_method(&env.method).0);
    }
}

/// Only `POST /rpc` and `GET`/`HEAD` under `/static/` are ever forwarded; the
/// admin paths never are.
fn check_decision(head: &[u8]) {
    use lb::route::{Decision, Route, decide};

    let text = String::from_utf8_lossy(head);
    let (method, path) = text.split_once(' ').unwrap_or(("GET", &text));
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    match decide(&method, path) {
        Decision::Forward(Route::Rpc) => {
            assert!(method == http::Method::POST && path == "/rpc");
        }
        Decision::Forward(Route::Static) => {
            let read = method == http::Method::GET || method == http::Method::HEAD;
            assert!(read && path.starts_with("/static/"), "{method} {path}");
        }
        Decision::Forward(Route::Local) => panic!("the local route is never forwarded"),
        Decision::NotFound | Decision::WrongMethod(_) => {}
    }
}

/// The configuration parser: the sections of the topology file, each read by
/// the type its component reads it with, validated, and, when valid, written
/// back and read again to the same value.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_gateway_config(text);
    check_lb_config(text);
    let _ = toml::from_str::<static_files::StaticConfig>(text).map(|c| c.server());
    let _ = toml::from_str::<Limits>(text);
    let _ = toml::from_str::<service::ServerConfig>(text);

    // The whole file, as `switchboard` reads it: one table per component.
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return;
    };
    for (key, value) in table {
        let section = toml::to_string(&value).unwrap_or_default();
        match key.as_str() {
            "gateway" => check_gateway_config(&section),
            "lb" => check_lb_config(&section),
            _ => {}
        }
    }
    // `--service` flags, one per line.
    let flags: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut cfg = gateway::GatewayConfig::default();
    if cfg.apply_service_flags(&flags).is_ok() {
        let _ = cfg.validate();
    }
}

fn check_gateway_config(text: &str) {
    let Ok(cfg) = toml::from_str::<gateway::GatewayConfig>(text) else {
        return;
    };
    if cfg.validate().is_err() {
        return;
    }
    for (name, pool) in cfg.pools() {
        assert!(!name.is_empty() && !name.contains('.'), "service {name:?}");
        assert_eq!(pool.name, name);
    }
    let written = toml::to_string(&cfg).expect("a valid gateway config serialises");
    let again: gateway::GatewayConfig = toml::from_str(&written).expect("and reads back");
    assert_eq!(again, cfg, "round trip through {written}");
}

fn check_lb_config(text: &str) {
    let Ok(cfg) = toml::from_str::<lb::LbConfig>(text) else {
        return;
    };
    if cfg.validate().is_err() {
        return;
    }
    assert_ne!(cfg.listen, cfg.admin);
    let _ = (cfg.pools(), cfg.server(), cfg.idle_timeout());
    let written = toml::to_string(&cfg).expect("a valid lb config serialises");
    let again: lb::LbConfig = toml::from_str(&written).expect("and reads back");
    assert_eq!(again, cfg, "round trip through {written}");
}

/// A root folder on disk for the static path resolver: files, a folder with
/// an index, a symlink inside and one pointing out to a secret file beside
/// the root. Removed when dropped.
pub struct StaticSite {
    dir: PathBuf,
    secret: PathBuf,
    root: static_files::resolve::Root,
    runtime: tokio::runtime::Runtime,
}

impl StaticSite {
    /// Builds the folder under the system's temporary directory.
    pub fn new() -> StaticSite {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("switchboard-fuzz-{}-{n}", std::process::id()));
        let root = dir.join("root");
        let secret = dir.join("secret.txt");
        std::fs::create_dir_all(root.join("docs")).expect("create the root");
        std::fs::write(&secret, "secret").expect("write the secret");
        std::fs::write(root.join("a.txt"), "a").expect("write a file");
        std::fs::write(root.join("docs/index.html"), "docs").expect("write an index");
        std::os::unix::fs::symlink(&secret, root.join("leak.txt")).expect("link out");
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("alias.txt")).expect("link in");
        std::os::unix::fs::symlink(&dir, root.join("up")).expect("link to the parent");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        let root = static_files::resolve::Root::open(&root).expect("open the root");
        let secret = std::fs::canonicalize(&secret).expect("canonical secret");
        StaticSite {
            dir,
            secret,
            root,
            runtime,
        }
    }

    /// The static path resolver: a URL path (the input, as is and under
    /// `/static/`) becomes a clean relative path and then a file that is
    /// certainly inside the root, or a refusal.
    pub fn check(&self, data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        for url in [text.to_owned(), format!("/static/{text}")] {
            check_relative(&url);
            let found = self.runtime.block_on(self.root.resolve(&url));
            if let Ok(file) = found {
                assert!(file.starts_with(self.root.path()), "{url:?} gave {file:?}");
                assert_ne!(file, self.secret, "{url:?} reached the secret");
            }
        }
    }
}

impl Default for StaticSite {
    fn default() -> Self {
        StaticSite::new()
    }
}

impl Drop for StaticSite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check_relative(url: &str) {
    let Ok(relative) = static_files::resolve::relative_path(url) else {
        return;
    };
    assert!(relative.is_relative(), "{url:?} gave {relative:?}");
    for part in relative.components() {
        let Component::Normal(name) = part else {
            panic!("{url:?} gave the component {part:?}");
        };
        let name = name.to_string_lossy();
        assert!(!name.contains(['\0', '\\']), "{url:?} gave {name:?}");
    }
    assert!(Path::new("/root").join(&relative).starts_with("/root"));
}
