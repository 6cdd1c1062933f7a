//! The workspace's dependencies keep to the layering, and none is declared unused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every crate's `[dependencies]` names.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(crates_dir()).unwrap().flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let name = doc["package"]["name"].as_str().unwrap().to_string();
        let deps = doc
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        all.insert(name, deps);
    }
    all
}

/// The pure crates, lowest first: each may depend only on those before it.
const LAYERS: &[&str] = &[
    "drover-types",
    "drover-sched",
    "drover-proto",
    "drover-state",
];

#[test]
fn the_pure_crates_depend_only_on_lower_layers() {
    let deps = dependencies();
    for (i, krate) in LAYERS.iter().enumerate() {
        for d in &deps[*krate] {
            if !d.starts_with("drover-") {
                continue;
            }
            let allowed = &LAYERS[..i];
            // The wire formats are below the core's scheduling decisions.
            let allowed: Vec<&str> = if *krate == "drover-proto" {
                vec!["drover-types"]
            } else {
                allowed.to_vec()
            };
            assert!(
                allowed.contains(&d.as_str()),
                "{krate} depends on {d}: it may depend only on {allowed:?}"
            );
        }
    }
}

/// Declared, unused, and left for now because work in flight may use them; the test
/// fails as soon as one of them is used or dropped, so this list stays true.
const KNOWN_UNUSED: &[(&str, &str)] = &[("drover-worker", "serde")];

fn source_text(krate_dir: &Path) -> String {
    let mut text = String::new();
    let mut dirs = vec![krate_dir.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let file = std::fs::read_to_string(&p).unwrap();
                // A module compiled from another crate's file (`#[path = "…"]`) uses
                // that file's dependencies too.
                for included in file.split("#[path = \"").skip(1) {
                    if let Some((rel, _)) = included.split_once('"') {
                        let at = p.parent().unwrap().join(rel);
                        text.push_str(&std::fs::read_to_string(&at).unwrap_or_default());
                        text.push('\n');
                    }
                }
                text.push_str(&file);
                text.push('\n');
            }
        }
    }
    text
}

fn uses(source: &str, dep: &str) -> bool {
    let ident = dep.replace('-', "_");
    source.match_indices(&ident).any(|(i, _)| {
        let before = source[..i].chars().next_back();
        let after = source[i + ident.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}

#[test]
fn every_declared_dependency_is_used() {
    let mut unused = Vec::new();
    for entry in std::fs::read_dir(crates_dir()).unwrap().flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let name = doc["package"]["name"].as_str().unwrap().to_string();
        let source = source_text(&entry.path());
        let Some(deps) = doc.get("dependencies").and_then(|d| d.as_table()) else {
            continue;
        };
        for dep in deps.keys() {
            let known = KNOWN_UNUSED.contains(&(name.as_str(), dep.as_str()));
            match (uses(&source, dep), known) {
                (false, false) => unused.push(format!("{name}: {dep}")),
                (true, true) => panic!("{name} uses {dep} now: take it off KNOWN_UNUSED"),
                _ => {}
            }
        }
    }
    for (krate, dep) in KNOWN_UNUSED {
        assert!(
            dependencies()[*krate].iter().any(|d| d == dep),
            "{krate} no longer declares {dep}: take it off KNOWN_UNUSED"
        );
    }
    assert!(unused.is_empty(), "declared but unused: {unused:?}");
}
