//! The routing table: which pool serves a method and path.
//!
//! Fixed on purpose: `POST /rpc` goes to the gateways, `GET`/`HEAD` under
//! `/static/` to the static servers, with the path forwarded unchanged (the
//! static server serves its root under `/static/`). Admin paths are never
//! routed here; they live on the admin listener only.

use http::Method;

/// Path of RPC calls.
pub const RPC_PATH: &str = "/rpc";
/// Prefix of static files, kept when forwarding.
pub const STATIC_PREFIX: &str = "/static/";

/// A pool a request can be forwarded to; also the `route` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /rpc` to the gateway pool.
    Rpc,
    /// `GET`/`HEAD /static/...` to the static pool.
    Static,
    /// Anything answered by the balancer itself (404, 405, refusals).
    Local,
}

impl Route {
    /// Every route, in the order of metric handles.
    pub const ALL: [Route; 3] = [Route::Rpc, Route::Static, Route::Local];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Rpc => "rpc",
            Route::Static => "static",
            Route::Local => "local",
        }
    }
}

/// What to do with a request, decided from its method and path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward to the pool of this route.
    Forward(Route),
    /// No route has this path: 404.
    NotFound,
    /// A known path with the wrong method: 405 with this `Allow` value.
    WrongMethod(&'static str),
}

/// Routes one request.
pub fn decide(method: &Method, path: &str) -> Decision {
    if path == RPC_PATH {
        return match *method {
            Method::POST => Decision::Forward(Route::Rpc),
            _ => Decision::WrongMethod("POST"),
        };
    }
    if path.starts_with(STATIC_PREFIX) {
        return match *method {
            Method::GET | Method::HEAD => Decision::Forward(Route::Static),
            _ => Decision::WrongMethod("GET, HEAD"),
        };
    }
    Decision::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_route_by_method() {
        assert_eq!(decide(&Method::POST, "/rpc"), Decision::Forward(Route::Rpc));
        assert_eq!(decide(&Method::GET, "/rpc"), Decision::WrongMethod("POST"));
        let statics = decide(&Method::HEAD, "/static/a.css");
        assert_eq!(statics, Decision::Forward(Route::Static));
        let put = decide(&Method::PUT, "/static/a.css");
        assert_eq!(put, Decision::WrongMethod("GET, HEAD"));
    }

    #[test]
    fn admin_and_unknown_paths_are_not_routed() {
        for path in [
            "/metrics", "/health", "/ready", "/pools", "/reload", "/rpc/x", "/",
        ] {
            assert_eq!(decide(&Method::GET, path), Decision::NotFound, "{path}");
        }
        assert_eq!(decide(&Method::GET, "/static"), Decision::NotFound);
    }
}
