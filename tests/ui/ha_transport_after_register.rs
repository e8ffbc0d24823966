// Once registered, the transport is reachable only by the tasks `spawn` starts: no one can
// start a socket's tasks on the side, without a row.
use rmq_lifecycle::lifecycle::HaConnection;
use rmq_lifecycle::registry::HaRegistry;
use std::sync::Arc;

fn main() {
    let registry = Arc::new(HaRegistry::default());
    let registered = HaConnection::new(Socket, "127.0.0.1:9").register(&registry).unwrap();
    let _socket = registered.into_transport();
}

/// Stands for an accepted socket: the handle owns it.
struct Socket;
