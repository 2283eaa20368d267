//! The node crate's modules are layers (`src/lib.rs`, ARCHITECTURE.md): a module uses
//! only the modules after it in [`ORDER`], so there is no import cycle between them and a
//! reader can learn the crate from the bottom up. Inside a folder module, the files do
//! not form a cycle either. This test reads the sources and fails on any reference that
//! goes up, on a module missing from the order, and on a cycle inside a folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom. Each group is a layer, named for ARCHITECTURE.md; within a group, too,
/// a module may use only those after it.
const ORDER: &[(&str, &[&str])] = &[
    ("edge", &["server", "http", "state", "datadir", "config"]),
    ("services", &["consensus", "ingest"]),
    ("infrastructure", &["cache", "limit", "peers", "redis_link"]),
    (
        "foundation",
        &[
            "problem", "trace_id", "events", "metrics", "log_sink", "clock", "faults",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The source without line comments (doc comments name modules freely).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segments after each `prefix` in `code`: `crate::a::b` and
/// `crate::{a, b::c}` give `a` (and `b`).
fn segments_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(is_ident) {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| is_ident(*c)).collect();
                if !name.is_empty() && name != "self" {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Each top-level module and the files it is made of.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(src()).expect("src/") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a UTF-8 name")
            .to_owned();
        if path.is_dir() {
            out.insert(name, rs_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            out.insert(name, vec![path]);
        }
    }
    out
}

fn rs_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a module folder") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rs_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// References that do not go down `order` (module, the module it uses), and the modules
/// of `graph` that `order` does not list.
fn violations(
    order: &[&str],
    graph: &BTreeMap<String, BTreeSet<String>>,
) -> (Vec<(String, String)>, Vec<String>) {
    let rank = |m: &str| order.iter().position(|o| *o == m);
    let mut upward = Vec::new();
    let mut unlisted = Vec::new();
    for (module, uses) in graph {
        let Some(r) = rank(module) else {
            unlisted.push(module.clone());
            continue;
        };
        for used in uses {
            if rank(used).is_some_and(|u| u <= r) {
                upward.push((module.clone(), used.clone()));
            }
        }
    }
    (upward, unlisted)
}

/// A cycle of `graph`, if it has one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let order: Vec<&str> = ORDER.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let mods = modules();
    let graph: BTreeMap<String, BTreeSet<String>> = mods
        .iter()
        .map(|(name, files)| {
            let uses = files
                .iter()
                .flat_map(|f| segments_after(&code_of(f), "crate::"))
                .filter(|u| u != name && mods.contains_key(u))
                .collect();
            (name.clone(), uses)
        })
        .collect();
    let (upward, unlisted) = violations(&order, &graph);
    assert!(
        unlisted.is_empty(),
        "modules missing from ORDER in tests/layers.rs: {unlisted:?}"
    );
    assert!(
        upward.is_empty(),
        "references that go up the layers (module, what it uses): {upward:?}"
    );
    let missing: Vec<&&str> = order.iter().filter(|m| !mods.contains_key(**m)).collect();
    assert!(
        missing.is_empty(),
        "ORDER names modules that do not exist: {missing:?}"
    );
}

#[test]
fn the_files_of_a_folder_module_form_no_cycle() {
    for (folder, files) in modules() {
        if files.len() < 2 {
            continue;
        }
        let child = |f: &PathBuf| {
            f.file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_owned)
                .expect("a UTF-8 name")
        };
        let children: BTreeSet<String> = files.iter().map(child).filter(|c| c != "mod").collect();
        let prefix = format!("crate::{folder}::");
        let graph: BTreeMap<String, BTreeSet<String>> = files
            .iter()
            .filter(|f| child(f) != "mod")
            .map(|f| {
                let code = code_of(f);
                let uses = segments_after(&code, "super::")
                    .into_iter()
                    .chain(segments_after(&code, &prefix))
                    .filter(|u| *u != child(f) && children.contains(u))
                    .collect();
                (child(f), uses)
            })
            .collect();
        assert_eq!(cycle(&graph), None, "a cycle inside {folder}/");
    }
}

#[test]
fn the_checks_catch_what_they_are_for() {
    let code = "use crate::{a, b::c};\nuse crate::d::e; let x = my_crate::f;";
    let found: Vec<String> = segments_after(code, "crate::").into_iter().collect();
    assert_eq!(found, ["a", "b", "d"]);

    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("top".to_owned(), ["low".to_owned()].into()),
        ("low".to_owned(), ["top".to_owned()].into()),
        ("stray".to_owned(), BTreeSet::new()),
    ]
    .into();
    let (upward, unlisted) = violations(&["top", "low"], &graph);
    assert_eq!(upward, [("low".to_owned(), "top".to_owned())]);
    assert_eq!(unlisted, ["stray"]);
    assert_eq!(
        cycle(&graph),
        Some(vec!["low".to_owned(), "top".to_owned(), "low".to_owned()])
    );
}
