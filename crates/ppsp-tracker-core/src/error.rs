//! The core's error type.

use ppsp_proto::Status;

use crate::auth::AuthError;

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
}

impl TrackerError {
    /// The protocol status the error is answered with.
    pub fn status(&self) -> Status {
        match self {
            Self::InvalidRequest(_) | Self::TransactionIdReused => Status::InvalidSyntax,
            Self::Authentication(_) | Self::BadToken => Status::AuthenticationRequired,
            Self::NotRegistered
            | Self::DialectMismatch
            | Self::NotMember
            | Self::TooManySwarms
            | Self::NoValidSwarmAction => Status::MessageForbidden,
            Self::UnknownSwarm | Self::NoChunkHolder => Status::ObjectNotFound,
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
            (TrackerError::NotMember, Status::MessageForbidden),
            (TrackerError::TooManySwarms, Status::MessageForbidden),
            (TrackerError::NoValidSwarmAction, Status::MessageForbidden),
            (TrackerError::UnknownSwarm, Status::ObjectNotFound),
            (TrackerError::NoChunkHolder, Status::ObjectNotFound),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error}");
        }
    }
}
