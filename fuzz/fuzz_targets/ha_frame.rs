#![no_main]
//! The HA transfer and report decoders (`core::ha`): any bytes, split anywhere.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rmq_lifecycle::core::ha::fuzz_check(data));
