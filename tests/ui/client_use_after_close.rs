// A closed channel is consumed: its registered handle cannot be used afterwards.
use rmq_lifecycle::lifecycle::{ClientChannel, CloseReason};
use rmq_lifecycle::registry::ClientRegistry;
use std::sync::Arc;

fn main() {
    let registry = Arc::new(ClientRegistry::default());
    let registered = ClientChannel::new(Socket, "127.0.0.1:9").register(&registry).unwrap();
    let _closed = registered.close(CloseReason::Local);
    let _handle = registered.handle();
}

/// Stands for an accepted socket: the handle owns it.
struct Socket;
