//! Feeds arbitrary bytes to the XML (draft-gu-ppsp-tracker-protocol-06) decoder.
//!
//! Invariants: decoding never panics, every error maps to INVALID SYNTAX or VERSION NOT
//! SUPPORTED, and a decoded message re-encodes (deterministically) to a body that decodes to
//! the same value. The second decode lifts the body-size limit only, since the canonical
//! form may be longer than a terse input (a bitmap gains its `bitmapsize`, base64 its
//! padding); it is never deeper, and its lists are never longer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ppsp_proto::xml::{decode, decode_request, decode_response, encode_request, encode_response};
use ppsp_proto::{Limits, Message, Status};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let relaxed = Limits {
        max_body_bytes: usize::MAX,
        ..Limits::default()
    };
    let _ = decode_request(data, &limits);
    let _ = decode_response(data, &limits);
    match decode(data, &limits) {
        Ok(Message::Request(request)) => {
            let encoded = encode_request(&request);
            let again = decode_request(encoded.as_bytes(), &relaxed);
            assert_eq!(again.as_ref(), Ok(&request), "re-encoded: {encoded}");
            assert_eq!(encode_request(&request), encoded, "encoding is deterministic");
        }
        Ok(Message::Response(response)) => {
            let encoded = encode_response(&response);
            let again = decode_response(encoded.as_bytes(), &relaxed);
            assert_eq!(again.as_ref(), Ok(&response), "re-encoded: {encoded}");
            assert_eq!(encode_response(&response), encoded, "encoding is deterministic");
        }
        Err(error) => {
            assert!(matches!(
                error.status(),
                Status::InvalidSyntax | Status::VersionNotSupported
            ));
        }
    }
});
