//! Tracker state on Redis, Redis Cluster or Valkey, so several tracker nodes serve one set
//! of sessions and swarms.
//!
//! # Layout
//! Keys start with a namespace (`ppsp` by default). Every key of one swarm shares the
//! hash tag `{ppsp:w:SWARM}`, so a request's change to a
//! swarm is one script on one slot: its member hash (PeerID → member record), the sorted
//! sets of join times and deadlines, the set of live seeds and its counters. Sessions are
//! spread over [`SESSION_BUCKETS`] tags `{ppsp:pN}` chosen by a hash of the PeerID; a bucket
//! holds its sessions (one JSON string each) and a sorted set of last activity, which the
//! sweep reads from its old end, a bounded batch at a time. Totals, the generation counter,
//! the AuthToken key, the sorted set of swarms by size and the sorted set of swarms with
//! deadlines share the tag `{ppsp:g}`; per-address session counts have a key each.
//!
//! # Atomicity
//! A change is read, decided in Rust by the core's rules, and written by one script that
//! first checks the records it read are unchanged (else the change is retried). A request
//! that adds a membership runs the session script first, then the swarm's; one that
//! removes a membership or a session runs the swarm's first, then the session's. So a node
//! dying between the two leaves at worst a session naming a swarm that lacks it (harmless,
//! swept with the session), never a listed member without a session. Counters in
//! `{ppsp:g}` follow in a third call. See docs/scaling.md for what a crash
//! between those calls leaves behind.
//!
//! Every call runs under a time-out: a store that does not answer gives
//! [`StoreError::Unavailable`], which the tracker answers with 503.

mod backend;
mod records;
#[cfg(feature = "testing")]
pub mod testing;

use std::net::IpAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use redis::Value;

use ppsp_proto::{NatHints, PeerId, PeerMode, Stat, StatReport, SwarmAction, SwarmId};
use ppsp_tracker_core::rules::{self, Criteria, Reachability, StartPoint};
use ppsp_tracker_core::store::{
    ClipChunks, JoinSpec, Registration, SessionKey, Store, StorePolicy, SwarmActionsOutcome,
};
use ppsp_tracker_core::token::TokenKey;
use ppsp_tracker_core::{
    Candidate, Cap, Config, MemoryStore, PeerDetail, RECENT_COMPLETIONS, SessionState, StoreError,
    SwarmDetail, SwarmPage, SwarmQuery, SwarmSummary, SweepReport, Timestamp, Totals, TrackerError,
};

pub use backend::StoreAddress;
use backend::{Applied, Backend, Ops};
use records::{
    ClipRecord, ContactRecord, MemberRecord, SessionRecord, StartRecord, StatsRecord, mode_field,
};

/// Session buckets (hash tags); enough to spread sessions over every primary of a cluster.
pub const SESSION_BUCKETS: u32 = 64;
/// Sessions or memberships removed per batch of a sweep.
const SWEEP_BATCH: usize = 512;
/// Retries of a change whose records moved under it.
const RETRIES: usize = 16;
/// Members probed per peer wanted when a filter applies, as the memory store does.
const PROBE_FACTOR: usize = 8;
/// Extra probes so small requests still look at a fair number of members.
const PROBE_SLACK: usize = 64;
/// Most members the availability of one swarm's detail is computed from.
const AVAILABILITY_SAMPLE: usize = 4096;

/// Why a Redis store could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The URL is not `redis://HOST:PORT` or `redis-cluster://H:P[,H:P...]`.
    #[error("store URL {url} is neither redis://HOST:PORT nor redis-cluster://H:P[,H:P...]")]
    BadUrl {
        /// The URL given.
        url: String,
    },
    /// The store did not answer.
    #[error("state store {address} unavailable: {reason}")]
    Unavailable {
        /// The store's URL.
        address: String,
        /// What failed.
        reason: String,
    },
    /// A request to the store failed while setting up.
    #[error("state store {address}: {source}")]
    Setup {
        /// The store's URL.
        address: String,
        /// The refusal.
        #[source]
        source: TrackerError,
    },
}

/// Options of a Redis store.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Longest wait for any one call to the store.
    pub timeout: Duration,
    /// Prefix of every key, so several trackers (or test runs) can share one store.
    pub namespace: String,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            namespace: "ppsp".into(),
        }
    }
}

/// The Redis [`Store`]. See the crate documentation.
#[derive(Debug)]
pub struct RedisStore {
    backend: Backend,
    names: Names,
    policy: StorePolicy,
    idle_secs: u64,
}

fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// Key names of one namespace.
#[derive(Clone, Debug)]
struct Names {
    namespace: String,
}

impl Names {
    fn bucket_tag(&self, bucket: u32) -> String {
        format!("{{{}:p{bucket}}}", self.namespace)
    }

    fn session_tag(&self, peer_id: &str) -> String {
        self.bucket_tag(fnv1a(peer_id) % SESSION_BUCKETS)
    }

    fn session(&self, peer_id: &str) -> String {
        format!("{}:s:{peer_id}", self.session_tag(peer_id))
    }

    fn idle(&self, tag: &str) -> String {
        format!("{tag}:idle")
    }

    fn session_idle(&self, peer_id: &str) -> String {
        self.idle(&self.session_tag(peer_id))
    }

    fn swarm(&self, swarm_id: &str) -> SwarmKeys {
        let tag = format!("{{{}:w:{swarm_id}}}", self.namespace);
        SwarmKeys {
            members: format!("{tag}:m"),
            joined: format!("{tag}:j"),
            deadlines: format!("{tag}:dl"),
            live_seeds: format!("{tag}:ls"),
            counts: format!("{tag}:c"),
        }
    }

    fn global(&self, name: &str) -> String {
        format!("{{{}:g}}:{name}", self.namespace)
    }

    fn address(&self, ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(v4) => format!("{{{}:a:{v4}}}", self.namespace),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!(
                    "{{{}:a:{:x}:{:x}:{:x}:{:x}::/64}}",
                    self.namespace, s[0], s[1], s[2], s[3]
                )
            }
        }
    }
}

/// The keys of one swarm.
struct SwarmKeys {
    members: String,
    joined: String,
    deadlines: String,
    live_seeds: String,
    counts: String,
}

impl SwarmKeys {
    /// Operations on this swarm, with the keys that vanish with its last member.
    fn ops(&self) -> Ops {
        let mut ops = Ops::on_swarm(&self.members);
        for key in [
            &self.joined,
            &self.deadlines,
            &self.live_seeds,
            &self.counts,
        ] {
            ops.include(key);
        }
        ops
    }
}

fn cap_field(cap: Cap) -> String {
    format!("refused:{}", cap.as_str())
}

/// A chosen member and its record.
type Chosen = Vec<(String, MemberRecord)>;

/// A JOIN's first script done (see [`RedisStore::join_first_script_only`]).
struct Claim {
    /// The session as read.
    text: String,
    /// The session as read, with the request's hints merged.
    session: SessionRecord,
    /// The session as written: naming the membership.
    claimed: SessionRecord,
    /// True when the request's hints changed the session's.
    hints_changed: bool,
}

impl RedisStore {
    /// Connects to the store at `url` for a tracker with `config`.
    ///
    /// # Errors
    /// [`RedisStoreError::BadUrl`]; [`RedisStoreError::Unavailable`] when the store does not
    /// answer within `options.timeout`.
    pub async fn connect(
        url: &str,
        config: &Config,
        options: &RedisOptions,
    ) -> Result<Self, RedisStoreError> {
        let address = StoreAddress::parse(url)?;
        let backend = Backend::connect(&address, url, options.timeout).await?;
        Ok(Self {
            backend,
            names: Names {
                namespace: options.namespace.clone(),
            },
            policy: StorePolicy {
                session_idle_timeout: config.session_idle_timeout,
                max_swarms_per_peer: config.max_swarms_per_peer,
                limits: config.limits.clone(),
                live_swarms: config.live_swarms.clone(),
            },
            idle_secs: config.session_idle_timeout.as_secs(),
        })
    }

    /// The AuthToken key every node on this store shares: created once (SET NX) by the
    /// first node, read by the others.
    ///
    /// # Errors
    /// [`RedisStoreError::Setup`] when the store cannot be read or holds a malformed key.
    pub async fn token_key(&self) -> Result<TokenKey, RedisStoreError> {
        let setup = |source| RedisStoreError::Setup {
            address: self.backend.address().to_owned(),
            source,
        };
        let mut fresh = [0u8; 32];
        StdRng::from_os_rng().fill_bytes(&mut fresh);
        let _: Value = self
            .backend
            .query(
                redis::cmd("SET")
                    .arg(self.names.global("key"))
                    .arg(fresh.as_slice())
                    .arg("NX"),
            )
            .await
            .map_err(setup)?;
        let stored: Vec<u8> = self
            .backend
            .query(redis::cmd("GET").arg(self.names.global("key")))
            .await
            .map_err(setup)?;
        let secret: [u8; 32] = stored
            .try_into()
            .map_err(|_| setup(self.backend.malformed("AuthToken key")))?;
        Ok(TokenKey::new(&secret))
    }

    /// The store's URL as configured.
    pub fn address(&self) -> &str {
        self.backend.address()
    }

    /// Answers when the store answers a PING in time.
    ///
    /// # Errors
    /// [`TrackerError::Store`] when it does not.
    pub async fn ping(&self) -> Result<(), TrackerError> {
        let _: String = self.backend.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    fn conflict(&self) -> TrackerError {
        // Records kept moving under the change: the store is too busy to serve it now.
        self.backend.unavailable()
    }

    async fn read_session(
        &self,
        peer_id: &str,
    ) -> Result<Option<(String, SessionRecord)>, TrackerError> {
        let text: Option<String> = self
            .backend
            .query(redis::cmd("GET").arg(self.names.session(peer_id)))
            .await?;
        match text {
            None => Ok(None),
            Some(text) => {
                let record =
                    serde_json::from_str(&text).map_err(|_| self.backend.malformed("session"))?;
                Ok(Some((text, record)))
            }
        }
    }

    async fn read_member(
        &self,
        keys: &SwarmKeys,
        peer_id: &str,
    ) -> Result<Option<(String, MemberRecord)>, TrackerError> {
        let text: Option<String> = self
            .backend
            .query(redis::cmd("HGET").arg(&keys.members).arg(peer_id))
            .await?;
        match text {
            None => Ok(None),
            Some(text) => {
                let record =
                    serde_json::from_str(&text).map_err(|_| self.backend.malformed("member"))?;
                Ok(Some((text, record)))
            }
        }
    }

    async fn swarm_exists(&self, keys: &SwarmKeys) -> Result<bool, TrackerError> {
        let exists: i64 = self
            .backend
            .query(redis::cmd("EXISTS").arg(&keys.members))
            .await?;
        Ok(exists > 0)
    }

    /// The live session `key` names, or the refusal.
    async fn checked(
        &self,
        now: u64,
        key: SessionKey<'_>,
    ) -> Result<(String, SessionRecord), TrackerError> {
        let found = self
            .read_session(key.peer_id.as_str())
            .await?
            .filter(|(_, s)| s.alive(now, self.idle_secs));
        rules::check_session(key.check, found.as_ref().map(|(_, s)| s.live()).as_ref())?;
        found.ok_or(TrackerError::Internal)
    }

    /// Writes a session that was read as `old` (`None`: absent) and is now `new`.
    async fn write_session(
        &self,
        peer_id: &str,
        old: Option<&str>,
        new: &SessionRecord,
    ) -> Result<bool, TrackerError> {
        let key = self.names.session(peer_id);
        let text = serde_json::to_string(new).map_err(|_| TrackerError::Internal)?;
        let mut ops = Ops::default();
        ops.check(&key, old).set(&key, &text).zadd(
            &self.names.session_idle(peer_id),
            new.l,
            peer_id,
        );
        Ok(self.backend.apply(&ops).await? != Applied::Conflict)
    }

    async fn refuse(&self, cap: Cap) -> TrackerError {
        let mut ops = Ops::default();
        ops.hincr(&self.names.global("n"), &cap_field(cap), 1);
        // The refusal stands whether or not it could be counted.
        let _ = self.backend.apply(&ops).await;
        TrackerError::OverCap(cap)
    }

    async fn total(&self, field: &str) -> Result<u64, TrackerError> {
        let value: Option<i64> = self
            .backend
            .query(redis::cmd("HGET").arg(self.names.global("n")).arg(field))
            .await?;
        Ok(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
    }

    /// Applies counter deltas and a swarm's new size to the totals.
    async fn account(
        &self,
        swarm_id: Option<&str>,
        applied: Applied,
        deltas: &[(&str, i64)],
    ) -> Result<(), TrackerError> {
        let mut ops = Ops::default();
        for (field, delta) in deltas {
            ops.hincr(&self.names.global("n"), field, *delta);
        }
        if let (Some(swarm_id), Applied::Done { before, after }) = (swarm_id, applied) {
            match (before, after) {
                (0, 0) => {}
                (0, _) => {
                    ops.hincr(&self.names.global("n"), "swarms", 1);
                }
                (_, 0) => {
                    ops.hincr(&self.names.global("n"), "swarms", -1)
                        .zrem(&self.names.global("dl"), swarm_id);
                }
                _ => {}
            }
            if after == 0 {
                ops.zrem(&self.names.global("bysize"), swarm_id);
            } else if before != after {
                ops.zadd(&self.names.global("bysize"), after, swarm_id);
            }
        }
        self.backend.apply(&ops).await.map(|_| ())
    }

    async fn next_generation(&self) -> Result<u32, TrackerError> {
        loop {
            let value: i64 = self
                .backend
                .query(redis::cmd("INCR").arg(self.names.global("gen")))
                .await?;
            // Generations are 32 bits on the wire; the counter wraps around, skipping 0.
            let generation = (value as u64 & u64::from(u32::MAX)) as u32;
            if generation != 0 {
                return Ok(generation);
            }
        }
    }

    /// Removes one member whose session had generation `generation`; returns the chunk
    /// bytes it was charged, or `None` when it was not there.
    async fn remove_member(
        &self,
        swarm_id: &str,
        peer_id: &str,
        generation: Option<u32>,
    ) -> Result<Option<u64>, TrackerError> {
        let keys = self.names.swarm(swarm_id);
        for _ in 0..RETRIES {
            let Some((text, member)) = self.read_member(&keys, peer_id).await? else {
                return Ok(None);
            };
            if generation.is_some_and(|g| g != member.g) {
                return Ok(None);
            }
            let mut ops = keys.ops();
            ops.check_field(&keys.members, peer_id, Some(&text))
                .hdel(&keys.members, peer_id)
                .zrem(&keys.joined, peer_id)
                .zrem(&keys.deadlines, peer_id)
                .srem(&keys.live_seeds, peer_id)
                .hincr(&keys.counts, mode_field(member.mode()), -1)
                .hincr(&keys.counts, "bytes", -(member.ch as i64));
            let applied = self.backend.apply(&ops).await?;
            if applied == Applied::Conflict {
                continue;
            }
            self.account(
                Some(swarm_id),
                applied,
                &[
                    (mode_field(member.mode()), -1),
                    ("chunk_bytes", -(member.ch as i64)),
                ],
            )
            .await?;
            return Ok(Some(member.ch));
        }
        Err(self.conflict())
    }

    /// Removes a session read as `text` and all its memberships; false when it moved.
    ///
    /// Memberships go first and the session last, so a node that dies half-way leaves a
    /// session naming swarms (swept when it idles out), never a member without a session.
    async fn drop_session(
        &self,
        peer_id: &str,
        text: &str,
        session: &SessionRecord,
    ) -> Result<bool, TrackerError> {
        for (swarm_id, _) in &session.w {
            self.remove_member(swarm_id, peer_id, Some(session.g))
                .await?;
        }
        let key = self.names.session(peer_id);
        let mut ops = Ops::default();
        ops.check(&key, Some(text))
            .del(&key)
            .zrem(&self.names.session_idle(peer_id), peer_id);
        if self.backend.apply(&ops).await? == Applied::Conflict {
            return Ok(false);
        }
        self.backend
            .decrement(&self.names.address(session.o.ip()))
            .await?;
        self.account(None, Applied::Conflict, &[("sessions", -1)])
            .await?;
        Ok(true)
    }

    /// Registers a new session (none is stored under the PeerID).
    async fn insert_session(
        &self,
        now: u64,
        registration: &Registration<'_>,
    ) -> Result<(SessionRecord, String), TrackerError> {
        let limits = &self.policy.limits;
        if self.total("sessions").await? >= limits.max_sessions as u64 {
            return Err(self.refuse(Cap::Sessions).await);
        }
        let address = self.names.address(registration.observed.ip());
        let cap = u64::from(limits.max_sessions_per_address);
        if !self.backend.increment_capped(&address, cap).await? {
            return Err(self.refuse(Cap::SessionsPerAddress).await);
        }
        let generation = self.next_generation().await?;
        let record = SessionRecord::new(
            generation,
            registration.format,
            now,
            registration.observed,
            registration.declared,
            registration.ability_nat,
        );
        let peer_id = registration.peer_id.as_str();
        if !self.write_session(peer_id, None, &record).await? {
            self.backend.decrement(&address).await?;
            return Err(self.conflict());
        }
        self.account(None, Applied::Conflict, &[("sessions", 1)])
            .await?;
        let text = serde_json::to_string(&record).map_err(|_| TrackerError::Internal)?;
        Ok((record, text))
    }

    /// Copies a session's contact to its member records after its addresses or hints
    /// changed.
    async fn refresh_contact(
        &self,
        peer_id: &PeerId,
        session: &SessionRecord,
    ) -> Result<(), TrackerError> {
        let contact = ContactRecord::from_contact(&session.contact(peer_id));
        for (swarm_id, _) in &session.w {
            let keys = self.names.swarm(swarm_id);
            for _ in 0..RETRIES {
                let Some((text, mut member)) = self.read_member(&keys, peer_id.as_str()).await?
                else {
                    break;
                };
                if member.g != session.g || member.c == contact {
                    break;
                }
                member.c = contact.clone();
                let new = serde_json::to_string(&member).map_err(|_| TrackerError::Internal)?;
                let mut ops = Ops::default();
                ops.check_field(&keys.members, peer_id.as_str(), Some(&text))
                    .hset(&keys.members, peer_id.as_str(), &new);
                if self.backend.apply(&ops).await? != Applied::Conflict {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The first of a JOIN's two scripts: the session names the membership before the
    /// swarm holds it (session → swarm). `None` when the session moved under it.
    async fn claim_membership(
        &self,
        now: u64,
        key: SessionKey<'_>,
        join: &JoinSpec<'_>,
    ) -> Result<Option<Claim>, TrackerError> {
        let (text, mut session) = self.checked(now, key).await?;
        let hints_changed = session.merge_hints(join.hints);
        let swarm_id = join.swarm_id.as_str();
        if session.membership(swarm_id).is_none()
            && session.w.len() >= self.policy.max_swarms_per_peer
        {
            return Err(TrackerError::TooManySwarms);
        }
        let mut claimed = session.clone();
        claimed.set_membership(swarm_id, join.mode);
        claimed.l = now;
        if !self
            .write_session(key.peer_id.as_str(), Some(&text), &claimed)
            .await?
        {
            return Ok(None);
        }
        Ok(Some(Claim {
            text,
            session,
            claimed,
            hints_changed,
        }))
    }

    /// Runs only the first of a JOIN's two scripts, so the session names the membership and
    /// the swarm does not hold it: the state a node that dies between the two leaves
    /// behind. For the tests of that crash; a tracker never calls it.
    ///
    /// # Errors
    /// As the JOIN would refuse it.
    #[doc(hidden)]
    pub async fn join_first_script_only(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        join: &JoinSpec<'_>,
    ) -> Result<(), TrackerError> {
        for _ in 0..RETRIES {
            if self
                .claim_membership(now.as_secs(), key, join)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(self.conflict())
    }

    fn prefer_reachable(&self, criteria: &Criteria, facts: (Option<bool>, Option<bool>)) -> bool {
        criteria.reachability == Reachability::Prefer
            || (criteria.reachability == Reachability::AsRequesterNeeds
                && facts.0 == Some(true)
                && facts.1 != Some(true))
    }

    /// Inserts or updates the membership of a session that is written afterwards by the
    /// caller; returns the list chosen for it.
    async fn join_one(
        &self,
        now: u64,
        peer_id: &PeerId,
        session: &mut SessionRecord,
        join: &JoinSpec<'_>,
        criteria: &Criteria,
    ) -> Result<Chosen, TrackerError> {
        let swarm_id = join.swarm_id.as_str();
        let keys = self.names.swarm(swarm_id);
        let member_already = session.membership(swarm_id).is_some();
        if !member_already && session.w.len() >= self.policy.max_swarms_per_peer {
            return Err(TrackerError::TooManySwarms);
        }
        let contact = ContactRecord::from_contact(&session.contact(peer_id));
        let facts = contact.nat_facts();
        let deadline = join.deadline.map(Timestamp::as_secs);
        for _ in 0..RETRIES {
            let stale = self.read_member(&keys, peer_id.as_str()).await?;
            let old = stale.clone().filter(|(_, m)| m.g == session.g);
            if stale.is_none()
                && !self.swarm_exists(&keys).await?
                && self.total("swarms").await? >= self.policy.limits.max_swarms as u64
            {
                return Err(self.refuse(Cap::Swarms).await);
            }
            let mut member = match &old {
                Some((_, m)) => m.clone(),
                None => MemberRecord {
                    g: session.g,
                    m: records::mode_code(join.mode),
                    j: now,
                    c: contact.clone(),
                    dl: None,
                    cl: Vec::new(),
                    st: None,
                    done: None,
                    sp: None,
                    ch: 0,
                },
            };
            let old_mode = old.as_ref().map(|(_, m)| m.mode());
            member.m = records::mode_code(join.mode);
            member.c = contact.clone();
            member.dl = deadline;
            // As the memory store: the latest JOIN's start point, none if it declared none.
            member.sp = join
                .start
                .and_then(StartPoint::of)
                .as_ref()
                .map(StartRecord::from_start);
            let text = serde_json::to_string(&member).map_err(|_| TrackerError::Internal)?;
            let member_key = peer_id.as_str();
            let mut ops = keys.ops();
            ops.check_field(
                &keys.members,
                member_key,
                stale.as_ref().map(|(t, _)| t.as_str()),
            )
            .hset(&keys.members, member_key, &text)
            .zadd(&keys.joined, member.j, member_key);
            match deadline {
                Some(d) => ops.zadd(&keys.deadlines, d, member_key),
                None => ops.zrem(&keys.deadlines, member_key),
            };
            if join.mode == PeerMode::LiveSeed {
                ops.sadd(&keys.live_seeds, member_key);
            } else {
                ops.srem(&keys.live_seeds, member_key);
            }
            let mut deltas: Vec<(&str, i64)> = vec![(mode_field(join.mode), 1)];
            if let Some(old_mode) = old_mode {
                deltas.push((mode_field(old_mode), -1));
            }
            // A record of an older generation of this peer is replaced: take it off.
            if let (None, Some((_, gone))) = (&old, &stale) {
                deltas.push((mode_field(gone.mode()), -1));
                deltas.push(("chunk_bytes", -(gone.ch as i64)));
                ops.hincr(&keys.counts, "bytes", -(gone.ch as i64));
            }
            for (field, delta) in &deltas {
                if *field != "chunk_bytes" {
                    ops.hincr(&keys.counts, field, *delta);
                }
            }
            let applied = self.backend.apply(&ops).await?;
            if applied == Applied::Conflict {
                continue;
            }
            if let Some(d) = deadline {
                let mut ops = Ops::default();
                let earliest: Option<f64> = self
                    .backend
                    .query(
                        redis::cmd("ZSCORE")
                            .arg(self.names.global("dl"))
                            .arg(swarm_id),
                    )
                    .await?;
                if earliest.is_none_or(|e| (d as f64) < e) {
                    ops.zadd(&self.names.global("dl"), d, swarm_id);
                    self.backend.apply(&ops).await?;
                }
            }
            self.account(Some(swarm_id), applied, &deltas).await?;
            session.set_membership(swarm_id, join.mode);
            return self
                .select(
                    &keys,
                    peer_id.as_str(),
                    criteria,
                    self.prefer_reachable(criteria, facts),
                )
                .await;
        }
        Err(self.conflict())
    }

    /// A peer list of a swarm by `criteria`: its live seeds first, then a
    /// random sample of a bounded multiple of the members wanted, filtered by the core's
    /// rules.
    async fn select(
        &self,
        keys: &SwarmKeys,
        requester: &str,
        criteria: &Criteria,
        prefer_reachable: bool,
    ) -> Result<Chosen, TrackerError> {
        let wanted = criteria.wanted;
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let mut out: Chosen = Vec::new();
        {
            let live: Vec<String> = self
                .backend
                .query(
                    redis::cmd("SRANDMEMBER")
                        .arg(&keys.live_seeds)
                        .arg(wanted + 1),
                )
                .await?;
            let live: Vec<String> = live.into_iter().filter(|p| p != requester).collect();
            if !live.is_empty() {
                let records: Vec<Option<String>> = self
                    .backend
                    .query(redis::cmd("HMGET").arg(&keys.members).arg(&live))
                    .await?;
                for (peer, text) in live.into_iter().zip(records) {
                    if out.len() == wanted {
                        break;
                    }
                    if let Some(member) = text.and_then(|t| serde_json::from_str(&t).ok()) {
                        out.push((peer, member));
                    }
                }
            }
        }
        let remaining = wanted - out.len();
        if remaining == 0 {
            return Ok(out);
        }
        let filtered = criteria.scope.is_some() || prefer_reachable || criteria.prefer.is_some();
        let probes = if filtered {
            remaining
                .saturating_mul(PROBE_FACTOR)
                .saturating_add(PROBE_SLACK)
        } else {
            remaining + out.len() + 1
        };
        let sample = self.sample(keys, probes).await?;
        let sampled_all = sample.len() < probes;
        let preset = out.len();
        let mut second: Chosen = Vec::new();
        consider_all(
            sample,
            requester,
            criteria,
            prefer_reachable,
            wanted,
            &mut out,
            &mut second,
        );
        if criteria.scope.is_some() && out.len() == preset && second.is_empty() && !sampled_all {
            // A rare chunk the sample missed: look through the whole swarm, a batch at a
            // time, rather than answer 404 while a holder exists.
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = self
                    .backend
                    .query(
                        redis::cmd("HSCAN")
                            .arg(&keys.members)
                            .arg(cursor)
                            .arg("COUNT")
                            .arg(SWEEP_BATCH),
                    )
                    .await?;
                let mut pairs = batch.into_iter();
                let mut members = Vec::new();
                while let (Some(peer), Some(text)) = (pairs.next(), pairs.next()) {
                    if let Ok(member) = serde_json::from_str::<MemberRecord>(&text) {
                        members.push((peer, member));
                    }
                }
                consider_all(
                    members,
                    requester,
                    criteria,
                    prefer_reachable,
                    wanted,
                    &mut out,
                    &mut second,
                );
                cursor = next;
                if cursor == 0 || out.len() + second.len() >= wanted {
                    break;
                }
            }
        }
        for entry in second {
            if out.len() == wanted {
                break;
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// Up to `count` distinct random members with their records.
    async fn sample(
        &self,
        keys: &SwarmKeys,
        count: usize,
    ) -> Result<Vec<(String, MemberRecord)>, TrackerError> {
        let reply: Vec<String> = self
            .backend
            .query(
                redis::cmd("HRANDFIELD")
                    .arg(&keys.members)
                    .arg(count)
                    .arg("WITHVALUES"),
            )
            .await?;
        let mut out = Vec::with_capacity(reply.len() / 2);
        let mut pairs = reply.into_iter();
        while let (Some(peer), Some(text)) = (pairs.next(), pairs.next()) {
            if let Ok(member) = serde_json::from_str::<MemberRecord>(&text) {
                out.push((peer, member));
            }
        }
        // HRANDFIELD with a positive count returns members in hash order when it returns
        // them all; shuffle so small swarms are not listed in a fixed order.
        out.shuffle(&mut StdRng::from_os_rng());
        Ok(out)
    }

    fn render(chosen: Chosen) -> Vec<Candidate> {
        chosen
            .into_iter()
            .filter_map(|(peer, member)| {
                let peer_id = PeerId::new(peer).ok()?;
                Some(Candidate {
                    mode: member.mode(),
                    contact: member.c.to_contact(peer_id),
                })
            })
            .collect()
    }

    /// Applies the chunk maps and statistics of one swarm of a report to the member.
    #[allow(clippy::too_many_arguments)]
    async fn report_swarm(
        &self,
        now: u64,
        peer_id: &str,
        session: &mut SessionRecord,
        swarm_id: &SwarmId,
        maps: Option<&ppsp_proto::ChunkMapReport>,
        stats: Option<&ppsp_proto::StreamStats>,
    ) -> Result<bool, TrackerError> {
        if session.membership(swarm_id.as_str()).is_none() {
            return Ok(false);
        }
        let keys = self.names.swarm(swarm_id.as_str());
        let limits = &self.policy.limits;
        for _ in 0..RETRIES {
            let Some((text, mut member)) = self.read_member(&keys, peer_id).await? else {
                return Ok(false);
            };
            if member.g != session.g {
                return Ok(false);
            }
            let old_charged = member.ch;
            if let Some(report) = maps {
                let merged = match rules::merge_report_maps(
                    member.clips(),
                    old_charged as usize,
                    session.b as usize,
                    report,
                    limits,
                ) {
                    Ok(merged) => merged,
                    Err(cap) => return Err(self.refuse(cap).await),
                };
                if merged.growth > 0
                    && self.total("chunk_bytes").await? + merged.growth as u64
                        > limits.max_chunk_map_bytes
                {
                    return Err(self.refuse(Cap::ChunkMapBytes).await);
                }
                let (clips, charged, complete) =
                    (merged.clips, merged.charged as u64, merged.complete);
                member.cl = clips.iter().map(ClipRecord::from_clip).collect();
                member.ch = charged;
                if complete && member.done.is_none() {
                    member.done = Some(now);
                }
            }
            if let Some(stats) = stats {
                member.st = Some(StatsRecord::from_stats(stats));
            }
            let delta = member.ch as i64 - old_charged as i64;
            let new = serde_json::to_string(&member).map_err(|_| TrackerError::Internal)?;
            let mut ops = Ops::default();
            ops.check_field(&keys.members, peer_id, Some(&text))
                .hset(&keys.members, peer_id, &new)
                .hincr(&keys.counts, "bytes", delta);
            if self.backend.apply(&ops).await? == Applied::Conflict {
                continue;
            }
            self.account(None, Applied::Conflict, &[("chunk_bytes", delta)])
                .await?;
            session.b = session.b.saturating_add_signed(delta);
            return Ok(true);
        }
        Err(self.conflict())
    }

    async fn summary(&self, swarm_id: &SwarmId) -> Result<Option<SwarmSummary>, TrackerError> {
        let keys = self.names.swarm(swarm_id.as_str());
        let counts: Vec<(String, i64)> = self
            .backend
            .query(redis::cmd("HGETALL").arg(&keys.counts))
            .await?;
        if counts.is_empty() && !self.swarm_exists(&keys).await? {
            return Ok(None);
        }
        let get = |name: &str| {
            counts
                .iter()
                .find(|(f, _)| f == name)
                .map_or(0, |(_, v)| u64::try_from(*v).unwrap_or(0))
        };
        Ok(Some(SwarmSummary {
            swarm_id: swarm_id.clone(),
            live: self.policy.live_swarms.contains(swarm_id) || get("live_seeds") > 0,
            seeds: get("seeds"),
            live_seeds: get("live_seeds"),
            leeches: get("leeches"),
        }))
    }

    /// Removes the memberships of one swarm whose deadline passed; returns how many.
    async fn expire_swarm(&self, now: u64, swarm_id: &str) -> Result<usize, TrackerError> {
        let keys = self.names.swarm(swarm_id);
        let mut removed = 0;
        loop {
            let due: Vec<String> = self
                .backend
                .query(
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(&keys.deadlines)
                        .arg("-inf")
                        .arg(now)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(SWEEP_BATCH),
                )
                .await?;
            let batch = due.len();
            for peer in due {
                if self.expire_membership(now, swarm_id, &peer).await? {
                    removed += 1;
                } else {
                    // Not due after all (moved by a re-JOIN) or gone: keep the index true.
                    let mut ops = Ops::default();
                    match member_deadline(&self.read_member(&keys, &peer).await?) {
                        Some(d) if d > now => ops.zadd(&keys.deadlines, d, &peer),
                        _ => ops.zrem(&keys.deadlines, &peer),
                    };
                    self.backend.apply(&ops).await?;
                }
            }
            if batch < SWEEP_BATCH {
                break;
            }
        }
        let next: Vec<(String, f64)> = self
            .backend
            .query(
                redis::cmd("ZRANGE")
                    .arg(&keys.deadlines)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES"),
            )
            .await?;
        let mut ops = Ops::default();
        match next.first() {
            Some((_, score)) => ops.zadd(&self.names.global("dl"), *score as u64, swarm_id),
            None => ops.zrem(&self.names.global("dl"), swarm_id),
        };
        self.backend.apply(&ops).await?;
        Ok(removed)
    }

    /// Ends one due membership, swarm first; true when it was removed.
    async fn expire_membership(
        &self,
        now: u64,
        swarm_id: &str,
        peer: &str,
    ) -> Result<bool, TrackerError> {
        let keys = self.names.swarm(swarm_id);
        let Some((_, member)) = self.read_member(&keys, peer).await? else {
            return Ok(false);
        };
        if member.dl.is_none_or(|d| d > now) {
            return Ok(false);
        }
        // Swarm first, then the session (see `drop_session`).
        let removed = self
            .remove_member(swarm_id, peer, Some(member.g))
            .await?
            .is_some();
        for _ in 0..RETRIES {
            let Some((text, mut session)) = self.read_session(peer).await? else {
                break;
            };
            if session.g != member.g || session.membership(swarm_id).is_none() {
                break;
            }
            session.remove_membership(swarm_id);
            session.b = session.b.saturating_sub(member.ch);
            if self.write_session(peer, Some(&text), &session).await? {
                break;
            }
        }
        Ok(removed)
    }
}

fn member_deadline(member: &Option<(String, MemberRecord)>) -> Option<u64> {
    member.as_ref().and_then(|(_, m)| m.dl)
}

/// Adds qualifying members to `out` (or to `second` when they miss a preference).
fn consider_all(
    members: Vec<(String, MemberRecord)>,
    requester: &str,
    criteria: &Criteria,
    prefer_reachable: bool,
    wanted: usize,
    out: &mut Chosen,
    second: &mut Chosen,
) {
    for (peer, member) in members {
        if out.len() == wanted {
            break;
        }
        if peer == requester
            || out.iter().any(|(p, _)| *p == peer)
            || second.iter().any(|(p, _)| *p == peer)
        {
            continue;
        }
        let clips = member.clips();
        if criteria
            .scope
            .as_ref()
            .is_some_and(|s| !s.admits(member.mode(), &clips))
        {
            continue;
        }
        let preferred = (!prefer_reachable || member.c.reachable())
            && criteria
                .prefer
                .as_ref()
                .is_none_or(|p| p.admits(member.mode(), &clips));
        if preferred {
            out.push((peer, member));
        } else if second.len() < wanted {
            second.push((peer, member));
        }
    }
}

impl Store for RedisStore {
    async fn register(
        &self,
        now: Timestamp,
        registration: &Registration<'_>,
    ) -> Result<u32, TrackerError> {
        let now = now.as_secs();
        let peer_id = registration.peer_id.as_str();
        for _ in 0..RETRIES {
            if let Some((text, old)) = self.read_session(peer_id).await? {
                if old.alive(now, self.idle_secs) {
                    rules::may_replace(&old.live(), registration)?;
                }
                // A new CONNECT replaces the session as if the old one had sent DISCONNECT.
                if !self.drop_session(peer_id, &text, &old).await? {
                    continue;
                }
            }
            return match self.insert_session(now, registration).await {
                Ok((record, _)) => Ok(record.g),
                Err(TrackerError::Store(StoreError::Unavailable { .. }))
                    if self.read_session(peer_id).await?.is_some() =>
                {
                    continue;
                }
                Err(error) => Err(error),
            };
        }
        Err(self.conflict())
    }

    async fn touch(&self, now: Timestamp, key: SessionKey<'_>) -> Result<(), TrackerError> {
        let now = now.as_secs();
        for _ in 0..RETRIES {
            let (text, mut session) = self.checked(now, key).await?;
            session.l = now;
            if self
                .write_session(key.peer_id.as_str(), Some(&text), &session)
                .await?
            {
                return Ok(());
            }
        }
        Err(self.conflict())
    }

    async fn disconnect(&self, now: Timestamp, key: SessionKey<'_>) -> Result<(), TrackerError> {
        let now = now.as_secs();
        for _ in 0..RETRIES {
            let (text, session) = self.checked(now, key).await?;
            if self
                .drop_session(key.peer_id.as_str(), &text, &session)
                .await?
            {
                return Ok(());
            }
        }
        Err(self.conflict())
    }

    async fn join(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        join: &JoinSpec<'_>,
        criteria: &Criteria,
    ) -> Result<Vec<Candidate>, TrackerError> {
        let now = now.as_secs();
        let peer_id = key.peer_id;
        for _ in 0..RETRIES {
            let Some(Claim {
                text,
                mut session,
                claimed,
                hints_changed,
            }) = self.claim_membership(now, key, join).await?
            else {
                continue;
            };
            let swarm_id = join.swarm_id.as_str();
            if hints_changed {
                self.refresh_contact(peer_id, &session).await?;
            }
            let chosen = self
                .join_one(now, peer_id, &mut session, join, criteria)
                .await;
            if let Err(error) = &chosen {
                // The swarm refused: take the claim back off the session.
                if session.membership(swarm_id).is_none() {
                    let claimed_text =
                        serde_json::to_string(&claimed).map_err(|_| TrackerError::Internal)?;
                    let mut undone = claimed.clone();
                    undone.remove_membership(swarm_id);
                    if let Some(previous) = session_mode_before(&text, swarm_id) {
                        undone.set_membership(swarm_id, previous);
                    }
                    self.write_session(peer_id.as_str(), Some(&claimed_text), &undone)
                        .await?;
                }
                return Err(error.clone());
            }
            return chosen.map(Self::render);
        }
        Err(self.conflict())
    }

    async fn leave(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        swarm_id: &SwarmId,
    ) -> Result<(), TrackerError> {
        let now = now.as_secs();
        let keys = self.names.swarm(swarm_id.as_str());
        for _ in 0..RETRIES {
            let (text, mut session) = self.checked(now, key).await?;
            let member = session.membership(swarm_id.as_str()).is_some();
            if !member && !self.swarm_exists(&keys).await? {
                return Err(TrackerError::UnknownSwarm);
            }
            let charged = self
                .read_member(&keys, key.peer_id.as_str())
                .await?
                .filter(|(_, m)| m.g == session.g)
                .map_or(0, |(_, m)| m.ch);
            // Swarm first, then the session (see `drop_session`).
            if member {
                self.remove_member(swarm_id.as_str(), key.peer_id.as_str(), Some(session.g))
                    .await?;
            }
            session.remove_membership(swarm_id.as_str());
            session.b = session.b.saturating_sub(charged);
            session.l = now;
            if !self
                .write_session(key.peer_id.as_str(), Some(&text), &session)
                .await?
            {
                continue;
            }
            return Ok(());
        }
        Err(self.conflict())
    }

    async fn find(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        swarm_id: &SwarmId,
        hints: NatHints,
        criteria: &Criteria,
    ) -> Result<Vec<Candidate>, TrackerError> {
        let now = now.as_secs();
        let keys = self.names.swarm(swarm_id.as_str());
        for _ in 0..RETRIES {
            let (text, mut session) = self.checked(now, key).await?;
            let hints_changed = session.merge_hints(hints);
            if session.membership(swarm_id.as_str()).is_none() {
                if !self.swarm_exists(&keys).await? {
                    return Err(TrackerError::UnknownSwarm);
                }
                return Err(TrackerError::NotMember);
            }
            let facts = ContactRecord::from_contact(&session.contact(key.peer_id)).nat_facts();
            let chosen = self
                .select(
                    &keys,
                    key.peer_id.as_str(),
                    criteria,
                    self.prefer_reachable(criteria, facts),
                )
                .await?;
            if criteria.empty_is_not_found() && chosen.is_empty() {
                return Err(TrackerError::NoChunkHolder);
            }
            session.l = now;
            if !self
                .write_session(key.peer_id.as_str(), Some(&text), &session)
                .await?
            {
                continue;
            }
            if hints_changed {
                self.refresh_contact(key.peer_id, &session).await?;
            }
            return Ok(Self::render(chosen));
        }
        Err(self.conflict())
    }

    async fn report(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        report: &StatReport,
    ) -> Result<Vec<(SwarmId, bool)>, TrackerError> {
        let now = now.as_secs();
        let peer_id = key.peer_id.as_str();
        for _ in 0..RETRIES {
            let (text, mut session) = self.checked(now, key).await?;
            let mut stored = Vec::new();
            let mut hints = NatHints::default();
            for stat in &report.stats {
                match stat {
                    Stat::ChunkMap(chunks) => {
                        self.report_swarm(
                            now,
                            peer_id,
                            &mut session,
                            &chunks.swarm_id,
                            Some(chunks),
                            None,
                        )
                        .await?;
                    }
                    Stat::StreamStats(stats) => {
                        if let Some(swarm_id) = &stats.swarm_id {
                            let done = self
                                .report_swarm(
                                    now,
                                    peer_id,
                                    &mut session,
                                    swarm_id,
                                    None,
                                    Some(stats),
                                )
                                .await?;
                            stored.push((swarm_id.clone(), done));
                        }
                    }
                    Stat::Nat(value) => hints.nat = Some(*value),
                    Stat::Stun(value) => hints.stun = Some(*value),
                }
            }
            let hints_changed = session.merge_hints(hints);
            session.l = now;
            if !self.write_session(peer_id, Some(&text), &session).await? {
                continue;
            }
            if hints_changed {
                self.refresh_contact(key.peer_id, &session).await?;
            }
            return Ok(stored);
        }
        Err(self.conflict())
    }

    async fn swarm_actions(
        &self,
        now: Timestamp,
        registration: &Registration<'_>,
        actions: &[SwarmAction],
        criteria: &(dyn Fn(&SwarmAction) -> Criteria + Sync),
    ) -> Result<SwarmActionsOutcome, TrackerError> {
        let now_secs = now.as_secs();
        let peer_id = registration.peer_id;
        let mut registered = None;
        if let Some((text, session)) = self.read_session(peer_id.as_str()).await? {
            if session.alive(now_secs, self.idle_secs) {
                rules::may_replace(&session.live(), registration)?;
                registered = Some((text, session));
            } else if !self.drop_session(peer_id.as_str(), &text, &session).await? {
                return Err(self.conflict());
            }
        }
        let current: Option<Vec<(SwarmId, PeerMode)>> = registered.as_ref().map(|(_, s)| {
            s.w.iter()
                .filter_map(|(id, m)| Some((SwarmId::new(id.as_str()).ok()?, records::mode_of(*m))))
                .collect()
        });
        let plan = rules::plan_swarm_actions(
            current.as_deref(),
            actions,
            self.policy.max_swarms_per_peer,
        )?;
        if !plan.any_valid() {
            return Err(TrackerError::NoValidSwarmAction);
        }
        let was_registered = registered.is_some();
        let (mut text, mut session) = match registered {
            Some((text, mut session)) => {
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
                (text, session)
            }
            None => {
                let (record, text) = self.insert_session(now_secs, registration).await?;
                (text, record)
            }
        };
        if was_registered {
            self.refresh_contact(peer_id, &session).await?;
        }
        let mut outcome = SwarmActionsOutcome {
            results: actions.iter().map(|_| (false, Vec::new())).collect(),
            ended: false,
        };
        for &index in &plan.leaves {
            let swarm_id = actions[index].swarm_id.as_str();
            session.remove_membership(swarm_id);
            if let Some(charged) = self
                .remove_member(swarm_id, peer_id.as_str(), Some(session.g))
                .await?
            {
                session.b = session.b.saturating_sub(charged);
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
            // Session first: name the membership, then add it to the swarm.
            let mut claimed = session.clone();
            claimed.set_membership(action.swarm_id.as_str(), action.mode);
            if !self
                .write_session(peer_id.as_str(), Some(&text), &claimed)
                .await?
            {
                return Err(self.conflict());
            }
            text = serde_json::to_string(&claimed).map_err(|_| TrackerError::Internal)?;
            match self
                .join_one(now_secs, peer_id, &mut session, &join, &criteria(action))
                .await
            {
                Ok(chosen) => {
                    outcome.results[index] = (true, Self::render(chosen));
                }
                Err(TrackerError::OverCap(cap)) if outcome.results.iter().all(|r| !r.0) => {
                    if !was_registered {
                        self.drop_session(peer_id.as_str(), &text, &claimed).await?;
                    }
                    return Err(TrackerError::OverCap(cap));
                }
                Err(_) => {}
            }
        }
        if session.w.is_empty() {
            // Leaving the last swarm ends the registration (RFC 7846 Table 6).
            self.drop_session(peer_id.as_str(), &text, &session_as_written(&text)?)
                .await?;
            outcome.ended = true;
        } else {
            session.l = now_secs;
            if !self
                .write_session(peer_id.as_str(), Some(&text), &session)
                .await?
            {
                return Err(self.conflict());
            }
        }
        Ok(outcome)
    }

    async fn expire(&self, now: Timestamp) -> Result<SweepReport, TrackerError> {
        let now = now.as_secs();
        let mut report = SweepReport::default();
        let idle_before = now.saturating_sub(self.idle_secs);
        for bucket in 0..SESSION_BUCKETS {
            let idle = self.names.idle(&self.names.bucket_tag(bucket));
            loop {
                // Alive means now < last + idle, so last <= now - idle is due.
                let due: Vec<String> = self
                    .backend
                    .query(
                        redis::cmd("ZRANGEBYSCORE")
                            .arg(&idle)
                            .arg("-inf")
                            .arg(idle_before)
                            .arg("LIMIT")
                            .arg(0)
                            .arg(SWEEP_BATCH),
                    )
                    .await?;
                let batch = due.len();
                for peer in due {
                    match self.read_session(&peer).await? {
                        Some((text, session)) if !session.alive(now, self.idle_secs) => {
                            if self.drop_session(&peer, &text, &session).await? {
                                report.sessions_expired += 1;
                            }
                        }
                        Some(_) => {}
                        None => {
                            let mut ops = Ops::default();
                            ops.zrem(&idle, &peer);
                            self.backend.apply(&ops).await?;
                        }
                    }
                }
                if batch < SWEEP_BATCH {
                    break;
                }
            }
        }
        loop {
            let swarms: Vec<String> = self
                .backend
                .query(
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(self.names.global("dl"))
                        .arg("-inf")
                        .arg(now)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(SWEEP_BATCH),
                )
                .await?;
            let batch = swarms.len();
            for swarm_id in swarms {
                report.memberships_expired += self.expire_swarm(now, &swarm_id).await?;
            }
            if batch < SWEEP_BATCH {
                break;
            }
        }
        self.account(
            None,
            Applied::Conflict,
            &[
                ("sessions_expired", report.sessions_expired as i64),
                ("memberships_expired", report.memberships_expired as i64),
            ],
        )
        .await?;
        Ok(report)
    }

    async fn session_state(
        &self,
        now: Timestamp,
        peer_id: &PeerId,
    ) -> Result<Option<SessionState>, TrackerError> {
        let now = now.as_secs();
        Ok(self
            .read_session(peer_id.as_str())
            .await?
            .filter(|(_, s)| s.alive(now, self.idle_secs))
            .map(|(_, s)| {
                if s.w.is_empty() {
                    SessionState::Connected
                } else {
                    SessionState::Joined
                }
            }))
    }

    async fn totals(&self) -> Result<Totals, TrackerError> {
        let fields: Vec<(String, i64)> = self
            .backend
            .query(redis::cmd("HGETALL").arg(self.names.global("n")))
            .await?;
        let get = |name: &str| {
            fields
                .iter()
                .find(|(f, _)| f == name)
                .map_or(0, |(_, v)| u64::try_from(*v).unwrap_or(0))
        };
        let mut refusals = [0; Cap::ALL.len()];
        for (slot, cap) in refusals.iter_mut().zip(Cap::ALL) {
            *slot = get(&cap_field(cap));
        }
        Ok(Totals {
            sessions: get("sessions"),
            swarms: get("swarms"),
            seeds: get("seeds"),
            live_seeds: get("live_seeds"),
            leeches: get("leeches"),
            chunk_map_bytes: get("chunk_bytes"),
            sessions_expired: get("sessions_expired"),
            memberships_expired: get("memberships_expired"),
            refusals,
        })
    }

    async fn swarms(&self, _now: Timestamp, query: &SwarmQuery) -> Result<SwarmPage, TrackerError> {
        let filter = query.filter.as_deref().filter(|f| !f.is_empty());
        let (total, ids): (usize, Vec<String>) = match filter {
            None => {
                let total: usize = self
                    .backend
                    .query(redis::cmd("ZCARD").arg(self.names.global("bysize")))
                    .await?;
                let stop = query
                    .offset
                    .saturating_add(query.limit)
                    .saturating_sub(1)
                    .min(i64::MAX as usize);
                let ids: Vec<String> = if query.limit == 0 {
                    Vec::new()
                } else {
                    self.backend
                        .query(
                            redis::cmd("ZREVRANGE")
                                .arg(self.names.global("bysize"))
                                .arg(query.offset.min(i64::MAX as usize))
                                .arg(stop),
                        )
                        .await?
                };
                (total, ids)
            }
            Some(text) => {
                // A filtered listing reads the whole index: it is an operator's search.
                let all: Vec<String> = self
                    .backend
                    .query(
                        redis::cmd("ZREVRANGE")
                            .arg(self.names.global("bysize"))
                            .arg(0)
                            .arg(-1),
                    )
                    .await?;
                let matching: Vec<String> =
                    all.into_iter().filter(|id| id.contains(text)).collect();
                let total = matching.len();
                (
                    total,
                    matching
                        .into_iter()
                        .skip(query.offset)
                        .take(query.limit)
                        .collect(),
                )
            }
        };
        let mut swarms = Vec::with_capacity(ids.len());
        for id in ids {
            let Ok(swarm_id) = SwarmId::new(id) else {
                continue;
            };
            if let Some(summary) = self.summary(&swarm_id).await? {
                swarms.push(summary);
            }
        }
        // Sizes in the index may lag a concurrent change by a moment; order by the counts.
        swarms.sort_by(|a, b| {
            b.members()
                .cmp(&a.members())
                .then_with(|| a.swarm_id.cmp(&b.swarm_id))
        });
        Ok(SwarmPage {
            total,
            offset: query.offset,
            swarms,
        })
    }

    async fn swarm(
        &self,
        _now: Timestamp,
        swarm_id: &SwarmId,
        offset: usize,
        limit: usize,
    ) -> Result<Option<SwarmDetail>, TrackerError> {
        let Some(summary) = self.summary(swarm_id).await? else {
            return Ok(None);
        };
        let keys = self.names.swarm(swarm_id.as_str());
        let peers: Vec<String> = if limit == 0 {
            Vec::new()
        } else {
            let stop = offset
                .saturating_add(limit)
                .saturating_sub(1)
                .min(i64::MAX as usize);
            self.backend
                .query(
                    redis::cmd("ZRANGE")
                        .arg(&keys.joined)
                        .arg(offset.min(i64::MAX as usize))
                        .arg(stop),
                )
                .await?
        };
        let records: Vec<Option<String>> = if peers.is_empty() {
            Vec::new()
        } else {
            self.backend
                .query(redis::cmd("HMGET").arg(&keys.members).arg(&peers))
                .await?
        };
        let details = peers
            .into_iter()
            .zip(records)
            .filter_map(|(peer, text)| {
                let member: MemberRecord = serde_json::from_str(&text?).ok()?;
                member_detail(peer, &member)
            })
            .collect();
        let sample = self.sample(&keys, AVAILABILITY_SAMPLE).await?;
        let sampled = summary.members() > AVAILABILITY_SAMPLE as u64;
        let clips: Vec<Vec<ClipChunks>> = sample.iter().map(|(_, m)| m.clips()).collect();
        let chunk_availability =
            ppsp_tracker_core::chunk_availability(clips.iter().map(Vec::as_slice));
        let (uploaded_bytes, downloaded_bytes) =
            sample
                .iter()
                .fold((0u64, 0u64), |(up, down), (_, m)| match &m.st {
                    Some(stats) => (
                        up.saturating_add(stats.u.unwrap_or(0)),
                        down.saturating_add(stats.d.unwrap_or(0)),
                    ),
                    None => (up, down),
                });
        Ok(Some(SwarmDetail {
            summary,
            offset,
            peers: details,
            chunk_availability,
            availability_sampled: sampled,
            uploaded_bytes,
            downloaded_bytes,
            recently_completed: recently_completed(&sample),
        }))
    }
}

/// A member as the statistics pages show it.
fn member_detail(peer: String, member: &MemberRecord) -> Option<PeerDetail> {
    let clips = member.clips();
    let stats = member.st.clone().unwrap_or_default();
    let (behind_nat, stun) = member.c.nat_facts();
    Some(PeerDetail {
        peer_id: PeerId::new(peer).ok()?,
        mode: member.mode(),
        joined_at: Timestamp::from_secs(member.j),
        completed_at: member.done.map(Timestamp::from_secs),
        start: member.sp.as_ref().map(StartRecord::to_start),
        uploaded_bytes: stats.u.unwrap_or(0),
        downloaded_bytes: stats.d.unwrap_or(0),
        available_bandwidth: stats.bw.unwrap_or(0),
        chunks_held: clips.iter().map(|c| c.chunks.count()).sum(),
        chunks_covered: clips.iter().map(|c| c.chunks.covered()).sum(),
        behind_nat,
        stun,
    })
}

/// The members of `sample` that completed, most recent first, as many as the memory store
/// lists.
fn recently_completed(sample: &[(String, MemberRecord)]) -> Vec<PeerDetail> {
    let mut completed: Vec<&(String, MemberRecord)> =
        sample.iter().filter(|(_, m)| m.done.is_some()).collect();
    // Ties in the same second by PeerID, so the list does not depend on sampling order.
    completed.sort_by(|(a, x), (b, y)| y.done.cmp(&x.done).then_with(|| a.cmp(b)));
    completed
        .into_iter()
        .take(RECENT_COMPLETIONS)
        .filter_map(|(peer, member)| member_detail(peer.clone(), member))
        .collect()
}

/// The mode a session read as `text` had in `swarm_id`, if any.
fn session_mode_before(text: &str, swarm_id: &str) -> Option<PeerMode> {
    serde_json::from_str::<SessionRecord>(text)
        .ok()?
        .membership(swarm_id)
}

fn session_as_written(text: &str) -> Result<SessionRecord, TrackerError> {
    serde_json::from_str(text).map_err(|_| TrackerError::Internal)
}

/// The store a tracker runs on, chosen at start: the in-memory store of one node, or Redis
/// shared by several.
#[derive(Debug)]
pub enum AnyStore {
    /// [`MemoryStore`].
    Memory(MemoryStore),
    /// [`RedisStore`].
    Redis(RedisStore),
}

/// Forwards a [`Store`] call to whichever store is in use.
macro_rules! forward {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($store) => $call.await,
            AnyStore::Redis($store) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn register(
        &self,
        now: Timestamp,
        registration: &Registration<'_>,
    ) -> Result<u32, TrackerError> {
        forward!(self, s => s.register(now, registration))
    }

    async fn touch(&self, now: Timestamp, key: SessionKey<'_>) -> Result<(), TrackerError> {
        forward!(self, s => s.touch(now, key))
    }

    async fn disconnect(&self, now: Timestamp, key: SessionKey<'_>) -> Result<(), TrackerError> {
        forward!(self, s => s.disconnect(now, key))
    }

    async fn join(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        join: &JoinSpec<'_>,
        criteria: &Criteria,
    ) -> Result<Vec<Candidate>, TrackerError> {
        forward!(self, s => s.join(now, key, join, criteria))
    }

    async fn leave(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        swarm_id: &SwarmId,
    ) -> Result<(), TrackerError> {
        forward!(self, s => s.leave(now, key, swarm_id))
    }

    async fn find(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        swarm_id: &SwarmId,
        hints: NatHints,
        criteria: &Criteria,
    ) -> Result<Vec<Candidate>, TrackerError> {
        forward!(self, s => s.find(now, key, swarm_id, hints, criteria))
    }

    async fn report(
        &self,
        now: Timestamp,
        key: SessionKey<'_>,
        report: &StatReport,
    ) -> Result<Vec<(SwarmId, bool)>, TrackerError> {
        forward!(self, s => s.report(now, key, report))
    }

    async fn swarm_actions(
        &self,
        now: Timestamp,
        registration: &Registration<'_>,
        actions: &[SwarmAction],
        criteria: &(dyn Fn(&SwarmAction) -> Criteria + Sync),
    ) -> Result<SwarmActionsOutcome, TrackerError> {
        forward!(self, s => s.swarm_actions(now, registration, actions, criteria))
    }

    async fn expire(&self, now: Timestamp) -> Result<SweepReport, TrackerError> {
        forward!(self, s => s.expire(now))
    }

    async fn session_state(
        &self,
        now: Timestamp,
        peer_id: &PeerId,
    ) -> Result<Option<SessionState>, TrackerError> {
        forward!(self, s => s.session_state(now, peer_id))
    }

    async fn totals(&self) -> Result<Totals, TrackerError> {
        forward!(self, s => s.totals())
    }

    async fn swarms(&self, now: Timestamp, query: &SwarmQuery) -> Result<SwarmPage, TrackerError> {
        forward!(self, s => s.swarms(now, query))
    }

    async fn swarm(
        &self,
        now: Timestamp,
        swarm_id: &SwarmId,
        offset: usize,
        limit: usize,
    ) -> Result<Option<SwarmDetail>, TrackerError> {
        forward!(self, s => s.swarm(now, swarm_id, offset, limit))
    }
}
