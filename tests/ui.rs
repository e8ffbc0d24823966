//! Compile-time proofs of the lifecycle typestate and of the API's closed doors: each `tests/ui/*.rs` must fail to compile
//! with the pinned `.stderr`, except `ok_*.rs`, which must compile and run.
//! Regenerate the `.stderr` files deliberately after a toolchain bump: `TRYBUILD=overwrite
//! cargo test --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/client_spawn_before_register.rs");
    t.compile_fail("tests/ui/client_use_after_close.rs");
    t.compile_fail("tests/ui/client_heartbeat_on_closed.rs");
    t.compile_fail("tests/ui/client_register_twice.rs");
    t.compile_fail("tests/ui/ha_spawn_before_register.rs");
    t.compile_fail("tests/ui/ha_use_after_close.rs");
    // Nothing public lets a caller skip a step: no made-up ids, no raw table mutators, no
    // registry from a handle, no transport after registration, no table from a task's context.
    t.compile_fail("tests/ui/client_forge_id.rs");
    t.compile_fail("tests/ui/client_raw_mutator.rs");
    t.compile_fail("tests/ui/client_handle_registry.rs");
    t.compile_fail("tests/ui/ha_raw_mutator.rs");
    t.compile_fail("tests/ui/ha_transport_after_register.rs");
    t.compile_fail("tests/ui/ha_context_fields.rs");
    t.pass("tests/ui/ok_client_lifecycle.rs");
    t.pass("tests/ui/ok_ha_lifecycle.rs");
}
