// `Closed` offers no way back into the registry.
use rmq_lifecycle::lifecycle::{ClientChannel, CloseReason};
use rmq_lifecycle::registry::ClientRegistry;
use std::sync::Arc;

fn main() {
    let registry = Arc::new(ClientRegistry::default());
    let closed = ClientChannel::new(Socket, "127.0.0.1:9").register(&registry).unwrap().close(CloseReason::Local);
    let _handle = closed.handle();
}

/// Stands for an accepted socket: the handle owns it.
struct Socket;
