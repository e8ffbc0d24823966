//! `rmq-lifecycle store verify|repair DIR`: the full check of a store and its one explicit repair.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use rmq_lifecycle::store::{self, Verified};

#[derive(Debug, Subcommand)]
pub(crate) enum Which {
    /// Read every record of a store (CRCs, sealed segments too) and list every problem, each
    /// with its file, offset and the bytes skipped to the next record that checks out. Changes
    /// nothing. Exit 0 if it is sound, 1 if not. Refused while a process has the store open.
    Verify {
        /// The store directory.
        dir: PathBuf,
    },
    /// End the log where its valid records end, moving the damaged bytes and every later
    /// segment file into DIR/quarantine/ (nothing is deleted), and rewrite the checkpoint so
    /// the store opens. Refused while a process has the store open.
    Repair {
        /// The store directory.
        dir: PathBuf,
    },
}

pub(crate) fn run(which: Which) -> ExitCode {
    let result = match &which {
        Which::Verify { dir } => store::verify(dir).map(|v| {
            print(&v);
            if v.is_sound() {
                println!("store {}: sound", dir.display());
                ExitCode::SUCCESS
            } else {
                println!(
                    "store {}: {} problem(s); `rmq-lifecycle store repair {}` would end the log at {} \
                     and move the rest into quarantine/",
                    dir.display(),
                    v.problems.len(),
                    dir.display(),
                    v.valid_end
                );
                ExitCode::FAILURE
            }
        }),
        Which::Repair { dir } => store::repair(dir).map(|r| {
            print(&r.before);
            if r.before.is_sound() {
                println!("store {}: sound, nothing to repair", dir.display());
            } else {
                for path in &r.moved {
                    println!("moved to quarantine: {}", path.display());
                }
                if let Some(sealed) = r.checkpoint {
                    println!("checkpoint rewritten: sealed below {sealed}");
                }
                println!("store {}: the log now ends at {}", dir.display(), r.end);
            }
            ExitCode::SUCCESS
        }),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error}");
        ExitCode::FAILURE
    })
}

fn print(v: &Verified) {
    println!(
        "segments: {} ({} bytes each), offsets [{}, {}) valid, {} bytes on disk, sealed below {}, {} file(s) in quarantine",
        v.segments, v.segment_size, v.min_offset, v.valid_end, v.bytes, v.sealed, v.quarantined
    );
    for p in &v.problems {
        println!(
            "problem at offset {} in {}: {} ({} bytes skipped)",
            p.offset,
            p.file.display(),
            p.what,
            p.skipped
        );
    }
}
