//! Swarms and their members, including the chunk maps members report.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ppsp_proto::{ChunkMap, Clip, MediaType, PeerId, PeerMode, StreamStats};

use crate::session::Contact;

/// Widest chunk range kept per clip and media type for one member, in bits (512 KiB).
/// A report that would stretch the kept range past this replaces it instead, so sparse
/// reports far apart cannot make the tracker allocate huge maps.
pub(crate) const MAX_CLIP_SPAN_BITS: u64 = 1 << 22;

/// Clips (name and media type) kept per member; the oldest is dropped past this.
pub(crate) const MAX_CLIPS_PER_MEMBER: usize = 32;

/// A member's chunk map for one clip and media type: the union of its reported ranges.
#[derive(Clone, Debug)]
pub(crate) struct ClipChunks {
    pub(crate) clip: String,
    pub(crate) media: MediaType,
    pub(crate) map: ChunkMap,
}

/// One peer's membership of a swarm.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) peer_id: PeerId,
    pub(crate) mode: PeerMode,
    /// The session generation that owns this membership.
    pub(crate) session_generation: u64,
    /// Changes at every (re-)JOIN, so stale ExpireTime entries are recognised.
    pub(crate) generation: u64,
    pub(crate) joined_at: Instant,
    pub(crate) deadline: Option<Instant>,
    pub(crate) contact: Arc<Contact>,
    /// The start point declared at JOIN, if any. Boxed, like the statistics, to keep the
    /// member small: selection touches members at random, so their size is cache misses.
    pub(crate) start: Option<Box<Clip>>,
    pub(crate) chunks: Vec<ClipChunks>,
    pub(crate) stats: Option<Box<StreamStats>>,
}

impl Member {
    /// Stores a reported chunk map. A report for exactly the stored range replaces it; a
    /// report for another range overwrites the bits it covers and keeps the rest.
    pub(crate) fn apply_chunk_map(&mut self, clip: &str, media: MediaType, map: &ChunkMap) {
        if map.is_empty() {
            return;
        }
        if let Some(existing) = self
            .chunks
            .iter_mut()
            .find(|c| c.media == media && c.clip == clip)
        {
            existing.map = overwrite(&existing.map, map);
            return;
        }
        if self.chunks.len() >= MAX_CLIPS_PER_MEMBER {
            self.chunks.remove(0);
        }
        self.chunks.push(ClipChunks {
            clip: clip.to_owned(),
            media,
            map: map.clone(),
        });
    }

    /// Chunks held over all clips.
    pub(crate) fn chunks_held(&self) -> u64 {
        self.chunks.iter().map(|c| c.map.count()).sum()
    }
}

fn bit_position(bit: u64) -> Option<(usize, u8)> {
    Some((usize::try_from(bit / 8).ok()?, 0x80u8 >> (bit % 8)))
}

fn set_bit(bytes: &mut [u8], bit: u64) {
    if let Some((index, mask)) = bit_position(bit)
        && let Some(byte) = bytes.get_mut(index)
    {
        *byte |= mask;
    }
}

fn clear_bit(bytes: &mut [u8], bit: u64) {
    if let Some((index, mask)) = bit_position(bit)
        && let Some(byte) = bytes.get_mut(index)
    {
        *byte &= !mask;
    }
}

/// Clears bits `start..start + len` of an MSB-first bitmap.
fn clear_bits(bytes: &mut [u8], start: u64, len: u64) {
    let end = start.saturating_add(len);
    let mut bit = start;
    while bit < end && bit % 8 != 0 {
        clear_bit(bytes, bit);
        bit += 1;
    }
    while bit + 8 <= end {
        if let Some((index, _)) = bit_position(bit)
            && let Some(byte) = bytes.get_mut(index)
        {
            *byte = 0;
        }
        bit += 8;
    }
    while bit < end {
        clear_bit(bytes, bit);
        bit += 1;
    }
}

/// ORs `map` into an MSB-first bitmap, its first chunk landing on bit `offset`.
pub(crate) fn or_bits(bytes: &mut [u8], offset: u64, map: &ChunkMap) {
    if offset % 8 == 0 {
        // Byte-aligned: whole bytes at once. Pad bits of `map` are zero, so nothing past
        // its range is touched.
        let Ok(start) = usize::try_from(offset / 8) else {
            return;
        };
        for (dst, src) in bytes.iter_mut().skip(start).zip(map.as_bytes()) {
            *dst |= *src;
        }
    } else {
        let first = map.first();
        for chunk in map.iter() {
            set_bit(bytes, offset + (chunk - first));
        }
    }
}

/// `old` with the range of `new` replaced by `new`'s bits.
fn overwrite(old: &ChunkMap, new: &ChunkMap) -> ChunkMap {
    if old.is_empty() || (old.first() == new.first() && old.len() == new.len()) {
        return new.clone();
    }
    // Both ends fit in u64: ChunkMap::from_bytes refuses ranges that overflow.
    let low = old.first().min(new.first());
    let end = old
        .first()
        .saturating_add(old.len())
        .max(new.first().saturating_add(new.len()));
    let span = end - low;
    if span > MAX_CLIP_SPAN_BITS {
        return new.clone();
    }
    let Ok(byte_len) = usize::try_from(span.div_ceil(8)) else {
        return new.clone();
    };
    let mut bytes = vec![0u8; byte_len];
    or_bits(&mut bytes, old.first() - low, old);
    clear_bits(&mut bytes, new.first() - low, new.len());
    or_bits(&mut bytes, new.first() - low, new);
    ChunkMap::from_bytes(low, span, bytes).unwrap_or_else(|_| new.clone())
}

/// The members of one swarm, in a vector for O(1) random access with an index by PeerID.
#[derive(Debug, Default)]
pub(crate) struct Swarm {
    pub(crate) members: Vec<Member>,
    index: HashMap<PeerId, usize>,
    /// LIVESEED members, in join order (usually one).
    pub(crate) live_seeds: Vec<PeerId>,
    pub(crate) seeds: usize,
    pub(crate) leeches: usize,
    pub(crate) configured_live: bool,
}

impl Swarm {
    pub(crate) fn new(configured_live: bool) -> Self {
        Self {
            configured_live,
            ..Self::default()
        }
    }

    /// Live when a LIVESEED is a member or the swarm is configured as live.
    pub(crate) fn is_live(&self) -> bool {
        self.configured_live || !self.live_seeds.is_empty()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn position(&self, peer_id: &PeerId) -> Option<usize> {
        self.index.get(peer_id).copied()
    }

    pub(crate) fn get(&self, peer_id: &PeerId) -> Option<&Member> {
        self.members.get(self.position(peer_id)?)
    }

    pub(crate) fn get_mut(&mut self, peer_id: &PeerId) -> Option<&mut Member> {
        let position = self.position(peer_id)?;
        self.members.get_mut(position)
    }

    fn count(&mut self, peer_id: &PeerId, mode: PeerMode, add: bool) {
        match mode {
            PeerMode::Seed if add => self.seeds += 1,
            PeerMode::Seed => self.seeds = self.seeds.saturating_sub(1),
            PeerMode::Leech if add => self.leeches += 1,
            PeerMode::Leech => self.leeches = self.leeches.saturating_sub(1),
            PeerMode::LiveSeed if add => self.live_seeds.push(peer_id.clone()),
            PeerMode::LiveSeed => self.live_seeds.retain(|p| p != peer_id),
        }
    }

    /// Inserts a new member, or updates an existing one keeping its chunk maps,
    /// statistics and join time.
    pub(crate) fn upsert(&mut self, member: Member) {
        if let Some(position) = self.position(&member.peer_id) {
            let Some(existing) = self.members.get_mut(position) else {
                return;
            };
            let old_mode = existing.mode;
            existing.mode = member.mode;
            existing.session_generation = member.session_generation;
            existing.generation = member.generation;
            existing.deadline = member.deadline;
            existing.contact = member.contact;
            existing.start = member.start;
            if old_mode != member.mode {
                self.count(&member.peer_id, old_mode, false);
                self.count(&member.peer_id, member.mode, true);
            }
            return;
        }
        self.count(&member.peer_id, member.mode, true);
        self.index
            .insert(member.peer_id.clone(), self.members.len());
        self.members.push(member);
    }

    /// Removes a member in O(1) by moving the last one into its slot.
    pub(crate) fn remove(&mut self, peer_id: &PeerId) -> Option<Member> {
        let position = self.index.remove(peer_id)?;
        if position >= self.members.len() {
            return None;
        }
        let member = self.members.swap_remove(position);
        if let Some(moved) = self.members.get(position) {
            self.index.insert(moved.peer_id.clone(), position);
        }
        self.count(peer_id, member.mode, false);
        Some(member)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use ppsp_proto::NatHints;

    use super::*;

    fn member(id: &str, mode: PeerMode) -> Member {
        let observed: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        Member {
            peer_id: PeerId::new(id).expect("id"),
            mode,
            session_generation: 1,
            generation: 1,
            joined_at: Instant::now(),
            deadline: None,
            contact: Arc::new(Contact::build(
                &PeerId::new(id).expect("id"),
                &[],
                observed,
                NatHints::default(),
                None,
            )),
            start: None,
            chunks: Vec::new(),
            stats: None,
        }
    }

    fn map(first: u64, len: u64, held: &[u64]) -> ChunkMap {
        let mut m = ChunkMap::new(first, len);
        for c in held {
            m.insert(*c);
        }
        m
    }

    #[test]
    fn swap_remove_keeps_index_consistent() {
        let mut swarm = Swarm::new(false);
        for i in 0..5 {
            swarm.upsert(member(&format!("p{i}"), PeerMode::Leech));
        }
        swarm.upsert(member("live", PeerMode::LiveSeed));
        assert!(swarm.is_live());
        assert!(swarm.remove(&PeerId::new("p1").expect("id")).is_some());
        assert!(swarm.remove(&PeerId::new("p1").expect("id")).is_none());
        for m in &swarm.members {
            assert_eq!(
                swarm
                    .position(&m.peer_id)
                    .map(|p| &swarm.members[p].peer_id),
                Some(&m.peer_id)
            );
        }
        assert_eq!(swarm.leeches, 4);
        swarm.upsert(member("p2", PeerMode::Seed));
        assert_eq!((swarm.leeches, swarm.seeds), (3, 1));
        assert!(swarm.remove(&PeerId::new("live").expect("id")).is_some());
        assert!(!swarm.is_live());
    }

    #[test]
    fn same_range_overwrites_other_ranges_union() {
        let mut m = member("p", PeerMode::Leech);
        m.apply_chunk_map("c", MediaType::Video, &map(0, 16, &[1, 2, 3]));
        m.apply_chunk_map("c", MediaType::Video, &map(0, 16, &[5]));
        assert_eq!(m.chunks[0].map.iter().collect::<Vec<_>>(), vec![5]);
        // A disjoint, unaligned range is added to the union.
        m.apply_chunk_map("c", MediaType::Video, &map(21, 5, &[22, 25]));
        assert_eq!(m.chunks[0].map.iter().collect::<Vec<_>>(), vec![5, 22, 25]);
        // An overlapping range overwrites exactly the bits it covers.
        m.apply_chunk_map("c", MediaType::Video, &map(4, 20, &[10]));
        assert_eq!(m.chunks[0].map.iter().collect::<Vec<_>>(), vec![10, 25]);
        // Other media types are kept apart.
        m.apply_chunk_map("c", MediaType::Audio, &map(0, 8, &[0]));
        assert_eq!(m.chunks.len(), 2);
        assert_eq!(m.chunks_held(), 3);
    }

    #[test]
    fn far_apart_reports_do_not_allocate_huge_maps() {
        let mut m = member("p", PeerMode::Leech);
        m.apply_chunk_map("c", MediaType::Video, &map(0, 8, &[1]));
        m.apply_chunk_map("c", MediaType::Video, &map(1 << 40, 8, &[(1 << 40) + 1]));
        assert_eq!(m.chunks[0].map.first(), 1 << 40);
        assert_eq!(m.chunks[0].map.len(), 8);
    }
}
