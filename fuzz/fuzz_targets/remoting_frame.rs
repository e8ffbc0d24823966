//! Any bytes, split at a point chosen by the first byte, through the incremental frame decoder;
//! whatever decodes must re-encode and decode to the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rmq_lifecycle::core::remoting::fuzz_check(data);
});
