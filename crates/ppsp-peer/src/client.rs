//! The client side of the peer protocol: persistent HTTP/1.1 connections to other peers.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ppsp_proto::ChunkMap;

use crate::error::Error;
use crate::protocol::{self, ChunkMapWire, LISTEN_HEADER, PEER_ID_HEADER, PeerStats};

/// Why a fetch from a peer did not return the thing asked for.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The peer is out of upload slots (503); ask again later or elsewhere.
    #[error("peer busy")]
    Busy,
    /// The peer does not hold what was asked for (404).
    #[error("not held")]
    NotHeld,
    /// Connection, timeout or protocol failure.
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Another peer's chunk map as it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteMap {
    /// The chunks it holds.
    pub map: ChunkMap,
    /// True when it holds the whole (VoD) content.
    pub complete: bool,
    /// Its store version, to pass as `since` next time.
    pub version: u64,
}

/// A pooled, keep-alive HTTP client for the peer protocol.
#[derive(Clone, Debug)]
pub struct PeerClient {
    http: Client<HttpConnector, Empty<Bytes>>,
    listen: Option<HeaderValue>,
    peer_id: Option<HeaderValue>,
    timeout: Duration,
}

/// Largest metadata document (chunk map, stats) accepted from a peer.
const MAX_SMALL_BODY: usize = 1 << 20;

impl PeerClient {
    /// A client that announces `own_endpoint` (this peer's listen address, or a bare port
    /// to be combined with the address the other side sees) and `peer_id` on every
    /// request, and gives up on any request after `timeout`.
    pub fn new(own_endpoint: Option<&str>, peer_id: Option<&str>, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout.min(Duration::from_secs(5))));
        let http = Client::builder(TokioExecutor::new())
            // Below the servers' 30 s header timeout, so pooled connections are dropped here
            // before a server closes them under a new request.
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(16)
            .build(connector);
        Self {
            http,
            listen: own_endpoint.and_then(|v| HeaderValue::from_str(v).ok()),
            peer_id: peer_id.and_then(|v| HeaderValue::from_str(v).ok()),
            timeout,
        }
    }

    async fn get(&self, addr: SocketAddr, path: &str, limit: usize) -> Result<Bytes, FetchError> {
        let uri: hyper::Uri = format!("http://{addr}{path}")
            .parse()
            .map_err(|_| Error::peer(addr, "unusable address"))?;
        let mut builder = Request::get(uri);
        if let Some(listen) = &self.listen {
            builder = builder.header(LISTEN_HEADER, listen.clone());
        }
        if let Some(id) = &self.peer_id {
            builder = builder.header(PEER_ID_HEADER, id.clone());
        }
        let request = builder
            .body(Empty::new())
            .map_err(|e| Error::peer(addr, e.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| Error::peer(addr, format!("request failed: {e}")))?;
            match response.status() {
                StatusCode::OK => {}
                StatusCode::SERVICE_UNAVAILABLE => return Err(FetchError::Busy),
                StatusCode::NOT_FOUND => return Err(FetchError::NotHeld),
                other => return Err(Error::peer(addr, format!("answered {other}")).into()),
            }
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| Error::peer(addr, format!("reading the body: {e}")))?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::peer(addr, "timed out"))?
    }

    /// The manifest document of `swarm` as `addr` serves it (not yet verified).
    ///
    /// # Errors
    /// [`FetchError`] when it cannot be fetched.
    pub async fn manifest(&self, addr: SocketAddr, swarm: &str) -> Result<Bytes, FetchError> {
        self.get(
            addr,
            &protocol::path(swarm, "manifest"),
            crate::manifest::MAX_MANIFEST_BYTES,
        )
        .await
    }

    /// The chunk map of `swarm` at `addr`. With `since` (a version from an earlier answer)
    /// the peer answers only once its map has changed, or after [`protocol::LONG_POLL`].
    ///
    /// # Errors
    /// [`FetchError`] when it cannot be fetched or decoded.
    pub async fn chunk_map(
        &self,
        addr: SocketAddr,
        swarm: &str,
        since: Option<u64>,
    ) -> Result<RemoteMap, FetchError> {
        let mut path = protocol::path(swarm, "chunkmap");
        if let Some(since) = since {
            path.push_str(&format!("?since={since}"));
        }
        let body = self.get(addr, &path, MAX_SMALL_BODY).await?;
        let wire: ChunkMapWire = serde_json::from_slice(&body)
            .map_err(|e| Error::peer(addr, format!("bad chunk map: {e}")))?;
        let map = wire.to_map(&addr.to_string())?;
        Ok(RemoteMap {
            map,
            complete: wire.complete,
            version: wire.version,
        })
    }

    /// Chunk `index` of `swarm` from `addr` (not yet verified), at most `max_len` bytes.
    ///
    /// # Errors
    /// [`FetchError`] when it cannot be fetched.
    pub async fn chunk(
        &self,
        addr: SocketAddr,
        swarm: &str,
        index: u64,
        max_len: usize,
    ) -> Result<Bytes, FetchError> {
        self.get(
            addr,
            &protocol::path(swarm, &format!("chunk/{index}")),
            max_len,
        )
        .await
    }

    /// The transfer counters `addr` reports for `swarm`.
    ///
    /// # Errors
    /// [`FetchError`] when they cannot be fetched or decoded.
    pub async fn stats(&self, addr: SocketAddr, swarm: &str) -> Result<PeerStats, FetchError> {
        let body = self
            .get(addr, &protocol::path(swarm, "stats"), MAX_SMALL_BODY)
            .await?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::peer(addr, format!("bad stats: {e}")).into())
    }
}
