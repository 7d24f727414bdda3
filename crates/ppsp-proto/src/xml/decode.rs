//! Decoding of XML bodies into the message model.
//!
//! The root's children may come in any order, so they are first collected into [`Fields`]
//! (each known element at most once) and only then checked against the per-method tables of
//! the draft digest (§3). Nested structures (peer lists, stats, clips) are parsed directly
//! into model values as their elements are met.

use std::borrow::Cow;
use std::net::IpAddr;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::reader::{Cursor, Next, Open, is_space, malformed, trim};
use crate::chunkmap::ChunkMap;
use crate::error::{DecodeError, DecodeErrorKind, Limits};
use crate::model::{
    AddressType, AuthToken, ChunkMapReport, ChunkSegments, Clip, Connect, Find, Join, Leave,
    MediaType, Message, Method, NatHints, PeerAddress, PeerId, PeerInfo, PeerMode, PeerNum,
    Request, RequestBody, Response, SaslAuth, Segment, Stat, StatReport, Status, StreamStats,
    SwarmId, SwarmResult, TransactionId,
};
use crate::words;

mod flat_stats;

/// Root element name.
const ROOT: &[u8] = b"PPSPTrackerProtocol";
/// How many `ReflexiveAddress` elements a CONNECT response may carry (one per family).
const MAX_REFLEXIVE: usize = 2;
/// Longest piece of offending input quoted back in an error message.
const MAX_QUOTED: usize = 64;

/// Lenient base64 for `Credentials`: the draft's own example has bad padding and non-zero
/// trailing bits, so both are tolerated (padding is stripped before decoding).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// SASL mechanisms whose exchange starts with a client message, so CONNECT must carry
/// `Credentials` (draft-gu-ppsp-tracker-protocol-06).
const CLIENT_FIRST_MECHANISMS: [&str; 2] = ["PLAIN", "SECURID"];

fn invalid(field: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::new(DecodeErrorKind::InvalidValue { field, reason })
}

fn duplicate(what: &'static str) -> DecodeError {
    DecodeError::new(DecodeErrorKind::Duplicate(what))
}

fn missing(what: &'static str) -> DecodeError {
    DecodeError::new(DecodeErrorKind::Missing(what))
}

/// Fails with `Duplicate` when `slot` is already filled.
fn once<T>(slot: &Option<T>, what: &'static str) -> Result<(), DecodeError> {
    if slot.is_some() {
        Err(duplicate(what))
    } else {
        Ok(())
    }
}

/// Fails with `TooMany` when a list already holds `limits.max_list_len` items.
fn room(len: usize, what: &'static str, limits: &Limits) -> Result<(), DecodeError> {
    if len >= limits.max_list_len {
        Err(DecodeErrorKind::TooMany {
            what,
            limit: limits.max_list_len,
        }
        .into())
    } else {
        Ok(())
    }
}

/// A short, lossless-enough quote of offending input for error messages.
fn quote(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}

fn parse_u64(field: &'static str, value: &str) -> Result<u64, DecodeError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(field, "must be a non-negative decimal integer"));
    }
    value
        .parse()
        .map_err(|_| invalid(field, "out of range for a 64-bit unsigned integer"))
}

fn parse_u32(field: &'static str, value: &str) -> Result<u32, DecodeError> {
    u32::try_from(parse_u64(field, value)?)
        .map_err(|_| invalid(field, "out of range for a 32-bit unsigned integer"))
}

fn parse_positive_u32(field: &'static str, value: &str) -> Result<u32, DecodeError> {
    match parse_u32(field, value)? {
        0 => Err(invalid(field, "must be at least 1")),
        n => Ok(n),
    }
}

fn parse_port(field: &'static str, value: &str) -> Result<u16, DecodeError> {
    u16::try_from(parse_u64(field, value)?).map_err(|_| invalid(field, "must be 0 to 65535"))
}

fn parse_ip(field: &'static str, value: &str) -> Result<IpAddr, DecodeError> {
    value
        .parse()
        .map_err(|_| invalid(field, "not an IPv4 or IPv6 address"))
}

fn parse_bool(field: &'static str, value: &str) -> Result<bool, DecodeError> {
    if value.eq_ignore_ascii_case("true") || value == "1" {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") || value == "0" {
        Ok(false)
    } else {
        Err(invalid(field, "must be true, false, 1 or 0"))
    }
}

fn parse_transaction_id(value: &str) -> Result<TransactionId, DecodeError> {
    Ok(TransactionId::numeric(parse_u64("TransactionID", value)?))
}

fn parse_method(value: &str) -> Result<Method, DecodeError> {
    Method::ALL
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(value))
        .ok_or_else(|| DecodeError::new(DecodeErrorKind::UnknownMethod(quote(value))))
}

/// True when `value`, with runs of white space taken as one space, equals `expected`
/// ignoring ASCII case.
fn words_match(value: &str, expected: &str) -> bool {
    let mut got = value.split_ascii_whitespace();
    let mut want = expected.split(' ');
    loop {
        match (got.next(), want.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => {}
            _ => return false,
        }
    }
}

fn parse_status(value: &str) -> Result<Status, DecodeError> {
    if let Some(status) = Status::ALL
        .into_iter()
        .find(|s| words_match(value, s.ppsp_str()))
    {
        return Ok(status);
    }
    // Strings only the draft's schema lists (draft-gu-ppsp-tracker-protocol-06).
    if words_match(value, "SUCCESSFUL") {
        Ok(Status::Ok)
    } else if words_match(value, "MESSAGE NOT SUPPORTED") {
        Ok(Status::InvalidSyntax)
    } else if words_match(value, "PAYMENT REQUIRED") {
        Ok(Status::MessageForbidden)
    } else {
        Err(invalid("Response", "not a PPSP response string"))
    }
}

fn parse_peer_mode(field: &'static str, value: &str) -> Result<PeerMode, DecodeError> {
    PeerMode::from_xml_name(value).ok_or_else(|| invalid(field, "must be SEED, LIVESEED or LEECH"))
}

fn parse_media(field: &'static str, value: &str) -> Result<MediaType, DecodeError> {
    if value.eq_ignore_ascii_case("video") {
        Ok(MediaType::Video)
    } else if value.eq_ignore_ascii_case("audio") {
        Ok(MediaType::Audio)
    } else {
        Err(invalid(field, "must be video or audio"))
    }
}

fn parse_address_type(value: &str) -> Result<AddressType, DecodeError> {
    AddressType::from_name(value, true)
        .ok_or_else(|| invalid("PeerAddress@type", "must be HOST, REFLEXIVE or PROXY"))
}

/// RFC 4422 §3.1: 1 to 20 characters of upper-case letters, digits, `-` and `_`.
fn check_mechanism(value: &str) -> Result<(), DecodeError> {
    let shape_ok = (1..=20).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if shape_ok {
        Ok(())
    } else {
        Err(invalid(
            "Auth@mechanism",
            "must be 1 to 20 of A-Z, 0-9, - and _ (RFC 4422)",
        ))
    }
}

/// Base64 with white space ignored and any amount of `=` padding (including none).
fn decode_credentials(text: &str) -> Result<Vec<u8>, DecodeError> {
    let compact: Cow<'_, str> = if text.bytes().any(|b| b.is_ascii_whitespace()) {
        Cow::Owned(text.chars().filter(|c| !c.is_ascii_whitespace()).collect())
    } else {
        Cow::Borrowed(text)
    };
    LENIENT_BASE64
        .decode(compact.trim_end_matches('='))
        .map_err(|_| DecodeError::new(DecodeErrorKind::InvalidBase64("Credentials")))
}

/// The root's known children, each read at most once, in whatever order they came.
#[derive(Default)]
struct Fields {
    method: Option<Method>,
    status: Option<Status>,
    peer_id: Option<PeerId>,
    auth_token: Option<AuthToken>,
    /// `AuthToken` was present, possibly empty.
    auth_token_seen: bool,
    transaction_id: Option<TransactionId>,
    swarm_id: Option<SwarmId>,
    mechanism: Option<String>,
    credentials: Option<Vec<u8>>,
    peer_addresses: Option<Vec<PeerAddress>>,
    reflexive: Vec<PeerAddress>,
    peer_mode: Option<PeerMode>,
    peer_num: Option<u32>,
    stats: Option<Vec<Stat>>,
    clip: Option<Clip>,
    expire_time: Option<u64>,
    peers: Option<Vec<PeerInfo>>,
}

/// Decodes a message of either direction.
pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
    if bytes.len() > limits.max_body_bytes {
        return Err(DecodeErrorKind::TooLarge {
            size: bytes.len(),
            limit: limits.max_body_bytes,
        }
        .into());
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("body is not UTF-8"))?;
    check_xml_chars(text)?;
    if let Some(fields) = flat(text, limits) {
        let message = fields.conclude();
        // Debug builds (the tests) and the fuzz targets check every flat message against
        // the full decoder, so that the fast path can never change an outcome.
        debug_assert_eq!(
            message,
            decode_events(text, limits),
            "the flat path and the full decoder disagree on {text:?}"
        );
        return message;
    }
    decode_events(text, limits)
}

/// The full decoder: quick-xml's events through [`Cursor`], for any document.
fn decode_events(text: &str, limits: &Limits) -> Result<Message, DecodeError> {
    let mut fields = Fields::default();
    match parse(text, limits, &mut fields) {
        Ok(()) => fields.conclude(),
        Err(e) => {
            let id = match (&fields.transaction_id, &e.kind) {
                (Some(id), _) => Some(id.clone()),
                // Nothing past a DOCTYPE is ever read.
                (None, DecodeErrorKind::DoctypeForbidden) => None,
                (None, _) => salvage_transaction_id(text, limits),
            };
            Err(e.with_transaction_id(id))
        }
    }
}

/// The declarations the flat path knows; any other goes to the full decoder.
const FLAT_DECLARATIONS: [&str; 4] = [
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>",
    "<?xml version=\"1.0\"?>",
    "<?xml version='1.0' encoding='UTF-8'?>",
];

/// The fast path for flat messages, most of a tracker's traffic (FIND, KEEPALIVE, LEAVE,
/// DISCONNECT, a JOIN without a clip, a STAT_REPORT and their short answers): an optional
/// known declaration, the root with only its `version`, and children that each hold plain
/// text, or `Stats` in the shape the encoder writes (see [`flat_stats`]).
/// The text is read by string search and stored by [`text_field`], the full decoder's own
/// rules, so the outcome is the same; the full decoder takes over (`None`) at anything
/// else: an entity or character reference, CDATA, a comment, an attribute or a child
/// inside a child, a prefix, a carriage return, an element that is not a text field, or a
/// value any rule refuses (so that errors are always the full decoder's).
fn flat(text: &str, limits: &Limits) -> Option<Fields> {
    // The root's children are at depth 2.
    if limits.max_depth < 2 {
        return None;
    }
    let mut rest = text;
    if let Some(after) = FLAT_DECLARATIONS
        .iter()
        .find_map(|declaration| rest.strip_prefix(declaration))
    {
        rest = after;
    }
    rest = rest
        .trim_start_matches(is_space)
        .strip_prefix("<PPSPTrackerProtocol version=")?;
    let quote = rest.chars().next().filter(|c| matches!(c, '"' | '\''))?;
    rest = &rest[1..];
    let (version, after) = rest.split_once(quote)?;
    if version.contains(['&', '<']) {
        return None;
    }
    check_version(version).ok()?;
    rest = after.strip_prefix('>')?;
    let mut fields = Fields::default();
    loop {
        rest = rest.trim_start_matches(is_space);
        if let Some(after) = rest.strip_prefix("</PPSPTrackerProtocol>") {
            return after.trim_matches(is_space).is_empty().then_some(fields);
        }
        rest = rest.strip_prefix('<')?;
        let name_len = rest.bytes().position(|b| !b.is_ascii_alphabetic())?;
        let (name, after) = rest.split_at(name_len);
        if name == "Stats" && fields.stats.is_none() {
            let (stats, after) = flat_stats::stats(after, limits)?;
            fields.stats = Some(stats);
            rest = after;
            continue;
        }
        let (value, after) = after.strip_prefix('>')?.split_once('<')?;
        if !is_text_field(name.as_bytes())
            || value.bytes().any(|b| matches!(b, b'&' | b'>' | b'\r'))
        {
            return None;
        }
        rest = after
            .strip_prefix('/')?
            .strip_prefix(name)?
            .strip_prefix('>')?;
        text_field(name.as_bytes(), trim(Cow::Borrowed(value)), &mut fields).ok()?;
    }
}

/// Bytes that start a character XML 1.0 refuses anywhere in a document: the C0 controls
/// other than tab, line feed and carriage return, and `0xEF`, which begins U+FFFE and
/// U+FFFF (`EF BF BE`, `EF BF BF`) among other, allowed characters.
static SUSPECT_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = !matches!(byte as u8, b'\t' | b'\n' | b'\r');
        byte += 1;
    }
    table[0xEF] = true;
    table
};

/// XML 1.0 allows no C0 control character other than tab, line feed and carriage return,
/// and neither U+FFFE nor U+FFFF, anywhere in a document. quick-xml does not check this;
/// a value carrying one would break every strict parser it was relayed to. One pass with a
/// table lookup per byte: every request body goes through it.
fn check_xml_chars(text: &str) -> Result<(), DecodeError> {
    let bytes = text.as_bytes();
    let refused_at = |at: usize, byte: u8| {
        SUSPECT_BYTES[usize::from(byte)]
            && (byte != 0xEF || matches!(bytes.get(at + 1..at + 3), Some([0xBF, 0xBE | 0xBF])))
    };
    // Eight bytes at a time: a word of printable ASCII (no byte below 0x20, none at or above
    // 0x80) holds no suspect byte, and compact documents are nothing else. A byte below 0x20
    // borrows into its high bit when 0x20 is taken from it (no false negatives).
    let refused = words::any_refused(
        bytes,
        |word| (word | word.wrapping_sub(words::repeat(0x20))) & words::HIGH_BITS != 0,
        refused_at,
    );
    if refused {
        return Err(malformed("character not allowed in XML"));
    }
    Ok(())
}

/// After an error that stopped the parse before `TransactionID` was read, looks for it
/// anyway so the error response can echo it. Stops quietly at the first problem.
fn salvage_transaction_id(text: &str, limits: &Limits) -> Option<TransactionId> {
    let mut cursor = Cursor::new(text, limits);
    let root = cursor.root().ok()?;
    if root.empty || root.local() != ROOT {
        return None;
    }
    loop {
        match cursor.next().ok()? {
            Next::End => return None,
            Next::Child(child) if child.local() == b"TransactionID" => {
                let value = trim(cursor.text(&child).ok()?);
                return parse_transaction_id(&value).ok();
            }
            Next::Child(child) => cursor.skip(&child).ok()?,
        }
    }
}

fn check_version(version: &str) -> Result<(), DecodeError> {
    let version = version.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    let (major, minor) = version.split_once('.').unwrap_or((version, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return Err(DecodeErrorKind::BadVersion.into());
    }
    // Compare as text so that absurdly long numbers cannot overflow anything.
    if major.trim_start_matches('0') == "1" {
        Ok(())
    } else {
        Err(DecodeErrorKind::UnsupportedVersion(quote(version)).into())
    }
}

fn parse(text: &str, limits: &Limits, fields: &mut Fields) -> Result<(), DecodeError> {
    let mut cursor = Cursor::new(text, limits);
    let root = cursor.root()?;
    if root.local() != ROOT {
        return Err(
            DecodeErrorKind::WrongRoot(quote(&String::from_utf8_lossy(root.local()))).into(),
        );
    }
    let mut version_seen = false;
    cursor.attributes(&root, |name, value| {
        if name == b"version" {
            version_seen = true;
            check_version(&value)?;
        }
        Ok(())
    })?;
    if !version_seen {
        return Err(DecodeErrorKind::BadVersion.into());
    }
    if !root.empty {
        while let Next::Child(child) = cursor.next()? {
            root_child(&mut cursor, &child, fields)?;
        }
    }
    cursor.finish()
}

fn text<'i>(cursor: &mut Cursor<'i, '_>, open: &Open<'i>) -> Result<Cow<'i, str>, DecodeError> {
    cursor.text(open).map(trim)
}

fn root_child<'i>(
    cursor: &mut Cursor<'i, '_>,
    child: &Open<'i>,
    f: &mut Fields,
) -> Result<(), DecodeError> {
    let limits = cursor.limits();
    match child.local() {
        name if is_text_field(name) => text_field(name, text(cursor, child)?, f)?,
        b"Auth" => {
            once(&f.mechanism, "Auth")?;
            let mut mechanism = None;
            cursor.attributes(child, |name, value| {
                if name == b"mechanism" {
                    let value = trim(value);
                    check_mechanism(&value)?;
                    mechanism = Some(value.into_owned());
                }
                Ok(())
            })?;
            f.mechanism = Some(mechanism.ok_or_else(|| missing("Auth@mechanism"))?);
            cursor.skip(child)?;
        }
        b"PeerAddresses" => {
            once(&f.peer_addresses, "PeerAddresses")?;
            f.peer_addresses = Some(peer_addresses(cursor, child)?);
        }
        b"ReflexiveAddress" => {
            if f.reflexive.len() >= MAX_REFLEXIVE {
                return Err(DecodeErrorKind::TooMany {
                    what: "ReflexiveAddress",
                    limit: MAX_REFLEXIVE,
                }
                .into());
            }
            f.reflexive.push(address(cursor, child, true)?);
            cursor.skip(child)?;
        }
        b"Stats" => {
            once(&f.stats, "Stats")?;
            f.stats = Some(stats(cursor, child)?);
        }
        b"Clip" => {
            once(&f.clip, "Clip")?;
            f.clip = Some(clip(cursor, child)?);
        }
        b"PeerInfoList" => {
            once(&f.peers, "PeerInfoList")?;
            f.peers = Some(peer_info_list(cursor, child, limits)?);
        }
        _ => cursor.skip(child)?,
    }
    Ok(())
}

/// The root's children whose value is their text, read by [`text_field`]; the ones the
/// flat path can take.
fn is_text_field(name: &[u8]) -> bool {
    matches!(
        name,
        b"Method"
            | b"Response"
            | b"PeerID"
            | b"AuthToken"
            | b"TransactionID"
            | b"SwarmID"
            | b"Credentials"
            | b"PeerMode"
            | b"PeerNum"
            | b"ExpireTime"
    )
}

/// Stores `value`, the trimmed text of the root's child `name` (see [`is_text_field`]).
fn text_field(name: &[u8], value: Cow<'_, str>, f: &mut Fields) -> Result<(), DecodeError> {
    match name {
        b"Method" => {
            once(&f.method, "Method")?;
            if f.status.is_some() {
                return Err(DecodeErrorKind::BothDirections.into());
            }
            f.method = Some(parse_method(&value)?);
        }
        b"Response" => {
            once(&f.status, "Response")?;
            if f.method.is_some() {
                return Err(DecodeErrorKind::BothDirections.into());
            }
            f.status = Some(parse_status(&value)?);
        }
        b"PeerID" => {
            once(&f.peer_id, "PeerID")?;
            f.peer_id = Some(PeerId::new(value)?);
        }
        b"AuthToken" => {
            if f.auth_token_seen {
                return Err(duplicate("AuthToken"));
            }
            f.auth_token_seen = true;
            // An empty token is treated like a missing one: an authentication failure for
            // the tracker to answer (401), not a syntax error (draft-gu-ppsp-tracker-protocol-06).
            if !value.is_empty() {
                f.auth_token = Some(AuthToken::new(value)?);
            }
        }
        b"TransactionID" => {
            once(&f.transaction_id, "TransactionID")?;
            f.transaction_id = Some(parse_transaction_id(&value)?);
        }
        b"SwarmID" => {
            once(&f.swarm_id, "SwarmID")?;
            f.swarm_id = Some(SwarmId::new(value)?);
        }
        b"Credentials" => {
            once(&f.credentials, "Credentials")?;
            f.credentials = Some(decode_credentials(&value)?);
        }
        b"PeerMode" => {
            once(&f.peer_mode, "PeerMode")?;
            f.peer_mode = Some(parse_peer_mode("PeerMode", &value)?);
        }
        b"PeerNum" => {
            // -07 attributes (abilityNAT, concurrentLinks, ...) are tolerated and ignored.
            once(&f.peer_num, "PeerNum")?;
            f.peer_num = Some(parse_positive_u32("PeerNum", &value)?);
        }
        b"ExpireTime" => {
            once(&f.expire_time, "ExpireTime")?;
            f.expire_time = Some(parse_u64("ExpireTime", &value)?);
        }
        _ => {}
    }
    Ok(())
}

/// `ip` and `port` (mandatory), `priority` and `type` (optional) of an address element.
/// Other attributes, such as -07's `addrType`, `connection` and `asn`, are ignored, and so
/// are `priority` and `type` on a `ReflexiveAddress`, which has neither.
fn address<'i>(
    cursor: &Cursor<'i, '_>,
    open: &Open<'i>,
    reflexive: bool,
) -> Result<PeerAddress, DecodeError> {
    let (ip_field, port_field) = if reflexive {
        ("ReflexiveAddress@ip", "ReflexiveAddress@port")
    } else {
        ("PeerAddress@ip", "PeerAddress@port")
    };
    let (mut ip, mut port, mut priority, mut kind) = (None, None, None, None);
    cursor.attributes(open, |name, value| {
        let value = trim(value);
        match name {
            b"ip" => ip = Some(parse_ip(ip_field, &value)?),
            b"port" => port = Some(parse_port(port_field, &value)?),
            b"priority" if !reflexive => {
                priority = Some(parse_u32("PeerAddress@priority", &value)?);
            }
            b"type" if !reflexive => kind = Some(parse_address_type(&value)?),
            _ => {}
        }
        Ok(())
    })?;
    let mut addr = PeerAddress::new(
        ip.ok_or_else(|| missing(ip_field))?,
        port.ok_or_else(|| missing(port_field))?,
    );
    addr.priority = priority;
    addr.kind = kind;
    Ok(addr)
}

fn peer_addresses<'i>(
    cursor: &mut Cursor<'i, '_>,
    open: &Open<'i>,
) -> Result<Vec<PeerAddress>, DecodeError> {
    let limits = cursor.limits();
    let mut out = Vec::new();
    if open.empty {
        return Ok(out);
    }
    while let Next::Child(child) = cursor.next()? {
        if child.local() == b"PeerAddress" {
            room(out.len(), "PeerAddress", limits)?;
            out.push(address(cursor, &child, false)?);
        }
        cursor.skip(&child)?;
    }
    Ok(out)
}

fn stats<'i>(cursor: &mut Cursor<'i, '_>, open: &Open<'i>) -> Result<Vec<Stat>, DecodeError> {
    let limits = cursor.limits();
    let mut out = Vec::new();
    let mut seen = 0usize;
    if open.empty {
        return Ok(out);
    }
    while let Next::Child(child) = cursor.next()? {
        if child.local() != b"Stat" {
            cursor.skip(&child)?;
            continue;
        }
        // Unknown properties count too: they cost parsing time all the same.
        room(seen, "Stat", limits)?;
        seen += 1;
        let mut property = None;
        cursor.attributes(&child, |name, value| {
            if name == b"property" {
                property = Some(StatProperty::classify(&trim(value)));
            }
            Ok(())
        })?;
        match property.ok_or_else(|| missing("Stat@property"))? {
            StatProperty::Nat => {
                out.push(Stat::Nat(parse_bool("Stat NAT", &text(cursor, &child)?)?));
            }
            StatProperty::Stun => {
                out.push(Stat::Stun(parse_bool("Stat STUN", &text(cursor, &child)?)?));
            }
            StatProperty::ChunkMap => {
                let report = single_report(cursor, &child, b"ChunkMapReport", chunk_map_report)?;
                out.push(Stat::ChunkMap(
                    report.ok_or_else(|| missing("ChunkMapReport"))?,
                ));
            }
            StatProperty::StreamStats => {
                let report =
                    single_report(cursor, &child, b"StreamStatsReport", stream_stats_report)?;
                out.push(Stat::StreamStats(
                    report.ok_or_else(|| missing("StreamStatsReport"))?,
                ));
            }
            // Unknown properties are ignored (draft-gu-ppsp-tracker-protocol-06).
            StatProperty::Unknown => cursor.skip(&child)?,
        }
    }
    Ok(out)
}

/// The `Stat@property` values this codec understands (matched case-insensitively).
enum StatProperty {
    Nat,
    Stun,
    ChunkMap,
    StreamStats,
    Unknown,
}

impl StatProperty {
    fn classify(value: &str) -> Self {
        if value.eq_ignore_ascii_case("NAT") {
            Self::Nat
        } else if value.eq_ignore_ascii_case("STUN") {
            Self::Stun
        } else if value.eq_ignore_ascii_case("ChunkMap") {
            Self::ChunkMap
        } else if value.eq_ignore_ascii_case("StreamStats") {
            Self::StreamStats
        } else {
            Self::Unknown
        }
    }
}

/// Reads the one report element named `name` inside a `Stat`; other children are ignored.
fn single_report<'i, T>(
    cursor: &mut Cursor<'i, '_>,
    stat: &Open<'i>,
    name: &'static [u8],
    parse: fn(&mut Cursor<'i, '_>, &Open<'i>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    let mut report = None;
    if stat.empty {
        return Ok(None);
    }
    while let Next::Child(child) = cursor.next()? {
        if child.local() == name {
            if report.is_some() {
                return Err(duplicate(if name == b"ChunkMapReport" {
                    "ChunkMapReport"
                } else {
                    "StreamStatsReport"
                }));
            }
            report = Some(parse(cursor, &child)?);
        } else {
            cursor.skip(&child)?;
        }
    }
    Ok(report)
}

fn chunk_map_report<'i>(
    cursor: &mut Cursor<'i, '_>,
    open: &Open<'i>,
) -> Result<ChunkMapReport, DecodeError> {
    let limits = cursor.limits();
    let mut swarm_id = None;
    let mut clips = Vec::new();
    if !open.empty {
        while let Next::Child(child) = cursor.next()? {
            match child.local() {
                b"SwarmID" => {
                    once(&swarm_id, "ChunkMapReport/SwarmID")?;
                    swarm_id = Some(SwarmId::new(text(cursor, &child)?)?);
                }
                b"Clip" => {
                    room(clips.len(), "Clip", limits)?;
                    clips.push(clip(cursor, &child)?);
                }
                _ => cursor.skip(&child)?,
            }
        }
    }
    if clips.is_empty() {
        return Err(missing("ChunkMapReport/Clip"));
    }
    Ok(ChunkMapReport {
        swarm_id: swarm_id.ok_or_else(|| missing("ChunkMapReport/SwarmID"))?,
        clips,
    })
}

fn stream_stats_report<'i>(
    cursor: &mut Cursor<'i, '_>,
    open: &Open<'i>,
) -> Result<StreamStats, DecodeError> {
    let mut stats = StreamStats::default();
    if !open.empty {
        while let Next::Child(child) = cursor.next()? {
            if is_stream_stats_field(child.local()) {
                stream_stats_field(&mut stats, child.local(), &text(cursor, &child)?)?;
            } else {
                cursor.skip(&child)?;
            }
        }
    }
    finish_stream_stats(stats)
}

/// The children of `StreamStatsReport` that [`stream_stats_field`] reads.
fn is_stream_stats_field(name: &[u8]) -> bool {
    matches!(
        name,
        b"SwarmID" | b"UploadedBytes" | b"DownloadedBytes" | b"AvailBandwidth"
    )
}

/// Stores `value`, the trimmed text of the `StreamStatsReport` child `name`.
fn stream_stats_field(
    stats: &mut StreamStats,
    name: &[u8],
    value: &str,
) -> Result<(), DecodeError> {
    let (slot, what) = match name {
        b"SwarmID" => {
            once(&stats.swarm_id, "StreamStatsReport/SwarmID")?;
            stats.swarm_id = Some(SwarmId::new(value)?);
            return Ok(());
        }
        b"UploadedBytes" => (&mut stats.uploaded_bytes, "UploadedBytes"),
        b"DownloadedBytes" => (&mut stats.downloaded_bytes, "DownloadedBytes"),
        b"AvailBandwidth" => (&mut stats.available_bandwidth, "AvailBandwidth"),
        _ => return Ok(()),
    };
    once(slot, what)?;
    *slot = Some(parse_u64(what, value)?);
    Ok(())
}

fn finish_stream_stats(stats: StreamStats) -> Result<StreamStats, DecodeError> {
    if stats.swarm_id.is_none() {
        return Err(missing("StreamStatsReport/SwarmID"));
    }
    Ok(stats)
}

/// A `Clip` as its children are read.
#[derive(Default)]
struct ClipParts {
    name: Option<String>,
    kind: Option<MediaType>,
    index: Option<u64>,
    segments: Option<ChunkSegments>,
}

impl ClipParts {
    /// Stores `value`, the trimmed text of the `Clip` child `name` (`Name`, `Type` or
    /// `ChunkSegmentIndex`; others are ignored).
    fn text_child(&mut self, name: &[u8], value: &str) -> Result<(), DecodeError> {
        match name {
            b"Name" => {
                once(&self.name, "Clip/Name")?;
                self.name = Some(value.to_owned());
            }
            b"Type" => {
                once(&self.kind, "Clip/Type")?;
                self.kind = Some(parse_media("Clip/Type", value)?);
            }
            b"ChunkSegmentIndex" => {
                once(&self.index, "ChunkSegmentIndex")?;
                self.index = Some(parse_u64("ChunkSegmentIndex", value)?);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<Clip, DecodeError> {
        Ok(Clip {
            name: self.name.ok_or_else(|| missing("Clip/Name"))?,
            kind: self.kind,
            chunk_segment_index: self.index,
            segments: self.segments,
        })
    }
}

fn clip<'i>(cursor: &mut Cursor<'i, '_>, open: &Open<'i>) -> Result<Clip, DecodeError> {
    let mut parts = ClipParts::default();
    if !open.empty {
        while let Next::Child(child) = cursor.next()? {
            match child.local() {
                name @ (b"Name" | b"Type" | b"ChunkSegmentIndex") => {
                    parts.text_child(name, &text(cursor, &child)?)?;
                }
                b"ChunkSegments" => {
                    once(&parts.segments, "ChunkSegments")?;
                    parts.segments = Some(chunk_segments(cursor, &child)?);
                }
                _ => cursor.skip(&child)?,
            }
        }
    }
    parts.finish()
}

fn chunk_segments<'i>(
    cursor: &mut Cursor<'i, '_>,
    open: &Open<'i>,
) -> Result<ChunkSegments, DecodeError> {
    let limits = cursor.limits();
    let mut media = None;
    cursor.attributes(open, |name, value| {
        if name == b"type" {
            media = Some(parse_media("ChunkSegments@type", &trim(value))?);
        }
        Ok(())
    })?;
    let media = media.ok_or_else(|| missing("ChunkSegments@type"))?;
    let mut segments = Vec::new();
    if !open.empty {
        while let Next::Child(child) = cursor.next()? {
            if child.local() == b"Segment" {
                room(segments.len(), "Segment", limits)?;
                segments.push(segment(cursor, &child)?);
            } else {
                cursor.skip(&child)?;
            }
        }
    }
    if segments.is_empty() {
        return Err(missing("Segment"));
    }
    Ok(ChunkSegments { media, segments })
}

fn segment<'i>(cursor: &mut Cursor<'i, '_>, open: &Open<'i>) -> Result<Segment, DecodeError> {
    let limits = cursor.limits();
    let mut parts = SegmentParts::default();
    cursor.attributes(open, |name, value| parts.attribute(name, &trim(value)))?;
    parts.check(limits)?;
    let bitmap = text(cursor, open)?;
    parts.finish(&bitmap, limits)
}

/// A `Segment` as its attributes are read.
#[derive(Default)]
struct SegmentParts {
    from: Option<u64>,
    to: Option<u64>,
    levels: Option<u32>,
    chunks: Option<u64>,
    bits: Option<u64>,
}

impl SegmentParts {
    /// Stores the trimmed attribute `name`; unknown ones are ignored.
    fn attribute(&mut self, name: &[u8], value: &str) -> Result<(), DecodeError> {
        match name {
            b"from" => self.from = Some(parse_u64("Segment@from", value)?),
            b"to" => self.to = Some(parse_u64("Segment@to", value)?),
            b"levels" => self.levels = Some(parse_positive_u32("Segment@levels", value)?),
            b"chunks" => match parse_u64("Segment@chunks", value)? {
                0 => return Err(invalid("Segment@chunks", "must be at least 1")),
                n => self.chunks = Some(n),
            },
            // `bitmapSize` is cruz-01's spelling of the same attribute.
            b"bitmapsize" | b"bitmapSize" => {
                once(&self.bits, "Segment@bitmapsize")?;
                self.bits = Some(parse_u64("Segment@bitmapsize", value)?);
            }
            _ => {}
        }
        Ok(())
    }

    /// What the attributes alone can refuse, before the bitmap's text is read.
    fn check(&self, limits: &Limits) -> Result<(), DecodeError> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && to < from
        {
            return Err(invalid("Segment@to", "must not be less than from"));
        }
        if self.bits.is_some_and(|b| b > limits.max_bitmap_bits) {
            return Err(DecodeErrorKind::ChunkMap("more bits than the limit").into());
        }
        Ok(())
    }

    /// The segment, with the chunk map `bitmap` (trimmed base64, empty for none).
    fn finish(self, bitmap: &str, limits: &Limits) -> Result<Segment, DecodeError> {
        let map = if self.bits.is_some() || !bitmap.is_empty() {
            let from = self.from.ok_or_else(|| missing("Segment@from"))?;
            let to = self.to.ok_or_else(|| missing("Segment@to"))?;
            let span = (to - from)
                .checked_add(1)
                .ok_or(DecodeErrorKind::ChunkMap("range too large"))?;
            if self.bits.is_some_and(|b| b != span) {
                return Err(DecodeErrorKind::ChunkMap("bitmapsize is not to - from + 1").into());
            }
            if span > limits.max_bitmap_bits {
                return Err(DecodeErrorKind::ChunkMap("more bits than the limit").into());
            }
            Some(ChunkMap::from_base64(
                from,
                span,
                bitmap,
                limits.max_bitmap_bits,
            )?)
        } else {
            None
        };
        Ok(Segment {
            from: self.from,
            to: self.to,
            levels: self.levels,
            chunks: self.chunks,
            map,
        })
    }
}

fn peer_info_list<'i>(
    cursor: &mut Cursor<'i, '_>,
    open: &Open<'i>,
    limits: &Limits,
) -> Result<Vec<PeerInfo>, DecodeError> {
    let mut out = Vec::new();
    if open.empty {
        return Ok(out);
    }
    while let Next::Child(child) = cursor.next()? {
        if child.local() == b"PeerInfo" {
            room(out.len(), "PeerInfo", limits)?;
            out.push(peer_info(cursor, &child)?);
        } else {
            cursor.skip(&child)?;
        }
    }
    Ok(out)
}

fn peer_info<'i>(cursor: &mut Cursor<'i, '_>, open: &Open<'i>) -> Result<PeerInfo, DecodeError> {
    let mut peer_id = None;
    let mut mode = None;
    let mut addresses = None;
    let mut location = None;
    let mut connection_type = None;
    let mut rank_cost = None;
    if !open.empty {
        while let Next::Child(child) = cursor.next()? {
            match child.local() {
                b"PeerID" => {
                    once(&peer_id, "PeerInfo/PeerID")?;
                    peer_id = Some(PeerId::new(text(cursor, &child)?)?);
                }
                // The draft's schema calls it PeerType, its examples PeerMode.
                b"PeerMode" | b"PeerType" => {
                    once(&mode, "PeerInfo/PeerMode")?;
                    mode = Some(parse_peer_mode(
                        "PeerInfo/PeerMode",
                        &text(cursor, &child)?,
                    )?);
                }
                b"PeerAddresses" => {
                    once(&addresses, "PeerInfo/PeerAddresses")?;
                    addresses = Some(peer_addresses(cursor, &child)?);
                }
                b"PeerLocation" => {
                    once(&location, "PeerLocation")?;
                    location = Some(text(cursor, &child)?.into_owned());
                }
                b"ConnectionType" => {
                    once(&connection_type, "ConnectionType")?;
                    connection_type = Some(text(cursor, &child)?.into_owned());
                }
                b"EndPointRankCost" => {
                    once(&rank_cost, "EndPointRankCost")?;
                    let value = text(cursor, &child)?;
                    rank_cost = Some(
                        value
                            .parse::<i64>()
                            .map_err(|_| invalid("EndPointRankCost", "not a 64-bit integer"))?,
                    );
                }
                _ => cursor.skip(&child)?,
            }
        }
    }
    Ok(PeerInfo {
        peer_id: peer_id.ok_or_else(|| missing("PeerInfo/PeerID"))?,
        mode,
        addresses: addresses.unwrap_or_default(),
        location,
        connection_type,
        rank_cost,
    })
}

/// JOIN and FIND carry the NAT/STUN flags as `Stat` properties; reports there are ignored.
fn hints(stats: Option<Vec<Stat>>) -> Result<NatHints, DecodeError> {
    let mut hints = NatHints::default();
    for stat in stats.unwrap_or_default() {
        match stat {
            Stat::Nat(value) => {
                once(&hints.nat, "Stat NAT")?;
                hints.nat = Some(value);
            }
            Stat::Stun(value) => {
                once(&hints.stun, "Stat STUN")?;
                hints.stun = Some(value);
            }
            Stat::ChunkMap(_) | Stat::StreamStats(_) => {}
        }
    }
    Ok(hints)
}

impl Fields {
    /// The message the fields make, its errors carrying the transaction ID when one was read.
    fn conclude(self) -> Result<Message, DecodeError> {
        // Kept as a number so the success path does not copy the ID.
        let id = self.transaction_id.as_ref().and_then(TransactionId::as_u64);
        self.into_message()
            .map_err(|e| e.with_transaction_id(id.map(TransactionId::numeric)))
    }

    fn into_message(self) -> Result<Message, DecodeError> {
        match (self.method, self.status) {
            (Some(_), Some(_)) => Err(DecodeErrorKind::BothDirections.into()),
            (None, None) => Err(DecodeErrorKind::NoDirection.into()),
            (Some(method), None) => self.into_request(method).map(Message::Request),
            (None, Some(status)) => self.into_response(status).map(Message::Response),
        }
    }

    fn into_request(self, method: Method) -> Result<Request, DecodeError> {
        let peer_id = self.peer_id.ok_or_else(|| missing("PeerID"))?;
        let transaction_id = self
            .transaction_id
            .ok_or_else(|| missing("TransactionID"))?;
        let swarm_id = self.swarm_id;
        let need_swarm = move || swarm_id.ok_or_else(|| missing("SwarmID"));
        let body = match method {
            Method::Connect => {
                let mechanism = self.mechanism.ok_or_else(|| missing("Auth"))?;
                if self.credentials.is_none() && CLIENT_FIRST_MECHANISMS.contains(&&*mechanism) {
                    return Err(missing("Credentials"));
                }
                RequestBody::Connect(Connect {
                    auth: Some(SaslAuth {
                        mechanism,
                        credentials: self.credentials,
                    }),
                    addresses: self.peer_addresses.unwrap_or_default(),
                    peer_num: None,
                    swarm_actions: Vec::new(),
                })
            }
            Method::Disconnect => RequestBody::Disconnect,
            Method::Join => RequestBody::Join(Join {
                swarm_id: need_swarm()?,
                mode: self.peer_mode.ok_or_else(|| missing("PeerMode"))?,
                hints: hints(self.stats)?,
                peer_num: self.peer_num,
                clip: self.clip,
                // The draft (draft-gu-ppsp-tracker-protocol-06): a missing ExpireTime means no expiry.
                expire_time: self.expire_time.unwrap_or(0),
            }),
            Method::Leave => RequestBody::Leave(Leave {
                swarm_id: need_swarm()?,
            }),
            Method::Find => RequestBody::Find(Find {
                swarm_id: need_swarm()?,
                peer_num: self.peer_num.map(PeerNum::count),
                hints: hints(self.stats)?,
                clip: self.clip,
            }),
            Method::StatReport => RequestBody::StatReport(StatReport {
                stats: self.stats.ok_or_else(|| missing("Stats"))?,
            }),
            Method::KeepAlive => RequestBody::KeepAlive,
        };
        Ok(Request {
            peer_id,
            auth_token: self.auth_token,
            transaction_id,
            body,
        })
    }

    fn into_response(self, status: Status) -> Result<Response, DecodeError> {
        // Error bodies may lack the ID when the request was unreadable (draft-gu-ppsp-tracker-protocol-06); a
        // success always echoes it.
        if status == Status::Ok && self.transaction_id.is_none() {
            return Err(missing("TransactionID"));
        }
        let swarm_results = match (self.swarm_id, self.peers) {
            (Some(swarm_id), peers) => vec![SwarmResult {
                swarm_id,
                ok: true,
                peers: peers.unwrap_or_default(),
            }],
            (None, Some(_)) => return Err(missing("SwarmID")),
            (None, None) => Vec::new(),
        };
        Ok(Response {
            status,
            transaction_id: self.transaction_id,
            auth_token: self.auth_token,
            reflexive_addresses: self.reflexive,
            swarm_results,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIND: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><PPSPTrackerProtocol \
version=\"1.0\"><Method>FIND</Method><PeerID>wrk-peer-1</PeerID><AuthToken>AAAAAQ3Mu9bVZkZR\
</AuthToken><SwarmID>fill-swarm-0</SwarmID><PeerNum>20</PeerNum><TransactionID>1000064\
</TransactionID></PPSPTrackerProtocol>";

    /// `text` decoded by the flat path, which must take it, and by the full decoder.
    fn both(text: &str) -> (Result<Message, DecodeError>, Result<Message, DecodeError>) {
        let limits = Limits::default();
        let fields = flat(text, &limits).unwrap_or_else(|| panic!("flat path refused {text:?}"));
        (fields.conclude(), decode_events(text, &limits))
    }

    /// The flat path refuses every one of `texts`, and the public entry point (which checks
    /// against the full decoder in debug builds) gives the full decoder's outcome.
    fn assert_left_to_the_full_decoder(texts: &[String], limits: &Limits) {
        for text in texts {
            assert!(flat(text, limits).is_none(), "flat path took {text:?}");
            assert_eq!(decode(text.as_bytes(), limits), decode_events(text, limits));
        }
    }

    #[test]
    fn the_flat_path_takes_flat_messages_and_agrees_with_the_full_decoder() {
        let pretty = "<?xml version=\"1.0\"?>\n<PPSPTrackerProtocol version='1.0'>\n  \
<Method>JOIN</Method>\n  <PeerID> peer-7 </PeerID>\n  <AuthToken>tok</AuthToken>\n  \
<SwarmID>s</SwarmID>\n  <PeerMode>SEED</PeerMode>\n  <ExpireTime>60</ExpireTime>\n  \
<TransactionID>3</TransactionID>\n</PPSPTrackerProtocol>\n";
        let keepalive = "<PPSPTrackerProtocol version=\"1.0\"><Method>KEEPALIVE</Method>\
<PeerID>p</PeerID><AuthToken>t</AuthToken><TransactionID>9</TransactionID>\
</PPSPTrackerProtocol>";
        let answer = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PPSPTrackerProtocol \
version=\"1.0\"><Response>OK</Response><TransactionID>9</TransactionID>\
</PPSPTrackerProtocol>\n";
        for text in [FIND, pretty, keepalive, answer] {
            let (fast, full) = both(text);
            assert!(fast.is_ok(), "{text}: {fast:?}");
            assert_eq!(fast, full, "{text}");
        }
        let Ok(Message::Request(find)) = both(FIND).0 else {
            panic!("FIND is a request");
        };
        assert_eq!(find.peer_id.as_str(), "wrk-peer-1");
        assert_eq!(find.transaction_id, TransactionId::numeric(1_000_064));
        let RequestBody::Find(body) = find.body else {
            panic!("a FIND body");
        };
        assert_eq!(body.swarm_id.as_str(), "fill-swarm-0");
        assert_eq!(body.peer_num.map(|n| n.count), Some(20));
    }

    /// A STAT_REPORT with every part the flat path reads `Stats` for.
    const STAT_REPORT: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><PPSPTrackerProtocol \
version=\"1.0\"><Method>STAT_REPORT</Method><PeerID>bench-2f67bc2f-2</PeerID><AuthToken>\
AAB3KFGKi3YIwxHups7LsRPrO2HdyxHP</AuthToken><TransactionID>3</TransactionID><Stats><Stat \
property=\"StreamStats\"><StreamStatsReport><SwarmID>bench-swarm-2</SwarmID><UploadedBytes>\
52905</UploadedBytes><DownloadedBytes>65536</DownloadedBytes><AvailBandwidth>10000000\
</AvailBandwidth></StreamStatsReport></Stat><Stat property=\"ChunkMap\"><ChunkMapReport>\
<SwarmID>bench-swarm-2</SwarmID><Clip><Name>bench</Name><Type>Video</Type><ChunkSegmentIndex>\
4</ChunkSegmentIndex><ChunkSegments type=\"video\"><Segment from=\"100\" to=\"111\" \
bitmapsize=\"12\">/yA=</Segment><Segment from=\"200\" to=\"299\" levels=\"2\" chunks=\"7\"/>\
</ChunkSegments></Clip></ChunkMapReport></Stat><Stat property=\"NAT\">false</Stat><Stat \
property=\"STUN\">1</Stat></Stats></PPSPTrackerProtocol>";

    #[test]
    fn the_flat_path_takes_stats_as_the_encoder_writes_them() {
        let (fast, full) = both(STAT_REPORT);
        assert_eq!(fast, full);
        let Ok(Message::Request(report)) = fast else {
            panic!("a request: {fast:?}");
        };
        let RequestBody::StatReport(body) = &report.body else {
            panic!("a STAT_REPORT body");
        };
        let [
            Stat::StreamStats(stream),
            Stat::ChunkMap(map),
            Stat::Nat(false),
            Stat::Stun(true),
        ] = body.stats.as_slice()
        else {
            panic!("four stats: {:?}", body.stats);
        };
        assert_eq!(stream.uploaded_bytes, Some(52_905));
        assert_eq!(map.clips[0].chunk_segment_index, Some(4));
        let segments = &map.clips[0].segments.as_ref().expect("segments").segments;
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[0].map.as_ref().map(ChunkMap::len), Some(12));
        assert_eq!((segments[1].levels, segments[1].chunks), (Some(2), Some(7)));
        // What the encoder writes, it reads back through the flat path.
        let encoded = super::super::encode_request(&report);
        let (fast, full) = both(&encoded);
        assert_eq!(fast, full);
        assert_eq!(fast, Ok(Message::Request(report)));
        // White space between elements, and an empty Stats.
        let pretty = STAT_REPORT.replace("><", ">\n  <");
        let (fast, full) = both(&pretty);
        assert!(fast.is_ok(), "{fast:?}");
        assert_eq!(fast, full);
        let empty = "<PPSPTrackerProtocol version=\"1.0\"><Method>STAT_REPORT</Method>\
<PeerID>p</PeerID><AuthToken>t</AuthToken><TransactionID>9</TransactionID><Stats/>\
</PPSPTrackerProtocol>";
        let (fast, full) = both(empty);
        assert!(fast.is_ok(), "{fast:?}");
        assert_eq!(fast, full);
    }

    #[test]
    fn stats_in_any_other_shape_go_to_the_full_decoder() {
        let limits = Limits::default();
        let variants = [
            // Elements, attributes and properties the flat path does not read.
            STAT_REPORT.replace(
                "<Stat property=\"NAT\">",
                "<Stat property=\"BatteryLevel\">",
            ),
            STAT_REPORT.replace("<Stat property=\"NAT\">", "<Stat property=\"NAT\" x=\"1\">"),
            STAT_REPORT.replace("<Stat property=\"NAT\">", "<Stat property='NAT'>"),
            STAT_REPORT.replace("<Stat property=\"NAT\">", "<Stat  property=\"NAT\">"),
            STAT_REPORT.replace("<Stat property=\"NAT\">", "<Stat>"),
            STAT_REPORT.replace("<Stats>", "<Stats x=\"1\">"),
            STAT_REPORT.replace("<Clip>", "<Clip><Extra/>"),
            STAT_REPORT.replace("<Name>bench</Name>", "<Name/>"),
            STAT_REPORT.replace("<Name>bench</Name>", "<Name>a&amp;b</Name>"),
            STAT_REPORT.replace("<Name>bench</Name>", "<Name x=\"1\">bench</Name>"),
            STAT_REPORT.replace("/yA=", "/yA=\r"),
            STAT_REPORT.replace("bitmapsize=\"12\"", "bitmapsize=\"1&#50;\""),
            STAT_REPORT.replace("<Stats>", "<Stats><!-- c -->"),
            STAT_REPORT.replace("</Stats>", "</Stats><Stats/>"),
            // Duplicates, missing parts and refused values: the full decoder words the error.
            STAT_REPORT.replace(
                "<UploadedBytes>",
                "<UploadedBytes>1</UploadedBytes><UploadedBytes>",
            ),
            STAT_REPORT.replace("<SwarmID>bench-swarm-2</SwarmID><Clip>", "<Clip>"),
            STAT_REPORT.replace(
                "<SwarmID>bench-swarm-2</SwarmID><Clip>",
                "<SwarmID>a</SwarmID><SwarmID>b</SwarmID><Clip>",
            ),
            STAT_REPORT.replace(
                "<ChunkSegments type=\"video\">",
                "<ChunkSegments type=\"text\">",
            ),
            STAT_REPORT.replace("bitmapsize=\"12\"", "bitmapsize=\"13\""),
            STAT_REPORT.replace("to=\"111\"", "to=\"99\""),
            STAT_REPORT.replace("from=\"100\"", "from=\"100\" from=\"100\""),
            STAT_REPORT.replace(">false<", ">maybe<"),
            STAT_REPORT.replace(
                "</Clip>",
                "</Clip><Clip><Name>x</Name><Name>y</Name></Clip>",
            ),
            STAT_REPORT.replace(
                "</Stat><Stat property=\"NAT\">",
                "</Stt><Stat property=\"NAT\">",
            ),
        ];
        assert!(
            !variants.iter().any(|v| v == STAT_REPORT),
            "a variant changes nothing"
        );
        assert_left_to_the_full_decoder(&variants, &limits);
        // Limits the full decoder enforces: the flat path leaves them to it.
        let few = Limits {
            max_list_len: 1,
            ..Limits::default()
        };
        assert!(flat(STAT_REPORT, &few).is_none());
        assert!(decode(STAT_REPORT.as_bytes(), &few).is_err());
        let shallow = Limits {
            max_depth: 6,
            ..Limits::default()
        };
        assert!(flat(STAT_REPORT, &shallow).is_none());
        assert_eq!(
            decode(STAT_REPORT.as_bytes(), &shallow),
            decode_events(STAT_REPORT, &shallow)
        );
    }

    #[test]
    fn messages_the_rules_refuse_leave_the_same_error_either_way() {
        // Well-formed and flat, but not a valid message: the error (with the transaction
        // ID it echoes) is the same.
        let no_swarm = FIND.replace("<SwarmID>fill-swarm-0</SwarmID>", "");
        let (fast, full) = both(&no_swarm);
        assert!(fast.is_err());
        assert_eq!(fast, full);
        let empty = "<PPSPTrackerProtocol version=\"1.0\"></PPSPTrackerProtocol>";
        let (fast, full) = both(empty);
        assert_eq!(fast, Err(DecodeErrorKind::NoDirection.into()));
        assert_eq!(fast, full);
    }

    #[test]
    fn the_full_decoder_takes_everything_else() {
        let limits = Limits::default();
        let variants = [
            // Character data the flat path does not resolve or normalise.
            FIND.replace("wrk-peer-1", "wrk&amp;peer"),
            FIND.replace("wrk-peer-1", "wrk&#45;peer"),
            FIND.replace("wrk-peer-1", "<![CDATA[wrk-peer-1]]>"),
            FIND.replace("wrk-peer-1", "wrk-peer-1\r"),
            FIND.replace("wrk-peer-1", "a>b"),
            FIND.replace("wrk-peer-1", "wrk<!-- c -->peer"),
            // Structure beyond plain text children.
            FIND.replace("<PeerID>", "<PeerID kind=\"x\">"),
            FIND.replace("<PeerID>", "<PeerID >"),
            FIND.replace("</PeerID>", "</PeerID >"),
            FIND.replace("<PeerNum>20</PeerNum>", "<PeerNum/>"),
            FIND.replace("<PeerNum>20</PeerNum>", "<Extra>1</Extra>"),
            FIND.replace("<PeerNum>20</PeerNum>", "<Clip><Name>c</Name></Clip>"),
            FIND.replace("<Method>", "<p:Method xmlns:p=\"urn:x\">")
                .replace("</Method>", "</p:Method>"),
            FIND.replace("version=\"1.0\">", "version=\"1.0\" xmlns=\"urn:x\">"),
            FIND.replace(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                "<?xml version=\"1.1\"?>",
            ),
            FIND.replace(
                "</PPSPTrackerProtocol>",
                "</PPSPTrackerProtocol><!-- end -->",
            ),
            FIND.replace("</TransactionID>", "</TransactionID>stray text"),
            // Values or structure the rules refuse: the full decoder words the error.
            FIND.replace(
                "<Method>FIND</Method>",
                "<Method>FIND</Method><Method>FIND</Method>",
            ),
            FIND.replace(">20<", ">0<"),
            FIND.replace("version=\"1.0\"", "version=\"2.0\""),
            FIND.replace("</Method>", "</Mthod>"),
            FIND.replace("</PPSPTrackerProtocol>", ""),
        ];
        assert_left_to_the_full_decoder(&variants, &limits);
        let shallow = Limits {
            max_depth: 1,
            ..Limits::default()
        };
        assert!(flat(FIND, &shallow).is_none());
        assert!(decode(FIND.as_bytes(), &shallow).is_err());
    }
}
