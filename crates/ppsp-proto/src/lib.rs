//! Messages of the PPSP tracker protocol and their two wire formats.
//!
//! PPSP (Peer-to-Peer Streaming Protocol) trackers keep, per content item, which peers hold
//! which chunks. Two encodings of the peer-to-tracker conversation exist:
//!
//! * the HTTP/XML protocol of draft-gu-ppsp-tracker-protocol-06, with seven methods
//!   (CONNECT, DISCONNECT, JOIN, LEAVE, FIND, STAT_REPORT, KEEPALIVE), see [`xml`];
//! * the HTTP/JSON protocol of RFC 7846, with three (CONNECT carrying swarm actions, FIND,
//!   STAT_REPORT), see [`json`].
//!
//! Both decode into one model ([`Request`], [`Response`] and the types they hold), so code
//! above this crate never cares which format a peer spoke. The crate does no I/O and reads no
//! clock or randomness: it turns bytes into values and values into bytes, enforcing the
//! [`Limits`] while it parses.

pub mod chunkmap;
mod digits;
pub mod error;
pub mod format;
pub mod json;
pub mod model;
pub mod stun;
mod words;
pub mod xml;

pub use chunkmap::{ChunkMap, ChunkSet};
pub use error::{DecodeError, DecodeErrorKind, Limits};
pub use format::Format;
pub use model::*;

/// The media type of the RFC 7846 JSON protocol.
pub const JSON_MEDIA_TYPE: &str = "application/ppsp-tracker+json";
/// The media type this project sends for the XML protocol.
pub const XML_MEDIA_TYPE: &str = "application/xml; charset=utf-8";
