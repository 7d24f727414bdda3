//! `ppsp tracker`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::Arc;

use ppsp_server::{AccountsAuthenticator, Listeners, Server, ServerConfig};

use crate::CliError;

/// Options of `ppsp tracker`. Flags override `PPSP_SECTION__KEY` environment variables,
/// which override the configuration file, which overrides the defaults.
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
    /// Check a configuration file (with the environment overrides and flags, the accounts
    /// file and the TLS files it names), print `configuration OK: FILE` and exit; exit 1
    /// naming the problem (line and column for syntax errors) otherwise.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
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

/// Runs the tracker until SIGINT or SIGTERM; SIGHUP reloads the accounts file.
pub(crate) fn run(mut args: TrackerArgs) -> Result<(), CliError> {
    if args.print_config {
        print!("{}", ServerConfig::default().commented_toml());
        std::io::stdout().flush()?;
        return Ok(());
    }
    let check = args.check_config.take();
    let file = check.clone().or_else(|| args.config.take());
    let mut config = ServerConfig::load(file.as_deref(), environment())?;
    args.apply(&mut config);
    config.validate()?;
    if let Some(path) = check {
        // Everything but the connection to the store: a check must not need it running.
        let mut offline = config.clone();
        offline.store.url = "memory".to_owned();
        Server::new(offline)?;
        println!("configuration OK: {}", path.display());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ppsp-tracker")
        .build()?;
    runtime.block_on(async move {
        // A store that cannot be reached ends the start here, naming it, within its time-out.
        let server = Server::open(config.clone()).await?;
        let listeners = Listeners::bind(&config).await?;
        reload_accounts_on_hangup(server.authenticator())?;
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

/// The process environment as text. A variable that is not valid UTF-8 cannot be an
/// override's name or value; one that looks like an override is reported, not dropped
/// silently.
fn environment() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(name, value)| {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => Some((name, value)),
            (Ok(name), Err(_)) if name.starts_with(ppsp_server::config::ENV_PREFIX) => {
                tracing::warn!("{name} ignored: its value is not UTF-8");
                None
            }
            _ => None,
        }
    })
}

/// Re-reads the accounts file on every SIGHUP. Sessions live in the tracker and are not
/// touched; a file that fails to load leaves the previous accounts in force.
fn reload_accounts_on_hangup(authenticator: Arc<AccountsAuthenticator>) -> Result<(), CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let reloader = Arc::clone(&authenticator);
            match tokio::task::spawn_blocking(move || reloader.reload()).await {
                Ok(Ok(count)) => tracing::info!("SIGHUP: accounts file reloaded, {count} accounts"),
                Ok(Err(err)) => tracing::warn!("SIGHUP: keeping the previous accounts: {err}"),
                Err(err) => tracing::error!("SIGHUP: accounts reload failed: {err}"),
            }
        }
    });
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
