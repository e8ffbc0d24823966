// A closed HA connection is consumed; its running handle cannot be closed (or used) twice.
use rmq_lifecycle::lifecycle::{CloseReason, HaConnection};
use rmq_lifecycle::registry::HaRegistry;
use std::sync::Arc;

fn main() {
    let registry = Arc::new(HaRegistry::default());
    let registered = HaConnection::new(Socket, "127.0.0.1:9").register(&registry).unwrap();
    let _closed = registered.close(CloseReason::Local);
    let _id = registered.id();
}

/// Stands for an accepted socket: the handle owns it.
struct Socket;
