//! Bytes -> a sequence of client-registry ops, applied to `ClientRegistry` and to the oracle
//! `ClientModel`; results, events, tables and invariants must agree after every op.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../properties/client_ops.rs"]
mod property;

fuzz_target!(|data: &[u8]| {
    property::check(data);
});
