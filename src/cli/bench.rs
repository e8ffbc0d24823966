//! `rmq-lifecycle bench ...`: each figure beside a baseline measured in the same process.

mod registry;

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
}

pub(crate) fn run(which: Which) -> ExitCode {
    match which {
        Which::Registry { json } => registry::run(json),
    }
}
