//! The in-memory store: the default, sharded, with compact records.
//!
//! Sessions live in slabs of 64-byte slots, one slab per shard (shard chosen by a hash of
//! the PeerID); swarms in slabs of their own (shard by SwarmID). A member is 20 bytes: the
//! session's slot reference, its generation, mode and join time. What only some
//! members have (chunk maps, statistics, a start point) sits in a side table. Nothing is
//! shared by pointer between a session and its memberships: a peer list is sampled under
//! the swarm's lock, then each chosen member's contact is read from its session slot.
//!
//! Locking: an operation takes its session shard's lock and, while holding it, at most one
//! swarm shard lock at a time. Nothing takes a session lock while holding a swarm lock and
//! no path holds two locks of one kind, so the order session → swarm rules out deadlocks.
//! Peer lists are filled in after every lock is released.

mod addresses;
mod session;
mod swarm;

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hashbrown::{DefaultHashBuilder, HashTable};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use ppsp_proto::{NatHints, PeerId, PeerMode, Stat, StatReport, SwarmAction, SwarmId};

use self::addresses::AddressCounts;
use self::session::{NewSession, SessionShard, membership_mode, membership_swarm};
use self::swarm::{Member, MemberExtra, NO_DEADLINE, Swarm};
use super::{JoinSpec, Registration, SessionKey, Store, StorePolicy, SwarmActionsOutcome};
use crate::contact::needs_reachable_peers;
use crate::rules::{self, Criteria, Reachability, StartPoint};
use crate::snapshot::{
    ClipAvailability, PeerDetail, RECENT_COMPLETIONS, SwarmDetail, SwarmPage, SwarmQuery,
    SwarmSummary, Totals,
};
use crate::store::ClipChunks;
use crate::tracker::{SessionState, SweepReport};
use crate::{Candidate, Cap, Config, Timestamp, TrackerError};

/// Session slots scanned per lock hold during a sweep.
const SWEEP_STEP: usize = 4096;
/// Members copied per lock hold for a swarm's page.
const COPY_STEP: usize = 8192;
/// Reporting members looked at for a swarm's chunk availability.
const AVAILABILITY_SAMPLE: usize = 4096;
/// From this many swarms on, the listing behind swarm pages is reused within a second.
const CACHED_LISTING_SWARMS: u64 = 1000;
/// Bits of a swarm reference (the rest of a session's membership entry is the mode).
const SWARM_REF_BITS: u32 = 30;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the tracker down with it; the state behind a
    // poisoned lock is still structurally valid.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct Counters {
    sessions: AtomicU64,
    swarms: AtomicU64,
    seeds: AtomicU64,
    live_seeds: AtomicU64,
    leeches: AtomicU64,
    chunk_bytes: AtomicU64,
    sessions_expired: AtomicU64,
    memberships_expired: AtomicU64,
    refusals: [AtomicU64; Cap::ALL.len()],
}

impl Counters {
    fn mode(&self, mode: PeerMode) -> &AtomicU64 {
        match mode {
            PeerMode::Seed => &self.seeds,
            PeerMode::LiveSeed => &self.live_seeds,
            PeerMode::Leech => &self.leeches,
        }
    }

    fn refuse(&self, cap: Cap) -> TrackerError {
        if let Some(index) = Cap::ALL.iter().position(|c| *c == cap) {
            self.refusals[index].fetch_add(1, Ordering::Relaxed);
        }
        TrackerError::OverCap(cap)
    }

    fn add_bytes(&self, delta: isize) {
        if delta >= 0 {
            self.chunk_bytes.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.chunk_bytes
                .fetch_sub(delta.unsigned_abs() as u64, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct SwarmShard {
    slots: Vec<Option<Swarm>>,
    free: Vec<u32>,
    index: HashTable<u32>,
    rng: StdRng,
}

/// A cached list of swarm summaries, largest first, and the second it was made.
type SummaryCache = Option<(u64, Arc<Vec<SwarmSummary>>)>;

/// The in-memory [`Store`]. See the module documentation.
pub struct MemoryStore {
    policy: StorePolicy,
    live: HashSet<SwarmId>,
    epoch_secs: u64,
    idle_secs: u32,
    sessions: Box<[Mutex<SessionShard>]>,
    swarms: Box<[Mutex<SwarmShard>]>,
    shard_bits: u32,
    hasher: DefaultHashBuilder,
    next_generation: AtomicU32,
    addresses: AddressCounts,
    counters: Counters,
    summaries: Mutex<SummaryCache>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// A request's live session, with its shard locked.
struct Held<'a> {
    shard: MutexGuard<'a, SessionShard>,
    index: usize,
    slot: u32,
    reference: u32,
}

impl Held<'_> {
    /// Keeps the session alive: the request it serves was valid.
    fn touch(&mut self, now: u32) {
        if let Some(session) = self.shard.get_mut(self.slot) {
            session.last_activity = now;
        }
    }
}

/// A chosen member, before its contact is read.
type Chosen = Vec<Member>;

impl MemoryStore {
    /// A store for `config`. Times are kept in seconds from `epoch` (records hold 32-bit
    /// second counts, which last 136 years); `rng` seeds the shards' peer sampling.
    pub fn new(config: &Config, epoch: Timestamp, rng: &mut dyn RngCore) -> Self {
        let shards = config.shards.clamp(1, 1 << 8).next_power_of_two();
        let shard_bits = shards.trailing_zeros();
        let sessions = (0..shards)
            .map(|_| Mutex::new(SessionShard::default()))
            .collect();
        let swarms = (0..shards)
            .map(|_| {
                Mutex::new(SwarmShard {
                    slots: Vec::new(),
                    free: Vec::new(),
                    index: HashTable::new(),
                    rng: StdRng::seed_from_u64(rng.next_u64()),
                })
            })
            .collect();
        let seeds = [
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
        ];
        Self {
            policy: StorePolicy {
                session_idle_timeout: config.session_idle_timeout,
                max_swarms_per_peer: config.max_swarms_per_peer,
                limits: config.limits.clone(),
                live_swarms: config.live_swarms.clone(),
            },
            live: config.live_swarms.iter().cloned().collect(),
            epoch_secs: epoch.as_secs(),
            idle_secs: u32::try_from(config.session_idle_timeout.as_secs()).unwrap_or(u32::MAX),
            sessions,
            swarms,
            shard_bits,
            hasher: DefaultHashBuilder::default(),
            next_generation: AtomicU32::new(1),
            addresses: AddressCounts::new(seeds),
            counters: Counters::default(),
            summaries: Mutex::new(None),
        }
    }

    /// Number of shards of each kind.
    pub fn shard_count(&self) -> usize {
        self.sessions.len()
    }

    fn secs(&self, now: Timestamp) -> u32 {
        u32::try_from(now.as_secs().saturating_sub(self.epoch_secs)).unwrap_or(u32::MAX - 1)
    }

    fn timestamp(&self, secs: u32) -> Timestamp {
        Timestamp::from_secs(self.epoch_secs + u64::from(secs))
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard_of(&self, hash: u64) -> usize {
        // Bits the tables inside a shard do not use for positions or tags.
        ((hash >> 32) as usize) & (self.sessions.len() - 1)
    }

    fn reference(&self, shard: usize, slot: u32) -> Option<u32> {
        let shifted = slot.checked_shl(self.shard_bits)?;
        (shifted >> self.shard_bits == slot).then_some(shifted | shard as u32)
    }

    fn split(&self, reference: u32) -> (usize, u32) {
        let mask = (1u32 << self.shard_bits) - 1;
        ((reference & mask) as usize, reference >> self.shard_bits)
    }

    fn generation(&self) -> u32 {
        loop {
            let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
            if generation != 0 {
                return generation;
            }
        }
    }

    /// The live session `key` names, in a locked shard: its slot, or the refusal.
    fn checked(
        &self,
        shard: &SessionShard,
        hash: u64,
        key: SessionKey<'_>,
        now: u32,
    ) -> Result<u32, TrackerError> {
        let found = shard
            .find(hash, key.peer_id.as_str())
            .and_then(|slot| Some((slot, shard.get(slot)?)))
            .filter(|(_, s)| s.alive(now, self.idle_secs));
        rules::check_session(key.check, found.map(|(_, s)| live_session(s)).as_ref())?;
        found.map(|(slot, _)| slot).ok_or(TrackerError::Internal)
    }

    /// Locks the shard of `key`'s session and checks the session (see [`Self::checked`]).
    fn hold(&self, now: u32, key: SessionKey<'_>) -> Result<Held<'_>, TrackerError> {
        let hash = self.hash(key.peer_id.as_str());
        let index = self.shard_of(hash);
        let shard = lock(&self.sessions[index]);
        let slot = self.checked(&shard, hash, key, now)?;
        let reference = self.reference(index, slot).ok_or(TrackerError::Internal)?;
        Ok(Held {
            shard,
            index,
            slot,
            reference,
        })
    }

    /// Merges NAT hints into a held session and pushes a change of its reachability to
    /// its memberships.
    fn merge_hints(&self, held: &mut Held<'_>, hints: NatHints) {
        if held
            .shard
            .get_mut(held.slot)
            .is_some_and(|s| s.merge_hints(hints))
        {
            self.refresh_reachability(&held.shard, held.slot, held.reference);
        }
    }

    /// Removes a session and every membership it has. The session shard is locked by the
    /// caller; swarm shards are locked one at a time.
    fn drop_session(&self, shard_index: usize, shard: &mut SessionShard, slot: u32) {
        let Some(session) = shard.get(slot) else {
            return;
        };
        let hash = self.hash(session.id_str());
        let ip = session.observed_ip();
        let Some(reference) = self.reference(shard_index, slot) else {
            return;
        };
        for entry in shard.remove(hash, slot) {
            self.remove_member(membership_swarm(entry), reference);
        }
        self.addresses.remove(ip);
        self.counters.sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// Removes one member from its swarm (locking the swarm's shard) and the swarm when it
    /// becomes empty.
    fn remove_member(&self, swarm_ref: u32, session_ref: u32) {
        let (shard_index, slot) = self.split(swarm_ref);
        let mut guard = lock(&self.swarms[shard_index]);
        self.remove_member_locked(&mut guard, slot, session_ref);
    }

    fn remove_member_locked(&self, shard: &mut SwarmShard, slot: u32, session_ref: u32) -> usize {
        let Some(swarm) = shard.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return 0;
        };
        let Some((member, charged)) = swarm.remove(session_ref) else {
            return 0;
        };
        self.counters
            .mode(member.mode())
            .fetch_sub(1, Ordering::Relaxed);
        self.counters.add_bytes(-(charged as isize));
        if swarm.is_empty() {
            let hash = self.hash(swarm.id.as_str());
            if let Ok(entry) = shard.index.find_entry(hash, |&s| s == slot) {
                entry.remove();
            }
            shard.slots[slot as usize] = None;
            shard.free.push(slot);
            self.counters.swarms.fetch_sub(1, Ordering::Relaxed);
        }
        charged
    }

    /// Locks the shard of `swarm_id` and finds the swarm in it: the guard, the swarm's slot
    /// and its reference; [`TrackerError::UnknownSwarm`] when there is no such swarm.
    fn existing_swarm(
        &self,
        swarm_id: &SwarmId,
    ) -> Result<(MutexGuard<'_, SwarmShard>, u32, u32), TrackerError> {
        let swarm_hash = self.hash(swarm_id.as_str());
        let swarm_shard = self.shard_of(swarm_hash);
        let swarms = lock(&self.swarms[swarm_shard]);
        let swarm_slot = self
            .find_swarm(&swarms, swarm_hash, swarm_id)
            .ok_or(TrackerError::UnknownSwarm)?;
        let swarm_ref = self
            .reference(swarm_shard, swarm_slot)
            .ok_or(TrackerError::Internal)?;
        Ok((swarms, swarm_slot, swarm_ref))
    }

    fn find_swarm(&self, shard: &SwarmShard, hash: u64, swarm_id: &SwarmId) -> Option<u32> {
        shard
            .index
            .find(hash, |&slot| {
                shard
                    .slots
                    .get(slot as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.id == *swarm_id)
            })
            .copied()
    }

    fn create_swarm(
        &self,
        shard: &mut SwarmShard,
        hash: u64,
        swarm_id: &SwarmId,
    ) -> Result<u32, TrackerError> {
        let limit = self.policy.limits.max_swarms as u64;
        if self.counters.swarms.load(Ordering::Relaxed) >= limit {
            return Err(self.counters.refuse(Cap::Swarms));
        }
        let swarm = Swarm::new(swarm_id.clone(), self.live.contains(swarm_id));
        let slot = match shard.free.pop() {
            Some(slot) => {
                shard.slots[slot as usize] = Some(swarm);
                slot
            }
            None => {
                let slot = u32::try_from(shard.slots.len())
                    .map_err(|_| self.counters.refuse(Cap::Swarms))?;
                if slot >= 1 << (SWARM_REF_BITS - self.shard_bits) {
                    return Err(self.counters.refuse(Cap::Swarms));
                }
                shard.slots.push(Some(swarm));
                slot
            }
        };
        let slots = &shard.slots;
        let hasher = &self.hasher;
        shard.index.insert_unique(hash, slot, |&s| {
            slots
                .get(s as usize)
                .and_then(Option::as_ref)
                .map_or(0, |sw| hasher.hash_one(sw.id.as_str()))
        });
        self.counters.swarms.fetch_add(1, Ordering::Relaxed);
        Ok(slot)
    }

    /// Pushes a session's reachability to its members after its addresses or hints
    /// changed. The session shard is locked by the caller.
    fn refresh_reachability(&self, shard: &SessionShard, slot: u32, session_ref: u32) {
        let Some(session) = shard.get(slot) else {
            return;
        };
        let reachable = session.reachable();
        for entry in session.memberships() {
            let (shard_index, swarm_slot) = self.split(membership_swarm(entry));
            let mut swarms = lock(&self.swarms[shard_index]);
            if let Some(member) = swarms
                .slots
                .get_mut(swarm_slot as usize)
                .and_then(Option::as_mut)
                .and_then(|s| s.get_mut(session_ref))
            {
                member.set_reachable(reachable);
            }
        }
    }

    /// Fills in the contacts of chosen members. Call with no lock held.
    fn render(&self, chosen: Chosen) -> Vec<Candidate> {
        // Sized up front: collecting from a filter would start small and grow three times.
        let mut candidates = Vec::with_capacity(chosen.len());
        for member in chosen {
            let (shard_index, slot) = self.split(member.session);
            let shard = lock(&self.sessions[shard_index]);
            let contact = shard
                .get(slot)
                .filter(|s| s.generation == member.generation)
                .and_then(|session| session.contact());
            drop(shard);
            if let Some(contact) = contact {
                candidates.push(Candidate {
                    mode: member.mode(),
                    contact,
                });
            }
        }
        candidates
    }

    fn prefer_reachable(&self, criteria: &Criteria, facts: (Option<bool>, Option<bool>)) -> bool {
        criteria.reachability == Reachability::AsRequesterNeeds
            && needs_reachable_peers(facts.0, facts.1)
    }

    /// Inserts or updates a membership of a session whose shard is locked; returns the
    /// members chosen for its list.
    #[allow(clippy::too_many_arguments)]
    fn join_locked(
        &self,
        shard: &mut SessionShard,
        slot: u32,
        session_ref: u32,
        now: u32,
        join: &JoinSpec<'_>,
        criteria: &Criteria,
    ) -> Result<Chosen, TrackerError> {
        let Some(session) = shard.get(slot) else {
            return Err(TrackerError::BadToken);
        };
        let facts = session.nat_facts();
        let generation = session.generation;
        let count = session.membership_count();
        let hash = self.hash(join.swarm_id.as_str());
        let (chosen, swarm_ref) = {
            let shard_index = self.shard_of(hash);
            let mut guard = lock(&self.swarms[shard_index]);
            let swarm_slot = match self.find_swarm(&guard, hash, join.swarm_id) {
                Some(swarm_slot) => {
                    let reference = self.reference(shard_index, swarm_slot);
                    let member = reference.and_then(|r| session.membership_of(r));
                    if member.is_none() && count >= self.policy.max_swarms_per_peer {
                        return Err(TrackerError::TooManySwarms);
                    }
                    swarm_slot
                }
                None => {
                    if count >= self.policy.max_swarms_per_peer {
                        return Err(TrackerError::TooManySwarms);
                    }
                    self.create_swarm(&mut guard, hash, join.swarm_id)?
                }
            };
            let swarm_ref = self
                .reference(shard_index, swarm_slot)
                .ok_or(TrackerError::Internal)?;
            let SwarmShard { slots, rng, .. } = &mut *guard;
            let swarm = slots
                .get_mut(swarm_slot as usize)
                .and_then(Option::as_mut)
                .ok_or(TrackerError::Internal)?;
            let deadline = join
                .deadline
                .map_or(NO_DEADLINE, |d| self.secs(d).min(NO_DEADLINE - 1));
            let mut member = Member::new(session_ref, generation, join.mode, now);
            member.set_reachable(facts.0 != Some(true));
            let change = swarm.upsert(member, join.start.cloned(), deadline);
            if let Some(old) = change.old {
                self.counters.mode(old).fetch_sub(1, Ordering::Relaxed);
            }
            self.counters
                .mode(change.new)
                .fetch_add(1, Ordering::Relaxed);
            let chosen = swarm.select(
                rng,
                session_ref,
                criteria,
                self.prefer_reachable(criteria, facts),
            );
            (chosen, swarm_ref)
        };
        if let Some(session) = shard.get_mut(slot) {
            session.set_membership(swarm_ref, join.mode);
        }
        Ok(chosen)
    }

    /// Registers a new session in a locked shard, checking the caps.
    fn insert_session(
        &self,
        shard: &mut SessionShard,
        hash: u64,
        registration: &Registration<'_>,
        now: u32,
    ) -> Result<(u32, u32), TrackerError> {
        let limits = &self.policy.limits;
        if self.counters.sessions.load(Ordering::Relaxed) >= limits.max_sessions as u64 {
            return Err(self.counters.refuse(Cap::Sessions));
        }
        let ip = registration.observed.ip();
        if !self.addresses.try_add(ip, limits.max_sessions_per_address) {
            return Err(self.counters.refuse(Cap::SessionsPerAddress));
        }
        let generation = self.generation();
        let new = NewSession {
            peer_id: registration.peer_id,
            format: registration.format,
            observed: registration.observed,
            declared: registration.declared,
            ability_nat: registration.ability_nat,
            generation,
            now,
        };
        let hasher = &self.hasher;
        let Some(slot) = shard.insert(hash, &new, |id| hasher.hash_one(id)) else {
            self.addresses.remove(ip);
            return Err(self.counters.refuse(Cap::Sessions));
        };
        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
        Ok((slot, generation))
    }

    /// Applies one swarm's chunk maps from a report to a member; the swarm shard is locked.
    fn apply_chunk_maps(
        &self,
        swarm: &mut Swarm,
        session_ref: u32,
        session_bytes: usize,
        report: &ppsp_proto::ChunkMapReport,
        now: u32,
    ) -> Result<isize, TrackerError> {
        let limits = &self.policy.limits;
        let extra = swarm.extras.get(&session_ref);
        let clips: Vec<ClipChunks> = extra.map(|e| e.clips.clone()).unwrap_or_default();
        let old_charged = extra.map_or(0, |e| e.charged);
        let merged = rules::merge_report_maps(clips, old_charged, session_bytes, report, limits)
            .map_err(|cap| self.counters.refuse(cap))?;
        let delta = merged.growth as isize;
        if delta > 0
            && self.counters.chunk_bytes.load(Ordering::Relaxed) + delta as u64
                > limits.max_chunk_map_bytes
        {
            return Err(self.counters.refuse(Cap::ChunkMapBytes));
        }
        let (clips, charged, complete) = (merged.clips, merged.charged, merged.complete);
        let extra = swarm.extras.entry(session_ref).or_default();
        extra.clips = clips;
        extra.charged = charged;
        if complete && extra.completed_at.is_none() {
            extra.completed_at = Some(now);
        }
        self.counters.add_bytes(delta);
        Ok(delta)
    }

    /// Takes a summary of every swarm, one shard lock at a time.
    fn summaries(&self, now: Timestamp) -> Arc<Vec<SwarmSummary>> {
        let second = now.as_secs();
        // Listing a few swarms costs less than a stale answer; many are listed at most
        // once a second, however often the page is asked for.
        let cache = self.counters.swarms.load(Ordering::Relaxed) >= CACHED_LISTING_SWARMS;
        if cache
            && let Some((made, list)) = lock(&self.summaries).as_ref()
            && *made == second
        {
            return Arc::clone(list);
        }
        let mut list = Vec::new();
        for shard in &*self.swarms {
            let shard = lock(shard);
            list.extend(shard.slots.iter().flatten().map(summary));
        }
        list.sort_by(|a, b| {
            b.members()
                .cmp(&a.members())
                .then_with(|| a.swarm_id.cmp(&b.swarm_id))
        });
        let list = Arc::new(list);
        if cache {
            *lock(&self.summaries) = Some((second, Arc::clone(&list)));
        }
        list
    }
}

/// What the session rules look at in a session.
fn live_session(session: &session::SessionSlot) -> rules::LiveSession {
    rules::LiveSession {
        format: session.format(),
        generation: session.generation,
        observed_ip: session.observed_ip(),
    }
}

fn summary(swarm: &Swarm) -> SwarmSummary {
    SwarmSummary {
        swarm_id: swarm.id.clone(),
        live: swarm.is_live(),
        seeds: u64::from(swarm.seeds),
        live_seeds: swarm.live_seeds.len() as u64,
        leeches: u64::from(swarm.leeches),
    }
}

impl Store for MemoryStore {
    async fn register(
        &self,
        now: Timestamp,
        registration: &Registration<'_>,
    ) -> Result<u32, TrackerError> {
        let now = self.secs(now);
        let hash = self.hash(registration.peer_id.as_str());
        let shard_index = self.shard_of(hash);
        let mut guard = lock(&self.sessions[shard_index]);
        let shard = &mut *guard;
        if let Some(slot) = shard.find(hash, registration.peer_id.as_str()) {
            if let Some(old) = shard.get(slot)
                && old.alive(now, self.idle_secs)
            {
                rules::may_replace(&live_session(old), registration)?;
            }
            // A new CONNECT replaces the session as if the old one had sent DISCONNECT.
            self.drop_session(shard_index, shard, slot);
        }
        self.insert_session(shard, hash, registration, now)
            .map(|(_, generation)| generation)
    }

    async fn touch(&self, now: Timestamp, key: SessionKey<'_>) -> Result<(), TrackerError> {
        let now = self.secs(now);
        let mut held = self.hold(now, key)?;
        held.touch(now);
        Ok(())
    }

    async fn disconnect(&self, now: Timestamp, key: SessionKey<'_>) -> Result<(), TrackerError> {
        let now = self.secs(now);
        let mut held = self.hold(now, key)?;
        self.drop_session(held.index, &mut held.shard, held.slot);
        Ok(())
    }

    async fn join(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        join: &JoinSpec<'_>,
        criteria: &Criteria,
    ) -> Result<Vec<Candidate>, TrackerError> {
        let now = self.secs(now);
        let chosen = {
            let mut held = self.hold(now, key)?;
            self.merge_hints(&mut held, join.hints);
            let (slot, session_ref) = (held.slot, held.reference);
            let chosen =
                self.join_locked(&mut held.shard, slot, session_ref, now, join, criteria)?;
            held.touch(now);
            chosen
        };
        Ok(self.render(chosen))
    }

    async fn leave(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        swarm_id: &SwarmId,
    ) -> Result<(), TrackerError> {
        let now = self.secs(now);
        let mut held = self.hold(now, key)?;
        let (slot, session_ref) = (held.slot, held.reference);
        let shard = &mut *held.shard;
        let swarm_ref = {
            let (mut swarms, swarm_slot, swarm_ref) = self.existing_swarm(swarm_id)?;
            if shard
                .get(slot)
                .and_then(|s| s.membership_of(swarm_ref))
                .is_some()
            {
                let charged = self.remove_member_locked(&mut swarms, swarm_slot, session_ref);
                if let Some(session) = shard.get_mut(slot) {
                    session.set_chunk_bytes(session.chunk_bytes().saturating_sub(charged));
                }
            }
            swarm_ref
        };
        if let Some(session) = shard.get_mut(slot) {
            session.remove_membership(swarm_ref);
            session.last_activity = now;
        }
        Ok(())
    }

    async fn find(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        swarm_id: &SwarmId,
        hints: NatHints,
        criteria: &Criteria,
    ) -> Result<Vec<Candidate>, TrackerError> {
        let now = self.secs(now);
        let chosen = {
            let mut held = self.hold(now, key)?;
            self.merge_hints(&mut held, hints);
            let (slot, session_ref) = (held.slot, held.reference);
            let shard = &mut *held.shard;
            let session = shard.get(slot).ok_or(TrackerError::Internal)?;
            let facts = session.nat_facts();
            let chosen = {
                let (mut swarms, swarm_slot, swarm_ref) = self.existing_swarm(swarm_id)?;
                if session.membership_of(swarm_ref).is_none() {
                    return Err(TrackerError::NotMember);
                }
                let SwarmShard { slots, rng, .. } = &mut *swarms;
                let swarm = slots
                    .get(swarm_slot as usize)
                    .and_then(Option::as_ref)
                    .ok_or(TrackerError::Internal)?;
                swarm.select(
                    rng,
                    session_ref,
                    criteria,
                    self.prefer_reachable(criteria, facts),
                )
            };
            if criteria.empty_is_not_found() && chosen.is_empty() {
                return Err(TrackerError::NoChunkHolder);
            }
            if let Some(session) = shard.get_mut(slot) {
                session.last_activity = now;
            }
            chosen
        };
        Ok(self.render(chosen))
    }

    async fn report(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        report: &StatReport,
    ) -> Result<Vec<(SwarmId, bool)>, TrackerError> {
        let now = self.secs(now);
        let mut held = self.hold(now, key)?;
        let (slot, session_ref) = (held.slot, held.reference);
        let shard = &mut *held.shard;
        let mut stored = Vec::new();
        let mut hints = NatHints::default();
        for stat in &report.stats {
            let swarm_id = match stat {
                Stat::ChunkMap(chunks) => &chunks.swarm_id,
                Stat::StreamStats(stats) => match &stats.swarm_id {
                    Some(swarm_id) => swarm_id,
                    None => continue,
                },
                Stat::Nat(value) => {
                    hints.nat = Some(*value);
                    continue;
                }
                Stat::Stun(value) => {
                    hints.stun = Some(*value);
                    continue;
                }
            };
            let session_bytes = shard.get(slot).map_or(0, |s| s.chunk_bytes());
            let swarm_hash = self.hash(swarm_id.as_str());
            let swarm_shard = self.shard_of(swarm_hash);
            let mut swarms = lock(&self.swarms[swarm_shard]);
            let member_slot = self
                .find_swarm(&swarms, swarm_hash, swarm_id)
                .filter(|swarm_slot| {
                    self.reference(swarm_shard, *swarm_slot)
                        .and_then(|r| shard.get(slot)?.membership_of(r))
                        .is_some()
                });
            let swarm = member_slot
                .and_then(|s| swarms.slots.get_mut(s as usize))
                .and_then(Option::as_mut);
            match (stat, swarm) {
                (Stat::ChunkMap(chunks), Some(swarm)) => {
                    let delta =
                        self.apply_chunk_maps(swarm, session_ref, session_bytes, chunks, now)?;
                    if let Some(session) = shard.get_mut(slot) {
                        session.set_chunk_bytes(session_bytes.saturating_add_signed(delta));
                    }
                }
                (Stat::StreamStats(stats), Some(swarm)) => {
                    swarm.extras.entry(session_ref).or_default().stats = Some(stats.clone());
                    stored.push((swarm_id.clone(), true));
                }
                (Stat::StreamStats(_), None) => stored.push((swarm_id.clone(), false)),
                _ => {}
            }
        }
        if shard.get_mut(slot).is_some_and(|s| s.merge_hints(hints)) {
            self.refresh_reachability(shard, slot, session_ref);
        }
        if let Some(session) = shard.get_mut(slot) {
            session.last_activity = now;
        }
        Ok(stored)
    }

    async fn swarm_actions(
        &self,
        now: Timestamp,
        registration: &Registration<'_>,
        actions: &[SwarmAction],
        criteria: &(dyn Fn(&SwarmAction) -> Criteria + Sync),
    ) -> Result<SwarmActionsOutcome, TrackerError> {
        let now = self.secs(now);
        let hash = self.hash(registration.peer_id.as_str());
        let shard_index = self.shard_of(hash);
        let (outcome, lists) = {
            let mut guard = lock(&self.sessions[shard_index]);
            let shard = &mut *guard;
            let mut registered = None;
            if let Some(slot) = shard.find(hash, registration.peer_id.as_str()) {
                match shard.get(slot) {
                    Some(s) if s.alive(now, self.idle_secs) => {
                        rules::may_replace(&live_session(s), registration)?;
                        registered = Some(slot);
                    }
                    _ => self.drop_session(shard_index, shard, slot),
                }
            }
            let current: Option<Vec<(SwarmId, PeerMode)>> = registered.map(|slot| {
                shard
                    .get(slot)
                    .map(|s| {
                        s.memberships()
                            .filter_map(|entry| {
                                let (i, swarm_slot) = self.split(membership_swarm(entry));
                                let swarms = lock(&self.swarms[i]);
                                let id =
                                    swarms.slots.get(swarm_slot as usize)?.as_ref()?.id.clone();
                                Some((id, membership_mode(entry)))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            });
            let plan = rules::plan_swarm_actions(
                current.as_deref(),
                actions,
                self.policy.max_swarms_per_peer,
            )?;
            if !plan.any_valid() {
                return Err(TrackerError::NoValidSwarmAction);
            }
            let slot = match registered {
                Some(slot) => {
                    if let Some(session) = shard.get_mut(slot) {
                        // A re-CONNECT that declares nothing keeps what was declared before.
                        let declared = if registration.declared.is_empty() {
                            session.declared()
                        } else {
                            registration.declared.to_vec()
                        };
                        session.set_addresses(registration.observed, &declared);
                        if registration.ability_nat.is_some() {
                            session.set_ability(registration.ability_nat);
                        }
                    }
                    slot
                }
                None => self.insert_session(shard, hash, registration, now)?.0,
            };
            let session_ref = self
                .reference(shard_index, slot)
                .ok_or(TrackerError::Internal)?;
            if registered.is_some() {
                self.refresh_reachability(shard, slot, session_ref);
            }
            let mut outcome = SwarmActionsOutcome {
                results: actions.iter().map(|_| (false, Vec::new())).collect(),
                ended: false,
            };
            let mut lists: Vec<(usize, Chosen)> = Vec::new();
            for &index in &plan.leaves {
                let swarm_id = &actions[index].swarm_id;
                let swarm_hash = self.hash(swarm_id.as_str());
                let swarm_shard = self.shard_of(swarm_hash);
                let mut swarms = lock(&self.swarms[swarm_shard]);
                if let Some(swarm_slot) = self.find_swarm(&swarms, swarm_hash, swarm_id) {
                    let charged = self.remove_member_locked(&mut swarms, swarm_slot, session_ref);
                    drop(swarms);
                    if let (Some(session), Some(swarm_ref)) =
                        (shard.get_mut(slot), self.reference(swarm_shard, swarm_slot))
                    {
                        session.remove_membership(swarm_ref);
                        session.set_chunk_bytes(session.chunk_bytes().saturating_sub(charged));
                    }
                }
                outcome.results[index].0 = true;
            }
            for &index in &plan.joins {
                let action = &actions[index];
                let join = JoinSpec {
                    swarm_id: &action.swarm_id,
                    mode: action.mode,
                    deadline: None,
                    start: None,
                    hints: NatHints::default(),
                };
                match self.join_locked(shard, slot, session_ref, now, &join, &criteria(action)) {
                    Ok(chosen) => {
                        outcome.results[index].0 = true;
                        lists.push((index, chosen));
                    }
                    Err(TrackerError::OverCap(cap)) if outcome.results.iter().all(|r| !r.0) => {
                        if registered.is_none() {
                            self.drop_session(shard_index, shard, slot);
                        }
                        return Err(TrackerError::OverCap(cap));
                    }
                    Err(_) => {}
                }
            }
            if shard.get(slot).is_some_and(|s| s.membership_count() == 0) {
                // Leaving the last swarm ends the registration (RFC 7846 Table 6).
                self.drop_session(shard_index, shard, slot);
                outcome.ended = true;
            } else if let Some(session) = shard.get_mut(slot) {
                session.last_activity = now;
            }
            (outcome, lists)
        };
        let mut outcome = outcome;
        for (index, chosen) in lists {
            outcome.results[index].1 = self.render(chosen);
        }
        Ok(outcome)
    }

    async fn expire(&self, now: Timestamp) -> Result<SweepReport, TrackerError> {
        let now = self.secs(now);
        let mut report = SweepReport::default();
        for (shard_index, shard) in self.sessions.iter().enumerate() {
            let mut start = 0;
            loop {
                let mut guard = lock(shard);
                let end = (start + SWEEP_STEP).min(guard.capacity());
                for slot in start..end {
                    let slot = slot as u32;
                    if guard
                        .get(slot)
                        .is_some_and(|s| !s.alive(now, self.idle_secs))
                    {
                        self.drop_session(shard_index, &mut guard, slot);
                        report.sessions_expired += 1;
                    }
                }
                if end >= guard.capacity() {
                    break;
                }
                start = end;
            }
        }
        // Memberships: collect what is due under each swarm lock, then remove it in the
        // session → swarm lock order.
        let mut due: Vec<(u32, Member)> = Vec::new();
        for (shard_index, shard) in self.swarms.iter().enumerate() {
            let shard = lock(shard);
            for (slot, swarm) in shard.slots.iter().enumerate() {
                let Some(swarm) = swarm.as_ref().filter(|s| s.with_deadline > 0) else {
                    continue;
                };
                let Some(swarm_ref) = self.reference(shard_index, slot as u32) else {
                    continue;
                };
                due.extend(
                    swarm
                        .extras
                        .iter()
                        .filter(|(_, e)| e.deadline != NO_DEADLINE && e.deadline <= now)
                        .filter_map(|(session, _)| Some((swarm_ref, *swarm.get(*session)?))),
                );
            }
        }
        for (swarm_ref, member) in due {
            let (session_shard, session_slot) = self.split(member.session);
            let mut sessions = lock(&self.sessions[session_shard]);
            if sessions
                .get(session_slot)
                .is_none_or(|s| s.generation != member.generation)
            {
                continue;
            }
            let (swarm_shard, swarm_slot) = self.split(swarm_ref);
            let mut swarms = lock(&self.swarms[swarm_shard]);
            let still_due = swarms
                .slots
                .get(swarm_slot as usize)
                .and_then(Option::as_ref)
                .and_then(|s| {
                    let deadline = s.deadline_of(member.session);
                    s.get(member.session).map(|m| (m.generation, deadline))
                })
                .is_some_and(|(generation, deadline)| {
                    deadline != NO_DEADLINE && deadline <= now && generation == member.generation
                });
            if !still_due {
                continue;
            }
            let charged = self.remove_member_locked(&mut swarms, swarm_slot, member.session);
            drop(swarms);
            if let Some(session) = sessions.get_mut(session_slot) {
                session.remove_membership(swarm_ref);
                session.set_chunk_bytes(session.chunk_bytes().saturating_sub(charged));
            }
            report.memberships_expired += 1;
        }
        self.counters
            .sessions_expired
            .fetch_add(report.sessions_expired as u64, Ordering::Relaxed);
        self.counters
            .memberships_expired
            .fetch_add(report.memberships_expired as u64, Ordering::Relaxed);
        Ok(report)
    }

    async fn session_state(
        &self,
        now: Timestamp,
        peer_id: &PeerId,
    ) -> Result<Option<SessionState>, TrackerError> {
        let now = self.secs(now);
        let hash = self.hash(peer_id.as_str());
        let shard = lock(&self.sessions[self.shard_of(hash)]);
        let session = shard
            .find(hash, peer_id.as_str())
            .and_then(|slot| shard.get(slot))
            .filter(|s| s.alive(now, self.idle_secs));
        Ok(session.map(|s| {
            if s.membership_count() == 0 {
                SessionState::Connected
            } else {
                SessionState::Joined
            }
        }))
    }

    async fn totals(&self) -> Result<Totals, TrackerError> {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut refusals = [0; Cap::ALL.len()];
        for (slot, counter) in refusals.iter_mut().zip(&c.refusals) {
            *slot = load(counter);
        }
        Ok(Totals {
            sessions: load(&c.sessions),
            swarms: load(&c.swarms),
            seeds: load(&c.seeds),
            live_seeds: load(&c.live_seeds),
            leeches: load(&c.leeches),
            chunk_map_bytes: load(&c.chunk_bytes),
            sessions_expired: load(&c.sessions_expired),
            memberships_expired: load(&c.memberships_expired),
            refusals,
        })
    }

    async fn swarms(&self, now: Timestamp, query: &SwarmQuery) -> Result<SwarmPage, TrackerError> {
        let all = self.summaries(now);
        let matching: Vec<&SwarmSummary> = match &query.filter {
            Some(text) if !text.is_empty() => {
                let needle = text.to_lowercase();
                all.iter()
                    .filter(|s| s.swarm_id.as_str().to_lowercase().contains(&needle))
                    .collect()
            }
            _ => all.iter().collect(),
        };
        Ok(SwarmPage {
            total: matching.len(),
            offset: query.offset,
            swarms: matching
                .into_iter()
                .skip(query.offset)
                .take(query.limit)
                .cloned()
                .collect(),
        })
    }

    async fn swarm(
        &self,
        _now: Timestamp,
        swarm_id: &SwarmId,
        offset: usize,
        limit: usize,
    ) -> Result<Option<SwarmDetail>, TrackerError> {
        let hash = self.hash(swarm_id.as_str());
        let shard = &self.swarms[self.shard_of(hash)];
        // Copy the members a bounded step at a time, so requests for this swarm wait
        // microseconds, not the whole copy.
        let mut members: Vec<Member> = Vec::new();
        let mut summary_of = None;
        loop {
            let guard = lock(shard);
            let Some(swarm) = self
                .find_swarm(&guard, hash, swarm_id)
                .and_then(|slot| guard.slots.get(slot as usize)?.as_ref())
            else {
                break;
            };
            summary_of.get_or_insert_with(|| summary(swarm));
            let start = members.len();
            if start >= swarm.members.len() {
                break;
            }
            let end = (start + COPY_STEP).min(swarm.members.len());
            members.extend_from_slice(&swarm.members[start..end]);
        }
        let Some(summary) = summary_of else {
            return Ok(None);
        };
        // Stable: members that joined in the same second keep their order in the swarm.
        members.sort_by_key(|m| m.joined);
        let page: Vec<Member> = members.into_iter().skip(offset).take(limit).collect();

        // Extras of the page, and a bounded sample for availability, byte sums and
        // completions.
        let (extras, sample) = {
            let guard = lock(shard);
            let swarm = self
                .find_swarm(&guard, hash, swarm_id)
                .and_then(|slot| guard.slots.get(slot as usize)?.as_ref());
            match swarm {
                Some(swarm) => {
                    let extras: Vec<_> = page
                        .iter()
                        .map(|m| swarm.extras.get(&m.session).map(|e| extra_summary(e, self)))
                        .collect();
                    (extras, sample_reporters(swarm, self))
                }
                None => (Vec::new(), ReporterSample::default()),
            }
        };
        let peers = page
            .iter()
            .zip(extras.into_iter().chain(std::iter::repeat(None)))
            .filter_map(|(member, extra)| self.peer_detail(member, extra.unwrap_or_default()))
            .collect();
        let recently_completed = sample
            .completed
            .iter()
            .filter_map(|(member, extra)| self.peer_detail(member, extra.clone()))
            .collect();
        Ok(Some(SwarmDetail {
            summary,
            offset,
            peers,
            chunk_availability: sample.availability,
            availability_sampled: sample.sampled,
            uploaded_bytes: sample.uploaded,
            downloaded_bytes: sample.downloaded,
            recently_completed,
        }))
    }
}

impl MemoryStore {
    /// A member as the statistics pages show it; reads its session (call with no lock held).
    fn peer_detail(&self, member: &Member, extra: ExtraSummary) -> Option<PeerDetail> {
        let (shard_index, slot) = self.split(member.session);
        let sessions = lock(&self.sessions[shard_index]);
        let session = sessions
            .get(slot)
            .filter(|s| s.generation == member.generation)?;
        let (behind_nat, stun) = session.nat_facts();
        Some(PeerDetail {
            peer_id: session.peer_id()?.clone(),
            mode: member.mode(),
            joined_at: self.timestamp(member.joined),
            completed_at: extra.completed_at,
            start: extra.start,
            uploaded_bytes: extra.uploaded,
            downloaded_bytes: extra.downloaded,
            available_bandwidth: extra.bandwidth,
            chunks_held: extra.held,
            chunks_covered: extra.covered,
            behind_nat,
            stun,
        })
    }
}

/// What a bounded sample of a swarm's reporting members says.
#[derive(Default)]
struct ReporterSample {
    availability: Vec<ClipAvailability>,
    sampled: bool,
    uploaded: u64,
    downloaded: u64,
    completed: Vec<(Member, ExtraSummary)>,
}

fn sample_reporters(swarm: &Swarm, store: &MemoryStore) -> ReporterSample {
    let (availability, sampled) = availability(swarm);
    let mut sample = ReporterSample {
        availability,
        sampled,
        ..ReporterSample::default()
    };
    let mut completed: Vec<(u32, u32)> = Vec::new();
    for (session, extra) in swarm.extras.iter().take(AVAILABILITY_SAMPLE) {
        if let Some(stats) = &extra.stats {
            sample.uploaded = sample
                .uploaded
                .saturating_add(stats.uploaded_bytes.unwrap_or(0));
            sample.downloaded = sample
                .downloaded
                .saturating_add(stats.downloaded_bytes.unwrap_or(0));
        }
        if let Some(at) = extra.completed_at {
            completed.push((at, *session));
        }
    }
    completed.sort_unstable_by(|a, b| b.cmp(a));
    sample.completed = completed
        .into_iter()
        .take(RECENT_COMPLETIONS)
        .filter_map(|(_, session)| {
            let member = *swarm.get(session)?;
            let extra = swarm.extras.get(&session)?;
            Some((member, extra_summary(extra, store)))
        })
        .collect();
    sample
}

#[derive(Clone, Default)]
struct ExtraSummary {
    completed_at: Option<Timestamp>,
    start: Option<StartPoint>,
    uploaded: u64,
    downloaded: u64,
    bandwidth: u64,
    held: u64,
    covered: u64,
}

fn extra_summary(extra: &MemberExtra, store: &MemoryStore) -> ExtraSummary {
    let stats = extra.stats.as_ref();
    ExtraSummary {
        completed_at: extra.completed_at.map(|s| store.timestamp(s)),
        start: extra.start.as_ref().and_then(StartPoint::of),
        uploaded: stats.and_then(|s| s.uploaded_bytes).unwrap_or(0),
        downloaded: stats.and_then(|s| s.downloaded_bytes).unwrap_or(0),
        bandwidth: stats.and_then(|s| s.available_bandwidth).unwrap_or(0),
        held: extra.clips.iter().map(|c| c.chunks.count()).sum(),
        covered: extra.clips.iter().map(|c| c.chunks.covered()).sum(),
    }
}

/// Chunk availability per clip and media type over (a sample of) the reporting members.
fn availability(swarm: &Swarm) -> (Vec<ClipAvailability>, bool) {
    let sampled = swarm.extras.len() > AVAILABILITY_SAMPLE;
    let members = swarm
        .extras
        .values()
        .take(AVAILABILITY_SAMPLE)
        .map(|extra| extra.clips.as_slice());
    (crate::snapshot::chunk_availability(members), sampled)
}
