//! Client side of the tracker protocol.

/// Errors talking to a tracker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No tracker answered.
    #[error("no tracker reachable")]
    Unreachable,
}
