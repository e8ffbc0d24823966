//! L2: shared state over `crate::sync`, the target of the loom and shuttle harnesses:
//! `ClientRegistry` (producer/consumer groups) and `HaRegistry` (HA connections).
//!
//! The registries here are concurrent and embeddable: they do no IO, read no clock and spawn
//! nothing. They do not own sockets, and their mutators are crate-private: a broker adds and
//! removes entries only through the lifecycle handles of L3, which own the connection, so every
//! entry is removed exactly once and never without its transport. Queries, counts, `snapshot()`
//! and `check_invariants()` are public.

pub mod client;
pub mod ha;
mod members;
mod outbox;
mod shard;
mod stop;

pub(crate) use client::ChannelRef;
#[cfg(feature = "harness")]
pub use client::Faults;
pub use client::{ChannelHealth, ClientListener, ClientRegistry, RegistryConfig, ScanReport};
#[cfg(feature = "harness")]
pub use ha::HaFaults;
pub use ha::{ConnId, HaEntry, HaRegisterError, HaRegistry};
pub use stop::{StopSignal, Stopped};
