//! The server's modules depend on each other one way: transports (`api`,
//! `ws`, and the HTTP plumbing they share in `http`) over the service,
//! the service over the store and the event bus; `app` alone knows both
//! transports, and `server` starts it all. This test reads the sources and
//! keeps it so (docs/architecture.md draws the picture).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Modules each module must never name.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("api", &["ws", "app", "server", "store"]),
    ("ws", &["api", "app", "server", "store"]),
    ("http", &["api", "ws", "app", "server", "store"]),
    ("service", &["api", "ws", "http", "app", "net", "server"]),
    (
        "store",
        &["service", "api", "ws", "http", "app", "net", "server"],
    ),
    (
        "events",
        &[
            "service", "store", "api", "ws", "http", "app", "net", "server",
        ],
    ),
    ("app", &["server"]),
];

/// Source without comments and without its test module (tests may reach
/// anywhere).
fn code(source: &str) -> String {
    let source = [
        "#[cfg(test)]\nmod tests",
        "#[cfg(test)]\npub(crate) mod tests",
    ]
    .iter()
    .filter_map(|start| source.find(start))
    .min()
    .map_or(source, |at| &source[..at]);
    source
        .lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::{c, d}, e};`: the names at depth 0.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && depth == 0 && !c.is_whitespace() => {
                        named.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            named.insert(ident(rest));
        }
    }
    named.retain(|name| !name.is_empty() && name != "self");
    named
}

/// Each top-level module and the top-level modules its code names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut folders = vec![src.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap();
            let module = Path::new(first.as_os_str())
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if module == "lib" || module == "layers" {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let mut named = named_modules(&code(&source));
            named.remove(&module);
            graph.entry(module).or_default().extend(named);
        }
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    let here = path.last().cloned().unwrap_or_else(|| start.to_owned());
    for next in graph.get(&here).into_iter().flatten() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(start.to_owned());
            return Some(cycle);
        }
        if !path.contains(next) {
            path.push(next.clone());
            if let Some(cycle) = cycle_from(graph, start, path) {
                return Some(cycle);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn the_reader_finds_what_a_module_names() {
    let named = named_modules(&code(
        "use crate::{api::{self, x}, ws::hub::Hub, config};\n// crate::store\nlet a = crate::metrics::M;",
    ));
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        ["api", "config", "metrics", "ws"]
    );
    let looped: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), BTreeSet::from([to.to_owned()])))
        .collect();
    let cycle = cycle_from(&looped, "a", &mut vec!["a".to_owned()]);
    assert_eq!(cycle.unwrap().join(" -> "), "a -> b -> c -> a");
    let graph = graph();
    assert!(graph["app"].contains("api") && graph["app"].contains("ws"));
    assert!(graph["service"].contains("store"));
}

#[test]
fn modules_depend_one_way() {
    let graph = graph();
    let mut broken = Vec::new();
    for (module, never) in FORBIDDEN {
        for named in graph.get(*module).into_iter().flatten() {
            if never.contains(&named.as_str()) {
                broken.push(format!("{module} -> {named}"));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken: {broken:?}");
    for module in graph.keys() {
        let mut path = vec![module.clone()];
        if let Some(cycle) = cycle_from(&graph, module, &mut path) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}
