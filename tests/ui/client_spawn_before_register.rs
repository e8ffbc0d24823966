// Spawning a channel's task before it is in the registry must not compile: this is the order
// that leaked HA connections in RocketMQ 5.1.4 (#8875).
use rmq_lifecycle::lifecycle::{BoxTask, ClientChannel, CloseReason, Spawn, TaskHandle};

struct Inline;
impl Spawn for Inline {
    fn spawn(&self, _task: BoxTask) -> Box<dyn TaskHandle> {
        unimplemented!()
    }
}

fn main() {
    let channel = ClientChannel::new(Socket, "127.0.0.1:9");
    let _running = channel.spawn(&Inline, |_socket, _handle| async { CloseReason::PeerClosed });
}

/// Stands for an accepted socket: the handle owns it.
struct Socket;
