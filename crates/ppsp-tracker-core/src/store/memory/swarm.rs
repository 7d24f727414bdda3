//! Swarm records of the memory store: members as 20-byte values in a vector (O(1) random
//! access for sampling) with a hash table of positions, and the rare extras (chunk maps,
//! statistics, start point) in a side table.

use std::collections::HashMap;

use hashbrown::HashTable;
use rand::Rng;
use rand::rngs::StdRng;

use ppsp_proto::{Clip, PeerMode, StreamStats, SwarmId};

use super::session::{grow_exact, mode_bits, mode_of};
use crate::rules::{Criteria, Reachability};
use crate::store::ClipChunks;

/// Swarms up to this many members find a member by scanning; larger ones keep a table of
/// positions.
const INDEXED_FROM: usize = 256;

/// No deadline in [`MemberExtra::deadline`].
pub(super) const NO_DEADLINE: u32 = u32::MAX;

const UNREACHABLE: u8 = 1 << 2;

/// One membership: 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Member {
    /// The session's reference (shard and slot).
    pub(super) session: u32,
    /// The session's generation, so a reused slot is never mistaken for this member.
    pub(super) generation: u32,
    /// Seconds since the store's epoch.
    pub(super) joined: u32,
    flags: u8,
}

impl Member {
    pub(super) fn new(session: u32, generation: u32, mode: PeerMode, joined: u32) -> Self {
        Self {
            session,
            generation,
            joined,
            // Two bits: always fits.
            flags: mode_bits(mode) as u8,
        }
    }

    pub(super) fn mode(&self) -> PeerMode {
        mode_of(u32::from(self.flags))
    }

    fn set_mode(&mut self, mode: PeerMode) {
        self.flags = (self.flags & !3) | mode_bits(mode) as u8;
    }

    pub(super) fn reachable(&self) -> bool {
        self.flags & UNREACHABLE == 0
    }

    pub(super) fn set_reachable(&mut self, reachable: bool) {
        if reachable {
            self.flags &= !UNREACHABLE;
        } else {
            self.flags |= UNREACHABLE;
        }
    }
}

/// What only some members have.
#[derive(Debug)]
pub(super) struct MemberExtra {
    /// When the membership ends by itself (seconds since the store's epoch), or
    /// [`NO_DEADLINE`]. Most JOINs set no ExpireTime, so it lives here, not in [`Member`].
    pub(super) deadline: u32,
    pub(super) start: Option<Clip>,
    pub(super) clips: Vec<ClipChunks>,
    pub(super) stats: Option<StreamStats>,
    /// Chunk-map bytes charged for `clips`.
    pub(super) charged: usize,
    /// Set once the member first reported holding every chunk it covers.
    pub(super) completed_at: Option<u32>,
}

impl Default for MemberExtra {
    fn default() -> Self {
        Self {
            deadline: NO_DEADLINE,
            start: None,
            clips: Vec::new(),
            stats: None,
            charged: 0,
            completed_at: None,
        }
    }
}

impl MemberExtra {
    fn is_empty(&self) -> bool {
        self.deadline == NO_DEADLINE
            && self.start.is_none()
            && self.clips.is_empty()
            && self.stats.is_none()
    }
}

fn mix(session: u32) -> u64 {
    // splitmix64's finaliser: every input bit reaches the high and the low bits, which the
    // hash table uses for its tags and its positions.
    let mut x = u64::from(session).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One swarm.
#[derive(Debug)]
pub(super) struct Swarm {
    pub(super) id: SwarmId,
    pub(super) members: Vec<Member>,
    positions: HashTable<u32>,
    pub(super) extras: HashMap<u32, Box<MemberExtra>>,
    /// LIVESEED members' session references, in join order (usually one).
    pub(super) live_seeds: Vec<u32>,
    pub(super) seeds: u32,
    pub(super) leeches: u32,
    /// Members with a deadline, so sweeps skip swarms that have none.
    pub(super) with_deadline: u32,
    pub(super) configured_live: bool,
}

/// What [`Swarm::upsert`] did to the mode counts.
pub(super) struct ModeChange {
    pub(super) old: Option<PeerMode>,
    pub(super) new: PeerMode,
}

impl Swarm {
    pub(super) fn new(id: SwarmId, configured_live: bool) -> Self {
        Self {
            id,
            members: Vec::new(),
            positions: HashTable::new(),
            extras: HashMap::new(),
            live_seeds: Vec::new(),
            seeds: 0,
            leeches: 0,
            with_deadline: 0,
            configured_live,
        }
    }

    /// Live when a LIVESEED is a member or the swarm is configured as live.
    pub(super) fn is_live(&self) -> bool {
        self.configured_live || !self.live_seeds.is_empty()
    }

    pub(super) fn position(&self, session: u32) -> Option<usize> {
        let members = &self.members;
        if members.len() <= INDEXED_FROM {
            // A scan of a few hundred 20-byte members costs less than the table would in
            // memory (eight bytes a member), and most swarms are this small.
            return members.iter().position(|m| m.session == session);
        }
        self.positions
            .find(mix(session), |&p| {
                members
                    .get(p as usize)
                    .is_some_and(|m| m.session == session)
            })
            .map(|&p| p as usize)
    }

    pub(super) fn get(&self, session: u32) -> Option<&Member> {
        self.members.get(self.position(session)?)
    }

    pub(super) fn get_mut(&mut self, session: u32) -> Option<&mut Member> {
        let position = self.position(session)?;
        self.members.get_mut(position)
    }

    fn count(&mut self, session: u32, mode: PeerMode, add: bool) {
        match mode {
            PeerMode::Seed if add => self.seeds += 1,
            PeerMode::Seed => self.seeds = self.seeds.saturating_sub(1),
            PeerMode::Leech if add => self.leeches += 1,
            PeerMode::Leech => self.leeches = self.leeches.saturating_sub(1),
            PeerMode::LiveSeed if add => self.live_seeds.push(session),
            PeerMode::LiveSeed => self.live_seeds.retain(|s| *s != session),
        }
    }

    /// A member's deadline, or [`NO_DEADLINE`].
    pub(super) fn deadline_of(&self, session: u32) -> u32 {
        self.extras
            .get(&session)
            .map_or(NO_DEADLINE, |e| e.deadline)
    }

    /// Inserts a member, or updates an existing one keeping its chunk maps, statistics and
    /// join time. Returns the mode change for the tracker-wide counts.
    pub(super) fn upsert(
        &mut self,
        member: Member,
        start: Option<Clip>,
        deadline: u32,
    ) -> ModeChange {
        let new = member.mode();
        let old = match self.position(member.session) {
            Some(position) => {
                let existing = &mut self.members[position];
                let old = existing.mode();
                existing.set_mode(new);
                existing.generation = member.generation;
                existing.set_reachable(member.reachable());
                if old != new {
                    self.count(member.session, old, false);
                    self.count(member.session, new, true);
                }
                Some(old)
            }
            None => {
                self.count(member.session, new, true);
                grow_exact(&mut self.members);
                self.members.push(member);
                if self.members.len() == INDEXED_FROM + 1 {
                    self.rebuild_positions();
                } else if self.members.len() > INDEXED_FROM {
                    let position = (self.members.len() - 1) as u32;
                    let members = &self.members;
                    self.positions
                        .insert_unique(mix(member.session), position, |&p| {
                            members.get(p as usize).map_or(0, |m| mix(m.session))
                        });
                }
                None
            }
        };
        let had_deadline = self.deadline_of(member.session) != NO_DEADLINE;
        if start.is_some() || deadline != NO_DEADLINE {
            let extra = self.extras.entry(member.session).or_default();
            extra.start = start;
            extra.deadline = deadline;
        } else if let Some(extra) = self.extras.get_mut(&member.session) {
            extra.start = None;
            extra.deadline = NO_DEADLINE;
            if extra.is_empty() {
                self.extras.remove(&member.session);
            }
        }
        match (had_deadline, deadline != NO_DEADLINE) {
            (false, true) => self.with_deadline += 1,
            (true, false) => self.with_deadline = self.with_deadline.saturating_sub(1),
            _ => {}
        }
        ModeChange { old, new }
    }

    /// Removes a member in O(1) by moving the last one into its slot. Returns it and the
    /// chunk-map bytes its extras were charged.
    pub(super) fn remove(&mut self, session: u32) -> Option<(Member, usize)> {
        let position = self.position(session)?;
        let indexed = self.members.len() > INDEXED_FROM;
        if indexed
            && let Ok(entry) = self
                .positions
                .find_entry(mix(session), |&p| p as usize == position)
        {
            entry.remove();
        }
        let member = self.members.swap_remove(position);
        if indexed && let Some(moved) = self.members.get(position) {
            let moved_session = moved.session;
            let old = self.members.len() as u32;
            if let Some(slot) = self.positions.find_mut(mix(moved_session), |&p| p == old) {
                *slot = position as u32;
            }
        }
        if indexed && self.members.len() <= INDEXED_FROM {
            self.positions = HashTable::new();
        }
        if self.members.len() * 4 < self.members.capacity() && self.members.capacity() > 16 {
            self.members.shrink_to(self.members.len() * 2);
        }
        self.count(session, member.mode(), false);
        let extra = self.extras.remove(&session);
        if extra.as_ref().is_some_and(|e| e.deadline != NO_DEADLINE) {
            self.with_deadline = self.with_deadline.saturating_sub(1);
        }
        let charged = extra.map_or(0, |e| e.charged);
        Some((member, charged))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Builds the table of positions once the swarm passes [`INDEXED_FROM`] members.
    fn rebuild_positions(&mut self) {
        let members = &self.members;
        let mut positions = HashTable::with_capacity(members.len());
        for (position, member) in members.iter().enumerate() {
            positions.insert_unique(mix(member.session), position as u32, |&p| {
                members.get(p as usize).map_or(0, |m| mix(m.session))
            });
        }
        self.positions = positions;
    }

    fn clips_of(&self, session: u32) -> &[ClipChunks] {
        self.extras
            .get(&session)
            .map_or(&[], |e| e.clips.as_slice())
    }

    /// Chooses up to `criteria.wanted` members, best first: LIVESEEDs of a live swarm, then
    /// members meeting the preferences (reachable when asked, holding chunks from the start
    /// point), then the others; each group a uniform random sample. Never `requester`.
    ///
    /// The cost grows with the peers wanted, not the swarm: random positions are probed, a
    /// fixed multiple of the peers wanted when a filter applies. Only a chunk scope that
    /// the probes find nobody for falls back to a scan (so the answer is not a wrong 404).
    pub(super) fn select(
        &self,
        rng: &mut StdRng,
        requester: u32,
        criteria: &Criteria,
        prefer_reachable: bool,
    ) -> Vec<Member> {
        let members = &self.members;
        let n = members.len();
        let wanted = criteria.wanted.min(n);
        let mut out: Vec<usize> = Vec::with_capacity(wanted);
        if wanted == 0 {
            return Vec::new();
        }
        if self.is_live() {
            for session in &self.live_seeds {
                if out.len() == wanted {
                    break;
                }
                if *session != requester
                    && let Some(position) = self.position(*session)
                {
                    out.push(position);
                }
            }
        }
        let preset = out.len();
        let remaining = wanted - preset;
        let prefer_reachable = prefer_reachable || criteria.reachability == Reachability::Prefer;
        if remaining > 0 {
            self.sample_rest(rng, requester, criteria, prefer_reachable, &mut out, preset);
        }
        // Sized up front: collecting through a filter would start small and grow three times.
        let mut chosen = Vec::with_capacity(out.len());
        chosen.extend(out.into_iter().filter_map(|i| members.get(i).copied()));
        chosen
    }

    fn sample_rest(
        &self,
        rng: &mut StdRng,
        requester: u32,
        criteria: &Criteria,
        prefer_reachable: bool,
        out: &mut Vec<usize>,
        preset: usize,
    ) {
        let members = &self.members;
        let n = members.len();
        let wanted = criteria.wanted.min(n);
        let remaining = wanted - preset;
        let filtered = criteria.scope.is_some() || prefer_reachable || criteria.prefer.is_some();
        let probes = if filtered {
            remaining
                .saturating_mul(PROBE_FACTOR)
                .saturating_add(PROBE_SLACK)
        } else {
            // The requester and the peers already chosen may be drawn; draw enough to skip them.
            remaining + preset + 1
        }
        .min(n);

        // Members that qualify but miss a preference, kept to top up the answer.
        let mut second: Vec<usize> = Vec::new();
        let consider = |index: usize, out: &mut Vec<usize>, second: &mut Vec<usize>| {
            let Some(member) = members.get(index) else {
                return;
            };
            if member.session == requester || out[..preset].contains(&index) {
                return;
            }
            // Looked up only for a chunk scope or preference: a plain FIND has neither.
            let clips = || self.clips_of(member.session);
            if criteria
                .scope
                .as_ref()
                .is_some_and(|s| !s.admits(member.mode(), clips()))
            {
                return;
            }
            let preferred = (!prefer_reachable || member.reachable())
                && criteria
                    .prefer
                    .as_ref()
                    .is_none_or(|p| p.admits(member.mode(), clips()));
            if !preferred {
                if second.len() < remaining {
                    second.push(index);
                }
                return;
            }
            out.push(index);
        };
        for index in sample_distinct(n, probes, rng) {
            if out.len() == wanted {
                break;
            }
            consider(index, out, &mut second);
        }
        if criteria.scope.is_some() && out.len() == preset && second.is_empty() && probes < n {
            let start = rng.random_range(0..n);
            for offset in 0..n {
                if out.len() + second.len() >= wanted {
                    break;
                }
                consider((start + offset) % n, out, &mut second);
            }
        }
        for index in second {
            if out.len() == wanted {
                break;
            }
            if !out.contains(&index) {
                out.push(index);
            }
        }
    }
}

/// Members probed per peer wanted when a filter applies.
const PROBE_FACTOR: usize = 8;
/// Extra probes so small requests still look at a fair number of members.
const PROBE_SLACK: usize = 64;

/// `count` distinct indices below `n`, in random order.
fn sample_distinct(n: usize, count: usize, rng: &mut StdRng) -> Vec<usize> {
    let count = count.min(n);
    if count == 0 {
        return Vec::new();
    }
    if count * 2 >= n {
        // Dense: a partial Fisher-Yates shuffle; `n` is at most twice `count` here.
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..count {
            let j = rng.random_range(i..n);
            all.swap(i, j);
        }
        all.truncate(count);
        return all;
    }
    // Sparse: rejection sampling; fewer than two draws per index on average.
    let mut out = Vec::with_capacity(count);
    if count <= 64 {
        while out.len() < count {
            let i = rng.random_range(0..n);
            if !out.contains(&i) {
                out.push(i);
            }
        }
    } else {
        let mut seen = std::collections::HashSet::with_capacity(count * 2);
        while out.len() < count {
            let i = rng.random_range(0..n);
            if seen.insert(i) {
                out.push(i);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn member_is_16_bytes() {
        assert_eq!(size_of::<Member>(), 16);
    }

    #[test]
    fn samples_are_distinct_and_in_range() {
        let mut rng = StdRng::seed_from_u64(7);
        for (n, k) in [(10, 10), (10, 3), (1000, 50), (1000, 600), (5, 0), (0, 4)] {
            let s = sample_distinct(n, k, &mut rng);
            assert_eq!(s.len(), k.min(n));
            let set: std::collections::HashSet<_> = s.iter().collect();
            assert_eq!(set.len(), s.len());
            assert!(s.iter().all(|&i| i < n));
        }
    }

    #[test]
    fn swap_remove_keeps_positions_consistent() {
        let mut swarm = Swarm::new(SwarmId::new("s").expect("id"), false);
        for i in 0..50 {
            swarm.upsert(Member::new(i, 1, PeerMode::Leech, 0), None, NO_DEADLINE);
        }
        for i in 1000..1400 {
            swarm.upsert(Member::new(i, 1, PeerMode::Seed, 0), None, NO_DEADLINE);
        }
        // Past the threshold and back below it.
        for i in 1000..1400 {
            assert!(swarm.position(i).is_some());
            assert!(swarm.remove(i).is_some());
            for (position, member) in swarm.members.iter().enumerate() {
                assert_eq!(swarm.position(member.session), Some(position));
            }
        }
        assert_eq!(swarm.seeds, 0);
        swarm.upsert(Member::new(99, 1, PeerMode::LiveSeed, 0), None, 5);
        assert!(swarm.is_live());
        for i in (0..50).step_by(3) {
            assert!(swarm.remove(i).is_some());
            assert!(swarm.remove(i).is_none());
        }
        for (position, member) in swarm.members.iter().enumerate() {
            assert_eq!(swarm.position(member.session), Some(position));
        }
        assert_eq!(swarm.leeches, 33);
        assert_eq!(swarm.with_deadline, 1);
        swarm.upsert(Member::new(1, 2, PeerMode::Seed, 0), None, NO_DEADLINE);
        assert_eq!((swarm.leeches, swarm.seeds), (32, 1));
        assert!(swarm.remove(99).is_some());
        assert!(!swarm.is_live());
        assert_eq!(swarm.with_deadline, 0);
    }
}
