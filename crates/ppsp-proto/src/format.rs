//! The two wire formats as one type: which media type each has, and its codec.

use crate::error::{DecodeError, Limits};
use crate::model::{Message, Request, Response};
use crate::{json, xml};

/// A wire format of the tracker protocol. Code above this crate holds a `Format` and calls
/// its methods instead of matching on the format at every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// The HTTP/XML protocol of draft-gu-ppsp-tracker-protocol-06.
    Xml,
    /// The HTTP/JSON protocol of RFC 7846.
    Json,
}

impl Format {
    /// Both formats, XML first.
    pub const ALL: [Self; 2] = [Self::Xml, Self::Json];

    /// The `Content-Type` this project sends for the format.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Xml => crate::XML_MEDIA_TYPE,
            Self::Json => crate::JSON_MEDIA_TYPE,
        }
    }

    /// A short lowercase name (`xml`, `json`), used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Xml => "xml",
            Self::Json => "json",
        }
    }

    /// Decodes a request body.
    ///
    /// # Errors
    /// The format's [`DecodeError`]; [`DecodeError::status`] is the status to answer with.
    pub fn decode_request(self, bytes: &[u8], limits: &Limits) -> Result<Request, DecodeError> {
        match self {
            Self::Xml => xml::decode_request(bytes, limits),
            Self::Json => json::decode_request(bytes, limits),
        }
    }

    /// Decodes a response body.
    ///
    /// # Errors
    /// The format's [`DecodeError`].
    pub fn decode_response(self, bytes: &[u8], limits: &Limits) -> Result<Response, DecodeError> {
        match self {
            Self::Xml => xml::decode_response(bytes, limits),
            Self::Json => json::decode_response(bytes, limits),
        }
    }

    /// Decodes a body of either direction.
    ///
    /// # Errors
    /// The format's [`DecodeError`].
    pub fn decode(self, bytes: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
        match self {
            Self::Xml => xml::decode(bytes, limits),
            Self::Json => json::decode(bytes, limits),
        }
    }

    /// Encodes a response body.
    pub fn encode_response(self, response: &Response) -> String {
        match self {
            Self::Xml => xml::encode_response(response),
            Self::Json => json::encode_response(response),
        }
    }

    /// Encodes a request body. JSON has no form for every XML method: see
    /// [`json::encode_request`].
    pub fn encode_request(self, request: &Request) -> String {
        match self {
            Self::Xml => xml::encode_request(request),
            Self::Json => json::encode_request(request),
        }
    }
}
