//! `SEND_MESSAGE` (10) and `SEND_MESSAGE_V2` (310) on the client-management listener: a
//! producer's message is checked and stored (`store::messages`), the HA master's writers are
//! woken, and with `in_sync_replicas > 1` the answer waits for that many copies: at once
//! `SLAVE_NOT_AVAILABLE` if too few slaves are close enough to take it (upstream 4), else
//! `SUCCESS` or, after the timeout, `FLUSH_SLAVE_TIMEOUT` (the message stays stored either way).
//!
//! This is wiring: the checks, codes and record layout are `core::message`'s, the offsets the
//! store's. A send is answered in its connection's order; the wait for slaves holds only that
//! connection (upstream answers asynchronously, so one producer connection may have several
//! sends waiting at once).

use super::Clock;
use super::ha::MasterHandle;
use crate::core::message::{self, SendHeader, SendRules};
use crate::core::remoting::{RemotingCommand, code};
use crate::store::messages::MessageLog;
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

    /// The answer to a send from `peer` received at `local` (the store host of its record).
    pub(crate) async fn answer(
        &self,
        mut request: RemotingCommand,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> RemotingCommand {
        let header = match SendHeader::take(&mut request) {
            Ok(header) => header,
            Err(refusal) => return message::refused_response(&request, refusal),
        };
        let request = &request;
        let clock = &self.clock;
        let sent = match self
            .messages
            .send(&header, request.body.as_ref(), peer, local, || {
                clock.wall_ms(clock.now())
            }) {
            Ok(sent) => sent,
            Err(refusal) => {
                if refusal.code == code::SERVICE_NOT_AVAILABLE {
                    tracing::warn!(topic = %header.topic, %peer, remark = %refusal.remark, "send not stored");
                } else {
                    tracing::debug!(topic = %header.topic, %peer, code = refusal.code, remark = %refusal.remark, "send refused");
                }
                return message::refused_response(request, refusal);
            }
        };
        self.master.published();
        tracing::trace!(
            topic = %header.topic,
            queue = sent.result.queue_id,
            offset = sent.appended.start,
            "message stored"
        );
        let needed = self.config.in_sync_replicas.saturating_sub(1);
        let mut status = code::SUCCESS;
        let end = sent.appended.end;
        if needed > 0 && !sent.no_wait {
            if self
                .master
                .slaves_within(end, self.config.slave_fall_behind_max)
                < needed
            {
                tracing::debug!(offset = end, needed, "no slave can take the send");
                status = code::SLAVE_NOT_AVAILABLE;
            } else if let Err(timeout) = self
                .master
                .wait_for_replication(end, needed, self.config.slave_timeout)
                .await
            {
                tracing::debug!(%timeout, "send not replicated in time");
                status = code::FLUSH_SLAVE_TIMEOUT;
            }
        }
        message::stored_response(request, status, &sent.result)
    }
}
