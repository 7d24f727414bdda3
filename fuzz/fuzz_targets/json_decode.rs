//! Feeds arbitrary bytes to the RFC 7846 decoder.
//!
//! Invariants: decoding never panics, every error maps to error code 1 or 2, and a decoded
//! message re-encodes to a body that decodes to the same value. The second decode allows a
//! larger body and two more nesting levels, because the canonical form can be longer and
//! deeper than the tolerated input shapes it replaces (single objects become arrays, a FIND
//! gains its `find` wrapper, addresses gain `type` and `priority`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ppsp_proto::json::{decode, decode_request, decode_response, encode_request, encode_response};
use ppsp_proto::{Limits, Message, Status};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let relaxed = Limits {
        max_body_bytes: usize::MAX,
        max_depth: limits.max_depth + 2,
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
        }
        Err(error) => {
            assert!(matches!(
                error.status(),
                Status::InvalidSyntax | Status::VersionNotSupported
            ));
        }
    }
});
