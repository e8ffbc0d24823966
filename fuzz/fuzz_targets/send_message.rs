//! One remoting frame answered as SEND_MESSAGE and SEND_MESSAGE_V2 by a fresh broker: never
//! panics, refusals say why, an admitted message's record reads back as written.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rmq_lifecycle::core::message::fuzz_check(data);
});
