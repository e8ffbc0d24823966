// Ids come only from the registry: one cannot be made up to name another connection.
use rmq_lifecycle::core::ChannelId;
use rmq_lifecycle::registry::ConnId;

fn main() {
    let _channel = ChannelId(7);
    let _connection = ConnId(7);
}
