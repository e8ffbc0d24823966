//! The auto-switch (controller mode) HA wire format of RocketMQ 5.1.1 and later, sans-IO: the
//! frames both sides write and the decoders that split what they read. The machines that use
//! them are [`super::ha::MasterLink::auto_switch`] and [`super::ha::SlaveLink::auto_switch`].
//!
//! ```text
//! slave -> master  HANDSHAKE  [state=1: i32][syncFromLastFile: i16][asyncLearner: i16][slaveBrokerId: i64]   16 bytes
//!                  TRANSFER   [state=2: i32][maxOffset: i64]                                                 12 bytes
//! master -> slave  HANDSHAKE  [state=1: i32][bodySize=12N: i32][maxOffset: i64][lastEpoch: i32]
//!                             N x [epoch: i32][startOffset: i64]                                   20 + 12N bytes
//!                  TRANSFER   [state=2: i32][bodySize: i32][offset: i64][epoch: i32][epochStart: i64]
//!                             [confirmOffset: i64][body]                                           36 + n bytes
//! ```
//!
//! Big-endian, as upstream's `ByteBuffer`s. The state is `HAConnectionState`'s ordinal
//! (READY 0, HANDSHAKE 1, TRANSFER 2, SUSPEND 3, SHUTDOWN 4). A transfer body never crosses an
//! epoch's end (nor a segment's), so its epoch fields describe every byte of it.

use super::epoch::EpochEntry;

/// `HAConnectionState.HANDSHAKE.ordinal()`.
pub const STATE_HANDSHAKE: i32 = 1;
/// `HAConnectionState.TRANSFER.ordinal()`.
pub const STATE_TRANSFER: i32 = 2;
/// Bytes of the slave's handshake.
pub const SLAVE_HANDSHAKE_LEN: usize = 16;
/// Bytes of the slave's transfer report.
pub const SLAVE_REPORT_LEN: usize = 12;
/// Bytes of the master's handshake header (the epoch entries follow).
pub const MASTER_HANDSHAKE_HEADER_LEN: usize = 20;
/// Bytes of the master's transfer header (the body follows).
pub const MASTER_TRANSFER_HEADER_LEN: usize = 36;
/// Bytes of one epoch entry on the wire.
pub const EPOCH_ENTRY_LEN: usize = 12;
/// Most epoch entries a slave accepts in one handshake (a bound on what a peer can make it hold).
pub const MAX_EPOCH_ENTRIES: usize = 65_536;

/// What the slave says about itself in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlaveHello {
    /// A slave with an empty log wants the master's last segment only (upstream
    /// `syncFromLastFile`), not the whole log.
    pub sync_from_last_file: bool,
    /// It replicates but never joins the in-sync set (upstream `asyncLearner`).
    pub async_learner: bool,
    /// Its broker id: what the master's in-sync set is keyed by.
    pub broker_id: i64,
}

/// The slave's handshake frame.
pub fn encode_slave_handshake(hello: SlaveHello) -> [u8; SLAVE_HANDSHAKE_LEN] {
    let mut out = [0; SLAVE_HANDSHAKE_LEN];
    out[..4].copy_from_slice(&STATE_HANDSHAKE.to_be_bytes());
    out[4..6].copy_from_slice(&i16::from(hello.sync_from_last_file).to_be_bytes());
    out[6..8].copy_from_slice(&i16::from(hello.async_learner).to_be_bytes());
    out[8..].copy_from_slice(&hello.broker_id.to_be_bytes());
    out
}

/// The slave's transfer report: its log ends at `offset`.
pub fn encode_slave_report(offset: u64) -> [u8; SLAVE_REPORT_LEN] {
    let mut out = [0; SLAVE_REPORT_LEN];
    out[..4].copy_from_slice(&STATE_TRANSFER.to_be_bytes());
    out[4..].copy_from_slice(&offset.to_be_bytes());
    out
}

/// The master's handshake frame: its max offset and every epoch entry.
pub fn encode_master_handshake(max: u64, entries: &[EpochEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MASTER_HANDSHAKE_HEADER_LEN + EPOCH_ENTRY_LEN * entries.len());
    out.extend_from_slice(&STATE_HANDSHAKE.to_be_bytes());
    out.extend_from_slice(&((EPOCH_ENTRY_LEN * entries.len()) as i32).to_be_bytes());
    out.extend_from_slice(&max.to_be_bytes());
    let last = entries.last().map_or(0, |e| e.epoch);
    out.extend_from_slice(&last.to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.epoch.to_be_bytes());
        out.extend_from_slice(&e.start.to_be_bytes());
    }
    out
}

/// The epoch fields of a master transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferEpoch {
    /// The epoch (and its start) of every body byte.
    pub epoch: EpochEntry,
    /// The master's confirm offset.
    pub confirm: u64,
}

/// The master's transfer header for `size` body bytes at `offset`.
pub fn encode_master_transfer_header(
    offset: u64,
    size: u32,
    epoch: TransferEpoch,
) -> [u8; MASTER_TRANSFER_HEADER_LEN] {
    let mut out = [0; MASTER_TRANSFER_HEADER_LEN];
    out[..4].copy_from_slice(&STATE_TRANSFER.to_be_bytes());
    out[4..8].copy_from_slice(&size.to_be_bytes());
    out[8..16].copy_from_slice(&offset.to_be_bytes());
    out[16..20].copy_from_slice(&epoch.epoch.epoch.to_be_bytes());
    out[20..28].copy_from_slice(&epoch.epoch.start.to_be_bytes());
    out[28..].copy_from_slice(&epoch.confirm.to_be_bytes());
    out
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

fn offset(raw: i64, what: &str) -> Result<u64, String> {
    u64::try_from(raw).map_err(|_| format!("negative {what} {raw}"))
}

fn epoch(raw: i32) -> Result<u32, String> {
    u32::try_from(raw).map_err(|_| format!("negative epoch {raw}"))
}

/// A frame the master read from the slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaveFrame {
    /// The slave's handshake.
    Handshake(SlaveHello),
    /// A transfer report (raw: the master's link checks it).
    Report(i64),
}

/// Splits the slave's stream into frames (the master side).
#[derive(Debug, Clone, Default)]
pub struct SlaveFrameDecoder {
    buf: [u8; SLAVE_HANDSHAKE_LEN],
    have: usize,
}

impl SlaveFrameDecoder {
    /// Feeds bytes; calls `on_frame` for each complete frame in order, and stops at the first
    /// error (an unknown state: upstream's master closes the connection then).
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        mut on_frame: impl FnMut(SlaveFrame),
    ) -> Result<(), String> {
        while !bytes.is_empty() {
            let want = if self.have < 4 {
                4
            } else {
                match be_i32(&self.buf) {
                    STATE_HANDSHAKE => SLAVE_HANDSHAKE_LEN,
                    STATE_TRANSFER => SLAVE_REPORT_LEN,
                    other => return Err(format!("slave frame with unknown state {other}")),
                }
            };
            let take = (want - self.have).min(bytes.len());
            self.buf[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have < want || want == 4 {
                continue;
            }
            self.have = 0;
            let b = &self.buf;
            on_frame(if want == SLAVE_HANDSHAKE_LEN {
                SlaveFrame::Handshake(SlaveHello {
                    sync_from_last_file: i16::from_be_bytes([b[4], b[5]]) != 0,
                    async_learner: i16::from_be_bytes([b[6], b[7]]) != 0,
                    broker_id: be_i64(&b[8..]),
                })
            } else {
                SlaveFrame::Report(be_i64(&b[4..]))
            });
        }
        // A complete state word with nothing after it is checked at once.
        if self.have >= 4 && !matches!(be_i32(&self.buf), STATE_HANDSHAKE | STATE_TRANSFER) {
            return Err(format!(
                "slave frame with unknown state {}",
                be_i32(&self.buf)
            ));
        }
        Ok(())
    }

    /// Bytes of an incomplete frame held back.
    pub fn pending(&self) -> usize {
        self.have
    }
}

/// A decoded piece of the master's auto-switch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterChunk<'a> {
    /// The master's handshake.
    Handshake {
        /// The master's max offset.
        max: u64,
        /// Its last epoch (also the last entry's, when there are entries).
        last_epoch: u32,
        /// Its epoch entries.
        entries: Vec<EpochEntry>,
    },
    /// A transfer header; `size` body bytes follow (0 for a heartbeat).
    Header {
        /// Offset of the first body byte.
        offset: u64,
        /// Body size.
        size: u32,
        /// The epoch fields.
        epoch: TransferEpoch,
    },
    /// Body bytes at `offset` (a body may arrive in several chunks).
    Body {
        /// Offset of `bytes[0]` in the master's log.
        offset: u64,
        /// The bytes, borrowed from the input.
        bytes: &'a [u8],
    },
}

/// Splits the master's auto-switch stream into handshakes, headers and body chunks, without
/// copying bodies (the slave side).
#[derive(Debug, Clone)]
pub struct MasterFrameDecoder {
    header: [u8; MASTER_TRANSFER_HEADER_LEN],
    have: usize,
    entries: Vec<u8>,
    entries_left: usize,
    body_left: u32,
    body_offset: u64,
    body_max: u32,
}

impl MasterFrameDecoder {
    /// A decoder refusing transfer bodies larger than `body_max`.
    pub fn new(body_max: u32) -> Self {
        MasterFrameDecoder {
            header: [0; MASTER_TRANSFER_HEADER_LEN],
            have: 0,
            entries: Vec::new(),
            entries_left: 0,
            body_left: 0,
            body_offset: 0,
            body_max,
        }
    }

    /// Takes the next chunk from the front of `input`; `Ok(None)` when `input` is used up.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<MasterChunk<'a>>, String> {
        if self.body_left > 0 {
            return Ok(
                super::ha::take_body(&mut self.body_left, &mut self.body_offset, input)
                    .map(|(offset, bytes)| MasterChunk::Body { offset, bytes }),
            );
        }
        if self.entries_left > 0 {
            let n = self.entries_left.min(input.len());
            self.entries.extend_from_slice(&input[..n]);
            *input = &input[n..];
            self.entries_left -= n;
            if self.entries_left > 0 {
                return Ok(None);
            }
            return self.handshake().map(Some);
        }
        let want = if self.have < 8 {
            8
        } else {
            match be_i32(&self.header) {
                STATE_HANDSHAKE => MASTER_HANDSHAKE_HEADER_LEN,
                STATE_TRANSFER => MASTER_TRANSFER_HEADER_LEN,
                other => return Err(format!("master frame with unknown state {other}")),
            }
        };
        let take = (want - self.have).min(input.len());
        self.header[self.have..self.have + take].copy_from_slice(&input[..take]);
        self.have += take;
        *input = &input[take..];
        if self.have < want {
            return Ok(None);
        }
        if want == 8 {
            return self.next(input);
        }
        self.have = 0;
        let size = be_i32(&self.header[4..]);
        let size = u32::try_from(size).map_err(|_| format!("negative body size {size}"))?;
        if want == MASTER_HANDSHAKE_HEADER_LEN {
            let n = size as usize;
            if n % EPOCH_ENTRY_LEN != 0 || n / EPOCH_ENTRY_LEN > MAX_EPOCH_ENTRIES {
                return Err(format!(
                    "handshake body of {n} bytes is not 12 x N (N <= {MAX_EPOCH_ENTRIES})"
                ));
            }
            self.entries.clear();
            self.entries_left = n;
            if n == 0 {
                return self.handshake().map(Some);
            }
            return self.next(input);
        }
        let h = &self.header;
        let offset_ = offset(be_i64(&h[8..]), "transfer offset")?;
        let epoch = TransferEpoch {
            epoch: EpochEntry {
                epoch: epoch(be_i32(&h[16..]))?,
                start: offset(be_i64(&h[20..]), "epoch start offset")?,
            },
            confirm: offset(be_i64(&h[28..]), "confirm offset")?,
        };
        if size > self.body_max {
            return Err(format!(
                "transfer body of {size} bytes exceeds {}",
                self.body_max
            ));
        }
        self.body_left = size;
        self.body_offset = offset_;
        Ok(Some(MasterChunk::Header {
            offset: offset_,
            size,
            epoch,
        }))
    }

    fn handshake<'a>(&mut self) -> Result<MasterChunk<'a>, String> {
        let h = &self.header;
        let max = offset(be_i64(&h[8..]), "master max offset")?;
        let last_epoch = epoch(be_i32(&h[16..]))?;
        let mut entries = Vec::with_capacity(self.entries.len() / EPOCH_ENTRY_LEN);
        for e in self.entries.chunks_exact(EPOCH_ENTRY_LEN) {
            entries.push(EpochEntry {
                epoch: epoch(be_i32(e))?,
                start: offset(be_i64(&e[4..]), "epoch start offset")?,
            });
        }
        self.entries = Vec::new();
        super::epoch::check_entries(&entries)?;
        Ok(MasterChunk::Handshake {
            max,
            last_epoch,
            entries,
        })
    }

    /// True inside a frame (between its first byte and its body's last).
    pub fn in_frame(&self) -> bool {
        self.have > 0 || self.body_left > 0 || self.entries_left > 0
    }
}

/// The fuzz property of both auto-switch decoders: any bytes, split anywhere, never panic; a
/// transfer's body chunks are contiguous and exactly as long as its header said; a handshake's
/// entries are well-formed. The first byte picks the split point.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(data.len());
    let mut decoder = MasterFrameDecoder::new(1 << 16);
    let mut expect_body: u64 = 0;
    let mut next_offset = 0;
    'outer: for mut part in [&data[..split], &data[split..]] {
        loop {
            match decoder.next(&mut part) {
                Ok(None) => break,
                Ok(Some(MasterChunk::Handshake { entries, .. })) => {
                    assert_eq!(expect_body, 0, "a handshake inside a body");
                    assert!(super::epoch::check_entries(&entries).is_ok());
                }
                Ok(Some(MasterChunk::Header { offset, size, .. })) => {
                    assert_eq!(expect_body, 0, "a header inside a body");
                    expect_body = u64::from(size);
                    next_offset = offset;
                }
                Ok(Some(MasterChunk::Body { offset, bytes })) => {
                    assert!(!bytes.is_empty());
                    assert_eq!(offset, next_offset);
                    assert!(bytes.len() as u64 <= expect_body);
                    expect_body -= bytes.len() as u64;
                    next_offset += bytes.len() as u64;
                }
                Err(_) => break 'outer,
            }
        }
    }
    let mut slave = SlaveFrameDecoder::default();
    let mut frames = 0usize;
    for part in [&data[..split], &data[split..]] {
        if slave.push(part, |_| frames += 1).is_err() {
            return;
        }
    }
    assert!(frames * SLAVE_REPORT_LEN <= data.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_at_every_split() {
        let entries = [
            EpochEntry { epoch: 1, start: 0 },
            EpochEntry {
                epoch: 3,
                start: 560,
            },
        ];
        let mut wire = encode_master_handshake(1680, &entries);
        let te = TransferEpoch {
            epoch: entries[1],
            confirm: 1600,
        };
        wire.extend_from_slice(&encode_master_transfer_header(600, 3, te));
        wire.extend_from_slice(b"abc");
        for split in 0..=wire.len() {
            let mut d = MasterFrameDecoder::new(1 << 10);
            let mut got = Vec::new();
            for mut part in [&wire[..split], &wire[split..]] {
                while let Some(chunk) = d.next(&mut part).unwrap() {
                    got.push(format!("{chunk:?}"));
                }
            }
            let body: String = got
                .iter()
                .filter(|g| g.starts_with("Body"))
                .cloned()
                .collect();
            assert!(
                got[0].starts_with("Handshake { max: 1680, last_epoch: 3"),
                "{got:?}"
            );
            assert!(got[1].contains("offset: 600, size: 3"), "{got:?}");
            assert!(!body.is_empty());
            assert!(!d.in_frame());
        }

        let hello = SlaveHello {
            sync_from_last_file: true,
            async_learner: false,
            broker_id: 2,
        };
        let mut wire = encode_slave_handshake(hello).to_vec();
        wire.extend_from_slice(&encode_slave_report(560));
        for split in 0..=wire.len() {
            let mut d = SlaveFrameDecoder::default();
            let mut got = Vec::new();
            d.push(&wire[..split], |f| got.push(f)).unwrap();
            d.push(&wire[split..], |f| got.push(f)).unwrap();
            assert_eq!(got, [SlaveFrame::Handshake(hello), SlaveFrame::Report(560)]);
        }
    }

    #[test]
    fn unknown_states_and_bad_sizes_are_errors() {
        let mut d = SlaveFrameDecoder::default();
        assert!(d.push(&7i32.to_be_bytes(), |_| {}).is_err());
        let mut d = SlaveFrameDecoder::default();
        assert!(
            d.push(b"2024-10-30 16:42", |_| {}).is_err(),
            "a probe's text"
        );
        let mut d = MasterFrameDecoder::new(10);
        let mut wire = &[0u8, 0, 0, 3, 0, 0, 0, 0][..];
        assert!(d.next(&mut wire).is_err());
        let mut d = MasterFrameDecoder::new(10);
        let te = TransferEpoch {
            epoch: EpochEntry { epoch: 1, start: 0 },
            confirm: 0,
        };
        let header = encode_master_transfer_header(0, 11, te);
        assert!(d.next(&mut &header[..]).is_err(), "over body_max");
        let mut bad = encode_master_handshake(0, &[]);
        bad[7] = 5; // body size 5: not 12 x N
        assert!(MasterFrameDecoder::new(10).next(&mut &bad[..]).is_err());
    }

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The worked examples of docs/SPEC.md section 9.4, byte for byte.
    #[test]
    fn the_worked_bytes_of_the_spec() {
        let hello = SlaveHello {
            sync_from_last_file: false,
            async_learner: false,
            broker_id: 2,
        };
        assert_eq!(
            hex(&encode_slave_handshake(hello)),
            "00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 02"
        );
        assert_eq!(
            hex(&encode_slave_report(560)),
            "00 00 00 02 00 00 00 00 00 00 02 30"
        );
        let entries = [
            EpochEntry { epoch: 1, start: 0 },
            EpochEntry {
                epoch: 2,
                start: 560,
            },
        ];
        assert_eq!(
            hex(&encode_master_handshake(1680, &entries)),
            "00 00 00 01 00 00 00 18 00 00 00 00 00 00 06 90 00 00 00 02 \
             00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 02 00 00 00 00 00 00 02 30"
        );
        let te = TransferEpoch {
            epoch: entries[1],
            confirm: 1680,
        };
        assert_eq!(
            hex(&encode_master_transfer_header(560, 3, te)),
            "00 00 00 02 00 00 00 03 00 00 00 00 00 00 02 30 00 00 00 02 \
             00 00 00 00 00 00 02 30 00 00 00 00 00 00 06 90"
        );
    }
}
