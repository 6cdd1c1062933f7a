//! Client ACL tokens, as the replicated state holds them.
//!
//! A token is created and revoked through the log (`Command::TokenCreate`,
//! `Command::TokenRevoke`), so every server of a group knows every token, and they
//! survive restarts and snapshots. Only a SHA-256 of the secret is held: the secret is
//! shown once, to whoever created it, and never enters the log. The server finds a
//! presented token's record by the id written in the secret (`drv_<id>_<secret>`), so
//! checking one costs a map lookup and one hash, never a scan.

use drover_types::{JobId, Millis, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One client token. Revoked tokens are kept (listed as revoked), so an id is never
/// given twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: u64,
    /// A label for people (`ci`, `alice`); may be empty.
    pub name: String,
    pub role: Role,
    /// When set, the token submits with this owner forced and sees only tasks of this
    /// owner.
    pub namespace: Option<String>,
    /// The log's time (Unix milliseconds, the leader's clock) of its creation.
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    /// SHA-256 of the secret part.
    pub hash: [u8; 32],
}

impl TokenRecord {
    /// Whether the token may be used at `now` (Unix milliseconds).
    pub fn usable_at(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// The tokens, and which token submitted each job (for "cancel own").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenTable {
    tokens: BTreeMap<u64, TokenRecord>,
    submitters: BTreeMap<JobId, u64>,
}

/// The table as written into a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSnapshot {
    pub tokens: Vec<TokenRecord>,
    pub submitters: Vec<(JobId, u64)>,
}

/// What a `TokenCreate` command asks for (the id and times are the log's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Lifetime from the entry's time; none: until revoked.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    pub hash: [u8; 32],
}

impl TokenTable {
    pub fn get(&self, id: u64) -> Option<&TokenRecord> {
        self.tokens.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TokenRecord> {
        self.tokens.values()
    }

    /// The token that submitted `job`, if a token did (not the cluster token).
    pub fn submitter(&self, job: JobId) -> Option<u64> {
        self.submitters.get(&job).copied()
    }

    pub(crate) fn create(&mut self, now: Millis, new: &NewToken) -> u64 {
        // Ids are never reused: revoked records stay.
        let id = self.tokens.keys().next_back().map_or(1, |last| last + 1);
        self.tokens.insert(
            id,
            TokenRecord {
                id,
                name: new.name.clone(),
                role: new.role,
                namespace: new.namespace.clone(),
                created_at: now,
                expires_at: new.ttl_ms.map(|ttl| now.saturating_add(ttl)),
                revoked_at: None,
                hash: new.hash,
            },
        );
        id
    }

    /// Marks a token revoked (once: a second revocation keeps the first time).
    /// `false` if there is no such token.
    pub(crate) fn revoke(&mut self, now: Millis, id: u64) -> bool {
        match self.tokens.get_mut(&id) {
            Some(t) => {
                t.revoked_at.get_or_insert(now);
                true
            }
            None => false,
        }
    }

    pub(crate) fn record_submitter(&mut self, job: JobId, token: u64) {
        self.submitters.insert(job, token);
    }

    pub(crate) fn forget_job(&mut self, job: JobId) {
        self.submitters.remove(&job);
    }

    pub(crate) fn snapshot(&self) -> TokenSnapshot {
        TokenSnapshot {
            tokens: self.tokens.values().cloned().collect(),
            submitters: self.submitters.iter().map(|(j, t)| (*j, *t)).collect(),
        }
    }

    pub(crate) fn restore(s: TokenSnapshot) -> TokenTable {
        TokenTable {
            tokens: s.tokens.into_iter().map(|t| (t.id, t)).collect(),
            submitters: s.submitters.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(role: Role, ttl_ms: Option<u64>) -> NewToken {
        NewToken {
            name: "t".into(),
            role,
            namespace: None,
            ttl_ms,
            hash: [7; 32],
        }
    }

    #[test]
    fn ids_are_never_reused_and_revocation_and_expiry_end_use() {
        let mut t = TokenTable::default();
        let a = t.create(Millis(1000), &new(Role::Read, None));
        let b = t.create(Millis(1000), &new(Role::Admin, Some(500)));
        assert_eq!((a, b), (1, 2));
        assert!(t.get(a).unwrap().usable_at(Millis(10_000)));
        assert!(t.get(b).unwrap().usable_at(Millis(1499)));
        assert!(!t.get(b).unwrap().usable_at(Millis(1500)));
        assert!(t.revoke(Millis(2000), a));
        assert!(t.revoke(Millis(3000), a));
        assert_eq!(t.get(a).unwrap().revoked_at, Some(Millis(2000)));
        assert!(!t.get(a).unwrap().usable_at(Millis(2001)));
        assert!(!t.revoke(Millis(3000), 99));
        let c = t.create(Millis(4000), &new(Role::Submit, None));
        assert_eq!(c, 3);
        t.record_submitter(JobId(5), c);
        let back = TokenTable::restore(t.snapshot());
        assert_eq!(back, t);
        assert_eq!(back.submitter(JobId(5)), Some(3));
    }
}
