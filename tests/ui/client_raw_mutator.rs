// The registry's mutators are private to the core: a channel enters, changes and leaves the
// tables only through its lifecycle handle, which owns its transport.
use rmq_lifecycle::core::{HeartbeatData, Millis};
use rmq_lifecycle::registry::ClientRegistry;

fn main() {
    let registry = ClientRegistry::default();
    let slot = registry.register_channel().unwrap();
    registry.heartbeat(&slot, &HeartbeatData::producers("c", ["g"]), Millis(0)).unwrap();
    registry.channel_closed(&slot);
}
