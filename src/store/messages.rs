//! The send path over the commit log: the topics sends created, the next queue offset of every
//! (topic, queue), and the append of one message under the lock that assigns its offset.
//!
//! The checks, routing and record layout are `core::message`'s; this module adds only the
//! state they need and the order of effects upstream has (offset assigned, record written,
//! offset counted only if the write succeeded). It is not a consume queue: nothing here reads
//! messages back by queue. Queue offsets are rebuilt on [`MessageLog::open`] by one scan of the
//! log (a cost proportional to the log, paid once per start); topics live in memory and are
//! created again by the next send after a restart.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

use super::record::{self, Frame, MIN_BLANK_LEN};
use super::{Appended, CommitLog};
use crate::core::message::{self, Refusal, SendHeader, SendResult, SendRules, Topics, UniqKeys};
use crate::core::remoting::code;
use crate::sync::{Arc, Mutex};

/// A message the log stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Where its record is (its end is what sync replication waits for).
    pub appended: Appended,
    /// What the response reports.
    pub result: SendResult,
    /// The producer asked not to wait for slaves.
    pub no_wait: bool,
}

/// What [`MessageLog::open`] found in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Message records read.
    pub messages: u64,
    /// Queues with at least one counted message.
    pub queues: usize,
    /// Bytes scanned.
    pub bytes: u64,
}

/// The commit log as a message store.
#[derive(Debug)]
pub struct MessageLog {
    log: Arc<CommitLog>,
    rules: SendRules,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    topics: Topics,
    /// The next queue offset of each (topic, queue).
    offsets: HashMap<(String, i32), i64>,
    uniq: UniqKeys,
    /// Picks the queue of a send that lets the broker choose: round robin.
    spread: u32,
}

impl MessageLog {
    /// Takes over `log` for sends, rebuilding every queue's next offset from the message
    /// records in it. `pid` and `salt` make the ids given to messages that came without one
    /// unique to this process.
    pub fn open(
        log: Arc<CommitLog>,
        rules: SendRules,
        pid: u32,
        salt: u32,
    ) -> io::Result<(MessageLog, Recovered)> {
        let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
        let mut recovered = Recovered::default();
        recovered.bytes = scan(&log, |rec| {
            if let Some(v) = message::view(rec) {
                recovered.messages += 1;
                if v.took_queue_offset() {
                    let next = offsets.entry((v.topic.to_owned(), v.queue_id)).or_default();
                    *next = (*next).max(v.queue_offset.saturating_add(1));
                }
            }
        })?;
        recovered.queues = offsets.len();
        let state = State {
            topics: Topics::default(),
            offsets,
            uniq: UniqKeys::new(pid, salt),
            spread: salt,
        };
        Ok((
            MessageLog {
                log,
                rules,
                state: Mutex::new(state),
            },
            recovered,
        ))
    }

    /// The log.
    pub fn log(&self) -> &Arc<CommitLog> {
        &self.log
    }

    /// The next queue offset of (`topic`, `queue`): how many counted messages it holds.
    pub fn next_queue_offset(&self, topic: &str, queue: i32) -> i64 {
        let state = self.state.lock();
        state
            .offsets
            .get(&(topic.to_owned(), queue))
            .copied()
            .unwrap_or(0)
    }

    /// Checks and stores one message from a producer at `born`, received on a connection whose
    /// local address is `store_host`. `now_ms` (wall clock, ms since the epoch) is read under
    /// the lock, so store timestamps follow log order. A store error is `SERVICE_NOT_AVAILABLE`
    /// naming it; the log is left as it was.
    pub fn send(
        &self,
        header: &SendHeader,
        body: Option<&Bytes>,
        born: SocketAddr,
        store_host: SocketAddr,
        now_ms: impl Fn() -> i64,
    ) -> Result<Sent, Refusal> {
        self.send_all([(header, body)], born, store_host, now_ms)
            .pop()
            .expect("one answer per send")
    }

    /// [`send`](Self::send) for several messages from one producer connection, in order, as
    /// one group commit: each is checked and given its queue offset as if sent alone, and the
    /// admitted ones are written with one write per segment and published together (a store
    /// error refuses them all). One answer per message, in order.
    pub fn send_all<'a>(
        &self,
        sends: impl IntoIterator<Item = (&'a SendHeader, Option<&'a Bytes>)>,
        born: SocketAddr,
        store_host: SocketAddr,
        now_ms: impl Fn() -> i64,
    ) -> Vec<Result<Sent, Refusal>> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        // Per send: its check's outcome; per admitted one, its queue offset.
        let mut answers: Vec<Result<(message::Admitted, i64), Refusal>> = Vec::new();
        // Queue offsets this batch takes, counted only once the batch is written.
        let mut taken: HashMap<(String, i32), i64> = HashMap::new();
        for (header, body) in sends {
            state.spread = state.spread.wrapping_add(1);
            let uniq = &mut state.uniq;
            let admitted = message::admit(
                header,
                body,
                &mut state.topics,
                born,
                &self.rules,
                state.spread,
                || uniq.next(store_host.ip(), now_ms()),
            );
            answers.push(admitted.map(|a| {
                let m = &a.message;
                let queue_offset = if m.takes_queue_offset() {
                    let key = (m.topic.clone(), m.queue_id);
                    let base = state.offsets.get(&key).copied().unwrap_or(0);
                    let next = taken.entry(key).or_insert(base);
                    *next += 1;
                    *next - 1
                } else {
                    0
                };
                (a, queue_offset)
            }));
        }
        let admitted: Vec<&(message::Admitted, i64)> =
            answers.iter().filter_map(|a| a.as_ref().ok()).collect();
        let lens: Vec<usize> = admitted
            .iter()
            .map(|(a, _)| a.message.record_len(store_host))
            .collect();
        let now = now_ms();
        let placed = self.log.append_messages(&lens, |i, phys, dst| {
            let (a, queue_offset) = admitted[i];
            a.message.encode(dst, phys, *queue_offset, now, store_host);
        });
        let placed = match placed {
            Ok(placed) => placed,
            Err(error) => {
                let refusal = Refusal {
                    code: code::SERVICE_NOT_AVAILABLE,
                    remark: format!(
                        "service not available now. It may be caused by one of the following \
                         reasons: the broker's disk is full, messages are put to the slave, \
                         message store has been shut down, etc. ({error})"
                    ),
                };
                return answers
                    .into_iter()
                    .map(|a| a.and(Err(refusal.clone())))
                    .collect();
            }
        };
        state.offsets.extend(taken);
        let mut placed = placed.into_iter();
        answers
            .into_iter()
            .map(|answer| {
                let (a, queue_offset) = answer?;
                let appended = placed.next().expect("one place per admitted send");
                Ok(Sent {
                    appended,
                    result: SendResult {
                        msg_id: message::msg_id(store_host, appended.start),
                        queue_id: a.queue_id,
                        queue_offset,
                        transaction_id: a.uniq_key,
                    },
                    no_wait: a.no_wait,
                })
            })
            .collect()
    }
}

/// Bytes read at once while scanning.
const SCAN_CHUNK: usize = 1 << 20;

/// Calls `visit` with every upstream message record of `log`, in order; returns the bytes read.
/// The log is already a valid prefix of records (recovery made it one), so a record that does
/// not frame here is an error, not a tail to cut.
fn scan(log: &CommitLog, mut visit: impl FnMut(&[u8])) -> io::Result<u64> {
    let (min, max) = (log.min_offset(), log.max_offset());
    let mut at = min;
    let mut buf: Vec<u8> = Vec::with_capacity(SCAN_CHUNK);
    while at < max {
        buf.clear();
        let n = log.read(at, SCAN_CHUNK, &mut buf)?;
        if n == 0 {
            break;
        }
        let mut pos = 0usize;
        while pos + MIN_BLANK_LEN as usize <= n {
            let head = buf[pos..pos + MIN_BLANK_LEN as usize]
                .try_into()
                .expect("8 bytes");
            let room = log.room(at + pos as u64);
            let (frame, len) = record::check(head, room).map_err(|why| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("message scan at offset {}: {why}", at + pos as u64),
                )
            })?;
            let len = len as usize;
            if pos + len > n {
                if pos == 0 {
                    // One record longer than a chunk: read it whole.
                    buf.clear();
                    log.read(at, len, &mut buf)?;
                    if buf.len() < len {
                        return Err(io::Error::other(format!(
                            "message scan at offset {at}: record of {len} bytes ends past the log"
                        )));
                    }
                    if frame == Frame::Upstream {
                        visit(&buf[..len]);
                    }
                    pos = len;
                }
                break;
            }
            if frame == Frame::Upstream {
                visit(&buf[pos..pos + len]);
            }
            pos += len;
        }
        if pos == 0 {
            // Fewer than 8 bytes left before max: a torn tail recovery would have cut.
            break;
        }
        at += pos as u64;
    }
    Ok(at - min)
}
