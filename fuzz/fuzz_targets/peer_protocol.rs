//! Feeds arbitrary text to the peer protocol's parsers: request paths, the `since` query
//! parameter and the JSON chunk map a neighbour serves.
//!
//! Invariants: nothing panics; a parsed chunk path is rebuilt by `path` into a path that
//! parses to the same request; a chunk map that decodes re-encodes to the same wire form
//! (bar the base64 spelling, which is canonicalised) and decodes again to the same map.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ppsp_peer::protocol::{ChunkMapWire, PeerRequest, parse_path, path, since_param};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_path(&text) {
        Some(PeerRequest::Chunk(swarm, n)) => {
            let rebuilt = path(swarm, &format!("chunk/{n}"));
            assert_eq!(parse_path(&rebuilt), Some(PeerRequest::Chunk(swarm, n)));
        }
        Some(PeerRequest::Manifest(swarm)) => {
            assert_eq!(
                parse_path(&path(swarm, "manifest")),
                Some(PeerRequest::Manifest(swarm))
            );
        }
        Some(PeerRequest::ChunkMap(swarm)) => {
            assert_eq!(
                parse_path(&path(swarm, "chunkmap")),
                Some(PeerRequest::ChunkMap(swarm))
            );
        }
        Some(PeerRequest::Stats(swarm)) => {
            assert_eq!(
                parse_path(&path(swarm, "stats")),
                Some(PeerRequest::Stats(swarm))
            );
        }
        None => {}
    }
    if let Some(version) = since_param(Some(&text)) {
        assert_eq!(
            since_param(Some(&format!("since={version}"))),
            Some(version)
        );
    }
    if let Ok(wire) = serde_json::from_slice::<ChunkMapWire>(data)
        && let Ok(map) = wire.to_map("fuzz")
    {
        let again = ChunkMapWire::from_map(&map, wire.complete, wire.version);
        assert_eq!((again.first, again.len), (wire.first, wire.len));
        assert_eq!(again.to_map("fuzz").expect("own wire form decodes"), map);
    }
});
