//! Command-line front end: argument parsing, logging setup and human/JSON output. The only place
//! where `println!` is allowed. Serving runs the library; the replays and benchmarks also run
//! `upstream`'s emulations, which live here so that the library never exposes them.

mod alloc;
mod bench;
mod chart;
mod model_trace;
mod not_ha_peer;

use std::path::PathBuf;
mod replay;
mod serve;
mod store;
mod upstream;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// A verified core for RocketMQ's HA connections and producer/consumer group registries.
#[derive(Debug, Parser)]
#[command(name = "rmq-lifecycle", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker-side core: the client-management listener, the HA master (and metrics).
    Serve(serve::ServeArgs),
    /// Replicate a master's commit log (ours or upstream's classic HA).
    Slave(serve::SlaveArgs),
    /// Re-run the two production incidents in-process, beside upstream's behaviour.
    Replay(replay::ReplayArgs),
    /// Check or repair a store directory.
    Store {
        #[command(subcommand)]
        which: store::Which,
    },
    /// Benchmarks, each figure beside a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

/// Parses arguments, installs the tracing subscriber and runs. `RUST_LOG` selects the events;
/// without it `serve` and `slave` show what an operator needs (listening, peers, shutdown) at
/// `info`, and the replays and benchmarks, which open connections by the hundred thousand,
/// show warnings only.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.command {
        Command::Serve(_) | Command::Slave(_) => "info",
        Command::Replay(_) | Command::Bench { .. } | Command::Store { .. } => "warn",
    };
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        );
    // `serve --model-trace` / `--ha-model-trace`: a recorder per model, written at exit.
    let recorders: Vec<(model_trace::Recorder, PathBuf)> = match &cli.command {
        Command::Serve(args) => [
            (model_trace::Recorder::default(), &args.model_trace),
            (model_trace::Recorder::ha(), &args.ha_model_trace),
        ]
        .into_iter()
        .filter_map(|(r, path)| Some((r, path.clone()?)))
        .collect(),
        _ => Vec::new(),
    };
    // An empty `Vec` of layers would turn every event off (its level hint is OFF); `None` not.
    let layers: Vec<_> = recorders.iter().map(|(r, _)| r.layer()).collect();
    let layers = (!layers.is_empty()).then_some(layers);
    // Both run a slave (`serve` once demoted).
    let hint = matches!(cli.command, Command::Serve(_) | Command::Slave(_))
        .then(|| not_ha_peer::NotHaPeer::default().with_filter(not_ha_peer::NotHaPeer::filter()));
    tracing_subscriber::registry()
        .with(log)
        .with(layers)
        .with(hint)
        .init();
    match cli.command {
        Command::Serve(args) => {
            let code = serve::run(args);
            for (recorder, path) in recorders {
                let lines = recorder.take();
                if let Err(error) = model_trace::write_file(&path, &lines) {
                    eprintln!("error: writing the model trace {}: {error}", path.display());
                    return ExitCode::FAILURE;
                }
                eprintln!("model trace: {} events in {}", lines.len(), path.display());
            }
            code
        }
        Command::Slave(args) => serve::run_slave(args),
        Command::Replay(args) => replay::run(args),
        Command::Store { which } => store::run(which),
        Command::Bench { which } => bench::run(which),
    }
}
