//! The record envelope, sans IO: upstream's `[TOTALSIZE i32][MAGIC i32][BODYCRC i32][payload]`,
//! all big-endian, where TOTALSIZE counts the whole record.
//!
//! The log keeps three kinds of record: ours (`MAGIC`, CRC32 of the payload), upstream's messages
//! (bytes a slave receives from a Java master; their CRC covers only the body inside the message,
//! so only size and bounds are checked) and upstream's end-of-segment `BLANK` filler.

/// Bytes of the envelope before the payload: TOTALSIZE, MAGIC, BODYCRC.
pub const HEADER_LEN: u64 = 12;

/// MAGIC of the records [`CommitLog::append`](super::CommitLog::append) writes: "RMQ1".
pub const MAGIC: u32 = 0x524D_5131;

/// Upstream's `BLANK_MAGIC_CODE` (-875286124): fills a segment's end that the next record does
/// not fit in.
pub const BLANK_MAGIC: u32 = 0xCBD4_3194;

/// Upstream's `MESSAGE_MAGIC_CODE` (-626843481).
pub const MESSAGE_MAGIC: u32 = crate::core::message::MAGIC_V1;

/// Upstream's `MESSAGE_MAGIC_CODE_V2` (-626843477), used for topics longer than 127 bytes.
pub const MESSAGE_MAGIC_V2: u32 = crate::core::message::MAGIC_V2;

/// The shortest BLANK: TOTALSIZE and MAGIC. Upstream writes only these 8 bytes and places a
/// message only if it leaves at least them (`END_FILE_MIN_BLANK_LENGTH`), so a Java master's
/// segments end in 8..=11-byte blanks that recovery must accept.
pub const MIN_BLANK_LEN: u64 = 8;

/// The header of our record carrying `payload`. The caller has checked that the record fits a
/// segment, and segments are at most `i32::MAX` bytes, so TOTALSIZE cannot overflow.
pub fn header(payload: &[u8]) -> [u8; HEADER_LEN as usize] {
    let total = HEADER_LEN as usize + payload.len();
    let mut h = [0; HEADER_LEN as usize];
    h[0..4].copy_from_slice(&(total as u32).to_be_bytes());
    h[4..8].copy_from_slice(&MAGIC.to_be_bytes());
    h[8..12].copy_from_slice(&crc32fast::hash(payload).to_be_bytes());
    h
}

/// The header of a BLANK of `len` bytes (the rest of the blank is zeros or unspecified).
pub(crate) fn blank_header(len: u64) -> [u8; MIN_BLANK_LEN as usize] {
    let mut h = [0; MIN_BLANK_LEN as usize];
    h[0..4].copy_from_slice(&(len as u32).to_be_bytes());
    h[4..8].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
    h
}

/// Whether our record of `len` bytes can start where `room` bytes are left in the segment: it
/// fills them exactly or leaves room for a full 12-byte envelope (stricter than the 8 bytes the
/// reader accepts, so our blanks always carry a whole header).
pub(crate) fn fits(len: u64, room: u64) -> bool {
    len == room || len + HEADER_LEN <= room
}

/// What a valid header starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Our record: the payload's CRC32 is in BODYCRC.
    Ours,
    /// An upstream message: size and bounds when it arrives; in recovery also its body length and
    /// BODYCRC ([`check_upstream`]).
    Upstream,
    /// Filler up to the segment end.
    Blank,
}

/// Checks the first 8 bytes of a record (TOTALSIZE, MAGIC) that starts with `room` bytes left in
/// its segment; returns its kind and length, or why the log must end here.
///
/// A record never crosses a segment and never leaves 1..=7 bytes before the segment end (too few
/// for a BLANK), so every record start has room for a BLANK header: the same rule holds for the
/// recovery scan and for the frames a slave receives, so `append_raw` accepts only what recovery
/// keeps (CRCs aside: a record may arrive split across batches).
pub(crate) fn check(head: [u8; MIN_BLANK_LEN as usize], room: u64) -> Result<(Frame, u64), String> {
    let [s0, s1, s2, s3, m0, m1, m2, m3] = head;
    let size = i32::from_be_bytes([s0, s1, s2, s3]);
    let magic = u32::from_be_bytes([m0, m1, m2, m3]);
    let frame = match magic {
        MAGIC => Frame::Ours,
        MESSAGE_MAGIC | MESSAGE_MAGIC_V2 => Frame::Upstream,
        BLANK_MAGIC => Frame::Blank,
        _ => return Err(format!("unknown MAGIC {magic:#010x}")),
    };
    let len = u64::try_from(size).map_err(|_| format!("negative TOTALSIZE {size}"))?;
    if frame == Frame::Blank {
        return if len == room && len >= MIN_BLANK_LEN {
            Ok((frame, len))
        } else {
            Err(format!(
                "BLANK of {len} bytes where {room} are left in the segment"
            ))
        };
    }
    if len < HEADER_LEN {
        return Err(format!("TOTALSIZE {len} is shorter than the envelope"));
    }
    if len > room {
        return Err(format!(
            "record of {len} bytes crosses the segment end ({room} left)"
        ));
    }
    if len != room && room - len < MIN_BLANK_LEN {
        return Err(format!(
            "record of {len} bytes leaves {} bytes at the segment end",
            room - len
        ));
    }
    Ok((frame, len))
}

/// Checks an upstream message record (`rec`: the whole record, TOTALSIZE included) the way
/// upstream's recovery does (`CommitLog.checkMessageAndReturnSize`): its body length must fit
/// the record and its BODYCRC must be the body's CRC-32. Upstream stores the CRC with the sign
/// bit cleared (`UtilAll.crc32`); a CRC with it set is accepted too, for other writers.
pub(crate) fn check_upstream(rec: &[u8]) -> Result<(), String> {
    const SYSFLAG: usize = 36;
    const BORN_HOST: usize = 48;
    let be32 = |at: usize| -> Option<u32> {
        rec.get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    };
    let short = || {
        format!(
            "upstream record of {} bytes is too short for its fields",
            rec.len()
        )
    };
    let sysflag = be32(SYSFLAG).ok_or_else(short)?;
    let host = |v6: bool| if v6 { 20 } else { 8 };
    let born = host(sysflag & 0x10 != 0);
    let store = host(sysflag & 0x20 != 0);
    // BORNHOST, STORETIMESTAMP, STOREHOST, RECONSUMETIMES, PREPARED TRANSACTION OFFSET.
    let body_len_at = BORN_HOST + born + 8 + store + 4 + 8;
    let body_len = be32(body_len_at).ok_or_else(short)? as i32;
    let body_len = usize::try_from(body_len)
        .map_err(|_| format!("upstream record with a negative body length {body_len}"))?;
    let body = rec
        .get(body_len_at + 4..body_len_at + 4 + body_len)
        .ok_or_else(|| format!("upstream record body of {body_len} bytes overruns the record"))?;
    let stored = be32(8).ok_or_else(short)?;
    let crc = crc32fast::hash(body);
    if stored == crc & 0x7FFF_FFFF || stored == crc {
        Ok(())
    } else {
        Err(format!(
            "upstream record BODYCRC {stored:#010x}, the body's is {:#010x}",
            crc & 0x7FFF_FFFF
        ))
    }
}
