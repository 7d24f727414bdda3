//! The PPSP tracker core: a synchronous state machine with time passed in.
//!
//! [`Tracker`] keeps sessions (one per PeerID), swarms and their members, answers every
//! request of both protocol dialects (the XML draft and RFC 7846 JSON) and expires idle
//! sessions and memberships in [`Tracker::sweep`]. It never reads a clock: every call takes
//! `now`, which keeps the behaviour deterministic under test.
//!
//! State is sharded: sessions by PeerID, swarms by SwarmID, each shard behind its own mutex.
//! A request locks at most its session shard and then one swarm shard at a time (always in
//! that order), so requests for different swarms do not serialise on one lock. The
//! [`Authenticator`] is called with no lock held, because checking a password hash is slow.
//!
//! # Decisions where the specifications leave room
//!
//! * FIND and LEAVE look the swarm up first: an unknown swarm is 404 (JSON: 03), an
//!   existing swarm the peer is not in is 403 for FIND and 200 for LEAVE.
//! * A token that does not match, including any XML request for a peer registered over
//!   JSON (which has no token), is 401. A CONNECT that would switch a live registration to
//!   the other dialect is 403, as is any JSON request for a peer registered over XML.
//! * RFC 7846 CONNECT applies LEAVEs before JOINs. From START, any LEAVE makes the whole
//!   request invalid (Table 6). A JOIN is invalid when the peer is already in the swarm,
//!   over the swarm limit, or a LEECH already leeching elsewhere. If no action is valid the
//!   answer is 03 and nothing changes; otherwise each swarm gets its own result.
//! * Every answer to an authenticated request, errors included, goes into the
//!   retransmission cache; DISCONNECT and a JSON CONNECT that ends the registration take the
//!   cache with the session, so their retransmissions are answered from the new state.
//! * A peer that declares no address is listed at its observed address and port.
//! * At most [`MAX_DECLARED_ADDRESSES`] declared addresses are kept per peer.

mod answer;
mod auth;
mod error;
mod select;
mod session;
mod snapshot;
mod swarm;
mod tracker;

pub use ppsp_proto;

pub use auth::{AuthError, Authenticator, OpenAuthenticator};
pub use error::TrackerError;
pub use session::MAX_DECLARED_ADDRESSES;
pub use snapshot::{ClipAvailability, PeerSnapshot, Snapshot, SwarmSnapshot};
pub use tracker::{SessionState, SweepReport, Tracker};

use std::net::SocketAddr;
use std::time::Duration;

use ppsp_proto::SwarmId;

/// Which wire format a request came in; some rules differ (RFC 7846 has no AuthToken,
/// CONNECT carries swarm actions, error codes differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// The HTTP/XML protocol of the draft.
    Xml,
    /// The HTTP/JSON protocol of RFC 7846.
    Json,
}

/// Facts about the HTTP exchange the core needs.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Source address of the request after trusted X-Forwarded-For handling.
    pub observed: SocketAddr,
    /// The wire format the request came in.
    pub dialect: Dialect,
    /// True when the channel protects credentials: TLS, or a loopback listener.
    /// SASL PLAIN over a non-secure channel is refused (401) unless the config allows it.
    pub secure_channel: bool,
}

/// Tracker settings. The server maps its TOML configuration onto this.
#[derive(Clone, Debug)]
pub struct Config {
    /// A session with no valid request for this long is removed (default 180 s).
    pub session_idle_timeout: Duration,
    /// Largest JOIN ExpireTime honoured; larger values are clamped (default 86,400 s).
    pub max_expire_time: Duration,
    /// How long a replaced AuthToken stays valid (default 30 s). Tokens are not rotated in
    /// this version, so nothing uses it yet.
    pub token_grace: Duration,
    /// Responses remembered per PeerID for retransmissions (default 16).
    pub replay_cache_len: usize,
    /// How long a remembered response is replayed (default 60 s).
    pub replay_cache_ttl: Duration,
    /// Peers returned when the request names no PeerNum (default 20).
    pub peer_num_default: u32,
    /// Most peers ever returned (default 50; JSON requests are also clamped to 29).
    pub peer_num_max: u32,
    /// Most swarms one peer may be in at once (default 64).
    pub max_swarms_per_peer: usize,
    /// Report the observed address back to the peer ("STUN-like" function; default on).
    pub reflexive_address: bool,
    /// Swarms that count as live even without a LIVESEED member.
    pub live_swarms: Vec<SwarmId>,
    /// Number of lock shards for sessions and for swarms (default 16, rounded up to a
    /// power of two).
    pub shards: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            session_idle_timeout: Duration::from_secs(180),
            max_expire_time: Duration::from_secs(86_400),
            token_grace: Duration::from_secs(30),
            replay_cache_len: 16,
            replay_cache_ttl: Duration::from_secs(60),
            peer_num_default: 20,
            peer_num_max: 50,
            max_swarms_per_peer: 64,
            reflexive_address: true,
            live_swarms: Vec::new(),
            shards: 16,
        }
    }
}

/// RFC 7846 asks for "less than 30" peers per list.
pub const JSON_PEER_COUNT_MAX: u32 = 29;
