//! The core's error type.

use ppsp_proto::Status;

use crate::auth::AuthError;

/// A limit past which the tracker refuses to store more (see [`crate::Limits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cap {
    /// Sessions in the whole tracker.
    Sessions,
    /// Sessions registered from one source address (IPv4 address or IPv6 /64).
    SessionsPerAddress,
    /// Swarms in the whole tracker.
    Swarms,
    /// Chunk-map memory of the whole tracker.
    ChunkMapBytes,
    /// Chunk-map memory of one membership.
    ChunkMapBytesPerMember,
    /// Chunk-map memory of one session, over all its memberships.
    ChunkMapBytesPerSession,
}

impl Cap {
    /// Every cap, in the order of metric labels.
    pub const ALL: [Self; 6] = [
        Self::Sessions,
        Self::SessionsPerAddress,
        Self::Swarms,
        Self::ChunkMapBytes,
        Self::ChunkMapBytesPerMember,
        Self::ChunkMapBytesPerSession,
    ];

    /// A stable name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sessions => "sessions",
            Self::SessionsPerAddress => "sessions_per_address",
            Self::Swarms => "swarms",
            Self::ChunkMapBytes => "chunk_map_bytes",
            Self::ChunkMapBytesPerMember => "chunk_map_bytes_per_member",
            Self::ChunkMapBytesPerSession => "chunk_map_bytes_per_session",
        }
    }

    /// Whole-tracker caps are a lack of capacity (503, try later); caps on one peer or
    /// address are policy (403, the same request will not succeed later either).
    pub fn is_capacity(self) -> bool {
        matches!(self, Self::Sessions | Self::Swarms | Self::ChunkMapBytes)
    }
}

/// Why a state store could not serve a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer in time or the connection to it is down.
    #[error("state store {address} unavailable")]
    Unavailable {
        /// The store's address as configured.
        address: String,
    },
    /// The store answered with something the tracker cannot read.
    #[error("state store {address} returned malformed data for {what}")]
    Malformed {
        /// The store's address as configured.
        address: String,
        /// Which record.
        what: &'static str,
    },
}

/// Why the tracker refused a request. Each variant maps to one protocol [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// The request is not valid for its method or dialect (for example an XML CONNECT
    /// without SASL data, or a JSON CONNECT without swarm actions).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// A TransactionID was reused for a different request.
    #[error("transaction ID reused for a different request")]
    TransactionIdReused,
    /// CONNECT credentials were refused.
    #[error("authentication failed: {0}")]
    Authentication(#[from] AuthError),
    /// No live session matches the PeerID and AuthToken.
    #[error("unknown, expired or mismatched AuthToken")]
    BadToken,
    /// A JSON FIND or STAT_REPORT from a peer ID that is not registered.
    #[error("peer is not registered")]
    NotRegistered,
    /// A live session of the PeerID belongs to someone who has not been proven to be the
    /// requester (no current AuthToken, no verified credentials, another source address).
    #[error("the PeerID has a live session of another owner")]
    SessionOwned,
    /// The peer registered in one dialect and spoke the other.
    #[error("peer registered in the other protocol dialect")]
    DialectMismatch,
    /// The request needs membership of a swarm the peer is not in.
    #[error("peer is not a member of the swarm")]
    NotMember,
    /// JOIN would take the peer over the per-peer swarm limit.
    #[error("too many swarms for one peer")]
    TooManySwarms,
    /// No swarm action of a JSON CONNECT was valid.
    #[error("no valid swarm action")]
    NoValidSwarmAction,
    /// The swarm does not exist.
    #[error("unknown swarm")]
    UnknownSwarm,
    /// A chunk-scoped FIND found nobody holding any of the chunks.
    #[error("no peer holds the requested chunks")]
    NoChunkHolder,
    /// A configured limit was reached; nothing stored was changed.
    #[error("limit reached: {}", .0.as_str())]
    OverCap(Cap),
    /// The state store could not serve the request.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An internal step failed that should not (no token could be made).
    #[error("internal error")]
    Internal,
}

impl TrackerError {
    /// The protocol status the error is answered with.
    pub fn status(&self) -> Status {
        match self {
            Self::InvalidRequest(_) | Self::TransactionIdReused => Status::InvalidSyntax,
            Self::Authentication(_) | Self::BadToken => Status::AuthenticationRequired,
            Self::NotRegistered
            | Self::DialectMismatch
            | Self::SessionOwned
            | Self::NotMember
            | Self::TooManySwarms
            | Self::NoValidSwarmAction => Status::MessageForbidden,
            Self::OverCap(cap) if !cap.is_capacity() => Status::MessageForbidden,
            Self::OverCap(_) | Self::Store(_) => Status::TemporarilyOverloaded,
            Self::UnknownSwarm | Self::NoChunkHolder => Status::ObjectNotFound,
            Self::Internal => Status::InternalError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_status() {
        let cases = [
            (TrackerError::InvalidRequest("x"), Status::InvalidSyntax),
            (TrackerError::TransactionIdReused, Status::InvalidSyntax),
            (
                TrackerError::Authentication(AuthError::BadCredentials),
                Status::AuthenticationRequired,
            ),
            (TrackerError::BadToken, Status::AuthenticationRequired),
            (TrackerError::NotRegistered, Status::MessageForbidden),
            (TrackerError::DialectMismatch, Status::MessageForbidden),
            (TrackerError::SessionOwned, Status::MessageForbidden),
            (TrackerError::NotMember, Status::MessageForbidden),
            (TrackerError::TooManySwarms, Status::MessageForbidden),
            (TrackerError::NoValidSwarmAction, Status::MessageForbidden),
            (TrackerError::UnknownSwarm, Status::ObjectNotFound),
            (TrackerError::NoChunkHolder, Status::ObjectNotFound),
            (
                TrackerError::OverCap(Cap::Sessions),
                Status::TemporarilyOverloaded,
            ),
            (
                TrackerError::OverCap(Cap::SessionsPerAddress),
                Status::MessageForbidden,
            ),
            (
                TrackerError::OverCap(Cap::ChunkMapBytesPerMember),
                Status::MessageForbidden,
            ),
            (
                TrackerError::Store(StoreError::Unavailable {
                    address: "x".into(),
                }),
                Status::TemporarilyOverloaded,
            ),
            (TrackerError::Internal, Status::InternalError),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error}");
        }
    }
}
