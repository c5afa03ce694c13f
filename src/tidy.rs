//! Tidy checks (as rust-analyzer's `tidy.rs`): facts about the source tree
//! that the compiler cannot enforce, checked by `cargo test`.
//!
//! - **Layering.** `policy`, `session` and `pusher` do no I/O and know
//!   nothing of the server: their code (tests included) names neither
//!   tokio nor hyper, nor the modules that do I/O or serve HTTP (`app`,
//!   `http`, `upstream`, `jwks`, `admin`, `publish`, `webhook`,
//!   `revocation`). So they stay unit-testable without a runtime, and a
//!   dependency pointing the wrong way fails here, not in review.
//! - **One error point.** `StatusCode::` appears only in `http/error.rs`
//!   (and where an upstream's answer is read: `jwks.rs`, `upstream.rs`).

use std::path::{Path, PathBuf};

/// Files under `dir` (recursively) ending in `.rs`, and `dir.rs` itself.
fn rust_files(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut out = vec![src.join(format!("{module}.rs"))];
    let mut stack = vec![src.join(module)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Lines of code (comments dropped) of `path` naming one of `forbidden`.
fn offending_lines(path: &Path, forbidden: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| forbidden.iter().any(|f| line.contains(f)))
        .map(|(i, line)| format!("{}:{}: {}", path.display(), i + 1, line.trim()))
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_pure_layers_name_no_runtime_and_no_server_module() {
    const FORBIDDEN: &[&str] = &[
        "tokio",
        "hyper",
        "crate::app",
        "crate::http",
        "crate::upstream",
        "crate::jwks",
        "crate::admin",
        "crate::publish",
        "crate::webhook",
        "crate::revocation",
    ];
    let mut offences = Vec::new();
    for module in ["policy", "session", "pusher"] {
        for file in rust_files(&src(), module) {
            offences.extend(offending_lines(&file, FORBIDDEN));
        }
    }
    assert!(offences.is_empty(), "policy, session and pusher must stay pure:\n{}", offences.join("\n"));
}

#[test]
fn only_the_error_point_chooses_statuses() {
    const ALLOWED: &[&str] = &["http/error.rs", "jwks.rs", "upstream.rs", "tidy.rs"];
    let mut offences = Vec::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !ALLOWED.iter().any(|a| path.ends_with(a))
            {
                offences.extend(offending_lines(&path, &["StatusCode::"]));
            }
        }
    }
    assert!(offences.is_empty(), "statuses are chosen in http/error.rs only:\n{}", offences.join("\n"));
}
