//! The peer protocol: plain HTTP/1.1 between peers.
//!
//! | request | answer |
//! |---|---|
//! | `GET /ppsp/v1/{swarm}/manifest` | the manifest: canonical JSON (VoD) or the signed envelope (live) |
//! | `GET /ppsp/v1/{swarm}/chunkmap[?since=V]` | JSON [`ChunkMapWire`]: which chunks the peer holds; with `since`, held until the map's version differs from `V` (at most [`LONG_POLL`]) |
//! | `GET /ppsp/v1/{swarm}/chunk/{n}` | the bytes of chunk `n`; `404` when not held, `503` with `Retry-After` when every upload slot is busy |
//! | `GET /ppsp/v1/{swarm}/stats` | JSON [`PeerStats`]: the peer's own transfer counters |
//!
//! A requesting peer names its own peer endpoint in the [`LISTEN_HEADER`] header (its
//! listen port, or a full `host:port`), so that the answering peer learns of it and can
//! fetch from it in turn, without waiting for the tracker.

use ppsp_proto::ChunkMap;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Path prefix of the peer protocol.
pub const PREFIX: &str = "/ppsp/v1/";
/// Request header in which a peer names its own peer endpoint.
pub const LISTEN_HEADER: &str = "ppsp-listen";
/// Request header carrying the requesting peer's PeerID.
pub const PEER_ID_HEADER: &str = "ppsp-peer-id";
/// Longest a `chunkmap?since=V` request is held open waiting for a change. This long
/// poll is the have-notification scheme: a peer learns of a neighbour's new chunk as soon
/// as it is stored, without polling in a tight loop.
pub const LONG_POLL: std::time::Duration = std::time::Duration::from_secs(5);
/// Largest chunk map accepted from a peer, in bits.
pub const MAX_MAP_BITS: u64 = crate::manifest::MAX_CHUNKS;

/// What a peer-protocol path asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerRequest<'a> {
    /// The manifest of the swarm.
    Manifest(&'a str),
    /// The chunk map of the swarm.
    ChunkMap(&'a str),
    /// One chunk.
    Chunk(&'a str, u64),
    /// Transfer counters.
    Stats(&'a str),
}

/// The `since` parameter of a query string, if present and numeric.
pub fn since_param(query: Option<&str>) -> Option<u64> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("since="))
        .and_then(|v| v.parse().ok())
}

/// Parses a request path; `None` when it is not a peer-protocol path.
pub fn parse_path(path: &str) -> Option<PeerRequest<'_>> {
    let rest = path.strip_prefix(PREFIX)?;
    let (swarm, what) = rest.split_once('/')?;
    if swarm.is_empty() {
        return None;
    }
    match what {
        "manifest" => Some(PeerRequest::Manifest(swarm)),
        "chunkmap" => Some(PeerRequest::ChunkMap(swarm)),
        "stats" => Some(PeerRequest::Stats(swarm)),
        _ => {
            let n = what.strip_prefix("chunk/")?;
            // Only plain decimal digits: no sign, no spaces.
            if n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n.parse().ok().map(|n| PeerRequest::Chunk(swarm, n))
        }
    }
}

/// The path of a request for `swarm`.
pub fn path(swarm: &str, what: &str) -> String {
    format!("{PREFIX}{swarm}/{what}")
}

/// A chunk map as JSON: `{"first":0,"len":256,"map":"base64","complete":true}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkMapWire {
    /// First chunk the bitmap covers.
    pub first: u64,
    /// Number of chunks covered.
    pub len: u64,
    /// MSB-first bitmap, standard base64 (as in the tracker protocol's ChunkMap).
    pub map: String,
    /// True when the peer holds the whole (VoD) content.
    pub complete: bool,
    /// Version of the peer's store; changes whenever a chunk (or live manifest) arrives.
    #[serde(default)]
    pub version: u64,
}

impl ChunkMapWire {
    /// The wire form of `map`.
    pub fn from_map(map: &ChunkMap, complete: bool, version: u64) -> Self {
        Self {
            first: map.first(),
            len: map.len(),
            map: map.to_base64(),
            complete,
            version,
        }
    }

    /// Decodes the bitmap.
    ///
    /// # Errors
    /// [`Error::PeerProtocol`] when it is malformed or too large.
    pub fn to_map(&self, peer: &str) -> Result<ChunkMap, Error> {
        ChunkMap::from_base64(self.first, self.len, &self.map, MAX_MAP_BITS)
            .map_err(|e| Error::peer(peer, format!("bad chunk map: {e}")))
    }
}

/// A peer's own transfer counters, served at `/ppsp/v1/{swarm}/stats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's PeerID.
    pub peer_id: String,
    /// The swarm.
    pub swarm_id: String,
    /// Chunk bytes sent to other peers.
    pub uploaded_bytes: u64,
    /// Chunk bytes received from other peers.
    pub downloaded_bytes: u64,
    /// Chunks held.
    pub chunks_held: u64,
    /// Chunks the content has (VoD), or the live edge.
    pub chunks_total: u64,
    /// Peers currently known.
    pub peers_known: u64,
    /// Peers dropped for sending corrupt chunks.
    pub peers_banned: u64,
    /// Chunks received that failed verification.
    pub corrupt_chunks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        assert_eq!(
            parse_path(&path("abc", "manifest")),
            Some(PeerRequest::Manifest("abc"))
        );
        assert_eq!(
            parse_path(&path("abc", "chunkmap")),
            Some(PeerRequest::ChunkMap("abc"))
        );
        assert_eq!(
            parse_path(&path("abc", "chunk/17")),
            Some(PeerRequest::Chunk("abc", 17))
        );
        assert_eq!(
            parse_path(&path("abc", "stats")),
            Some(PeerRequest::Stats("abc"))
        );
        assert_eq!(parse_path("/ppsp/v1/abc/chunk/-1"), None);
        assert_eq!(parse_path("/ppsp/v1/abc/chunk/"), None);
        assert_eq!(
            parse_path("/ppsp/v1/abc/chunk/99999999999999999999999"),
            None
        );
        assert_eq!(parse_path("/ppsp/v1//manifest"), None);
        assert_eq!(parse_path("/other"), None);
        assert_eq!(since_param(Some("since=12")), Some(12));
        assert_eq!(since_param(Some("a=1&since=7")), Some(7));
        assert_eq!(since_param(Some("since=x")), None);
        assert_eq!(since_param(None), None);
    }

    #[test]
    fn chunk_map_wire() {
        let mut map = ChunkMap::new(0, 25);
        map.insert(3);
        map.insert(24);
        let wire = ChunkMapWire::from_map(&map, false, 3);
        let json = serde_json::to_string(&wire).expect("json");
        let back: ChunkMapWire = serde_json::from_str(&json).expect("parses");
        assert_eq!(back.to_map("p").expect("map"), map);
        let bad = ChunkMapWire {
            len: 1 << 40,
            ..wire
        };
        assert!(bad.to_map("p").is_err());
    }
}
