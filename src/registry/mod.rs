//! L2: shared state over `crate::sync`, the target of the loom and shuttle harnesses:
//! `ClientRegistry` (producer/consumer groups) and `HaRegistry` (HA connections).
//!
//! The registries here are concurrent and embeddable: they do no IO, read no clock and spawn
//! nothing, so a broker with its own transport can drive them directly. They do not own sockets;
//! the lifecycle handles of L3 make sure every connection's entry is removed exactly once.

pub mod client;
pub mod ha;
mod members;
mod outbox;
mod shard;

pub use client::{
    ChannelHealth, ChannelRef, ChannelSlot, ClientListener, ClientRegistry, Faults, RegistryConfig,
    ScanReport,
};
pub use ha::{ConnId, HaEntry, HaRegisterError, HaRegistry};
