//! The layer rule of docs/SPEC.md, checked on the source tree: each layer names only what it may.
//! (`cargo check --no-default-features` separately proves L1-L3 build without tokio.)

use std::path::{Path, PathBuf};

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            out.push((p, text));
        }
    }
    assert!(!out.is_empty(), "no sources under src/{dir}");
    out
}

/// Lines that are code, not comments (a `//` line comment or a doc comment).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
}

fn forbid(dir: &str, needles: &[&str]) {
    for (path, text) in sources(dir) {
        for (n, line) in code_lines(&text) {
            for needle in needles {
                assert!(
                    !line.contains(needle),
                    "{}:{}: layer rule: `{needle}` is not allowed here:\n{line}",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}

#[test]
fn core_is_sans_io() {
    forbid(
        "core",
        &[
            "tokio",
            "crate::sync",
            "std::sync",
            "Instant::now",
            "SystemTime",
            "std::net",
            "std::thread",
            "std::fs",
        ],
    );
}

#[test]
fn registry_and_lifecycle_name_no_runtime_and_no_clock() {
    for dir in ["registry", "lifecycle"] {
        forbid(
            dir,
            &[
                "tokio",
                "std::sync",
                "loom",
                "shuttle",
                "Instant::now",
                "SystemTime",
                "std::thread",
            ],
        );
    }
}

#[test]
fn only_sync_rs_names_the_primitives() {
    for dir in ["core", "registry", "lifecycle", "net"] {
        forbid(
            dir,
            &[
                "std::sync::Mutex",
                "std::sync::atomic",
                "std::sync::Arc",
                "loom::",
                "shuttle::",
            ],
        );
    }
}

/// The store is a leaf below the driver: no runtime, no clock, no table, no lifecycle; its locks
/// come from the facade like everyone else's.
#[test]
fn store_names_no_runtime_and_no_layer_it_serves() {
    forbid(
        "store",
        &[
            "tokio",
            "loom",
            "shuttle",
            "std::sync",
            "std::thread",
            "Instant::now",
            "SystemTime",
            "crate::net",
            "crate::lifecycle",
            "crate::registry",
        ],
    );
}

/// Sockets, timers and files come from the IO facade (`src/io.rs`), so the simulation of
/// `tests/sim.rs` runs the driver and the store unchanged; only the facade names the backends.
#[test]
fn only_io_rs_names_sockets_timers_and_files() {
    for dir in ["net", "store"] {
        forbid(
            dir,
            &[
                "std::fs",
                "tokio::net",
                "tokio::time",
                "std::net::Tcp",
                "turmoil",
            ],
        );
    }
    for dir in ["core", "registry", "lifecycle"] {
        forbid(dir, &["turmoil", "crate::io"]);
    }
}

#[test]
fn the_check_can_fail() {
    let bad = "use std::sync::{Arc, Mutex};\n// std::sync in a comment is fine\n";
    let hits: Vec<_> = code_lines(bad)
        .filter(|(_, l)| l.contains("std::sync"))
        .collect();
    assert_eq!(hits.len(), 1);
}
