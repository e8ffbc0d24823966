//! `rmq-lifecycle bench ...`: each figure beside a baseline measured in the same process.

mod ha;
mod heartbeat;
mod machine;
mod pipeline;
mod registry;
mod send;

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(crate) enum Which {
    /// ClientRegistry against upstream 4.x's single-lock ProducerManager.
    Registry {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Heartbeats over loopback against `serve`'s listener, beside a trivial echo server.
    Heartbeat {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// HA probes, replication throughput, sync waits and idle memory, beside plain sockets.
    Ha {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// SEND_MESSAGE_V2 over loopback to the whole broker, beside MessageLog::send in-process;
    /// and with a slave, send-to-acknowledged latency.
    Send {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(which: Which) -> ExitCode {
    match which {
        Which::Registry { json } => registry::run(json),
        Which::Heartbeat { json } => heartbeat::run(json),
        Which::Ha { json } => ha::run(json),
        Which::Send { json } => send::run(json),
    }
}
