//! The records kept in Redis, as compact JSON: a session per PeerID and a member per
//! (swarm, PeerID). Field names are one or two letters because every byte is stored once per
//! peer; the mapping to the protocol types is here and nowhere else.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use ppsp_proto::{
    AbilityNat, AddressType, ChunkMap, ChunkSet, ConnectionKind, Format, MediaType, NatHints,
    PeerAddress, PeerId, PeerMode, StreamStats,
};
use ppsp_tracker_core::rules::{LiveSession, StartPoint};
use ppsp_tracker_core::store::ClipChunks;
use ppsp_tracker_core::{Contact, MAX_DECLARED_ADDRESSES};

/// One address, as declared by a peer or built for its contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AddressRecord {
    ip: IpAddr,
    p: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pr: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    asn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pp: Option<String>,
}

impl AddressRecord {
    pub(crate) fn from_address(address: &PeerAddress) -> Self {
        Self {
            ip: address.ip,
            p: address.port,
            pr: address.priority,
            k: address.kind.map(|k| match k {
                AddressType::Host => 0,
                AddressType::Reflexive => 1,
                AddressType::Proxy => 2,
            }),
            c: address.connection.map(|c| match c {
                ConnectionKind::Wireless => 0,
                ConnectionKind::Wired => 1,
            }),
            asn: address.asn.clone(),
            pp: address.peer_protocol.clone(),
        }
    }

    pub(crate) fn to_address(&self) -> PeerAddress {
        let mut address = PeerAddress::new(self.ip, self.p);
        address.priority = self.pr;
        address.kind = self.k.and_then(|k| match k {
            0 => Some(AddressType::Host),
            1 => Some(AddressType::Reflexive),
            2 => Some(AddressType::Proxy),
            _ => None,
        });
        address.connection = self.c.and_then(|c| match c {
            0 => Some(ConnectionKind::Wireless),
            1 => Some(ConnectionKind::Wired),
            _ => None,
        });
        address.asn.clone_from(&self.asn);
        address.peer_protocol.clone_from(&self.pp);
        address
    }
}

/// A session: who the peer is, how it is reached, and which swarms it is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    /// Generation, named by the session's AuthTokens.
    pub(crate) g: u32,
    /// Dialect: 0 XML, 1 JSON.
    pub(crate) f: u8,
    /// Last activity, seconds since the Unix epoch.
    pub(crate) l: u64,
    /// Observed source address.
    pub(crate) o: SocketAddr,
    /// Declared addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) d: Vec<AddressRecord>,
    /// RFC 7846 `ability_nat`: 0 NO_NAT, 1 STUN, 2 TURN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) a: Option<u8>,
    /// NAT hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) n: Option<bool>,
    /// STUN hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) s: Option<bool>,
    /// Memberships: swarm and mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) w: Vec<(String, u8)>,
    /// Chunk-map bytes charged over all memberships.
    #[serde(default)]
    pub(crate) b: u64,
}

pub(crate) fn format_code(format: Format) -> u8 {
    match format {
        Format::Xml => 0,
        Format::Json => 1,
    }
}

pub(crate) fn format_of(code: u8) -> Format {
    if code == 1 { Format::Json } else { Format::Xml }
}

pub(crate) fn mode_code(mode: PeerMode) -> u8 {
    match mode {
        PeerMode::Seed => 0,
        PeerMode::LiveSeed => 1,
        PeerMode::Leech => 2,
    }
}

pub(crate) fn mode_of(code: u8) -> PeerMode {
    match code {
        0 => PeerMode::Seed,
        1 => PeerMode::LiveSeed,
        _ => PeerMode::Leech,
    }
}

/// The counter field of a mode in swarm and global counters.
pub(crate) fn mode_field(mode: PeerMode) -> &'static str {
    match mode {
        PeerMode::Seed => "seeds",
        PeerMode::LiveSeed => "live_seeds",
        PeerMode::Leech => "leeches",
    }
}

fn ability_code(ability: AbilityNat) -> u8 {
    match ability {
        AbilityNat::NoNat => 0,
        AbilityNat::Stun => 1,
        AbilityNat::Turn => 2,
    }
}

fn ability_of(code: u8) -> Option<AbilityNat> {
    match code {
        0 => Some(AbilityNat::NoNat),
        1 => Some(AbilityNat::Stun),
        2 => Some(AbilityNat::Turn),
        _ => None,
    }
}

fn media_code(media: MediaType) -> u8 {
    match media {
        MediaType::Video => 0,
        MediaType::Audio => 1,
    }
}

fn media_of(code: u8) -> MediaType {
    if code == 1 {
        MediaType::Audio
    } else {
        MediaType::Video
    }
}

impl SessionRecord {
    /// A new session's record.
    pub(crate) fn new(
        generation: u32,
        format: Format,
        now: u64,
        observed: SocketAddr,
        declared: &[PeerAddress],
        ability: Option<AbilityNat>,
    ) -> Self {
        let mut record = Self {
            g: generation,
            f: format_code(format),
            l: now,
            o: observed,
            d: Vec::new(),
            a: ability.map(ability_code),
            n: None,
            s: None,
            w: Vec::new(),
            b: 0,
        };
        record.set_addresses(observed, declared);
        record
    }

    pub(crate) fn format(&self) -> Format {
        format_of(self.f)
    }

    /// What the core's session rules look at.
    pub(crate) fn live(&self) -> LiveSession {
        LiveSession {
            format: self.format(),
            generation: self.g,
            observed_ip: self.o.ip(),
        }
    }

    pub(crate) fn alive(&self, now: u64, idle_secs: u64) -> bool {
        self.g != 0 && now < self.l.saturating_add(idle_secs)
    }

    pub(crate) fn declared(&self) -> Vec<PeerAddress> {
        self.d.iter().map(AddressRecord::to_address).collect()
    }

    pub(crate) fn set_addresses(&mut self, observed: SocketAddr, declared: &[PeerAddress]) {
        self.o = observed;
        self.d = declared
            .iter()
            .take(MAX_DECLARED_ADDRESSES)
            .map(AddressRecord::from_address)
            .collect();
    }

    pub(crate) fn set_ability(&mut self, ability: Option<AbilityNat>) {
        self.a = ability.map(ability_code);
    }

    pub(crate) fn hints(&self) -> NatHints {
        NatHints {
            nat: self.n,
            stun: self.s,
        }
    }

    /// Merges hints; true when anything changed.
    pub(crate) fn merge_hints(&mut self, hints: NatHints) -> bool {
        let merged = NatHints {
            nat: hints.nat.or(self.n),
            stun: hints.stun.or(self.s),
        };
        let changed = merged != self.hints();
        self.n = merged.nat;
        self.s = merged.stun;
        changed
    }

    /// The contact others get for this session.
    pub(crate) fn contact(&self, peer_id: &PeerId) -> Contact {
        Contact::build(
            peer_id.clone(),
            self.declared(),
            self.o,
            self.hints(),
            self.a.and_then(ability_of),
        )
    }

    pub(crate) fn membership(&self, swarm: &str) -> Option<PeerMode> {
        self.w
            .iter()
            .find(|(s, _)| s == swarm)
            .map(|(_, m)| mode_of(*m))
    }

    pub(crate) fn set_membership(&mut self, swarm: &str, mode: PeerMode) {
        match self.w.iter_mut().find(|(s, _)| s == swarm) {
            Some(entry) => entry.1 = mode_code(mode),
            None => self.w.push((swarm.to_owned(), mode_code(mode))),
        }
    }

    pub(crate) fn remove_membership(&mut self, swarm: &str) {
        self.w.retain(|(s, _)| s != swarm);
    }
}

/// One reported chunk map of a clip: segments as (first, length, base64 bitmap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClipRecord {
    n: String,
    m: u8,
    s: Vec<(u64, u64, String)>,
}

impl ClipRecord {
    pub(crate) fn from_clip(clip: &ClipChunks) -> Self {
        Self {
            n: clip.clip.to_string(),
            m: media_code(clip.media),
            s: clip
                .chunks
                .segments()
                .iter()
                .map(|map| (map.first(), map.len(), map.to_base64()))
                .collect(),
        }
    }

    /// The clip's chunk set; `None` when a stored bitmap does not decode.
    pub(crate) fn to_clip(&self) -> Option<ClipChunks> {
        let mut chunks = ChunkSet::new();
        for (first, len, bitmap) in &self.s {
            let map = ChunkMap::from_base64(*first, *len, bitmap, u64::MAX).ok()?;
            chunks = chunks.with(&map);
        }
        Some(ClipChunks {
            clip: self.n.as_str().into(),
            media: media_of(self.m),
            chunks,
        })
    }
}

/// Statistics reported for a membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatsRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) u: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) d: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bw: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cl: Option<u64>,
}

impl StatsRecord {
    pub(crate) fn from_stats(stats: &StreamStats) -> Self {
        Self {
            u: stats.uploaded_bytes,
            d: stats.downloaded_bytes,
            bw: stats.available_bandwidth,
            cl: stats.concurrent_links,
        }
    }
}

/// The contact of a member, copied from its session so a peer list is read from the
/// swarm's slot alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ContactRecord {
    a: Vec<AddressRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<bool>,
}

impl ContactRecord {
    pub(crate) fn from_contact(contact: &Contact) -> Self {
        Self {
            a: contact
                .addresses
                .iter()
                .map(AddressRecord::from_address)
                .collect(),
            n: contact.behind_nat,
            s: contact.stun,
        }
    }

    pub(crate) fn to_contact(&self, peer_id: PeerId) -> Contact {
        Contact {
            peer_id,
            addresses: self.a.iter().map(AddressRecord::to_address).collect(),
            behind_nat: self.n,
            stun: self.s,
        }
    }

    pub(crate) fn reachable(&self) -> bool {
        self.n != Some(true)
    }

    pub(crate) fn nat_facts(&self) -> (Option<bool>, Option<bool>) {
        (self.n, self.s)
    }
}

/// A declared start point: clip name, media code and first chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StartRecord(String, u8, u64);

impl StartRecord {
    pub(crate) fn from_start(start: &StartPoint) -> Self {
        Self(start.clip.clone(), media_code(start.media), start.chunk)
    }

    pub(crate) fn to_start(&self) -> StartPoint {
        StartPoint {
            clip: self.0.clone(),
            media: media_of(self.1),
            chunk: self.2,
        }
    }
}

/// A member of a swarm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberRecord {
    /// The generation of the session that joined.
    pub(crate) g: u32,
    /// Mode.
    pub(crate) m: u8,
    /// Join time, seconds since the Unix epoch.
    pub(crate) j: u64,
    /// How others reach it.
    pub(crate) c: ContactRecord,
    /// When the membership ends by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dl: Option<u64>,
    /// Reported chunk maps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) cl: Vec<ClipRecord>,
    /// Reported statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) st: Option<StatsRecord>,
    /// When its chunk maps first covered every clip fully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) done: Option<u64>,
    /// The start point its latest JOIN declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sp: Option<StartRecord>,
    /// Chunk-map bytes charged.
    #[serde(default)]
    pub(crate) ch: u64,
}

impl MemberRecord {
    pub(crate) fn mode(&self) -> PeerMode {
        mode_of(self.m)
    }

    /// The member's chunk maps; undecodable ones are left out.
    pub(crate) fn clips(&self) -> Vec<ClipChunks> {
        self.cl.iter().filter_map(ClipRecord::to_clip).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_json() {
        let mut address = PeerAddress::new("10.0.0.1".parse().expect("ip"), 7000)
            .with_priority(5)
            .with_kind(AddressType::Host);
        address.asn = Some("64500".into());
        let mut session = SessionRecord::new(
            9,
            Format::Json,
            100,
            "192.0.2.1:4000".parse().expect("addr"),
            std::slice::from_ref(&address),
            Some(AbilityNat::Stun),
        );
        session.set_membership("s", PeerMode::Leech);
        let text = serde_json::to_string(&session).expect("json");
        let back: SessionRecord = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, session);
        assert_eq!(back.declared(), vec![address]);
        assert_eq!(back.membership("s"), Some(PeerMode::Leech));

        let mut map = ChunkMap::new(10, 20);
        map.insert(12);
        let clip = ClipChunks {
            clip: "c".into(),
            media: MediaType::Audio,
            chunks: ChunkSet::new().with(&map),
        };
        assert_eq!(ClipRecord::from_clip(&clip).to_clip(), Some(clip));

        let start = StartPoint {
            clip: "c".into(),
            media: MediaType::Audio,
            chunk: 40,
        };
        let text = serde_json::to_string(&StartRecord::from_start(&start)).expect("json");
        assert_eq!(text, r#"["c",1,40]"#);
        let back: StartRecord = serde_json::from_str(&text).expect("parse");
        assert_eq!(back.to_start(), start);
    }
}
