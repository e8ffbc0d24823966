//! The commit log (`rmq_lifecycle::store`): framing across segments, reads bounded by segment and
//! max offset, recovery of torn tails, the slave path (`append_raw`) against a master's reads,
//! upstream records, and a reader racing an appender.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use rmq_lifecycle::core::epoch::EpochEntry;
use rmq_lifecycle::store::record::{
    BLANK_MAGIC, HEADER_LEN, MAGIC, MESSAGE_MAGIC, MESSAGE_MAGIC_V2, MIN_BLANK_LEN,
};
use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};

const SEG: u64 = 4096;

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        segment_size: SEG,
        ..StoreConfig::new(dir)
    }
}

/// A log in `dir` with `size`-byte segments and the default flush policy.
fn open_sized(dir: &Path, size: u64) -> CommitLog {
    CommitLog::open(StoreConfig {
        segment_size: size,
        ..StoreConfig::new(dir)
    })
    .unwrap()
}

fn open(dir: &Path) -> CommitLog {
    CommitLog::open(config(dir)).expect("open")
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}"))
}

/// Appends `n` records of random sizes (0..max_payload bytes); returns their payloads.
fn fill(log: &CommitLog, rng: &mut Rng, n: usize, max_payload: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let payload = rng.payload(max_payload);
            log.append(&payload).expect("append");
            payload
        })
        .collect()
}

/// Every byte in `[from, to)`, read as the HA master does: segment by segment.
fn read_all(log: &CommitLog, from: u64, to: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        let n = log.read(pos, usize::MAX, &mut out).expect("read");
        assert!(n > 0, "no progress at {pos}");
        pos += n as u64;
    }
    out
}

/// A record the parser found.
#[derive(Debug, PartialEq)]
enum Parsed {
    Ours(Vec<u8>),
    Upstream(Vec<u8>),
    Blank(u64),
}

/// Parses whole records from `bytes` (starting at offset `base`), checking our CRCs and that no
/// record crosses a segment; returns them and how many bytes they cover.
fn parse(bytes: &[u8], base: u64) -> (Vec<Parsed>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= MIN_BLANK_LEN as usize {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let magic = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let offset = base + at as u64;
        let room = (SEG - offset % SEG) as usize;
        assert!(
            size >= MIN_BLANK_LEN as usize && size <= room,
            "bad size {size} at {offset}"
        );
        if bytes.len() - at < size {
            break;
        }
        let rec = &bytes[at..at + size];
        out.push(match magic {
            MAGIC => {
                let crc = u32::from_be_bytes(rec[8..12].try_into().unwrap());
                assert_eq!(crc32fast::hash(&rec[12..]), crc, "CRC at {offset}");
                Parsed::Ours(rec[12..].to_vec())
            }
            MESSAGE_MAGIC | MESSAGE_MAGIC_V2 => Parsed::Upstream(rec.to_vec()),
            BLANK_MAGIC => {
                assert_eq!(size, room, "a blank fills its segment");
                Parsed::Blank(offset)
            }
            _ => panic!("unknown magic {magic:#x} at {offset}"),
        });
        at += size;
    }
    (out, at)
}

fn ours(parsed: &[Parsed]) -> Vec<Vec<u8>> {
    parsed
        .iter()
        .filter_map(|p| match p {
            Parsed::Ours(v) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

/// Copies the master's `[slave.max, master.max)` to the slave in batches of random sizes: one
/// to four consecutive master reads per append (so an append may cross segment ends, as a
/// slave's does when one socket read holds several transfers), cut at random points into
/// pieces, some of them empty, and appended with `append_raw_vectored`, or a single read with
/// `append_raw`.
fn replicate(master: &CommitLog, slave: &CommitLog, rng: &mut Rng, max_batch: u64) {
    while slave.max_offset() < master.max_offset() {
        let mut reads: Vec<Vec<u8>> = Vec::new();
        let mut at = slave.max_offset();
        for _ in 0..1 + rng.below(4) {
            if at == master.max_offset() {
                break;
            }
            let want = 1 + rng.below(max_batch) as usize;
            let mut buf = Vec::new();
            let n = master.read(at, want, &mut buf).expect("master read");
            assert!(n > 0 && n <= want);
            at += n as u64;
            reads.push(buf);
        }
        let end = if reads.len() == 1 && rng.below(2) == 0 {
            slave.append_raw(slave.max_offset(), &reads[0])
        } else {
            let mut pieces: Vec<&[u8]> = Vec::new();
            for read in &reads {
                let cut = rng.below(read.len() as u64 + 1) as usize;
                pieces.extend([&read[..cut], &read[cut..]]);
            }
            slave.append_raw_vectored(slave.max_offset(), &pieces)
        }
        .expect("append_raw");
        assert_eq!(end, at);
        assert_eq!(end, slave.max_offset());
    }
}

fn digest(log: &CommitLog) -> u32 {
    log.digest(log.min_offset(), log.max_offset())
        .expect("digest")
}

/// An upstream message record: TOTALSIZE, MAGIC, a body CRC we do not check, then the body.
/// An upstream message record of `len` bytes (at least 92): IPv4 hosts (SYSFLAG 0), an empty
/// topic and properties, random fields, and a random body whose BODYCRC is upstream's (CRC-32
/// with the sign bit cleared).
fn upstream_record(rng: &mut Rng, len: usize, magic: u32) -> Vec<u8> {
    let topic_len_field = if magic == MESSAGE_MAGIC_V2 { 2 } else { 1 };
    let body_len = len - 88 - topic_len_field - 2;
    let mut rec = rng.bytes(len);
    rec[0..4].copy_from_slice(&(len as u32).to_be_bytes());
    rec[4..8].copy_from_slice(&magic.to_be_bytes());
    rec[36..40].copy_from_slice(&0u32.to_be_bytes()); // SYSFLAG: IPv4 hosts
    rec[84..88].copy_from_slice(&(body_len as u32).to_be_bytes());
    let crc = crc32fast::hash(&rec[88..88 + body_len]) & 0x7FFF_FFFF;
    rec[8..12].copy_from_slice(&crc.to_be_bytes());
    rec[88 + body_len..].fill(0); // topic and properties lengths 0
    rec
}

/// A Java master's log: messages placed by upstream's rule (a message goes in only if it leaves
/// at least 8 bytes, else an 8-byte BLANK header fills the segment's end).
fn upstream_log(rng: &mut Rng, messages: usize, base: u64) -> (Vec<u8>, usize) {
    let mut log = Vec::new();
    let mut placed = 0;
    for i in 0..messages {
        let len = 92 + rng.below(700) as usize;
        let room = (SEG - (base + log.len() as u64) % SEG) as usize;
        if len + MIN_BLANK_LEN as usize > room {
            log.extend_from_slice(&(room as u32).to_be_bytes());
            log.extend_from_slice(&BLANK_MAGIC.to_be_bytes());
            log.resize(log.len() + room - 8, 0);
        }
        let magic = if i % 3 == 0 {
            MESSAGE_MAGIC_V2
        } else {
            MESSAGE_MAGIC
        };
        log.extend_from_slice(&upstream_record(rng, len, magic));
        placed += 1;
    }
    (log, placed)
}

/// The segment files (20-digit names) in a store directory, by name.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    files.sort();
    files
}

/// Every file under `dir` but the lock, with its bytes: what "nothing was changed" compares.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else if path.file_name().unwrap() != "lock" {
            out.insert(path.clone(), fs::read(&path).unwrap());
        }
    }
    out
}

/// Bytes in the store's quarantine directory.
fn quarantined(dir: &Path) -> u64 {
    match fs::read_dir(dir.join("quarantine")) {
        Ok(entries) => entries.map(|e| file_len(&e.unwrap().path())).sum(),
        Err(_) => 0,
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").len()
}

#[test]
fn round_trip_across_small_segments_with_blank_padding() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert_eq!(
        (log.min_offset(), log.max_offset(), log.segment_size()),
        (0, 0, SEG)
    );
    let mut rng = Rng(0x5eed);
    let mut payloads = Vec::new();
    for _ in 0..400 {
        let payload = rng.payload(1500);
        let before = log.max_offset();
        let at = log.append(&payload).unwrap();
        assert_eq!(at.end, at.start + HEADER_LEN + payload.len() as u64);
        assert_eq!(at.end, log.max_offset());
        assert!(
            at.start == before || at.start == log.segment_base(at.end - 1),
            "only a blank before"
        );
        assert_eq!(
            log.segment_base(at.start),
            log.segment_base(at.end - 1),
            "record crosses a segment"
        );
        let mut back = Vec::new();
        log.read(at.start + HEADER_LEN, payload.len(), &mut back)
            .unwrap();
        assert_eq!(back, payload);
        payloads.push(payload);
    }
    let bytes = read_all(&log, 0, log.max_offset());
    let (parsed, used) = parse(&bytes, 0);
    assert_eq!(used, bytes.len());
    assert_eq!(ours(&parsed), payloads);
    let blanks = parsed
        .iter()
        .filter(|p| matches!(p, Parsed::Blank(_)))
        .count();
    assert!(blanks > 10, "expected blank padding, got {blanks}");
    let segments = segment_files(dir.path()).len() as u64;
    assert_eq!(segments, log.max_offset().div_ceil(SEG));
}

#[test]
fn records_fill_a_segment_or_leave_a_full_header_and_longer_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for len in [SEG + 1, SEG - 1, SEG - HEADER_LEN + 1] {
        let err = log
            .append(&vec![7; (len - HEADER_LEN) as usize])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("does not fit"), "{err}");
    }
    assert_eq!(log.max_offset(), 0);
    let sizes = [SEG, SEG - HEADER_LEN, HEADER_LEN, SEG - 20, 15, 100];
    let starts: Vec<u64> = sizes
        .iter()
        .map(|len| {
            log.append(&vec![1; (len - HEADER_LEN) as usize])
                .unwrap()
                .start
        })
        .collect();
    // Exact fill; 12 left; the 12 filled exactly; 20 left, 15 would leave 5: a blank instead.
    assert_eq!(
        starts,
        [0, SEG, 2 * SEG - HEADER_LEN, 2 * SEG, 3 * SEG, 3 * SEG + 15]
    );
    let (parsed, _) = parse(&read_all(&log, 0, log.max_offset()), 0);
    assert_eq!(
        parsed
            .iter()
            .filter(|p| matches!(p, Parsed::Blank(_)))
            .collect::<Vec<_>>(),
        [&Parsed::Blank(3 * SEG - 20)]
    );
}

#[test]
fn reads_stop_at_the_segment_end_and_the_max_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut rng = Rng(7);
    fill(&log, &mut rng, 60, 900);
    let max = log.max_offset();
    assert!(max > 3 * SEG);
    for _ in 0..500 {
        let offset = rng.below(max + 1);
        let mut buf = vec![0xAA; 3]; // read appends after existing bytes
        let n = log.read(offset, usize::MAX, &mut buf).unwrap() as u64;
        let seg_end = log.segment_base(offset) + SEG;
        assert_eq!(n, seg_end.min(max) - offset, "at {offset}");
        assert_eq!(buf.len() as u64, 3 + n);
        assert_eq!(&buf[..3], &[0xAA; 3]);
    }
    assert_eq!(log.read(max, 100, &mut Vec::new()).unwrap(), 0);
    let err = log.read(max + 1, 100, &mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let mut b = bytes::BytesMut::new();
    assert_eq!(log.read(5, 7, &mut b).unwrap(), 7);
    assert_eq!(b.len(), 7);
}

#[test]
fn reopen_recovers_the_same_max_offset_and_contents() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(42);
    let (max, sum, mut payloads) = {
        let log = open(dir.path());
        let payloads = fill(&log, &mut rng, 150, 1200);
        (log.max_offset(), digest(&log), payloads)
    };
    let log = open(dir.path());
    assert_eq!((log.max_offset(), digest(&log)), (max, sum));
    payloads.extend(fill(&log, &mut rng, 20, 1200));
    drop(log);
    let log = open(dir.path());
    let (parsed, _) = parse(&read_all(&log, 0, log.max_offset()), 0);
    assert_eq!(ours(&parsed), payloads);
}

#[test]
fn flush_policies_write_the_same_bytes() {
    let mut sums = Vec::new();
    for flush in [
        FlushPolicy::EveryAppend,
        FlushPolicy::EveryBytes(5000),
        FlushPolicy::Manual,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog::open(StoreConfig {
            flush,
            ..config(dir.path())
        })
        .unwrap();
        fill(&log, &mut Rng(3), 40, 800);
        log.flush().unwrap();
        sums.push((log.max_offset(), digest(&log)));
    }
    assert!(sums.windows(2).all(|w| w[0] == w[1]), "{sums:?}");
}

/// Damages a log (returning the index of the first record it damaged) and checks that
/// reopening keeps exactly the records before it.
/// Fills a log with 50 records, lets `damage` change its files (returning how many records
/// must survive), reopens it, and checks that the log is exactly those records, that the cut
/// bytes are in the quarantine, and that it goes on.
fn torn_tail_case(name: &str, damage: impl FnOnce(&Path, &[(u64, u64)]) -> usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(99);
    let mut spans = Vec::new();
    {
        let log = open(dir.path());
        for _ in 0..50 {
            let at = log.append(&rng.payload(900)).unwrap();
            spans.push((at.start, at.end));
        }
    }
    let kept = damage(dir.path(), &spans);
    let on_disk: u64 = segment_files(dir.path()).iter().map(|p| file_len(p)).sum();
    let log = open(dir.path());
    let max = log.max_offset();
    let after_kept = spans[..kept].last().map_or(0, |s| s.1);
    let next_start = spans.get(kept).map_or(after_kept, |s| s.0);
    assert!(
        (after_kept..=next_start).contains(&max),
        "{name}: max {max}"
    );
    let bytes = read_all(&log, 0, max);
    let (parsed, used) = parse(&bytes, 0);
    assert_eq!((used, ours(&parsed).len()), (bytes.len(), kept), "{name}");
    // Nothing past the end is served; nothing is lost either: the cut bytes are in the quarantine.
    let last = log.segment_base(max);
    let files = segment_files(dir.path());
    assert_eq!(
        files.last(),
        Some(&segment_path(dir.path(), last)),
        "{name}"
    );
    assert_eq!(file_len(files.last().unwrap()), max - last, "{name}");
    let kept_bytes: u64 = files.iter().map(|p| file_len(p)).sum();
    assert_eq!(kept_bytes + quarantined(dir.path()), on_disk, "{name}");
    assert!(log.read(max + 1, 10, &mut Vec::new()).is_err(), "{name}");
    let at = log.append(b"after recovery").unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.max_offset(), at.end, "{name}");
}

/// Appends `bytes` after the log's last byte, in the next segment file if the last one is full.
fn append_to_tail(dir: &Path, spans: &[(u64, u64)], bytes: &[u8]) {
    let end = spans.last().unwrap().1;
    let path = segment_path(dir, end - end % SEG);
    let mut old = fs::read(&path).unwrap_or_default();
    old.extend_from_slice(bytes);
    fs::write(&path, old).unwrap();
}

/// Flips bits of one byte at a log offset.
fn flip(dir: &Path, offset: u64, mask: u8) {
    let path = segment_path(dir, offset - offset % SEG);
    let mut bytes = fs::read(&path).unwrap();
    bytes[(offset % SEG) as usize] ^= mask;
    fs::write(&path, bytes).unwrap();
}

#[test]
fn a_torn_tail_is_truncated_on_reopen() {
    torn_tail_case("truncated mid-record", |dir, spans| {
        let (start, end) = *spans.last().unwrap();
        let f = fs::OpenOptions::new()
            .write(true)
            .open(segment_path(dir, start - start % SEG));
        f.unwrap()
            .set_len((start + (end - start) / 2) % SEG)
            .unwrap();
        spans.len() - 1
    });
    torn_tail_case("garbage appended", |dir, spans| {
        append_to_tail(dir, spans, b"\x00\x00\x00\x40garbage-garbage");
        spans.len()
    });
    torn_tail_case("zeros appended", |dir, spans| {
        append_to_tail(dir, spans, &[0; 100]);
        spans.len()
    });
    torn_tail_case("a short header appended", |dir, spans| {
        append_to_tail(dir, spans, &[0, 0, 0]);
        spans.len()
    });
    torn_tail_case("bad CRC in the last record", |dir, spans| {
        let i = spans.iter().rposition(|s| s.1 - s.0 > HEADER_LEN).unwrap();
        flip(dir, spans[i].1 - 1, 1);
        i
    });
}

/// A store of 50 records over several segments, and the spans of its records.
fn several_segments() -> (tempfile::TempDir, Vec<(u64, u64)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(99);
    let log = open(dir.path());
    let spans = (0..50)
        .map(|_| {
            let at = log.append(&rng.payload(900)).unwrap();
            (at.start, at.end)
        })
        .collect();
    assert!(log.max_offset() > 4 * SEG);
    (dir, spans)
}

/// Damage that is not a torn tail. In the sealed part (below the checkpoint: synced, trusted by
/// `open`) a missing or short segment stops `open`, naming the file and offset, with nothing
/// changed; bit rot there is not read by `open`, but by the segment's first read (which fails,
/// naming file and offset) and by `verify`. A store of more than two segments without a
/// checkpoint (it must have one) stops `open` naming the checkpoint, whatever the damage: no
/// automatic cut. A gap always stops `open`. `verify` reports all of it; `repair` ends the log
/// there, moving the rest into the quarantine, and rewrites the checkpoint; in every case no
/// byte is lost and the log goes on.
#[test]
fn damage_before_the_last_segment_is_refused_or_set_aside_never_deleted() {
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Open {
        /// `open` fails naming the offset (or the gap), changing nothing.
        Refused,
        /// `open` succeeds without reading the damage (sealed bit rot).
        Untouched,
    }
    type Damage = fn(&Path, &[(u64, u64)]) -> u64;
    let cases: [(&str, Damage, Open, Open); 5] = [
        (
            "bad CRC in a sealed segment",
            |dir, spans| {
                flip(dir, spans[10].0 + HEADER_LEN - 1, 0xFF); // the stored CRC
                spans[10].0
            },
            Open::Untouched,
            Open::Refused,
        ),
        (
            "bad TOTALSIZE in a sealed segment",
            |dir, spans| {
                flip(dir, spans[20].0, 0x40);
                spans[20].0
            },
            Open::Untouched,
            Open::Refused,
        ),
        (
            "a missing middle segment",
            |dir, _| {
                fs::remove_file(segment_path(dir, 2 * SEG)).unwrap();
                2 * SEG
            },
            Open::Refused,
            Open::Refused,
        ),
        (
            "a sealed segment cut short at a record end",
            |dir, spans| {
                let end = spans
                    .iter()
                    .find(|s| s.0 >= SEG && s.1 < 2 * SEG)
                    .unwrap()
                    .1;
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(segment_path(dir, SEG));
                f.unwrap().set_len(end - SEG).unwrap();
                end
            },
            Open::Refused,
            Open::Refused,
        ),
        (
            "a stray segment after a gap",
            |dir, spans| {
                let end = spans.last().unwrap().1;
                fs::write(segment_path(dir, end - end % SEG + 2 * SEG), b"stray").unwrap();
                end
            },
            Open::Refused,
            Open::Refused,
        ),
    ];
    let log_bytes = |dir: &Path| -> u64 {
        let segments: u64 = segment_files(dir).iter().map(|p| file_len(p)).sum();
        segments + quarantined(dir)
    };
    for (name, damage, with_checkpoint, without) in cases {
        for checkpoint in [true, false] {
            let expected = if checkpoint { with_checkpoint } else { without };
            let what = format!(
                "{name} ({} checkpoint)",
                if checkpoint { "with" } else { "no" }
            );
            let (dir, spans) = several_segments();
            let full_end = spans.last().unwrap().1;
            assert!(
                dir.path().join("checkpoint").exists(),
                "{what}: sealed segments"
            );
            let bad = damage(dir.path(), &spans);
            if !checkpoint {
                fs::remove_file(dir.path().join("checkpoint")).unwrap();
            }
            let before = snapshot(dir.path());
            let total = log_bytes(dir.path());

            // verify reads everything, checkpoint or not.
            let verified = rmq_lifecycle::store::verify(dir.path()).unwrap();
            assert!(!verified.is_sound(), "{what}");
            let (about_checkpoint, data): (Vec<_>, Vec<_>) = verified
                .problems
                .iter()
                .partition(|p| p.file.ends_with("checkpoint"));
            assert_eq!(data[0].offset, bad, "{what}: {verified:?}");
            assert_eq!(about_checkpoint.len(), usize::from(!checkpoint), "{what}");
            assert_eq!(verified.valid_end, bad, "{what}");

            match (CommitLog::open(config(dir.path())), expected) {
                (Err(err), Open::Refused) => {
                    assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}: {err}");
                    let msg = err.to_string();
                    let names_missing_checkpoint = !checkpoint
                        && msg.contains(&format!("{}", dir.path().join("checkpoint").display()))
                        && msg.contains("is missing");
                    assert!(
                        msg.contains(&format!("offset {bad}"))
                            || msg.contains("follows a gap")
                            || names_missing_checkpoint,
                        "{what}: {msg}"
                    );
                    assert!(msg.contains("store repair"), "{what}: {msg}");
                    assert_eq!(
                        snapshot(dir.path()),
                        before,
                        "{what}: open changed the store"
                    );
                }
                (Ok(log), Open::Untouched) => {
                    assert_eq!(log.max_offset(), full_end, "{what}");
                    // Its first read checks the sealed segment: the damage is never served.
                    let seg = bad - bad % SEG;
                    let mut buf = Vec::new();
                    let err = log.read(seg, 16, &mut buf).unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}: {err}");
                    let msg = err.to_string();
                    assert!(
                        msg.contains(&format!("{seg:020}"))
                            && msg.contains(&format!("offset {bad}")),
                        "{what}: {msg}"
                    );
                    assert!(buf.is_empty(), "{what}: nothing read");
                    assert!(log.read(bad + 1, 16, &mut buf).is_err(), "{what}: again");
                    let other = if seg == 0 { SEG } else { 0 };
                    assert_eq!(log.read(other, 16, &mut buf).unwrap(), 16, "{what}");
                    drop(log);
                    assert_eq!(
                        snapshot(dir.path()),
                        before,
                        "{what}: open changed the store"
                    );
                }
                (got, _) => panic!("{what}: expected {expected:?}, got {got:?}"),
            }

            {
                let repaired = rmq_lifecycle::store::repair(dir.path()).unwrap();
                assert_eq!(repaired.end, bad, "{what}");
                assert!(!repaired.moved.is_empty(), "{what}");
                assert_eq!(
                    log_bytes(dir.path()),
                    total,
                    "{what}: repair lost or made up bytes"
                );
                assert!(
                    rmq_lifecycle::store::verify(dir.path()).unwrap().is_sound(),
                    "{what}"
                );
            }
            let log = open(dir.path());
            assert_eq!(log.max_offset(), bad, "{what}");
            let end = log.append(b"after repair").unwrap().end;
            drop(log);
            assert_eq!(open(dir.path()).max_offset(), end, "{what}");
        }
    }
}

/// `verify` reports every problem, not the first of each segment: after a record that does not
/// check out it finds the next one that does (size, MAGIC, CRC) and goes on, so two bad records
/// in one segment are two problems, each with its file, offset and the bytes skipped. It
/// changes nothing; `repair` ends the log at the first.
#[test]
fn verify_reports_every_problem_with_the_bytes_it_skipped() {
    let (dir, spans) = several_segments();
    let in_segment = |base: u64| -> Vec<(u64, u64)> {
        spans
            .iter()
            .copied()
            .filter(|s| s.0 >= base && s.1 <= base + SEG && s.1 - s.0 > HEADER_LEN)
            .collect()
    };
    let one = in_segment(SEG);
    let (a, b) = (one[1], one[one.len() - 2]);
    let c = in_segment(3 * SEG)[2];
    for (start, end) in [a, b, c] {
        flip(dir.path(), end - 1, 0x01); // a payload bit: the CRC fails
        assert!(end > start + HEADER_LEN);
    }
    let before = snapshot(dir.path());
    let verified = rmq_lifecycle::store::verify(dir.path()).unwrap();
    assert_eq!(snapshot(dir.path()), before, "verify is read-only");
    let found: Vec<_> = verified
        .problems
        .iter()
        .map(|p| (p.file.clone(), p.offset, p.skipped))
        .collect();
    let expect = |(start, end): (u64, u64)| {
        (
            segment_path(dir.path(), start - start % SEG),
            start,
            end - start,
        )
    };
    assert_eq!(found, [expect(a), expect(b), expect(c)], "{verified:#?}");
    assert!(verified.problems.iter().all(|p| p.what.contains("CRC")));
    assert_eq!(verified.valid_end, a.0);

    // Garbage with no record after it: one problem, skipping to the file's end.
    let (dir, spans) = several_segments();
    let end = spans.last().unwrap().1;
    append_to_tail(dir.path(), &spans, &[0x5A; 300]);
    let verified = rmq_lifecycle::store::verify(dir.path()).unwrap();
    assert_eq!(verified.problems.len(), 1, "{verified:#?}");
    assert_eq!(
        (verified.problems[0].offset, verified.problems[0].skipped),
        (end, 300)
    );

    // An upstream record with a bad body CRC between two good ones: found, and the next one is.
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(31);
    let mut spans = Vec::new();
    {
        let log = open(dir.path());
        for _ in 0..6 {
            let rec = upstream_record(&mut rng, 200, MESSAGE_MAGIC);
            let at = log.append_raw(log.max_offset(), &rec).unwrap();
            spans.push((at - rec.len() as u64, at));
        }
    }
    for i in [1, 4] {
        flip(dir.path(), spans[i].0 + 100, 0x01); // a body byte
    }
    let verified = rmq_lifecycle::store::verify(dir.path()).unwrap();
    let found: Vec<_> = verified
        .problems
        .iter()
        .map(|p| (p.offset, p.skipped))
        .collect();
    assert_eq!(
        found,
        [(spans[1].0, 200), (spans[4].0, 200)],
        "{verified:#?}"
    );
}

/// The checkpoint decides what `open` may cut, so it must be right: a store past its second
/// segment without one (a roll there writes it), one naming segments the files do not hold,
/// or a malformed one is refused, naming the file and what to run, with nothing changed;
/// `verify` lists it and `repair` rewrites it, after which the store opens whole. A store of
/// two segments without one (the first seal still in flight at a crash) opens.
#[test]
fn a_missing_or_wrong_checkpoint_is_refused_and_repair_rewrites_it() {
    type Spoil = fn(&Path, u64);
    let cases: [(&str, Spoil); 3] = [
        ("missing", |dir, _| {
            fs::remove_file(dir.join("checkpoint")).unwrap()
        }),
        ("past the files", |dir, end| {
            fs::write(
                dir.join("checkpoint"),
                format!("sealed {}\n", end - end % SEG + 2 * SEG),
            )
            .unwrap()
        }),
        ("malformed", |dir, _| {
            fs::write(dir.join("checkpoint"), "sealed lots\n").unwrap()
        }),
    ];
    for (name, spoil) in cases {
        let (dir, spans) = several_segments();
        let end = spans.last().unwrap().1;
        spoil(dir.path(), end);
        let before = snapshot(dir.path());
        let err = CommitLog::open(config(dir.path())).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{name}: {msg}");
        let store = dir.path().display();
        assert!(
            msg.contains(&format!("{}", dir.path().join("checkpoint").display())),
            "{name}: {msg}"
        );
        assert!(
            msg.contains(&format!("store repair {store}")),
            "{name}: {msg}"
        );
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{name}: open changed the store"
        );

        let verified = rmq_lifecycle::store::verify(dir.path()).unwrap();
        assert_eq!(verified.problems.len(), 1, "{name}: {verified:#?}");
        assert!(verified.problems[0].file.ends_with("checkpoint"), "{name}");
        assert_eq!(verified.valid_end, end, "{name}: the log itself is sound");
        let repaired = rmq_lifecycle::store::repair(dir.path()).unwrap();
        assert!(repaired.moved.is_empty(), "{name}: {repaired:?}");
        assert_eq!(repaired.checkpoint, Some(end - end % SEG), "{name}");
        assert!(
            rmq_lifecycle::store::verify(dir.path()).unwrap().is_sound(),
            "{name}"
        );
        assert_eq!(open(dir.path()).max_offset(), end, "{name}");
    }

    // Two segments and no checkpoint: a crash before the first seal. It opens; a torn first
    // segment is cut there, the second set aside (see a_crash_inside_a_segment_roll_recovers_a_prefix).
    let dir = tempfile::tempdir().unwrap();
    let end = {
        let log = open(dir.path());
        while log.max_offset() < SEG + 100 {
            log.append(&[3; 300]).unwrap();
        }
        log.max_offset()
    };
    fs::remove_file(dir.path().join("checkpoint")).unwrap();
    assert_eq!(open(dir.path()).max_offset(), end);
}

/// A roll waits for the seal of the segment before the one it leaves, so only the last two
/// segments can be torn; a checkpoint lagging further (a crash inside a truncation lowers it
/// before the later segments move) does not make the segments between tearable: `open` reads
/// them, and damage there is refused, never cut. Damage in the last two is cut.
#[test]
fn only_the_last_two_segments_are_ever_cut() {
    let (dir, spans) = several_segments();
    let end = spans.last().unwrap().1;
    let last = end - end % SEG;
    fs::write(dir.path().join("checkpoint"), "sealed 0\n").unwrap();
    assert_eq!(
        open(dir.path()).max_offset(),
        end,
        "a lagging checkpoint opens"
    );

    let bad = spans
        .iter()
        .find(|s| s.0 >= SEG && s.1 - s.0 > HEADER_LEN)
        .unwrap();
    flip(dir.path(), bad.1 - 1, 0x01);
    fs::write(dir.path().join("checkpoint"), "sealed 0\n").unwrap(); // the open moved it
    let before = snapshot(dir.path());
    let msg = CommitLog::open(config(dir.path())).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("{:020}", SEG)) && msg.contains(&format!("offset {}", bad.0)),
        "{msg}"
    );
    assert_eq!(snapshot(dir.path()), before, "nothing changed");
    flip(dir.path(), bad.1 - 1, 0x01); // healed

    // In the segment before the last (its seal may have been in flight): cut, the last set aside.
    let torn = spans
        .iter()
        .find(|s| s.0 >= last - SEG && s.1 - s.0 > HEADER_LEN)
        .unwrap();
    assert!(torn.1 <= last);
    flip(dir.path(), torn.1 - 1, 0x01);
    fs::write(dir.path().join("checkpoint"), "sealed 0\n").unwrap();
    let on_disk: u64 = segment_files(dir.path()).iter().map(|p| file_len(p)).sum();
    let log = open(dir.path());
    assert_eq!(log.max_offset(), torn.0);
    drop(log);
    let kept: u64 = segment_files(dir.path()).iter().map(|p| file_len(p)).sum();
    assert_eq!(kept + quarantined(dir.path()), on_disk, "nothing destroyed");
}

/// Rolls keep the checkpoint at most one segment behind the last segment file, so a crash at
/// any moment leaves at most the last two segments unsealed.
#[test]
fn the_checkpoint_never_lags_more_than_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut rng = Rng(77);
    for _ in 0..400 {
        log.append(&rng.payload(900)).unwrap();
        let last = log.segment_base(log.max_offset() - 1); // the last segment file
        let sealed: u64 = fs::read_to_string(dir.path().join("checkpoint"))
            .map(|t| t.trim().strip_prefix("sealed ").unwrap().parse().unwrap())
            .unwrap_or(0);
        assert!(
            sealed + SEG >= last,
            "checkpoint {sealed}, last segment {last}"
        );
    }
}

#[test]
fn a_segment_size_mismatch_is_refused_and_nothing_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        fill(&log, &mut Rng(6), 30, 900);
    }
    let before = snapshot(dir.path());
    for size in [SEG / 2, SEG * 2] {
        let err = CommitLog::open(StoreConfig {
            segment_size: size,
            ..config(dir.path())
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(
            err.to_string()
                .contains(&format!("created with segment size {SEG}, not {size}")),
            "{err}"
        );
    }
    assert_eq!(snapshot(dir.path()), before);
    let err = CommitLog::open(StoreConfig {
        segment_size: 10,
        ..config(dir.path())
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// A second open of a store (another process, or this one) is refused while the first holds
/// it, naming the holder; closing the first releases it.
#[test]
fn a_store_is_opened_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let err = CommitLog::open(config(dir.path())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceBusy, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("in use by process {}", std::process::id())),
        "{err}"
    );
    assert!(rmq_lifecycle::store::verify(dir.path()).is_err());
    drop(first);
    open(dir.path());
}

/// A directory the store did not create is refused with nothing written into it: another
/// program's files (a Java broker's zero-filled segment, say) or a stray segment-named file.
#[test]
fn a_directory_the_store_did_not_write_is_refused() {
    for (name, bytes) in [
        ("00000000000000000000", vec![0x5A; 1000]),
        ("00000000000000000000", vec![0; 4096]),
        ("config.json", b"{}".to_vec()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(name), &bytes).unwrap();
        let before = snapshot(dir.path());
        let err = CommitLog::open(config(dir.path())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        assert_eq!(snapshot(dir.path()), before, "{name}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "{name}");
    }
    // An empty directory, or one that does not exist yet, becomes a store.
    let dir = tempfile::tempdir().unwrap();
    open(&dir.path().join("new/store"));
    let dir = tempfile::tempdir().unwrap();
    open(dir.path());
}

/// An empty log reserves no disk; its first append reserves the segment.
#[cfg(target_os = "linux")]
#[test]
fn an_empty_log_reserves_no_disk() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let size = 1 << 20;
    let log = open_sized(dir.path(), size);
    let allocated = || -> u64 {
        segment_files(dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().blocks() * 512)
            .sum()
    };
    assert_eq!(allocated(), 0);
    drop(log);
    let log = open_sized(dir.path(), size);
    assert_eq!(allocated(), 0, "reopening an empty log reserves nothing");
    log.append(b"first").unwrap();
    assert!(allocated() >= size);
}

/// A crash between any two steps of a segment roll (sync the full segment, write the
/// checkpoint, create the next file, write into it) recovers to a prefix of what was appended.
#[test]
fn a_crash_inside_a_segment_roll_recovers_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(12);
    let full_end;
    {
        let log = open(dir.path());
        while log.max_offset() < SEG - 1000 {
            log.append(&rng.payload(300)).unwrap();
        }
        // The next record does not fit: a blank, then the roll.
        log.append(&vec![7; 1500]).unwrap();
        full_end = log.max_offset();
        assert!(full_end > SEG);
    }
    let sealed = fs::read(segment_path(dir.path(), 0)).unwrap();
    assert_eq!(sealed.len() as u64, SEG);
    let base_bytes = read_all(&open(dir.path()), 0, SEG);
    // (step reached, files to put back): each a state a crash can leave.
    let states: [(&str, bool, Option<u64>); 4] = [
        (
            "full segment synced, checkpoint not yet written",
            false,
            None,
        ),
        (
            "checkpoint written, next segment not yet created",
            true,
            None,
        ),
        ("next segment created, empty", true, Some(0)),
        ("next segment holds a torn record", true, Some(700)),
    ];
    for (name, checkpoint, next) in states {
        let copy = tempfile::tempdir().unwrap();
        for f in ["rmq-lifecycle.store", "00000000000000000000"] {
            fs::copy(dir.path().join(f), copy.path().join(f)).unwrap();
        }
        if checkpoint {
            fs::copy(
                dir.path().join("checkpoint"),
                copy.path().join("checkpoint"),
            )
            .unwrap();
        }
        if let Some(len) = next {
            let bytes = fs::read(segment_path(dir.path(), SEG)).unwrap();
            fs::write(segment_path(copy.path(), SEG), &bytes[..len as usize]).unwrap();
        }
        let log = open(copy.path());
        assert_eq!(log.max_offset(), SEG, "{name}");
        assert_eq!(read_all(&log, 0, SEG), base_bytes, "{name}");
        let end = log.append(&vec![7; 1500]).unwrap().end;
        assert_eq!(end, full_end, "{name}");
    }

    // The seal runs in the background: a crash can leave the full segment torn (never synced)
    // while the next one already holds bytes. The log ends at the tear; the next segment is
    // set aside whole.
    let copy = tempfile::tempdir().unwrap();
    fs::copy(
        dir.path().join("rmq-lifecycle.store"),
        copy.path().join("rmq-lifecycle.store"),
    )
    .unwrap();
    fs::write(segment_path(copy.path(), 0), &sealed[..1000]).unwrap();
    let next = fs::read(segment_path(dir.path(), SEG)).unwrap();
    fs::write(segment_path(copy.path(), SEG), &next).unwrap();
    let log = open(copy.path());
    let max = log.max_offset();
    assert!(max <= 1000, "a prefix: {max}");
    assert_eq!(
        read_all(&log, 0, max),
        base_bytes[..max as usize],
        "the same bytes"
    );
    assert_eq!(
        quarantined(copy.path()),
        1000 - max + next.len() as u64,
        "the torn record and the next segment are kept aside"
    );
}

#[test]
fn append_raw_at_the_wrong_offset_is_refused_and_changes_nothing() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(mdir.path());
    let slave = open(sdir.path());
    let mut rng = Rng(11);
    fill(&master, &mut rng, 20, 700);
    replicate(&master, &slave, &mut rng, 500);
    fill(&master, &mut rng, 5, 700);
    let (max, sum) = (slave.max_offset(), digest(&slave));
    let mut batch = Vec::new();
    master.read(max, 300, &mut batch).unwrap();
    for offset in [0, max - 1, max + 1, u64::MAX] {
        let err = slave.append_raw(offset, &batch).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("only at its max offset"), "{err}");
    }
    assert_eq!((slave.max_offset(), digest(&slave)), (max, sum));
    let last = slave.segment_base(max - 1);
    assert_eq!(file_len(&segment_path(sdir.path(), last)), max - last);
    assert_eq!(
        slave.append_raw(max, &batch).unwrap(),
        max + batch.len() as u64
    );
}

#[test]
fn append_raw_refuses_bytes_that_do_not_frame_as_records() {
    let dir = tempfile::tempdir().unwrap();
    let slave = open(dir.path());
    let err = slave.append_raw(0, b"GET / HTTP/1.1\r\n\r\n").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    assert_eq!(slave.max_offset(), 0);
    assert_eq!(file_len(&segment_path(dir.path(), 0)), 0);

    // A header split across batches is checked when its 8th byte arrives.
    let mut rng = Rng(12);
    let good = upstream_record(&mut rng, 100, MESSAGE_MAGIC);
    assert_eq!(slave.append_raw(0, &good[..3]).unwrap(), 3);
    assert_eq!(slave.append_raw(3, &good[3..50]).unwrap(), 50);
    assert_eq!(slave.append_raw(50, &good[50..]).unwrap(), 100);
    let mut bad = upstream_record(&mut rng, 100, MESSAGE_MAGIC);
    bad[0..4].copy_from_slice(&(SEG as u32).to_be_bytes()); // crosses the segment end
    assert_eq!(slave.append_raw(100, &bad[..5]).unwrap(), 105);
    let err = slave.append_raw(105, &bad[5..]).unwrap_err();
    assert!(err.to_string().contains("crosses the segment end"), "{err}");
    assert_eq!(slave.max_offset(), 105);

    // The log ends inside a record: the master path waits for a reopen to recover.
    assert!(slave.append(b"x").is_err());

    // Vectored: a bad header split across pieces refuses the whole append, good pieces included.
    let dir = tempfile::tempdir().unwrap();
    let slave = open(dir.path());
    let good = upstream_record(&mut rng, 100, MESSAGE_MAGIC);
    let mut bad = upstream_record(&mut rng, 100, MESSAGE_MAGIC);
    bad[0..4].copy_from_slice(&(SEG as u32).to_be_bytes());
    let err = slave
        .append_raw_vectored(0, &[&good[..60], &good[60..], &bad[..3], &[], &bad[3..]])
        .unwrap_err();
    assert!(err.to_string().contains("crosses the segment end"), "{err}");
    assert_eq!(slave.max_offset(), 0);
    assert_eq!(file_len(&segment_path(dir.path(), 0)), 0, "nothing written");
    assert_eq!(
        slave
            .append_raw_vectored(0, &[&good[..60], &[], &good[60..]])
            .unwrap(),
        100
    );
    assert_eq!(slave.append_raw_vectored(100, &[&[], &[]]).unwrap(), 100);

    drop(slave);
    let log = open(dir.path());
    assert_eq!(log.max_offset(), 100);
    assert_eq!(log.append(b"x").unwrap().start, 100);
}

/// A read full of tiny transfers holds more bodies than one `pwritev` takes.
#[test]
fn append_raw_vectored_takes_more_pieces_than_one_pwritev() {
    let mut rng = Rng(0x010F_1EC5);
    let dir = tempfile::tempdir().unwrap();
    let (master, slave) = (open(&dir.path().join("m")), open(&dir.path().join("s")));
    fill(&master, &mut rng, 40, 300);
    let mut bytes = Vec::new();
    master.read(0, SEG as usize, &mut bytes).unwrap();
    let pieces: Vec<&[u8]> = bytes.chunks(3).collect();
    assert!(pieces.len() > 1024, "{} pieces", pieces.len());
    assert_eq!(
        slave.append_raw_vectored(0, &pieces).unwrap(),
        bytes.len() as u64
    );
    assert_eq!(
        slave.digest(0, bytes.len() as u64).unwrap(),
        master.digest(0, bytes.len() as u64).unwrap()
    );
}

#[test]
fn a_slave_fed_from_master_reads_is_byte_identical_and_recovers() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(mdir.path());
    let slave = open(sdir.path());
    let mut rng = Rng(2024);
    for round in 0..8 {
        fill(&master, &mut rng, 40, 1500);
        let max_batch = [1, 7, 13, 100, 1000, 5000, SEG, 64][round];
        replicate(&master, &slave, &mut rng, max_batch);
        assert_eq!(slave.max_offset(), master.max_offset());
        assert_eq!(digest(&slave), digest(&master), "round {round}");
    }
    let (max, sum) = (slave.max_offset(), digest(&slave));
    drop(slave);
    let slave = open(sdir.path());
    assert_eq!((slave.max_offset(), digest(&slave)), (max, sum));
    fill(&master, &mut rng, 10, 1500);
    replicate(&master, &slave, &mut rng, 2000);
    assert_eq!(digest(&slave), digest(&master));
}

#[test]
fn a_fresh_slave_starts_at_the_masters_last_segment() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(mdir.path());
    let mut rng = Rng(77);
    fill(&master, &mut rng, 80, 900);
    let base = master.segment_base(master.max_offset());
    assert!(base >= 3 * SEG);

    let slave = open(sdir.path());
    assert_eq!(
        slave.reset_base(base + 1).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    slave.reset_base(base).unwrap();
    assert_eq!((slave.min_offset(), slave.max_offset()), (base, base));
    assert_eq!(
        slave
            .read(base - 1, 10, &mut Vec::new())
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    replicate(&master, &slave, &mut rng, 700);
    fill(&master, &mut rng, 30, 900);
    replicate(&master, &slave, &mut rng, 700);
    let max = master.max_offset();
    assert_eq!(
        slave.digest(base, max).unwrap(),
        master.digest(base, max).unwrap()
    );
    let err = slave.reset_base(0).unwrap_err();
    assert!(err.to_string().contains("only an empty log"), "{err}");
    assert!(!segment_path(sdir.path(), 0).exists());
    drop(slave);

    let slave = open(sdir.path());
    assert_eq!((slave.min_offset(), slave.max_offset()), (base, max));
    assert_eq!(
        slave.digest(base, max).unwrap(),
        master.digest(base, max).unwrap()
    );
}

#[test]
fn an_empty_log_keeps_its_base_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).reset_base(5 * SEG).unwrap();
    let log = open(dir.path());
    assert_eq!((log.min_offset(), log.max_offset()), (5 * SEG, 5 * SEG));
    assert!(log.is_empty());
    assert_eq!(log.append(b"first").unwrap().start, 5 * SEG);
    assert_eq!(log.len(), HEADER_LEN + 5);
}

#[test]
fn upstream_message_records_are_kept_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(31337);
    let (java, placed) = upstream_log(&mut rng, 60, 0);
    {
        let slave = open(dir.path());
        let mut pos = 0;
        while pos < java.len() {
            let n = (1 + rng.below(900) as usize).min(java.len() - pos);
            slave.append_raw(pos as u64, &java[pos..pos + n]).unwrap();
            pos += n;
        }
        assert_eq!(read_all(&slave, 0, slave.max_offset()), java);
        // Our records go on after upstream's, padding an 8..11-byte tail with an 8-byte blank.
        fill(&slave, &mut rng, 10, 900);
    }
    let log = open(dir.path());
    let bytes = read_all(&log, 0, log.max_offset());
    assert_eq!(&bytes[..java.len()], &java[..]);
    let (parsed, used) = parse(&bytes, 0);
    assert_eq!(used, bytes.len());
    let upstream = parsed
        .iter()
        .filter(|p| matches!(p, Parsed::Upstream(_)))
        .count();
    assert_eq!((upstream, ours(&parsed).len()), (placed, 10));
}

#[test]
fn an_upstream_blank_of_eight_bytes_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(8);
    let mut java = upstream_record(&mut rng, (SEG - MIN_BLANK_LEN) as usize, MESSAGE_MAGIC);
    java.extend_from_slice(&(MIN_BLANK_LEN as u32).to_be_bytes());
    java.extend_from_slice(&BLANK_MAGIC.to_be_bytes());
    java.extend_from_slice(&upstream_record(&mut rng, 200, MESSAGE_MAGIC));
    open(dir.path()).append_raw(0, &java).unwrap();
    let log = open(dir.path());
    assert_eq!(log.max_offset(), SEG + 200);
}

#[test]
fn a_reader_racing_an_appender_never_sees_unpublished_bytes() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    const RECORDS: usize = 3000;
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut rng = Rng(1);
            fill(&log, &mut rng, RECORDS, 700);
            log.max_offset()
        })
    };
    let mut rng = Rng(2);
    let (mut pos, mut pending, mut seen, mut reads) = (0u64, Vec::new(), 0, 0);
    let mut pending_base = 0;
    while seen < RECORDS {
        let before = pending.len();
        let n = log
            .read(pos, 1 + rng.below(3000) as usize, &mut pending)
            .unwrap();
        assert_eq!(pending.len(), before + n);
        assert!(
            pos + n as u64 <= log.max_offset(),
            "read past the published max"
        );
        pos += n as u64;
        reads += 1;
        let (parsed, used) = parse(&pending, pending_base);
        seen += ours(&parsed).len();
        pending.drain(..used);
        pending_base += used as u64;
        if n == 0 {
            std::thread::yield_now();
        }
    }
    let end = writer.join().unwrap();
    assert_eq!((pos, pending.len()), (end, 0));
    assert!(
        reads > 100,
        "the reader should have raced the writer ({reads} reads)"
    );
}

#[test]
fn the_store_names_no_runtime_no_clock_and_no_std_sync() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
    let mut files = 0;
    for entry in fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for needle in [
                "tokio",
                "std::sync",
                "Instant::now",
                "SystemTime",
                "loom",
                "shuttle",
            ] {
                assert!(
                    !line.contains(needle),
                    "{}:{}: `{needle}`",
                    path.display(),
                    n + 1
                );
            }
        }
        files += 1;
    }
    assert!(files >= 3);
}

/// `file_range` names exactly the bytes `read` returns (the master's writer relies on it): the
/// same length, never across a segment end or past the max offset, `None` at the max offset.
#[test]
fn file_range_names_the_bytes_read_returns() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut rng = Rng(0x5EED_F11E);
    fill(&log, &mut rng, 40, 600);
    let max = log.max_offset();
    assert!(max > 3 * SEG, "several segments");
    let mut offset = 0;
    while offset < max {
        let want = 1 + rng.below(2 * SEG) as usize;
        let range = log
            .file_range(offset, want)
            .unwrap()
            .expect("bytes below the max");
        let mut read = Vec::new();
        assert_eq!(log.read(offset, want, &mut read).unwrap(), range.len);
        assert!(range.len <= want);
        assert!(range.pos + range.len as u64 <= SEG, "within one segment");
        let mut direct = vec![0u8; range.len];
        range.file.read_exact_at(&mut direct, range.pos).unwrap();
        assert_eq!(direct, read, "at {offset}");
        offset += range.len as u64;
    }
    assert!(log.file_range(max, 10).unwrap().is_none());
    assert!(log.file_range(max + 1, 10).is_err());
}

/// A new segment's disk blocks are reserved up front (so appends do not allocate them one write
/// at a time), while its length stays the data's, which recovery relies on.
#[cfg(target_os = "linux")]
#[test]
fn segments_are_preallocated_but_keep_their_data_length() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let size = 1 << 20;
    let log = open_sized(dir.path(), size);
    let end = log.append(b"preallocated").unwrap().end;
    let meta = fs::metadata(segment_path(dir.path(), 0)).unwrap();
    assert_eq!(meta.len(), end, "the file length is the data length");
    assert!(
        meta.blocks() * 512 >= size,
        "{} bytes allocated for a {size}-byte segment",
        meta.blocks() * 512
    );
    drop(log);
    let log = open_sized(dir.path(), size);
    assert_eq!(log.max_offset(), end, "recovery is unchanged");
    drop(log);

    // Recovery cuts a torn tail (which frees the blocks past the new end) and reserves the
    // active segment's rest again.
    use std::io::Write;
    let path = segment_path(dir.path(), 0);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[0xEE; 100])
        .unwrap();
    let log = open_sized(dir.path(), size);
    assert_eq!(log.max_offset(), end, "the torn tail is cut");
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), end);
    assert!(
        meta.blocks() * 512 >= size,
        "{} bytes allocated after recovery",
        meta.blocks() * 512
    );
}

fn epoch(epoch: u32, start: u64) -> EpochEntry {
    EpochEntry { epoch, start }
}

/// Epochs are recorded durably and survive a reopen; a promoted log with bytes from before
/// epochs records them as epoch 0; out-of-order entries are refused.
#[test]
fn epochs_are_recorded_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert!(log.epochs().is_empty());
    fill(&log, &mut Rng(3), 5, 300);
    let max = log.max_offset();
    assert_eq!(log.begin_epoch(1).unwrap(), epoch(1, max));
    assert_eq!(log.epochs(), [epoch(0, 0), epoch(1, max)]);
    assert!(log.begin_epoch(1).is_err(), "epochs must increase");
    fill(&log, &mut Rng(4), 5, 300);
    assert!(log.append_epoch(epoch(2, log.max_offset() + 1)).is_err());
    log.append_epoch(epoch(2, log.max_offset())).unwrap();
    let epochs = log.epochs();
    drop(log);
    assert_eq!(open(dir.path()).epochs(), epochs);
}

/// A truncation cuts the log back to a consistent point, keeps the cut bytes (and whole later
/// segments) in the quarantine, drops the epochs at or past the point, and the log goes on;
/// a crash between cutting the log and rewriting the epoch file is repaired by the next open.
#[test]
fn truncation_sets_the_cut_bytes_aside_and_drops_later_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.begin_epoch(1).unwrap();
    fill(&log, &mut Rng(8), 20, 900);
    let point = log.max_offset();
    log.begin_epoch(2).unwrap();
    fill(&log, &mut Rng(9), 40, 900);
    let before_bytes: u64 = segment_files(dir.path()).iter().map(|p| file_len(p)).sum();
    let mut keep = read_all(&log, 0, point);
    keep.truncate(point as usize);
    assert!(log.max_offset() > point + 2 * SEG);

    log.truncate(point).unwrap();
    assert_eq!(log.max_offset(), point);
    assert_eq!(log.epochs(), [epoch(1, 0)]);
    assert!(read_all(&log, 0, point) == keep, "the kept bytes changed");
    let after_bytes: u64 = segment_files(dir.path()).iter().map(|p| file_len(p)).sum();
    assert_eq!(
        after_bytes + quarantined(dir.path()),
        before_bytes,
        "nothing destroyed"
    );
    assert!(log.truncate(point + 1).is_err(), "past the end");
    log.append_epoch(epoch(3, point)).unwrap();
    let end = log.append(b"epoch 3").unwrap().end;
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.max_offset(), end);
    assert_eq!(log.epochs(), [epoch(1, 0), epoch(3, point)]);
    drop(log);

    // A crash after the log was cut and before the epoch file was rewritten: the old epoch
    // file names an epoch past the end, which the next open drops (one starting exactly at
    // the end describes no byte and stays until the next truncation).
    let crashed = tempfile::tempdir().unwrap();
    let inside;
    {
        let log = open(crashed.path());
        log.begin_epoch(1).unwrap();
        fill(&log, &mut Rng(8), 10, 900);
        inside = log.max_offset();
        fill(&log, &mut Rng(9), 10, 900);
        log.begin_epoch(2).unwrap();
        fill(&log, &mut Rng(10), 20, 900);
    }
    let saved = fs::read(crashed.path().join("epochs")).unwrap();
    open(crashed.path()).truncate(inside).unwrap();
    fs::write(crashed.path().join("epochs"), saved).unwrap();
    let log = open(crashed.path());
    assert_eq!(log.max_offset(), inside);
    assert_eq!(
        log.epochs(),
        [epoch(1, 0)],
        "the entry past the end is dropped"
    );
}

/// A slave promoted while its log ends inside a record starts its epoch at the last whole
/// record; the partial record is set aside, not left under the new epoch.
#[test]
fn a_new_epoch_starts_at_a_record_boundary() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(mdir.path());
    let mut last = None;
    for i in 0..3u8 {
        last = Some(master.append(&[i; 500]).unwrap());
    }
    let last = last.unwrap();
    let bytes = read_all(&master, 0, last.end);
    let slave = open(sdir.path());
    slave.append_raw(0, &bytes[..bytes.len() - 10]).unwrap();
    assert_eq!(slave.max_offset(), last.end - 10);
    assert_eq!(slave.begin_epoch(1).unwrap(), epoch(1, last.start));
    assert_eq!(slave.max_offset(), last.start);
    assert_eq!(quarantined(sdir.path()), last.end - 10 - last.start);
    slave.append(b"new master").unwrap();
}

/// A slave whose segment size is not its master's refuses the first bytes that do not frame at
/// its own segment ends, naming both ends and which way the sizes differ.
#[test]
fn a_segment_size_mismatch_with_the_master_is_named() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(mdir.path());
    fill(&master, &mut Rng(3), 40, 900);
    assert!(master.max_offset() > 2 * SEG);
    let slave = CommitLog::open(StoreConfig {
        segment_size: SEG / 2,
        ..config(sdir.path())
    })
    .unwrap();
    let bytes = read_all(&master, 0, master.max_offset());
    let err = slave.append_raw(0, &bytes).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert!(
        err.to_string().contains(&format!(
            "crosses this store's segment end at {}: the master's segments are larger than ours ({} bytes)",
            SEG / 2,
            SEG / 2
        )),
        "{err}"
    );
    assert_eq!(slave.max_offset(), 0, "nothing written");

    // Larger segments on the slave: the master's BLANK does not fill the slave's segment.
    let sdir = tempfile::tempdir().unwrap();
    let slave = CommitLog::open(StoreConfig {
        segment_size: SEG * 2,
        ..config(sdir.path())
    })
    .unwrap();
    let err = slave.append_raw(0, &bytes).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("The master's segment ends at {SEG}")),
        "{err}"
    );
    assert_eq!(slave.max_offset(), 0, "nothing written");
}

/// Upstream records keep upstream's own checks in recovery: a record whose body does not match
/// its BODYCRC ends the log there (its bytes set aside).
#[test]
fn an_upstream_record_with_a_bad_body_crc_ends_the_recovered_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(44);
    let a = upstream_record(&mut rng, 300, MESSAGE_MAGIC);
    let mut b = upstream_record(&mut rng, 300, MESSAGE_MAGIC_V2);
    b[100] ^= 0x01; // a body byte
    {
        let slave = open(dir.path());
        slave.append_raw(0, &[a.clone(), b].concat()).unwrap();
    }
    let log = open(dir.path());
    assert_eq!(log.max_offset(), 300);
    assert_eq!(quarantined(dir.path()), 300);
    assert!(read_all(&log, 0, 300) == a);
}

mod messages {
    use super::*;
    use bytes::Bytes;
    use rmq_lifecycle::core::message::{self, AUTO_CREATE_TOPIC, SendHeader, SendRules};
    use rmq_lifecycle::core::remoting::code;
    use rmq_lifecycle::store::messages::MessageLog;
    use std::net::SocketAddr;
    use std::sync::Arc;

    fn header(topic: &str, queue_id: i32, sys_flag: i32) -> SendHeader {
        SendHeader {
            producer_group: "pg".into(),
            topic: topic.into(),
            default_topic: AUTO_CREATE_TOPIC.into(),
            default_topic_queue_nums: 4,
            queue_id,
            sys_flag,
            born_timestamp: 1,
            flag: 0,
            properties: None,
            reconsume_times: 0,
            unit_mode: false,
            max_reconsume_times: None,
            batch: false,
        }
    }

    const BORN: &str = "10.0.0.9:40000";
    const STORE: &str = "127.0.0.1:10911";

    fn send(log: &MessageLog, h: &SendHeader, body: &[u8]) -> rmq_lifecycle::store::messages::Sent {
        let body = Bytes::copy_from_slice(body);
        log.send(
            h,
            Some(&body),
            BORN.parse().unwrap(),
            STORE.parse().unwrap(),
            || 7,
        )
        .expect("stored")
    }

    #[test]
    fn queue_offsets_count_per_queue_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(0x5eed);
        {
            let log = Arc::new(open(dir.path()));
            let (messages, found) =
                MessageLog::open(log.clone(), SendRules::default(), 1, 2).unwrap();
            assert_eq!(found.messages, 0);
            for i in 0..200 {
                let queue = i % 3;
                let sent = send(
                    &messages,
                    &header("T", queue, 0),
                    &rng.payload(300).into_iter().chain([1]).collect::<Vec<_>>(),
                );
                assert_eq!(sent.result.queue_offset, (i / 3) as i64, "message {i}");
                assert_eq!(sent.result.queue_id, queue);
                let store: SocketAddr = STORE.parse().unwrap();
                assert_eq!(
                    sent.result.msg_id,
                    message::msg_id(store, sent.appended.start)
                );
            }
            // A prepared transaction record takes no offset.
            let prepared = send(&messages, &header("T", 0, 0x4), b"half");
            assert_eq!(prepared.result.queue_offset, 0);
            assert_eq!(messages.next_queue_offset("T", 0), 67);
            log.flush().unwrap();
            assert!(log.max_offset() > SEG, "the messages cross segments");
        }
        let log = Arc::new(open(dir.path()));
        let (messages, found) = MessageLog::open(log, SendRules::default(), 1, 2).unwrap();
        assert_eq!(found.messages, 201);
        assert_eq!(found.queues, 3);
        assert_eq!(messages.next_queue_offset("T", 0), 67);
        assert_eq!(messages.next_queue_offset("T", 2), 66);
        assert_eq!(
            send(&messages, &header("T", 1, 0), b"x")
                .result
                .queue_offset,
            67
        );
    }

    /// A group commit across segment ends: refusals in the middle take no offset, the others
    /// get consecutive offsets per queue and land as sending them one by one would place them.
    #[test]
    fn a_group_commit_places_messages_as_one_by_one_sends_would() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (one, _) =
            MessageLog::open(Arc::new(open(a.path())), SendRules::default(), 1, 2).unwrap();
        let (all, _) =
            MessageLog::open(Arc::new(open(b.path())), SendRules::default(), 1, 2).unwrap();
        let mut rng = Rng(7);
        let mut sends = Vec::new();
        for i in 0..60 {
            let topic = if i % 7 == 3 { "bad topic" } else { "T" };
            let body = Bytes::from(rng.payload(400).into_iter().chain([1]).collect::<Vec<_>>());
            sends.push((header(topic, i % 2, 0), Some(body)));
        }
        let (born, store) = (BORN.parse().unwrap(), STORE.parse().unwrap());
        let batched = all.send_all(
            sends.iter().map(|(h, b)| (h, b.as_ref())),
            born,
            store,
            || 7,
        );
        for ((h, b), got) in sends.iter().zip(&batched) {
            let alone = one.send(h, b.as_ref(), born, store, || 7);
            assert_eq!(alone, *got);
        }
        assert_eq!(batched.iter().filter(|r| r.is_err()).count(), 9);
        assert!(
            all.log().max_offset() > 2 * SEG,
            "the batch crosses segment ends"
        );
        let (ma, mb) = (one.log().max_offset(), all.log().max_offset());
        assert_eq!(ma, mb);
        assert_eq!(
            one.log().digest(0, ma).unwrap(),
            all.log().digest(0, mb).unwrap()
        );
        all.log().flush().unwrap();
        drop(all);
        let (again, found) =
            MessageLog::open(Arc::new(open(b.path())), SendRules::default(), 1, 2).unwrap();
        assert_eq!(found.messages, 51);
        assert_eq!(
            again.next_queue_offset("T", 0),
            one.next_queue_offset("T", 0)
        );
    }

    #[test]
    fn a_refused_send_writes_nothing_and_takes_no_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(open(dir.path()));
        let (messages, _) = MessageLog::open(log.clone(), SendRules::default(), 1, 2).unwrap();
        let body = Bytes::from(vec![7u8; SEG as usize]); // longer than a segment
        let r = messages
            .send(
                &header("T", 0, 0),
                Some(&body),
                BORN.parse().unwrap(),
                STORE.parse().unwrap(),
                || 0,
            )
            .unwrap_err();
        assert_eq!(r.code, code::SERVICE_NOT_AVAILABLE, "{}", r.remark);
        assert_eq!(log.max_offset(), 0);
        assert_eq!(messages.next_queue_offset("T", 0), 0);
        assert_eq!(
            send(&messages, &header("T", 0, 0), b"ok")
                .result
                .queue_offset,
            0
        );
    }

    #[test]
    fn a_slave_accepts_the_records_and_recovery_keeps_them() {
        let (m, s) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let master = Arc::new(open(m.path()));
        let (messages, _) = MessageLog::open(master.clone(), SendRules::default(), 1, 2).unwrap();
        for i in 0..40 {
            send(&messages, &header("Topic", -1, 0), &vec![i as u8; 100 + i]);
        }
        let slave = open(s.path());
        let mut at = 0;
        while at < master.max_offset() {
            let mut buf = Vec::new();
            master.read(at, 1000, &mut buf).unwrap();
            at = slave.append_raw(at, &buf).unwrap();
        }
        assert_eq!(slave.digest(0, at).unwrap(), master.digest(0, at).unwrap());
        drop(slave);
        let slave = open(s.path());
        assert_eq!(slave.max_offset(), master.max_offset());
    }
}

/// `append_message` writes only bytes that frame as an upstream message whose body CRC holds.
#[test]
fn append_message_refuses_bytes_recovery_would_not_keep() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let bad_magic = log.append_message(100, |_, dst| {
        dst[..4].copy_from_slice(&100u32.to_be_bytes());
        dst[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    });
    assert!(bad_magic.is_err());
    let bad_len = log.append_message(100, |_, dst| {
        dst[..4].copy_from_slice(&90u32.to_be_bytes());
        dst[4..8].copy_from_slice(&MESSAGE_MAGIC.to_be_bytes());
    });
    assert!(bad_len.is_err());
    assert_eq!(log.max_offset(), 0, "nothing written");
}
