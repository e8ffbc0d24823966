//! Faithful emulations of upstream behaviour, for side-by-side benchmarks and replays.
//!
//! These exist so that every figure we print stands beside what upstream does on the same
//! machine in the same run. They reproduce upstream's defects on purpose and must never back a
//! production path, which is why they live in the command and not in the library.

pub(crate) mod broker_4x;
pub(crate) mod ha_master_514;
pub(crate) mod producer_manager_4x;

/// The listener `ha_master_514` binds; `tests/sim.rs` includes that file beside turmoil's.
use tokio::net::TcpListener;
