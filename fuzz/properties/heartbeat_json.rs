//! The fuzz property of the `HeartbeatData` parser, shared by the `heartbeat_json` fuzz target
//! and the main crate's `tests/fuzz_corpus.rs` (both include this file with `#[path]`). It uses
//! only the public API, so the library needs no fuzz entry point of its own.

use rmq_lifecycle::core::HeartbeatData;
use rmq_lifecycle::core::admin::check_client_config;
use rmq_lifecycle::core::remoting::code;

/// Any bytes as a `HEART_BEAT` body:
/// - parsing never panics (an error is a fine answer);
/// - whatever parses serializes with `to_json()` as compact JSON with sorted keys (fastjson's
///   layout), and that parses back to an equal value which serializes to the same bytes;
/// - the same bytes as a `CHECK_CLIENT_CONFIG` body (the same JSON family) never panic, and a
///   refusal is a `SYSTEM_ERROR` that says why.
pub(crate) fn check(data: &[u8]) {
    if let Err((answer, remark)) = check_client_config(Some(data)) {
        assert_eq!(answer, code::SYSTEM_ERROR, "{remark}");
        assert!(!remark.is_empty(), "a refusal without a reason");
    }
    let Ok(hb) = HeartbeatData::from_json(data) else {
        return;
    };
    let json = hb.to_json();
    let again = HeartbeatData::from_json(&json).unwrap_or_else(|e| {
        panic!(
            "to_json output does not parse back: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(again, hb, "to_json changed the heartbeat");
    assert_eq!(again.to_json(), json, "to_json is not deterministic");
    // `serde_json::Value` keeps object keys in a BTreeMap (no `preserve_order` in this build), so
    // writing it back sorts every object's keys: equal bytes mean `to_json` already sorted them.
    let value: serde_json::Value =
        serde_json::from_slice(&json).expect("to_json output is valid JSON");
    assert_eq!(
        String::from_utf8_lossy(&serde_json::to_vec(&value).expect("a Value serializes")),
        String::from_utf8_lossy(&json),
        "to_json keys are not sorted as fastjson sorts them"
    );
}
