//! The secret of a client ACL token: `drv_<id>_<64 hex digits>`.
//!
//! The id in front lets the server find the token's record with one map lookup (no
//! scan, no hashing of every record); the random part is 32 bytes from the OS. Only its
//! SHA-256 is stored (in the replicated state), and a presented secret is checked by
//! hashing it and comparing the digests in constant time.

use sha2::{Digest, Sha256};

/// How every client token starts.
pub const PREFIX: &str = "drv_";
const RANDOM_BYTES: usize = 32;

/// A freshly made secret, before its token has an id: the random part and its hash.
pub struct NewSecret {
    random: String,
    pub hash: [u8; 32],
}

impl NewSecret {
    pub fn generate() -> Result<NewSecret, getrandom::Error> {
        let mut bytes = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut bytes)?;
        let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let hash = digest(&random);
        Ok(NewSecret { random, hash })
    }

    /// The whole secret the client keeps, once the log has given the token its id.
    pub fn reveal(&self, id: u64) -> String {
        format!("{PREFIX}{id}_{}", self.random)
    }
}

/// A presented credential that has the shape of an ACL token.
#[derive(Debug, PartialEq, Eq)]
pub struct PresentedSecret<'a> {
    pub id: u64,
    random: &'a str,
}

/// How a bearer credential reads.
#[derive(Debug, PartialEq, Eq)]
pub enum Shape<'a> {
    /// `drv_<id>_<hex>`.
    Acl(PresentedSecret<'a>),
    /// Starts like an ACL token but is not one (a truncated copy, a typo).
    Malformed,
    /// Anything else: perhaps the cluster token.
    Other,
}

pub fn parse(presented: &str) -> Shape<'_> {
    let Some(rest) = presented.strip_prefix(PREFIX) else {
        return Shape::Other;
    };
    let Some((id_text, random)) = rest.split_once('_') else {
        return Shape::Malformed;
    };
    // Digits only, no leading zero: one spelling per id.
    if id_text.starts_with('0') || !id_text.bytes().all(|b| b.is_ascii_digit()) {
        return Shape::Malformed;
    }
    let Ok(id) = id_text.parse::<u64>() else {
        return Shape::Malformed;
    };
    if random.len() != RANDOM_BYTES * 2 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Shape::Malformed;
    }
    Shape::Acl(PresentedSecret { id, random })
}

impl PresentedSecret<'_> {
    /// Whether this secret hashes to `stored`, compared in constant time.
    pub fn matches(&self, stored: &[u8; 32]) -> bool {
        let got = digest(self.random);
        got.iter()
            .zip(stored)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn digest(random: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"drover-acl-token\n");
    h.update(random.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_parses_back_and_matches_only_its_hash() {
        let s = NewSecret::generate().unwrap();
        let text = s.reveal(42);
        assert!(
            text.starts_with("drv_42_") && text.len() == 7 + 64,
            "{text}"
        );
        let Shape::Acl(p) = parse(&text) else {
            panic!("{text} does not parse")
        };
        assert_eq!(p.id, 42);
        assert!(p.matches(&s.hash));
        let other = NewSecret::generate().unwrap();
        assert!(!p.matches(&other.hash));
    }

    #[test]
    fn near_misses_are_malformed_and_other_tokens_are_other() {
        let good = NewSecret::generate().unwrap().reveal(7);
        assert!(matches!(parse(&good), Shape::Acl(_)));
        assert_eq!(parse(&good[..good.len() - 1]), Shape::Malformed);
        assert_eq!(parse("drv_7"), Shape::Malformed);
        assert_eq!(parse(&good.replace("drv_7_", "drv_x_")), Shape::Malformed);
        assert_eq!(parse(&good.replace("drv_7_", "drv_0_")), Shape::Malformed);
        assert_eq!(parse(&good.replace("drv_7_", "drv_07_")), Shape::Malformed);
        assert_eq!(
            parse(&format!("{}g", &good[..good.len() - 1])),
            Shape::Malformed
        );
        assert_eq!(parse("0123abcd"), Shape::Other);
        assert_eq!(parse(""), Shape::Other);
    }
}
