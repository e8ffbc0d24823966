// The intended order compiles: new -> register -> spawn -> close.
use rmq_lifecycle::core::{HeartbeatData, Millis};
use rmq_lifecycle::lifecycle::{BoxTask, ClientChannel, CloseReason, Spawn, TaskHandle};
use rmq_lifecycle::registry::ClientRegistry;
use std::sync::Arc;

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
    let registry = Arc::new(ClientRegistry::default());
    let registered = ClientChannel::new(Socket, "127.0.0.1:9").register(&registry).unwrap();
    registered.handle().heartbeat(&HeartbeatData::producers("c", ["g"]), Millis(0)).unwrap();
    let running = registered.spawn(&Drop_, |_socket, _handle| async { CloseReason::PeerClosed });
    // The spawner dropped the task, so its guard already closed the channel.
    assert_eq!(registry.producer_group_count(), 0);
    let closed = running.close(CloseReason::Shutdown);
    assert!(closed.id().is_some());
}

/// Stands for an accepted socket: the handle owns it.
struct Socket;
