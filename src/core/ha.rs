//! HA replication links (upstream `DefaultHAConnection` / `DefaultHAClient` and, in
//! auto-switch mode, `AutoSwitchHAConnection` / `AutoSwitchHAClient`), sans-IO.
//!
//! Wire format, big-endian, raw TCP:
//!
//! ```text
//! slave -> master  report:    [slave max offset: i64]                          (8 bytes)
//! master -> slave  transfer:  [physical offset: i64][body size: i32][body]     (12 + n bytes)
//!                  heartbeat: a transfer with an empty body
//! ```
//!
//! [`MasterLink`] is one master-side connection and [`SlaveLink`] the slave's; both are statig
//! machines fed with `handle_*(now, ..)` and drained with `poll_*()`, and neither does IO or reads
//! a clock. States are upstream's `HAConnectionState` names; classic mode goes from `Ready`
//! straight to `Transfer` (`Handshake` is the auto-switch exchange of epochs, in
//! [`super::autoswitch`]), and a slave whose log cannot be reconciled with the master's, in
//! either mode, waits in `Suspend` until the connection is gone.
//!
//! A classic master closes on a first report beyond its log after one bodyless transfer at its
//! max offset ([`MasterLink::farewell`]), so a slave that is ahead names both ends. A first
//! report of 0 (an empty slave) is sent the master's last segment only, as upstream's classic
//! master does; the slave starts its empty log there ([`SlaveEvent::Rebase`]).
//!
//! `AckBounded`: the master accepts a report only if `0 <= report <= local max offset`, never
//! below the previous report and, after the first, never beyond what it has sent; anything else,
//! including a health check's text, closes the connection with a protocol error. A connection
//! counts for sync replication only after its first valid report.

use super::Millis;
use super::autoswitch::{
    self, MasterChunk, MasterFrameDecoder, SlaveFrame, SlaveFrameDecoder, SlaveHello, TransferEpoch,
};
use super::epoch::{self, EpochEntry};
use statig::prelude::*;
use std::collections::VecDeque;
use std::fmt;

/// Bytes of a slave's report.
pub const REPORT_LEN: usize = 8;
/// Bytes of a transfer header.
pub const TRANSFER_HEADER_LEN: usize = 12;

/// A report frame.
pub fn encode_report(offset: u64) -> [u8; REPORT_LEN] {
    offset.to_be_bytes()
}

/// A transfer header (a heartbeat when `size` is 0).
pub fn encode_transfer_header(offset: u64, size: u32) -> [u8; TRANSFER_HEADER_LEN] {
    let mut out = [0u8; TRANSFER_HEADER_LEN];
    out[..8].copy_from_slice(&offset.to_be_bytes());
    out[8..].copy_from_slice(&size.to_be_bytes());
    out
}

/// Which HA protocol a master or slave speaks; both ends must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HaMode {
    /// Upstream's default (`DefaultHAService`): 8-byte reports, 12-byte transfer headers, no
    /// handshake and no epochs.
    #[default]
    Classic,
    /// Upstream 5.1.1+ controller mode (`AutoSwitchHAService`): a handshake with epochs, a
    /// slave that truncates to the consistent point before it replicates, epoch-bounded
    /// transfers.
    AutoSwitch,
}

impl std::str::FromStr for HaMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "classic" => Ok(HaMode::Classic),
            "auto-switch" => Ok(HaMode::AutoSwitch),
            other => Err(format!(
                "unknown HA mode {other:?} (classic or auto-switch)"
            )),
        }
    }
}

/// Upstream's `HAConnectionState`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HaState {
    /// Not connected / not started.
    Ready,
    /// Controller mode only: exchanging epochs.
    Handshake,
    /// Replicating.
    Transfer,
    /// Controller mode only: paused.
    Suspend,
    /// Closed; terminal.
    Shutdown,
}

/// Why an HA link closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaClose {
    /// The peer violated the protocol (the detail says how).
    Protocol(String),
    /// Nothing valid was read for the housekeeping interval.
    Idle,
    /// The local side asked for it.
    Shutdown,
}

impl fmt::Display for HaClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaClose::Protocol(why) => write!(f, "protocol error: {why}"),
            HaClose::Idle => f.write_str("no valid read within the housekeeping interval"),
            HaClose::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// Timing and size rules shared by both ends (upstream `MessageStoreConfig` defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaConfig {
    /// Idle interval after which a heartbeat is sent (`haSendHeartbeatInterval`, 5 s).
    pub heartbeat_ms: u64,
    /// No valid read for this long closes the link (`haHousekeepingInterval`, 20 s).
    pub housekeeping_ms: u64,
    /// Largest transfer body (`haTransferBatchSize`, 32 KiB).
    pub batch_max: u32,
    /// Segment size of the log; a transfer never crosses a segment end.
    pub segment_size: u64,
    /// Largest transfer body a slave accepts (upstream's slave read buffer, 4 MiB).
    pub body_max: u32,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            heartbeat_ms: 5_000,
            housekeeping_ms: 20_000,
            batch_max: 32 * 1024,
            segment_size: 1 << 30,
            body_max: 4 << 20,
        }
    }
}

/// Splits a byte stream into 8-byte reports.
#[derive(Debug, Clone, Default)]
pub struct ReportDecoder {
    partial: [u8; REPORT_LEN],
    have: usize,
}

impl ReportDecoder {
    /// Feeds bytes; calls `on_report` for each complete report, in order.
    pub fn push(&mut self, mut bytes: &[u8], mut on_report: impl FnMut(i64)) {
        while !bytes.is_empty() {
            let take = (REPORT_LEN - self.have).min(bytes.len());
            self.partial[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have == REPORT_LEN {
                self.have = 0;
                on_report(i64::from_be_bytes(self.partial));
            }
        }
    }

    /// Bytes of an incomplete report held back.
    pub fn pending(&self) -> usize {
        self.have
    }
}

/// A decoded piece of the master's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferChunk<'a> {
    /// A header; `size` body bytes follow (0 for a heartbeat).
    Header {
        /// Offset of the first body byte.
        offset: u64,
        /// Body size.
        size: u32,
    },
    /// Body bytes at `offset` (a body may arrive in several chunks).
    Body {
        /// Offset of `bytes[0]` in the master's log.
        offset: u64,
        /// The bytes, borrowed from the input.
        bytes: &'a [u8],
    },
}

/// The next piece of a body still `left` bytes long at `offset` from the front of `input`
/// (borrowed, not copied); `None` when `input` is empty.
pub(crate) fn take_body<'a>(
    left: &mut u32,
    offset: &mut u64,
    input: &mut &'a [u8],
) -> Option<(u64, &'a [u8])> {
    if input.is_empty() {
        return None;
    }
    let n = (*left as usize).min(input.len());
    let (bytes, rest) = input.split_at(n);
    *input = rest;
    let at = *offset;
    *offset += n as u64;
    *left -= n as u32;
    Some((at, bytes))
}

/// Splits the master's stream into headers and body chunks, without copying bodies.
#[derive(Debug, Clone)]
pub struct TransferDecoder {
    header: [u8; TRANSFER_HEADER_LEN],
    have: usize,
    body_left: u32,
    body_offset: u64,
    body_max: u32,
}

impl TransferDecoder {
    /// A decoder refusing bodies larger than `body_max`.
    pub fn new(body_max: u32) -> Self {
        TransferDecoder {
            header: [0; TRANSFER_HEADER_LEN],
            have: 0,
            body_left: 0,
            body_offset: 0,
            body_max,
        }
    }

    /// Takes the next chunk from the front of `input`; `Ok(None)` when `input` is used up.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<TransferChunk<'a>>, String> {
        if self.body_left > 0 {
            return Ok(take_body(&mut self.body_left, &mut self.body_offset, input)
                .map(|(offset, bytes)| TransferChunk::Body { offset, bytes }));
        }
        let take = (TRANSFER_HEADER_LEN - self.have).min(input.len());
        self.header[self.have..self.have + take].copy_from_slice(&input[..take]);
        self.have += take;
        *input = &input[take..];
        if self.have < TRANSFER_HEADER_LEN {
            return Ok(None);
        }
        self.have = 0;
        let offset = i64::from_be_bytes(self.header[..8].try_into().expect("8 bytes"));
        let size = i32::from_be_bytes(self.header[8..].try_into().expect("4 bytes"));
        let offset =
            u64::try_from(offset).map_err(|_| format!("negative transfer offset {offset}"))?;
        let size = u32::try_from(size).map_err(|_| format!("negative transfer size {size}"))?;
        if size > self.body_max {
            return Err(format!(
                "transfer body of {size} bytes exceeds {}",
                self.body_max
            ));
        }
        self.body_left = size;
        self.body_offset = offset;
        Ok(Some(TransferChunk::Header { offset, size }))
    }

    /// True between a header and the end of its body.
    pub fn in_body(&self) -> bool {
        self.body_left > 0
    }
}

/// One frame the master wants written: a header for `len` bytes at `offset`, then those bytes
/// of the log (none for a heartbeat or a handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Offset of the first body byte (the master's max offset, for a handshake).
    pub offset: u64,
    /// Body length, at most `batch_max` and never past a segment end (nor an epoch's end).
    pub len: u32,
    /// Which header goes first.
    pub head: Head,
}

/// The header of a [`Transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Classic mode's 12-byte transfer header.
    Classic,
    /// Auto-switch mode's 36-byte transfer header.
    Transfer(TransferEpoch),
    /// Auto-switch mode's handshake ([`MasterLink::handshake_frame`] has its bytes).
    Handshake,
}

impl Transmit {
    /// A classic transfer.
    pub fn classic(offset: u64, len: u32) -> Self {
        Transmit {
            offset,
            len,
            head: Head::Classic,
        }
    }

    /// Bytes of the header (for a handshake: of the whole frame, which `entries` epoch entries
    /// make up).
    pub fn header_len(&self, entries: usize) -> usize {
        match self.head {
            Head::Classic => TRANSFER_HEADER_LEN,
            Head::Transfer(_) => autoswitch::MASTER_TRANSFER_HEADER_LEN,
            Head::Handshake => {
                autoswitch::MASTER_HANDSHAKE_HEADER_LEN + autoswitch::EPOCH_ENTRY_LEN * entries
            }
        }
    }

    /// The transfer header's bytes; `None` for a handshake.
    pub fn header(&self) -> Option<smallvec::SmallVec<[u8; 36]>> {
        match self.head {
            Head::Classic => Some(encode_transfer_header(self.offset, self.len)[..].into()),
            Head::Transfer(epoch) => Some(
                autoswitch::encode_master_transfer_header(self.offset, self.len, epoch)[..].into(),
            ),
            Head::Handshake => None,
        }
    }
}

/// What the master-side link reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterEvent {
    /// A valid report: the slave holds the log up to `offset`. `first` marks the report that makes
    /// the connection count for sync replication.
    Acked {
        /// The slave's max offset.
        offset: u64,
        /// True for the connection's first valid report.
        first: bool,
    },
    /// The link is closed and must be torn down.
    Closed(HaClose),
}

/// Inputs of the master-side machine.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MasterInput {
    Start(Millis),
    Hello(Millis, SlaveHello),
    Report(Millis, i64),
    Broken(String),
    Tick(Millis),
    Shutdown,
}

/// The auto-switch master's part of a link.
#[derive(Debug)]
struct AutoMaster {
    /// The master's epoch entries (fixed while it is master).
    epochs: Vec<EpochEntry>,
    /// The slave's handshake, once read.
    hello: Option<SlaveHello>,
    /// The master's handshake is due (the slave's was read).
    handshake_due: bool,
    /// The master's handshake went out: only then does a report count.
    handshake_sent: bool,
}

/// The master-side link's data, passed to the machine as its context.
#[derive(Debug)]
struct MasterData {
    config: HaConfig,
    log_min: u64,
    local_max: u64,
    ack: Option<u64>,
    next: u64,
    last_read: Millis,
    last_write: Millis,
    events: VecDeque<MasterEvent>,
    /// Planted defect (feature `harness`): every report is taken as it comes, as upstream's
    /// classic master does.
    #[cfg(feature = "harness")]
    unchecked_acks: bool,
    /// Auto-switch mode (`None`: classic).
    auto: Option<AutoMaster>,
    /// Classic: the first report was beyond our log; where it ends, for [`MasterLink::farewell`].
    farewell: Option<u64>,
}

impl MasterData {
    fn close(&mut self, why: HaClose) -> Outcome<master::State> {
        self.events.push_back(MasterEvent::Closed(why));
        Transition(master::State::Shutdown {})
    }

    fn check_report(&self, raw: i64) -> Result<u64, String> {
        #[cfg(feature = "harness")]
        if self.unchecked_acks {
            return Ok(raw as u64);
        }
        let offset = u64::try_from(raw).map_err(|_| format!("negative report {raw}"))?;
        if offset > self.local_max {
            return Err(format!(
                "report {offset} is beyond the master's max offset {}",
                self.local_max
            ));
        }
        match self.ack {
            None if offset != 0 && offset < self.log_min => Err(format!(
                "report {offset} is below the master's first offset {}",
                self.log_min
            )),
            Some(prev) if offset < prev => Err(format!("report {offset} went back from {prev}")),
            Some(_) if offset > self.next => Err(format!(
                "report {offset} is beyond the {} bytes sent",
                self.next
            )),
            _ => Ok(offset),
        }
    }

    /// Applies a valid report (the first one sets where transfers start); `Err` closes.
    fn apply_report(&mut self, now: Millis, raw: i64) -> Result<(), String> {
        let offset = self.check_report(raw).inspect_err(|_| {
            let beyond = u64::try_from(raw).is_ok_and(|offset| offset > self.local_max);
            if self.auto.is_none() && self.ack.is_none() && beyond {
                self.farewell = Some(self.local_max);
            }
        })?;
        let first = self.ack.is_none();
        if first {
            // An empty slave (report 0) starts where upstream starts it: classic mode sends the
            // last segment only (`DefaultHAConnection`), auto-switch mode the whole log unless
            // the slave's handshake asks `syncFromLastFile` (`AutoSwitchHAConnection`).
            let from_last_segment = match &self.auto {
                None => true,
                Some(auto) => auto.hello.is_some_and(|h| h.sync_from_last_file),
            };
            self.next = match offset {
                0 if from_last_segment => {
                    let seg = self.config.segment_size.max(1);
                    (self.local_max / seg * seg).max(self.log_min)
                }
                0 => self.log_min,
                offset => offset,
            };
        }
        self.ack = Some(offset);
        self.last_read = now;
        self.events.push_back(MasterEvent::Acked { offset, first });
        Ok(())
    }
}

mod master {
    //! The master-side statig machine; its generated `State` stays behind [`super::HaState`].
    #![allow(missing_docs, unreachable_pub)]
    use super::{HaClose, MasterData, MasterInput};
    use statig::prelude::*;

    #[derive(Debug, Default)]
    pub(super) struct Master;

    #[state_machine(
        initial = "State::ready()",
        state(derive(Debug, Clone, Copy, PartialEq, Eq))
    )]
    impl Master {
        #[state]
        fn ready(context: &mut MasterData, event: &MasterInput) -> Outcome<State> {
            match *event {
                MasterInput::Start(now) => {
                    context.last_read = now;
                    context.last_write = now;
                    if context.auto.is_some() {
                        Transition(State::handshake())
                    } else {
                        Transition(State::transfer())
                    }
                }
                MasterInput::Shutdown => context.close(HaClose::Shutdown),
                _ => Handled,
            }
        }

        /// Auto-switch only: waiting for the slave's handshake, answering it, and waiting for
        /// the report that says where the slave's log ends after its truncation. No report
        /// counts before the master's handshake went out.
        #[state]
        fn handshake(context: &mut MasterData, event: &MasterInput) -> Outcome<State> {
            let auto = context
                .auto
                .as_mut()
                .expect("handshake is auto-switch only");
            match *event {
                MasterInput::Hello(now, hello) if auto.hello.is_none() => {
                    auto.hello = Some(hello);
                    auto.handshake_due = true;
                    context.last_read = now;
                    Handled
                }
                MasterInput::Hello(..) => {
                    context.close(HaClose::Protocol("a second slave handshake".into()))
                }
                MasterInput::Report(..) if !auto.handshake_sent => context.close(
                    HaClose::Protocol("a transfer report before the handshake".into()),
                ),
                MasterInput::Report(now, raw) => match context.apply_report(now, raw) {
                    Ok(()) => Transition(State::transfer()),
                    Err(why) => context.close(HaClose::Protocol(why)),
                },
                MasterInput::Broken(ref why) => context.close(HaClose::Protocol(why.clone())),
                MasterInput::Tick(now)
                    if now.since(context.last_read) > context.config.housekeeping_ms =>
                {
                    context.close(HaClose::Idle)
                }
                MasterInput::Shutdown => context.close(HaClose::Shutdown),
                _ => Handled,
            }
        }

        #[state]
        fn transfer(context: &mut MasterData, event: &MasterInput) -> Outcome<State> {
            match *event {
                MasterInput::Report(now, raw) => match context.apply_report(now, raw) {
                    Ok(()) => Handled,
                    Err(why) => context.close(HaClose::Protocol(why)),
                },
                MasterInput::Hello(..) => context.close(HaClose::Protocol(
                    "a slave handshake while transferring".into(),
                )),
                MasterInput::Broken(ref why) => context.close(HaClose::Protocol(why.clone())),
                MasterInput::Tick(now)
                    if now.since(context.last_read) > context.config.housekeeping_ms =>
                {
                    context.close(HaClose::Idle)
                }
                MasterInput::Shutdown => context.close(HaClose::Shutdown),
                _ => Handled,
            }
        }

        #[state]
        fn shutdown(event: &MasterInput) -> Outcome<State> {
            // Terminal: bytes that race the close are ignored.
            let _ = event;
            Handled
        }
    }
}

/// One master-side HA connection (upstream `DefaultHAConnection`'s logic, without its threads).
///
/// Polling order for a driver: after any `handle_*`, drain `poll_event` (a `Closed` ends the
/// link), then write what `poll_transmit` returns until it returns `None`, then sleep until
/// `poll_timeout` or new input.
pub struct MasterLink {
    machine: StateMachine<master::Master>,
    data: MasterData,
    decoder: SlaveDecoder,
}

/// How the master splits what the slave sends.
#[derive(Debug, Clone)]
enum SlaveDecoder {
    Classic(ReportDecoder),
    Auto(SlaveFrameDecoder),
}

impl fmt::Debug for MasterLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterLink")
            .field("state", &self.state())
            .field("data", &self.data)
            .finish()
    }
}

impl MasterLink {
    /// A link for a freshly accepted socket, in `Ready`. `log_min`/`local_max` are the log's
    /// current bounds.
    pub fn new(config: HaConfig, log_min: u64, local_max: u64) -> Self {
        let data = MasterData {
            config,
            log_min,
            local_max,
            ack: None,
            next: log_min,
            last_read: Millis(0),
            last_write: Millis(0),
            events: VecDeque::new(),
            #[cfg(feature = "harness")]
            unchecked_acks: false,
            auto: None,
            farewell: None,
        };
        MasterLink {
            machine: master::Master.state_machine(),
            data,
            decoder: SlaveDecoder::Classic(ReportDecoder::default()),
        }
    }

    /// An auto-switch link (RocketMQ 5.1.1+ controller mode): `Ready -> Handshake` on start;
    /// the slave's handshake is answered with `epochs` (the master's entries, at least one: a
    /// master begins an epoch before it serves), and transfers carry the epoch of their bytes
    /// and never cross an epoch's end.
    pub fn auto_switch(
        config: HaConfig,
        log_min: u64,
        local_max: u64,
        epochs: Vec<EpochEntry>,
    ) -> Self {
        let mut link = MasterLink::new(config, log_min, local_max);
        link.data.auto = Some(AutoMaster {
            epochs,
            hello: None,
            handshake_due: false,
            handshake_sent: false,
        });
        link.decoder = SlaveDecoder::Auto(SlaveFrameDecoder::default());
        link
    }

    /// Classic mode, once the link closed on a first report beyond the log: a bodyless transfer
    /// at the master's max offset, to be sent before the socket closes. A slave whose log is
    /// ahead of ours then sees both ends (ours below its own) and can say so, instead of seeing
    /// only a closed connection; upstream's slave logs both offsets on such a frame too.
    pub fn farewell(&self) -> Option<Transmit> {
        self.data.farewell.map(|offset| Transmit {
            offset,
            len: 0,
            head: Head::Classic,
        })
    }

    /// The slave's handshake, once read (auto-switch).
    pub fn slave_hello(&self) -> Option<SlaveHello> {
        self.data.auto.as_ref().and_then(|a| a.hello)
    }

    /// The bytes of the master's handshake frame (for a [`Head::Handshake`] transmit).
    pub fn handshake_frame(&self) -> Vec<u8> {
        let entries = self.data.auto.as_ref().map_or(&[][..], |a| &a.epochs[..]);
        autoswitch::encode_master_handshake(self.data.local_max, entries)
    }

    /// Epoch entries a handshake frame holds (see [`Transmit::header_len`]).
    pub fn epoch_count(&self) -> usize {
        self.data.auto.as_ref().map_or(0, |a| a.epochs.len())
    }

    /// The planted defect of upstream's classic master (feature `harness`): every 8 bytes read
    /// are taken as the slave's offset, unchecked, so a probe's text becomes an ack (#8875).
    #[cfg(feature = "harness")]
    pub fn with_unchecked_acks(mut self) -> Self {
        self.data.unchecked_acks = true;
        self
    }

    /// The connection's tasks started: `Ready -> Transfer` (classic mode has no handshake).
    pub fn handle_start(&mut self, now: Millis) {
        self.machine
            .handle_with_context(&MasterInput::Start(now), &mut self.data);
    }

    /// Bytes from the slave: every complete frame is checked and applied in order.
    pub fn handle_bytes(&mut self, now: Millis, bytes: &[u8]) {
        let (machine, data) = (&mut self.machine, &mut self.data);
        match &mut self.decoder {
            SlaveDecoder::Classic(decoder) => decoder.push(bytes, |raw| {
                machine.handle_with_context(&MasterInput::Report(now, raw), data)
            }),
            SlaveDecoder::Auto(decoder) => {
                let pushed = decoder.push(bytes, |frame| {
                    let input = match frame {
                        SlaveFrame::Handshake(hello) => MasterInput::Hello(now, hello),
                        SlaveFrame::Report(raw) => MasterInput::Report(now, raw),
                    };
                    machine.handle_with_context(&input, data)
                });
                if let Err(why) = pushed {
                    machine.handle_with_context(&MasterInput::Broken(why), data);
                }
            }
        }
    }

    /// The local log grew to `max` (or was found there).
    pub fn handle_local_max(&mut self, max: u64) {
        self.data.local_max = self.data.local_max.max(max);
    }

    /// The timer fired (or any time the driver wakes).
    pub fn handle_timeout(&mut self, now: Millis) {
        self.machine
            .handle_with_context(&MasterInput::Tick(now), &mut self.data);
    }

    /// The local side is closing the link.
    pub fn handle_shutdown(&mut self) {
        self.machine
            .handle_with_context(&MasterInput::Shutdown, &mut self.data);
    }

    /// The next transfer to write, if any: data from the slave's position, else a heartbeat once
    /// the link was quiet for `heartbeat_ms`. Nothing before the first valid report.
    pub fn poll_transmit(&mut self, now: Millis) -> Option<Transmit> {
        let state = self.state();
        let d = &mut self.data;
        if state == HaState::Handshake {
            let auto = d.auto.as_mut()?;
            if !auto.handshake_due {
                return None;
            }
            auto.handshake_due = false;
            auto.handshake_sent = true;
            d.last_write = now;
            return Some(Transmit {
                offset: d.local_max,
                len: 0,
                head: Head::Handshake,
            });
        }
        if state != HaState::Transfer {
            return None;
        }
        d.ack?;
        // In auto-switch mode a frame's bytes are all of one epoch: the one holding `next`.
        let (head, epoch_end) = match &d.auto {
            None => (Head::Classic, u64::MAX),
            Some(auto) => {
                let i = epoch::entry_at(&auto.epochs, d.next).unwrap_or(0);
                let entry = auto.epochs.get(i).copied().unwrap_or(EpochEntry {
                    epoch: 0,
                    start: d.log_min,
                });
                let head = Head::Transfer(TransferEpoch {
                    epoch: entry,
                    confirm: d.local_max,
                });
                (head, epoch::end_of(&auto.epochs, i, d.local_max))
            }
        };
        if d.next < d.local_max {
            let seg = d.config.segment_size.max(1);
            let segment_end = (d.next / seg + 1) * seg;
            let end = d.local_max.min(segment_end).min(epoch_end.max(d.next + 1));
            let len = (end - d.next).min(u64::from(d.config.batch_max));
            let t = Transmit {
                offset: d.next,
                len: len as u32,
                head,
            };
            d.next += len;
            d.last_write = now;
            return Some(t);
        }
        if now.since(d.last_write) >= d.config.heartbeat_ms {
            d.last_write = now;
            return Some(Transmit {
                offset: d.next,
                len: 0,
                head,
            });
        }
        None
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<MasterEvent> {
        self.data.events.pop_front()
    }

    /// When `handle_timeout` must be called next; `None` once shut down.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let d = &self.data;
        matches!(self.state(), HaState::Transfer | HaState::Handshake).then(|| {
            let housekeeping = d.last_read.0 + d.config.housekeeping_ms + 1;
            let heartbeat = d.last_write.0 + d.config.heartbeat_ms;
            Millis(if d.ack.is_some() {
                housekeeping.min(heartbeat)
            } else {
                housekeeping
            })
        })
    }

    /// The upstream state name.
    pub fn state(&self) -> HaState {
        match self.machine.state() {
            master::State::Ready {} => HaState::Ready,
            master::State::Handshake {} => HaState::Handshake,
            master::State::Transfer {} => HaState::Transfer,
            master::State::Shutdown {} => HaState::Shutdown,
        }
    }

    /// The last valid report, `None` before the first.
    pub fn ack(&self) -> Option<u64> {
        self.data.ack
    }

    /// Offset the next transfer starts at.
    pub fn next_offset(&self) -> u64 {
        self.data.next
    }
}

/// Body bytes the slave's driver must append to its log: `input[range]` at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveAppend {
    /// Where the bytes go in the log (always the log's current end).
    pub offset: u64,
    /// Which bytes of the input passed to `handle_bytes`.
    pub range: std::ops::Range<usize>,
    /// Auto-switch: the bytes open a new epoch, to be recorded before they are appended.
    pub epoch: Option<EpochEntry>,
}

/// What the slave-side link reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaveEvent {
    /// The log is empty and the master starts at `offset` (a classic master, ours or Java's,
    /// sends a fresh slave its last segment): start the empty log there before appending.
    Rebase(u64),
    /// Auto-switch: cut the log back to this consistent point (dropping the epoch entries at or
    /// past it) before anything else; the report that follows says the log ends there.
    Truncate(u64),
    /// The connection must be closed; the link is back in `Ready` for a reconnect.
    Closed(HaClose),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SlaveInput {
    Connected(Millis, u64),
    Header(Millis, u64),
    MasterHandshake(Millis, u64, Vec<EpochEntry>),
    EpochHeader(Millis, u64, TransferEpoch),
    Appended(u64),
    Tick(Millis),
    Broken(String),
    Disconnected,
    Shutdown,
}

/// The auto-switch slave's part of a link.
#[derive(Debug)]
struct AutoSlave {
    hello: SlaveHello,
    /// The handshake is to be sent (on connect).
    hello_due: bool,
    /// The local log's min offset and epochs, as of the connect.
    local_min: u64,
    local_epochs: Vec<EpochEntry>,
    /// The epoch of the log's last bytes (after the truncation).
    last_epoch: Option<EpochEntry>,
    /// A new epoch to attach to the next body bytes.
    pending_epoch: Option<EpochEntry>,
    /// The master's confirm offset, as last sent.
    confirm: u64,
    /// Planted defect (feature `harness`): the handshake keeps the whole local log and reports
    /// its end, as a classic slave does.
    #[cfg(feature = "harness")]
    skip_truncation: bool,
}

#[derive(Debug)]
struct SlaveData {
    config: HaConfig,
    auto: Option<AutoSlave>,
    local_max: u64,
    expected: u64,
    last_read: Millis,
    last_report: Millis,
    report_due: bool,
    events: VecDeque<SlaveEvent>,
}

impl SlaveData {
    fn close(&mut self, why: HaClose) -> Outcome<slave::State> {
        self.events.push_back(SlaveEvent::Closed(why));
        Transition(slave::State::Ready {})
    }

    /// Closes and stays out of replication until the next connect: this master's log cannot be
    /// reconciled with ours now (upstream has SUSPEND; it never sets it).
    fn suspend(&mut self, why: String) -> Outcome<slave::State> {
        self.events
            .push_back(SlaveEvent::Closed(HaClose::Protocol(why)));
        Transition(slave::State::Suspend {})
    }

    /// The offset check of every transfer header: the master sends exactly at our end (or, to
    /// an empty log, at a segment base: a rebase).
    fn check_offset(&mut self, offset: u64) -> Result<(), String> {
        if offset != self.expected {
            let seg = self.config.segment_size.max(1);
            // Empty: nothing appended since the connect, and the log held nothing then.
            let min = self.auto.as_ref().map_or(0, |a| a.local_min);
            let empty = self.local_max == self.expected && self.expected == min;
            if empty && offset % seg == 0 {
                self.events.push_back(SlaveEvent::Rebase(offset));
                self.expected = offset;
                self.local_max = offset;
                return Ok(());
            }
            return Err(format!(
                "master pushed offset {offset}, the slave's log ends at {}",
                self.expected
            ));
        }
        Ok(())
    }

    /// The master's handshake: find the consistent point, truncate there, report it.
    fn handshake(&mut self, master_max: u64, master: &[EpochEntry]) -> Outcome<slave::State> {
        let local_max = self.local_max;
        let auto = self.auto.as_mut().expect("handshake is auto-switch only");
        let local_last = auto.local_epochs.last().copied();
        let master_last = master.last().copied();
        if let (Some(l), Some(m)) = (local_last, master_last) {
            if m.epoch < l.epoch {
                return self.suspend(format!(
                    "the master's last epoch {} is older than this slave's {}: it is a stale \
                     master; not replicating from it",
                    m.epoch, l.epoch
                ));
            }
        }
        let point = epoch::find_consistent_point(
            &auto.local_epochs,
            auto.local_min,
            local_max,
            master,
            master_max,
        );
        #[cfg(feature = "harness")]
        let point = if auto.skip_truncation {
            Some(local_max)
        } else {
            point
        };
        let Some(point) = point else {
            let why = format!(
                "no consistent point: this slave's epochs {:?} (log [{}, {local_max})) share \
                 none with the master's {master:?}; its log cannot be reconciled with this \
                 master's. Move the store aside to replicate afresh",
                auto.local_epochs, auto.local_min
            );
            return self.suspend(why);
        };
        auto.local_epochs.retain(|e| e.start < point);
        auto.last_epoch = auto.local_epochs.last().copied();
        auto.pending_epoch = None;
        self.events.push_back(SlaveEvent::Truncate(point));
        self.local_max = point;
        self.expected = point;
        self.report_due = true;
        Transition(slave::State::Transfer {})
    }

    /// An auto-switch transfer header: the offset check, then its epoch against ours.
    fn epoch_header(&mut self, offset: u64, te: TransferEpoch) -> Result<(), String> {
        self.check_offset(offset)?;
        let auto = self.auto.as_mut().expect("auto-switch only");
        let e = te.epoch;
        auto.confirm = te.confirm;
        if e.start > offset {
            return Err(format!(
                "transfer at {offset} in epoch {e}, which starts after it"
            ));
        }
        match auto.last_epoch {
            Some(last) if last == e => {}
            Some(last) if e.epoch <= last.epoch => {
                return Err(format!("transfer in epoch {e} after epoch {last}"));
            }
            _ => {
                auto.pending_epoch = Some(e);
                auto.last_epoch = Some(e);
            }
        }
        Ok(())
    }
}

mod slave {
    //! The slave-side statig machine; its generated `State` stays behind [`super::HaState`].
    #![allow(missing_docs, unreachable_pub)]
    use super::{HaClose, SlaveData, SlaveInput};
    use statig::prelude::*;

    #[derive(Debug, Default)]
    pub(super) struct Slave;

    #[state_machine(
        initial = "State::ready()",
        state(derive(Debug, Clone, Copy, PartialEq, Eq))
    )]
    impl Slave {
        #[state]
        fn ready(context: &mut SlaveData, event: &SlaveInput) -> Outcome<State> {
            match *event {
                SlaveInput::Connected(now, local_max) => {
                    context.local_max = local_max;
                    context.expected = local_max;
                    context.last_read = now;
                    context.last_report = now;
                    match context.auto.as_mut() {
                        Some(auto) => {
                            auto.hello_due = true;
                            Transition(State::handshake())
                        }
                        None => {
                            context.report_due = true;
                            Transition(State::transfer())
                        }
                    }
                }
                SlaveInput::Shutdown => Transition(State::shutdown()),
                _ => Handled,
            }
        }

        /// Auto-switch only: the slave's handshake went out; waiting for the master's.
        #[state]
        fn handshake(context: &mut SlaveData, event: &SlaveInput) -> Outcome<State> {
            match *event {
                SlaveInput::MasterHandshake(now, max, ref entries) => {
                    context.last_read = now;
                    context.handshake(max, entries)
                }
                SlaveInput::Header(..) | SlaveInput::EpochHeader(..) => context.close(
                    HaClose::Protocol("a transfer before the master's handshake".into()),
                ),
                SlaveInput::Tick(now)
                    if now.since(context.last_read) > context.config.housekeeping_ms =>
                {
                    context.close(HaClose::Idle)
                }
                SlaveInput::Broken(ref why) => context.close(HaClose::Protocol(why.clone())),
                SlaveInput::Disconnected => Transition(State::ready()),
                SlaveInput::Shutdown => Transition(State::shutdown()),
                _ => Handled,
            }
        }

        #[state]
        fn transfer(context: &mut SlaveData, event: &SlaveInput) -> Outcome<State> {
            match *event {
                SlaveInput::Header(now, offset) => {
                    if let Err(why) = context.check_offset(offset) {
                        if offset < context.expected {
                            return context.suspend(format!(
                                "the master's log ends at {offset}, before this slave's end at \
                                 {}: the bytes in [{offset}, {}) are not the master's (another \
                                 master fed this store, or it was a master). Nothing is \
                                 appended. Move the store aside to replicate afresh, or run \
                                 both sides with --ha-mode auto-switch, which cuts a divergent \
                                 tail",
                                context.expected, context.expected
                            ));
                        }
                        return context.close(HaClose::Protocol(why));
                    }
                    context.last_read = now;
                    Handled
                }
                SlaveInput::EpochHeader(now, offset, te) => {
                    if let Err(why) = context.epoch_header(offset, te) {
                        return context.close(HaClose::Protocol(why));
                    }
                    context.last_read = now;
                    Handled
                }
                SlaveInput::MasterHandshake(..) => context.close(HaClose::Protocol(
                    "a master handshake while transferring".into(),
                )),
                SlaveInput::Appended(new_max) => {
                    context.local_max = new_max;
                    context.expected = new_max;
                    context.report_due = true;
                    Handled
                }
                SlaveInput::Tick(now)
                    if now.since(context.last_read) > context.config.housekeeping_ms =>
                {
                    context.close(HaClose::Idle)
                }
                SlaveInput::Tick(now) => {
                    if now.since(context.last_report) >= context.config.heartbeat_ms {
                        context.report_due = true;
                    }
                    Handled
                }
                SlaveInput::Broken(ref why) => context.close(HaClose::Protocol(why.clone())),
                SlaveInput::Disconnected => Transition(State::ready()),
                SlaveInput::Shutdown => Transition(State::shutdown()),
                SlaveInput::Connected(..) => Handled,
            }
        }

        /// This master's log cannot be reconciled with ours (auto-switch: a stale master or no
        /// consistent point; classic: its log ends before ours). Nothing is appended until the
        /// connection is gone; the next connect starts over.
        #[state]
        fn suspend(event: &SlaveInput) -> Outcome<State> {
            match *event {
                SlaveInput::Disconnected => Transition(State::ready()),
                SlaveInput::Shutdown => Transition(State::shutdown()),
                _ => Handled,
            }
        }

        #[state]
        fn shutdown(event: &SlaveInput) -> Outcome<State> {
            let _ = event;
            Handled
        }
    }
}

/// The slave's side of classic replication (upstream `DefaultHAClient`'s logic, without its
/// thread): report the log's end, append what the master sends at exactly that end, report again.
///
/// Driver loop: connect, `handle_connected`; on bytes, `handle_bytes` then append each returned
/// [`SlaveAppend`] (after a `Rebase` event if one is pending) and call `handle_appended`; write
/// what `poll_transmit` returns; on a `Closed` event or any IO failure, close the socket, call
/// `handle_disconnected` and reconnect with backoff.
pub struct SlaveLink {
    machine: StateMachine<slave::Slave>,
    data: SlaveData,
    decoder: MasterDecoder,
}

/// How the slave splits what the master sends.
#[derive(Debug, Clone)]
enum MasterDecoder {
    Classic(TransferDecoder),
    Auto(MasterFrameDecoder),
}

impl MasterDecoder {
    fn new(config: &HaConfig, auto: bool) -> Self {
        if auto {
            MasterDecoder::Auto(MasterFrameDecoder::new(config.body_max))
        } else {
            MasterDecoder::Classic(TransferDecoder::new(config.body_max))
        }
    }
}

/// One decoded piece, either framing.
enum Chunk<'a> {
    Header(u64),
    EpochHeader(u64, TransferEpoch),
    Handshake(u64, Vec<EpochEntry>),
    Body(u64, &'a [u8]),
}

impl fmt::Debug for SlaveLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlaveLink")
            .field("state", &self.state())
            .field("data", &self.data)
            .finish()
    }
}

impl SlaveLink {
    /// A disconnected link (`Ready`).
    pub fn new(config: HaConfig) -> Self {
        let data = SlaveData {
            config,
            auto: None,
            local_max: 0,
            expected: 0,
            last_read: Millis(0),
            last_report: Millis(0),
            report_due: false,
            events: VecDeque::new(),
        };
        SlaveLink {
            machine: slave::Slave.state_machine(),
            data,
            decoder: MasterDecoder::new(&config, false),
        }
    }

    /// An auto-switch link (RocketMQ 5.1.1+ controller mode): on connect it sends `hello`,
    /// waits for the master's handshake, finds the consistent point with the local epochs
    /// (given by [`handle_local_epochs`](Self::handle_local_epochs) before each connect) and
    /// asks for the log to be cut back there ([`SlaveEvent::Truncate`]) before it reports;
    /// each transfer's epoch is checked, and a new one comes with the first bytes of it
    /// ([`SlaveAppend::epoch`]).
    pub fn auto_switch(config: HaConfig, hello: SlaveHello) -> Self {
        let mut link = SlaveLink::new(config);
        link.data.auto = Some(AutoSlave {
            hello,
            hello_due: false,
            local_min: 0,
            local_epochs: Vec::new(),
            last_epoch: None,
            pending_epoch: None,
            confirm: 0,
            #[cfg(feature = "harness")]
            skip_truncation: false,
        });
        link.decoder = MasterDecoder::new(&config, true);
        link
    }

    /// The planted defect of a slave that skips the truncation (feature `harness`): it keeps
    /// its whole log and reports its end, as upstream's classic slave does, so bytes a failed
    /// master never had stay under the new master's.
    #[cfg(feature = "harness")]
    pub fn with_skipped_truncation(mut self) -> Self {
        if let Some(auto) = self.data.auto.as_mut() {
            auto.skip_truncation = true;
        }
        self
    }

    /// The local log's min offset and epoch entries (auto-switch; call before each connect).
    pub fn handle_local_epochs(&mut self, min: u64, epochs: Vec<EpochEntry>) {
        if let Some(auto) = self.data.auto.as_mut() {
            auto.local_min = min;
            auto.last_epoch = epochs.last().copied();
            auto.local_epochs = epochs;
        }
    }

    /// The handshake frame to send now (auto-switch, once per connect).
    pub fn poll_handshake(&mut self) -> Option<[u8; autoswitch::SLAVE_HANDSHAKE_LEN]> {
        let handshaking = self.state() == HaState::Handshake;
        let auto = self.data.auto.as_mut()?;
        if !handshaking || !auto.hello_due {
            return None;
        }
        auto.hello_due = false;
        Some(autoswitch::encode_slave_handshake(auto.hello))
    }

    /// The report frame for `offset` (8 bytes in classic mode, 12 in auto-switch).
    pub fn encode_report(&self, offset: u64) -> smallvec::SmallVec<[u8; 12]> {
        if self.data.auto.is_some() {
            autoswitch::encode_slave_report(offset)[..].into()
        } else {
            encode_report(offset)[..].into()
        }
    }

    /// The master's confirm offset, as last sent (auto-switch).
    pub fn confirm_offset(&self) -> Option<u64> {
        self.data.auto.as_ref().map(|a| a.confirm)
    }

    /// Connected to the master with the local log ending at `local_max`: `Ready -> Transfer`, and
    /// a report is due at once.
    pub fn handle_connected(&mut self, now: Millis, local_max: u64) {
        self.decoder = MasterDecoder::new(&self.data.config, self.data.auto.is_some());
        self.machine
            .handle_with_context(&SlaveInput::Connected(now, local_max), &mut self.data);
    }

    /// Bytes from the master. Appends to perform are pushed to `out` (cleared first).
    pub fn handle_bytes(&mut self, now: Millis, input: &[u8], out: &mut Vec<SlaveAppend>) {
        out.clear();
        let mut rest = input;
        while matches!(self.state(), HaState::Transfer | HaState::Handshake) {
            let chunk = match &mut self.decoder {
                MasterDecoder::Classic(d) => d.next(&mut rest).map(|c| {
                    c.map(|c| match c {
                        TransferChunk::Header { offset, .. } => Chunk::Header(offset),
                        TransferChunk::Body { offset, bytes } => Chunk::Body(offset, bytes),
                    })
                }),
                MasterDecoder::Auto(d) => d.next(&mut rest).map(|c| {
                    c.map(|c| match c {
                        MasterChunk::Header { offset, epoch, .. } => {
                            Chunk::EpochHeader(offset, epoch)
                        }
                        MasterChunk::Handshake { max, entries, .. } => {
                            Chunk::Handshake(max, entries)
                        }
                        MasterChunk::Body { offset, bytes } => Chunk::Body(offset, bytes),
                    })
                }),
            };
            let input_ = match chunk {
                Ok(None) => break,
                Ok(Some(Chunk::Header(offset))) => SlaveInput::Header(now, offset),
                Ok(Some(Chunk::EpochHeader(offset, te))) => {
                    SlaveInput::EpochHeader(now, offset, te)
                }
                Ok(Some(Chunk::Handshake(max, entries))) => {
                    SlaveInput::MasterHandshake(now, max, entries)
                }
                Ok(Some(Chunk::Body(offset, bytes))) => {
                    let start = input.len() - rest.len() - bytes.len();
                    self.data.expected = offset + bytes.len() as u64;
                    let epoch = self.data.auto.as_mut().and_then(|a| a.pending_epoch.take());
                    out.push(SlaveAppend {
                        offset,
                        range: start..start + bytes.len(),
                        epoch,
                    });
                    continue;
                }
                Err(why) => SlaveInput::Broken(why),
            };
            self.machine.handle_with_context(&input_, &mut self.data);
        }
    }

    /// The appends returned so far are in the log, which now ends at `new_max`.
    pub fn handle_appended(&mut self, new_max: u64) {
        self.machine
            .handle_with_context(&SlaveInput::Appended(new_max), &mut self.data);
    }

    /// The timer fired.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.machine
            .handle_with_context(&SlaveInput::Tick(now), &mut self.data);
    }

    /// The connection is gone (IO error, EOF, or after a `Closed` event): back to `Ready`.
    pub fn handle_disconnected(&mut self) {
        self.machine
            .handle_with_context(&SlaveInput::Disconnected, &mut self.data);
    }

    /// Stop for good.
    pub fn handle_shutdown(&mut self) {
        self.machine
            .handle_with_context(&SlaveInput::Shutdown, &mut self.data);
    }

    /// The report to send now, if one is due: the log's end.
    pub fn poll_transmit(&mut self, now: Millis) -> Option<u64> {
        if self.state() != HaState::Transfer || !self.data.report_due {
            return None;
        }
        self.data.report_due = false;
        self.data.last_report = now;
        Some(self.data.local_max)
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<SlaveEvent> {
        self.data.events.pop_front()
    }

    /// When `handle_timeout` must be called next; `None` unless transferring.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let d = &self.data;
        let state = self.state();
        matches!(state, HaState::Transfer | HaState::Handshake).then(|| {
            let housekeeping = d.last_read.0 + d.config.housekeeping_ms + 1;
            if state == HaState::Handshake {
                return Millis(housekeeping);
            }
            let heartbeat = d.last_report.0 + d.config.heartbeat_ms;
            Millis(housekeeping.min(heartbeat))
        })
    }

    /// The upstream state name.
    pub fn state(&self) -> HaState {
        match self.machine.state() {
            slave::State::Ready {} => HaState::Ready,
            slave::State::Handshake {} => HaState::Handshake,
            slave::State::Transfer {} => HaState::Transfer,
            slave::State::Suspend {} => HaState::Suspend,
            slave::State::Shutdown {} => HaState::Shutdown,
        }
    }

    /// The log end this link believes in.
    pub fn local_max(&self) -> u64 {
        self.data.local_max
    }
}

/// The fuzz property of the transfer decoder: any bytes, split anywhere, never panic, and body
/// chunks are contiguous and exactly as long as their headers announced.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(data.len());
    let mut decoder = TransferDecoder::new(1 << 16);
    let mut expect_body: u64 = 0;
    let mut next_offset = 0;
    for mut part in [&data[..split], &data[split..]] {
        loop {
            match decoder.next(&mut part) {
                Ok(None) => break,
                Ok(Some(TransferChunk::Header { offset, size })) => {
                    assert_eq!(expect_body, 0, "a header inside a body");
                    expect_body = u64::from(size);
                    next_offset = offset;
                }
                Ok(Some(TransferChunk::Body { offset, bytes })) => {
                    assert_eq!(offset, next_offset, "body chunks are contiguous");
                    assert!(bytes.len() as u64 <= expect_body && !bytes.is_empty());
                    expect_body -= bytes.len() as u64;
                    next_offset += bytes.len() as u64;
                }
                Err(_) => return,
            }
        }
    }
    let mut reports = ReportDecoder::default();
    let mut n = 0;
    reports.push(data, |_| n += 1);
    assert_eq!(n * REPORT_LEN + reports.pending(), data.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 100;

    fn config() -> HaConfig {
        HaConfig {
            heartbeat_ms: 5,
            housekeeping_ms: 20,
            batch_max: 32,
            segment_size: SEG,
            body_max: 64,
        }
    }

    fn drain(m: &mut MasterLink) -> Vec<MasterEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    #[test]
    fn nothing_is_sent_before_the_first_valid_report() {
        let mut m = MasterLink::new(config(), 0, 250);
        m.handle_start(Millis(0));
        assert_eq!(m.state(), HaState::Transfer);
        assert_eq!(m.poll_transmit(Millis(100)), None, "not even a heartbeat");
        m.handle_bytes(Millis(1), &encode_report(0)[..5]);
        assert_eq!(m.ack(), None, "half a report is not a report");
        m.handle_bytes(Millis(1), &encode_report(0)[5..]);
        assert_eq!(
            drain(&mut m),
            [MasterEvent::Acked {
                offset: 0,
                first: true
            }]
        );
        // Like upstream's classic master, a report of 0 is sent the last segment only, in
        // batches of at most 32 bytes.
        let sent: Vec<_> = std::iter::from_fn(|| m.poll_transmit(Millis(2))).collect();
        let lens: Vec<_> = sent.iter().map(|t| (t.offset, t.len)).collect();
        assert_eq!(lens, [(200, 32), (232, 18)]);
        assert_eq!(
            m.poll_transmit(Millis(6)),
            None,
            "quiet for less than the heartbeat interval"
        );
        assert_eq!(
            m.poll_transmit(Millis(7)),
            Some(Transmit::classic(250, 0)),
            "heartbeat"
        );
    }

    /// Where a classic link's first transfer starts: at a non-zero report as it comes; at a
    /// report of 0, the start of the last segment (upstream `DefaultHAConnection`), never below
    /// the log's first offset; the whole log only while the log has one segment.
    #[test]
    fn a_first_report_of_zero_starts_at_the_last_segment() {
        for (log_min, max, report, start) in [
            (0, 250, 0, 200),
            (0, 300, 0, 300),
            (0, 99, 0, 0),
            (0, 0, 0, 0),
            (0, 250, 150, 150),
            (250, 420, 0, 400),
            (350, 390, 0, 350),
        ] {
            let mut m = MasterLink::new(config(), log_min, max);
            m.handle_start(Millis(0));
            m.handle_bytes(Millis(1), &encode_report(report));
            assert_eq!(
                drain(&mut m),
                [MasterEvent::Acked {
                    offset: report,
                    first: true
                }]
            );
            assert_eq!(
                m.next_offset(),
                start,
                "log [{log_min}, {max}), report {report}"
            );
            let first = m.poll_transmit(Millis(100)).map(|t| t.offset);
            assert_eq!(
                first,
                Some(start),
                "log [{log_min}, {max}), report {report}"
            );
        }
        // Auto-switch keeps upstream's `AutoSwitchHAConnection`: the whole log, unless the
        // handshake asks for the last file.
        for (sync_from_last_file, start) in [(false, 0), (true, 200)] {
            let entries = vec![EpochEntry { epoch: 1, start: 0 }];
            let mut m = MasterLink::auto_switch(config(), 0, 250, entries);
            m.handle_start(Millis(0));
            let hello = SlaveHello {
                sync_from_last_file,
                ..SlaveHello::default()
            };
            m.handle_bytes(Millis(1), &autoswitch::encode_slave_handshake(hello));
            m.poll_transmit(Millis(1)).expect("the master's handshake");
            m.handle_bytes(Millis(1), &autoswitch::encode_slave_report(0));
            assert_eq!(
                m.next_offset(),
                start,
                "syncFromLastFile {sync_from_last_file}"
            );
        }
    }

    #[test]
    fn probes_are_protocol_errors() {
        for (probe, needle) in [
            (
                &b"2024-10-30 16:42:30"[..],
                "beyond the master's max offset",
            ),
            (&encode_report(251)[..], "beyond the master's max offset"),
            (&(-1i64).to_be_bytes()[..], "negative report"),
        ] {
            let mut m = MasterLink::new(config(), 0, 250);
            m.handle_start(Millis(0));
            m.handle_bytes(Millis(1), probe);
            let events = drain(&mut m);
            assert!(
                matches!(&events[..], [MasterEvent::Closed(HaClose::Protocol(why))] if why.contains(needle)),
                "{events:?}"
            );
            assert_eq!(m.state(), HaState::Shutdown);
            assert_eq!(m.ack(), None, "a probe never counts as an ack");
            m.handle_bytes(Millis(2), &encode_report(10));
            assert_eq!(m.ack(), None, "nothing after shutdown");
        }
    }

    #[test]
    fn reports_are_bounded_by_what_was_sent_and_monotonic() {
        let mut m = MasterLink::new(config(), 0, 250);
        m.handle_start(Millis(0));
        m.handle_bytes(Millis(1), &encode_report(40));
        assert_eq!(m.poll_transmit(Millis(1)), Some(Transmit::classic(40, 32)));
        m.handle_bytes(Millis(2), &encode_report(72));
        m.handle_bytes(Millis(3), &encode_report(72));
        assert_eq!(drain(&mut m).len(), 3);
        m.handle_bytes(Millis(4), &encode_report(73));
        assert!(
            matches!(drain(&mut m)[..], [MasterEvent::Closed(HaClose::Protocol(ref w))] if w.contains("beyond the 72 bytes sent"))
        );
        let mut m = MasterLink::new(config(), 0, 250);
        m.handle_start(Millis(0));
        m.handle_bytes(Millis(1), &[encode_report(40), encode_report(39)].concat());
        assert!(
            matches!(drain(&mut m)[..], [_, MasterEvent::Closed(HaClose::Protocol(ref w))] if w.contains("went back"))
        );
    }

    #[test]
    fn housekeeping_closes_a_silent_link() {
        let mut m = MasterLink::new(config(), 0, 0);
        m.handle_start(Millis(0));
        assert_eq!(m.poll_timeout(), Some(Millis(21)));
        m.handle_timeout(Millis(20));
        assert_eq!(m.state(), HaState::Transfer);
        m.handle_timeout(Millis(21));
        assert_eq!(drain(&mut m), [MasterEvent::Closed(HaClose::Idle)]);
        assert_eq!(m.poll_timeout(), None);
    }

    /// A master and a slave link wired back to back through byte buffers: an empty slave
    /// rebases to the master's last segment and its log ends equal to the master's from there,
    /// whatever the read sizes.
    #[test]
    fn master_and_slave_links_replicate() {
        for (len, chunk) in [(250u32, 1usize), (250, 5), (250, 12), (90, 13), (250, 100)] {
            let master_log: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let base = u64::from(len) / SEG * SEG;
            let mut m = MasterLink::new(config(), 0, master_log.len() as u64);
            let mut s = SlaveLink::new(config());
            let mut slave_log: Vec<u8> = Vec::new();
            let mut slave_base = 0;
            m.handle_start(Millis(0));
            s.handle_connected(Millis(0), 0);
            let mut appends = Vec::new();
            for round in 0..100 {
                let now = Millis(round);
                if let Some(report) = s.poll_transmit(now) {
                    m.handle_bytes(now, &encode_report(report));
                }
                while let Some(e) = m.poll_event() {
                    assert!(matches!(e, MasterEvent::Acked { .. }), "{e:?}");
                }
                let mut wire = Vec::new();
                while let Some(t) = m.poll_transmit(now) {
                    wire.extend_from_slice(&encode_transfer_header(t.offset, t.len));
                    wire.extend_from_slice(
                        &master_log[t.offset as usize..(t.offset + u64::from(t.len)) as usize],
                    );
                }
                for piece in wire.chunks(chunk) {
                    s.handle_bytes(now, piece, &mut appends);
                    while let Some(e) = s.poll_event() {
                        assert_eq!(e, SlaveEvent::Rebase(base), "only an empty log rebases");
                        assert!(slave_log.is_empty());
                        slave_base = base;
                    }
                    for a in &appends {
                        assert_eq!(a.offset, slave_base + slave_log.len() as u64);
                        slave_log.extend_from_slice(&piece[a.range.clone()]);
                    }
                    if !appends.is_empty() {
                        s.handle_appended(slave_base + slave_log.len() as u64);
                    }
                }
            }
            assert_eq!(slave_base, base);
            assert_eq!(slave_log, master_log[base as usize..], "read size {chunk}");
            assert_eq!(m.ack(), Some(u64::from(len)));
        }
    }

    #[test]
    fn slave_refuses_a_gap_and_accepts_a_rebase_only_when_empty() {
        let mut s = SlaveLink::new(config());
        s.handle_connected(Millis(0), 50);
        assert_eq!(s.poll_transmit(Millis(0)), Some(50));
        let mut out = Vec::new();
        s.handle_bytes(Millis(1), &encode_transfer_header(60, 0), &mut out);
        assert!(matches!(
            s.poll_event(),
            Some(SlaveEvent::Closed(HaClose::Protocol(_)))
        ));
        assert_eq!(s.state(), HaState::Ready);

        let mut s = SlaveLink::new(config());
        s.handle_connected(Millis(0), 0);
        let mut wire = encode_transfer_header(200, 3).to_vec();
        wire.extend_from_slice(b"abc");
        s.handle_bytes(Millis(1), &wire, &mut out);
        assert_eq!(s.poll_event(), Some(SlaveEvent::Rebase(200)));
        assert_eq!(
            out,
            [SlaveAppend {
                offset: 200,
                range: 12..15,
                epoch: None
            }]
        );
    }

    #[test]
    fn a_classic_slave_ahead_of_its_master_names_both_ends_and_appends_nothing() {
        // The master's log ends at 560; the slave holds 1,120 bytes another master sent it.
        let mut m = MasterLink::new(config(), 0, 560);
        m.handle_start(Millis(0));
        let mut s = SlaveLink::new(config());
        s.handle_connected(Millis(0), 1120);
        let report = s.poll_transmit(Millis(0)).unwrap();
        m.handle_bytes(Millis(1), &encode_report(report));
        assert!(
            matches!(&drain(&mut m)[..], [MasterEvent::Closed(HaClose::Protocol(w))] if w.contains("beyond")),
        );
        let farewell = m.farewell().expect("a farewell at the master's end");
        assert_eq!(farewell, Transmit::classic(560, 0));
        let mut out = Vec::new();
        s.handle_bytes(Millis(2), &farewell.header().unwrap(), &mut out);
        let Some(SlaveEvent::Closed(HaClose::Protocol(why))) = s.poll_event() else {
            panic!("the slave must close");
        };
        assert!(why.contains("560") && why.contains("1120"), "{why}");
        assert_eq!(s.state(), HaState::Suspend);
        assert!(out.is_empty(), "nothing to append");
        s.handle_bytes(Millis(3), &encode_transfer_header(1120, 0), &mut out);
        assert_eq!(
            s.poll_transmit(Millis(3)),
            None,
            "no report while suspended"
        );
        assert_eq!(s.poll_event(), None);
        s.handle_disconnected();
        assert_eq!(s.state(), HaState::Ready);

        // A probe gets the same farewell; a behind or mid-stream refusal gets none.
        for (probe, farewell) in [
            (&b"2024-10-30 16:42:30"[..], Some(Transmit::classic(560, 0))),
            (&(-1i64).to_be_bytes()[..], None),
        ] {
            let mut m = MasterLink::new(config(), 0, 560);
            m.handle_start(Millis(0));
            m.handle_bytes(Millis(1), probe);
            assert_eq!(m.farewell(), farewell);
        }
        let mut m =
            MasterLink::auto_switch(config(), 0, 560, vec![EpochEntry { epoch: 1, start: 0 }]);
        m.handle_start(Millis(0));
        assert_eq!(
            m.farewell(),
            None,
            "auto-switch slaves learn the end from the handshake"
        );
    }

    #[test]
    fn slave_heartbeats_and_housekeeping() {
        let mut s = SlaveLink::new(config());
        s.handle_connected(Millis(0), 7);
        assert_eq!(s.poll_transmit(Millis(0)), Some(7));
        assert_eq!(s.poll_transmit(Millis(1)), None);
        s.handle_timeout(Millis(5));
        assert_eq!(
            s.poll_transmit(Millis(5)),
            Some(7),
            "re-report after the heartbeat interval"
        );
        s.handle_timeout(Millis(21));
        assert_eq!(s.poll_event(), Some(SlaveEvent::Closed(HaClose::Idle)));
        assert_eq!(s.state(), HaState::Ready);
        let mut out = Vec::new();
        s.handle_connected(Millis(30), 7);
        s.handle_bytes(Millis(31), &encode_transfer_header(7, 1 << 20), &mut out);
        assert!(
            matches!(s.poll_event(), Some(SlaveEvent::Closed(HaClose::Protocol(w))) if w.contains("exceeds"))
        );
    }

    fn e(epoch: u32, start: u64) -> EpochEntry {
        EpochEntry { epoch, start }
    }

    /// An auto-switch master (log `master_log`, entries `master_epochs`) and slave (its own
    /// log and entries) wired back to back; returns the slave's log and entries once it
    /// caught up, and every transmit the master made.
    fn auto_pair(
        master_log: &[u8],
        master_epochs: &[EpochEntry],
        mut slave_log: Vec<u8>,
        mut slave_epochs: Vec<EpochEntry>,
        chunk: usize,
    ) -> (Vec<u8>, Vec<EpochEntry>, Vec<Transmit>, Vec<SlaveEvent>) {
        let mut m =
            MasterLink::auto_switch(config(), 0, master_log.len() as u64, master_epochs.to_vec());
        let mut s = SlaveLink::auto_switch(config(), SlaveHello::default());
        m.handle_start(Millis(0));
        s.handle_local_epochs(0, slave_epochs.clone());
        s.handle_connected(Millis(0), slave_log.len() as u64);
        let mut sent = Vec::new();
        let mut events = Vec::new();
        let mut appends = Vec::new();
        for round in 0..200 {
            let now = Millis(round);
            if let Some(hello) = s.poll_handshake() {
                m.handle_bytes(now, &hello);
            }
            if let Some(report) = s.poll_transmit(now) {
                m.handle_bytes(now, &s.encode_report(report));
            }
            while let Some(ev) = m.poll_event() {
                assert!(matches!(ev, MasterEvent::Acked { .. }), "{ev:?}");
            }
            let mut wire = Vec::new();
            while let Some(t) = m.poll_transmit(now) {
                sent.push(t);
                match t.header() {
                    Some(h) => wire.extend_from_slice(&h),
                    None => wire.extend_from_slice(&m.handshake_frame()),
                }
                wire.extend_from_slice(
                    &master_log[t.offset as usize..(t.offset + u64::from(t.len)) as usize],
                );
            }
            for piece in wire.chunks(chunk) {
                s.handle_bytes(now, piece, &mut appends);
                while let Some(ev) = s.poll_event() {
                    if let SlaveEvent::Truncate(point) = ev {
                        slave_log.truncate(point as usize);
                        slave_epochs.retain(|e| e.start < point);
                    }
                    events.push(ev);
                }
                for a in &appends {
                    assert_eq!(a.offset, slave_log.len() as u64);
                    if let Some(epoch) = a.epoch {
                        slave_epochs.push(epoch);
                    }
                    slave_log.extend_from_slice(&piece[a.range.clone()]);
                }
                if !appends.is_empty() {
                    s.handle_appended(slave_log.len() as u64);
                }
            }
            if s.state() == HaState::Suspend {
                break;
            }
        }
        (slave_log, slave_epochs, sent, events)
    }

    /// The master lost [560, 1120) (a crash) and went on in epoch 2 from 560; the slave had
    /// replicated epoch 1 to 1120. It cuts back to 560 and ends byte-identical, with the
    /// master's epochs, whatever the read sizes; no transfer crosses an epoch's end.
    #[test]
    fn an_auto_switch_slave_truncates_its_divergent_tail() {
        let master_log: Vec<u8> = (0..1680u32).map(|i| (i * 7) as u8).collect();
        let master_epochs = [e(1, 0), e(2, 560)];
        let mut slave_log = master_log[..560].to_vec();
        slave_log.extend((560..1120u32).map(|i| (i * 13) as u8));
        for chunk in [1usize, 7, 20, 36, 1000] {
            let (log, epochs, sent, events) = auto_pair(
                &master_log,
                &master_epochs,
                slave_log.clone(),
                vec![e(1, 0)],
                chunk,
            );
            assert_eq!(log, master_log, "read size {chunk}");
            assert_eq!(epochs, master_epochs);
            assert_eq!(events.first(), Some(&SlaveEvent::Truncate(560)));
            assert_eq!(sent[0].head, Head::Handshake);
            for t in &sent[1..] {
                let Head::Transfer(te) = t.head else {
                    panic!("{t:?}")
                };
                let end = if te.epoch.epoch == 1 { 560 } else { 1680 };
                assert!(
                    t.offset >= te.epoch.start && t.offset + u64::from(t.len) <= end,
                    "{t:?}"
                );
            }
        }
    }

    /// A slave whose last epoch is newer than the master's (a stale master), or that shares no
    /// epoch with it, is suspended: it appends nothing and says why.
    #[test]
    fn an_auto_switch_slave_refuses_a_stale_or_unrelated_master() {
        let master_log = vec![1u8; 300];
        for (master_epochs, slave_epochs, needle) in [
            (vec![e(1, 0)], vec![e(1, 0), e(2, 100)], "stale master"),
            (vec![e(3, 0)], vec![e(2, 0)], "no consistent point"),
        ] {
            let (log, _, _, events) =
                auto_pair(&master_log, &master_epochs, vec![9; 150], slave_epochs, 64);
            assert_eq!(log, vec![9; 150], "nothing appended, nothing cut");
            assert!(
                matches!(&events[..], [SlaveEvent::Closed(HaClose::Protocol(w))] if w.contains(needle)),
                "{events:?}"
            );
        }
    }

    /// The master counts nothing before its handshake went out: a report first is a protocol
    /// error, never an ack.
    #[test]
    fn an_auto_switch_master_counts_no_report_before_the_handshake() {
        let mut m = MasterLink::auto_switch(config(), 0, 250, vec![e(1, 0)]);
        m.handle_start(Millis(0));
        assert_eq!(m.state(), HaState::Handshake);
        m.handle_bytes(Millis(1), &autoswitch::encode_slave_report(0));
        assert!(
            matches!(drain(&mut m)[..], [MasterEvent::Closed(HaClose::Protocol(ref w))] if w.contains("before the handshake"))
        );
        assert_eq!(m.ack(), None);
        // A classic slave's 8-byte report of 0 is an unknown state to an auto-switch master.
        let mut m = MasterLink::auto_switch(config(), 0, 250, vec![e(1, 0)]);
        m.handle_start(Millis(0));
        m.handle_bytes(Millis(1), &encode_report(1 << 40));
        assert!(matches!(drain(&mut m)[..], [MasterEvent::Closed(_)]));
    }
}
