//! The PPSP tracker core: the protocol's rules over a storage seam, with time and
//! randomness passed in.
//!
//! [`Tracker`] answers every request of both wire formats (the XML draft and RFC 7846 JSON).
//! It validates requests, applies the state table, picks status codes and decides which
//! peers qualify for a list; it does not know how state is kept. State sits behind the
//! [`Store`] trait, whose operations are the atomic transitions the protocol needs
//! (register a session, join, leave, sample peers, apply a report, touch, disconnect,
//! expire, snapshot). [`MemoryStore`] is the default: sharded, compact records, no
//! pointers shared between sessions and memberships. Every operation is `async`, so a
//! networked store fits behind the same trait; for the memory store the futures are ready
//! at once.
//!
//! The core never reads a clock: every call takes a storable [`Timestamp`]. AuthTokens are
//! MACs under a key made from injected randomness (see [`token`]), and peer sampling uses a
//! seeded generator per shard.
//!
//! # Decisions where the specifications leave room
//!
//! * FIND and LEAVE look the swarm up first: an unknown swarm is 404 (JSON: 03), an
//!   existing swarm the peer is not in is 403 for FIND and 200 for LEAVE.
//! * A live session is replaced only by its owner: a CONNECT for its PeerID must carry the
//!   session's AuthToken, or credentials the authenticator verified, or (for a session made
//!   without credentials) come from the same source IP as the session's CONNECT. Anything
//!   else is 403 and leaves the session, its memberships and its token as they were. An
//!   unauthenticated JSON PeerID is bound the same way to the source IP of its first
//!   CONNECT: JSON requests naming it from elsewhere are 403.
//! * A token that does not match, including any XML request for a peer registered over
//!   JSON (which has no token), is 401. A CONNECT that would switch a live registration to
//!   the other dialect is 403, as is any JSON request for a peer registered over XML.
//! * RFC 7846 CONNECT applies LEAVEs before JOINs. From START, any LEAVE makes the whole
//!   request invalid (Table 6). A JOIN is invalid when the peer is already in the swarm,
//!   over the swarm limit, or a LEECH already leeching elsewhere. If no action is valid the
//!   answer is 03 and nothing changes; otherwise each swarm gets its own result.
//! * Answers are kept in a retransmission cache with one byte budget for the whole
//!   tracker, keyed by PeerID, source address and TransactionID: a cached answer is only
//!   replayed to the address whose request caused it.
//! * A peer that declares no address is listed at its observed address and port.
//! * At most [`MAX_DECLARED_ADDRESSES`] declared addresses are kept per peer.
//! * Past a configured cap ([`Limits`]) the request is refused (503 for whole-tracker caps,
//!   403 for caps on one peer or address) and nothing stored changes.

mod auth;
mod contact;
mod error;
mod replay;
pub mod rules;
mod snapshot;
pub mod store;
mod time;
pub mod token;
mod tracker;

pub use ppsp_proto;
pub use ppsp_proto::Format;

pub use auth::{AuthError, Authenticator, OpenAuthenticator};
pub use contact::{Candidate, Contact, MAX_DECLARED_ADDRESSES};
pub use error::{Cap, StoreError, TrackerError};
pub use snapshot::{
    ClipAvailability, PeerDetail, RECENT_COMPLETIONS, SwarmDetail, SwarmPage, SwarmQuery,
    SwarmSummary, Totals, chunk_availability,
};
pub use store::Store;
pub use store::memory::MemoryStore;
pub use time::Timestamp;
pub use tracker::{SessionState, SweepReport, Tracker};

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use ppsp_proto::SwarmId;

/// Runs a future of a tracker on the [`MemoryStore`] to completion on this thread. That
/// store's futures never wait, so polling until ready is enough, and it works inside another
/// future (an authenticator called during [`Tracker::handle`]), where starting a runtime
/// would not. For tests, benchmarks and tools; a server awaits the futures on its runtime,
/// which any store needs.
pub fn block_on_ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}

/// Facts about the HTTP exchange the core needs.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Source address of the request after trusted X-Forwarded-For handling.
    pub observed: SocketAddr,
    /// The wire format the request came in.
    pub format: Format,
    /// True when the channel protects credentials: TLS, or a loopback listener.
    /// SASL PLAIN over a non-secure channel is refused (401) unless the config allows it.
    pub secure_channel: bool,
    /// JSON only: the HTTP layer proved that the request comes from the PeerID it names
    /// (HTTP Digest or a TLS client certificate). An unproven JSON PeerID is bound to the
    /// source address of its first CONNECT.
    pub authenticated: bool,
}

/// Caps on what the tracker stores. Past one, the request is refused and counted; what is
/// already stored is untouched. Defaults are generous: they stop abuse, not growth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Sessions in the whole tracker (default 4,000,000).
    pub max_sessions: usize,
    /// Sessions registered from one IPv4 address or IPv6 /64 (default 4,096).
    pub max_sessions_per_address: u32,
    /// Swarms in the whole tracker (default 1,000,000).
    pub max_swarms: usize,
    /// Chunk-map bytes one membership may keep (default 256 KiB: two million chunks).
    pub max_chunk_map_bytes_per_member: usize,
    /// Chunk-map bytes one session may keep over all its memberships (default 4 MiB).
    pub max_chunk_map_bytes_per_session: usize,
    /// Chunk-map bytes of the whole tracker (default 1 GiB).
    pub max_chunk_map_bytes: u64,
    /// Clips (name and media type) kept per membership (default 32).
    pub max_clips_per_member: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 4_000_000,
            max_sessions_per_address: 4096,
            max_swarms: 1_000_000,
            max_chunk_map_bytes_per_member: 256 << 10,
            max_chunk_map_bytes_per_session: 4 << 20,
            max_chunk_map_bytes: 1 << 30,
            max_clips_per_member: 32,
        }
    }
}

/// Tracker settings. The server maps its TOML configuration onto this.
#[derive(Clone, Debug)]
pub struct Config {
    /// A session with no valid request for this long is removed (default 180 s).
    pub session_idle_timeout: Duration,
    /// Largest JOIN ExpireTime honoured; larger values are clamped (default 86,400 s).
    pub max_expire_time: Duration,
    /// Bytes the retransmission cache may hold for the whole tracker (default 4 MiB, some
    /// 10,000 answers with a peer list of 20, or 25,000 without).
    pub replay_cache_bytes: usize,
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
    /// Caps on stored state.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            session_idle_timeout: Duration::from_secs(180),
            max_expire_time: Duration::from_secs(86_400),
            replay_cache_bytes: 4 << 20,
            replay_cache_ttl: Duration::from_secs(60),
            peer_num_default: 20,
            peer_num_max: 50,
            max_swarms_per_peer: 64,
            reflexive_address: true,
            live_swarms: Vec::new(),
            shards: 16,
            limits: Limits::default(),
        }
    }
}

/// RFC 7846 asks for "less than 30" peers per list.
pub const JSON_PEER_COUNT_MAX: u32 = 29;
