//! The message model shared by both wire formats.
//!
//! The XML draft (draft-gu-ppsp-tracker-protocol-06) and RFC 7846 (JSON) describe the same
//! conversation with different vocabularies. Both codecs decode into, and encode from, the
//! types here, so the tracker core and the peer never see which format a message came in.
//! Fields that only one format carries are `Option`s or empty `Vec`s; each codec documents
//! which fields it reads and writes.

use std::fmt;
use std::net::IpAddr;

use compact_str::CompactString;

use crate::chunkmap::ChunkMap;
use crate::error::{DecodeError, DecodeErrorKind};
use crate::words;

/// Longest PeerID or SwarmID accepted, in bytes (project limit, draft-gu-ppsp-tracker-protocol-06).
pub const MAX_ID_LEN: usize = 255;
/// Longest AuthToken accepted, in bytes (matches the project XSD).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest JSON `transaction_id` accepted, in bytes.
pub const MAX_TRANSACTION_ID_LEN: usize = 255;

/// True when every byte of `value` is printable ASCII (`!` to `~`), and so no character of
/// it is white space. Eight bytes at a time: identifiers and tokens are checked on every
/// request.
fn is_printable_ascii(value: &str) -> bool {
    // A byte below 0x21 borrows into its high bit when 0x21 is taken from it, a byte of 0x7F
    // carries into it when 1 is added, and a byte from 0x80 up has it already. Borrows and
    // carries that cross into a neighbour only ever set more high bits, so a word holding a
    // byte that is not printable is always looked at byte by byte.
    !words::any_refused(
        value.as_bytes(),
        |word| {
            (word | word.wrapping_sub(words::repeat(0x21)) | word.wrapping_add(words::repeat(1)))
                & words::HIGH_BITS
                != 0
        },
        |_, byte| !byte.is_ascii_graphic(),
    )
}

fn check_identifier(what: &'static str, value: &str) -> Result<(), DecodeError> {
    // Identifiers are nearly always printable ASCII, which one pass over the bytes confirms
    // without decoding characters; anything else gets the full Unicode whitespace check.
    if value.is_empty()
        || value.len() > MAX_ID_LEN
        || (!is_printable_ascii(value) && value.chars().any(char::is_whitespace))
    {
        return Err(DecodeError::new(DecodeErrorKind::InvalidValue {
            field: what,
            reason: "must be 1 to 255 bytes with no whitespace",
        }));
    }
    Ok(())
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        ///
        /// Values up to 24 bytes are kept inline, without an allocation: decoding an
        /// identifier, copying it into a peer list and dropping it cost no allocator call.
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(CompactString);

        impl $name {
            /// Validates `value` and wraps it (a copy of it when it is short enough to
            /// be kept inline).
            ///
            /// # Errors
            /// [`DecodeErrorKind::InvalidValue`] when the value breaks the type's limits.
            pub fn new(value: impl AsRef<str>) -> Result<Self, DecodeError> {
                let value = value.as_ref();
                let check: fn(&str) -> Result<(), DecodeError> = $check;
                check(value)?;
                Ok(Self(CompactString::new(value)))
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// A peer's stable identity, issued at enrolment: 1..255 bytes, no whitespace.
    PeerId,
    |v| check_identifier("PeerID", v)
);
string_newtype!(
    /// The name of a swarm (one content item): 1..255 bytes, no whitespace.
    SwarmId,
    |v| check_identifier("SwarmID", v)
);
string_newtype!(
    /// The opaque session token a tracker issues at CONNECT (XML protocol only).
    AuthToken,
    |v| {
        if v.is_empty()
            || v.len() > MAX_TOKEN_LEN
            || (!is_printable_ascii(v) && v.chars().any(char::is_whitespace))
        {
            return Err(DecodeError::new(DecodeErrorKind::InvalidValue {
                field: "AuthToken",
                reason: "must be 1 to 4096 bytes with no whitespace",
            }));
        }
        Ok(())
    }
);
string_newtype!(
    /// Pairs a response with its request.
    ///
    /// The XML protocol carries a non-negative integer (parsed as `u64`); RFC 7846 carries a
    /// string. Both are kept as text here so that a retransmission cache can compare them
    /// without caring which format they came in; [`TransactionId::numeric`] builds the XML form.
    TransactionId,
    |v| {
        if v.is_empty() || v.len() > MAX_TRANSACTION_ID_LEN {
            return Err(DecodeError::new(DecodeErrorKind::InvalidValue {
                field: "TransactionID",
                reason: "must be 1 to 255 bytes",
            }));
        }
        Ok(())
    }
);

impl TransactionId {
    /// A transaction ID in the XML protocol's numeric form.
    pub fn numeric(value: u64) -> Self {
        Self(CompactString::from(itoa::Buffer::new().format(value)))
    }

    /// The numeric value, when the ID is a plain decimal number that fits in `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        if self.0.bytes().all(|b| b.is_ascii_digit()) {
            self.0.parse().ok()
        } else {
            None
        }
    }
}

/// How a peer takes part in a swarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerMode {
    /// Holds the whole content (XML `SEED`, JSON `SEEDER`).
    Seed,
    /// The live source (XML `LIVESEED`; JSON has no such mode and says `SEEDER`).
    LiveSeed,
    /// Holds some or none of the content (`LEECH` in both).
    Leech,
}

impl PeerMode {
    /// Every mode.
    pub const ALL: [Self; 3] = [Self::Seed, Self::LiveSeed, Self::Leech];

    /// True for the modes that hold every chunk they announce (SEED and LIVESEED).
    pub fn is_seed(self) -> bool {
        matches!(self, Self::Seed | Self::LiveSeed)
    }

    /// The XML protocol's name (draft section 5.1): `SEED`, `LIVESEED`, `LEECH`. Also the
    /// name logs, metrics and statistics pages use.
    pub const fn xml_name(self) -> &'static str {
        match self {
            Self::Seed => "SEED",
            Self::LiveSeed => "LIVESEED",
            Self::Leech => "LEECH",
        }
    }

    /// The mode an XML name stands for, ignoring case.
    pub fn from_xml_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.xml_name().eq_ignore_ascii_case(name))
    }

    /// RFC 7846's name: `SEEDER` for both seed modes (it has no live seed), `LEECH`.
    pub const fn json_name(self) -> &'static str {
        match self {
            Self::Seed | Self::LiveSeed => "SEEDER",
            Self::Leech => "LEECH",
        }
    }

    /// The mode an RFC 7846 name stands for (exact match).
    pub fn from_json_name(name: &str) -> Option<Self> {
        [Self::Seed, Self::Leech]
            .into_iter()
            .find(|mode| mode.json_name() == name)
    }
}

/// ICE-style candidate type of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressType {
    /// An address of one of the peer's own interfaces.
    Host,
    /// The peer's address as seen from outside its NAT.
    Reflexive,
    /// A relay or proxy that forwards to the peer.
    Proxy,
}

impl AddressType {
    /// Every type.
    pub const ALL: [Self; 3] = [Self::Host, Self::Reflexive, Self::Proxy];

    /// The name both protocols use: `HOST`, `REFLEXIVE`, `PROXY`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Host => "HOST",
            Self::Reflexive => "REFLEXIVE",
            Self::Proxy => "PROXY",
        }
    }

    /// The type a name stands for, ignoring case (XML) or exactly (JSON).
    pub fn from_name(name: &str, ignore_case: bool) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| {
            if ignore_case {
                kind.name().eq_ignore_ascii_case(name)
            } else {
                kind.name() == name
            }
        })
    }
}

/// RFC 7846 `connection` of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionKind {
    /// `wireless`
    Wireless,
    /// `wired`
    Wired,
}

/// One transport address of a peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddress {
    /// IPv4 or IPv6 address; IPv6 is always written in RFC 5952 form.
    pub ip: IpAddr,
    /// Port on which the peer accepts peer-protocol traffic.
    pub port: u16,
    /// ICE candidate priority; larger is preferred.
    pub priority: Option<u32>,
    /// Candidate type.
    pub kind: Option<AddressType>,
    /// RFC 7846 only: wired or wireless access.
    pub connection: Option<ConnectionKind>,
    /// RFC 7846 only: autonomous system number of the access network, as text.
    pub asn: Option<String>,
    /// RFC 7846 only: the peer protocol offered on this address (for example `PPSP-PP`).
    pub peer_protocol: Option<String>,
}

impl PeerAddress {
    /// An address with only IP and port set.
    pub fn new(ip: IpAddr, port: u16) -> Self {
        Self {
            ip,
            port,
            priority: None,
            kind: None,
            connection: None,
            asn: None,
            peer_protocol: None,
        }
    }

    /// Builder-style setter for the candidate type.
    #[must_use]
    pub fn with_kind(mut self, kind: AddressType) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Builder-style setter for the priority.
    #[must_use]
    pub fn with_priority(mut self, priority: u32) -> Self {
        self.priority = Some(priority);
        self
    }
}

/// RFC 7846 `ability_nat`: the requester's NAT traversal situation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbilityNat {
    /// `NO_NAT`: directly reachable.
    NoNat,
    /// `STUN`: behind NAT, can use STUN.
    Stun,
    /// `TURN`: behind NAT, needs a relay.
    Turn,
}

/// How many peers the requester wants, and (RFC 7846) what it says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerNum {
    /// Largest number of candidates wanted.
    pub count: u32,
    /// RFC 7846 `ability_nat`.
    pub ability_nat: Option<AbilityNat>,
    /// RFC 7846 `concurrent_links`.
    pub concurrent_links: Option<u64>,
    /// RFC 7846 `online_time`, seconds.
    pub online_time: Option<u64>,
    /// RFC 7846 `upload_bandwidth`, Kbps.
    pub upload_bandwidth: Option<u64>,
}

impl PeerNum {
    /// Only a count, as the XML protocol carries it.
    pub fn count(count: u32) -> Self {
        Self {
            count,
            ability_nat: None,
            concurrent_links: None,
            online_time: None,
            upload_bandwidth: None,
        }
    }
}

/// NAT capability hints sent as `Stat` properties `NAT` and `STUN` (XML protocol).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatHints {
    /// The peer believes it is behind a NAT.
    pub nat: Option<bool>,
    /// The peer supports STUN-like traversal.
    pub stun: Option<bool>,
}

impl NatHints {
    /// True when neither flag is set.
    pub fn is_empty(&self) -> bool {
        self.nat.is_none() && self.stun.is_none()
    }
}

/// Media type of a chunk sequence (`ChunkSegments@type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaType {
    /// `video`
    Video,
    /// `audio`
    Audio,
}

/// One `Segment` of a `ChunkSegments` list: a chunk range, optionally with a bitmap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Segment {
    /// First chunk, inclusive.
    pub from: Option<u64>,
    /// Last chunk, inclusive. Usually absent on JOIN.
    pub to: Option<u64>,
    /// Number of scalable levels.
    pub levels: Option<u32>,
    /// Chunk count (schema and cruz-01 attribute).
    pub chunks: Option<u64>,
    /// The chunk bitmap, in a ChunkMap report. Its range is exactly `from..=to`.
    pub map: Option<ChunkMap>,
}

impl Segment {
    /// A plain inclusive range with nothing else set.
    pub fn range(from: u64, to: Option<u64>) -> Self {
        Self {
            from: Some(from),
            to,
            levels: None,
            chunks: None,
            map: None,
        }
    }

    /// A segment carrying a chunk map; `from` and `to` follow the map's range.
    pub fn with_map(map: ChunkMap) -> Self {
        Self {
            from: Some(map.first()),
            to: map.last(),
            levels: None,
            chunks: None,
            map: Some(map),
        }
    }
}

/// `ChunkSegments`: chunk ranges of one media type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChunkSegments {
    /// `@type`
    pub media: MediaType,
    /// At least one segment.
    pub segments: Vec<Segment>,
}

/// `Clip`: a content scope (JOIN start point, FIND chunk scope, ChunkMap report).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Clip {
    /// Clip name, as in the MPD.
    pub name: String,
    /// `Type` (`Video` / `Audio`, schema and cruz-01 only).
    pub kind: Option<MediaType>,
    /// `ChunkSegmentIndex`: a single chunk index (cruz-01 FIND_CHUNK).
    pub chunk_segment_index: Option<u64>,
    /// `ChunkSegments`.
    pub segments: Option<ChunkSegments>,
}

/// SASL credentials carried by an XML CONNECT.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SaslAuth {
    /// Mechanism name, for example `PLAIN` or `ANONYMOUS` (upper case, 1..20 characters).
    pub mechanism: String,
    /// Decoded SASL initial response, if any.
    pub credentials: Option<Vec<u8>>,
}

/// RFC 7846 swarm action inside CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SwarmActionKind {
    /// `JOIN`
    Join,
    /// `LEAVE`
    Leave,
}

/// RFC 7846 `swarm_action`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SwarmAction {
    /// Swarm acted on.
    pub swarm_id: SwarmId,
    /// JOIN or LEAVE.
    pub action: SwarmActionKind,
    /// `SEEDER` maps to [`PeerMode::Seed`], `LEECH` to [`PeerMode::Leech`].
    pub mode: PeerMode,
}

/// CONNECT: register with the tracker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Connect {
    /// XML: SASL mechanism and initial response. Absent in JSON (authentication is HTTP's).
    pub auth: Option<SaslAuth>,
    /// Declared interface addresses.
    pub addresses: Vec<PeerAddress>,
    /// JSON: how many peers wanted per joined swarm.
    pub peer_num: Option<PeerNum>,
    /// JSON: swarms joined or left in this CONNECT (at least one in JSON, none in XML).
    pub swarm_actions: Vec<SwarmAction>,
}

/// JOIN (XML): enter a swarm.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Join {
    /// Swarm to join.
    pub swarm_id: SwarmId,
    /// How the peer takes part.
    pub mode: PeerMode,
    /// NAT and STUN hints.
    pub hints: NatHints,
    /// Most candidates wanted.
    pub peer_num: Option<u32>,
    /// Starting point.
    pub clip: Option<Clip>,
    /// Seconds after which the membership ends; 0 means never.
    pub expire_time: u64,
}

/// LEAVE (XML): quit one swarm.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Leave {
    /// Swarm to leave.
    pub swarm_id: SwarmId,
}

/// FIND: ask for candidate peers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Find {
    /// Swarm searched.
    pub swarm_id: SwarmId,
    /// Most candidates wanted (and, in JSON, the requester's self-description).
    pub peer_num: Option<PeerNum>,
    /// NAT and STUN hints (XML).
    pub hints: NatHints,
    /// Chunk scope (XML).
    pub clip: Option<Clip>,
}

/// `ChunkMapReport`: which chunks of a swarm the peer holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChunkMapReport {
    /// Swarm the map belongs to.
    pub swarm_id: SwarmId,
    /// One or more clips whose segments carry bitmaps.
    pub clips: Vec<Clip>,
}

/// Transfer statistics for one swarm (`StreamStatsReport` / RFC 7846 `stream_stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StreamStats {
    /// Swarm the numbers belong to.
    pub swarm_id: Option<SwarmId>,
    /// Bytes sent to peers of this swarm since JOIN.
    pub uploaded_bytes: Option<u64>,
    /// Bytes received from peers of this swarm since JOIN.
    pub downloaded_bytes: Option<u64>,
    /// Available upstream bandwidth, bits per second.
    pub available_bandwidth: Option<u64>,
    /// RFC 7846 only: current number of links.
    pub concurrent_links: Option<u64>,
}

/// One reported statistic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Stat {
    /// `ChunkMap`
    ChunkMap(ChunkMapReport),
    /// `StreamStats`
    StreamStats(StreamStats),
    /// `NAT`: behind a NAT.
    Nat(bool),
    /// `STUN`: supports STUN-like traversal.
    Stun(bool),
}

/// STAT_REPORT. An empty list is a keep-alive (RFC 7846 STAT_REPORT without `stat_report`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StatReport {
    /// The reported statistics.
    pub stats: Vec<Stat>,
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RequestBody {
    /// CONNECT (both formats).
    Connect(Connect),
    /// DISCONNECT (XML).
    Disconnect,
    /// JOIN (XML).
    Join(Join),
    /// LEAVE (XML).
    Leave(Leave),
    /// FIND (both).
    Find(Find),
    /// STAT_REPORT (both).
    StatReport(StatReport),
    /// KEEPALIVE (XML).
    KeepAlive,
}

impl RequestBody {
    /// The method name, as the XML protocol writes it.
    pub fn method(&self) -> Method {
        match self {
            Self::Connect(_) => Method::Connect,
            Self::Disconnect => Method::Disconnect,
            Self::Join(_) => Method::Join,
            Self::Leave(_) => Method::Leave,
            Self::Find(_) => Method::Find,
            Self::StatReport(_) => Method::StatReport,
            Self::KeepAlive => Method::KeepAlive,
        }
    }
}

/// Request methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// CONNECT
    Connect,
    /// DISCONNECT
    Disconnect,
    /// JOIN
    Join,
    /// LEAVE
    Leave,
    /// FIND
    Find,
    /// STAT_REPORT
    StatReport,
    /// KEEPALIVE
    KeepAlive,
}

impl Method {
    /// All methods.
    pub const ALL: [Self; 7] = [
        Self::Connect,
        Self::Disconnect,
        Self::Join,
        Self::Leave,
        Self::Find,
        Self::StatReport,
        Self::KeepAlive,
    ];

    /// Upper-case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Disconnect => "DISCONNECT",
            Self::Join => "JOIN",
            Self::Leave => "LEAVE",
            Self::Find => "FIND",
            Self::StatReport => "STAT_REPORT",
            Self::KeepAlive => "KEEPALIVE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request from a peer to a tracker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// Requesting peer.
    pub peer_id: PeerId,
    /// Session token (XML, every method but CONNECT). A missing token is an
    /// authentication failure, not a syntax error, so it is optional here.
    pub auth_token: Option<AuthToken>,
    /// Echoed in the response.
    pub transaction_id: TransactionId,
    /// The method and its fields.
    pub body: RequestBody,
}

/// Outcome of a request (XML `<Response>` string, JSON `response_type`/`error_code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// 200, `OK` (JSON error code 0).
    Ok,
    /// 400, `INVALID SYNTAX` (JSON 1).
    InvalidSyntax,
    /// 400, `VERSION NOT SUPPORTED` (JSON 2).
    VersionNotSupported,
    /// 401, `AUTHENTICATION REQUIRED` (JSON 6).
    AuthenticationRequired,
    /// 403, `MESSAGE FORBIDDEN` (JSON 3).
    MessageForbidden,
    /// 404, `OBJECT NOT FOUND` (JSON has none; sent as 3).
    ObjectNotFound,
    /// 500, `INTERNAL ERROR` (JSON 4).
    InternalError,
    /// 503, `TEMPORARILY OVERLOADED` (JSON 5).
    TemporarilyOverloaded,
}

impl Status {
    /// All statuses.
    pub const ALL: [Self; 8] = [
        Self::Ok,
        Self::InvalidSyntax,
        Self::VersionNotSupported,
        Self::AuthenticationRequired,
        Self::MessageForbidden,
        Self::ObjectNotFound,
        Self::InternalError,
        Self::TemporarilyOverloaded,
    ];

    /// The HTTP status code that goes with it.
    pub fn http_code(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::InvalidSyntax | Self::VersionNotSupported => 400,
            Self::AuthenticationRequired => 401,
            Self::MessageForbidden => 403,
            Self::ObjectNotFound => 404,
            Self::InternalError => 500,
            Self::TemporarilyOverloaded => 503,
        }
    }

    /// The exact PPSP string of the XML protocol (`OK`, `INVALID SYNTAX`, ...).
    pub fn ppsp_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::InvalidSyntax => "INVALID SYNTAX",
            Self::VersionNotSupported => "VERSION NOT SUPPORTED",
            Self::AuthenticationRequired => "AUTHENTICATION REQUIRED",
            Self::MessageForbidden => "MESSAGE FORBIDDEN",
            Self::ObjectNotFound => "OBJECT NOT FOUND",
            Self::InternalError => "INTERNAL ERROR",
            Self::TemporarilyOverloaded => "TEMPORARILY OVERLOADED",
        }
    }

    /// RFC 7846 `error_code`.
    pub fn json_error_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::InvalidSyntax => 1,
            Self::VersionNotSupported => 2,
            Self::MessageForbidden | Self::ObjectNotFound => 3,
            Self::InternalError => 4,
            Self::TemporarilyOverloaded => 5,
            Self::AuthenticationRequired => 6,
        }
    }

    /// The outcome a client derives from a bare HTTP status when the body is missing or
    /// unreadable (draft-gu-ppsp-tracker-protocol-06).
    pub fn from_http_code(code: u16) -> Self {
        match code {
            200..=299 => Self::Ok,
            401 => Self::AuthenticationRequired,
            403 => Self::MessageForbidden,
            404 => Self::ObjectNotFound,
            503 => Self::TemporarilyOverloaded,
            500..=599 => Self::InternalError,
            _ => Self::InvalidSyntax,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ppsp_str())
    }
}

/// One candidate in a peer list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerInfo {
    /// Candidate's identity.
    pub peer_id: PeerId,
    /// Its mode in the swarm (XML only).
    pub mode: Option<PeerMode>,
    /// Where to reach it, best first. JSON carries exactly one (the first).
    pub addresses: Vec<PeerAddress>,
    /// `PeerLocation` (XML), free text such as `AS64500`.
    pub location: Option<String>,
    /// `ConnectionType` (XML), free text such as `FIBER`.
    pub connection_type: Option<String>,
    /// `EndPointRankCost` (XML): lower is better.
    pub rank_cost: Option<i64>,
}

/// The answer for one swarm: the XML `SwarmID` + `PeerInfoList`, or an RFC 7846
/// `swarm_result`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SwarmResult {
    /// The swarm.
    pub swarm_id: SwarmId,
    /// Per-swarm outcome (JSON `result` 0 = true); always true in XML.
    pub ok: bool,
    /// Candidates, best first; empty when there are none (XML omits `PeerInfoList`).
    pub peers: Vec<PeerInfo>,
}

/// A response from a tracker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Response {
    /// Outcome.
    pub status: Status,
    /// Echo of the request's ID; absent when the request was too broken to read it.
    pub transaction_id: Option<TransactionId>,
    /// XML: the session token (CONNECT, or a rotation in any 200).
    pub auth_token: Option<AuthToken>,
    /// The requester's address as the tracker saw it (XML 0..2, JSON 0..1).
    pub reflexive_addresses: Vec<PeerAddress>,
    /// Per-swarm results. XML carries at most one.
    pub swarm_results: Vec<SwarmResult>,
}

impl Response {
    /// A bare response with a status and an optional transaction ID.
    pub fn status(status: Status, transaction_id: Option<TransactionId>) -> Self {
        Self {
            status,
            transaction_id,
            auth_token: None,
            reflexive_addresses: Vec::new(),
            swarm_results: Vec::new(),
        }
    }
}

/// Either direction of a message, for decoders that do not know in advance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        assert!(PeerId::new("656164657221").is_ok());
        assert!(PeerId::new("").is_err());
        assert!(PeerId::new("a b").is_err());
        assert!(SwarmId::new("x".repeat(256)).is_err());
        assert!(SwarmId::new("x".repeat(255)).is_ok());
    }

    #[test]
    fn printable_ascii_check_agrees_with_byte_by_byte() {
        // Every ASCII byte and a few others, at every offset of strings up to three words
        // long, among printable neighbours of both extremes.
        let mut odd: Vec<char> = (0u8..=0x7F).map(char::from).collect();
        odd.extend(['\u{a0}', '\u{e9}', '\u{2003}', '\u{ffff}']);
        for len in 1..=24 {
            for at in 0..len {
                for filler in ['!', '~', 'm'] {
                    for &c in &odd {
                        let value: String =
                            (0..len).map(|i| if i == at { c } else { filler }).collect();
                        assert_eq!(
                            is_printable_ascii(&value),
                            value.bytes().all(|b| b.is_ascii_graphic()),
                            "{value:?}"
                        );
                    }
                }
            }
        }
        assert!(is_printable_ascii(""));
        assert!(AuthToken::new("a\u{2003}b").is_err());
        assert!(AuthToken::new("caf\u{e9}").is_ok());
        assert!(PeerId::new("peer\u{a0}1").is_err());
    }

    #[test]
    fn transaction_id_numeric_form() {
        assert_eq!(TransactionId::numeric(42).as_u64(), Some(42));
        assert_eq!(
            TransactionId::new("a17b-0001").expect("valid").as_u64(),
            None
        );
    }

    #[test]
    fn status_mappings() {
        for s in Status::ALL {
            assert_eq!(
                Status::from_http_code(s.http_code()) == s,
                s != Status::VersionNotSupported
            );
        }
        assert_eq!(Status::ObjectNotFound.json_error_code(), 3);
    }
}
