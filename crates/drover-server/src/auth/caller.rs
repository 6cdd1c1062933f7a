//! Who made a request, as the handlers see it: a role, the ACL token (if one was used)
//! and its namespace. The auth layer puts it in the request's extensions.

use crate::api::ApiError;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use drover_types::Role;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// The client ACL token; `None` for the cluster token (or a UI session opened
    /// with it).
    pub token: Option<u64>,
    /// The namespace (task owner) the token is confined to.
    pub namespace: Option<String>,
}

impl Caller {
    /// The cluster token's holder: admin, unscoped.
    pub fn cluster() -> Caller {
        Caller {
            role: Role::Admin,
            token: None,
            namespace: None,
        }
    }

    /// Whether a task of `owner` is within this caller's namespace.
    pub fn sees(&self, owner: &str) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == owner)
    }

    /// 403 unless a task of `owner` is within this caller's namespace.
    pub fn check_owner(&self, owner: &str, what: &str) -> Result<(), ApiError> {
        if self.sees(owner) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{what} is outside this token's namespace {:?}",
                self.namespace.as_deref().unwrap_or_default()
            ),
            None,
        ))
    }

    /// 403 unless this caller may cancel a job that `submitter` submitted: operators
    /// and admins cancel anything, a `submit` token only what it submitted itself.
    pub fn check_cancel(&self, submitter: Option<u64>, what: &str) -> Result<(), ApiError> {
        if self.role.allows(Role::Operator) || (self.token.is_some() && self.token == submitter) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a '{}' token cancels only what it submitted; {what} was submitted by another credential",
                self.role
            ),
            None,
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        // Every client route passes the auth layer, which sets it: its absence is a
        // wiring mistake, refused rather than taken as anyone.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this request was not authenticated",
                None,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role, id: u64, ns: Option<&str>) -> Caller {
        Caller {
            role,
            token: Some(id),
            namespace: ns.map(String::from),
        }
    }

    #[test]
    fn namespaces_confine_and_submit_tokens_cancel_only_their_own() {
        let scoped = token(Role::Submit, 3, Some("team-a"));
        assert!(scoped.sees("team-a"));
        assert!(!scoped.sees("team-b"));
        assert!(!scoped.sees(""));
        assert!(Caller::cluster().sees("anyone"));
        assert_eq!(
            scoped.check_owner("team-b", "task 4").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert!(scoped.check_cancel(Some(3), "job 1").is_ok());
        assert!(scoped.check_cancel(Some(4), "job 1").is_err());
        assert!(scoped.check_cancel(None, "job 1").is_err());
        assert!(
            token(Role::Operator, 5, None)
                .check_cancel(None, "job 1")
                .is_ok()
        );
        assert!(Caller::cluster().check_cancel(Some(3), "job 1").is_ok());
    }
}
