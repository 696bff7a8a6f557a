//! From a URL path to a file inside the root, or a refusal.
//!
//! The path is split on `/` while still percent-encoded, then each segment is
//! decoded on its own, so `%2f` can never make a new separator. A segment that
//! decodes to `.`, `..`, or holds `/`, `\` or NUL, an empty segment (`//`,
//! which would start an absolute path) or bytes that are not UTF-8 get 400.
//! The joined path is then resolved with symlinks followed and must still lie
//! inside the canonical root, else 404: a symlink may point within the root,
//! never out of it. Only regular files are served; a folder serves its
//! `index.html`.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use percent_encoding::percent_decode_str;
use protocol::{RequestId, RpcError};
use std::io;
use std::path::{Path, PathBuf};

/// URL prefix under which files are served.
pub const PREFIX: &str = "/static/";

/// File served for a folder.
const INDEX: &str = "index.html";

/// Why a path is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The path tries to leave the root or is not a clean path: 400.
    BadPath,
    /// No such file inside the root: 404.
    NotFound,
}

impl Refused {
    /// The answer for this refusal.
    pub fn response(self, id: &RequestId) -> Response<Full<Bytes>> {
        match self {
            Refused::BadPath => {
                let error = RpcError::invalid_request("bad file path");
                service::http::error_response(id, &error, StatusCode::BAD_REQUEST)
            }
            Refused::NotFound => service::http::not_found(id, "this file"),
        }
    }
}

/// The served folder, resolved once at start.
#[derive(Debug, Clone)]
pub struct Root {
    canonical: PathBuf,
}

impl Root {
    /// Opens `path`, which must be an existing folder.
    pub fn open(path: &Path) -> io::Result<Root> {
        let canonical = std::fs::canonicalize(path).map_err(|e| {
            io::Error::new(e.kind(), format!("static root {}: {e}", path.display()))
        })?;
        if !canonical.is_dir() {
            let message = format!("static root {} is not a folder", path.display());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        Ok(Root { canonical })
    }

    /// The canonical folder.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// The file a URL path names, certainly inside the root.
    pub async fn resolve(&self, url_path: &str) -> Result<PathBuf, Refused> {
        let relative = relative_path(url_path)?;
        let found = self.inside(&self.canonical.join(relative)).await?;
        let meta = tokio::fs::metadata(&found)
            .await
            .map_err(|_| Refused::NotFound)?;
        if meta.is_file() {
            return Ok(found);
        }
        if !meta.is_dir() {
            return Err(Refused::NotFound);
        }
        let index = self.inside(&found.join(INDEX)).await?;
        match tokio::fs::metadata(&index).await {
            Ok(meta) if meta.is_file() => Ok(index),
            _ => Err(Refused::NotFound),
        }
    }

    /// Follows symlinks and checks the result is still inside the root.
    async fn inside(&self, path: &Path) -> Result<PathBuf, Refused> {
        let real = tokio::fs::canonicalize(path)
            .await
            .map_err(|_| Refused::NotFound)?;
        match real.starts_with(&self.canonical) {
            true => Ok(real),
            false => Err(Refused::NotFound),
        }
    }
}

/// The clean relative path of a URL path under [`PREFIX`].
pub fn relative_path(url_path: &str) -> Result<PathBuf, Refused> {
    let rest = url_path.strip_prefix(PREFIX).ok_or(Refused::NotFound)?;
    let mut relative = PathBuf::new();
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (i, raw) in segments.into_iter().enumerate() {
        // A trailing slash names a folder; an empty segment elsewhere does not.
        if raw.is_empty() && i == last {
            break;
        }
        relative.push(clean_segment(raw)?);
    }
    Ok(relative)
}

fn clean_segment(raw: &str) -> Result<String, Refused> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Refused::BadPath)?;
    let bad = decoded.is_empty()
        || decoded == "."
        || decoded == ".."
        || decoded.contains(['/', '\\', '\0']);
    match bad {
        true => Err(Refused::BadPath),
        false => Ok(decoded.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_are_kept() {
        assert_eq!(
            relative_path("/static/a/b.css"),
            Ok(PathBuf::from("a/b.css"))
        );
        assert_eq!(relative_path("/static/"), Ok(PathBuf::new()));
        assert_eq!(relative_path("/static/dir/"), Ok(PathBuf::from("dir")));
        assert_eq!(
            relative_path("/static/a%20b.txt"),
            Ok(PathBuf::from("a b.txt"))
        );
    }

    #[test]
    fn every_way_out_is_refused() {
        let attempts = [
            "/static/../secret",
            "/static/a/../../secret",
            "/static/%2e%2e/secret",
            "/static/%2E%2E/secret",
            "/static/.%2e/secret",
            "/static/%2e%2e%2fsecret",
            "/static/a%2f..%2f..%2fsecret",
            "/static/..%5csecret",
            "/static//etc/passwd",
            "/static/%2fetc/passwd",
            "/static/a%00.txt",
            "/static/./a",
            "/static/%ff",
        ];
        for path in attempts {
            assert_eq!(relative_path(path), Err(Refused::BadPath), "{path}");
        }
        assert_eq!(relative_path("/other/a"), Err(Refused::NotFound));
    }
}
