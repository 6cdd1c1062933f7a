//! The result cache's key: a SHA-256 over a canonical encoding of what decides a
//! task's result.
//!
//! Computed when the task becomes ready (its dependencies have succeeded), because
//! their results are the task's input (they arrive on its stdin) and so are part of
//! the key. Every field is written with its length first, so two different tasks can
//! never encode to the same bytes. The encoding is versioned: a change of what goes
//! in needs a new version string, which starts a fresh cache.

use drover_types::{CacheSpec, TaskSpec};
use sha2::{Digest, Sha256};

const VERSION: &[u8] = b"drover result cache key v2";

/// What the key of one task is made of, beside its spec.
pub struct KeyInputs<'a> {
    pub spec: &'a TaskSpec,
    pub cache: &'a CacheSpec,
    /// For an element of an array: its index and the array's length (the task sees
    /// them in its environment).
    pub array: Option<(u32, u32)>,
    /// The results of the task's dependencies, in order.
    pub dep_results: &'a [&'a str],
}

/// The key as 64 hex digits. The task's owner always goes in, so entries are never
/// shared across namespaces.
pub fn cache_key(inputs: &KeyInputs<'_>) -> String {
    let mut h = Fields(Sha256::new());
    h.bytes(VERSION);
    // Entries never cross owners (namespaces): a result is only shared with tasks of
    // the owner whose task made it.
    h.str(&inputs.spec.owner);
    h.str(&inputs.cache.salt);
    if let Some(user) = &inputs.cache.key {
        // The user's own key names the result: nothing else goes in.
        h.str("user key");
        h.str(user);
        return hex(&h.0.finalize());
    }
    let spec = inputs.spec;
    h.str("derived");
    h.list(spec.command.iter().map(String::as_str));
    h.u64(spec.shell as u64);
    h.u64(spec.env.len() as u64);
    for (k, v) in &spec.env {
        h.str(k);
        h.str(v);
    }
    // Secret values change results too; their digest goes in, never the value, so
    // nothing derived from the key's input holds a secret.
    h.u64(spec.secret_env.len() as u64);
    for (k, v) in &spec.secret_env {
        h.str(k);
        h.bytes(&Sha256::digest(v.expose().as_bytes()));
    }
    h.str(spec.workdir.as_deref().unwrap_or(""));
    h.list(spec.inputs.iter().map(String::as_str));
    // Resources that change results, not those that change only speed: GPUs (their
    // count here; their type is chosen by constraints, which go in next).
    h.u64(spec.resources.gpus as u64);
    h.u64(spec.constraints.len() as u64);
    for c in &spec.constraints {
        h.str(&c.to_string());
    }
    // The driver and the container image: a different image is a different result.
    h.str(
        spec.driver
            .as_deref()
            .unwrap_or(drover_types::PROCESS_DRIVER),
    );
    h.str(spec.image.as_deref().unwrap_or(""));
    match inputs.array {
        Some((index, count)) => {
            h.u64(1);
            h.u64(index as u64);
            h.u64(count as u64);
        }
        None => h.u64(0),
    }
    h.list(inputs.dep_results.iter().copied());
    hex(&h.0.finalize())
}

/// Length-prefixed writes into the hash.
struct Fields(Sha256);

impl Fields {
    fn bytes(&mut self, b: &[u8]) {
        self.0.update((b.len() as u64).to_le_bytes());
        self.0.update(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn u64(&mut self, n: u64) {
        self.0.update(n.to_le_bytes());
    }
    fn list<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) {
        self.u64(items.len() as u64);
        for s in items {
            self.str(s);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(spec: &TaskSpec, deps: &[&str]) -> String {
        cache_key(&KeyInputs {
            spec,
            cache: spec.cache.as_ref().unwrap(),
            array: None,
            dep_results: deps,
        })
    }

    fn cached(args: &[&str]) -> TaskSpec {
        TaskSpec {
            cache: Some(CacheSpec::default()),
            ..TaskSpec::command(args.iter().copied())
        }
    }

    #[test]
    fn what_decides_the_result_changes_the_key() {
        let base = cached(&["echo", "a"]);
        let k = key(&base, &[]);
        assert_eq!(k.len(), 64);
        assert_eq!(k, key(&base.clone(), &[]), "deterministic");
        // Fields that are not part of the result do not change it.
        let mut renamed = base.clone();
        renamed.name = "other".into();
        renamed.priority = 9;
        assert_eq!(k, key(&renamed, &[]));
        // Boundaries between arguments matter.
        assert_ne!(key(&cached(&["echo a"]), &[]), k);
        assert_ne!(key(&cached(&["echo", "b"]), &[]), k);
        let mut env = base.clone();
        env.env.insert("A".into(), "1".into());
        assert_ne!(key(&env, &[]), k);
        let mut secret = base.clone();
        secret
            .secret_env
            .insert("S".into(), drover_types::SecretString::new("x"));
        let mut secret2 = secret.clone();
        secret2
            .secret_env
            .insert("S".into(), drover_types::SecretString::new("y"));
        assert_ne!(key(&secret, &[]), key(&secret2, &[]));
        let mut salted = base.clone();
        salted.cache.as_mut().unwrap().salt = "v2".into();
        assert_ne!(key(&salted, &[]), k);
        let mut gpu = base.clone();
        gpu.resources.gpus = 1;
        assert_ne!(key(&gpu, &[]), k);
        assert_ne!(key(&base, &["x"]), k);
        assert_ne!(key(&base, &["x", ""]), key(&base, &["x"]));
    }

    #[test]
    fn a_user_key_names_the_result_whatever_the_command() {
        let mut a = cached(&["echo", "a"]);
        a.cache.as_mut().unwrap().key = Some("k".into());
        let mut b = cached(&["echo", "b"]);
        b.cache.as_mut().unwrap().key = Some("k".into());
        assert_eq!(key(&a, &[]), key(&b, &["dep"]));
        b.cache.as_mut().unwrap().salt = "s".into();
        assert_ne!(key(&a, &[]), key(&b, &[]));
        let mut other_owner = a.clone();
        other_owner.owner = "team-b".into();
        assert_ne!(key(&a, &[]), key(&other_owner, &[]));
    }
}
