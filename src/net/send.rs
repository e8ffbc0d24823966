//! `SEND_MESSAGE` (10) and `SEND_MESSAGE_V2` (310) on the client-management listener: a
//! producer's message is checked and stored (`store::messages`), the HA master's writers are
//! woken, and with `in_sync_replicas > 1` the answer waits for that many copies: at once
//! `SLAVE_NOT_AVAILABLE` if too few slaves are close enough to take it (upstream 4), else
//! `SUCCESS` or, after the timeout, `FLUSH_SLAVE_TIMEOUT` (the message stays stored either way).
//!
//! This is wiring: the checks, codes and record layout are `core::message`'s, the offsets the
//! store's. The sends of one read are one group commit with one wait for slaves; each is
//! answered in its place in the connection's order, so the wait holds only that connection
//! (upstream answers asynchronously, so a producer's later requests are not held).

use super::Clock;
use super::ha::MasterHandle;
use crate::core::message::{self, SendHeader, SendRules};
use crate::core::remoting::{RemotingCommand, code};
use crate::store::messages::{MessageLog, Sent};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::time::Duration;

/// The send path's settings; the defaults are upstream's.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Copies a send waits for, the master's included (upstream 5 `inSyncReplicas`, 1: no wait;
    /// 2 is upstream 4's `SYNC_MASTER` with one slave).
    pub in_sync_replicas: usize,
    /// How long a send waits for slaves before it is answered `FLUSH_SLAVE_TIMEOUT` (upstream
    /// `slaveTimeout`). The message stays stored either way.
    pub slave_timeout: Duration,
    /// A slave whose acknowledged offset is further than this behind a send does not count as
    /// able to take it: with fewer such slaves than needed the send is answered
    /// `SLAVE_NOT_AVAILABLE` at once instead of waiting (upstream 4's `haSlaveFallbehindMax`).
    pub slave_fall_behind_max: u64,
    /// Body limit and cluster name.
    pub rules: SendRules,
}

impl Default for SendConfig {
    fn default() -> Self {
        SendConfig {
            in_sync_replicas: 1,
            slave_timeout: Duration::from_secs(3),
            slave_fall_behind_max: 256 << 20,
            rules: SendRules::default(),
        }
    }
}

/// Stores sends in the master's log.
#[derive(Debug)]
pub(crate) struct Sender {
    messages: MessageLog,
    master: MasterHandle,
    config: SendConfig,
    clock: Clock,
}

impl Sender {
    pub(crate) fn new(
        messages: MessageLog,
        master: MasterHandle,
        config: SendConfig,
        clock: Clock,
    ) -> Self {
        Sender {
            messages,
            master,
            config,
            clock,
        }
    }

    /// Answers the sends one read of a connection from `peer` at `local` brought (the store host
    /// of their records), encoded into `out` in order (none for a oneway send): stored as one
    /// group commit, and with `in_sync_replicas > 1` answered once as many copies hold them
    /// (one wait for the last).
    pub(crate) async fn answer_all(
        &self,
        requests: Vec<RemotingCommand>,
        peer: SocketAddr,
        local: SocketAddr,
        out: &mut BytesMut,
    ) {
        let headers: Vec<Result<SendHeader, message::Refusal>> =
            requests.iter().map(SendHeader::decode).collect();
        let clock = &self.clock;
        let mut stored = self
            .messages
            .send_all(
                requests
                    .iter()
                    .zip(&headers)
                    .filter_map(|(r, h)| Some((h.as_ref().ok()?, r.body.as_ref()))),
                peer,
                local,
                || clock.wall_ms(clock.now()),
            )
            .into_iter();
        let outcomes: Vec<Result<Sent, message::Refusal>> = headers
            .iter()
            .map(|h| match h {
                Ok(_) => stored.next().expect("one answer per decoded send"),
                Err(refusal) => Err(refusal.clone()),
            })
            .collect();
        if outcomes.iter().any(Result::is_ok) {
            self.master.published();
        }
        // The replication wait: one for the furthest end among the sends that wait.
        let needed = self.config.in_sync_replicas.saturating_sub(1);
        let last = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .filter(|s| needed > 0 && !s.no_wait)
            .map(|s| s.appended.end)
            .max();
        let (mut replicated, mut unavailable) = (u64::MAX, false);
        if let Some(end) = last {
            if self
                .master
                .slaves_within(end, self.config.slave_fall_behind_max)
                < needed
            {
                tracing::debug!(offset = end, needed, "no slave can take the sends");
                unavailable = true;
            } else if let Err(timeout) = self
                .master
                .wait_for_replication(end, needed, self.config.slave_timeout)
                .await
            {
                tracing::debug!(%timeout, "sends not replicated in time");
                // Those below what enough slaves hold now are replicated all the same.
                replicated = self.master.replicated_to(needed);
            }
        }
        let answers = requests.iter().zip(outcomes).zip(&headers);
        for ((request, outcome), header) in answers {
            let topic = header.as_ref().map_or("", |h| h.topic.as_str());
            let mark = out.len();
            let encoded = match outcome {
                Err(refusal) => {
                    if refusal.code == code::SERVICE_NOT_AVAILABLE {
                        tracing::warn!(%topic, %peer, remark = %refusal.remark, "send not stored");
                    } else {
                        tracing::debug!(%topic, %peer, code = refusal.code, remark = %refusal.remark, "send refused");
                    }
                    if request.is_oneway() {
                        continue;
                    }
                    message::refused_response(request, refusal).encode(out)
                }
                Ok(sent) => {
                    tracing::trace!(%topic, queue = sent.result.queue_id, offset = sent.appended.start, "message stored");
                    let status = if needed == 0 || sent.no_wait {
                        code::SUCCESS
                    } else if unavailable {
                        code::SLAVE_NOT_AVAILABLE
                    } else if sent.appended.end <= replicated {
                        code::SUCCESS
                    } else {
                        code::FLUSH_SLAVE_TIMEOUT
                    };
                    if request.is_oneway() {
                        continue;
                    }
                    message::encode_stored_response(request, status, &sent.result, out)
                }
            };
            if let Err(error) = encoded {
                // Only a response we built can fail here (an oversized remark): a bug.
                out.truncate(mark);
                tracing::error!(%error, "send response not encodable; dropped");
            }
        }
    }
}
