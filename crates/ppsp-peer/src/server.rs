//! The peer's HTTP servers: [`PeerServer`] answers the peer protocol (and `/metrics`) for
//! other peers, [`PlayerServer`] serves the content to a local media player. They are
//! separate listeners so that other peers can never reach the player (or move its playback
//! position), and player traffic never bypasses the upload limits.
//!
//! Every peer connection has a write timeout (a peer that stops reading loses its
//! connection and its upload slot), an idle timeout and a header timeout; each remote
//! address holds at most [`MAX_CONNECTIONS_PER_ADDRESS`] connections and
//! [`SwarmOptions::uploads_per_address`](crate::swarm::SwarmOptions) upload slots.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_io_timeout::TimeoutStream;

use crate::body::{OutBody, UploadPermit};
use crate::error::Error;
use crate::limit::PerAddress;
use crate::player;
use crate::protocol::{self, ChunkMapWire, LISTEN_HEADER, PeerRequest};
use crate::swarm::Swarm;

/// Longest time a request head may take to arrive.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A peer connection on which nothing arrives for this long is closed (above the peer
/// client's 20 s pool idle time, so a pooled connection is dropped by its client first).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A peer connection whose answer cannot be written for this long (the other side stopped
/// reading) is closed, which frees its upload slot.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default bound on simultaneous connections to one peer.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Most simultaneous connections from one remote address; more are closed at once.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;

/// Which endpoint a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Peer,
    Player,
}

/// A running peer-protocol server; stops (with every open connection) when dropped.
#[derive(Debug)]
pub struct PeerServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PeerServer {
    /// Binds `listen` and serves `swarm` on it.
    ///
    /// # Errors
    /// [`Error::Io`] when the address cannot be bound.
    pub async fn start(
        listen: SocketAddr,
        swarm: Arc<Swarm>,
        max_connections: usize,
    ) -> Result<Self, Error> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Error::io(format!("binding {listen}"), e))?;
        Self::from_listener(listener, swarm, max_connections)
    }

    /// Serves `swarm` on a listener bound earlier (a leech binds first, so that it can
    /// declare its address to the tracker before it knows the content). Connections that
    /// arrived in between wait in the listen backlog.
    ///
    /// # Errors
    /// [`Error::Io`] when the listener's address cannot be read.
    pub fn from_listener(
        listener: TcpListener,
        swarm: Arc<Swarm>,
        max_connections: usize,
    ) -> Result<Self, Error> {
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        let task = tokio::spawn(accept_loop(
            listener,
            swarm,
            max_connections.max(1),
            Role::Peer,
        ));
        Ok(Self { local_addr, task })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// A running player endpoint: the content over plain HTTP with Range support, for a local
/// media player. Stops (with every open connection) when dropped.
#[derive(Debug)]
pub struct PlayerServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PlayerServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PlayerServer {
    /// Serves `swarm` to media players on `listener` (bind it on loopback unless players
    /// on other hosts are meant to reach it).
    ///
    /// # Errors
    /// [`Error::Io`] when the listener's address cannot be read.
    pub fn from_listener(listener: TcpListener, swarm: Arc<Swarm>) -> Result<Self, Error> {
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        let task = tokio::spawn(accept_loop(
            listener,
            swarm,
            DEFAULT_MAX_CONNECTIONS,
            Role::Player,
        ));
        Ok(Self { local_addr, task })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

async fn accept_loop(listener: TcpListener, swarm: Arc<Swarm>, max_connections: usize, role: Role) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let per_address = Arc::new(PerAddress::default());
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Usually running out of file descriptors: back off instead of spinning.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(address_slot) = per_address.try_take(remote.ip(), MAX_CONNECTIONS_PER_ADDRESS)
        else {
            tracing::debug!(%remote, "too many connections from one address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let swarm = Arc::clone(&swarm);
        connections.spawn(async move {
            let _slots = (permit, address_slot);
            let _open = swarm.connection_opened();
            let service = service_fn(move |req| {
                let swarm = Arc::clone(&swarm);
                async move {
                    let response = match role {
                        Role::Peer => handle(&swarm, remote, &req).await,
                        Role::Player => player::handle(&swarm, &req).await,
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(true);
            let result = if role == Role::Peer {
                let mut timed = TimeoutStream::new(stream);
                timed.set_read_timeout(Some(IDLE_TIMEOUT));
                timed.set_write_timeout(Some(WRITE_TIMEOUT));
                builder
                    .serve_connection(TokioIo::new(Box::pin(timed)), service)
                    .await
            } else {
                // A player's response may wait for chunks (or, live, never end), so only
                // the request head is timed.
                builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
            };
            if let Err(err) = result {
                tracing::debug!(%remote, %err, "connection ended with an error");
            }
        });
    }
}

fn text(status: StatusCode, message: &'static str) -> Response<OutBody> {
    let mut response = Response::new(OutBody::full(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn json(value: &impl serde::Serialize) -> Response<OutBody> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(OutBody::full(body));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
    }
}

/// Learns the requester's own endpoint from [`LISTEN_HEADER`]: a port (on the address the
/// request came from) or a full socket address on that same host.
fn announced_endpoint(req: &Request<Incoming>, remote: SocketAddr) -> Option<SocketAddr> {
    let value = req.headers().get(LISTEN_HEADER)?.to_str().ok()?.trim();
    if let Ok(port) = value.parse::<u16>() {
        return (port != 0).then(|| SocketAddr::new(remote.ip(), port));
    }
    // A full address is believed only for the host the request came from, so that no one
    // can make this peer contact third parties.
    let addr: SocketAddr = value.parse().ok()?;
    (addr.port() != 0 && addr.ip().to_canonical() == remote.ip().to_canonical()).then_some(addr)
}

/// Where a peer serves its counters in the Prometheus text format.
pub const METRICS_PATH: &str = "/metrics";

fn metrics(swarm: &Swarm) -> Response<OutBody> {
    let mut response = Response::new(OutBody::full(swarm.prometheus_text()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn handle(
    swarm: &Arc<Swarm>,
    remote: SocketAddr,
    req: &Request<Incoming>,
) -> Response<OutBody> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let path = req.uri().path();
    if path == METRICS_PATH {
        return metrics(swarm);
    }
    let Some(request) = protocol::parse_path(path) else {
        return text(StatusCode::NOT_FOUND, "not a peer protocol request\n");
    };
    let wanted = match &request {
        PeerRequest::Manifest(s)
        | PeerRequest::ChunkMap(s)
        | PeerRequest::Chunk(s, _)
        | PeerRequest::Stats(s) => *s,
    };
    if wanted != swarm.id() {
        return text(StatusCode::NOT_FOUND, "unknown swarm\n");
    }
    let announced = announced_endpoint(req, remote);
    if let Some(endpoint) = announced {
        swarm.remember_inbound(endpoint);
    }
    match request {
        PeerRequest::Manifest(_) => match swarm.manifest_document() {
            Some(doc) => {
                let mut response = Response::new(OutBody::full(doc));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            None => text(StatusCode::SERVICE_UNAVAILABLE, "no manifest yet\n"),
        },
        PeerRequest::ChunkMap(_) => {
            let store = swarm.store();
            if let Some(since) = protocol::since_param(req.uri().query())
                && !store.is_complete()
            {
                store.wait_change(since, protocol::LONG_POLL).await;
            }
            // Read the version first: a change racing with this answer shows up as a newer
            // version on the next request rather than being missed.
            let version = store.version();
            json(&ChunkMapWire::from_map(
                &store.chunk_map(),
                store.is_complete(),
                version,
            ))
        }
        PeerRequest::Stats(_) => json(&swarm.stats()),
        PeerRequest::Chunk(_, index) => {
            serve_chunk(swarm, index, announced.unwrap_or(remote)).await
        }
    }
}

fn busy(message: &'static str) -> Response<OutBody> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Sends chunk `index` to the peer at `peer`, within the upload slots (in total and per
/// address) and the upload rate.
async fn serve_chunk(swarm: &Arc<Swarm>, index: u64, peer: SocketAddr) -> Response<OutBody> {
    if !swarm.store().has(index) {
        return text(StatusCode::NOT_FOUND, "chunk not held\n");
    }
    let Some(per_address) = swarm.upload_slot_for(peer.ip()) else {
        return busy("all upload slots for this address busy\n");
    };
    let Ok(slot) = Arc::clone(swarm.upload_slots()).try_acquire_owned() else {
        return busy("all upload slots busy\n");
    };
    let permit = UploadPermit::new(slot, per_address);
    match swarm.store().get(index).await {
        Ok(Some(mut data)) => {
            if swarm.options().corrupt_uploads && !data.is_empty() {
                let mut bad = data.to_vec();
                bad[0] ^= 0xff;
                data = Bytes::from(bad);
            }
            swarm.pace_upload(data.len() as u64).await;
            swarm.add_uploaded(peer, data.len() as u64);
            let mut response = Response::new(OutBody::with_permit(data, permit));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            response
        }
        Ok(None) => text(StatusCode::NOT_FOUND, "chunk not held\n"),
        // The store has dropped the damaged chunk (and logged it): not held any more.
        Err(err) => {
            tracing::debug!(%err, index, "refusing to serve a chunk");
            text(StatusCode::NOT_FOUND, "chunk not held\n")
        }
    }
}
