//! Imports point down (see the "Imports point down" section of `src/lib.rs`):
//! every `crate::` path in a module's files names only modules it may use.

use std::collections::BTreeSet;
use std::path::Path;

const MODULES: [&str; 13] = [
    "model",
    "json",
    "files",
    "catalog",
    "plan",
    "planner",
    "state",
    "providers",
    "apply",
    "rebalance",
    "sim",
    "history_page",
    "cli",
];

/// What each module may use besides itself.
fn allowed(module: &str) -> &'static [&'static str] {
    match module {
        "model" | "json" | "files" => &[],
        "catalog" => &["files", "model", "json"],
        "plan" => &["files", "model", "json", "catalog"],
        "planner" => &["model", "plan", "catalog"],
        "state" => &["files", "model", "json"],
        "providers" => &["files", "model", "json", "catalog"],
        "apply" => &["files", "model", "json", "plan", "catalog", "planner", "state", "providers"],
        "rebalance" => &["files", "model", "json", "plan", "catalog", "planner", "state", "apply"],
        "sim" => &["files", "model", "json", "catalog"],
        "history_page" => &["state"],
        "cli" => &MODULES,
        other => panic!("unknown module {other}"),
    }
}

/// Every `.rs` file of a module (`src/NAME.rs` or `src/NAME/**`).
fn files(module: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let single = root.join(format!("{module}.rs"));
    if single.exists() {
        return vec![single];
    }
    let mut found = Vec::new();
    let mut dirs = vec![root.join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    assert!(!found.is_empty(), "module {module} has no files");
    found
}

/// The modules named by `crate::NAME` in `text`.
fn uses(text: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        .map(|(at, _)| {
            text[at + "crate::".len()..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect()
        })
        .collect()
}

#[test]
fn every_module_uses_only_the_modules_below_it() {
    let mut violations = Vec::new();
    for module in MODULES {
        for file in files(module) {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in uses(&text) {
                if used != module && !allowed(module).contains(&used.as_str()) {
                    violations.push(format!("{} uses crate::{used}", file.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "imports must point down:\n{}", violations.join("\n"));
}

#[test]
fn the_planner_and_the_history_page_do_no_io_and_read_no_clock() {
    let forbidden = ["async ", ".await", "std::fs", "std::env", "Utc::now", "SystemTime", "tokio", "std::net"];
    let mut found = Vec::new();
    for file in files("planner").into_iter().chain(files("history_page")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for word in forbidden {
            if text.contains(word) {
                found.push(format!("{} contains `{word}`", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "the planner and the history page are pure:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_a_violation() {
    assert_eq!(
        uses("use crate::sim::World;\nlet x = crate::providers::aws::kind_of;"),
        BTreeSet::from(["providers".to_string(), "sim".to_string()])
    );
}
