//! `embers`: the command-line entry point. Argument parsing and wiring only; the work
//! happens in the library crates.

mod commands;
mod hints;
mod input;
mod output;
mod record;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Embers: continuous profiling for Python, Ruby, Node and Rust services.
#[derive(Debug, Parser)]
#[command(name = "embers", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sample a running Python or Ruby process (or launch one) and write a profile.
    Record(record::RecordArgs),
    /// Draw an interactive SVG flame graph from profile files.
    Flamegraph(commands::flamegraph::FlamegraphArgs),
    /// Convert a profile between formats (folded, pprof, speedscope, callgrind, chrome, svg, dot).
    Convert(commands::convert::ConvertArgs),
    /// Compare two profiles: a differential flame graph and the functions that changed most.
    Diff(commands::diff::DiffArgs),
    /// Run the server: Pyroscope-compatible ingest, the embedded store, the query API.
    Server(commands::server::ServerArgs),
    /// Profile processes continuously and push tagged 10 s windows to a server.
    Agent(commands::agent::AgentArgs),
    /// Fetch the merged profile of a selector over a time range from a server.
    Query(commands::query::QueryArgs),
    /// Check a data directory's objects; `--repair` quarantines the damaged ones.
    Fsck(commands::fsck::FsckArgs),
    /// Make tokens for the server's auth file (`embers token new --tenant T --scope read`).
    Token(commands::token::TokenArgs),
    /// Run seed 003's rideshare example against an embedded server, with the web UI.
    Demo(commands::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Record(args) => record::run(args),
        Command::Flamegraph(args) => commands::flamegraph::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Diff(args) => commands::diff::run(args),
        Command::Server(args) => commands::server::run(args),
        Command::Query(args) => commands::query::run(args),
        Command::Agent(args) => commands::agent::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Fsck(args) => commands::fsck::run(args),
        Command::Token(args) => commands::token::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => hints::report(&err),
    }
}
