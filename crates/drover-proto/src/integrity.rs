//! Task integrity: what the leader signs in a start, and the digests a worker attaches to
//! what it reports.
//!
//! The leader signs the SHA-256 digest of every [`StartTask`] (everything but the
//! signature itself) with the cluster's ed25519 task key; the worker learns the public
//! half in its welcome and runs nothing whose signature does not verify. A worker that
//! can be talked to by something other than the leader (a proxy, a server of another
//! cluster that got hold of a worker credential) is thus still only ever made to run
//! what the cluster decided. Reports go the other way with plain digests: they guard
//! against a result or an output chunk being damaged or moved to another attempt on
//! the way, not against the worker itself (whose identity the credential proves).
//!
//! Pure: hashing and signatures only, no randomness (the key is given).

use crate::worker::{AttemptReport, StartTask};
use drover_types::{Attempt, TaskId, TaskSpec};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Why a signed start or a digest was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    #[error("the start carries no signature")]
    Unsigned,
    #[error("the start's signature is not {expected} hex digits")]
    MalformedSignature { expected: usize },
    #[error("the task key is not 64 hex digits, or not a valid ed25519 key")]
    MalformedKey,
    #[error(
        "the start's signature does not verify with the cluster's task key: it was changed on the way or not made by the leader"
    )]
    BadSignature,
}

/// The part of a start that is signed, in a fixed field order. JSON through serde is
/// deterministic for these types (no hash maps, no floats), so the worker, decoding the
/// start and encoding this again, gets the bytes the leader hashed.
#[derive(Serialize)]
struct SignedStart<'a> {
    task: TaskId,
    attempt: Attempt,
    spec: &'a TaskSpec,
    array_index: Option<u32>,
    array_count: Option<u32>,
    inputs: &'a [String],
    /// The checkpoint to restore: signed too, so that a start cannot be pointed at
    /// another task's checkpoint. Left out when none, so that starts without one hash
    /// as they always did.
    #[serde(skip_serializing_if = "Option::is_none")]
    resume: Option<&'a crate::checkpoint::CheckpointRef>,
    /// A split chunk's slice: signed, so that a chunk cannot be pointed at another
    /// part of the range. Left out when none (starts without one hash as before).
    #[serde(skip_serializing_if = "Option::is_none")]
    slice: Option<(u64, u64)>,
}

/// The SHA-256 digest of a start (all of it but its signature).
pub fn start_digest(start: &StartTask) -> [u8; 32] {
    let signed = SignedStart {
        task: start.task,
        attempt: start.attempt,
        spec: &start.spec,
        array_index: start.array_index,
        array_count: start.array_count,
        inputs: &start.inputs,
        resume: start.resume.as_ref(),
        slice: start.slice,
    };
    // Serializing plain data into a Vec cannot fail.
    let bytes = serde_json::to_vec(&signed).unwrap_or_default();
    Sha256::digest(&bytes).into()
}

/// The leader's half of the cluster's task key.
#[derive(Clone)]
pub struct TaskSigner {
    key: SigningKey,
}

impl std::fmt::Debug for TaskSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskSigner({})", self.public_hex())
    }
}

impl TaskSigner {
    /// The key of a 32-byte seed (the server derives it from the group's shared secret).
    pub fn from_seed(seed: [u8; 32]) -> TaskSigner {
        TaskSigner {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The public key, as sent in the welcome: 64 hex digits.
    pub fn public_hex(&self) -> String {
        to_hex(self.key.verifying_key().as_bytes())
    }

    /// Signs `start` in place.
    pub fn sign(&self, start: &mut StartTask) {
        let signature = self.key.sign(&start_digest(start));
        start.signature = to_hex(&signature.to_bytes());
    }
}

/// The worker's half: checks starts against the key its welcome named.
#[derive(Clone, Debug)]
pub struct TaskVerifier {
    key: VerifyingKey,
}

impl TaskVerifier {
    pub fn from_hex(public: &str) -> Result<TaskVerifier, IntegrityError> {
        let bytes: [u8; 32] = from_hex(public)
            .and_then(|b| b.try_into().ok())
            .ok_or(IntegrityError::MalformedKey)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| IntegrityError::MalformedKey)?;
        Ok(TaskVerifier { key })
    }

    pub fn verify(&self, start: &StartTask) -> Result<(), IntegrityError> {
        if start.signature.is_empty() {
            return Err(IntegrityError::Unsigned);
        }
        let bytes: [u8; 64] = from_hex(&start.signature)
            .and_then(|b| b.try_into().ok())
            .ok_or(IntegrityError::MalformedSignature { expected: 128 })?;
        let signature = Signature::from_bytes(&bytes);
        self.key
            .verify(&start_digest(start), &signature)
            .map_err(|_| IntegrityError::BadSignature)
    }
}

/// The digest of an attempt's report: its task, attempt and result (the only bulk in a
/// report), so that a result cannot be damaged or credited to another attempt unseen.
pub fn report_digest(task: TaskId, attempt: Attempt, result: &str) -> String {
    let mut h = Sha256::new();
    h.update(task.0.to_be_bytes());
    h.update(attempt.0.to_be_bytes());
    h.update(result.as_bytes());
    to_hex(&h.finalize())
}

impl AttemptReport {
    /// The report with its digest filled in (the worker does this as it sends it).
    pub fn sealed(mut self) -> AttemptReport {
        self.digest = report_digest(self.task, self.attempt, &self.result);
        self
    }

    /// Whether the digest matches the report (the server checks this).
    pub fn digest_matches(&self) -> bool {
        self.digest == report_digest(self.task, self.attempt, &self.result)
    }
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Hex (either case) to bytes; `None` for anything else.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_types::Outcome;

    fn start() -> StartTask {
        StartTask {
            task: TaskId(7),
            attempt: Attempt(2),
            spec: TaskSpec::command(["echo", "hi"]),
            array_index: Some(1),
            array_count: Some(3),
            slice: None,
            inputs: vec!["in".into()],
            signature: String::new(),
            resume: None,
        }
    }

    #[test]
    fn a_signed_start_verifies_after_a_trip_through_json() {
        let signer = TaskSigner::from_seed([9; 32]);
        let mut s = start();
        s.spec.env.insert("B".into(), "2".into());
        s.spec.env.insert("A".into(), "1".into());
        signer.sign(&mut s);
        let verifier = TaskVerifier::from_hex(&signer.public_hex()).unwrap();
        let text = serde_json::to_string(&s).unwrap();
        let back: StartTask = serde_json::from_str(&text).unwrap();
        assert_eq!(verifier.verify(&back), Ok(()));
    }

    #[test]
    fn a_tampered_unsigned_or_foreign_start_is_refused() {
        let signer = TaskSigner::from_seed([9; 32]);
        let verifier = TaskVerifier::from_hex(&signer.public_hex()).unwrap();
        let mut s = start();
        signer.sign(&mut s);
        let mut changed = s.clone();
        changed.spec = TaskSpec::command(["rm", "-rf", "/"]);
        assert_eq!(verifier.verify(&changed), Err(IntegrityError::BadSignature));
        let mut moved = s.clone();
        moved.attempt = Attempt(3);
        assert_eq!(verifier.verify(&moved), Err(IntegrityError::BadSignature));
        let mut flipped = s.clone();
        let first = if flipped.signature.starts_with('0') {
            "1"
        } else {
            "0"
        };
        flipped.signature.replace_range(0..1, first);
        assert_eq!(verifier.verify(&flipped), Err(IntegrityError::BadSignature));
        let mut unsigned = s.clone();
        unsigned.signature.clear();
        assert_eq!(verifier.verify(&unsigned), Err(IntegrityError::Unsigned));
        let mut short = s.clone();
        short.signature.truncate(10);
        assert!(matches!(
            verifier.verify(&short),
            Err(IntegrityError::MalformedSignature { .. })
        ));
        let other = TaskSigner::from_seed([8; 32]);
        let mut foreign = start();
        other.sign(&mut foreign);
        assert_eq!(verifier.verify(&foreign), Err(IntegrityError::BadSignature));
        assert!(TaskVerifier::from_hex("zz").is_err());
    }

    #[test]
    fn report_digests_bind_the_result_to_its_attempt() {
        let r = AttemptReport {
            task: TaskId(1),
            attempt: Attempt(1),
            outcome: Outcome::Exited { code: 0 },
            usage: Default::default(),
            result: "42\n".into(),
            stdout_bytes: 3,
            stderr_bytes: 0,
            output_truncated: false,
            digest: String::new(),
        };
        assert!(!r.digest_matches());
        let sealed = r.sealed();
        assert!(sealed.digest_matches());
        let mut changed = sealed.clone();
        changed.result = "43\n".into();
        assert!(!changed.digest_matches());
        let mut moved = sealed;
        moved.attempt = Attempt(2);
        assert!(!moved.digest_matches());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(to_hex(&[0, 255, 16]), "00ff10");
        assert_eq!(from_hex("00FF10"), Some(vec![0, 255, 16]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("0g"), None);
    }
}
