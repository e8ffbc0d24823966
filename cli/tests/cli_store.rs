//! `rmq-lifecycle store verify|repair` as an operator runs them: every problem printed (two bad
//! records in one segment are two lines, each with file, offset and bytes skipped), exit 1 while
//! any; repair rewrites a missing checkpoint so the store opens again.

use std::path::Path;
use std::process::Command;

use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};

const SEG: u64 = 16 * 1024;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_owned(),
        segment_size: SEG,
        flush: FlushPolicy::Manual,
    }
}

/// Runs the command; returns its exit code and stdout (stderr appended).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rmq-lifecycle"))
        .args(args)
        .output()
        .expect("run rmq-lifecycle");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn store_verify_prints_every_problem_and_repair_rewrites_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let spans: Vec<(u64, u64)> = {
        let log = CommitLog::open(config(dir.path())).unwrap();
        (0..80u32)
            .map(|i| {
                let at = log.append(&vec![i as u8; 1000]).unwrap();
                (at.start, at.end)
            })
            .collect()
    };
    // The third segment: a repair there leaves three, which must have a checkpoint.
    let segment = dir.path().join(format!("{:020}", 2 * SEG));
    let in_third: Vec<_> = spans
        .iter()
        .filter(|s| s.0 >= 2 * SEG && s.1 <= 3 * SEG)
        .collect();
    let mut bytes = std::fs::read(&segment).unwrap();
    for s in [in_third[2], in_third[7]] {
        bytes[(s.0 + 500 - 2 * SEG) as usize] ^= 0x40;
    }
    std::fs::write(&segment, &bytes).unwrap();

    let (code, out) = run(&["store", "verify", path]);
    assert_eq!(code, Some(1), "{out}");
    for s in [in_third[2], in_third[7]] {
        let line = format!(
            "problem at offset {} in {}: payload CRC mismatch ({} bytes skipped)",
            s.0,
            segment.display(),
            s.1 - s.0
        );
        assert!(out.contains(&line), "{line:?} in:\n{out}");
    }
    assert!(out.contains("2 problem(s)"), "{out}");

    let (code, out) = run(&["store", "repair", path]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["store", "verify", path]);
    assert_eq!(code, Some(0), "{out}");

    // A lost checkpoint: open refuses (naming what to run), repair rewrites it.
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let err = CommitLog::open(config(dir.path())).unwrap_err().to_string();
    assert!(err.contains(&format!("store verify {path}")), "{err}");
    let (code, out) = run(&["store", "verify", path]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("checkpoint") && out.contains("is missing"),
        "{out}"
    );
    let (code, out) = run(&["store", "repair", path]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("checkpoint rewritten"), "{out}");
    let log = CommitLog::open(config(dir.path())).unwrap();
    assert_eq!(log.max_offset(), in_third[2].0);
}
