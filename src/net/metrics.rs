//! Prometheus text at `/metrics`, read from the tables when scraped.
//!
//! Nothing is sampled ahead of time: each scrape encodes what the registries, the acceptors and
//! the task gauge say at that moment (a scrape right after a heartbeat shows it), and per-slave
//! series exist only while the slave's row does. Encoding is `prometheus-client`'s; the HTTP
//! side is `hyper`, one GET route. What this is not: a general metrics facade; the crate keeps
//! no counters beside its tables.

use super::remoting::RemotingStats;
use crate::lifecycle::TaskGauge;
use crate::registry::{ClientRegistry, HaRegistry};
use crate::store::CommitLog;
use crate::sync::Arc;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// Where the figures come from; read at every scrape.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The client registry.
    pub registry: Arc<ClientRegistry>,
    /// The gauges of every task started through the lifecycle layer; the metric is their sum.
    pub tasks: Vec<TaskGauge>,
    /// The client listener's counters, if it runs.
    pub remoting: Option<Arc<RemotingStats>>,
    /// The HA master's table and log, if it runs.
    pub ha: Option<(Arc<HaRegistry>, Arc<CommitLog>)>,
}

/// The metric families, as one collector over [`Sources`].
#[derive(Debug)]
struct Tables(Sources);

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

/// `name` without `_total`: the encoder appends it to counters.
fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for Tables {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = &self.0;
        let reg = &s.registry;
        gauge(
            &mut e,
            "rmq_client_channels",
            "Live client channels in the registry",
            reg.channel_count() as f64,
        )?;
        gauge(
            &mut e,
            "rmq_producer_groups",
            "Producer groups with at least one channel",
            reg.producer_group_count() as f64,
        )?;
        gauge(
            &mut e,
            "rmq_consumer_groups",
            "Consumer groups with at least one channel",
            reg.consumer_group_count() as f64,
        )?;
        gauge(
            &mut e,
            "rmq_tasks_alive",
            "Tasks started through the lifecycle layer that have not ended",
            s.tasks.iter().map(TaskGauge::alive).sum::<usize>() as f64,
        )?;
        counter(
            &mut e,
            "rmq_heartbeats",
            "Heartbeats applied",
            reg.heartbeats_total(),
        )?;
        if let Some(stats) = &s.remoting {
            counter(
                &mut e,
                "rmq_client_connections_accepted",
                "Client connections accepted (refused ones included)",
                stats.accepted_total(),
            )?;
            counter(
                &mut e,
                "rmq_client_connections_closed",
                "Client connections closed, each once (refused ones included)",
                stats.closed_total(),
            )?;
            counter(
                &mut e,
                "rmq_heartbeats_busy",
                "Heartbeats answered SYSTEM_BUSY",
                stats.busy_total(),
            )?;
            if let Some((queued, dropped)) = stats.notifications_total() {
                counter(
                    &mut e,
                    "rmq_consumer_notifications",
                    "NOTIFY_CONSUMER_IDS_CHANGED requests queued for a connection",
                    queued,
                )?;
                counter(
                    &mut e,
                    "rmq_consumer_notifications_dropped",
                    "NOTIFY_CONSUMER_IDS_CHANGED requests dropped: the connection's queue was full",
                    dropped,
                )?;
            }
        }
        if let Some((ha, log)) = &s.ha {
            // One snapshot of the table for the count and the per-slave series, read before the
            // totals, so a scrape never shows a row's series gone and the row still counted.
            let entries = ha.entries();
            gauge(
                &mut e,
                "rmq_ha_connections",
                "HA connections in the table",
                entries.len() as f64,
            )?;
            counter(
                &mut e,
                "rmq_ha_connections_accepted",
                "HA connections registered",
                ha.accepted_total(),
            )?;
            counter(
                &mut e,
                "rmq_ha_connections_closed",
                "HA connections removed, each once",
                ha.closed_total(),
            )?;
            gauge(
                &mut e,
                "rmq_commitlog_max_offset",
                "The commit log's max offset",
                log.max_offset() as f64,
            )?;
            let acked: Vec<_> = entries
                .into_iter()
                .filter_map(|row| Some((row.peer, row.ack?)))
                .collect();
            if !acked.is_empty() {
                let mut family = e.encode_descriptor(
                    "rmq_ha_slave_acked_offset",
                    "The last offset each connected slave acknowledged",
                    None,
                    MetricType::Gauge,
                )?;
                for (peer, ack) in acked {
                    let labels = [("peer", peer)];
                    ConstGauge::new(ack as f64).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// The text a scrape returns now.
pub fn render(sources: &Sources) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Tables(sources.clone())));
    let mut out = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!(%error, "metrics not encodable");
    }
    out
}

/// Binds `addr` and serves [`render`] at `GET /metrics` until `cancel`.
pub async fn serve(
    addr: SocketAddr,
    sources: Sources,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let listener = crate::io::net::TcpListener::bind(addr).await?;
    serve_on(listener, sources, cancel);
    Ok(())
}

/// Serves [`render`] on a bound listener until `cancel`.
pub(crate) fn serve_on(
    listener: crate::io::net::TcpListener,
    sources: Sources,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "metrics accept failed");
                        continue;
                    }
                },
            };
            let sources = sources.clone();
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let response = if request.uri().path() == "/metrics" {
                        hyper::Response::builder()
                            .header(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )
                            .body(http_body_util::Full::new(bytes::Bytes::from(render(
                                &sources,
                            ))))
                    } else {
                        hyper::Response::builder()
                            .status(404)
                            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                b"see /metrics\n",
                            )))
                    };
                    std::future::ready(response)
                },
            );
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => {}
                    _ = conn => {}
                }
            });
        }
    });
}
