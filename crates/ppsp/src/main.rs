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
        Command::Peer(cmd) => peer_cmd::run(cmd, cli.quiet),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", error_report(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `error: ...` and one `caused by:` line per cause, leaving out a cause whose text the line
/// before already ends with (errors that print their source as part of their own message).
fn error_report(err: &(dyn std::error::Error + 'static)) -> String {
    let mut report = format!("error: {err}\n");
    let mut shown = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !shown.ends_with(&text) {
            report.push_str(&format!("  caused by: {text}\n"));
        }
        shown = text;
        source = cause.source();
    }
    report
}

#[cfg(test)]
mod tests {
    use super::error_report;

    #[derive(Debug)]
    struct Wrapped(std::io::Error, bool);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.1 {
                write!(f, "opening movie.mp4: {}", self.0)
            } else {
                f.write_str("opening movie.mp4")
            }
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let missing = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert_eq!(
            error_report(&Wrapped(missing(), true)),
            "error: opening movie.mp4: no such file\n"
        );
        assert_eq!(
            error_report(&Wrapped(missing(), false)),
            "error: opening movie.mp4\n  caused by: no such file\n"
        );
    }
}
