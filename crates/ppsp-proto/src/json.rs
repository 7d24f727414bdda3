//! The JSON protocol of RFC 7846 (PPSTP v1, media type [`crate::JSON_MEDIA_TYPE`]).
//!
//! # Decoding
//!
//! [`decode_request`], [`decode_response`] and [`decode`] check, in this order, before any
//! parsing work is spent: the body size ([`Limits::max_body_bytes`]) and the nesting depth
//! ([`Limits::max_depth`], measured by a bracket scan that skips string contents). Only then
//! is the body parsed. The version is checked before the shape of the message, so a body with
//! `"version": 2` maps to `VERSION NOT SUPPORTED` (error code 2) even if the rest is foreign.
//! Lists longer than [`Limits::max_list_len`] are refused. Every error carries the
//! transaction ID when the body had a readable one, so the tracker can echo it.
//!
//! Members this codec does not know are ignored (RFC 7846 §4.4). The tolerant-reader rules
//! for the shapes printed in the RFC's own examples are accepted on input and never emitted:
//!
//! * T1 — `connect.peer_addr`, `swarm_action`, `swarm_result`, `stat` (and `peer_info`) may
//!   be a single object instead of an array;
//! * T2 — `concurrent_links`, `online_time` and `upload_bandwidth` may be all-digit strings;
//! * T3 — the statistics array may be keyed `Stat` (`stat` wins when both are present);
//! * T4 — a FIND may carry `swarm_id` and `peer_num` in the message object itself when there
//!   is no `find` member;
//! * T5 — an address without `type` gets the type its position implies (`REFLEXIVE` for the
//!   requester's address in a response, `HOST` everywhere else) and one without `priority`
//!   gets priority 0;
//! * T6 — `error_code` may be a two-digit string `"00"` … `"06"`.
//!
//! Decoded values therefore always carry `Some` in [`PeerAddress::priority`] and
//! [`PeerAddress::kind`].
//!
//! # Encoding
//!
//! [`encode_request`] and [`encode_response`] write the canonical form: compact JSON, arrays
//! for every list, integers for numbers, IPv6 in RFC 5952 text. They never fail; values the
//! JSON protocol cannot carry are mapped as follows.
//!
//! | model | emitted |
//! |---|---|
//! | [`RequestBody::Join`] | `CONNECT` with one `JOIN` swarm action (and `peer_num` when set) |
//! | [`RequestBody::Leave`] | `CONNECT` with one `LEAVE` swarm action, `peer_mode` `LEECH` |
//! | [`RequestBody::KeepAlive`] | `STAT_REPORT` without `stat_report` |
//! | [`RequestBody::Disconnect`] | `CONNECT` with an empty `swarm_action` list (see below) |
//! | [`Connect`] without swarm actions | `CONNECT` with an empty `swarm_action` list |
//! | [`PeerMode::LiveSeed`] | `SEEDER` |
//! | [`Stat`] other than `StreamStats`, or without a swarm ID | left out; a report left empty becomes a keep-alive |
//! | SASL data, auth tokens, NAT hints, clips, expire times, peer modes and locations in peer lists | left out |
//! | [`Status::ObjectNotFound`] | error code 3 (decodes as [`Status::MessageForbidden`]) |
//! | a missing response transaction ID | `""` (decodes as `None`) |
//! | reflexive addresses after the first, peer addresses after the first | left out |
//! | peers without an address | left out |
//! | `swarm_result`/`peer_addr` of a failed response; `peer_group` of a failed swarm result | left out |
//!
//! RFC 7846 has no way to end a registration in one message: a peer leaves every swarm it
//! joined (a `CONNECT` with a `LEAVE` per swarm) or falls silent until the tracker's timer
//! expires. A codec does not know which swarms a peer joined, so DISCONNECT (and an XML-style
//! CONNECT that joins nothing) is written as a CONNECT with no swarm action, which every
//! conforming tracker, this one included, refuses with error code 1. Callers that can do
//! better check [`request_has_json_form`] first and send the LEAVEs themselves.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::digits::{push_ip, push_u64};
use crate::error::{DecodeError, DecodeErrorKind, Limits};
use crate::model::{
    AbilityNat, AddressType, Connect, ConnectionKind, Find, Message, PeerAddress, PeerId, PeerInfo,
    PeerMode, PeerNum, Request, RequestBody, Response, Stat, StatReport, Status, StreamStats,
    SwarmAction, SwarmActionKind, SwarmId, SwarmResult, TransactionId,
};

/// The name of the single member of the outermost object.
const ROOT: &str = "PPSPTrackerProtocol";
/// The only protocol version RFC 7846 defines.
const VERSION: u64 = 1;

mod tree;

use tree::{Node, Object};

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decodes a request body.
///
/// # Errors
/// A [`DecodeError`] whose [`DecodeError::status`] is the PPSP answer: error code 2 for a
/// version other than 1, error code 1 for everything else (oversized, too deep, not JSON,
/// missing or mistyped members, unknown `request_type`, a response body).
pub fn decode_request(bytes: &[u8], limits: &Limits) -> Result<Request, DecodeError> {
    match decode(bytes, limits)? {
        Message::Request(request) => Ok(request),
        Message::Response(response) => {
            Err(DecodeError::new(DecodeErrorKind::Missing("request_type"))
                .with_transaction_id(response.transaction_id))
        }
    }
}

/// Decodes a response body.
///
/// # Errors
/// As for [`decode_request`]; a request body is refused with
/// [`DecodeErrorKind::Missing`]`("response_type")`.
pub fn decode_response(bytes: &[u8], limits: &Limits) -> Result<Response, DecodeError> {
    match decode(bytes, limits)? {
        Message::Response(response) => Ok(response),
        Message::Request(request) => {
            Err(DecodeError::new(DecodeErrorKind::Missing("response_type"))
                .with_transaction_id(Some(request.transaction_id)))
        }
    }
}

/// Decodes a body that may be a request (it has `request_type`) or a response (it has
/// `response_type`).
///
/// # Errors
/// As for [`decode_request`]; [`DecodeErrorKind::BothDirections`] or
/// [`DecodeErrorKind::NoDirection`] when the direction is ambiguous.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
    let (object, transaction_id) = open(bytes, limits)?;
    let result = match direction(&object) {
        Direction::Request => parse_request(&object, limits).map(Message::Request),
        Direction::Response => parse_response(&object, limits).map(Message::Response),
        Direction::Both => Err(DecodeErrorKind::BothDirections.into()),
        Direction::Neither => Err(DecodeErrorKind::NoDirection.into()),
    };
    result.map_err(|e| e.with_transaction_id(transaction_id))
}

/// True when `body` has a faithful JSON form: every method but DISCONNECT, and a CONNECT
/// only when it carries at least one swarm action. See the module documentation for what
/// [`encode_request`] does with the rest.
pub fn request_has_json_form(body: &RequestBody) -> bool {
    match body {
        RequestBody::Disconnect => false,
        RequestBody::Connect(connect) => !connect.swarm_actions.is_empty(),
        _ => true,
    }
}

enum Direction {
    Request,
    Response,
    Both,
    Neither,
}

fn direction(object: &Object<'_>) -> Direction {
    match (
        object.contains_key("request_type"),
        object.contains_key("response_type"),
    ) {
        (true, false) => Direction::Request,
        (false, true) => Direction::Response,
        (true, true) => Direction::Both,
        (false, false) => Direction::Neither,
    }
}

/// Applies the size and depth limits, parses, unwraps the root member and checks the
/// version. Returns the message object and the transaction ID if it was readable, so that
/// later errors can carry it.
fn open<'b>(
    bytes: &'b [u8],
    limits: &Limits,
) -> Result<(Object<'b>, Option<TransactionId>), DecodeError> {
    if bytes.len() > limits.max_body_bytes {
        return Err(DecodeErrorKind::TooLarge {
            size: bytes.len(),
            limit: limits.max_body_bytes,
        }
        .into());
    }
    check_depth(bytes, limits.max_depth)?;
    let root = tree::parse(bytes)
        .map_err(|e| DecodeError::new(DecodeErrorKind::Malformed(e.to_string())))?;
    let Node::Object(mut root) = root else {
        return Err(DecodeErrorKind::WrongRoot(json_type(&root).to_owned()).into());
    };
    let Some(inner) = root.remove(ROOT) else {
        let found = root
            .first_key()
            .map_or_else(|| "an empty object".to_owned(), clip_text);
        return Err(DecodeErrorKind::WrongRoot(found).into());
    };
    let Node::Object(object) = inner else {
        return Err(invalid(ROOT, "must be an object"));
    };
    // Read leniently first: a broken transaction ID is reported later, in its turn, but a
    // good one must ride along with every error found from here on.
    let transaction_id = object
        .get("transaction_id")
        .and_then(Node::as_str)
        .and_then(|s| TransactionId::new(s).ok());
    check_version(&object).map_err(|e| e.with_transaction_id(transaction_id.clone()))?;
    Ok((object, transaction_id))
}

/// Refuses bodies nested deeper than `max_depth` without building anything: counts open
/// brackets outside string literals. Runs before the parser so that hostile nesting costs a
/// single linear pass.
fn check_depth(bytes: &[u8], max_depth: usize) -> Result<(), DecodeError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(DecodeErrorKind::TooDeep { limit: max_depth }.into());
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn check_version(object: &Object<'_>) -> Result<(), DecodeError> {
    match object.get("version") {
        Some(Node::Uint(VERSION)) => Ok(()),
        Some(Node::Uint(other)) => {
            Err(DecodeErrorKind::UnsupportedVersion(other.to_string()).into())
        }
        Some(Node::Int(other)) => {
            Err(DecodeErrorKind::UnsupportedVersion(other.to_string()).into())
        }
        // 1.0 or 1e0 is a JSON number, but not the integer the grammar asks for.
        _ => Err(DecodeErrorKind::BadVersion.into()),
    }
}

fn parse_request(object: &Object<'_>, limits: &Limits) -> Result<Request, DecodeError> {
    let request_type = match object.get("request_type") {
        Some(Node::Str(s)) => s.as_ref(),
        Some(_) => return Err(invalid("request_type", "must be a string")),
        None => return Err(DecodeErrorKind::Missing("request_type").into()),
    };
    let transaction_id = required_transaction_id(object)?;
    let peer_id = PeerId::new(required_str(object, "peer_id")?)?;
    let body = match request_type {
        "CONNECT" => RequestBody::Connect(parse_connect(object, limits)?),
        "FIND" => RequestBody::Find(parse_find(object)?),
        "STAT_REPORT" => RequestBody::StatReport(parse_stat_report(object, limits)?),
        other => return Err(DecodeErrorKind::UnknownMethod(clip_text(other)).into()),
    };
    Ok(Request {
        peer_id,
        auth_token: None,
        transaction_id,
        body,
    })
}

fn required_transaction_id(object: &Object<'_>) -> Result<TransactionId, DecodeError> {
    match object.get("transaction_id") {
        Some(Node::Str(s)) => TransactionId::new(s.as_ref()),
        Some(_) => Err(invalid("transaction_id", "must be a string")),
        None => Err(DecodeErrorKind::Missing("transaction_id").into()),
    }
}

fn parse_connect(object: &Object<'_>, limits: &Limits) -> Result<Connect, DecodeError> {
    let connect = required_object(object, "connect")?;
    let peer_num = optional(connect, "peer_num")
        .map(parse_peer_num)
        .transpose()?;
    let addresses = match optional(connect, "peer_addr") {
        Some(value) => one_or_many(value, "peer_addr", limits)?
            .iter()
            .map(|v| parse_peer_addr(v, AddressType::Host))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let actions = match optional(connect, "swarm_action") {
        Some(value) => one_or_many(value, "swarm_action", limits)?,
        None => return Err(DecodeErrorKind::Missing("swarm_action").into()),
    };
    if actions.is_empty() {
        return Err(invalid("swarm_action", "needs at least one swarm action"));
    }
    let swarm_actions = actions
        .iter()
        .map(parse_swarm_action)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Connect {
        auth: None,
        addresses,
        peer_num,
        swarm_actions,
    })
}

fn parse_swarm_action(value: &Node<'_>) -> Result<SwarmAction, DecodeError> {
    let object = as_object(value, "swarm_action")?;
    let swarm_id = SwarmId::new(required_str(object, "swarm_id")?)?;
    let action = match required_str(object, "action")? {
        "JOIN" => SwarmActionKind::Join,
        "LEAVE" => SwarmActionKind::Leave,
        _ => return Err(invalid("action", "must be JOIN or LEAVE")),
    };
    let mode = PeerMode::from_json_name(required_str(object, "peer_mode")?)
        .ok_or_else(|| invalid("peer_mode", "must be SEEDER or LEECH"))?;
    Ok(SwarmAction {
        swarm_id,
        action,
        mode,
    })
}

fn parse_find(object: &Object<'_>) -> Result<Find, DecodeError> {
    // T4: the RFC's FIND example has no `find` wrapper.
    let find = match optional(object, "find") {
        Some(value) => as_object(value, "find")?,
        None if object.contains_key("swarm_id") => object,
        None => return Err(DecodeErrorKind::Missing("find").into()),
    };
    let swarm_id = SwarmId::new(required_str(find, "swarm_id")?)?;
    let peer_num = optional(find, "peer_num").map(parse_peer_num).transpose()?;
    Ok(Find {
        swarm_id,
        peer_num,
        hints: Default::default(),
        clip: None,
    })
}

fn parse_peer_num(value: &Node<'_>) -> Result<PeerNum, DecodeError> {
    let object = as_object(value, "peer_num")?;
    let count = match optional(object, "peer_count") {
        Some(v) => u32::try_from(strict_uint(v, "peer_count")?)
            .map_err(|_| invalid("peer_count", "too large"))?,
        None => return Err(DecodeErrorKind::Missing("peer_count").into()),
    };
    let ability_nat = match optional(object, "ability_nat") {
        Some(v) => Some(match as_str(v, "ability_nat")? {
            "NO_NAT" => AbilityNat::NoNat,
            "STUN" => AbilityNat::Stun,
            "TURN" => AbilityNat::Turn,
            _ => return Err(invalid("ability_nat", "must be NO_NAT, STUN or TURN")),
        }),
        None => None,
    };
    Ok(PeerNum {
        count,
        ability_nat,
        concurrent_links: optional_lenient_uint(object, "concurrent_links")?,
        online_time: optional_lenient_uint(object, "online_time")?,
        upload_bandwidth: optional_lenient_uint(object, "upload_bandwidth")?,
    })
}

fn parse_stat_report(object: &Object<'_>, limits: &Limits) -> Result<StatReport, DecodeError> {
    // No `stat_report` at all is the RFC's keep-alive.
    let Some(group) = optional(object, "stat_report") else {
        return Ok(StatReport::default());
    };
    let group = as_object(group, "stat_report")?;
    if required_str(group, "type")? != "STREAM_STATS" {
        return Err(invalid("stat_report.type", "must be STREAM_STATS"));
    }
    // T3: `Stat` is accepted when `stat` is absent.
    let stats = match optional(group, "stat").or_else(|| optional(group, "Stat")) {
        Some(value) => one_or_many(value, "stat", limits)?,
        None => return Err(DecodeErrorKind::Missing("stat").into()),
    };
    if stats.is_empty() {
        return Err(invalid("stat", "needs at least one entry"));
    }
    let stats = stats
        .iter()
        .map(|value| parse_stream_stats(value).map(Stat::StreamStats))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StatReport { stats })
}

fn parse_stream_stats(value: &Node<'_>) -> Result<StreamStats, DecodeError> {
    let object = as_object(value, "stat")?;
    Ok(StreamStats {
        swarm_id: Some(SwarmId::new(required_str(object, "swarm_id")?)?),
        uploaded_bytes: optional_strict_uint(object, "uploaded_bytes")?,
        downloaded_bytes: optional_strict_uint(object, "downloaded_bytes")?,
        available_bandwidth: optional_strict_uint(object, "available_bandwidth")?,
        concurrent_links: optional_lenient_uint(object, "concurrent_links")?,
    })
}

fn parse_peer_addr(
    value: &Node<'_>,
    default_kind: AddressType,
) -> Result<PeerAddress, DecodeError> {
    let object = as_object(value, "peer_addr")?;
    let ip_object = required_object(object, "ip_address")?;
    let text = required_str(ip_object, "address")?;
    let ip = match required_str(ip_object, "address_type")? {
        "ipv4" => IpAddr::V4(
            text.parse::<Ipv4Addr>()
                .map_err(|_| invalid("address", "not an IPv4 address"))?,
        ),
        "ipv6" => IpAddr::V6(
            text.parse::<Ipv6Addr>()
                .map_err(|_| invalid("address", "not an IPv6 address"))?,
        ),
        _ => return Err(invalid("address_type", "must be ipv4 or ipv6")),
    };
    let port = match optional(object, "port") {
        Some(v) => u16::try_from(strict_uint(v, "port")?)
            .map_err(|_| invalid("port", "must be 0 to 65535"))?,
        None => return Err(DecodeErrorKind::Missing("port").into()),
    };
    // T5: the RFC's examples leave out priority and type in places.
    let priority = match optional(object, "priority") {
        Some(v) => u32::try_from(strict_uint(v, "priority")?)
            .map_err(|_| invalid("priority", "too large"))?,
        None => 0,
    };
    let kind = match optional(object, "type") {
        Some(v) => AddressType::from_name(as_str(v, "type")?, false)
            .ok_or_else(|| invalid("type", "must be HOST, REFLEXIVE or PROXY"))?,
        None => default_kind,
    };
    let connection = match optional(object, "connection") {
        Some(v) => Some(match as_str(v, "connection")? {
            "wired" => ConnectionKind::Wired,
            "wireless" => ConnectionKind::Wireless,
            _ => return Err(invalid("connection", "must be wired or wireless")),
        }),
        None => None,
    };
    let asn = optional(object, "asn")
        .map(|v| as_str(v, "asn").map(str::to_owned))
        .transpose()?;
    let peer_protocol = optional(object, "peer_protocol")
        .map(|v| as_str(v, "peer_protocol").map(str::to_owned))
        .transpose()?;
    Ok(PeerAddress {
        ip,
        port,
        priority: Some(priority),
        kind: Some(kind),
        connection,
        asn,
        peer_protocol,
    })
}

fn parse_response(object: &Object<'_>, limits: &Limits) -> Result<Response, DecodeError> {
    let failed = match optional(object, "response_type") {
        Some(v) => match strict_uint(v, "response_type")? {
            0 => false,
            1 => true,
            _ => return Err(invalid("response_type", "must be 0 or 1")),
        },
        None => return Err(DecodeErrorKind::Missing("response_type").into()),
    };
    let code = match optional(object, "error_code") {
        Some(Node::Str(s)) => two_digit_code(s)?,
        Some(v) => strict_uint(v, "error_code")?,
        None => return Err(DecodeErrorKind::Missing("error_code").into()),
    };
    let status = match code {
        0 => Status::Ok,
        1 => Status::InvalidSyntax,
        2 => Status::VersionNotSupported,
        3 => Status::MessageForbidden,
        4 => Status::InternalError,
        5 => Status::TemporarilyOverloaded,
        6 => Status::AuthenticationRequired,
        _ => return Err(invalid("error_code", "must be 0 to 6")),
    };
    if failed == (status == Status::Ok) {
        return Err(invalid(
            "error_code",
            "must be 0 exactly when response_type is 0",
        ));
    }
    // A response to a request whose ID was unreadable carries "" (a decision of this project, see docs/tracker.md).
    let transaction_id = match object.get("transaction_id") {
        Some(Node::Str(s)) if s.is_empty() => None,
        Some(Node::Str(s)) => Some(TransactionId::new(s.as_ref())?),
        Some(_) => return Err(invalid("transaction_id", "must be a string")),
        None => return Err(DecodeErrorKind::Missing("transaction_id").into()),
    };
    let mut response = Response::status(status, transaction_id);
    if failed {
        if optional(object, "swarm_result").is_some() {
            return Err(invalid("swarm_result", "not allowed in a failed response"));
        }
        if optional(object, "peer_addr").is_some() {
            return Err(invalid("peer_addr", "not allowed in a failed response"));
        }
        return Ok(response);
    }
    if let Some(value) = optional(object, "peer_addr") {
        response
            .reflexive_addresses
            .push(parse_peer_addr(value, AddressType::Reflexive)?);
    }
    if let Some(value) = optional(object, "swarm_result") {
        response.swarm_results = one_or_many(value, "swarm_result", limits)?
            .iter()
            .map(|v| parse_swarm_result(v, limits))
            .collect::<Result<Vec<_>, _>>()?;
    }
    Ok(response)
}

/// T6: the IANA table writes the codes as `"00"` … `"06"`.
fn two_digit_code(text: &str) -> Result<u64, DecodeError> {
    match text.as_bytes() {
        [b'0', digit @ b'0'..=b'6'] => Ok(u64::from(digit - b'0')),
        _ => Err(invalid("error_code", "must be an integer 0 to 6")),
    }
}

fn parse_swarm_result(value: &Node<'_>, limits: &Limits) -> Result<SwarmResult, DecodeError> {
    let object = as_object(value, "swarm_result")?;
    let swarm_id = SwarmId::new(required_str(object, "swarm_id")?)?;
    let ok = match optional(object, "result") {
        Some(v) => match strict_uint(v, "result")? {
            0 => true,
            1 => false,
            _ => return Err(invalid("result", "must be 0 or 1")),
        },
        None => return Err(DecodeErrorKind::Missing("result").into()),
    };
    let mut peers = Vec::new();
    // A failed swarm result should carry no peer group; one that does is ignored.
    if let (true, Some(group)) = (ok, optional(object, "peer_group")) {
        let group = as_object(group, "peer_group")?;
        if let Some(list) = optional(group, "peer_info") {
            peers = one_or_many(list, "peer_info", limits)?
                .iter()
                .map(parse_peer_info)
                .collect::<Result<Vec<_>, _>>()?;
        }
    }
    Ok(SwarmResult {
        swarm_id,
        ok,
        peers,
    })
}

fn parse_peer_info(value: &Node<'_>) -> Result<PeerInfo, DecodeError> {
    let object = as_object(value, "peer_info")?;
    let peer_id = PeerId::new(required_str(object, "peer_id")?)?;
    let address = match optional(object, "peer_addr") {
        Some(v) => parse_peer_addr(v, AddressType::Host)?,
        None => return Err(DecodeErrorKind::Missing("peer_addr").into()),
    };
    Ok(PeerInfo {
        peer_id,
        mode: None,
        addresses: vec![address],
        location: None,
        connection_type: None,
        rank_cost: None,
    })
}

// --- small readers ----------------------------------------------------------------------------

fn invalid(field: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::new(DecodeErrorKind::InvalidValue { field, reason })
}

/// A member's value; an explicit `null` counts as absent.
fn optional<'a, 'v>(object: &'a Object<'v>, key: &str) -> Option<&'a Node<'v>> {
    object.get(key).filter(|v| !v.is_null())
}

fn as_object<'a, 'v>(
    value: &'a Node<'v>,
    field: &'static str,
) -> Result<&'a Object<'v>, DecodeError> {
    value
        .as_object()
        .ok_or_else(|| invalid(field, "must be an object"))
}

fn as_str<'a>(value: &'a Node<'_>, field: &'static str) -> Result<&'a str, DecodeError> {
    value
        .as_str()
        .ok_or_else(|| invalid(field, "must be a string"))
}

fn required_object<'a, 'v>(
    object: &'a Object<'v>,
    key: &'static str,
) -> Result<&'a Object<'v>, DecodeError> {
    match optional(object, key) {
        Some(value) => as_object(value, key),
        None => Err(DecodeErrorKind::Missing(key).into()),
    }
}

fn required_str<'a>(object: &'a Object<'_>, key: &'static str) -> Result<&'a str, DecodeError> {
    match optional(object, key) {
        Some(value) => as_str(value, key),
        None => Err(DecodeErrorKind::Missing(key).into()),
    }
}

/// T1: a list may arrive as a single object.
fn one_or_many<'a, 'v>(
    value: &'a Node<'v>,
    what: &'static str,
    limits: &Limits,
) -> Result<&'a [Node<'v>], DecodeError> {
    match value {
        Node::Array(items) if items.len() > limits.max_list_len => Err(DecodeErrorKind::TooMany {
            what,
            limit: limits.max_list_len,
        }
        .into()),
        Node::Array(items) => Ok(items),
        Node::Object(_) => Ok(std::slice::from_ref(value)),
        _ => Err(invalid(what, "must be an array or an object")),
    }
}

fn strict_uint(value: &Node<'_>, field: &'static str) -> Result<u64, DecodeError> {
    value
        .as_u64()
        .ok_or_else(|| invalid(field, "must be a non-negative integer"))
}

fn optional_strict_uint(
    object: &Object<'_>,
    key: &'static str,
) -> Result<Option<u64>, DecodeError> {
    optional(object, key)
        .map(|v| strict_uint(v, key))
        .transpose()
}

/// T2: an integer, or a string of decimal digits.
fn optional_lenient_uint(
    object: &Object<'_>,
    key: &'static str,
) -> Result<Option<u64>, DecodeError> {
    match optional(object, key) {
        Some(Node::Str(s)) => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(key, "must be a non-negative integer"));
            }
            s.parse()
                .map(Some)
                .map_err(|_| invalid(key, "must be a non-negative integer"))
        }
        Some(v) => strict_uint(v, key).map(Some),
        None => Ok(None),
    }
}

fn json_type(value: &Node<'_>) -> &'static str {
    match value {
        Node::Null => "null",
        Node::Bool => "a boolean",
        Node::Uint(_) | Node::Int(_) | Node::Float => "a number",
        Node::Str(_) => "a string",
        Node::Array(_) => "an array",
        Node::Object(_) => "an object",
    }
}

/// Keeps error messages short when a hostile body sends a huge name.
fn clip_text(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        let mut clipped: String = text.chars().take(MAX_CHARS).collect();
        clipped.push('…');
        clipped
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Encodes a request in canonical RFC 7846 form. Methods and fields the JSON protocol lacks
/// are mapped as the module documentation describes.
pub fn encode_request(request: &Request) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"PPSPTrackerProtocol\":{\"version\":1,\"request_type\":");
    let request_type = match &request.body {
        RequestBody::Connect(_)
        | RequestBody::Join(_)
        | RequestBody::Leave(_)
        | RequestBody::Disconnect => "CONNECT",
        RequestBody::Find(_) => "FIND",
        RequestBody::StatReport(_) | RequestBody::KeepAlive => "STAT_REPORT",
    };
    push_string(&mut out, request_type);
    out.push_str(",\"transaction_id\":");
    push_string(&mut out, request.transaction_id.as_str());
    out.push_str(",\"peer_id\":");
    push_string(&mut out, request.peer_id.as_str());
    match &request.body {
        RequestBody::Connect(connect) => {
            push_connect(
                &mut out,
                connect.peer_num.as_ref(),
                &connect.addresses,
                connect
                    .swarm_actions
                    .iter()
                    .map(|a| (&a.swarm_id, a.action, a.mode)),
            );
        }
        RequestBody::Join(join) => {
            let peer_num = join.peer_num.map(PeerNum::count);
            push_connect(
                &mut out,
                peer_num.as_ref(),
                &[],
                std::iter::once((&join.swarm_id, SwarmActionKind::Join, join.mode)),
            );
        }
        RequestBody::Leave(leave) => push_connect(
            &mut out,
            None,
            &[],
            std::iter::once((&leave.swarm_id, SwarmActionKind::Leave, PeerMode::Leech)),
        ),
        RequestBody::Disconnect => push_connect(&mut out, None, &[], std::iter::empty()),
        RequestBody::Find(find) => {
            out.push_str(",\"find\":{\"swarm_id\":");
            push_string(&mut out, find.swarm_id.as_str());
            if let Some(peer_num) = &find.peer_num {
                out.push_str(",\"peer_num\":");
                push_peer_num(&mut out, peer_num);
            }
            out.push('}');
        }
        RequestBody::StatReport(report) => push_stat_report(&mut out, report),
        RequestBody::KeepAlive => {}
    }
    out.push_str("}}");
    out
}

fn push_connect<'a>(
    out: &mut String,
    peer_num: Option<&PeerNum>,
    addresses: &[PeerAddress],
    actions: impl Iterator<Item = (&'a SwarmId, SwarmActionKind, PeerMode)>,
) {
    out.push_str(",\"connect\":{");
    if let Some(peer_num) = peer_num {
        out.push_str("\"peer_num\":");
        push_peer_num(out, peer_num);
        out.push(',');
    }
    if !addresses.is_empty() {
        out.push_str("\"peer_addr\":[");
        for (i, address) in addresses.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_peer_addr(out, address, AddressType::Host);
        }
        out.push_str("],");
    }
    out.push_str("\"swarm_action\":[");
    for (i, (swarm_id, action, mode)) in actions.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"swarm_id\":");
        push_string(out, swarm_id.as_str());
        out.push_str(match action {
            SwarmActionKind::Join => ",\"action\":\"JOIN\"",
            SwarmActionKind::Leave => ",\"action\":\"LEAVE\"",
        });
        out.push_str(",\"peer_mode\":\"");
        out.push_str(mode.json_name());
        out.push_str("\"}");
    }
    out.push_str("]}");
}

fn push_peer_num(out: &mut String, peer_num: &PeerNum) {
    out.push_str("{\"peer_count\":");
    push_u64(out, u64::from(peer_num.count));
    if let Some(ability) = peer_num.ability_nat {
        out.push_str(match ability {
            AbilityNat::NoNat => ",\"ability_nat\":\"NO_NAT\"",
            AbilityNat::Stun => ",\"ability_nat\":\"STUN\"",
            AbilityNat::Turn => ",\"ability_nat\":\"TURN\"",
        });
    }
    push_optional_uint(out, "concurrent_links", peer_num.concurrent_links);
    push_optional_uint(out, "online_time", peer_num.online_time);
    push_optional_uint(out, "upload_bandwidth", peer_num.upload_bandwidth);
    out.push('}');
}

fn push_stat_report(out: &mut String, report: &StatReport) {
    let mut written = 0usize;
    for stat in &report.stats {
        let Stat::StreamStats(stats) = stat else {
            continue;
        };
        let Some(swarm_id) = &stats.swarm_id else {
            continue;
        };
        out.push_str(if written == 0 {
            ",\"stat_report\":{\"type\":\"STREAM_STATS\",\"stat\":["
        } else {
            ","
        });
        written += 1;
        out.push_str("{\"swarm_id\":");
        push_string(out, swarm_id.as_str());
        push_optional_uint(out, "uploaded_bytes", stats.uploaded_bytes);
        push_optional_uint(out, "downloaded_bytes", stats.downloaded_bytes);
        push_optional_uint(out, "available_bandwidth", stats.available_bandwidth);
        push_optional_uint(out, "concurrent_links", stats.concurrent_links);
        out.push('}');
    }
    if written > 0 {
        out.push_str("]}");
    }
}

/// Writes one `ppsp_tp_peer_addr_t`; a missing type becomes `default_kind` and a missing
/// priority 0, because the canonical form always carries both.
fn push_peer_addr(out: &mut String, address: &PeerAddress, default_kind: AddressType) {
    out.push_str(match address.ip {
        IpAddr::V4(_) => "{\"ip_address\":{\"address_type\":\"ipv4\",\"address\":\"",
        IpAddr::V6(_) => "{\"ip_address\":{\"address_type\":\"ipv6\",\"address\":\"",
    });
    push_ip(out, address.ip);
    out.push_str("\"},\"port\":");
    push_u64(out, u64::from(address.port));
    out.push_str(",\"priority\":");
    push_u64(out, u64::from(address.priority.unwrap_or(0)));
    out.push_str(",\"type\":\"");
    out.push_str(address.kind.unwrap_or(default_kind).name());
    out.push('"');
    if let Some(connection) = address.connection {
        out.push_str(match connection {
            ConnectionKind::Wired => ",\"connection\":\"wired\"",
            ConnectionKind::Wireless => ",\"connection\":\"wireless\"",
        });
    }
    if let Some(asn) = &address.asn {
        out.push_str(",\"asn\":");
        push_string(out, asn);
    }
    if let Some(protocol) = &address.peer_protocol {
        out.push_str(",\"peer_protocol\":");
        push_string(out, protocol);
    }
    out.push('}');
}

/// Encodes a response in canonical RFC 7846 form. A failed response carries only version,
/// response type, error code and transaction ID, as RFC 7846 §4.3 requires.
pub fn encode_response(response: &Response) -> String {
    // About 150 bytes per listed peer: sized once, where growing would copy the answer
    // four times over for a list of 20.
    let peers: usize = response.swarm_results.iter().map(|r| r.peers.len()).sum();
    let mut out = String::with_capacity(128 + 64 * response.swarm_results.len() + 160 * peers);
    let ok = response.status == Status::Ok;
    out.push_str("{\"PPSPTrackerProtocol\":{\"version\":1,\"response_type\":");
    out.push_str(if ok { "0" } else { "1" });
    out.push_str(",\"error_code\":");
    push_u64(&mut out, u64::from(response.status.json_error_code()));
    out.push_str(",\"transaction_id\":");
    push_string(
        &mut out,
        response
            .transaction_id
            .as_ref()
            .map_or("", TransactionId::as_str),
    );
    if ok {
        if let Some(address) = response.reflexive_addresses.first() {
            out.push_str(",\"peer_addr\":");
            push_peer_addr(&mut out, address, AddressType::Reflexive);
        }
        if !response.swarm_results.is_empty() {
            out.push_str(",\"swarm_result\":[");
            for (i, result) in response.swarm_results.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_swarm_result(&mut out, result);
            }
            out.push(']');
        }
    }
    out.push_str("}}");
    out
}

fn push_swarm_result(out: &mut String, result: &SwarmResult) {
    out.push_str("{\"swarm_id\":");
    push_string(out, result.swarm_id.as_str());
    out.push_str(if result.ok {
        ",\"result\":0"
    } else {
        ",\"result\":1"
    });
    if result.ok {
        let mut written = 0usize;
        for peer in &result.peers {
            let Some(address) = peer.addresses.first() else {
                continue;
            };
            out.push_str(if written == 0 {
                ",\"peer_group\":{\"peer_info\":["
            } else {
                ","
            });
            written += 1;
            out.push_str("{\"peer_id\":");
            push_string(out, peer.peer_id.as_str());
            out.push_str(",\"peer_addr\":");
            push_peer_addr(out, address, AddressType::Host);
            out.push('}');
        }
        if written > 0 {
            out.push_str("]}");
        }
    }
    out.push('}');
}

fn push_optional_uint(out: &mut String, key: &str, value: Option<u64>) {
    if let Some(value) = value {
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":");
        push_u64(out, value);
    }
}

/// The bytes a JSON string cannot hold as they are: the quote, the backslash and the
/// control characters (RFC 8259 §7).
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Writes `text` as a JSON string literal: quotes, backslashes and control characters are
/// escaped, everything else is copied as UTF-8.
fn push_string(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    // Identifiers, a few per listed peer, need no escape: one table load per byte decides,
    // and they are copied whole.
    if !text.bytes().any(|b| NEEDS_ESCAPE[usize::from(b)]) {
        out.push_str(text);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte matched above is ASCII, so `i` is a character boundary.
        out.push_str(&text[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        push_string(&mut out, "a\"b\\c\u{1}\n é");
        assert_eq!(out, "\"a\\\"b\\\\c\\u0001\\n é\"");
        let back: String = serde_json::from_str(&out).expect("valid JSON string");
        assert_eq!(back, "a\"b\\c\u{1}\n é");
        // Every ASCII character alone: escaped exactly when JSON needs it, and read back.
        for byte in 0..=127u8 {
            let text = char::from(byte).to_string();
            let mut out = String::new();
            push_string(&mut out, &text);
            let escaped = byte < 0x20 || byte == b'"' || byte == b'\\';
            assert_eq!(out != format!("\"{text}\""), escaped, "byte {byte}");
            assert_eq!(NEEDS_ESCAPE[usize::from(byte)], escaped, "byte {byte}");
            let back: String = serde_json::from_str(&out).expect("valid JSON string");
            assert_eq!(back, text);
        }
    }

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        assert!(check_depth(br#"{"a":"[[[[[[[[[[[[[[[[[[[[["}"#, 2).is_ok());
        assert!(check_depth(br#"{"a":"\"[[[[[[[","b":[]}"#, 2).is_ok());
        assert!(check_depth(br#"{"a":[[1]]}"#, 2).is_err());
    }
}
