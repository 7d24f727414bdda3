//! Feeds arbitrary datagrams to the STUN Binding service and client parsers.
//!
//! Invariants: nothing panics; whatever the service answers is itself a well-formed STUN
//! message that the client parser accepts for the request's transaction ID, reporting the
//! observed address (success) or a 420 error (unknown comprehension-required attribute).

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use ppsp_proto::stun::{StunError, answer, parse_binding_response};

fuzz_target!(|data: &[u8]| {
    let observed = [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 40000),
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
            1,
        ),
    ];
    let mut transaction_id = [0u8; 12];
    if let Some(id) = data.get(8..20) {
        transaction_id.copy_from_slice(id);
    }
    let _ = parse_binding_response(data, &transaction_id);
    for address in observed {
        let Some(reply) = answer(data, address) else {
            continue;
        };
        // RFC 3489 requests (no magic cookie) get an RFC 3489 answer, which the RFC 8489
        // client parser rightly refuses; everything else must parse.
        if data.get(4..8) != Some(&[0x21, 0x12, 0xa4, 0x42][..]) {
            continue;
        }
        match parse_binding_response(&reply, &transaction_id) {
            Ok(mapped) => assert_eq!(mapped, address),
            Err(StunError::ErrorResponse { code, .. }) => assert_eq!(code, 420),
            Err(other) => panic!("the service's own answer does not parse: {other}"),
        }
    }
});
