//! The `rmq-lifecycle` command. See `cli` for the subcommands.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
