//! The web UI's session cookie: `drover_session=<expiry>.<token>.<mac>`.
//!
//! The value is an HMAC-SHA256, keyed by the cluster token, of the expiry time and of
//! the credential the login was made with (`0` for the cluster token, else the id of
//! the ACL token; the auth layer takes the role from that token's record at every
//! request, so a session ends when its token is revoked or expires). So the
//! server keeps no session table (every server of a group, sharing the token, accepts
//! the cookie, and a restart logs nobody out), the cookie expires by itself, and it is
//! not the token: a leaked cookie cannot connect a worker nor be used as a bearer
//! token, and it stops working when the token is changed.

use crate::auth::ClusterToken;
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// The cookie's name.
pub const COOKIE: &str = "drover_session";

/// How long a login lasts, in seconds (12 hours: a working day, not a week).
pub const LIFETIME_SECS: u64 = 12 * 3600;

/// Makes and checks session values for one cluster token.
#[derive(Clone)]
pub struct SessionKey {
    token: ClusterToken,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(…)")
    }
}

impl SessionKey {
    pub fn new(token: ClusterToken) -> SessionKey {
        SessionKey { token }
    }

    /// A fresh session value for `holder`, valid for [`LIFETIME_SECS`] from `now_secs`.
    pub fn issue(&self, now_secs: u64, holder: SessionHolder) -> String {
        let expiry = now_secs + LIFETIME_SECS;
        let token = holder.number();
        format!("{expiry}.{token}.{}", self.mac(expiry, token))
    }

    /// Who holds `value`, if it is a session this key issued that has not expired at
    /// `now_secs`.
    pub fn verify(&self, value: &str, now_secs: u64) -> Option<SessionHolder> {
        let mut parts = value.splitn(3, '.');
        let (expiry, token, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let expiry = expiry.parse::<u64>().ok()?;
        let token = token.parse::<u64>().ok()?;
        if expiry <= now_secs || expiry > now_secs + LIFETIME_SECS {
            return None;
        }
        let want = self.mac(expiry, token);
        // Compared in time independent of where the strings differ.
        let same = want.len() == mac.len()
            && want
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then_some(match token {
            0 => SessionHolder::Cluster,
            id => SessionHolder::Token(id),
        })
    }

    /// HMAC-SHA256 (RFC 2104) of the expiry and the holder, hex.
    fn mac(&self, expiry: u64, token: u64) -> String {
        const BLOCK: usize = 64;
        let mut key = [0u8; BLOCK];
        let secret = self.token.as_str().as_bytes();
        if secret.len() > BLOCK {
            key[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            key[..secret.len()].copy_from_slice(secret);
        }
        let pad = |byte: u8| key.map(|k| k ^ byte);
        let mut inner = Sha256::new();
        inner.update(pad(0x36));
        inner.update(format!("drover-ui-session\n{expiry}\n{token}").as_bytes());
        let mut outer = Sha256::new();
        outer.update(pad(0x5c));
        outer.update(inner.finalize());
        outer
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The credential a session was opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionHolder {
    Cluster,
    /// A client ACL token, by id.
    Token(u64),
}

impl SessionHolder {
    fn number(self) -> u64 {
        match self {
            SessionHolder::Cluster => 0,
            SessionHolder::Token(id) => id,
        }
    }
}

/// Seconds since the Unix epoch (wall clock: cookie expiry is a wall-clock notion).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The value of the session cookie in a `Cookie` header, if any.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE).then_some(value.trim())
    })
}

/// The `Set-Cookie` value for a session (or, with `None`, one that clears it).
/// `secure` adds `Secure`: set when the server speaks TLS.
pub fn set_cookie(value: Option<&str>, secure: bool) -> String {
    let (value, age) = match value {
        Some(v) => (v, LIFETIME_SECS),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_sessions_verify_until_they_expire() {
        let key = SessionKey::new(ClusterToken::new("secret"));
        let s = key.issue(1000, SessionHolder::Cluster);
        assert_eq!(key.verify(&s, 1000), Some(SessionHolder::Cluster));
        assert!(key.verify(&s, 1000 + LIFETIME_SECS - 1).is_some());
        assert!(key.verify(&s, 1000 + LIFETIME_SECS).is_none());
        // Another token's key refuses it; so does a tampered expiry, holder or MAC.
        assert!(
            SessionKey::new(ClusterToken::new("other"))
                .verify(&s, 1000)
                .is_none()
        );
        let mut parts = s.splitn(3, '.');
        let (exp, _, mac) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let later = exp.parse::<u64>().unwrap() + 100;
        assert!(key.verify(&format!("{later}.0.{mac}"), 1000).is_none());
        assert!(
            key.verify(&format!("{exp}.0.{}", &mac[1..]), 1000)
                .is_none()
        );
        // A session of the cluster token cannot be turned into one of a token, nor back.
        assert!(key.verify(&format!("{exp}.7.{mac}"), 1000).is_none());
        let t = key.issue(1000, SessionHolder::Token(7));
        assert_eq!(key.verify(&t, 1000), Some(SessionHolder::Token(7)));
        assert!(key.verify(&t.replacen(".7.", ".0.", 1), 1000).is_none());
        assert!(key.verify("secret", 1000).is_none());
        assert!(key.verify("", 1000).is_none());
    }

    #[test]
    fn cookie_header_is_parsed_and_set_cookie_is_strict() {
        assert_eq!(
            from_cookie_header("a=1; drover_session=9.ab ; b=2"),
            Some("9.ab")
        );
        assert_eq!(from_cookie_header("drover_sessionx=1"), None);
        let c = set_cookie(Some("v"), false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"));
        assert!(!c.contains("Secure"));
        assert!(set_cookie(Some("v"), true).ends_with("; Secure"));
        assert!(set_cookie(None, false).contains("Max-Age=0"));
    }
}
