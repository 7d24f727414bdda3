//! Decoding errors and the limits enforced while parsing.

use crate::model::{Status, TransactionId};

/// Limits enforced while decoding, so that hostile input costs bounded time and memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted, in bytes (default 1 MiB, draft-gu-ppsp-tracker-protocol-06).
    pub max_body_bytes: usize,
    /// Deepest element or value nesting accepted (default 16; real messages need 8).
    pub max_depth: usize,
    /// Most entries in any one list: addresses, peers, stats, segments, swarm actions
    /// (default 1024).
    pub max_list_len: usize,
    /// Most bits in one chunk map segment (default 1,048,576, draft-gu-ppsp-tracker-protocol-06).
    pub max_bitmap_bits: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_depth: 16,
            max_list_len: 1024,
            max_bitmap_bits: 1 << 20,
        }
    }
}

/// What was wrong with a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The body is not well-formed XML or JSON, or is not UTF-8.
    #[error("malformed document: {0}")]
    Malformed(String),
    /// The XML document has a DOCTYPE (entity declarations are never expanded).
    #[error("DOCTYPE and entity declarations are not allowed")]
    DoctypeForbidden,
    /// The root element or member is not `PPSPTrackerProtocol`.
    #[error("root must be PPSPTrackerProtocol, found {0}")]
    WrongRoot(String),
    /// The version is missing or not a number.
    #[error("version missing or unparsable")]
    BadVersion,
    /// The version's major number is not one we implement.
    #[error("version {0} not supported")]
    UnsupportedVersion(String),
    /// Both a Method and a Response element are present.
    #[error("both request and response direction present")]
    BothDirections,
    /// Neither a Method nor a Response element is present.
    #[error("neither request nor response direction present")]
    NoDirection,
    /// The method or request type is not one this protocol has.
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// A mandatory element or member is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// An element that may appear once appears more than once.
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// A value breaks its type's rules.
    #[error("invalid {field}: {reason}")]
    InvalidValue {
        /// The element, attribute or member.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The body is larger than [`Limits::max_body_bytes`].
    #[error("body of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Actual size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("nesting deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A list longer than [`Limits::max_list_len`].
    #[error("more than {limit} {what}")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A chunk map with more bits than [`Limits::max_bitmap_bits`], or whose size does not
    /// match its range.
    #[error("chunk map: {0}")]
    ChunkMap(&'static str),
    /// Base64 text that does not decode.
    #[error("invalid base64 in {0}")]
    InvalidBase64(&'static str),
}

/// A message that could not be decoded, with the PPSP status it maps to.
///
/// The transaction ID is kept when it could be read, so that the error response can echo it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct DecodeError {
    /// What went wrong.
    pub kind: DecodeErrorKind,
    /// The request's transaction ID, when it could be read before the error.
    pub transaction_id: Option<TransactionId>,
}

impl DecodeError {
    /// An error with no transaction ID attached yet.
    pub fn new(kind: DecodeErrorKind) -> Self {
        Self {
            kind,
            transaction_id: None,
        }
    }

    /// Attaches the transaction ID, if the error does not have one yet.
    #[must_use]
    pub fn with_transaction_id(mut self, id: Option<TransactionId>) -> Self {
        if self.transaction_id.is_none() {
            self.transaction_id = id;
        }
        self
    }

    /// The PPSP status the error maps to: VERSION NOT SUPPORTED for an unsupported version,
    /// INVALID SYNTAX for everything else.
    pub fn status(&self) -> Status {
        match self.kind {
            DecodeErrorKind::UnsupportedVersion(_) => Status::VersionNotSupported,
            _ => Status::InvalidSyntax,
        }
    }
}

impl From<DecodeErrorKind> for DecodeError {
    fn from(kind: DecodeErrorKind) -> Self {
        Self::new(kind)
    }
}
