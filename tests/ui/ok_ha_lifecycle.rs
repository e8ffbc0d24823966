// The intended HA path compiles and runs: an acceptor registers each accepted transport, starts
// its reader and writer with it, and reaps the connection when they end.
use rmq_lifecycle::lifecycle::{BoxTask, CloseReason, HaAcceptor, Spawn, TaskHandle};
use rmq_lifecycle::registry::HaRegistry;
use std::sync::Arc;

/// Drops every task unpolled, as a runtime that is shutting down would.
struct Drop_;
impl Spawn for Drop_ {
    fn spawn(&self, task: BoxTask) -> Box<dyn TaskHandle> {
        drop(task);
        Box::new(Done)
    }
}
struct Done;
impl TaskHandle for Done {
    fn abort(&self) {}
    fn is_finished(&self) -> bool {
        true
    }
}

fn main() {
    let registry = Arc::new(HaRegistry::new(8));
    let acceptor = HaAcceptor::new(registry.clone(), Drop_);
    let id = acceptor
        .accept(Socket, "127.0.0.1:9", |socket, _reader, _writer| {
            let reader = async move {
                drop(socket);
                CloseReason::PeerClosed
            };
            (reader, async { CloseReason::PeerClosed })
        })
        .unwrap();
    // The tasks were dropped, so their guards removed the row and reaped the connection.
    assert!(registry.entries().iter().all(|e| e.id != id));
    assert_eq!(acceptor.open(), 0);
    assert_eq!(acceptor.accepted_total(), acceptor.closed_total());
    assert_eq!(acceptor.shutdown(), 0);
}

/// Stands for an accepted socket: the handle owns it.
struct Socket;
