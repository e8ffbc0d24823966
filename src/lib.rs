//! rmq-lifecycle: a verified core for the two RocketMQ broker lifecycles that leaked in
//! production, HA replication connections and producer/consumer group registries.
//!
//! # Start here
//!
//! Pick the entry point by how much of the broker side you want from this crate:
//!
//! * **All of it on tokio**: [`net::server::serve`] runs the client-management listener, the HA
//!   master and the commit log until a future you pass completes ([`net::server::replicate`] is a
//!   slave); it is what `rmq-lifecycle serve` and `slave` run. `examples/ha_pair.rs` replicates
//!   between a master and a slave in one process.
//! * **Your own transport**: wrap each accepted connection in a [`lifecycle::ClientChannel`] (or
//!   [`lifecycle::HaConnection`]) and register it on a [`registry::ClientRegistry`] (or
//!   [`registry::HaRegistry`]); the handle applies heartbeats and its close removes the channel
//!   from every group, exactly once. [`lifecycle::ClientAcceptor`] and [`lifecycle::HaAcceptor`]
//!   add accept, reap and shutdown on any spawner. `examples/embed_registry.rs` walks it through.
//! * **Read only**: the registries' queries (`members`, `find_channel`, `snapshot`,
//!   `check_invariants`) need no handle; nothing else changes a table.
//!
//! ```
//! use rmq_lifecycle::core::{HeartbeatData, Millis};
//! use rmq_lifecycle::lifecycle::{ClientChannel, CloseReason};
//! use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
//! use std::sync::Arc;
//!
//! struct Connection; // the broker's own socket type: the channel owns it until closed
//!
//! let registry = Arc::new(ClientRegistry::new(RegistryConfig::default()));
//! let channel = ClientChannel::new(Connection, "10.0.0.1:50001")
//!     .register(&registry)
//!     .unwrap_or_else(|refused| panic!("{}", refused.error));
//! channel
//!     .handle()
//!     .heartbeat(&HeartbeatData::producers("producer-1", ["IotRuleEngine-1"]), Millis(0))
//!     .unwrap();
//! assert_eq!(registry.producer_group_count(), 1);
//!
//! channel.close(CloseReason::PeerClosed); // the group leaves with its last channel
//! assert_eq!(registry.producer_group_count(), 0);
//! registry.check_invariants().unwrap();
//! ```
//!
//! # Examples
//!
//! Besides the one above and those on each main type, the repository's `examples/` directory
//! holds whole programs: `embed_registry.rs` (a broker's own transport on the registry, no
//! runtime), `ha_pair.rs` (a master and a slave replicating over loopback) and `fill_store.rs`
//! (a commit log written through the library). Run one with `cargo run --example NAME`.
//!
//! # Features
//!
//! | feature | default | what it adds | who turns it on |
//! |---|---|---|---|
//! | `net` | yes | [`net`]: the tokio driver (listeners, HA master and slave, the `serve` and `slave` processes) and the re-exported [`tokio`] it runs on | a broker on tokio |
//! | `metrics` | no | `net::metrics`: the tables' figures as Prometheus text over HTTP (`ServeConfig::metrics`) | a broker that wants the exporter; the command |
//! | `harness` | no | planted defects and test hooks in the shipped code | this crate's own tests, never a broker |
//! | `shuttle` | no | the sync facade on shuttle's primitives | `tests/shuttle.rs`, `tests/shuttle_ha.rs` |
//! | `sim` | no | `net` on turmoil's simulated network and filesystem | `tests/sim.rs` |
//!
//! Without `net` the crate is the runtime-free core, registries and lifecycle handles, with no
//! tokio in its dependencies. The `rmq-lifecycle` command is a separate package (`cli/`), so
//! none of its dependencies reach an embedder.
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
#![cfg_attr(docsrs, feature(doc_cfg))]

/// A planted fault's switch (feature `harness`): the switch's value in a harness build, and
/// `false` in any other, where the faulty branch is compiled out (`$switch` is not even read).
macro_rules! planted {
    ($switch:expr) => {{
        #[cfg(feature = "harness")]
        let on: bool = $switch;
        #[cfg(not(feature = "harness"))]
        let on = false;
        on
    }};
}

pub mod core;
mod io;
pub mod lifecycle;
pub mod phase;
pub mod registry;
pub mod store;
mod sync;

#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub mod net;

/// The runtime [`net`] runs on, re-exported so that a broker can build it without naming tokio
/// in its own dependencies: everything in [`net`] that starts a task
/// ([`net::ha::HaMaster::bind`], [`net::ha::HaSlave::start`], [`net::server::serve`]) spawns on
/// the current tokio runtime and panics outside one.
#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub use tokio;
