//! The layout docs/ARCHITECTURE.md draws, kept true: no import cycle
//! between modules (a module may use its parent's or its children's items;
//! between any others the uses point one way), and no SQL outside the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Module path of a source file: `src/store/queries.rs` -> `store::queries`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().to_string()).collect();
    if matches!(parts.last().map(|s| s.as_str()), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without its unit tests and comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn related(a: &str, b: &str) -> bool {
    a.is_empty() || b.is_empty() || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

/// Every `crate::x::y` and `super::x` a module names, resolved to the
/// longest module path that exists.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let texts: BTreeMap<String, String> = files.iter().map(|f| (module_of(&src, f), code(&std::fs::read_to_string(f).unwrap()))).collect();
    let modules: BTreeSet<String> = texts.keys().cloned().collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &texts {
        let parent: Vec<&str> = if m.is_empty() { vec![] } else { m.split("::").collect::<Vec<_>>()[..m.split("::").count() - 1].to_vec() };
        let bytes = text.as_bytes();
        for base in ["crate::", "super::"] {
            let mut at = 0;
            while let Some(i) = text[at..].find(base) {
                let start = at + i + base.len();
                at = start;
                if at - base.len() > 0 && (bytes[at - base.len() - 1].is_ascii_alphanumeric() || bytes[at - base.len() - 1] == b'_') {
                    continue;
                }
                // `crate::a::b`, or a group: `crate::{a, b::c}` names each.
                let rest = &text[start..];
                let paths: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                    let end = group.find('}').unwrap_or(group.len());
                    group[..end].split(',').map(|p| p.trim().to_string()).collect()
                } else {
                    vec![rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect()]
                };
                for path in paths {
                    let path: String = path.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                    let mut full: Vec<&str> = if base == "crate::" { vec![] } else { parent.clone() };
                    full.extend(segs);
                    for k in (1..=full.len()).rev() {
                        let t = full[..k].join("::");
                        if modules.contains(&t) {
                            if t != *m && !related(m, &t) {
                                g.entry(m.clone()).or_default().insert(t);
                            }
                            break;
                        }
                    }
                }
            }
        }
    }
    g
}

#[test]
fn no_import_cycle_between_modules() {
    let g = graph();
    assert!(g.get("ui::render").is_some_and(|d| d.contains("worker")), "the scan sees imports: {g:?}");
    // Depth-first search for a cycle.
    fn visit(m: &str, g: &BTreeMap<String, BTreeSet<String>>, on: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = on.iter().position(|x| x == m) {
            let mut c = on[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        on.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, on, done) {
                return Some(c);
            }
        }
        on.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(c) = visit(m, &g, &mut Vec::new(), &mut done) {
            panic!("an import cycle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn no_sql_outside_the_store() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    for f in files {
        if f.starts_with(src.join("store")) {
            continue;
        }
        let text = code(&std::fs::read_to_string(&f).unwrap());
        for needle in ["\"SELECT ", "\"INSERT ", "\"UPDATE ", "\"DELETE ", "rusqlite::Connection"] {
            assert!(!text.contains(needle), "{} has SQL ({needle})", f.display());
        }
    }
}

/// The layers the architecture draws, bottom first: a module may use its
/// own layer and the ones below it, never one above (a cycle test alone
/// lets `model` use `learn` while `learn` uses `model`'s other files).
const LAYERS: &[&[&str]] = &[
    &["data", "settings", "term", "output"],
    &["store"],
    &["model"],
    &["learn"],
    &["worker"],
    &["ui", "export", "predict", "plot", "simulate", "bench"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    let top = module.split("::").next().unwrap_or("");
    LAYERS.iter().position(|l| l.contains(&top))
}

#[test]
fn uses_point_down_the_layers() {
    let g = graph();
    let mut up = Vec::new();
    for (m, deps) in &g {
        let Some(from) = layer_of(m) else { continue };
        for d in deps {
            if let Some(to) = layer_of(d) {
                if to > from {
                    up.push(format!("{m} -> {d}"));
                }
            }
        }
    }
    // Every top-level module but the crate root is in a layer.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    for f in &files {
        let m = module_of(&src, f);
        assert!(m.is_empty() || layer_of(&m).is_some(), "{m} is in no layer of LAYERS");
    }
    assert!(up.is_empty(), "uses that point up the layers: {up:?}");
}
