//! Bytes -> a sequence of HA master ops (accept, register, spawn, reports, appends, every way a
//! connection ends, shutdown), applied to the real registry + lifecycle + `MasterLink` and to the
//! oracle `HaModel`; results, observations and invariants must agree after every op.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../properties/ha_ops.rs"]
mod property;

fuzz_target!(|data: &[u8]| {
    property::check(data);
});
