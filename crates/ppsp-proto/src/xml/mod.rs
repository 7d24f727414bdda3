//! The XML protocol of draft-gu-ppsp-tracker-protocol-06.
//!
//! Bodies are UTF-8 documents with the root `PPSPTrackerProtocol` and a mandatory `version`
//! attribute (major version 1 accepted, `1.0` sent), whose first child names the direction:
//! `<Method>` in a request, `<Response>` in a response.
//!
//! # Decoding
//!
//! The decoders are strict about what they know and lenient about the rest:
//!
//! * Elements are matched by local name; any *declared* namespace is accepted, while an
//!   undeclared prefix (such as the draft's own `report:`) makes the document
//!   namespace-ill-formed and is refused.
//! * Characters XML 1.0 does not allow (C0 controls other than tab, CR and LF; U+FFFE and
//!   U+FFFF) are refused, whether raw or as character references.
//! * A DOCTYPE is refused outright ([`DecodeErrorKind::DoctypeForbidden`]), so no entity is
//!   ever declared or expanded; only the five predefined entities and character references
//!   are resolved.
//! * Children of the root may come in any order. Unknown elements are skipped (their depth
//!   still counts). Each known element may appear once ([`DecodeErrorKind::Duplicate`]) and
//!   the per-method mandatory elements of the digest's §3 tables must be present
//!   ([`DecodeErrorKind::Missing`]). A missing or empty `AuthToken` is not a syntax error: it decodes
//!   as `auth_token: None` and is the tracker's business (401).
//! * Method, `Response` and `PeerMode` values are case-insensitive. `SUCCESSFUL` reads as
//!   [`Status::Ok`](crate::Status::Ok), `MESSAGE NOT SUPPORTED` as [`Status::InvalidSyntax`](crate::Status::InvalidSyntax) and `PAYMENT
//!   REQUIRED` as [`Status::MessageForbidden`](crate::Status::MessageForbidden). `PeerType` is read as `PeerMode` inside
//!   `PeerInfo`, `bitmapSize` as `bitmapsize`; `Stat` booleans are `true`, `false`, `1` or
//!   `0`; a missing `ExpireTime` is 0.
//! * Text values are trimmed of XML white space. `TransactionID` is decimal digits fitting a
//!   `u64` and is kept in canonical form (leading zeros dropped).
//! * `Credentials` base64 is decoded leniently (white space, missing or surplus padding);
//!   CONNECT with the client-first mechanisms `PLAIN` or `SECURID` must carry it.
//! * [`Limits`] are enforced while parsing: the body size before anything else, the depth as
//!   each element opens, list lengths as items are added, and chunk-map sizes before their
//!   bitmap is decoded.
//!
//! Every error carries the request's `TransactionID` when one could be read anywhere in the
//! document ([`DecodeError::transaction_id`]), so the tracker can echo it.
//!
//! # Encoding
//!
//! The encoders never fail. They write the direction element first, the other elements in
//! the order of the digest's examples, no namespace, and escape all text. Model fields the XML
//! protocol cannot carry are simply not written:
//!
//! * CONNECT `peer_num` and `swarm_actions` (RFC 7846 only);
//! * `PeerAddress::connection`, `asn` and `peer_protocol`; and on a `ReflexiveAddress`,
//!   `priority` and `kind`;
//! * `PeerNum` fields other than `count`; `StreamStats::concurrent_links`;
//! * `SwarmResult::ok`, and every swarm result after the first;
//! * a `TransactionId` that is not a decimal number;
//! * `PeerInfoList` when a swarm result has no peers (the schema needs at least one).
//!
//! A JOIN always carries `ExpireTime` (0 for none). Values the model allows but the protocol
//! does not (a zero-length chunk map, a STAT_REPORT stream report without `SwarmID`, a
//! mechanism name that does not have the RFC 4422 shape, text with control characters) are
//! written as they are and are refused by a receiver.

mod decode;
mod encode;
mod reader;

use crate::error::{DecodeError, DecodeErrorKind, Limits};
use crate::model::{Message, Request, Response};

/// Decodes a request body.
///
/// # Errors
/// Any [`DecodeErrorKind`]; a well-formed response body gives
/// [`DecodeErrorKind::Missing`]`("Method")`. [`DecodeError::status`] tells which PPSP status
/// to answer with.
pub fn decode_request(bytes: &[u8], limits: &Limits) -> Result<Request, DecodeError> {
    match decode::decode(bytes, limits)? {
        Message::Request(request) => Ok(request),
        Message::Response(response) => Err(DecodeError::new(DecodeErrorKind::Missing("Method"))
            .with_transaction_id(response.transaction_id)),
    }
}

/// Decodes a response body.
///
/// # Errors
/// Any [`DecodeErrorKind`]; a well-formed request body gives
/// [`DecodeErrorKind::Missing`]`("Response")`.
pub fn decode_response(bytes: &[u8], limits: &Limits) -> Result<Response, DecodeError> {
    match decode::decode(bytes, limits)? {
        Message::Response(response) => Ok(response),
        Message::Request(request) => Err(DecodeError::new(DecodeErrorKind::Missing("Response"))
            .with_transaction_id(Some(request.transaction_id))),
    }
}

/// Decodes a body of either direction.
///
/// # Errors
/// Any [`DecodeErrorKind`]; see the module documentation for the rules.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
    decode::decode(bytes, limits)
}

/// Encodes a request body. See the module documentation for the fields not written.
pub fn encode_request(req: &Request) -> String {
    encode::encode_request(req)
}

/// Encodes a response body. See the module documentation for the fields not written.
pub fn encode_response(resp: &Response) -> String {
    encode::encode_response(resp)
}

/// Encodes a message of either direction.
pub fn encode(message: &Message) -> String {
    match message {
        Message::Request(request) => encode_request(request),
        Message::Response(response) => encode_response(response),
    }
}

/// The error body for a request that could not be decoded: its status, echoing the
/// transaction ID when one was read.
pub fn encode_decode_error(error: &DecodeError) -> String {
    encode_response(&Response::status(
        error.status(),
        error.transaction_id.clone(),
    ))
}
