//! The shape of the product code, checked: no import circles between the modules of a crate,
//! and nothing in the data plane imports from an entry point (`entry::*`): the programs adapt
//! their context and call the core, never the other way round.
//!
//! The module graph is read from the sources: a module is a file (`a/b.rs` or `a/b/mod.rs` is
//! `a::b`), and it depends on every module its `crate::` paths name (the longest prefix that is
//! a module), `use crate::{x, y::z}` groups included. Uses of a module's own submodules or of
//! its parents do not count (they are the module's own parts, or the module it belongs to).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            sources(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// `a/b.rs` -> `a::b`, `a/mod.rs` -> `a`, `lib.rs` / `main.rs` -> `` (the crate root).
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts.join("::")
}

/// The code without `//` comments (doc comments name modules in prose).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a `crate::` reference names: `crate::a::b::C` gives `a::b::C`; a group
/// `crate::{a::{b, c}, d}` gives `a::b`, `a::c`, `d`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        expand("", rest, &mut out);
    }
    out
}

/// Expands one path (or group) at the start of `s`, prefixed with `prefix`.
fn expand(prefix: &str, s: &str, out: &mut Vec<String>) {
    let s = s.trim_start();
    if let Some(group) = s.strip_prefix('{') {
        // Split the group's top-level items.
        let mut depth = 0;
        let mut start = 0;
        let bytes = group.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'{' => depth += 1,
                b'}' if depth == 0 => {
                    expand(prefix, &group[start..i], out);
                    return;
                }
                b'}' => depth -= 1,
                b',' if depth == 0 => {
                    expand(prefix, &group[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let mut path = String::from(prefix);
    let mut chars = s.char_indices().peekable();
    let mut seg = String::new();
    while let Some((i, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            seg.push(c);
        } else if s[i..].starts_with("::") {
            if !path.is_empty() {
                path.push_str("::");
            }
            path.push_str(&seg);
            seg.clear();
            chars.next();
            if s[i + 2..].trim_start().starts_with('{') {
                expand(&path, &s[i + 2..], out);
                return;
            }
        } else {
            break;
        }
    }
    if !seg.is_empty() {
        if !path.is_empty() {
            path.push_str("::");
        }
        path.push_str(&seg);
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// The module graph of one crate: module -> modules it uses.
fn graph(root: &Path) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    sources(root, &mut files)?;
    let mut code = BTreeMap::new();
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        code.insert(module_of(root, f), strip_comments(&text));
    }
    let modules: BTreeSet<String> = code.keys().cloned().collect();
    let mut g = BTreeMap::new();
    for (m, text) in &code {
        let mut deps = BTreeSet::new();
        for path in crate_paths(text) {
            let parts: Vec<&str> = path.split("::").collect();
            let Some(target) = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|c| modules.contains(c))
            else {
                continue;
            };
            let own_part = target.starts_with(&format!("{m}::")) || m.is_empty();
            let parent = m.starts_with(&format!("{target}::"));
            if target != *m && !own_part && !parent {
                deps.insert(target);
            }
        }
        g.insert(m.clone(), deps);
    }
    Ok(g)
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn crate_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

#[test]
fn parser_reads_paths_and_groups() {
    let code = "use crate::{a::{b, c::D}, e};\nlet x = crate::f::g(1);";
    assert_eq!(crate_paths(code), ["a::b", "a::c::D", "e", "f::g"]);
}

#[test]
fn no_import_circles() -> Result<()> {
    let mut found = Vec::new();
    for krate in ["translator-ebpf", "translator-user", "translator-common"] {
        let g = graph(&crate_src(krate))?;
        if g.len() < 3 {
            bail!(
                "{krate}: only {} modules found; is the source tree there?",
                g.len()
            );
        }
        for c in cycles(&g) {
            found.push(format!("{krate}: {}", c.join(" <-> ")));
        }
    }
    if !found.is_empty() {
        bail!("import circles between modules:\n{}", found.join("\n"));
    }
    Ok(())
}

#[test]
fn nothing_imports_from_an_entry_point() -> Result<()> {
    let g = graph(&crate_src("translator-ebpf"))?;
    let bad: Vec<String> = g
        .iter()
        .filter(|(m, _)| !m.starts_with("entry"))
        .flat_map(|(m, deps)| {
            deps.iter()
                .filter(|d| d.starts_with("entry"))
                .map(move |d| format!("{m} uses {d}"))
        })
        .collect();
    if !bad.is_empty() {
        bail!(
            "data-plane modules import from entry points:\n{}",
            bad.join("\n")
        );
    }
    Ok(())
}
