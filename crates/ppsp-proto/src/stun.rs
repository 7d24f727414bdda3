//! STUN Binding messages (RFC 8489), the part a tracker's STUN service and a peer need.
//!
//! The PPSP tracker reports the address it observed for a peer's TCP connection, but a peer's
//! chunk exchange may run over other ports and protocols. A plain STUN Binding service on UDP
//! lets a peer learn its public mapping directly, and a standard STUN client can test it.
//!
//! Like the rest of this crate, the module is sans-IO: [`answer`] turns a received datagram
//! and the address it came from into the datagram to send back, [`binding_request`] builds a
//! query from a caller-chosen transaction ID and [`parse_binding_response`] reads the answer.
//! Sockets, clocks, retransmission and random transaction IDs belong to the caller.
//!
//! Nothing here panics on any input: every read is bounds-checked, and malformed datagrams are
//! either dropped ([`answer`] returns `None`) or reported as a [`StunError`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed value in bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Length of the STUN message header.
pub const HEADER_LEN: usize = 20;
/// The text of the SOFTWARE attribute this implementation sends.
pub const SOFTWARE: &str = concat!("ppsp ", env!("CARGO_PKG_VERSION"));

/// Message type of a Binding request (method 0x001, class request).
const BINDING_REQUEST: u16 = 0x0001;
/// Message type of a Binding success response.
const BINDING_SUCCESS: u16 = 0x0101;
/// Message type of a Binding error response.
const BINDING_ERROR: u16 = 0x0111;

const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_CHANGE_REQUEST: u16 = 0x0003;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_UNKNOWN_ATTRIBUTES: u16 = 0x000A;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
const ATTR_PASSWORD_ALGORITHM: u16 = 0x001D;
const ATTR_USERHASH: u16 = 0x001E;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_PRIORITY: u16 = 0x0024;
const ATTR_USE_CANDIDATE: u16 = 0x0025;
const ATTR_PADDING: u16 = 0x0026;
const ATTR_RESPONSE_PORT: u16 = 0x0027;
const ATTR_SOFTWARE: u16 = 0x8022;
const ATTR_FINGERPRINT: u16 = 0x8028;

/// XORed into the CRC-32 of a message to form the FINGERPRINT value (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Size of a whole FINGERPRINT attribute: 4 bytes of header, 4 of value.
const FINGERPRINT_ATTR_LEN: usize = 8;

const FAMILY_IPV4: u8 = 0x01;
const FAMILY_IPV6: u8 = 0x02;

/// Most unknown attribute types listed in one 420 answer; keeps the reply small however many
/// odd attributes a request carries.
const MAX_UNKNOWN_LISTED: usize = 16;

/// Why a Binding response could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// Fewer bytes than a STUN header.
    #[error("datagram of {0} bytes is shorter than a STUN header")]
    TooShort(usize),
    /// The datagram does not have the shape of an RFC 8489 message.
    #[error("not a STUN message: {0}")]
    NotStun(&'static str),
    /// The transaction ID is not the one of the request.
    #[error("transaction ID does not match the request")]
    TransactionMismatch,
    /// A STUN message, but not a Binding response.
    #[error("unexpected STUN message type {0:#06x}")]
    UnexpectedType(u16),
    /// An attribute runs past the end of the message or has an impossible size.
    #[error("malformed attribute {0:#06x}")]
    MalformedAttribute(u16),
    /// The FINGERPRINT attribute does not match the message.
    #[error("FINGERPRINT does not match the message")]
    FingerprintMismatch,
    /// The server answered with a Binding error response.
    #[error("STUN error {code}: {reason}")]
    ErrorResponse {
        /// The error code, for example 420.
        code: u16,
        /// The server's reason phrase.
        reason: String,
    },
    /// The success response carries a comprehension-required attribute this code does not
    /// know, so it must not be used (RFC 8489 §6.3.4).
    #[error("response carries unknown comprehension-required attribute {0:#06x}")]
    UnknownRequiredAttribute(u16),
    /// The success response has neither XOR-MAPPED-ADDRESS nor MAPPED-ADDRESS.
    #[error("response carries no mapped address")]
    NoMappedAddress,
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) lookup table, built at compile time.
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut value = index as u32;
        let mut bit = 0;
        while bit < 8 {
            value = if value & 1 == 1 {
                (value >> 1) ^ 0xEDB8_8320
            } else {
                value >> 1
            };
            bit += 1;
        }
        table[index] = value;
        index += 1;
    }
    table
};

/// The CRC-32 of `bytes`, as used by STUN's FINGERPRINT (and by zlib, PNG and Ethernet).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        // The index is masked to 0..=255, so it is always in the table.
        crc = CRC32_TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8);
    }
    !crc
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*pair.first()?, *pair.get(1)?]))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let quad: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(quad))
}

/// One attribute as found in a message.
#[derive(Clone, Copy, Debug)]
struct RawAttribute<'a> {
    kind: u16,
    value: &'a [u8],
}

/// A framed message: header checked, attributes split out.
#[derive(Debug)]
struct Frame<'a> {
    message_type: u16,
    transaction_id: [u8; 12],
    /// False for an RFC 3489 message, whose bytes 4..8 are part of the transaction ID.
    has_cookie: bool,
    bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Checks the header: top two bits zero, length a multiple of 4 that matches the datagram.
    fn parse(bytes: &'a [u8]) -> Result<Self, StunError> {
        if bytes.len() < HEADER_LEN {
            return Err(StunError::TooShort(bytes.len()));
        }
        let message_type = read_u16(bytes, 0).ok_or(StunError::TooShort(bytes.len()))?;
        if message_type & 0xC000 != 0 {
            return Err(StunError::NotStun("the two leading bits are not zero"));
        }
        let length = usize::from(read_u16(bytes, 2).ok_or(StunError::TooShort(bytes.len()))?);
        if length % 4 != 0 {
            return Err(StunError::NotStun("length is not a multiple of 4"));
        }
        if HEADER_LEN + length != bytes.len() {
            return Err(StunError::NotStun("length does not match the datagram"));
        }
        let has_cookie = read_u32(bytes, 4) == Some(MAGIC_COOKIE);
        let transaction_id: [u8; 12] = bytes
            .get(8..HEADER_LEN)
            .and_then(|id| id.try_into().ok())
            .ok_or(StunError::TooShort(bytes.len()))?;
        Ok(Self {
            message_type,
            transaction_id,
            has_cookie,
            bytes,
        })
    }

    /// Walks the attributes, calling `visit` on each in order. Stops at FINGERPRINT, which
    /// must be the last attribute, and verifies it.
    fn walk(&self, mut visit: impl FnMut(RawAttribute<'a>)) -> Result<(), StunError> {
        let bytes = self.bytes;
        let mut offset = HEADER_LEN;
        while offset < bytes.len() {
            let kind = read_u16(bytes, offset).ok_or(StunError::MalformedAttribute(0))?;
            let length = read_u16(bytes, offset + 2).ok_or(StunError::MalformedAttribute(kind))?;
            let value_start = offset + 4;
            let value_end = value_start + usize::from(length);
            let value = bytes
                .get(value_start..value_end)
                .ok_or(StunError::MalformedAttribute(kind))?;
            // Values are padded to a multiple of four bytes; the padding is not counted in
            // the length but must fit in the message.
            let padded_end = value_start + usize::from(length).div_ceil(4) * 4;
            if padded_end > bytes.len() {
                return Err(StunError::MalformedAttribute(kind));
            }
            if kind == ATTR_FINGERPRINT && self.has_cookie {
                if padded_end != bytes.len() || value.len() != 4 {
                    return Err(StunError::MalformedAttribute(kind));
                }
                let claimed = read_u32(value, 0).ok_or(StunError::MalformedAttribute(kind))?;
                let covered = bytes
                    .get(..offset)
                    .ok_or(StunError::MalformedAttribute(kind))?;
                if crc32(covered) ^ FINGERPRINT_XOR != claimed {
                    return Err(StunError::FingerprintMismatch);
                }
                return Ok(());
            }
            visit(RawAttribute { kind, value });
            offset = padded_end;
        }
        Ok(())
    }
}

/// True for attribute types 0x0000..=0x7FFF, which a receiver must understand.
fn comprehension_required(kind: u16) -> bool {
    kind < 0x8000
}

/// Comprehension-required attributes a Binding server may meet and can safely do without:
/// this service has no credentials, no alternate address and no ICE agent, and RFC 8489
/// lets an unauthenticated server process the request while ignoring them.
fn server_understands(attribute: &RawAttribute<'_>) -> bool {
    match attribute.kind {
        ATTR_MAPPED_ADDRESS
        | ATTR_USERNAME
        | ATTR_MESSAGE_INTEGRITY
        | ATTR_ERROR_CODE
        | ATTR_UNKNOWN_ATTRIBUTES
        | ATTR_REALM
        | ATTR_NONCE
        | ATTR_MESSAGE_INTEGRITY_SHA256
        | ATTR_PASSWORD_ALGORITHM
        | ATTR_USERHASH
        | ATTR_XOR_MAPPED_ADDRESS
        | ATTR_PRIORITY
        | ATTR_USE_CANDIDATE
        | ATTR_PADDING => true,
        // A CHANGE-REQUEST that asks for no change costs nothing to honour; one that asks for
        // another address or port cannot be honoured without a second address (RFC 5780 §7.2).
        ATTR_CHANGE_REQUEST => read_u32(attribute.value, 0) == Some(0),
        // RESPONSE-PORT asks for the answer on another port, which this service never does,
        // so it must be refused rather than silently ignored (RFC 5780 §7.5).
        ATTR_RESPONSE_PORT => false,
        other => !comprehension_required(other),
    }
}

/// Appends one attribute with its padding.
fn put_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let length = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(value.get(..usize::from(length)).unwrap_or(value));
    let padding = (4 - usize::from(length) % 4) % 4;
    out.extend_from_slice(&[0u8; 3][..padding]);
}

/// Writes the header with a zero length; [`finish`] fills the length in.
fn start_message(message_type: u16, cookie: [u8; 4], transaction_id: &[u8; 12]) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(&message_type.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&cookie);
    out.extend_from_slice(transaction_id);
    out
}

fn set_length(out: &mut [u8], body_len: usize) {
    let length = u16::try_from(body_len).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(field) = out.get_mut(2..4) {
        field.copy_from_slice(&length);
    }
}

/// Sets the header length and, for RFC 8489 messages, appends FINGERPRINT.
fn finish(mut out: Vec<u8>, with_fingerprint: bool) -> Vec<u8> {
    if with_fingerprint {
        // The CRC covers the header with a length that already counts the FINGERPRINT.
        let body_len = out.len() - HEADER_LEN + FINGERPRINT_ATTR_LEN;
        set_length(&mut out, body_len);
        let value = crc32(&out) ^ FINGERPRINT_XOR;
        put_attribute(&mut out, ATTR_FINGERPRINT, &value.to_be_bytes());
    } else {
        let body_len = out.len() - HEADER_LEN;
        set_length(&mut out, body_len);
    }
    out
}

/// The value of a MAPPED-ADDRESS (plain) or XOR-MAPPED-ADDRESS (`xor` = cookie then
/// transaction ID) attribute.
fn address_value(address: SocketAddr, xor: Option<&[u8; 16]>) -> Vec<u8> {
    let mask = xor.copied().unwrap_or([0; 16]);
    let port_mask = u16::from_be_bytes([mask[0], mask[1]]);
    let mut value = Vec::with_capacity(20);
    value.push(0);
    match address.ip() {
        IpAddr::V4(ip) => {
            value.push(FAMILY_IPV4);
            value.extend_from_slice(&(address.port() ^ port_mask).to_be_bytes());
            value.extend(ip.octets().iter().zip(mask.iter()).map(|(a, m)| a ^ m));
        }
        IpAddr::V6(ip) => {
            value.push(FAMILY_IPV6);
            value.extend_from_slice(&(address.port() ^ port_mask).to_be_bytes());
            value.extend(ip.octets().iter().zip(mask.iter()).map(|(a, m)| a ^ m));
        }
    }
    value
}

/// Reads a MAPPED-ADDRESS or XOR-MAPPED-ADDRESS value.
fn read_address(kind: u16, value: &[u8], xor: Option<&[u8; 16]>) -> Result<SocketAddr, StunError> {
    let malformed = StunError::MalformedAttribute(kind);
    let mask = xor.copied().unwrap_or([0; 16]);
    let family = *value.get(1).ok_or(malformed.clone())?;
    let port =
        read_u16(value, 2).ok_or(malformed.clone())? ^ u16::from_be_bytes([mask[0], mask[1]]);
    let ip = match (family, value.len()) {
        (FAMILY_IPV4, 8) => {
            let mut octets = [0u8; 4];
            for ((out, byte), m) in octets.iter_mut().zip(value.iter().skip(4)).zip(mask.iter()) {
                *out = byte ^ m;
            }
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        (FAMILY_IPV6, 20) => {
            let mut octets = [0u8; 16];
            for ((out, byte), m) in octets.iter_mut().zip(value.iter().skip(4)).zip(mask.iter()) {
                *out = byte ^ m;
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return Err(malformed),
    };
    Ok(SocketAddr::new(ip, port))
}

fn xor_mask(transaction_id: &[u8; 12]) -> [u8; 16] {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(transaction_id);
    mask
}

/// Answers one datagram received by a STUN Binding service.
///
/// `observed` is the source address of the datagram; it is returned to the client as
/// XOR-MAPPED-ADDRESS and MAPPED-ADDRESS (an IPv4-mapped IPv6 source, as a dual-stack socket
/// reports it, is answered as the IPv4 address it stands for). The answer also carries
/// SOFTWARE and FINGERPRINT.
///
/// * An RFC 8489 Binding request gets a Binding success response.
/// * A request with a comprehension-required attribute this service cannot honour gets a
///   420 (Unknown Attribute) error response listing it.
/// * An RFC 3489 request (no magic cookie) gets a success response with MAPPED-ADDRESS only,
///   which is all such clients understand.
///
/// Returns `None` (drop the datagram silently) for anything else: not STUN, a broken
/// attribute list, a FINGERPRINT that does not match, an indication or response, or another
/// method.
pub fn answer(request: &[u8], observed: SocketAddr) -> Option<Vec<u8>> {
    let frame = Frame::parse(request).ok()?;
    if frame.message_type != BINDING_REQUEST {
        return None;
    }
    let observed = SocketAddr::new(observed.ip().to_canonical(), observed.port());

    let mut unknown: Vec<u16> = Vec::new();
    frame
        .walk(|attribute| {
            if frame.has_cookie
                && !server_understands(&attribute)
                && unknown.len() < MAX_UNKNOWN_LISTED
            {
                unknown.push(attribute.kind);
            }
        })
        .ok()?;

    if !frame.has_cookie {
        // RFC 3489: bytes 4..8 belong to the transaction ID and are echoed as they came.
        let mut cookie = [0u8; 4];
        cookie.copy_from_slice(request.get(4..8)?);
        let mut out = start_message(BINDING_SUCCESS, cookie, &frame.transaction_id);
        put_attribute(
            &mut out,
            ATTR_MAPPED_ADDRESS,
            &address_value(observed, None),
        );
        return Some(finish(out, false));
    }

    let cookie = MAGIC_COOKIE.to_be_bytes();
    if !unknown.is_empty() {
        let mut out = start_message(BINDING_ERROR, cookie, &frame.transaction_id);
        let mut error = vec![0, 0, 4, 20];
        error.extend_from_slice(b"Unknown Attribute");
        put_attribute(&mut out, ATTR_ERROR_CODE, &error);
        let list: Vec<u8> = unknown.iter().flat_map(|kind| kind.to_be_bytes()).collect();
        put_attribute(&mut out, ATTR_UNKNOWN_ATTRIBUTES, &list);
        put_attribute(&mut out, ATTR_SOFTWARE, SOFTWARE.as_bytes());
        return Some(finish(out, true));
    }

    let mask = xor_mask(&frame.transaction_id);
    let mut out = start_message(BINDING_SUCCESS, cookie, &frame.transaction_id);
    put_attribute(
        &mut out,
        ATTR_XOR_MAPPED_ADDRESS,
        &address_value(observed, Some(&mask)),
    );
    put_attribute(
        &mut out,
        ATTR_MAPPED_ADDRESS,
        &address_value(observed, None),
    );
    put_attribute(&mut out, ATTR_SOFTWARE, SOFTWARE.as_bytes());
    Some(finish(out, true))
}

/// Builds a Binding request with the given transaction ID, carrying SOFTWARE and FINGERPRINT.
///
/// The caller picks a fresh random ID per transaction and reuses it for retransmissions.
pub fn binding_request(transaction_id: [u8; 12]) -> Vec<u8> {
    let mut out = start_message(BINDING_REQUEST, MAGIC_COOKIE.to_be_bytes(), &transaction_id);
    put_attribute(&mut out, ATTR_SOFTWARE, SOFTWARE.as_bytes());
    finish(out, true)
}

/// Reads the answer to [`binding_request`]: the client's address as the server saw it.
///
/// XOR-MAPPED-ADDRESS is preferred; MAPPED-ADDRESS is used only when the server sent no
/// XOR form (servers that predate RFC 5389).
///
/// # Errors
/// [`StunError`] when the datagram is not a STUN message, belongs to another transaction,
/// is an error response (the code and reason are returned), is malformed, fails its
/// FINGERPRINT, carries an unknown comprehension-required attribute, or has no address.
pub fn parse_binding_response(
    bytes: &[u8],
    transaction_id: &[u8; 12],
) -> Result<SocketAddr, StunError> {
    let frame = Frame::parse(bytes)?;
    if !frame.has_cookie {
        return Err(StunError::NotStun("magic cookie missing"));
    }
    if &frame.transaction_id != transaction_id {
        return Err(StunError::TransactionMismatch);
    }
    let mask = xor_mask(transaction_id);
    match frame.message_type {
        BINDING_SUCCESS => {
            let mut xor_mapped = None;
            let mut mapped = None;
            let mut failure = None;
            frame.walk(|attribute| {
                if failure.is_some() {
                    return;
                }
                match attribute.kind {
                    ATTR_XOR_MAPPED_ADDRESS if xor_mapped.is_none() => {
                        match read_address(attribute.kind, attribute.value, Some(&mask)) {
                            Ok(address) => xor_mapped = Some(address),
                            Err(error) => failure = Some(error),
                        }
                    }
                    ATTR_MAPPED_ADDRESS if mapped.is_none() => {
                        match read_address(attribute.kind, attribute.value, None) {
                            Ok(address) => mapped = Some(address),
                            Err(error) => failure = Some(error),
                        }
                    }
                    kind if comprehension_required(kind) && !client_understands(kind) => {
                        failure = Some(StunError::UnknownRequiredAttribute(kind));
                    }
                    _ => {}
                }
            })?;
            if let Some(error) = failure {
                return Err(error);
            }
            xor_mapped.or(mapped).ok_or(StunError::NoMappedAddress)
        }
        BINDING_ERROR => {
            let mut error = None;
            frame.walk(|attribute| {
                if attribute.kind == ATTR_ERROR_CODE && error.is_none() {
                    error = Some(read_error_code(attribute.value));
                }
            })?;
            match error {
                Some(Some((code, reason))) => Err(StunError::ErrorResponse { code, reason }),
                Some(None) => Err(StunError::MalformedAttribute(ATTR_ERROR_CODE)),
                None => Err(StunError::ErrorResponse {
                    code: 0,
                    reason: "error response without ERROR-CODE".to_owned(),
                }),
            }
        }
        other => Err(StunError::UnexpectedType(other)),
    }
}

/// Comprehension-required attributes a Binding client can meet in a success response.
fn client_understands(kind: u16) -> bool {
    matches!(
        kind,
        ATTR_MAPPED_ADDRESS
            | ATTR_XOR_MAPPED_ADDRESS
            | ATTR_USERNAME
            | ATTR_MESSAGE_INTEGRITY
            | ATTR_MESSAGE_INTEGRITY_SHA256
            | ATTR_ERROR_CODE
            | ATTR_UNKNOWN_ATTRIBUTES
            | ATTR_REALM
            | ATTR_NONCE
            | ATTR_PADDING
    )
}

/// Decodes an ERROR-CODE value into the code (class * 100 + number) and the reason.
fn read_error_code(value: &[u8]) -> Option<(u16, String)> {
    let class = u16::from(*value.get(2)? & 0x07);
    let number = u16::from(*value.get(3)?);
    if !(3..=6).contains(&class) || number > 99 {
        return None;
    }
    let reason = String::from_utf8_lossy(value.get(4..)?).into_owned();
    Some((class * 100 + number, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TXID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    fn v4(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The catalogue check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// RFC 5769 §2.2: a sample IPv4 response. Our parser must read its XOR-MAPPED-ADDRESS
    /// (the MESSAGE-INTEGRITY in it is ignored, FINGERPRINT is verified).
    #[test]
    fn reads_rfc5769_ipv4_sample_response() {
        let sample: [u8; 80] = [
            0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74,
            0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
            0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99,
            0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b,
            0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
        ];
        assert_eq!(
            parse_binding_response(&sample, &TXID),
            Ok(v4("192.0.2.1:32853"))
        );
        let mut corrupted = sample;
        corrupted[30] ^= 1;
        assert_eq!(
            parse_binding_response(&corrupted, &TXID),
            Err(StunError::FingerprintMismatch)
        );
        assert_eq!(
            parse_binding_response(&sample, &[0; 12]),
            Err(StunError::TransactionMismatch)
        );
    }

    /// RFC 5769 §2.3: the IPv6 sample response.
    #[test]
    fn reads_rfc5769_ipv6_sample_response() {
        let sample: [u8; 92] = [
            0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74,
            0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02,
            0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5,
            0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6,
            0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41,
            0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
        ];
        assert_eq!(
            parse_binding_response(&sample, &TXID),
            Ok(v4("[2001:db8:1234:5678:11:2233:4455:6677]:32853"))
        );
    }

    #[test]
    fn round_trip_ipv4_and_ipv6() {
        for observed in [
            v4("203.0.113.7:40000"),
            v4("[2001:db8:1234:5678:11:2233:4455:6677]:32853"),
            v4("[::1]:1"),
            v4("0.0.0.0:0"),
        ] {
            let request = binding_request(TXID);
            let response = answer(&request, observed).expect("a binding request is answered");
            assert_eq!(parse_binding_response(&response, &TXID), Ok(observed));
        }
    }

    #[test]
    fn response_carries_all_attributes_and_a_valid_fingerprint() {
        let observed = v4("198.51.100.9:5000");
        let response = answer(&binding_request(TXID), observed).expect("answered");
        let frame = Frame::parse(&response).expect("framed");
        let mut kinds = Vec::new();
        frame
            .walk(|a| kinds.push(a.kind))
            .expect("walks, fingerprint verifies");
        assert_eq!(
            kinds,
            [ATTR_XOR_MAPPED_ADDRESS, ATTR_MAPPED_ADDRESS, ATTR_SOFTWARE]
        );
        // The fingerprint attribute is the last 8 bytes.
        let tail = &response[response.len() - 8..];
        assert_eq!(&tail[..4], &[0x80, 0x28, 0x00, 0x04]);
        // MAPPED-ADDRESS alone still gives the address.
        let mut mapped = None;
        frame
            .walk(|a| {
                if a.kind == ATTR_MAPPED_ADDRESS {
                    mapped = read_address(a.kind, a.value, None).ok();
                }
            })
            .expect("walks");
        assert_eq!(mapped, Some(observed));
    }

    #[test]
    fn ipv4_mapped_source_is_answered_as_ipv4() {
        let response =
            answer(&binding_request(TXID), v4("[::ffff:192.0.2.5]:999")).expect("answered");
        assert_eq!(
            parse_binding_response(&response, &TXID),
            Ok(v4("192.0.2.5:999"))
        );
    }

    #[test]
    fn bare_request_like_coturn_sends_is_answered() {
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(&TXID);
        let response = answer(&request, v4("127.0.0.1:4242")).expect("answered");
        assert_eq!(
            parse_binding_response(&response, &TXID),
            Ok(v4("127.0.0.1:4242"))
        );
    }

    #[test]
    fn rfc3489_request_gets_mapped_address_only() {
        let mut request = vec![0x00, 0x01, 0x00, 0x00];
        let id: [u8; 16] = *b"0123456789abcdef";
        request.extend_from_slice(&id);
        let response = answer(&request, v4("192.0.2.77:1234")).expect("answered");
        assert_eq!(&response[..2], &[0x01, 0x01]);
        assert_eq!(&response[4..20], &id);
        let frame = Frame::parse(&response).expect("framed");
        assert!(!frame.has_cookie);
        let mut found = Vec::new();
        frame
            .walk(|a| found.push((a.kind, read_address(a.kind, a.value, None))))
            .expect("walks");
        assert_eq!(found, [(ATTR_MAPPED_ADDRESS, Ok(v4("192.0.2.77:1234")))]);
    }

    fn request_with(attributes: &[(u16, &[u8])], fingerprint: bool) -> Vec<u8> {
        let mut out = start_message(BINDING_REQUEST, MAGIC_COOKIE.to_be_bytes(), &TXID);
        for (kind, value) in attributes {
            put_attribute(&mut out, *kind, value);
        }
        finish(out, fingerprint)
    }

    #[test]
    fn unknown_optional_attribute_is_ignored() {
        let request = request_with(&[(0xC001, b"xyz")], true);
        let response = answer(&request, v4("127.0.0.1:1")).expect("answered");
        assert_eq!(
            parse_binding_response(&response, &TXID),
            Ok(v4("127.0.0.1:1"))
        );
    }

    #[test]
    fn unknown_required_attribute_gets_420() {
        let request = request_with(&[(0x7777, b"abcd"), (ATTR_USERNAME, b"u")], false);
        let response = answer(&request, v4("127.0.0.1:1")).expect("answered");
        match parse_binding_response(&response, &TXID) {
            Err(StunError::ErrorResponse { code: 420, .. }) => {}
            other => panic!("expected a 420, got {other:?}"),
        }
        let frame = Frame::parse(&response).expect("framed");
        let mut listed = None;
        frame
            .walk(|a| {
                if a.kind == ATTR_UNKNOWN_ATTRIBUTES {
                    listed = Some(a.value.to_vec());
                }
            })
            .expect("walks");
        assert_eq!(listed, Some(vec![0x77, 0x77]));
    }

    #[test]
    fn change_request_only_when_no_change_is_asked() {
        let none = request_with(&[(ATTR_CHANGE_REQUEST, &[0, 0, 0, 0])], true);
        assert!(
            parse_binding_response(&answer(&none, v4("127.0.0.1:9")).expect("a"), &TXID).is_ok()
        );
        let change_ip = request_with(&[(ATTR_CHANGE_REQUEST, &[0, 0, 0, 4])], true);
        assert!(matches!(
            parse_binding_response(&answer(&change_ip, v4("127.0.0.1:9")).expect("a"), &TXID),
            Err(StunError::ErrorResponse { code: 420, .. })
        ));
    }

    #[test]
    fn bad_fingerprint_and_junk_are_dropped() {
        let mut request = binding_request(TXID);
        let last = request.len() - 1;
        request[last] ^= 0xff;
        assert_eq!(answer(&request, v4("127.0.0.1:1")), None);
        assert_eq!(answer(b"GET / HTTP/1.1\r\n\r\n", v4("127.0.0.1:1")), None);
        assert_eq!(answer(&[], v4("127.0.0.1:1")), None);
        // A response is not answered.
        let response = answer(&binding_request(TXID), v4("127.0.0.1:1")).expect("answered");
        assert_eq!(answer(&response, v4("127.0.0.1:1")), None);
        // An attribute running past the end.
        let mut broken = binding_request(TXID);
        broken[HEADER_LEN + 3] = 0xF0;
        assert_eq!(answer(&broken, v4("127.0.0.1:1")), None);
        // Attributes after FINGERPRINT.
        let mut trailing = binding_request(TXID);
        put_attribute(&mut trailing, ATTR_SOFTWARE, b"late");
        let body_len = trailing.len() - HEADER_LEN;
        set_length(&mut trailing, body_len);
        assert_eq!(answer(&trailing, v4("127.0.0.1:1")), None);
    }

    #[test]
    fn request_is_well_formed() {
        let request = binding_request(TXID);
        assert_eq!(&request[..2], &[0x00, 0x01]);
        assert_eq!(
            usize::from(u16::from_be_bytes([request[2], request[3]])),
            request.len() - HEADER_LEN
        );
        assert_eq!(&request[4..8], &MAGIC_COOKIE.to_be_bytes());
        assert_eq!(&request[8..20], &TXID);
        let frame = Frame::parse(&request).expect("framed");
        let mut kinds = Vec::new();
        frame
            .walk(|a| kinds.push(a.kind))
            .expect("fingerprint verifies");
        assert_eq!(kinds, [ATTR_SOFTWARE]);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = answer(&bytes, v4("127.0.0.1:1"));
            let _ = parse_binding_response(&bytes, &TXID);
        }

        #[test]
        fn random_attribute_lists_never_panic(
            attributes in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..24)), 0..6),
            fingerprint in any::<bool>(),
        ) {
            let borrowed: Vec<(u16, &[u8])> =
                attributes.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let mut request = request_with(&borrowed, fingerprint);
            let _ = answer(&request, v4("[2001:db8::1]:7"));
            let _ = parse_binding_response(&request, &TXID);
            request[0] = 0x01;
            request[1] = 0x01;
            let _ = parse_binding_response(&request, &TXID);
        }

        #[test]
        fn any_address_round_trips(ip in any::<[u8; 16]>(), port in any::<u16>(), v6 in any::<bool>(), id in any::<[u8; 12]>()) {
            let address = if v6 {
                let ip = Ipv6Addr::from(ip);
                // IPv4-mapped sources are answered as IPv4 on purpose.
                prop_assume!(ip.to_ipv4_mapped().is_none());
                SocketAddr::new(IpAddr::V6(ip), port)
            } else {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])), port)
            };
            let response = answer(&binding_request(id), address).expect("answered");
            prop_assert_eq!(parse_binding_response(&response, &id), Ok(address));
        }
    }
}
