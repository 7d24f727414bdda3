//! Session records of the memory store: 64 bytes each in a slab, found through a hash
//! table of slot numbers (the PeerID is stored once, in the slot: inline up to 24 bytes, as
//! [`PeerId`] keeps itself, so a peer list copies it without validating or allocating).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hashbrown::HashTable;
use ppsp_proto::{AbilityNat, AddressType, Format, NatHints, PeerAddress, PeerId, PeerMode};

use crate::contact::{self, Contact};

/// No membership in [`SessionSlot::first_swarm`].
pub(super) const NO_SWARM: u32 = u32::MAX;

// Bits 0 to 4 of `flags` are free (they held the inline PeerID's length).
const IPV6: u16 = 1 << 5;
const JSON: u16 = 1 << 6;
const NAT_SHIFT: u16 = 7;
const STUN_SHIFT: u16 = 9;
const ABILITY_SHIFT: u16 = 11;
const ADDR_SHIFT: u16 = 13;
/// The peer declared one plain address at its observed IP: `port` is its port.
const ADDR_ONE_AT_OBSERVED: u16 = 0;
/// The peer declared nothing: it is listed at its observed IP and `port` (the source port).
const ADDR_OBSERVED_ONLY: u16 = 1;
/// The declared addresses are in the spill box.
const ADDR_SPILLED: u16 = 2;
/// Like [`ADDR_ONE_AT_OBSERVED`], with an ICE priority kept in the bytes an IPv4 address
/// leaves free in `ip` (IPv4 only).
const ADDR_ONE_WITH_PRIORITY: u16 = 3;
/// The one address at the observed IP was declared with type HOST (not left untyped).
const HOST_KIND: u16 = 1 << 15;

fn tri(value: Option<bool>) -> u16 {
    match value {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }
}

fn untri(bits: u16) -> Option<bool> {
    match bits & 3 {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

fn ability_bits(ability: Option<AbilityNat>) -> u16 {
    match ability {
        None => 0,
        Some(AbilityNat::NoNat) => 1,
        Some(AbilityNat::Stun) => 2,
        Some(AbilityNat::Turn) => 3,
    }
}

fn ability_of(bits: u16) -> Option<AbilityNat> {
    match bits & 3 {
        1 => Some(AbilityNat::NoNat),
        2 => Some(AbilityNat::Stun),
        3 => Some(AbilityNat::Turn),
        _ => None,
    }
}

/// A membership as a session keeps it: swarm reference and mode in one `u32`.
pub(super) fn membership(swarm_ref: u32, mode: PeerMode) -> u32 {
    (swarm_ref << 2) | mode_bits(mode)
}

pub(super) fn membership_swarm(entry: u32) -> u32 {
    entry >> 2
}

pub(super) fn membership_mode(entry: u32) -> PeerMode {
    mode_of(entry)
}

pub(super) fn mode_bits(mode: PeerMode) -> u32 {
    match mode {
        PeerMode::Seed => 0,
        PeerMode::LiveSeed => 1,
        PeerMode::Leech => 2,
    }
}

pub(super) fn mode_of(bits: u32) -> PeerMode {
    match bits & 3 {
        0 => PeerMode::Seed,
        1 => PeerMode::LiveSeed,
        _ => PeerMode::Leech,
    }
}

/// What does not fit the slot: rare, so boxed.
#[derive(Debug, Default)]
pub(super) struct Spill {
    declared: Vec<PeerAddress>,
    /// Memberships past the first.
    pub(super) more_swarms: Vec<u32>,
    /// Chunk-map bytes charged to this session over all memberships.
    pub(super) chunk_bytes: usize,
}

/// One session: 64 bytes.
#[derive(Debug)]
pub(super) struct SessionSlot {
    /// `None` only in a free slot.
    id: Option<PeerId>,
    ip: [u8; 16],
    /// 0 marks a free slot.
    pub(super) generation: u32,
    /// Seconds since the store's epoch.
    pub(super) last_activity: u32,
    pub(super) first_swarm: u32,
    port: u16,
    flags: u16,
    spill: Option<Box<Spill>>,
}

/// What a new session is made from.
pub(super) struct NewSession<'a> {
    pub(super) peer_id: &'a PeerId,
    pub(super) format: Format,
    pub(super) observed: SocketAddr,
    pub(super) declared: &'a [PeerAddress],
    pub(super) ability_nat: Option<AbilityNat>,
    pub(super) generation: u32,
    pub(super) now: u32,
}

/// An address the slot can keep inline: IP and port, at most the HOST type (and a
/// priority, see [`ADDR_ONE_WITH_PRIORITY`]).
fn is_plain(address: &PeerAddress) -> bool {
    matches!(address.kind, None | Some(AddressType::Host))
        && address.connection.is_none()
        && address.asn.is_none()
        && address.peer_protocol.is_none()
}

impl SessionSlot {
    fn free() -> Self {
        Self {
            id: None,
            ip: [0; 16],
            generation: 0,
            last_activity: 0,
            first_swarm: NO_SWARM,
            port: 0,
            flags: 0,
            spill: None,
        }
    }

    fn new(session: &NewSession<'_>) -> Self {
        let mut slot = Self::free();
        slot.id = Some(session.peer_id.clone());
        if session.format == Format::Json {
            slot.flags |= JSON;
        }
        slot.generation = session.generation;
        slot.last_activity = session.now;
        slot.set_addresses(session.observed, session.declared);
        slot.set_ability(session.ability_nat);
        slot
    }

    fn spill_mut(&mut self) -> &mut Spill {
        self.spill.get_or_insert_with(Box::default)
    }

    /// Chunk-map bytes charged to the session; adjusting it allocates the spill box.
    pub(super) fn chunk_bytes(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.chunk_bytes)
    }

    pub(super) fn set_chunk_bytes(&mut self, bytes: usize) {
        if bytes == 0 && self.spill.is_none() {
            return;
        }
        self.spill_mut().chunk_bytes = bytes;
        self.shrink_spill();
    }

    /// Drops the spill box once it holds nothing.
    fn shrink_spill(&mut self) {
        if self.spill.as_ref().is_some_and(|s| {
            s.declared.is_empty() && s.more_swarms.is_empty() && s.chunk_bytes == 0
        }) {
            self.spill = None;
        }
    }

    pub(super) fn id_matches(&self, peer_id: &str) -> bool {
        self.id_str() == peer_id
    }

    pub(super) fn id_str(&self) -> &str {
        self.id.as_ref().map_or("", PeerId::as_str)
    }

    /// The session's PeerID; `None` in a free slot.
    pub(super) fn peer_id(&self) -> Option<&PeerId> {
        self.id.as_ref()
    }

    pub(super) fn format(&self) -> Format {
        if self.flags & JSON != 0 {
            Format::Json
        } else {
            Format::Xml
        }
    }

    pub(super) fn observed_ip(&self) -> IpAddr {
        if self.flags & IPV6 != 0 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                self.ip[0], self.ip[1], self.ip[2], self.ip[3],
            ))
        }
    }

    fn addr_mode(&self) -> u16 {
        (self.flags >> ADDR_SHIFT) & 3
    }

    /// Replaces the observed address and, when `declared` is not empty or nothing was
    /// declared before, the declared ones.
    pub(super) fn set_addresses(&mut self, observed: SocketAddr, declared: &[PeerAddress]) {
        self.flags &= !IPV6;
        match observed.ip() {
            IpAddr::V4(v4) => {
                self.ip = [0; 16];
                self.ip[..4].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.ip = v6.octets();
                self.flags |= IPV6;
            }
        }
        let declared = &declared[..declared.len().min(contact::MAX_DECLARED_ADDRESSES)];
        let mode = match declared {
            [] => ADDR_OBSERVED_ONLY,
            [one] if one.ip == observed.ip() && is_plain(one) => match one.priority {
                None => ADDR_ONE_AT_OBSERVED,
                Some(priority) if observed.is_ipv4() => {
                    self.ip[4..8].copy_from_slice(&priority.to_be_bytes());
                    ADDR_ONE_WITH_PRIORITY
                }
                Some(_) => ADDR_SPILLED,
            },
            _ => ADDR_SPILLED,
        };
        let inline = matches!(mode, ADDR_ONE_AT_OBSERVED | ADDR_ONE_WITH_PRIORITY);
        self.port = match declared {
            [one] if inline => one.port,
            _ => observed.port(),
        };
        let host = matches!(declared, [one] if inline && one.kind.is_some());
        self.flags = (self.flags & !HOST_KIND) | if host { HOST_KIND } else { 0 };
        if mode == ADDR_SPILLED {
            self.spill_mut().declared = declared.to_vec();
        } else if let Some(spill) = self.spill.as_mut() {
            spill.declared.clear();
        }
        self.flags = (self.flags & !(3 << ADDR_SHIFT)) | (mode << ADDR_SHIFT);
        self.shrink_spill();
    }

    pub(super) fn declared(&self) -> Vec<PeerAddress> {
        match self.addr_mode() {
            mode @ (ADDR_ONE_AT_OBSERVED | ADDR_ONE_WITH_PRIORITY) => {
                let mut address = PeerAddress::new(self.observed_ip(), self.port);
                if mode == ADDR_ONE_WITH_PRIORITY {
                    address.priority = Some(u32::from_be_bytes([
                        self.ip[4], self.ip[5], self.ip[6], self.ip[7],
                    ]));
                }
                vec![if self.flags & HOST_KIND != 0 {
                    address.with_kind(AddressType::Host)
                } else {
                    address
                }]
            }
            ADDR_SPILLED => self
                .spill
                .as_ref()
                .map(|s| s.declared.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    pub(super) fn hints(&self) -> NatHints {
        NatHints {
            nat: untri(self.flags >> NAT_SHIFT),
            stun: untri(self.flags >> STUN_SHIFT),
        }
    }

    /// Merges NAT hints; true when anything changed.
    pub(super) fn merge_hints(&mut self, hints: NatHints) -> bool {
        let old = self.hints();
        let merged = NatHints {
            nat: hints.nat.or(old.nat),
            stun: hints.stun.or(old.stun),
        };
        if merged == old {
            return false;
        }
        self.flags = (self.flags & !(3 << NAT_SHIFT) & !(3 << STUN_SHIFT))
            | (tri(merged.nat) << NAT_SHIFT)
            | (tri(merged.stun) << STUN_SHIFT);
        true
    }

    pub(super) fn ability(&self) -> Option<AbilityNat> {
        ability_of(self.flags >> ABILITY_SHIFT)
    }

    pub(super) fn set_ability(&mut self, ability: Option<AbilityNat>) {
        self.flags =
            (self.flags & !(3 << ABILITY_SHIFT)) | (ability_bits(ability) << ABILITY_SHIFT);
    }

    /// Behind a NAT and STUN-capable, as far as is known.
    pub(super) fn nat_facts(&self) -> (Option<bool>, Option<bool>) {
        let declared = self.declared();
        let hints = self.hints();
        let ability = self.ability();
        let behind = contact::behind_nat(&declared, self.observed_ip(), hints, ability);
        (behind, contact::stun_support(hints, ability))
    }

    /// True unless the peer is known to be behind a NAT.
    pub(super) fn reachable(&self) -> bool {
        self.nat_facts().0 != Some(true)
    }

    pub(super) fn contact(&self) -> Option<Contact> {
        let peer_id = self.peer_id()?.clone();
        let observed = SocketAddr::new(self.observed_ip(), self.port);
        Some(Contact::build(
            peer_id,
            self.declared(),
            observed,
            self.hints(),
            self.ability(),
        ))
    }

    /// Every membership entry (see [`membership`]).
    pub(super) fn memberships(&self) -> impl Iterator<Item = u32> + '_ {
        (self.first_swarm != NO_SWARM)
            .then_some(self.first_swarm)
            .into_iter()
            .chain(
                self.spill
                    .iter()
                    .flat_map(|s| s.more_swarms.iter().copied()),
            )
    }

    pub(super) fn membership_count(&self) -> usize {
        self.memberships().count()
    }

    pub(super) fn membership_of(&self, swarm_ref: u32) -> Option<u32> {
        self.memberships()
            .find(|m| membership_swarm(*m) == swarm_ref)
    }

    /// Adds a membership or changes its mode.
    pub(super) fn set_membership(&mut self, swarm_ref: u32, mode: PeerMode) {
        let entry = membership(swarm_ref, mode);
        if self.first_swarm == NO_SWARM || membership_swarm(self.first_swarm) == swarm_ref {
            self.first_swarm = entry;
            return;
        }
        let more = &mut self.spill_mut().more_swarms;
        match more.iter_mut().find(|m| membership_swarm(**m) == swarm_ref) {
            Some(existing) => *existing = entry,
            None => more.push(entry),
        }
    }

    pub(super) fn remove_membership(&mut self, swarm_ref: u32) {
        if self.first_swarm != NO_SWARM && membership_swarm(self.first_swarm) == swarm_ref {
            self.first_swarm = match self.spill.as_mut().and_then(|s| s.more_swarms.pop()) {
                Some(next) => next,
                None => NO_SWARM,
            };
        } else if let Some(spill) = self.spill.as_mut() {
            spill
                .more_swarms
                .retain(|m| membership_swarm(*m) != swarm_ref);
        }
        self.shrink_spill();
    }

    /// Takes every membership out (the session is being removed or replaced).
    pub(super) fn take_memberships(&mut self) -> Vec<u32> {
        let all: Vec<u32> = self.memberships().collect();
        self.first_swarm = NO_SWARM;
        if let Some(spill) = self.spill.as_mut() {
            spill.more_swarms.clear();
        }
        self.shrink_spill();
        all
    }

    pub(super) fn alive(&self, now: u32, idle_secs: u32) -> bool {
        self.generation != 0 && now < self.last_activity.saturating_add(idle_secs)
    }
}

/// One shard of sessions.
#[derive(Debug, Default)]
pub(super) struct SessionShard {
    slots: Vec<SessionSlot>,
    free: Vec<u32>,
    index: HashTable<u32>,
    live: usize,
}

fn slot_index(slot: u32) -> usize {
    // u32 always fits usize on the targets this builds for (32 and 64 bit).
    slot as usize
}

impl SessionShard {
    /// The slot of `peer_id`'s session, live or not yet swept.
    pub(super) fn find(&self, hash: u64, peer_id: &str) -> Option<u32> {
        self.index
            .find(hash, |&slot| {
                self.slots
                    .get(slot_index(slot))
                    .is_some_and(|s| s.id_matches(peer_id))
            })
            .copied()
    }

    pub(super) fn get(&self, slot: u32) -> Option<&SessionSlot> {
        self.slots
            .get(slot_index(slot))
            .filter(|s| s.generation != 0)
    }

    pub(super) fn get_mut(&mut self, slot: u32) -> Option<&mut SessionSlot> {
        self.slots
            .get_mut(slot_index(slot))
            .filter(|s| s.generation != 0)
    }

    /// Slots in use or free, for scans.
    pub(super) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Stores a new session; the caller has checked that `peer_id` has none.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        session: &NewSession<'_>,
        hash_of: impl Fn(&str) -> u64,
    ) -> Option<u32> {
        let record = SessionSlot::new(session);
        let slot = match self.free.pop() {
            Some(slot) => {
                *self.slots.get_mut(slot_index(slot))? = record;
                slot
            }
            None => {
                let slot = u32::try_from(self.slots.len()).ok()?;
                grow_exact(&mut self.slots);
                self.slots.push(record);
                slot
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(hash, slot, |&s| {
            hash_of(slots.get(slot_index(s)).map_or("", SessionSlot::id_str))
        });
        self.live += 1;
        Some(slot)
    }

    /// Deletes a session, returning its memberships.
    pub(super) fn remove(&mut self, hash: u64, slot: u32) -> Vec<u32> {
        let Some(record) = self.slots.get_mut(slot_index(slot)) else {
            return Vec::new();
        };
        if record.generation == 0 {
            return Vec::new();
        }
        let memberships = record.take_memberships();
        *record = SessionSlot::free();
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        self.free.push(slot);
        self.live -= 1;
        memberships
    }
}

/// Grows a vector by an eighth instead of doubling it, so a large table carries little
/// unused capacity (the slab of a million sessions would otherwise average a third empty).
/// Growth stays amortised O(1); the copies add up to eight times the final size.
pub(super) fn grow_exact<T>(vector: &mut Vec<T>) {
    if vector.len() == vector.capacity() {
        let extra = (vector.len() / 8).max(4);
        vector.reserve_exact(extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_64_bytes() {
        assert_eq!(size_of::<SessionSlot>(), 64);
    }

    fn new_session<'a>(id: &'a PeerId, declared: &'a [PeerAddress]) -> NewSession<'a> {
        NewSession {
            peer_id: id,
            format: Format::Xml,
            observed: "192.0.2.1:40000".parse().expect("addr"),
            declared,
            ability_nat: None,
            generation: 7,
            now: 1,
        }
    }

    #[test]
    fn addresses_round_trip_through_the_compact_form() {
        let id = PeerId::new("a-peer").expect("id");
        let plain = [PeerAddress::new("192.0.2.1".parse().expect("ip"), 7000)];
        let slot = SessionSlot::new(&new_session(&id, &plain));
        assert!(slot.spill.is_none());
        assert_eq!(slot.declared(), plain.to_vec());
        let host = [plain[0]
            .clone()
            .with_kind(AddressType::Host)
            .with_priority(9)];
        let slot = SessionSlot::new(&new_session(&id, &host));
        assert!(slot.spill.is_none());
        assert_eq!(slot.declared(), host.to_vec());
        assert_eq!(slot.id_str(), "a-peer");

        let v6 = [PeerAddress::new("2001:db8::1".parse().expect("ip"), 7000).with_priority(5)];
        let mut slot6 = SessionSlot::new(&new_session(&id, &v6));
        slot6.set_addresses("[2001:db8::1]:9".parse().expect("addr"), &v6);
        assert!(slot6.spill.is_some());
        assert_eq!(slot6.declared(), v6.to_vec());
        let natted = [PeerAddress::new("10.0.0.1".parse().expect("ip"), 7000).with_priority(5)];
        let slot = SessionSlot::new(&new_session(&id, &natted));
        assert_eq!(slot.declared(), natted.to_vec());
        assert_eq!(slot.nat_facts().0, Some(true));

        let none = SessionSlot::new(&new_session(&id, &[]));
        let contact = none.contact().expect("contact");
        assert_eq!(contact.addresses[0].port, 40000);
    }

    #[test]
    fn a_one_address_contact_is_what_the_general_rule_builds() {
        let id = PeerId::new("a-peer").expect("id");
        let at_observed = PeerAddress::new("192.0.2.1".parse().expect("ip"), 7000);
        let cases = [
            vec![at_observed.clone()],
            vec![at_observed.with_kind(AddressType::Host).with_priority(9)],
            // Elsewhere than observed, and two addresses: the general path.
            vec![PeerAddress::new("10.0.0.1".parse().expect("ip"), 7000)],
            vec![
                PeerAddress::new("192.0.2.1".parse().expect("ip"), 7000),
                PeerAddress::new("2001:db8::1".parse().expect("ip"), 7000),
            ],
        ];
        for declared in cases {
            let mut slot = SessionSlot::new(&new_session(&id, &declared));
            for hints in [
                NatHints::default(),
                NatHints {
                    nat: Some(true),
                    stun: Some(true),
                },
            ] {
                slot.merge_hints(hints);
                let general = Contact::build(
                    id.clone(),
                    slot.declared(),
                    SocketAddr::new(slot.observed_ip(), slot.port),
                    slot.hints(),
                    slot.ability(),
                );
                assert_eq!(slot.contact(), Some(general), "{declared:?} {hints:?}");
            }
        }
    }

    #[test]
    fn long_ids_stay_whole_and_memberships_spill_and_come_back() {
        let long = PeerId::new("x".repeat(100)).expect("id");
        let mut slot = SessionSlot::new(&new_session(&long, &[]));
        assert!(slot.id_matches(long.as_str()));
        assert!(!slot.id_matches("x"));
        assert_eq!(slot.peer_id(), Some(&long));
        // The PeerID keeps a long value itself: no spill box for it.
        assert!(slot.spill.is_none());
        for swarm in 0..5 {
            slot.set_membership(swarm, PeerMode::Seed);
        }
        slot.set_membership(3, PeerMode::Leech);
        assert_eq!(slot.membership_count(), 5);
        assert_eq!(
            slot.membership_of(3).map(membership_mode),
            Some(PeerMode::Leech)
        );
        slot.remove_membership(0);
        assert_eq!(slot.membership_count(), 4);
        assert_eq!(slot.take_memberships().len(), 4);
        assert_eq!(slot.membership_count(), 0);
    }

    #[test]
    fn hints_merge_and_report_changes() {
        let id = PeerId::new("p").expect("id");
        let mut slot = SessionSlot::new(&new_session(&id, &[]));
        assert!(slot.merge_hints(NatHints {
            nat: Some(true),
            stun: None
        }));
        assert!(!slot.merge_hints(NatHints {
            nat: Some(true),
            stun: None
        }));
        assert!(!slot.reachable());
        assert!(slot.merge_hints(NatHints {
            nat: None,
            stun: Some(false)
        }));
        assert_eq!(
            slot.hints(),
            NatHints {
                nat: Some(true),
                stun: Some(false)
            }
        );
    }
}
