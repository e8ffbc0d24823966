#![no_main]
//! The auto-switch HA decoders (`core::autoswitch`): any bytes, split anywhere, through the
//! slave's decoder of the master's handshakes and transfers and the master's of the slave's frames.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rmq_lifecycle::core::autoswitch::fuzz_check(data));
