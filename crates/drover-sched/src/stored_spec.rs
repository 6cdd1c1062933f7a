//! A task's spec as the core keeps it: shared where tasks share it.
//!
//! A million queued tasks must fit in about 1 GiB of server memory, and a `TaskSpec` is
//! over 600 bytes before its strings. The tasks of one job usually differ only in their
//! key, name and command (a generated job: `{"name": "t17", "command": [...]}` a
//! million times), so each such task keeps those three packed in one small allocation
//! and shares the rest, its *template*, with the tasks before it that have the same one.
//! The elements of an array (and the slots of a split) share one whole spec instead.

use drover_types::TaskSpec;
use std::borrow::Cow;
use std::sync::Arc;

/// A task's spec: `shared` alone, or `shared` as a template completed by the task's
/// own key, name and command.
#[derive(Clone, Debug)]
pub struct StoredSpec {
    /// The whole spec (`own` is `None`), or every field but key, name and command
    /// (left empty here), shared with the tasks that have the same.
    shared: Arc<TaskSpec>,
    /// Key, name and command packed (see [`pack`]); `None` for a whole spec.
    own: Option<Box<[u8]>>,
}

impl Default for StoredSpec {
    fn default() -> Self {
        StoredSpec::whole(Arc::new(TaskSpec::default()))
    }
}

impl StoredSpec {
    /// A spec kept whole, shared by whoever holds the `Arc` (an array's elements).
    pub(crate) fn whole(spec: Arc<TaskSpec>) -> StoredSpec {
        StoredSpec {
            shared: spec,
            own: None,
        }
    }

    /// Keeps `spec`: an array or a split whole (its elements share it); any other task
    /// as its own key, name and command over a template, which is `prev`'s when equal
    /// (consecutive tasks of a job usually share it: one comparison, no allocation).
    pub(crate) fn new(mut spec: TaskSpec, prev: Option<&StoredSpec>) -> StoredSpec {
        if spec.array.is_some() || spec.split.is_some() {
            return StoredSpec::whole(Arc::new(spec));
        }
        let own = pack(
            spec.key.take().as_deref(),
            &std::mem::take(&mut spec.name),
            &std::mem::take(&mut spec.command),
        );
        let shared = match prev {
            Some(p) if p.own.is_some() && *p.shared == spec => p.shared.clone(),
            _ => Arc::new(spec),
        };
        StoredSpec {
            shared,
            own: Some(own),
        }
    }

    /// Every field of the spec except `key`, `name` and `command`, which are empty here
    /// when the task has its own: read those with [`StoredSpec::key`],
    /// [`StoredSpec::name`] and [`StoredSpec::to_spec`].
    pub fn shared(&self) -> &TaskSpec {
        &self.shared
    }

    pub fn key(&self) -> Option<&str> {
        match &self.own {
            Some(own) => Packed(own).key(),
            None => self.shared.key.as_deref(),
        }
    }

    pub fn name(&self) -> &str {
        match &self.own {
            Some(own) => Packed(own).name(),
            None => &self.shared.name,
        }
    }

    /// The whole spec: borrowed when kept whole, put together otherwise.
    pub fn to_spec(&self) -> Cow<'_, TaskSpec> {
        let Some(own) = &self.own else {
            return Cow::Borrowed(&self.shared);
        };
        let p = Packed(own);
        let mut spec = (*self.shared).clone();
        spec.key = p.key().map(str::to_owned);
        spec.name = p.name().to_owned();
        spec.command = p.command().map(str::to_owned).collect();
        Cow::Owned(spec)
    }

    /// The same spec object: a whole spec shared by an array's elements (a task with
    /// its own fields is never the same as another).
    pub(crate) fn same_whole(&self, other: &StoredSpec) -> bool {
        self.own.is_none() && other.own.is_none() && Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether the template is shared with `other` (tests and the invariant checker).
    #[cfg(test)]
    pub(crate) fn shares_template_with(&self, other: &StoredSpec) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Heap bytes this task pays alone (its packed fields), for the memory notes.
    #[cfg(test)]
    pub(crate) fn own_bytes(&self) -> usize {
        self.own.as_ref().map_or(0, |o| o.len())
    }
}

/// Written and read as the whole spec (a JSON snapshot; the binary one goes through
/// `compact::specs`, which shares templates as it reads).
impl serde::Serialize for StoredSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_spec().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for StoredSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TaskSpec::deserialize(d).map(|spec| StoredSpec::new(spec, None))
    }
}

/// `[flags][len key][key][len name][name][count][len arg][arg]…`, lengths and the count
/// as LEB128; flag bit 0: a key is present. Strings are valid UTF-8 (they came from
/// `String`s), so reading them back cannot fail; a slice that does not parse (which
/// would be a bug here) reads as empty rather than panicking.
fn pack(key: Option<&str>, name: &str, command: &[String]) -> Box<[u8]> {
    let len = 1
        + key.map_or(0, |k| 5 + k.len())
        + 5
        + name.len()
        + 5
        + command.iter().map(|a| 5 + a.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(u8::from(key.is_some()));
    if let Some(k) = key {
        put_str(&mut out, k);
    }
    put_str(&mut out, name);
    put_len(&mut out, command.len());
    for a in command {
        put_str(&mut out, a);
    }
    out.into_boxed_slice()
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// A reader of packed fields.
struct Packed<'a>(&'a [u8]);

impl<'a> Packed<'a> {
    fn key(&self) -> Option<&'a str> {
        let (&flags, mut rest) = self.0.split_first()?;
        (flags & 1 == 1).then(|| take_str(&mut rest))
    }

    fn name(&self) -> &'a str {
        let mut rest = self.after_key();
        take_str(&mut rest)
    }

    fn command(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let mut rest = self.after_key();
        take_str(&mut rest);
        let n = take_len(&mut rest);
        (0..n).map(move |_| take_str(&mut rest))
    }

    fn after_key(&self) -> &'a [u8] {
        let Some((&flags, mut rest)) = self.0.split_first() else {
            return &[];
        };
        if flags & 1 == 1 {
            take_str(&mut rest);
        }
        rest
    }
}

fn take_len(rest: &mut &[u8]) -> usize {
    let mut n = 0usize;
    let mut shift = 0;
    while let Some((&b, tail)) = rest.split_first() {
        *rest = tail;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    n
}

fn take_str<'a>(rest: &mut &'a [u8]) -> &'a str {
    let n = take_len(rest).min(rest.len());
    let (s, tail) = rest.split_at(n);
    *rest = tail;
    std::str::from_utf8(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_types::ArraySpec;

    fn task(name: &str, key: Option<&str>, command: &[&str]) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            key: key.map(str::to_owned),
            owner: "alice".into(),
            priority: 3,
            ..TaskSpec::command(command.iter().copied())
        }
    }

    #[test]
    fn a_task_reads_back_whole_from_its_own_fields_and_template() {
        let long = "x".repeat(300);
        for spec in [
            task("t1", None, &["sleep", "1"]),
            task("", Some("k"), &["a"]),
            task("name é ü", Some("key-ü"), &["", &long, "\u{0}"]),
            task(&long, Some(&long), &[&long]),
        ] {
            let kept = StoredSpec::new(spec.clone(), None);
            assert_eq!(*kept.to_spec(), spec);
            assert_eq!(kept.key(), spec.key.as_deref());
            assert_eq!(kept.name(), spec.name);
            assert!(kept.shared().command.is_empty() && kept.shared().name.is_empty());
            assert_eq!(kept.shared().priority, 3);
        }
    }

    #[test]
    fn tasks_that_differ_in_key_name_and_command_share_a_template() {
        let a = StoredSpec::new(task("a", Some("a"), &["x", "1"]), None);
        let b = StoredSpec::new(task("b", None, &["y"]), Some(&a));
        assert!(b.shares_template_with(&a));
        assert!(b.own_bytes() <= 8, "{} bytes of its own", b.own_bytes());
        let mut other = task("c", None, &["y"]);
        other.priority = 4;
        let c = StoredSpec::new(other.clone(), Some(&b));
        assert!(!c.shares_template_with(&b));
        assert_eq!(*c.to_spec(), other);
    }

    #[test]
    fn an_array_is_kept_whole_and_shared_by_its_elements() {
        let mut spec = task("arr", Some("arr"), &["x"]);
        spec.array = Some(ArraySpec { start: 0, end: 9 });
        let kept = StoredSpec::new(spec.clone(), None);
        let element = kept.clone();
        assert!(kept.same_whole(&element));
        assert!(matches!(kept.to_spec(), Cow::Borrowed(_)));
        assert_eq!(kept.key(), Some("arr"));
        assert_eq!(*kept.to_spec(), spec);
        // A templated task is never "the same" as another, even a copy of itself.
        let t = StoredSpec::new(task("t", None, &["x"]), None);
        assert!(!t.same_whole(&t.clone()));
    }
}
