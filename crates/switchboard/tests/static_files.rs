//! The static gateway as a real process: content types, validators, 304s,
//! ranges, and every way out of the root, over raw sockets so that no client
//! library cleans the path first.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Proc, free_addr, raw_exchange, tempdir};

const SECRET: &str = "top-secret-outside-the-root";

/// A root with files, a folder, a symlink inside and one pointing out.
struct Site {
    proc: Proc,
    _dir: tempdir::Dir,
}

impl Site {
    fn start() -> Site {
        let dir = tempdir::Dir::new("static");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("docs")).expect("root");
        std::fs::write(root.join("index.html"), "<h1>home</h1>").expect("index");
        std::fs::write(root.join("app.css"), "body{}").expect("css");
        std::fs::write(root.join("digits.txt"), "0123456789").expect("digits");
        std::fs::write(root.join("docs/index.html"), "<p>docs</p>").expect("docs");
        std::fs::write(dir.path().join("secret.txt"), SECRET).expect("secret");
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt"))
            .expect("link out");
        std::os::unix::fs::symlink(root.join("app.css"), root.join("alias.css")).expect("link in");
        let root_arg = root.to_string_lossy().into_owned();
        let proc = Proc::start(&["static", "--root", &root_arg]);
        Site { proc, _dir: dir }
    }
}

/// Sends a GET with extra header lines; returns the status and the whole answer.
fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
    let raw = raw_exchange(addr, request.as_bytes(), Duration::from_secs(3));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn files_have_content_types_and_folders_serve_their_index() {
    let site = Site::start();
    let (status, answer) = get(site.proc.addr, "/static/app.css", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        header(&answer, "content-type"),
        Some("text/css; charset=utf-8")
    );
    assert!(answer.ends_with("body{}"));
    let (status, answer) = get(site.proc.addr, "/static/", "");
    assert_eq!(status, 200);
    assert!(answer.ends_with("<h1>home</h1>"));
    let (_, answer) = get(site.proc.addr, "/static/docs/", "");
    assert!(answer.ends_with("<p>docs</p>"), "{answer}");
    assert_eq!(
        get(site.proc.addr, "/static/alias.css", "").0,
        200,
        "links inside the root work"
    );
    assert_eq!(get(site.proc.addr, "/static/missing.txt", "").0, 404);
}

#[test]
fn validators_give_304_and_ranges_give_206() {
    let site = Site::start();
    let (_, answer) = get(site.proc.addr, "/static/digits.txt", "");
    let etag = header(&answer, "etag").expect("etag").to_owned();
    let modified = header(&answer, "last-modified")
        .expect("last-modified")
        .to_owned();
    assert_eq!(header(&answer, "accept-ranges"), Some("bytes"));

    let (status, answer) = get(
        site.proc.addr,
        "/static/digits.txt",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(status, 304, "{answer}");
    let since = format!("If-Modified-Since: {modified}\r\n");
    assert_eq!(get(site.proc.addr, "/static/digits.txt", &since).0, 304);
    let other = "If-None-Match: \"other\"\r\n";
    assert_eq!(get(site.proc.addr, "/static/digits.txt", other).0, 200);

    let (status, answer) = get(site.proc.addr, "/static/digits.txt", "Range: bytes=2-5\r\n");
    assert_eq!(status, 206);
    assert_eq!(header(&answer, "content-range"), Some("bytes 2-5/10"));
    assert!(answer.ends_with("\r\n\r\n2345"), "{answer}");
    let (_, answer) = get(site.proc.addr, "/static/digits.txt", "Range: bytes=-3\r\n");
    assert!(answer.ends_with("789"));
    let (status, answer) = get(site.proc.addr, "/static/digits.txt", "Range: bytes=20-\r\n");
    assert_eq!(status, 416);
    assert_eq!(header(&answer, "content-range"), Some("bytes */10"));
    let stale = "Range: bytes=2-5\r\nIf-Range: \"stale\"\r\n";
    assert_eq!(get(site.proc.addr, "/static/digits.txt", stale).0, 200);
}

#[test]
fn no_path_leads_out_of_the_root() {
    let site = Site::start();
    let attempts = [
        "/static/../secret.txt",
        "/static/docs/../../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/.%2e/secret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/docs%2f..%2f..%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/%252e%252e/secret.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/leak.txt",
        "/static/%00",
        "/static/../../../../../../etc/passwd",
        "/../secret.txt",
        "/static/..",
    ];
    for path in attempts {
        let (status, answer) = get(site.proc.addr, path, "");
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert!(
            !answer.contains(SECRET) && !answer.contains("root:"),
            "{path} leaked"
        );
    }
}

#[test]
fn the_lb_serves_static_files_and_rpc_side_by_side() {
    let site = Site::start();
    let calc = Proc::start(&["calc"]);
    let dir = tempdir::Dir::new("lb-static");
    let config = dir.path().join("switchboard.toml");
    let text = format!(
        "[lb.rpc]\nendpoints = [\"{}\"]\n[lb.static]\nendpoints = [\"{}\"]\n",
        calc.addr, site.proc.addr
    );
    std::fs::write(&config, text).expect("config");
    let path = config.to_string_lossy().into_owned();
    let (listen, admin) = (free_addr(), free_addr());
    let lb = Proc::start_lb(&["--config", &path], listen, admin, "warn");

    let (status, answer) = get(lb.addr, "/static/app.css", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        header(&answer, "content-type"),
        Some("text/css; charset=utf-8")
    );
    let (status, answer) = get(lb.addr, "/static/digits.txt", "Range: bytes=0-1\r\n");
    assert_eq!(status, 206, "{answer}");
    assert!(answer.ends_with("01"));
    let (status, _) = get(lb.addr, "/static/%2e%2e/secret.txt", "");
    assert!(status == 400 || status == 404);
    assert_eq!(
        get(lb.addr, "/health", "").0,
        404,
        "the static server's own paths stay hidden"
    );
}
