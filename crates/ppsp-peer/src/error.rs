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
    /// A manifest could not be built, decoded or verified.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A chunk's content does not match the hash its manifest lists.
    #[error("chunk {index} does not match its hash")]
    CorruptChunk {
        /// Index of the chunk.
        index: u64,
    },
    /// Another peer answered something unusable over the peer protocol.
    #[error("peer {peer}: {reason}")]
    PeerProtocol {
        /// Address of the remote peer.
        peer: String,
        /// What went wrong.
        reason: String,
    },
    /// An argument or setting is unusable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The content could not be obtained from the swarm.
    #[error("swarm: {0}")]
    Swarm(String),
    /// The output file exists and is not the swarm's content (nor its partial download);
    /// it is replaced only when overwriting was asked for.
    #[error("{} exists and is not this swarm's content; it is only replaced when overwriting is asked for", path.display())]
    OutputExists {
        /// The existing file.
        path: std::path::PathBuf,
    },
    /// The caller stopped the peer (Ctrl-C, SIGTERM) before it had joined the swarm.
    #[error("interrupted while joining the swarm")]
    Interrupted,
}

impl Error {
    /// An [`Error::Io`] with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::PeerProtocol`] for the peer at `peer`.
    pub fn peer(peer: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Self::PeerProtocol {
            peer: peer.to_string(),
            reason: reason.into(),
        }
    }
}
