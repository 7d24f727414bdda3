//! Read-only views of the tracker state for statistics pages and metrics.

use std::time::Instant;

use ppsp_proto::{MediaType, PeerId, PeerMode, SwarmId};

/// A consistent-enough snapshot for `/api/stats`, `/metrics` and the dashboard.
///
/// Each swarm is copied under its own shard lock, so one swarm is internally consistent
/// while different swarms may be a few requests apart.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Live sessions (registered PeerIDs).
    pub sessions: usize,
    /// Every swarm, ordered by SwarmID.
    pub swarms: Vec<SwarmSnapshot>,
    /// Requests handled per method (index = position in [`ppsp_proto::Method::ALL`]).
    pub requests_by_method: [u64; 7],
    /// Responses per status (index = position in [`ppsp_proto::Status::ALL`]).
    pub responses_by_status: [u64; 8],
    /// Sessions removed by the inactivity timer since start.
    pub sessions_expired_total: u64,
}

/// One swarm in a [`Snapshot`].
#[derive(Clone, Debug)]
pub struct SwarmSnapshot {
    /// The swarm.
    pub swarm_id: SwarmId,
    /// True when a LIVESEED is a member or the swarm is configured as live.
    pub live: bool,
    /// Members in SEED mode.
    pub seeds: usize,
    /// Members in LIVESEED mode.
    pub live_seeds: usize,
    /// Members in LEECH mode.
    pub leeches: usize,
    /// Every member, ordered by PeerID.
    pub peers: Vec<PeerSnapshot>,
    /// Per (clip name, media type): the union of reported chunk ranges and how many
    /// distinct chunks at least one peer reported holding.
    pub chunk_availability: Vec<ClipAvailability>,
}

/// One member of a swarm in a [`SwarmSnapshot`].
#[derive(Clone, Debug)]
pub struct PeerSnapshot {
    /// The member.
    pub peer_id: PeerId,
    /// Its mode in the swarm.
    pub mode: PeerMode,
    /// When it joined the swarm (a later re-JOIN keeps the original time).
    pub joined_at: Instant,
    /// From its latest StreamStats report for the swarm; 0 if none.
    pub uploaded_bytes: u64,
    /// From its latest StreamStats report for the swarm; 0 if none.
    pub downloaded_bytes: u64,
    /// From its latest StreamStats report for the swarm; 0 if none.
    pub available_bandwidth: u64,
    /// Chunks its chunk maps for the swarm mark as held.
    pub chunks_held: u64,
    /// Behind a NAT, as reported or inferred; `None` when unknown.
    pub behind_nat: Option<bool>,
    /// Supports STUN-like traversal, as reported; `None` when unknown.
    pub stun: Option<bool>,
}

/// Chunk availability of one clip and media type in a [`SwarmSnapshot`].
#[derive(Clone, Debug)]
pub struct ClipAvailability {
    /// Clip name.
    pub clip: String,
    /// Media type.
    pub media: MediaType,
    /// Lowest chunk of any reported range.
    pub first: u64,
    /// Highest chunk of any reported range.
    pub last: u64,
    /// Distinct chunks at least one member reported holding.
    pub chunks_available: u64,
}
