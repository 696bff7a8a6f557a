//! Answering with one file: validators, conditional requests, byte ranges.
//!
//! The `ETag` is strong and made of the size and modification time (in
//! nanoseconds): it changes whenever either does, without reading the file.
//! `If-None-Match` wins over `If-Modified-Since` (RFC 9110 §13.2.2). A single
//! byte range gets 206, an unsatisfiable one 416; several ranges, a malformed
//! `Range` or a stale `If-Range` get the whole file, as the RFC allows.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Frame};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

use crate::StaticBody;

/// Bytes read from the file per body frame.
const CHUNK: usize = 64 * 1024;

/// What a request asked for with its `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// The whole file.
    Full,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// A range that lies past the end.
    Unsatisfiable,
}

/// Identity of one version of a file.
struct Validators {
    etag: String,
    modified: SystemTime,
}

/// Answers `method` (GET or HEAD) for the file at `path`.
pub async fn serve(path: &Path, method: &Method, headers: &HeaderMap) -> Response<StaticBody> {
    match open(path).await {
        Ok((file, len, v)) => answer(file, len, &v, method, headers, path).await,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read file");
            status_only(StatusCode::NOT_FOUND)
        }
    }
}

async fn open(path: &Path) -> io::Result<(tokio::fs::File, u64, Validators)> {
    let file = tokio::fs::File::open(path).await?;
    let meta = file.metadata().await?;
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let etag = format!("\"{:x}-{:x}\"", meta.len(), nanos);
    Ok((file, meta.len(), Validators { etag, modified }))
}

async fn answer(
    mut file: tokio::fs::File,
    len: u64,
    v: &Validators,
    method: &Method,
    headers: &HeaderMap,
    path: &Path,
) -> Response<StaticBody> {
    if not_modified(headers, v) {
        return with_validators(status_only(StatusCode::NOT_MODIFIED), v);
    }
    let ask = match if_range_holds(headers, v) {
        true => range(headers.get(header::RANGE), len),
        false => RangeAsk::Full,
    };
    let (status, start, end) = match ask {
        RangeAsk::Unsatisfiable => return unsatisfiable(len),
        RangeAsk::Full => (StatusCode::OK, 0, len.saturating_sub(1)),
        RangeAsk::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end),
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let body = match *method {
        Method::HEAD => Empty::new().map_err(|never| match never {}).boxed(),
        _ => match file.seek(io::SeekFrom::Start(start)).await {
            Ok(_) => FileBody::new(file, count).boxed(),
            Err(_) => return status_only(StatusCode::INTERNAL_SERVER_ERROR),
        },
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::mime::content_type(name)),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {start}-{end}/{len}");
        h.insert(header::CONTENT_RANGE, header_value(&range));
    }
    with_validators(response, v)
}

/// Whether the client's copy is current.
fn not_modified(headers: &HeaderMap, v: &Validators) -> bool {
    if let Some(tags) = headers.get(header::IF_NONE_MATCH) {
        let tags = tags.to_str().unwrap_or_default();
        return tags
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == v.etag);
    }
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|s| s.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok());
    since.is_some_and(|since| whole_seconds(v.modified) <= whole_seconds(since))
}

/// Whether an `If-Range` (if any) still names this version.
fn if_range_holds(headers: &HeaderMap, v: &Validators) -> bool {
    let Some(value) = headers.get(header::IF_RANGE).and_then(|s| s.to_str().ok()) else {
        return true;
    };
    if value.starts_with('"') {
        return value == v.etag;
    }
    httpdate::parse_http_date(value).is_ok_and(|d| whole_seconds(d) == whole_seconds(v.modified))
}

/// Reads a `Range` header against a file of `len` bytes.
pub fn range(value: Option<&HeaderValue>, len: u64) -> RangeAsk {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeAsk::Full;
    };
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Full;
    };
    match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), _) if start >= len => RangeAsk::Unsatisfiable,
        (Ok(start), Ok(end)) if end >= start => RangeAsk::Part(start, end.min(len - 1)),
        (Ok(start), Err(_)) if last.is_empty() => RangeAsk::Part(start, len - 1),
        (Err(_), Ok(0)) if first.is_empty() => RangeAsk::Unsatisfiable,
        (Err(_), Ok(_)) if first.is_empty() && len == 0 => RangeAsk::Unsatisfiable,
        (Err(_), Ok(n)) if first.is_empty() => RangeAsk::Part(len - n.min(len), len - 1),
        _ => RangeAsk::Full,
    }
}

fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn with_validators(mut response: Response<StaticBody>, v: &Validators) -> Response<StaticBody> {
    let h = response.headers_mut();
    h.insert(header::ETAG, header_value(&v.etag));
    h.insert(
        header::LAST_MODIFIED,
        header_value(&httpdate::fmt_http_date(v.modified)),
    );
    response
}

fn unsatisfiable(len: u64) -> Response<StaticBody> {
    let mut response = status_only(StatusCode::RANGE_NOT_SATISFIABLE);
    let value = header_value(&format!("bytes */{len}"));
    response.headers_mut().insert(header::CONTENT_RANGE, value);
    response
}

fn status_only(status: StatusCode) -> Response<StaticBody> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
}

/// Header values built here are ASCII by construction.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Streams `remaining` bytes of a file, one chunk per frame.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Vec<u8>,
}

impl FileBody {
    fn new(file: tokio::fs::File, remaining: u64) -> FileBody {
        let size = usize::try_from(remaining).unwrap_or(CHUNK).min(CHUNK);
        FileBody {
            file,
            remaining,
            buf: vec![0; size],
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = service::http::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let want = usize::try_from(this.remaining)
            .unwrap_or(CHUNK)
            .min(this.buf.len());
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        ready!(Pin::new(&mut this.file).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            let e = io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while sent");
            return Poll::Ready(Some(Err(e.into())));
        }
        let chunk = Bytes::copy_from_slice(read.filled());
        this.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(value: &str, len: u64) -> RangeAsk {
        range(Some(&HeaderValue::from_str(value).expect("header")), len)
    }

    #[test]
    fn single_ranges_are_read() {
        assert_eq!(ask("bytes=0-3", 10), RangeAsk::Part(0, 3));
        assert_eq!(ask("bytes=4-", 10), RangeAsk::Part(4, 9));
        assert_eq!(ask("bytes=-3", 10), RangeAsk::Part(7, 9));
        assert_eq!(ask("bytes=-30", 10), RangeAsk::Part(0, 9));
        assert_eq!(ask("bytes=5-100", 10), RangeAsk::Part(5, 9));
    }

    #[test]
    fn odd_ranges_fall_back_or_fail() {
        assert_eq!(ask("bytes=10-", 10), RangeAsk::Unsatisfiable);
        assert_eq!(ask("bytes=-0", 10), RangeAsk::Unsatisfiable);
        assert_eq!(ask("bytes=0-1,3-4", 10), RangeAsk::Full);
        assert_eq!(ask("bytes=5-2", 10), RangeAsk::Full);
        assert_eq!(ask("items=0-1", 10), RangeAsk::Full);
        assert_eq!(range(None, 10), RangeAsk::Full);
    }
}
