// A channel's handle acts on its own channel only: it hands out no registry.
use rmq_lifecycle::lifecycle::ClientChannel;
use rmq_lifecycle::registry::ClientRegistry;
use std::sync::Arc;

fn main() {
    let registry = Arc::new(ClientRegistry::default());
    let registered = ClientChannel::new(Socket, "127.0.0.1:9").register(&registry).unwrap();
    let _raw = registered.handle().registry();
}

/// Stands for an accepted socket: the handle owns it.
struct Socket;
