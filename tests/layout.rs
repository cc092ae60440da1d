//! The shape of `src/`: no cycle among its top-level modules, and no function
//! much longer than a screenful. Run with `-- --nocapture` to see the module
//! graph and the longest functions.
//!
//! The reading is lexical, as a reviewer's would be: a module depends on
//! another when its files name `crate::other`; a function spans from its
//! `fn` line to the line where its braces close.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a function may be (the longest today is about 100 lines).
const MAX_FUNCTION_LINES: usize = 110;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`main` and `lib` are their own).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Code without `//` comments and string contents' lines of tests (`#[cfg(test)]` onwards).
fn code_lines(text: &str) -> Vec<&str> {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect()
}

fn module_graph(src: &Path, files: &[PathBuf]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let from = module_of(src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let deps = graph.entry(from.clone()).or_default();
        for line in code_lines(&text) {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != from && modules.contains(&name) {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

/// A cycle of the graph, if any (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// (lines, file, line, name) of every function, by brace matching.
fn functions(src: &Path, files: &[PathBuf]) -> Vec<(usize, String, usize, String)> {
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines = code_lines(&text);
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim_start();
            let is_fn = line.starts_with("fn ")
                || line.starts_with("pub fn ")
                || line.starts_with("pub(crate) fn ")
                || line.starts_with("const fn ")
                || line.starts_with("pub const fn ");
            if !is_fn {
                i += 1;
                continue;
            }
            let name: String = line[line.find("fn ").unwrap() + 3..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let (mut depth, mut opened, mut j) = (0i64, false, i);
            while j < lines.len() {
                for c in lines[j].chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        ';' if !opened && depth == 0 => break,
                        _ => {}
                    }
                }
                if (opened && depth <= 0) || (!opened && lines[j].trim_end().ends_with(';')) {
                    break;
                }
                j += 1;
            }
            let rel = file.strip_prefix(src).unwrap().display().to_string();
            found.push((j - i + 1, rel, i + 1, name));
            i += 1;
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found
}

#[test]
fn top_level_modules_form_no_cycle_and_functions_stay_short() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();

    let graph = module_graph(&src, &files);
    println!("module graph (a -> what a names):");
    for (module, deps) in &graph {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        println!("  {module} -> {}", deps.join(", "));
    }
    let longest = functions(&src, &files);
    println!("longest functions:");
    for (n, file, line, name) in longest.iter().take(8) {
        println!("  {n:4}  {file}:{line} {name}");
    }

    assert_eq!(find_cycle(&graph), None, "a cycle among top-level modules");
    let queries = &graph["queries"];
    for higher in ["engine", "dashboard", "metrics", "pipeline", "quality"] {
        assert!(!queries.contains(higher), "queries names {higher}");
    }
    assert!(
        graph["framework"]
            .iter()
            .all(|m| ["checkpoint", "probes", "record", "rescale", "time"].contains(&m.as_str())),
        "the framework names only the leaves: {:?}",
        graph["framework"]
    );
    let too_long: Vec<_> = longest
        .iter()
        .filter(|(n, ..)| *n > MAX_FUNCTION_LINES)
        .collect();
    assert!(
        too_long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: {too_long:?}"
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
