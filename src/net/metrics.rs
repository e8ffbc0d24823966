//! Prometheus text at `/metrics`, served by `metrics-exporter-prometheus`.
//!
//! The tables are the source of truth, so the gauges are sampled from them (a few hundred
//! nanoseconds per shard) rather than kept as counters beside them that could drift.

use super::remoting::RemotingStats;
use crate::lifecycle::TaskGauge;
use crate::registry::{ClientRegistry, HaRegistry};
use crate::store::CommitLog;
use crate::sync::Arc;
use metrics::{counter, describe_counter, describe_gauge, gauge};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where the sampled figures come from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The client registry.
    pub registry: Arc<ClientRegistry>,
    /// Every task started through the lifecycle layer.
    pub tasks: TaskGauge,
    /// The client listener's counters, if it runs.
    pub remoting: Option<Arc<RemotingStats>>,
    /// The HA master's table and log, if it runs.
    pub ha: Option<(Arc<HaRegistry>, Arc<CommitLog>)>,
}

/// Installs the global recorder and its HTTP listener on the current tokio runtime.
pub fn install(addr: SocketAddr) -> Result<(), String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        // Per-slave series of connections that are gone stop being sampled; drop them.
        .idle_timeout(
            metrics_util::MetricKindMask::GAUGE,
            Some(Duration::from_secs(30)),
        )
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    describe_gauge!(
        "rmq_client_channels",
        "Live client channels in the registry"
    );
    describe_gauge!(
        "rmq_producer_groups",
        "Producer groups with at least one channel"
    );
    describe_gauge!(
        "rmq_consumer_groups",
        "Consumer groups with at least one channel"
    );
    describe_gauge!(
        "rmq_tasks_alive",
        "Tasks started through the lifecycle layer that have not ended"
    );
    describe_counter!("rmq_heartbeats_total", "Heartbeats applied");
    describe_counter!(
        "rmq_client_connections_accepted_total",
        "Client connections accepted"
    );
    describe_counter!(
        "rmq_client_connections_closed_total",
        "Client connections closed"
    );
    describe_counter!(
        "rmq_heartbeats_busy_total",
        "Heartbeats answered SYSTEM_BUSY"
    );
    Ok(())
}

/// Writes the current figures into the recorder.
pub fn sample(sources: &Sources) {
    gauge!("rmq_client_channels").set(sources.registry.channel_count() as f64);
    gauge!("rmq_producer_groups").set(sources.registry.producer_group_count() as f64);
    gauge!("rmq_consumer_groups").set(sources.registry.consumer_group_count() as f64);
    gauge!("rmq_tasks_alive").set(sources.tasks.alive() as f64);
    counter!("rmq_heartbeats_total").absolute(sources.registry.heartbeats_total());
    if let Some(stats) = &sources.remoting {
        counter!("rmq_client_connections_accepted_total").absolute(stats.accepted_total());
        counter!("rmq_client_connections_closed_total").absolute(stats.closed_total());
        counter!("rmq_heartbeats_busy_total").absolute(stats.busy_total());
    }
    if let Some((registry, log)) = &sources.ha {
        gauge!("rmq_ha_connections").set(registry.count() as f64);
        counter!("rmq_ha_connections_accepted_total").absolute(registry.accepted_total());
        counter!("rmq_ha_connections_closed_total").absolute(registry.closed_total());
        gauge!("rmq_commitlog_max_offset").set(log.max_offset() as f64);
        for entry in registry.entries() {
            if let Some(ack) = entry.ack {
                gauge!("rmq_ha_slave_acked_offset", "peer" => entry.peer).set(ack as f64);
            }
        }
    }
}

/// Samples every `period` until cancelled.
pub async fn sample_loop(sources: Sources, period: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => sample(&sources),
        }
    }
}
