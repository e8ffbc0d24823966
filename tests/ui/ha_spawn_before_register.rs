// RocketMQ 5.1.4's order (#8875): start the connection's reader and writer, then add it to the
// table. Here the tasks can only be spawned from `Registered`, so this does not compile.
use rmq_lifecycle::lifecycle::{BoxTask, CloseReason, HaConnection, Spawn, TaskHandle};

struct Inline;
impl Spawn for Inline {
    fn spawn(&self, _task: BoxTask) -> Box<dyn TaskHandle> {
        unimplemented!()
    }
}

fn main() {
    let accepted = HaConnection::new(Socket, "127.0.0.1:9");
    let _running = accepted.spawn(
        &Inline,
        |_socket, _reader, _writer| {
            (async { CloseReason::PeerClosed }, async { CloseReason::PeerClosed })
        },
    );
}

/// Stands for an accepted socket: the handle owns it.
struct Socket;
