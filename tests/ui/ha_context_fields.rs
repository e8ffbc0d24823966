// A task's context exposes its row's id, acks and stop signal, not the table or the signal's
// owner: a task cannot remove its row without ending, nor keep a copy of its context.
use rmq_lifecycle::lifecycle::{BoxTask, CloseReason, HaConnection, Spawn, TaskHandle};
use rmq_lifecycle::registry::HaRegistry;
use std::sync::Arc;

struct Inline;
impl Spawn for Inline {
    fn spawn(&self, _task: BoxTask) -> Box<dyn TaskHandle> {
        unimplemented!()
    }
}

fn main() {
    let registry = Arc::new(HaRegistry::default());
    let registered = HaConnection::new(Socket, "127.0.0.1:9").register(&registry).unwrap();
    let _running = registered.spawn(&Inline, |_socket, reader, writer| {
        let _table = &reader.registry;
        let _copy = writer.clone();
        (async { CloseReason::PeerClosed }, async { CloseReason::PeerClosed })
    });
}

/// Stands for an accepted socket: the handle owns it.
struct Socket;
