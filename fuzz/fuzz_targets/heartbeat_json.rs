//! Any bytes as a `HEART_BEAT` body: never panics; whatever parses round-trips through `to_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../properties/heartbeat_json.rs"]
mod property;

fuzz_target!(|data: &[u8]| {
    property::check(data);
});
