//! Faithful emulations of upstream behaviour, for side-by-side benchmarks and replays.
//!
//! These exist so that every figure we print stands beside what upstream does on the same
//! machine in the same run. They reproduce upstream's defects on purpose and must never back a
//! production path.

#[cfg(feature = "net")]
pub mod broker_4x;
#[cfg(feature = "net")]
pub mod ha_master_514;
pub mod producer_manager_4x;
