//! rmq-lifecycle: a verified core for the two RocketMQ broker lifecycles that leaked in
//! production, HA replication connections and producer/consumer group registries.
//!
//! # Layers
//!
//! Each layer uses only the ones above it; `cargo check --no-default-features` builds L1-L3
//! without tokio, which is how the rule is enforced.
//!
//! ```text
//!   sync, phase   the sync facade (std | loom | shuttle) and the typestate markers
//!   io            the IO facade (tokio and std | turmoil under "sim"): sockets, timers, files
//!   L1 core       sans-IO: wire types, statig machines, value-type tables with check_invariants()
//!   L2 registry   shared state over crate::sync: ClientRegistry, HaRegistry; public queries only
//!   L3 lifecycle  typestate handles ClientChannel<P, T>, HaConnection<P, T> that own the transport;
//!                 ClientAcceptor, HaAcceptor (accept/reap/shutdown, once); a Spawn trait; no runtime
//!   L4 net        tokio: spawner, listeners, HA master and slave, metrics, and `server`, the
//!                 `serve` and `slave` processes as functions (feature "net")
//! ```
//!
//! # Nothing public skips a step
//!
//! The registries' mutators are private to the crate: a connection enters, changes and leaves a
//! table only through its lifecycle handle, which owns the connection's transport, so a row never
//! outlives its connection and a connection never runs without its row. Ids cannot be made up
//! outside the crate. The tokio accept loops of [`net`] run [`lifecycle::HaAcceptor`] and
//! [`lifecycle::ClientAcceptor`]; the HA harnesses (loom, shuttle, fuzz, the conformance vectors)
//! drive the same `HaAcceptor`, and the client harnesses the `ClientChannel` handles `ClientAcceptor`
//! is built on. The planted defects those harnesses must catch are switches in
//! the shipped code, compiled only with the `harness` feature (the crate's own tests turn it on);
//! a broker's build has none of them.
//!
//! The library holds no emulation of upstream's defects: those, and the incident replays that run
//! them, are part of the `rmq-lifecycle` command.
//!
//! # The client-registry lifecycle
//!
//! A [`lifecycle::ClientChannel`] goes `Init -> Registered -> Running -> Closed`; `spawn` exists
//! only on `Registered` (and hands the transport to the channel's task), and the registration is an RAII guard, so the channel's registry entry
//! is removed exactly once on every exit path. A producer or consumer group is itself a lifecycle:
//! created by its first member's heartbeat, live while it has members, removed atomically with its
//! last member's departure (unregister, close or expiry).
//!
//! # Invariants (named the same in code, tests and `models/`)
//!
//! * `NoEmptyGroup`: once the last channel of a group leaves, the group is gone.
//! * `NoLostRegistration`: a completed heartbeat from a channel that is not closed is in the table.
//! * `NoResurrection`: after a channel is closed, no heartbeat, even one in flight, re-registers it.
//! * `IndexesConsistent`: group -> channels and channel -> groups are exact inverses; client id ->
//!   channels points at live channels only.
//! * Expiry is per (group, channel) membership, and every removal path emits the same events.
//! * Closing a channel costs O(its groups) and holds no lock across groups.
//!
//! See `core::tables` for their executable statement and `registry::client` for why the locking
//! gives them.

#![warn(missing_docs, unreachable_pub)]

pub mod core;
mod io;
pub mod lifecycle;
pub mod phase;
pub mod registry;
pub mod store;
pub mod sync;

#[cfg(feature = "net")]
pub mod net;
