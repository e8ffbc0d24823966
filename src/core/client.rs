//! The client-registry vocabulary shared by the value model (`tables`), the concurrent registry
//! and the harnesses: channel ids, group kinds and the events every removal path emits.

use std::fmt;

/// A client connection's identity in the registry.
///
/// Upstream keys its tables by Netty `Channel` identity; we use an id the registry hands out at
/// registration, never reused, so a stale id can never alias a newer connection. Only this crate
/// constructs one (the `harness` feature also reads them back from recorded traces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[cfg_attr(feature = "harness", derive(serde::Deserialize))]
#[serde(transparent)]
pub struct ChannelId(pub(crate) u64);

impl ChannelId {
    /// The id as a number (for traces and metrics labels).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ch#{}", self.0)
    }
}

/// Producer and consumer groups are separate namespaces (upstream's two managers).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// `ProducerManager.groupChannelTable`.
    Producer,
    /// `ConsumerManager.consumerTable`.
    Consumer,
}

/// Why a membership left its group. Every path emits the same events (upstream #11114 fixes the
/// consumer scan, which skipped `UNREGISTER`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RemovalCause {
    /// `UNREGISTER_CLIENT` from the client.
    Unregister,
    /// The connection closed (EOF, error, idle, shutdown).
    ChannelClosed,
    /// No heartbeat for this (group, channel) within the expiry timeout.
    Expired,
}

/// What a listener hears (upstream `ProducerGroupEvent` and `ConsumerGroupEvent`).
///
/// Per (kind, group), events reach the listener in the order the table changed, also across
/// concurrent operations: each is queued under the lock that makes the change and delivered, with
/// no lock held, in queue order. Across groups the order is unspecified (a close visits a
/// channel's groups in hash order, and events of different groups may interleave).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[cfg_attr(feature = "harness", derive(serde::Deserialize))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ClientEvent {
    /// A (group, channel) membership was created (`CLIENT_REGISTER`).
    ClientRegistered {
        /// Producer or consumer namespace.
        kind: GroupKind,
        /// The group joined.
        group: String,
        /// The channel that joined.
        channel: ChannelId,
        /// The client id the channel announced.
        client_id: String,
    },
    /// A (group, channel) membership was removed (`CLIENT_UNREGISTER`).
    ClientUnregistered {
        /// Producer or consumer namespace.
        kind: GroupKind,
        /// The group left.
        group: String,
        /// The channel that left.
        channel: ChannelId,
        /// The client id the channel had announced.
        client_id: String,
        /// Which path removed it.
        cause: RemovalCause,
    },
    /// The group's last membership left and the group is gone (`GROUP_UNREGISTER` /
    /// `UNREGISTER`).
    GroupUnregistered {
        /// Producer or consumer namespace.
        kind: GroupKind,
        /// The group removed.
        group: String,
        /// Which path removed its last membership.
        cause: RemovalCause,
    },
    /// A clustering consumer group's channel set or subscriptions changed (`CHANGE`): the broker
    /// tells the remaining channels to rebalance.
    ConsumerIdsChanged {
        /// The consumer group.
        group: String,
        /// Its channels after the change, ascending.
        channels: Vec<ChannelId>,
    },
}

/// Limits every implementation of the client tables enforces (the value model and the
/// concurrent registry take the same struct, so the oracle and the real thing cannot disagree on
/// what a cap means).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientRules {
    /// A (group, channel) membership not refreshed for longer than this expires (upstream
    /// `channelExpiredTimeout`, 120 s).
    pub expiry_ms: u64,
    /// Live channels at most; registering one more fails with [`ClientError::TooManyChannels`].
    pub max_channels: usize,
    /// Groups (producer plus consumer) one channel may be in; a heartbeat that would exceed it
    /// fails whole with [`ClientError::TooManyGroups`].
    pub max_groups_per_channel: usize,
}

impl Default for ClientRules {
    fn default() -> Self {
        ClientRules {
            expiry_ms: 120_000,
            max_channels: 1 << 20,
            max_groups_per_channel: 10_000,
        }
    }
}

/// Why a registry operation was refused. A refused operation changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The channel was closed; its id is a tombstone and cannot be registered into anything.
    #[error("{0} is closed")]
    ChannelClosed(ChannelId),
    /// The listener is shutting down; the channel was closed instead of started.
    #[error("the client listener is shutting down")]
    ShuttingDown,
    /// `max_channels` live channels already exist.
    #[error("too many client channels (limit {max})")]
    TooManyChannels {
        /// The configured limit.
        max: usize,
    },
    /// The heartbeat would put the channel in more than `max_groups_per_channel` groups.
    #[error("{channel} would be in {would_be} groups (limit {max})")]
    TooManyGroups {
        /// The channel.
        channel: ChannelId,
        /// Its group count had the heartbeat been applied.
        would_be: usize,
        /// The configured limit.
        max: usize,
    },
}

/// What a successful heartbeat tells the client (the response's ext fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct HeartbeatOutcome {
    /// `IS_SUB_CHANGE`: always true for a v1 heartbeat (fingerprint 0); for v2, true iff some
    /// consumer group already held a fingerprint that differs from this heartbeat's.
    pub sub_changed: bool,
    /// Memberships this heartbeat created.
    pub joined: usize,
}
