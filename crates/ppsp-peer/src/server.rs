//! The peer's HTTP server: the peer protocol for other peers and the player endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

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

use crate::body::OutBody;
use crate::error::Error;
use crate::player;
use crate::protocol::{self, ChunkMapWire, LISTEN_HEADER, PeerRequest};
use crate::swarm::Swarm;

/// Longest time a request head may take to arrive.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Default bound on simultaneous connections to one peer.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// A running peer server; stops (with every open connection) when dropped.
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
        let task = tokio::spawn(accept_loop(listener, swarm, max_connections.max(1)));
        Ok(Self { local_addr, task })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

async fn accept_loop(listener: TcpListener, swarm: Arc<Swarm>, max_connections: usize) {
    let slots = Arc::new(Semaphore::new(max_connections));
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
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let swarm = Arc::clone(&swarm);
        connections.spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let swarm = Arc::clone(&swarm);
                async move { Ok::<_, Infallible>(handle(&swarm, remote, &req).await) }
            });
            // Idle keep-alive connections are fine (peers reuse them), but a request head
            // must arrive promptly, so slow clients cannot pin connection slots.
            if let Err(err) = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
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

async fn handle(
    swarm: &Arc<Swarm>,
    remote: SocketAddr,
    req: &Request<Incoming>,
) -> Response<OutBody> {
    let path = req.uri().path();
    // The player endpoint: everything outside the peer protocol (its own methods and CORS).
    if !path.starts_with(protocol::PREFIX) {
        return player::handle(swarm, req).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let Some(request) = protocol::parse_path(path) else {
        return text(StatusCode::NOT_FOUND, "unknown peer protocol request\n");
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
    if let Some(endpoint) = announced_endpoint(req, remote) {
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
        PeerRequest::Chunk(_, index) => serve_chunk(swarm, index).await,
    }
}

async fn serve_chunk(swarm: &Arc<Swarm>, index: u64) -> Response<OutBody> {
    if !swarm.store().has(index) {
        return text(StatusCode::NOT_FOUND, "chunk not held\n");
    }
    let Ok(permit) = Arc::clone(swarm.upload_slots()).try_acquire_owned() else {
        let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "all upload slots busy\n");
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    match swarm.store().get(index).await {
        Ok(Some(mut data)) => {
            if swarm.options().corrupt_uploads && !data.is_empty() {
                let mut bad = data.to_vec();
                bad[0] ^= 0xff;
                data = Bytes::from(bad);
            }
            swarm.pace_upload(data.len() as u64).await;
            swarm.add_uploaded(data.len() as u64);
            let mut response = Response::new(OutBody::with_permit(data, permit));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            response
        }
        Ok(None) => text(StatusCode::NOT_FOUND, "chunk not held\n"),
        Err(err) => {
            tracing::error!(%err, index, "refusing to serve a chunk");
            text(StatusCode::INTERNAL_SERVER_ERROR, "chunk unreadable\n")
        }
    }
}
