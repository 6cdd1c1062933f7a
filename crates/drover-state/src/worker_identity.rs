//! Worker identities in the replicated state: join tokens and worker credentials.
//!
//! Only digests are kept (SHA-256 of the secret, computed by the server that saw the
//! secret): the log, snapshots and every server's disk hold nothing a worker could
//! present. A join token is consumed by applying an enrolment, so two servers (or two
//! workers racing on one server) can never both use one use of it: the log orders them
//! and the second finds it spent. Expiry is judged on the entry's time, like every
//! other timer.

use drover_types::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest a join token may live (a forgotten token must not stay usable for ever).
pub const MAX_JOIN_TOKEN_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
/// The most uses one join token may have.
pub const MAX_JOIN_TOKEN_USES: u32 = 1000;

/// A join token: an admin's permission for `uses` more workers to join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    /// SHA-256 (hex) of the token's secret.
    pub digest: String,
    pub created: Millis,
    pub expires: Millis,
    pub uses_left: u32,
}

/// A worker's credential, bound to its name (and through it to its worker id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    pub name: String,
    /// SHA-256 (hex) of the credential's secret.
    pub digest: String,
    /// The join token it was issued for.
    pub join_token: String,
    pub issued: Millis,
}

/// Why an enrolment or a revocation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no such join token (it was never issued, or has expired and was forgotten)")]
    UnknownToken,
    #[error("the join token has expired")]
    Expired,
    #[error("the join token has been used up")]
    UsedUp,
    #[error("a join token or credential with id {0} exists already")]
    DuplicateId(String),
    #[error(
        "the worker {0:?} has a credential already: revoke it first (drover worker revoke {0})"
    )]
    NameTaken(String),
    #[error("no worker credential for {0:?}")]
    UnknownCredential(String),
}

/// Every join token and worker credential of the cluster, by id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerIdentities {
    tokens: BTreeMap<String, JoinTokenRecord>,
    credentials: BTreeMap<String, CredentialRecord>,
}

impl WorkerIdentities {
    pub fn tokens(&self) -> impl Iterator<Item = (&str, &JoinTokenRecord)> {
        self.tokens.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn credentials(&self) -> impl Iterator<Item = (&str, &CredentialRecord)> {
        self.credentials.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn token(&self, id: &str) -> Option<&JoinTokenRecord> {
        self.tokens.get(id)
    }

    pub fn credential(&self, id: &str) -> Option<&CredentialRecord> {
        self.credentials.get(id)
    }

    /// The credential bound to a worker name, if any.
    pub fn credential_of(&self, name: &str) -> Option<(&str, &CredentialRecord)> {
        self.credentials().find(|(_, c)| c.name == name)
    }

    /// Forgets join tokens that expired (they could not be used anyway): the table stays
    /// as small as the tokens an admin has live.
    pub fn expire(&mut self, now: Millis) {
        self.tokens.retain(|_, t| t.expires > now);
    }

    pub fn create_token(
        &mut self,
        now: Millis,
        id: &str,
        digest: &str,
        ttl_ms: u64,
        uses: u32,
    ) -> Result<(), IdentityError> {
        if self.tokens.contains_key(id) || self.credentials.contains_key(id) {
            return Err(IdentityError::DuplicateId(id.to_string()));
        }
        self.tokens.insert(
            id.to_string(),
            JoinTokenRecord {
                digest: digest.to_string(),
                created: now,
                expires: now.saturating_add(ttl_ms.min(MAX_JOIN_TOKEN_TTL_MS)),
                uses_left: uses.clamp(1, MAX_JOIN_TOKEN_USES),
            },
        );
        Ok(())
    }

    /// Whether the token would be accepted now (the session checks before it upgrades;
    /// the enrolment decides).
    pub fn check_token(&self, now: Millis, id: &str, digest: &str) -> Result<(), IdentityError> {
        let token = self.tokens.get(id).ok_or(IdentityError::UnknownToken)?;
        if token.digest != digest {
            return Err(IdentityError::UnknownToken);
        }
        if token.expires <= now {
            return Err(IdentityError::Expired);
        }
        if token.uses_left == 0 {
            return Err(IdentityError::UsedUp);
        }
        Ok(())
    }

    /// Uses one use of a join token to bind a new credential to `name`.
    pub fn enroll(
        &mut self,
        now: Millis,
        token_id: &str,
        token_digest: &str,
        name: &str,
        credential_id: &str,
        credential_digest: &str,
    ) -> Result<(), IdentityError> {
        self.check_token(now, token_id, token_digest)?;
        if self.credential_of(name).is_some() {
            return Err(IdentityError::NameTaken(name.to_string()));
        }
        if self.tokens.contains_key(credential_id) || self.credentials.contains_key(credential_id) {
            return Err(IdentityError::DuplicateId(credential_id.to_string()));
        }
        if let Some(t) = self.tokens.get_mut(token_id) {
            t.uses_left -= 1;
        }
        self.credentials.insert(
            credential_id.to_string(),
            CredentialRecord {
                name: name.to_string(),
                digest: credential_digest.to_string(),
                join_token: token_id.to_string(),
                issued: now,
            },
        );
        Ok(())
    }

    /// Revokes the credential of the worker `name` (or with this credential id).
    pub fn revoke(&mut self, name: &str) -> Result<String, IdentityError> {
        let id = match self.credential_of(name) {
            Some((id, _)) => id.to_string(),
            None if self.credentials.contains_key(name) => name.to_string(),
            None => return Err(IdentityError::UnknownCredential(name.to_string())),
        };
        self.credentials.remove(&id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_used_once_and_expires() {
        let mut ids = WorkerIdentities::default();
        ids.create_token(Millis(1000), "t1", "d1", 5000, 1).unwrap();
        assert_eq!(
            ids.enroll(Millis(1500), "t1", "wrong", "w", "c1", "x"),
            Err(IdentityError::UnknownToken)
        );
        ids.enroll(Millis(1500), "t1", "d1", "w", "c1", "x")
            .unwrap();
        assert_eq!(ids.credential_of("w").unwrap().0, "c1");
        assert_eq!(
            ids.enroll(Millis(1600), "t1", "d1", "v", "c2", "y"),
            Err(IdentityError::UsedUp)
        );
        ids.create_token(Millis(1000), "t2", "d2", 5000, 3).unwrap();
        assert_eq!(
            ids.enroll(Millis(1700), "t2", "d2", "w", "c3", "y"),
            Err(IdentityError::NameTaken("w".into()))
        );
        assert_eq!(
            ids.enroll(Millis(6000), "t2", "d2", "v", "c3", "y"),
            Err(IdentityError::Expired)
        );
        ids.expire(Millis(6000));
        assert_eq!(ids.tokens().count(), 0);
        assert_eq!(ids.revoke("w"), Ok("c1".into()));
        assert_eq!(
            ids.revoke("w"),
            Err(IdentityError::UnknownCredential("w".into()))
        );
    }
}
