// The HA table's mutators are private to the core: a row is added and removed only through
// `HaConnection` (and its tasks' context), so a row never outlives its stop signal.
use rmq_lifecycle::registry::HaRegistry;

fn main() {
    let registry = HaRegistry::default();
    let id = registry.entries()[0].id;
    registry.record_ack(id, 1);
    registry.deregister(id);
    registry.close_all();
}
