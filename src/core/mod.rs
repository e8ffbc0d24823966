//! L1, sans-IO: wire types, protocol machines and value-type tables.
//!
//! Nothing here does IO, reads a clock (time is always a parameter, [`Millis`]), spawns a task
//! or touches `crate::sync`. That is what lets the same code be the oracle of the property tests,
//! the body of the fuzz targets and the reference a port to another language follows.

pub mod activity;
pub mod admin;
pub mod autoswitch;
pub mod client;
pub mod consumer;
pub mod epoch;
pub mod ha;
pub mod ha_model;
pub mod heartbeat;
pub mod isr;
mod json_header;
mod lenient;
pub mod message;
pub mod model_trace;
pub mod remoting;
pub mod tables;

pub use client::{
    ChannelId, ClientError, ClientEvent, ClientRules, GroupKind, HeartbeatOutcome, RemovalCause,
};
pub use ha_model::{HaConn, HaModel, HaModelConfig, HaObserved, HaOp, HaOpResult};
pub use heartbeat::HeartbeatData;

/// Milliseconds on the caller's clock.
///
/// Only differences matter, so any monotonic origin works; the registry never reads a clock.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// Milliseconds elapsed from `earlier` to `self`, zero if `earlier` is later (a clock step
    /// backwards must not expire anything).
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
