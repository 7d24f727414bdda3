//! `ppsp`: the PPSP tracker, peer, account tool and load generator in one binary.

mod accounts_cmd;
mod bench;
mod peer_cmd;
mod tracker_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a request allocates and frees many small
/// buffers (request body, response model, encoded answer), and glibc's malloc and free were
/// a fifth of the tracker's cycles under load (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Errors the subcommands report; printed as `error: ...` with exit status 1.
pub(crate) type CliError = Box<dyn std::error::Error + Send + Sync>;

/// PPSP: peer-to-peer streaming tracker and peer (draft-gu-ppsp-tracker-protocol-06 over
/// XML, RFC 7846 over JSON).
#[derive(Debug, Parser)]
#[command(name = "ppsp", version, about)]
struct Cli {
    /// More log output on standard error (-v debug, -vv trace). `RUST_LOG`, when set,
    /// overrides -v and -q.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors on standard error.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Log line format on standard error: `text` or `json` (one JSON object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: timestamp, level, fields (`message` included).
    Json,
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

/// The log filter: `RUST_LOG` when set (same syntax as `env_logger`: `debug`,
/// `ppsp_server=debug,info`, ...), otherwise the level -q / -v select.
fn log_filter(verbose: u8, quiet: bool) -> tracing_subscriber::EnvFilter {
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::WARN,
        (false, 0) => tracing::Level::INFO,
        (false, 1) => tracing::Level::DEBUG,
        (false, _) => tracing::Level::TRACE,
    };
    tracing_subscriber::EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env()
        .unwrap_or_else(|err| {
            eprintln!("warning: RUST_LOG ignored: {err}");
            tracing_subscriber::EnvFilter::new(level.as_str())
        })
}

fn init_logging(verbose: u8, quiet: bool, format: LogFormat) {
    let filter = log_filter(verbose, quiet);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet, cli.log_format);
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
