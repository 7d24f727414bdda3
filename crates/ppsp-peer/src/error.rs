//! The peer crate's error type.

use crate::tracker_client::ClientError;

/// Everything that can go wrong in a peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Talking to the tracker failed.
    #[error(transparent)]
    Tracker(#[from] ClientError),
    /// A local file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
