//! Replays the fuzz inputs as ordinary tests on stable, with no libFuzzer and no nightly: every
//! file in `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/` (both committed) and, when it
//! exists locally, `fuzz/corpus/<target>/` (what `cargo fuzz run` grew; gitignored), through the
//! same property the fuzz target runs.

use bytes::BytesMut;
use rmq_lifecycle::core::HeartbeatData;
use rmq_lifecycle::core::remoting::{FrameDecoder, RemotingCommand};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/properties/heartbeat_json.rs"]
mod heartbeat_property;

/// The committed directories that must exist, and the local one that may.
const DIRS: [(&str, bool); 3] = [("seeds", true), ("regressions", true), ("corpus", false)];

/// Runs `check` on every input of `target`; returns how many ran. Panics naming each failing file.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<PathBuf> = Vec::new();
    for (dir, required) in DIRS {
        let dir = root.join(dir).join(target);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot read {}: {e}", dir.display()),
        };
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path();
            // Notes beside the inputs (README.md, .gitkeep) are not inputs.
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_file() && !name.starts_with('.') && !name.ends_with(".md") {
                files.push(path);
            }
        }
    }
    files.sort();

    // Keep the default hook's message (it names the assertion) but say which file caused it.
    let mut failed = Vec::new();
    for path in &files {
        let data =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            eprintln!("fuzz input {} ({} bytes) fails", path.display(), data.len());
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} `{target}` inputs fail the property (reproduce from the crate root with \
         `cargo fuzz run -s none {target} FILE`): {failed:#?}",
        failed.len(),
        files.len()
    );
    files.len()
}

#[test]
fn remoting_frame_corpus() {
    let n = replay("remoting_frame", rmq_lifecycle::core::remoting::fuzz_check);
    assert!(
        n > 0,
        "no input for remoting_frame in fuzz/seeds or fuzz/regressions"
    );
}

#[test]
fn ha_frame_corpus() {
    let n = replay("ha_frame", rmq_lifecycle::core::ha::fuzz_check);
    assert!(
        n > 0,
        "no input for ha_frame in fuzz/seeds or fuzz/regressions"
    );
}

#[test]
fn heartbeat_json_corpus() {
    let n = replay("heartbeat_json", heartbeat_property::check);
    assert!(
        n > 0,
        "no input for heartbeat_json in fuzz/seeds or fuzz/regressions"
    );
}

/// The committed seeds of `target`, by file name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("a seed file"))
        })
        .collect();
    out.sort();
    out
}

/// A seed named `bad_*` is an error; any other decodes cleanly, so a change in the decoder that
/// turns a real frame into an error (or lets a bad one through) shows up here, not as a silently
/// weaker corpus.
#[test]
fn remoting_seeds_are_what_their_names_say() {
    for (name, data) in seeds("remoting_frame") {
        let stream = data.get(1..).unwrap_or_default();
        let mut buf = BytesMut::from(stream);
        let mut decoder = FrameDecoder::default();
        let mut commands: Vec<RemotingCommand> = Vec::new();
        let result = loop {
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => commands.push(cmd),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if name.starts_with("bad_") {
            assert!(result.is_err(), "seed {name} decodes but should not");
        } else {
            assert_eq!(result, Ok(()), "seed {name} should decode");
            let partial_only = ["empty_after_split", "truncated_prefix"];
            assert!(
                !commands.is_empty() || partial_only.contains(&name.as_str()),
                "seed {name} holds no complete frame"
            );
        }
    }
}

/// As above, for the heartbeat bodies.
#[test]
fn heartbeat_seeds_are_what_their_names_say() {
    for (name, data) in seeds("heartbeat_json") {
        let parsed = HeartbeatData::from_json(&data);
        if name.starts_with("bad_") {
            assert!(parsed.is_err(), "seed {name} parses but should not");
        } else if let Err(e) = parsed {
            panic!("seed {name} should parse: {e}");
        }
    }
}
