//! `ppsp`: the PPSP tracker, peer, account tool and load generator in one binary.

mod accounts_cmd;
mod bench;
mod peer_cmd;
mod tracker_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Errors the subcommands report; printed as `error: ...` with exit status 1.
pub(crate) type CliError = Box<dyn std::error::Error + Send + Sync>;

/// PPSP: peer-to-peer streaming tracker and peer (draft-gu-ppsp-tracker-protocol-06 over
/// XML, RFC 7846 over JSON).
#[derive(Debug, Parser)]
#[command(name = "ppsp", version, about)]
struct Cli {
    /// More log output on standard error (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors on standard error.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a tracker (default: http://127.0.0.1:7070, in-memory, open).
    Tracker(tracker_cmd::TrackerArgs),
    /// Manage the accounts file used for SASL PLAIN.
    #[command(subcommand)]
    Accounts(accounts_cmd::AccountsCommand),
    /// Run a peer: publish, fetch or play content through a swarm.
    #[command(subcommand)]
    Peer(peer_cmd::PeerCommand),
    /// Load generator: simulated peers against a running tracker.
    Bench(bench::BenchArgs),
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::WARN,
        (false, 0) => tracing::Level::INFO,
        (false, 1) => tracing::Level::DEBUG,
        (false, _) => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Tracker(args) => tracker_cmd::run(args),
        Command::Accounts(cmd) => accounts_cmd::run(cmd),
        Command::Peer(cmd) => peer_cmd::run(cmd),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
