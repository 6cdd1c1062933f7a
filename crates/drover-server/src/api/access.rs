//! Who may call which route: the one table the auth layer reads.
//!
//! Every route of the router is listed here with the least role that may call it and
//! whether a namespace-scoped token may call it at all. The auth layer finds a request's
//! entry by its matched route pattern; a route missing from the table is refused to
//! every client credential (fail closed), and a unit test walks the OpenAPI document
//! so that a route added without an entry fails the build's tests, not production.

use axum::http::Method;
use drover_types::Role;

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// A client credential of at least this role.
    Client {
        role: Role,
        /// Whether a token scoped to a namespace may use it. Routes about tasks and
        /// jobs are (the handler keeps the token to its namespace); cluster-wide ones
        /// (workers, servers, policy, tokens, metrics) are not.
        scoped: bool,
    },
    /// The worker endpoint: the cluster token only, checked by its own hook.
    Worker,
}

const fn client(role: Role, scoped: bool) -> Access {
    Access::Client { role, scoped }
}

/// Method, route pattern (as the router writes it), access.
pub const ROUTES: &[(Method, &str, Access)] = &[
    (Method::GET, "/v1/health", Access::Public),
    (Method::GET, "/v1/openapi.json", Access::Public),
    (Method::GET, "/v1/cluster", client(Role::Read, false)),
    (Method::GET, "/v1/policy", client(Role::Read, false)),
    (Method::PUT, "/v1/policy", client(Role::Operator, false)),
    (Method::GET, "/v1/workers", client(Role::Read, false)),
    (Method::GET, "/v1/autoscale", client(Role::Read, false)),
    (
        Method::POST,
        "/v1/workers/{worker}/drain",
        client(Role::Operator, false),
    ),
    (
        Method::POST,
        "/v1/workers/{worker}/resume",
        client(Role::Operator, false),
    ),
    (Method::GET, "/v1/servers", client(Role::Read, false)),
    (Method::POST, "/v1/servers", client(Role::Admin, false)),
    (
        Method::DELETE,
        "/v1/servers/{server}",
        client(Role::Admin, false),
    ),
    (Method::GET, "/v1/tasks", client(Role::Read, true)),
    (Method::POST, "/v1/tasks", client(Role::Submit, true)),
    (Method::GET, "/v1/tasks/{task}", client(Role::Read, true)),
    // A `submit` token cancels only what it submitted (checked by the handler).
    (
        Method::POST,
        "/v1/tasks/{task}/cancel",
        client(Role::Submit, true),
    ),
    // Dynamic resources: the same rights as cancelling (checked by the handler).
    (
        Method::POST,
        "/v1/tasks/{task}/resize",
        client(Role::Submit, true),
    ),
    (
        Method::GET,
        "/v1/tasks/{task}/output",
        client(Role::Read, true),
    ),
    (Method::GET, "/v1/events", client(Role::Read, true)),
    (Method::POST, "/v1/jobs", client(Role::Submit, true)),
    (Method::GET, "/v1/jobs/{job}", client(Role::Read, true)),
    (
        Method::POST,
        "/v1/jobs/{job}/cancel",
        client(Role::Submit, true),
    ),
    // The result cache is cluster-wide (its entries are keyed per owner, but a listing
    // shows them all): not for namespace-scoped tokens.
    (Method::GET, "/v1/cache", client(Role::Read, false)),
    (Method::DELETE, "/v1/cache", client(Role::Operator, false)),
    (
        Method::DELETE,
        "/v1/cache/{key}",
        client(Role::Operator, false),
    ),
    (Method::GET, "/v1/tokens", client(Role::Admin, false)),
    (Method::POST, "/v1/tokens", client(Role::Admin, false)),
    (
        Method::DELETE,
        "/v1/tokens/{id}",
        client(Role::Admin, false),
    ),
    (
        Method::POST,
        "/v1/worker-tokens",
        client(Role::Admin, false),
    ),
    (
        Method::GET,
        "/v1/worker-credentials",
        client(Role::Admin, false),
    ),
    (
        Method::DELETE,
        "/v1/worker-credentials/{worker}",
        client(Role::Admin, false),
    ),
    (
        Method::GET,
        drover_proto::worker::WORKER_CONNECT_PATH,
        Access::Worker,
    ),
    (Method::GET, super::metrics::PATH, client(Role::Read, false)),
    // DistTask-compatible routes (`api/disttask.rs`): a submission, the results of the
    // caller's own namespace, and the workers (cluster-wide, like `/v1/workers`).
    (Method::POST, "/submit_task", client(Role::Submit, true)),
    (Method::GET, "/get_results", client(Role::Read, true)),
    (Method::GET, "/status", client(Role::Read, false)),
];

/// The access of a route, by its method and matched pattern. `HEAD` is answered by the
/// `GET` route, so it needs what `GET` needs.
pub fn lookup(method: &Method, pattern: &str) -> Option<Access> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|(m, p, _)| m == method && *p == pattern)
        .map(|(_, _, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation of the OpenAPI document (the router's routes come from the same
    /// list) has an entry, and every entry but the unlisted ones names a real route.
    #[test]
    fn every_route_of_the_api_has_an_access_entry() {
        let doc: serde_json::Value = serde_json::from_str(super::super::openapi_document())
            .expect("the OpenAPI document is JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let mut seen = Vec::new();
        for (path, ops) in paths {
            for (method, _) in ops.as_object().expect("operations") {
                let m: Method = method.to_uppercase().parse().expect("a method");
                assert!(
                    lookup(&m, path).is_some(),
                    "{method} {path} has no entry in api/access.rs ROUTES: give it a role"
                );
                seen.push((m, path.clone()));
            }
        }
        for (m, p, _) in ROUTES {
            // /metrics is served beside the API, not documented in it.
            if *p == super::super::metrics::PATH {
                continue;
            }
            assert!(
                seen.iter().any(|(sm, sp)| sm == m && sp == p),
                "{m} {p} is in ROUTES but not a route of the API"
            );
        }
    }

    #[test]
    fn writes_need_more_than_read_and_tokens_need_admin() {
        for (m, p, a) in ROUTES {
            if let Access::Client { role, .. } = a {
                if *m != Method::GET {
                    assert!(*role > Role::Read, "{m} {p} changes something");
                }
                if p.starts_with("/v1/tokens") || p.starts_with("/v1/servers") && *m != Method::GET
                {
                    assert_eq!(*role, Role::Admin, "{m} {p}");
                }
            }
        }
    }
}
