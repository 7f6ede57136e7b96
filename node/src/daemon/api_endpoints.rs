//! Every endpoint of the local API, in one list: the router is built from
//! it and nothing else, and `docs/local-api.md` is checked against it.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{self, MethodRouter};
use axum::Router;
use tokio::sync::mpsc;

use super::Request;

/// What every handler gets: the way to the daemon's event loop.
pub type Requests = mpsc::Sender<Request>;

/// One method on one path, and the handler that serves it.
pub struct Endpoint {
    /// Set with the handler by the constructors, so it cannot disagree
    /// with what the router serves; read by the docs' test.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the docs test"))]
    pub method: Method,
    pub path: &'static str,
    route: MethodRouter<Requests>,
}

impl Endpoint {
    pub fn get<H, T>(path: &'static str, handler: H) -> Endpoint
    where
        H: Handler<T, Requests>,
        T: 'static,
    {
        Endpoint {
            method: Method::GET,
            path,
            route: routing::get(handler),
        }
    }

    pub fn post<H, T>(path: &'static str, handler: H) -> Endpoint
    where
        H: Handler<T, Requests>,
        T: 'static,
    {
        Endpoint {
            method: Method::POST,
            path,
            route: routing::post(handler),
        }
    }

    pub fn delete<H, T>(path: &'static str, handler: H) -> Endpoint
    where
        H: Handler<T, Requests>,
        T: 'static,
    {
        Endpoint {
            method: Method::DELETE,
            path,
            route: routing::delete(handler),
        }
    }
}

/// Every endpoint: the daemon's own, then DNS and services, then routes.
pub fn all() -> Vec<Endpoint> {
    let mut all = super::api::endpoints();
    all.extend(crate::dns::local_api::endpoints());
    all.extend(crate::routes::local_api::endpoints());
    all
}

/// A router that serves exactly `endpoints` (methods on one path merge).
pub fn router(endpoints: Vec<Endpoint>) -> Router<Requests> {
    endpoints
        .into_iter()
        .fold(Router::new(), |router, e| router.route(e.path, e.route))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::all;
    use crate::daemon::caller::{self, Access};

    /// The docs of the local API, as the docs site ships them.
    const DOC: &str = include_str!("../../../docs/local-api.md");
    /// The heading of the table that lists every endpoint.
    const SECTION: &str = "## Endpoints";

    /// `"GET /v1/status" -> "read"`: the first column's code span and the
    /// last column of each row of the endpoint table.
    fn documented() -> Vec<(String, String)> {
        let Some((_, section)) = DOC.split_once(SECTION) else {
            return Vec::new();
        };
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|row| {
                let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
                let endpoint = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
                Some((endpoint.to_owned(), (*cells.last()?).to_owned()))
            })
            .collect()
    }

    #[test]
    fn the_docs_list_every_endpoint_the_router_serves_with_who_may_call_it() {
        let documented = documented();
        assert!(
            !documented.is_empty(),
            "docs/local-api.md has no table under {SECTION:?}"
        );
        let served: BTreeMap<String, Access> = all()
            .iter()
            .map(|e| {
                (
                    format!("{} {}", e.method, e.path),
                    caller::needed(&e.method, e.path),
                )
            })
            .collect();
        let listed: BTreeMap<String, String> = documented.iter().cloned().collect();
        assert_eq!(
            listed.len(),
            documented.len(),
            "an endpoint is listed twice"
        );
        let missing: Vec<&String> = served.keys().filter(|k| !listed.contains_key(*k)).collect();
        let stale: Vec<&String> = listed.keys().filter(|k| !served.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "served but not in docs/local-api.md's {SECTION:?}: {missing:?}"
        );
        assert!(
            stale.is_empty(),
            "listed in docs/local-api.md but not served: {stale:?}"
        );
        for (endpoint, access) in &served {
            let want = match access {
                Access::Read => "read",
                Access::Admin => "admin",
            };
            assert_eq!(
                listed[endpoint], want,
                "docs/local-api.md says {endpoint} needs {:?}; the daemon asks for {want}",
                listed[endpoint]
            );
        }
    }
}
