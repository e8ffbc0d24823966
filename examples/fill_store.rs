//! Fills a new store with records through the library, for tests that need a master with a log
//! before it serves (`.ci/netns.sh`): `cargo run --release --example fill_store -- DIR BYTES
//! SEGMENT_SIZE`. Each record is 64 KiB of bytes derived from its index, so two fills agree.

use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, bytes, segment] = &args[..] else {
        eprintln!("usage: fill_store DIR BYTES SEGMENT_SIZE");
        std::process::exit(2);
    };
    let (bytes, segment): (u64, u64) = match (bytes.parse(), segment.parse()) {
        (Ok(b), Ok(s)) => (b, s),
        _ => {
            eprintln!("BYTES and SEGMENT_SIZE are numbers");
            std::process::exit(2);
        }
    };
    let log = CommitLog::open(StoreConfig {
        dir: dir.into(),
        segment_size: segment,
        flush: FlushPolicy::Manual,
    })
    .unwrap_or_else(|e| {
        eprintln!("fill_store: {dir}: {e}");
        std::process::exit(1);
    });
    let mut payload = vec![0u8; 64 << 10];
    let mut i = 0u64;
    while log.max_offset() < bytes {
        for (j, b) in payload.iter_mut().enumerate() {
            *b = (i as usize * 31 + j) as u8;
        }
        log.append(&payload).unwrap_or_else(|e| {
            eprintln!("fill_store: append: {e}");
            std::process::exit(1);
        });
        i += 1;
    }
    log.flush().expect("flush");
    println!("{}", log.max_offset());
}
