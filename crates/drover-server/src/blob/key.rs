//! The name of a blob: `/`-separated segments of a safe alphabet.

use super::BlobError;

/// A checked key such as `output/12/1.stdout`. Every segment is non-empty, made of
/// ASCII letters, digits, `.`, `_` and `-`, and does not start with `.` (so neither `.`
/// nor `..`, nor a directory store's temporary file): such a key is
/// the same path in a directory and the same object name in S3, GCS and Azure, and
/// cannot climb out of the directory or prefix it is joined to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobKey(String);

/// Longer keys are refused (S3 allows 1024 bytes, including the prefix).
const MAX_KEY: usize = 512;

impl BlobKey {
    pub fn new(key: impl Into<String>) -> Result<BlobKey, BlobError> {
        let key = key.into();
        let bad = |reason| BlobError::BadKey {
            key: key.clone(),
            reason,
        };
        if key.is_empty() {
            return Err(bad("empty"));
        }
        if key.len() > MAX_KEY {
            return Err(bad("longer than 512 bytes"));
        }
        for segment in key.split('/') {
            if segment.is_empty() {
                return Err(bad("an empty segment (leading, trailing or double '/')"));
            }
            if segment.starts_with('.') {
                return Err(bad("a segment starting with '.'"));
            }
            let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
            if !segment.bytes().all(safe) {
                return Err(bad("a character other than A-Z a-z 0-9 . _ - /"));
            }
        }
        Ok(BlobKey(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_or_differ_between_backends_are_refused() {
        for good in ["output/1/1.stdout", "a", "checkpoints/7/3-x_y.bin"] {
            assert!(BlobKey::new(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/abs", ".hidden", "a/.tmp-x", "trail/", "a//b", "../up", "a/../b", "a/./b",
            "sp ace", "é", "a\\b",
        ] {
            assert!(BlobKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(BlobKey::new("x".repeat(513)).is_err());
    }
}
