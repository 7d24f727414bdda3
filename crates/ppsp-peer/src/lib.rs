//! The PPSP peer: talks to trackers, exchanges verified chunks with other peers, and serves
//! content to a local media player.
//!
//! * [`link`]: share links (`ppsp:` URIs with swarm ID and trackers).
//! * [`manifest`]: what a swarm carries (VoD manifests, signed live manifests), swarm IDs.
//! * [`store`]: verified chunk storage.
//! * [`protocol`], [`server`], [`client`]: the HTTP peer protocol.
//! * [`picker`]: which chunk to ask for next; [`engine`]: the downloader that asks.
//! * [`player`]: the local endpoint for a media player; [`ts`]: where a live MPEG-TS
//!   viewer can start; [`hls`], [`hls_live`]: live HLS (the signed index, the playlists
//!   viewers serve, the source that publishes an encoder's output).
//! * [`swarm`]: state shared by the pieces above.
//! * [`tracker_client`], [`nat`]: the tracker side.
//! * [`node`]: a whole peer (seed, live source or leech) built from all of the above.

mod body;
pub mod client;
pub mod engine;
pub mod error;
pub mod hls;
pub mod hls_live;
mod limit;
pub mod link;
pub mod manifest;
pub mod nat;
pub mod node;
pub mod picker;
pub mod player;
pub mod protocol;
pub mod server;
pub mod store;
pub mod swarm;
pub mod tracker_client;
pub mod ts;

pub use error::Error;

/// A random 64-bit value from the operating system's generator (tie-breaking salts,
/// PeerIDs, scratch file names).
pub(crate) fn random_u64() -> u64 {
    use rand::{Rng as _, SeedableRng as _};
    rand::rngs::StdRng::from_os_rng().random()
}

/// A fresh random PeerID: 32 hex digits.
pub fn random_peer_id() -> ppsp_proto::PeerId {
    let text = format!("{:016x}{:016x}", random_u64(), random_u64());
    #[allow(clippy::expect_used)]
    ppsp_proto::PeerId::new(text).expect("32 hex digits are a valid PeerID")
}
