//! Who a worker connection is: the cluster token (an admin's agent, any name), a join
//! token (a first connection: enrolled through the log, then given a credential), or a
//! worker credential (bound to one worker name). See ARCHITECTURE.md, "Worker
//! identities".
//!
//! Secrets look like `drover_join_<id>_<secret>` and `drover_worker_<id>_<secret>`: the
//! id finds the record in the replicated state without scanning, the prefix lets the
//! auth layer hand them to the worker endpoint (and refuse them everywhere else)
//! without reading the state. Only their SHA-256 is stored: the secrets are 256 random
//! bits, so a slow password hash would add nothing.

use crate::auth::ClusterToken;
use crate::node::Node;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use drover_proto::integrity::{TaskSigner, to_hex};
use drover_state::worker_identity::IdentityError;
use sha2::{Digest, Sha256};

pub const JOIN_PREFIX: &str = "drover_join_";
pub const CREDENTIAL_PREFIX: &str = "drover_worker_";

/// Whether a presented bearer secret is a join token or a worker credential (by its
/// shape only: the worker endpoint checks it against the state).
pub fn is_worker_secret(presented: &str) -> bool {
    presented.starts_with(JOIN_PREFIX) || presented.starts_with(CREDENTIAL_PREFIX)
}

/// A new secret of one kind: shown once, stored as `digest`.
#[derive(Clone)]
pub struct IssuedSecret {
    pub id: String,
    pub secret: String,
    pub digest: String,
}

impl std::fmt::Debug for IssuedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuedSecret({}, …)", self.id)
    }
}

/// Errors of issuing or checking a worker secret.
#[derive(Debug, thiserror::Error)]
pub enum WorkerAuthError {
    #[error("no randomness for a new secret: {0}")]
    Random(getrandom::Error),
    #[error("the worker credential is not known (never issued, or revoked)")]
    UnknownCredential,
    #[error("the join token is refused: {0}")]
    JoinToken(IdentityError),
}

impl IssuedSecret {
    pub fn new(prefix: &str) -> Result<IssuedSecret, WorkerAuthError> {
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        getrandom::fill(&mut id).map_err(WorkerAuthError::Random)?;
        getrandom::fill(&mut secret).map_err(WorkerAuthError::Random)?;
        let id = to_hex(&id);
        let secret = format!("{prefix}{id}_{}", to_hex(&secret));
        Ok(IssuedSecret {
            digest: digest(&secret),
            id,
            secret,
        })
    }
}

/// SHA-256 (hex) of a whole secret, as stored.
pub fn digest(secret: &str) -> String {
    to_hex(&Sha256::digest(secret.as_bytes()))
}

/// The id and digest of a presented secret of this kind.
fn parse(presented: &str, prefix: &str) -> Option<(String, String)> {
    let rest = presented.strip_prefix(prefix)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && !secret.is_empty()).then(|| (id.to_string(), digest(presented)))
}

/// What a worker connection proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerAuth {
    /// The cluster (admin) token: may connect as any worker (kept for compatibility).
    ClusterToken,
    /// A join token not yet used up: may enrol one worker.
    JoinToken { id: String, digest: String },
    /// A worker credential: may connect only as the worker `name`.
    Credential { id: String, name: String },
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

/// Who the request to the worker endpoint is. The auth layer let it through either with
/// the cluster token (checked there) or with a secret of a worker's shape, checked here
/// against the replicated state.
pub fn authenticate(node: &Node, headers: &HeaderMap) -> Result<WorkerAuth, WorkerAuthError> {
    let Some(presented) = bearer(headers).filter(|p| is_worker_secret(p)) else {
        return Ok(WorkerAuth::ClusterToken);
    };
    if let Some((id, digest)) = parse(presented, CREDENTIAL_PREFIX) {
        let sm = node.state.read();
        return match sm.identities().credential(&id) {
            Some(c) if c.digest == digest => Ok(WorkerAuth::Credential {
                id,
                name: c.name.clone(),
            }),
            _ => Err(WorkerAuthError::UnknownCredential),
        };
    }
    if let Some((id, digest)) = parse(presented, JOIN_PREFIX) {
        let now = node.proposer.now();
        node.state
            .read()
            .identities()
            .check_token(now, &id, &digest)
            .map_err(WorkerAuthError::JoinToken)?;
        return Ok(WorkerAuth::JoinToken { id, digest });
    }
    Err(WorkerAuthError::UnknownCredential)
}

/// The cluster's task key, derived from the servers' shared peer token: every server of
/// a group holds the same one (the peer token is carried to a joining server like
/// today), so a new leader signs with the key the workers already know, and nothing new
/// has to be stored, copied or replicated. It is exactly as secret as the peer token,
/// which already lets its holder speak raft (and so decide anything).
pub fn task_signer(peer: &ClusterToken) -> TaskSigner {
    let mut h = Sha256::new();
    h.update(b"drover task signing key v1\n");
    h.update(peer.as_str().as_bytes());
    TaskSigner::from_seed(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_back_to_their_id_and_digest() {
        let s = IssuedSecret::new(JOIN_PREFIX).unwrap();
        assert!(is_worker_secret(&s.secret));
        assert_eq!(
            parse(&s.secret, JOIN_PREFIX),
            Some((s.id.clone(), s.digest.clone()))
        );
        assert_eq!(parse(&s.secret, CREDENTIAL_PREFIX), None);
        assert_eq!(parse("drover_join_short_x", JOIN_PREFIX), None);
        assert!(!is_worker_secret("0123abcd"));
        let t = IssuedSecret::new(JOIN_PREFIX).unwrap();
        assert_ne!(s.secret, t.secret);
    }

    #[test]
    fn the_task_key_depends_on_the_peer_token_only() {
        let a = task_signer(&ClusterToken::new("peer-a"));
        let again = task_signer(&ClusterToken::new("peer-a"));
        let b = task_signer(&ClusterToken::new("peer-b"));
        assert_eq!(a.public_hex(), again.public_hex());
        assert_ne!(a.public_hex(), b.public_hex());
    }
}
