//! Listeners, connections, the sweep task, the STUN service and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ppsp_tracker_core::Timestamp;

use crate::store::ServerTracker;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::admin::AdminAccess;
use crate::auth::AccountsAuthenticator;
use crate::config::ServerConfig;
use crate::digest::JsonGate;
use crate::error::ServerError;
use crate::state::{AppState, ConnInfo};

/// Sockets bound before the server runs, so that callers (tests, the binary) know the real
/// addresses, port 0 included, before serving starts.
#[derive(Debug, Default)]
pub struct Listeners {
    /// Cleartext HTTP listeners.
    pub http: Vec<TcpListener>,
    /// HTTPS listeners.
    pub https: Vec<TcpListener>,
    /// The STUN service's UDP socket, when the service is on.
    pub stun: Option<UdpSocket>,
    /// Listeners serving only the admin pages (`[admin] listen`).
    pub admin: Vec<TcpListener>,
}

impl Listeners {
    /// Binds every listener the configuration names.
    ///
    /// # Errors
    /// [`ServerError::Bind`] for the first address that cannot be bound.
    pub async fn bind(config: &ServerConfig) -> Result<Self, ServerError> {
        let mut listeners = Self::default();
        for addr in &config.server.listen {
            listeners.http.push(bind_tcp(*addr).await?);
        }
        for addr in &config.server.tls_listen {
            listeners.https.push(bind_tcp(*addr).await?);
        }
        if let Some(addr) = config.stun.listen {
            listeners.stun = Some(bind_udp(addr)?);
        }
        for addr in &config.admin.listen {
            listeners.admin.push(bind_tcp(*addr).await?);
        }
        Ok(listeners)
    }

    /// The readiness lines: `listening on http://HOST:PORT` per HTTP listener,
    /// `listening on https://HOST:PORT` per HTTPS listener, `stun on udp://HOST:PORT` and
    /// `admin on http://HOST:PORT` per admin listener.
    ///
    /// # Errors
    /// When a socket's local address cannot be read.
    pub fn readiness_lines(&self) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        for listener in &self.http {
            lines.push(format!("listening on http://{}", listener.local_addr()?));
        }
        for listener in &self.https {
            lines.push(format!("listening on https://{}", listener.local_addr()?));
        }
        if let Some(socket) = &self.stun {
            lines.push(format!("stun on udp://{}", socket.local_addr()?));
        }
        for listener in &self.admin {
            lines.push(format!("admin on http://{}", listener.local_addr()?));
        }
        Ok(lines)
    }
}

/// Connections the kernel queues for a listener while every connection slot is taken.
const ACCEPT_BACKLOG: i32 = 1024;

/// Binds a TCP listener. IPv6 listeners are IPv6 only, so `0.0.0.0:P` and `[::]:P` can be
/// listed together for a dual-stack tracker.
async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let bind = || -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // A restarted tracker can bind again while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(ACCEPT_BACKLOG)?;
        socket.set_nonblocking(true)?;
        TcpListener::from_std(socket.into())
    };
    bind().map_err(|source| ServerError::Bind { addr, source })
}

/// Binds a UDP socket, IPv6 only for IPv6 addresses (as for TCP).
fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, ServerError> {
    let bind = || -> io::Result<UdpSocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        UdpSocket::from_std(socket.into())
    };
    bind().map_err(|source| ServerError::Bind { addr, source })
}

/// A configured tracker server, ready to serve on bound [`Listeners`].
pub struct Server {
    config: ServerConfig,
    tracker: Arc<ServerTracker>,
    authenticator: Arc<AccountsAuthenticator>,
    json_gate: Arc<JsonGate>,
    admin: AdminAccess,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Checks the configuration, reads the accounts file and the TLS certificate, and
    /// builds the tracker.
    ///
    /// # Errors
    /// [`ServerError::Config`], [`ServerError::Accounts`] or [`ServerError::Tls`].
    pub fn new(config: ServerConfig) -> Result<Self, ServerError> {
        if config.store.url != "memory" {
            return Err(ServerError::Config(format!(
                "store {} needs Server::open",
                config.store.url
            )));
        }
        let authenticator = Self::build_authenticator(&config)?;
        let tracker = crate::store::memory_tracker(
            config.core_config(),
            Arc::clone(&authenticator) as Arc<dyn ppsp_tracker_core::Authenticator>,
        );
        Self::with_tracker(config, tracker, authenticator)
    }

    /// As [`Server::new`], on the store `config.store` names (connecting to Redis when it
    /// names Redis).
    ///
    /// # Errors
    /// As [`Server::new`]; [`ServerError::Store`] when the store cannot be reached.
    pub async fn open(config: ServerConfig) -> Result<Self, ServerError> {
        let authenticator = Self::build_authenticator(&config)?;
        let tracker = crate::store::open_tracker(
            &config.store,
            config.core_config(),
            Arc::clone(&authenticator) as Arc<dyn ppsp_tracker_core::Authenticator>,
        )
        .await?;
        tracing::info!("state store: {}", config.store.url);
        Self::with_tracker(config, tracker, authenticator)
    }

    fn build_authenticator(
        config: &ServerConfig,
    ) -> Result<Arc<AccountsAuthenticator>, ServerError> {
        config.validate()?;
        let authenticator = Arc::new(AccountsAuthenticator::from_config(&config.auth)?);
        tracing::info!(
            "authentication: ANONYMOUS {}, PLAIN {}",
            if config.auth.allow_anonymous {
                "accepted (open tracker)"
            } else {
                "refused"
            },
            match &config.auth.accounts_file {
                Some(path) => format!(
                    "checked against {}{}",
                    path.display(),
                    if config.auth.allow_plain_over_cleartext {
                        ", cleartext allowed"
                    } else {
                        ""
                    }
                ),
                None => "refused (no accounts file)".to_owned(),
            }
        );
        Ok(authenticator)
    }

    fn with_tracker(
        config: ServerConfig,
        tracker: ServerTracker,
        authenticator: Arc<AccountsAuthenticator>,
    ) -> Result<Self, ServerError> {
        let tracker = Arc::new(tracker);
        let json_gate = JsonGate::new(
            &config.auth.digest_realm,
            Duration::from_secs(config.auth.digest_nonce_lifetime_secs),
            config.auth.allow_anonymous,
        )
        .ok_or_else(|| ServerError::Config("no system randomness for Digest nonces".to_owned()))?;
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => Some(TlsAcceptor::from(
                crate::tls::load_server_config_with_client_ca(
                    cert,
                    key,
                    config.tls.client_ca.as_deref(),
                )?,
            )),
            _ => None,
        };
        let admin = AdminAccess::from_config(&config.admin)?;
        Ok(Self {
            config,
            tracker,
            authenticator,
            json_gate: Arc::new(json_gate),
            admin,
            tls,
        })
    }

    /// The authenticator, kept so the accounts file can be reloaded while serving
    /// ([`AccountsAuthenticator::reload`], on SIGHUP in `ppsp tracker`).
    pub fn authenticator(&self) -> Arc<AccountsAuthenticator> {
        Arc::clone(&self.authenticator)
    }

    /// The tracker behind the server.
    pub fn tracker(&self) -> &Arc<ServerTracker> {
        &self.tracker
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish (at most `shutdown_grace_secs`) and returns.
    ///
    /// # Errors
    /// [`ServerError::Config`] when HTTPS listeners are given but no certificate is
    /// configured.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        if !listeners.https.is_empty() && self.tls.is_none() {
            return Err(ServerError::Config(
                "HTTPS listeners need tls.cert and tls.key".to_owned(),
            ));
        }
        let config = &self.config.server;
        let state = Arc::new(AppState::new(
            &self.config,
            Arc::clone(&self.tracker),
            Arc::clone(&self.authenticator),
            Arc::clone(&self.json_gate),
            self.admin.clone(),
        ));
        let (stop_tx, stop_rx) = watch::channel(false);
        // What open connections are told: drain at shutdown, and once the grace period is
        // over, drop.
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        let max_connections = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
        let connection_slots = Arc::new(Semaphore::new(max_connections as usize));
        let settings = Arc::new(ConnSettings {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
            loopback_is_secure: self.config.auth.loopback_is_secure,
        });

        let (threads, workers) = ConnectionThreads::start(config.connection_threads)?;
        let mut tasks = tokio::task::JoinSet::new();
        let plain = listeners.http.into_iter().map(|l| (l, None, false));
        let tls = listeners
            .https
            .into_iter()
            .map(|l| (l, self.tls.clone(), false));
        let admin = listeners.admin.into_iter().map(|l| (l, None, true));
        for (listener, acceptor, admin_listener) in plain.chain(tls).chain(admin) {
            tasks.spawn(accept_loop(
                Endpoint {
                    listener,
                    tls: acceptor,
                    admin_listener,
                },
                Arc::clone(&state),
                Arc::clone(&settings),
                Arc::clone(&connection_slots),
                Arc::clone(&threads),
                Signals {
                    stop: stop_rx.clone(),
                    phase: phase_rx.clone(),
                },
            ));
        }
        if let Some(socket) = listeners.stun {
            tasks.spawn(stun_loop(socket, Arc::clone(&state), stop_rx.clone()));
        }
        tasks.spawn(crate::history::sample_loop(
            Arc::clone(&state),
            stop_rx.clone(),
        ));
        tasks.spawn(sweep_loop(
            Arc::clone(&state),
            Duration::from_millis(config.sweep_interval_ms),
            stop_rx.clone(),
        ));

        shutdown.await;
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        let _ = stop_tx.send(true);
        let _ = phase_tx.send(Phase::Draining);
        while tasks.join_next().await.is_some() {}
        // Every open connection holds one slot; all slots back means all connections done.
        let grace = Duration::from_secs(config.shutdown_grace_secs);
        match tokio::time::timeout(grace, connection_slots.acquire_many(max_connections)).await {
            Ok(_) => tracing::info!("all connections closed"),
            Err(_) => {
                tracing::warn!(
                    "{} connections still open after {} s, closing them",
                    state.metrics.connections_open.get(),
                    grace.as_secs()
                );
                let _ = phase_tx.send(Phase::Dropping);
                // Dropping a connection is immediate; TLS handshakes end by their timeout.
                let _ = tokio::time::timeout(
                    settings.header_read_timeout,
                    connection_slots.acquire_many(max_connections),
                )
                .await;
            }
        }
        workers.finish().await;
        Ok(())
    }
}

/// Builds a [`Server`] from `config` and serves `listeners` until `shutdown` completes.
///
/// # Errors
/// As [`Server::new`] and [`Server::serve`].
pub async fn serve(
    config: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    Server::new(config)?.serve(listeners, shutdown).await
}

/// Completes once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Shutdown signals: `stop` ends the accept loop; `phase` tells the connections it started
/// to drain, then (after the grace period) to drop.
#[derive(Clone)]
struct Signals {
    stop: watch::Receiver<bool>,
    phase: watch::Receiver<Phase>,
}

/// What open connections are asked to do. One channel for both steps, so a connection's
/// task watches one signal besides its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Serve requests.
    Serving,
    /// Finish the request in flight, if any, then close.
    Draining,
    /// Close now: the grace period is over.
    Dropping,
}

struct ConnSettings {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    loopback_is_secure: bool,
}

/// One listening socket and what it serves.
struct Endpoint {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    /// Serves only the admin pages.
    admin_listener: bool,
}

/// The threads that run connections, each on a single-threaded runtime of its own.
///
/// Accept loops hand every new connection to the next thread in turn, and the connection
/// stays there: its requests never move between cores, wake no other thread, and keep
/// their buffers in one core's cache. One shared work-stealing runtime spends a quarter
/// more CPU per request on a 2-core machine (docs/benchmarks.md, "Connection threads").
struct ConnectionThreads {
    handles: Vec<tokio::runtime::Handle>,
    next: AtomicUsize,
}

/// What ends the connection threads once serving is over.
struct ThreadsStop {
    done: watch::Sender<bool>,
    joins: Vec<std::thread::JoinHandle<()>>,
}

impl ConnectionThreads {
    /// Starts `count` threads (0: one per core the process may use).
    fn start(count: usize) -> Result<(Arc<Self>, ThreadsStop), ServerError> {
        let count = if count == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        } else {
            count
        };
        let (done, done_rx) = watch::channel(false);
        let mut handles = Vec::with_capacity(count);
        let mut joins = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let mut done_rx = done_rx.clone();
            let join = std::thread::Builder::new()
                .name(format!("ppsp-conn-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let _ = done_rx.wait_for(|done| *done).await;
                    });
                    // A password check still running on the blocking pool is not waited
                    // for: its connection is gone.
                    runtime.shutdown_timeout(Duration::from_millis(100));
                })?;
            joins.push(join);
        }
        Ok((
            Arc::new(Self {
                handles,
                next: AtomicUsize::new(0),
            }),
            ThreadsStop { done, joins },
        ))
    }

    /// Runs `connection` on the next thread in turn.
    fn spawn<F>(&self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        drop(self.handles[index].spawn(connection));
    }
}

impl ThreadsStop {
    /// Ends the threads, dropping any connection still open, and waits for them.
    async fn finish(self) {
        let _ = self.done.send(true);
        let joins = self.joins;
        let _ = tokio::task::spawn_blocking(move || {
            for join in joins {
                if join.join().is_err() {
                    tracing::error!("a connection thread panicked");
                }
            }
        })
        .await;
    }
}

async fn accept_loop(
    endpoint: Endpoint,
    state: Arc<AppState>,
    settings: Arc<ConnSettings>,
    slots: Arc<Semaphore>,
    threads: Arc<ConnectionThreads>,
    signals: Signals,
) {
    let Endpoint {
        listener,
        tls,
        admin_listener,
    } = endpoint;
    let mut stop = signals.stop.clone();
    loop {
        // A slot is taken before accepting: when all are in use, new clients wait in the
        // kernel's accept queue instead of being accepted and starved.
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stopped(&mut stop) => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        let _ = stream.set_nodelay(true);
        // Report IPv4 clients as IPv4 even if they arrive through a mapped address.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let local = stream.local_addr().ok();
        let secure = tls.is_some()
            || (settings.loopback_is_secure && local.is_some_and(|a| a.ip().is_loopback()));
        let info = Arc::new(ConnInfo {
            peer,
            secure,
            certificate_names: Vec::new(),
            admin_listener,
        });
        let state = Arc::clone(&state);
        let settings = Arc::clone(&settings);
        let tls = tls.clone();
        let signals = signals.clone();
        // The socket leaves this runtime's reactor and joins that of the thread serving it.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!("connection from {peer} lost before it was served: {err}");
                continue;
            }
        };
        threads.spawn(async move {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::warn!("cannot serve the connection from {peer}: {err}");
                    return;
                }
            };
            state.metrics.connections_total.inc();
            state.metrics.connections_open.inc();
            let activity = Arc::new(Activity::new());
            let io = Tracked {
                inner: stream,
                activity: Arc::clone(&activity),
            };
            match tls {
                None => drive(io, activity, info, &state, &settings, signals).await,
                Some(acceptor) => {
                    match tokio::time::timeout(settings.header_read_timeout, acceptor.accept(io))
                        .await
                    {
                        Ok(Ok(tls_stream)) => {
                            let info = with_client_certificate(&info, &tls_stream);
                            drive(tls_stream, activity, info, &state, &settings, signals).await;
                        }
                        Ok(Err(err)) => tracing::debug!("TLS handshake with {peer} failed: {err}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                }
            }
            state.metrics.connections_open.dec();
            drop(permit);
        });
    }
}

/// The connection's facts plus the names of the client certificate rustls verified, if any.
fn with_client_certificate<S>(
    info: &Arc<ConnInfo>,
    stream: &tokio_rustls::server::TlsStream<S>,
) -> Arc<ConnInfo> {
    let names = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| crate::digest::certificate_names(leaf.as_ref()))
        .unwrap_or_default();
    if names.is_empty() {
        return Arc::clone(info);
    }
    Arc::new(ConnInfo {
        certificate_names: names,
        ..ConnInfo::clone(info)
    })
}

/// Serves HTTP/1.1 on one connection until the client closes it, it idles out, or
/// shutdown completes its in-flight request.
async fn drive<I>(
    io: I,
    activity: Arc<Activity>,
    info: Arc<ConnInfo>,
    state: &Arc<AppState>,
    settings: &ConnSettings,
    signals: Signals,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let busy = AtomicU64::new(0);
    // Each request's future borrows the state, the connection's facts and the busy count
    // from this task: cloning an `Arc` per request would move the shared state's reference
    // count between the cores on every request.
    let service = {
        let (info, busy) = (info.as_ref(), &busy);
        service_fn(move |request| async move {
            busy.fetch_add(1, Ordering::Relaxed);
            let response = crate::http::handle(state, info, request).await;
            busy.fetch_sub(1, Ordering::Relaxed);
            response
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut phase = signals.phase;
    let mut draining = false;
    // Silence is looked for IDLE_CHECKS times per idle timeout instead of reading the clock
    // at every read and write: a connection is closed after between one and 1 + 1 /
    // IDLE_CHECKS idle timeouts without a byte moving.
    // (The configuration holds the timeout to at least a second; the floor only keeps the
    // interval's period from being zero.)
    let check_every = (settings.idle_timeout / IDLE_CHECKS).max(Duration::from_millis(1));
    let mut checks =
        tokio::time::interval_at(tokio::time::Instant::now() + check_every, check_every);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quiet_checks = 0;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!("connection ended: {err}");
                }
                return;
            }
            changed = phase.changed() => {
                // A vanished sender means the server is gone: nothing left to drain for.
                let now = match changed {
                    Ok(()) => *phase.borrow_and_update(),
                    Err(_) => Phase::Dropping,
                };
                match now {
                    Phase::Serving => {}
                    Phase::Draining if !draining => {
                        draining = true;
                        // Finishes the request in flight, if any, then closes.
                        connection.as_mut().graceful_shutdown();
                    }
                    Phase::Draining => {}
                    Phase::Dropping => {
                        tracing::debug!("dropping connection: the shutdown grace period is over");
                        return;
                    }
                }
            }
            _ = checks.tick() => {
                // Time spent computing an answer is not idleness; only silence on the wire
                // while no request is being handled is.
                if activity.take_moved() || busy.load(Ordering::Relaxed) > 0 {
                    quiet_checks = 0;
                } else {
                    quiet_checks += 1;
                    if quiet_checks >= IDLE_CHECKS {
                        tracing::debug!("closing idle connection");
                        return;
                    }
                }
            }
        }
    }
}

/// Looks for silence on a connection this many times per idle timeout.
const IDLE_CHECKS: u32 = 4;

/// Whether a connection moved a byte since the last look.
struct Activity {
    moved: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            moved: AtomicBool::new(true),
        }
    }

    fn touch(&self) {
        self.moved.store(true, Ordering::Relaxed);
    }

    /// Whether a byte moved since the last call, which starts a new period.
    fn take_moved(&self) -> bool {
        self.moved.swap(false, Ordering::Relaxed)
    }
}

/// A stream that records when it last read or wrote a byte.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn sweep_loop(state: Arc<AppState>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped(&mut stop) => return,
        }
        let report = match state.tracker.sweep(Timestamp::now()).await {
            Ok(report) => report,
            Err(error) => {
                tracing::warn!("sweep failed: {error}");
                continue;
            }
        };
        if report.sessions_expired > 0 || report.memberships_expired > 0 {
            tracing::debug!(
                "sweep: {} sessions and {} memberships expired",
                report.sessions_expired,
                report.memberships_expired
            );
        }
        state
            .metrics
            .sessions_expired
            .inc_by(report.sessions_expired as u64);
        state
            .metrics
            .memberships_expired
            .inc_by(report.memberships_expired as u64);
    }
}

async fn stun_loop(socket: UdpSocket, state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let (len, from) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(err) => {
                    // ICMP errors from earlier sends surface here on some systems.
                    tracing::debug!("STUN receive failed: {err}");
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        let Some(request) = buf.get(..len) else {
            continue;
        };
        if let Some(answer) = ppsp_proto::stun::answer(request, from) {
            match socket.send_to(&answer, from).await {
                Ok(_) => {
                    state.metrics.stun_answers.inc();
                }
                Err(err) => tracing::debug!("STUN answer to {from} failed: {err}"),
            }
        }
    }
}
