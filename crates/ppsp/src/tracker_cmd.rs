//! `ppsp tracker`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use ppsp_server::{Listeners, Server, ServerConfig};

use crate::CliError;

/// Options of `ppsp tracker`. Flags override the configuration file.
#[derive(Debug, clap::Args)]
pub(crate) struct TrackerArgs {
    /// HTTP listener address (repeatable; IPv4 or IPv6; port 0 picks a free port).
    /// Default: 127.0.0.1:7070. Listeners given here replace those of the file.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// HTTPS listener address (repeatable); needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR")]
    tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain for the HTTPS listeners.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the HTTPS listeners.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Run the STUN Binding service on this UDP address (off by default).
    #[arg(long, value_name = "ADDR")]
    stun: Option<SocketAddr>,
    /// TOML configuration file (see --print-config for every setting).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the full default configuration as commented TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Accounts file for SASL PLAIN (written by `ppsp accounts add`).
    #[arg(long, value_name = "FILE")]
    accounts: Option<PathBuf>,
    /// Refuse SASL ANONYMOUS (and so JSON CONNECTs): a closed tracker.
    #[arg(long)]
    no_anonymous: bool,
    /// Trust X-Forwarded-For from this proxy address or CIDR network (repeatable).
    #[arg(long, value_name = "NET")]
    trusted_proxy: Vec<String>,
    /// Where the state lives: `memory` (default), `redis://HOST:PORT` or
    /// `redis-cluster://H:P[,H:P...]`; nodes on one Redis store share one state.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
}

impl TrackerArgs {
    /// Applies the command-line flags on top of the file's settings.
    fn apply(self, config: &mut ServerConfig) {
        if !self.listen.is_empty() || !self.tls_listen.is_empty() {
            config.server.listen = self.listen;
            config.server.tls_listen = self.tls_listen;
        }
        if self.tls_cert.is_some() {
            config.tls.cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            config.tls.key = self.tls_key;
        }
        if self.stun.is_some() {
            config.stun.listen = self.stun;
        }
        if self.accounts.is_some() {
            config.auth.accounts_file = self.accounts;
        }
        if self.no_anonymous {
            config.auth.allow_anonymous = false;
        }
        if !self.trusted_proxy.is_empty() {
            config.server.trusted_proxies = self.trusted_proxy;
        }
        if let Some(store) = self.store {
            config.store.url = store;
        }
    }
}

/// Runs the tracker until SIGINT or SIGTERM.
pub(crate) fn run(args: TrackerArgs) -> Result<(), CliError> {
    if args.print_config {
        print!("{}", ServerConfig::default().commented_toml());
        std::io::stdout().flush()?;
        return Ok(());
    }
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    args.apply(&mut config);
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ppsp-tracker")
        .build()?;
    runtime.block_on(async move {
        // A store that cannot be reached ends the start here, naming it, within its time-out.
        let server = Server::open(config.clone()).await?;
        let listeners = Listeners::bind(&config).await?;
        let mut stdout = std::io::stdout().lock();
        for line in listeners.readiness_lines()? {
            tracing::info!("{line}");
            writeln!(stdout, "{line}")?;
        }
        stdout.flush()?;
        drop(stdout);
        let shutdown = shutdown_signal()?;
        server.serve(listeners, shutdown).await?;
        Ok::<(), CliError>(())
    })?;
    // Blocking tasks (a CONNECT hashing a password) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}
