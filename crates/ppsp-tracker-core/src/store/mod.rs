//! The storage seam: the state transitions the protocol needs, each atomic.
//!
//! A [`Store`] keeps sessions (one per PeerID) and swarms (members with their mode,
//! deadlines, chunk maps and statistics). Each operation is one atomic transition: a
//! networked backend can run it as one script. Operations take the time and the limits
//! they need as arguments and return typed refusals ([`TrackerError`]); the core decides
//! what a request means, the store only keeps state consistent.
//!
//! The futures are `Send`, so a store that talks to a server fits; the in-memory store's
//! futures are ready at once.

pub mod memory;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use ppsp_proto::{
    AbilityNat, ChunkSet, Clip, Format, MediaType, NatHints, PeerAddress, PeerId, PeerMode,
    StatReport, SwarmAction, SwarmId,
};

use crate::rules::Criteria;
use crate::snapshot::{SwarmDetail, SwarmPage, SwarmQuery, Totals};
use crate::tracker::{SessionState, SweepReport};
use crate::{Candidate, Timestamp, TrackerError};

/// A reported chunk map of one clip and media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipChunks {
    /// Clip name.
    pub clip: Box<str>,
    /// Media type.
    pub media: MediaType,
    /// The chunks reported held.
    pub chunks: ChunkSet,
}

/// What identifies the session a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionCheck {
    /// XML: the session generation named by a verified AuthToken.
    Generation(u32),
    /// JSON: a session registered over JSON (RFC 7846 has no token). `source` is the
    /// request's IP when the HTTP layer did not prove the PeerID: the session must have been
    /// registered from it.
    Json {
        /// The source IP an unproven request must share with the session.
        source: Option<IpAddr>,
    },
}

/// What a CONNECT proves about its right to replace a live session of its PeerID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// Nothing beyond its source address: it may replace a session registered from the
    /// same IP (the same host, or a host behind the same NAT).
    SourceAddress,
    /// The AuthToken of the session with this generation.
    Token(u32),
    /// Credentials the authenticator verified (an account's password, HTTP Digest, a client
    /// certificate).
    Credentials,
}

/// A request's claim on a session: the PeerID and how it proves it.
#[derive(Clone, Copy, Debug)]
pub struct SessionKey<'a> {
    /// The requester.
    pub peer_id: &'a PeerId,
    /// How the request is tied to the session.
    pub check: SessionCheck,
}

/// A new session to register (XML CONNECT, or JSON CONNECT from START).
#[derive(Clone, Debug)]
pub struct Registration<'a> {
    /// The peer.
    pub peer_id: &'a PeerId,
    /// The format it speaks.
    pub format: Format,
    /// Where its request came from.
    pub observed: SocketAddr,
    /// Addresses it declared (at most [`crate::MAX_DECLARED_ADDRESSES`] are kept).
    pub declared: &'a [PeerAddress],
    /// RFC 7846 `ability_nat`.
    pub ability_nat: Option<AbilityNat>,
    /// What the request proves about owning a live session of the PeerID.
    pub proof: Proof,
}

/// A JOIN to apply.
#[derive(Clone, Debug)]
pub struct JoinSpec<'a> {
    /// The swarm.
    pub swarm_id: &'a SwarmId,
    /// The mode to join in.
    pub mode: PeerMode,
    /// When the membership ends by itself, if it does.
    pub deadline: Option<Timestamp>,
    /// The start point declared at JOIN.
    pub start: Option<&'a Clip>,
    /// NAT hints carried by the request, merged into the session first.
    pub hints: NatHints,
}

/// The outcome of an RFC 7846 CONNECT.
#[derive(Clone, Debug, Default)]
pub struct SwarmActionsOutcome {
    /// Per action of the request, in order: valid or not, and its peer list.
    pub results: Vec<(bool, Vec<Candidate>)>,
    /// True when the peer left its last swarm and the registration ended.
    pub ended: bool,
}

/// Settings a store needs for its operations, taken from the tracker [`crate::Config`].
#[derive(Clone, Debug)]
pub struct StorePolicy {
    /// Inactivity timeout of sessions.
    pub session_idle_timeout: std::time::Duration,
    /// Most swarms one session may be in.
    pub max_swarms_per_peer: usize,
    /// Caps.
    pub limits: crate::Limits,
    /// Swarms configured live.
    pub live_swarms: Vec<SwarmId>,
}

/// Where the tracker keeps its state. See the module documentation.
pub trait Store: Send + Sync + 'static {
    /// Registers a new session for an XML CONNECT, replacing a live XML session of the
    /// same PeerID (as if it had sent DISCONNECT) when the registration's [`Proof`] shows it
    /// is the session's owner. Returns the new generation.
    ///
    /// # Errors
    /// [`TrackerError::DialectMismatch`] when a live JSON session holds the PeerID;
    /// [`TrackerError::SessionOwned`] when the proof does not cover the live session
    /// (nothing changes); [`TrackerError::OverCap`] past the session caps.
    fn register(
        &self,
        now: Timestamp,
        registration: &Registration<'_>,
    ) -> impl Future<Output = Result<u32, TrackerError>> + Send;

    /// Checks that the session is live and matches, and keeps it alive (KEEPALIVE).
    ///
    /// # Errors
    /// [`TrackerError::BadToken`] (XML) or [`TrackerError::NotRegistered`] (JSON) when there is
    /// no such live session; [`TrackerError::DialectMismatch`] for a JSON request to an XML
    /// session.
    fn touch(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
    ) -> impl Future<Output = Result<(), TrackerError>> + Send;

    /// Ends the session and all its memberships.
    ///
    /// # Errors
    /// As for [`Store::touch`].
    fn disconnect(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
    ) -> impl Future<Output = Result<(), TrackerError>> + Send;

    /// Inserts or updates a membership (chunk maps, statistics and join time of an existing
    /// one are kept) and returns a peer list by `criteria`.
    ///
    /// # Errors
    /// As for [`Store::touch`]; [`TrackerError::TooManySwarms`]; [`TrackerError::OverCap`].
    fn join(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        join: &JoinSpec<'_>,
        criteria: &Criteria,
    ) -> impl Future<Output = Result<Vec<Candidate>, TrackerError>> + Send;

    /// Removes a membership; idempotent for an existing swarm the peer is not in.
    ///
    /// # Errors
    /// As for [`Store::touch`]; [`TrackerError::UnknownSwarm`] when the peer is not in the
    /// swarm and the swarm does not exist.
    fn leave(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        swarm_id: &SwarmId,
    ) -> impl Future<Output = Result<(), TrackerError>> + Send;

    /// A peer list of a swarm the requester is in.
    ///
    /// # Errors
    /// As for [`Store::touch`]; [`TrackerError::UnknownSwarm`], [`TrackerError::NotMember`],
    /// [`TrackerError::NoChunkHolder`] (see [`Criteria::empty_is_not_found`]).
    fn find(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        swarm_id: &SwarmId,
        hints: NatHints,
        criteria: &Criteria,
    ) -> impl Future<Output = Result<Vec<Candidate>, TrackerError>> + Send;

    /// Applies a STAT_REPORT: chunk maps and statistics of swarms the peer is in (others are
    /// ignored: a JOIN and a report may cross), and NAT hints. Returns, per StreamStats
    /// entry with a SwarmID, whether it was stored.
    ///
    /// # Errors
    /// As for [`Store::touch`]; [`TrackerError::OverCap`] when a chunk map would pass a cap
    /// (nothing of the report is applied then).
    fn report(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        report: &StatReport,
    ) -> impl Future<Output = Result<Vec<(SwarmId, bool)>, TrackerError>> + Send;

    /// Applies the swarm actions of an RFC 7846 CONNECT by [`crate::rules::plan_swarm_actions`],
    /// registering the peer from START and ending the registration when it leaves its
    /// last swarm. `criteria(i)` gives the peer list wanted for action `i`.
    ///
    /// # Errors
    /// [`TrackerError::DialectMismatch`] for a live XML session,
    /// [`TrackerError::NoValidSwarmAction`] when no action is valid (nothing changes),
    /// [`TrackerError::OverCap`].
    fn swarm_actions(
        &self,
        now: Timestamp,
        registration: &Registration<'_>,
        actions: &[SwarmAction],
        criteria: &(dyn Fn(&SwarmAction) -> Criteria + Sync),
    ) -> impl Future<Output = Result<SwarmActionsOutcome, TrackerError>> + Send;

    /// Removes idle sessions and memberships whose deadline passed.
    ///
    /// # Errors
    /// [`TrackerError::Store`] when the store cannot be reached.
    fn expire(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<SweepReport, TrackerError>> + Send;

    /// Where `peer_id`'s session stands at `now`.
    ///
    /// # Errors
    /// [`TrackerError::Store`] when the store cannot be reached.
    fn session_state(
        &self,
        now: Timestamp,
        peer_id: &PeerId,
    ) -> impl Future<Output = Result<Option<SessionState>, TrackerError>> + Send;

    /// Counts over the whole state, from counters (cheap).
    ///
    /// # Errors
    /// [`TrackerError::Store`] when the store cannot be reached.
    fn totals(&self) -> impl Future<Output = Result<Totals, TrackerError>> + Send;

    /// A page of swarm summaries, largest first.
    ///
    /// # Errors
    /// [`TrackerError::Store`] when the store cannot be reached.
    fn swarms(
        &self,
        now: Timestamp,
        query: &SwarmQuery,
    ) -> impl Future<Output = Result<SwarmPage, TrackerError>> + Send;

    /// One swarm with a page of its members.
    ///
    /// # Errors
    /// [`TrackerError::Store`] when the store cannot be reached.
    fn swarm(
        &self,
        now: Timestamp,
        swarm_id: &SwarmId,
        offset: usize,
        limit: usize,
    ) -> impl Future<Output = Result<Option<SwarmDetail>, TrackerError>> + Send;
}
