//! The tracker: request dispatch, sessions, swarms and expiry.
//!
//! Locking: a request takes its session shard's lock and, while holding it, at most one
//! swarm shard lock at a time. Nothing takes a session lock while holding a swarm lock,
//! and no path holds two locks of the same kind, so the order session → swarm rules out
//! deadlocks. The authenticator runs with no lock held.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use ppsp_proto::{
    AbilityNat, AddressType, Connect, Find, Join, Leave, Method, PeerAddress, PeerId, PeerMode,
    Request, RequestBody, Response, Stat, StatReport, Status, SwarmActionKind, SwarmId,
    SwarmResult, TransactionId,
};

use crate::answer::{Answer, Candidate};
use crate::error::TrackerError;
use crate::select::{ChunkScope, Criteria, select};
use crate::session::{Joined, Replay, Session, new_token};
use crate::snapshot::{ClipAvailability, PeerSnapshot, Snapshot, SwarmSnapshot};
use crate::swarm::{Member, Swarm, or_bits};
use crate::{Authenticator, Config, Dialect, JSON_PEER_COUNT_MAX, RequestContext};

/// Where a session stands (draft digest §9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Registered, in no swarm.
    Connected,
    /// In one or more swarms.
    Joined,
}

/// What one [`Tracker::sweep`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Sessions removed by the inactivity timer.
    pub sessions_expired: usize,
    /// Memberships removed because their ExpireTime passed.
    pub memberships_expired: usize,
}

/// Widest union computed for a snapshot's chunk availability, in bits. Past it the count
/// is a lower bound (the largest single member's count).
const MAX_AVAILABILITY_SPAN_BITS: u64 = 1 << 24;

struct SessionShard {
    sessions: HashMap<PeerId, Session>,
    /// Exactly one entry per session, keyed by (queued deadline, session generation).
    /// Requests only move `last_activity`; when the entry comes due and the session was
    /// active since, it is queued again at its real deadline. Deleting a session deletes
    /// its entry, so the queue never holds more than the sessions.
    idle_queue: BTreeMap<(Instant, u64), PeerId>,
    rng: StdRng,
}

impl SessionShard {
    /// Stores a new session and queues its inactivity deadline.
    fn insert(&mut self, peer_id: &PeerId, mut session: Session, deadline: Instant) {
        session.queued_deadline = deadline;
        self.idle_queue
            .insert((deadline, session.generation), peer_id.clone());
        self.sessions.insert(peer_id.clone(), session);
    }

    /// Deletes a session and its queue entry.
    fn remove(&mut self, peer_id: &PeerId) -> Option<Session> {
        let session = self.sessions.remove(peer_id)?;
        self.idle_queue
            .remove(&(session.queued_deadline, session.generation));
        Some(session)
    }
}

struct SwarmShard {
    swarms: HashMap<SwarmId, Swarm>,
    /// One entry per membership with an ExpireTime, keyed by (deadline, membership
    /// generation); re-JOIN and removal delete the old entry.
    expiry_queue: BTreeMap<(Instant, u64), (SwarmId, PeerId)>,
    rng: StdRng,
}

#[derive(Default)]
struct Metrics {
    requests: [AtomicU64; 7],
    responses: [AtomicU64; 8],
    sessions_expired: AtomicU64,
}

fn method_index(method: Method) -> usize {
    Method::ALL.iter().position(|m| *m == method).unwrap_or(0)
}

fn status_index(status: Status) -> usize {
    Status::ALL.iter().position(|s| *s == status).unwrap_or(0)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the tracker down with it; the state behind a
    // poisoned lock is still structurally valid.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ok(transaction_id: &TransactionId) -> Response {
    Response::status(Status::Ok, Some(transaction_id.clone()))
}

fn failure(error: &TrackerError, transaction_id: &TransactionId) -> Response {
    Response::status(error.status(), Some(transaction_id.clone()))
}

/// The tracker. `Send + Sync`; every method takes `&self`.
pub struct Tracker {
    config: Config,
    live_swarms: HashSet<SwarmId>,
    authenticator: Arc<dyn Authenticator>,
    session_shards: Box<[Mutex<SessionShard>]>,
    swarm_shards: Box<[Mutex<SwarmShard>]>,
    shard_mask: usize,
    next_generation: AtomicU64,
    metrics: Metrics,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker whose randomness (AuthTokens, peer selection) comes from a CSPRNG seeded
    /// by the operating system.
    pub fn new(config: Config, authenticator: Arc<dyn Authenticator>) -> Self {
        Self::build(config, authenticator, |_| StdRng::from_os_rng())
    }

    /// A tracker with deterministic randomness, for tests and benchmarks. Never use it in
    /// production: AuthTokens become predictable.
    pub fn with_seed(config: Config, authenticator: Arc<dyn Authenticator>, seed: u64) -> Self {
        Self::build(config, authenticator, |stream| {
            StdRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        })
    }

    fn build(
        config: Config,
        authenticator: Arc<dyn Authenticator>,
        mut rng: impl FnMut(u64) -> StdRng,
    ) -> Self {
        let shards = config.shards.clamp(1, 1 << 12).next_power_of_two();
        let session_shards = (0..shards)
            .map(|i| {
                Mutex::new(SessionShard {
                    sessions: HashMap::new(),
                    idle_queue: BTreeMap::new(),
                    rng: rng(2 * i as u64 + 1),
                })
            })
            .collect();
        let swarm_shards = (0..shards)
            .map(|i| {
                Mutex::new(SwarmShard {
                    swarms: HashMap::new(),
                    expiry_queue: BTreeMap::new(),
                    rng: rng(2 * i as u64 + 2),
                })
            })
            .collect();
        Self {
            live_swarms: config.live_swarms.iter().cloned().collect(),
            config,
            authenticator,
            session_shards,
            swarm_shards,
            shard_mask: shards - 1,
            next_generation: AtomicU64::new(1),
            metrics: Metrics::default(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn shard_of(&self, key: &str) -> usize {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        // usize is at least 32 bits on every supported target; the mask keeps it in range.
        (hasher.finish() as usize) & self.shard_mask
    }

    fn session_shard(&self, peer_id: &PeerId) -> MutexGuard<'_, SessionShard> {
        let index = self.shard_of(peer_id.as_str());
        lock(&self.session_shards[index])
    }

    fn swarm_shard(&self, swarm_id: &SwarmId) -> MutexGuard<'_, SwarmShard> {
        let index = self.shard_of(swarm_id.as_str());
        lock(&self.swarm_shards[index])
    }

    fn generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }

    fn idle_deadline(&self, from: Instant) -> Instant {
        from.checked_add(self.config.session_idle_timeout)
            .unwrap_or(from)
    }

    fn wanted(&self, dialect: Dialect, requested: Option<u32>) -> usize {
        let mut cap = self.config.peer_num_max;
        if dialect == Dialect::Json {
            cap = cap.min(JSON_PEER_COUNT_MAX);
        }
        let count = requested.unwrap_or(self.config.peer_num_default).min(cap);
        usize::try_from(count).unwrap_or(usize::MAX)
    }

    /// Handles one decoded request and returns the response to encode in the request's
    /// dialect. Never panics. CONNECT calls the authenticator (possibly slow), so run it on
    /// a blocking thread.
    pub fn handle(&self, now: Instant, ctx: &RequestContext, request: &Request) -> Response {
        self.metrics.requests[method_index(request.body.method())].fetch_add(1, Ordering::Relaxed);
        let response = match (&request.body, ctx.dialect) {
            (RequestBody::Connect(connect), Dialect::Xml) => {
                self.connect_xml(now, ctx, request, connect)
            }
            (RequestBody::Connect(connect), Dialect::Json) => {
                self.connect_json(now, ctx, request, connect)
            }
            _ => self.in_session(now, ctx, request),
        };
        self.metrics.responses[status_index(response.status)].fetch_add(1, Ordering::Relaxed);
        response
    }

    /// Looks up the session's retransmission cache before CONNECT authenticates.
    fn connect_replay(
        &self,
        now: Instant,
        ctx: &RequestContext,
        request: &Request,
    ) -> Option<Response> {
        let shard = self.session_shard(&request.peer_id);
        self.cached_connect(&shard, now, ctx, request)
            .map(|answer| answer.render(ctx.observed.ip(), ctx.dialect))
    }

    /// The cached answer to a retransmitted CONNECT (or a refusal for a reused
    /// TransactionID), from the live session of the same dialect.
    fn cached_connect(
        &self,
        shard: &SessionShard,
        now: Instant,
        ctx: &RequestContext,
        request: &Request,
    ) -> Option<Arc<Answer>> {
        let session = shard.sessions.get(&request.peer_id)?;
        if session.dialect != ctx.dialect || !session.alive(now, self.config.session_idle_timeout) {
            return None;
        }
        match session.replay_lookup(request, now, self.config.replay_cache_ttl) {
            Replay::Hit(answer) => Some(answer),
            Replay::Conflict => Some(refused(
                &TrackerError::TransactionIdReused,
                &request.transaction_id,
            )),
            Replay::Miss => None,
        }
    }

    fn reflexive(&self, ctx: &RequestContext) -> Vec<PeerAddress> {
        if !self.config.reflexive_address {
            return Vec::new();
        }
        vec![
            PeerAddress::new(ctx.observed.ip(), ctx.observed.port())
                .with_kind(AddressType::Reflexive),
        ]
    }

    fn connect_xml(
        &self,
        now: Instant,
        ctx: &RequestContext,
        request: &Request,
        connect: &Connect,
    ) -> Response {
        let tid = &request.transaction_id;
        let Some(sasl) = connect.auth.as_ref() else {
            return failure(&TrackerError::InvalidRequest("CONNECT without Auth"), tid);
        };
        if let Some(replayed) = self.connect_replay(now, ctx, request) {
            return replayed;
        }
        // No lock is held here: checking a password hash is deliberately slow.
        if let Err(error) =
            self.authenticator
                .authenticate(&request.peer_id, Some(sasl), ctx.secure_channel)
        {
            return failure(&TrackerError::Authentication(error), tid);
        }

        let mut guard = self.session_shard(&request.peer_id);
        let shard = &mut *guard;
        // A retransmission may have overtaken its original during authentication.
        if let Some(answer) = self.cached_connect(shard, now, ctx, request) {
            drop(guard);
            return answer.render(ctx.observed.ip(), ctx.dialect);
        }
        if let Some(old) = shard.sessions.get(&request.peer_id)
            && old.dialect == Dialect::Json
            && old.alive(now, self.config.session_idle_timeout)
        {
            return failure(&TrackerError::DialectMismatch, tid);
        }
        let Some(token) = new_token(&mut shard.rng) else {
            return Response::status(Status::InternalError, Some(tid.clone()));
        };
        if let Some(old) = shard.remove(&request.peer_id) {
            // A new CONNECT replaces the session as if the old one had sent DISCONNECT.
            self.remove_memberships(&request.peer_id, &old);
        }
        let generation = self.generation();
        let mut session = Session::new(
            &request.peer_id,
            Dialect::Xml,
            Some(token.clone()),
            generation,
            now,
            ctx.observed,
            &connect.addresses,
            None,
        );
        let mut response = ok(tid);
        response.auth_token = Some(token);
        response.reflexive_addresses = self.reflexive(ctx);
        session.remember(
            request,
            &Arc::new(Answer::from(response.clone())),
            now,
            self.config.replay_cache_len,
            self.config.replay_cache_ttl,
        );
        shard.insert(&request.peer_id, session, self.idle_deadline(now));
        response
    }

    fn connect_json(
        &self,
        now: Instant,
        ctx: &RequestContext,
        request: &Request,
        connect: &Connect,
    ) -> Response {
        let tid = &request.transaction_id;
        if connect.swarm_actions.is_empty() {
            return failure(
                &TrackerError::InvalidRequest("CONNECT without swarm_action"),
                tid,
            );
        }
        if let Some(replayed) = self.connect_replay(now, ctx, request) {
            return replayed;
        }
        if let Err(error) =
            self.authenticator
                .authenticate(&request.peer_id, None, ctx.secure_channel)
        {
            return failure(&TrackerError::Authentication(error), tid);
        }
        // Peer lists are rendered after the session lock is released.
        self.connect_json_locked(now, ctx, request, connect)
            .render(ctx.observed.ip(), ctx.dialect)
    }

    fn connect_json_locked(
        &self,
        now: Instant,
        ctx: &RequestContext,
        request: &Request,
        connect: &Connect,
    ) -> Arc<Answer> {
        let tid = &request.transaction_id;
        let mut guard = self.session_shard(&request.peer_id);
        let shard = &mut *guard;
        // A retransmission may have overtaken its original during authentication.
        if let Some(answer) = self.cached_connect(shard, now, ctx, request) {
            return answer;
        }
        let idle = self.config.session_idle_timeout;
        let live = shard
            .sessions
            .get(&request.peer_id)
            .map(|s| (s.alive(now, idle), s.dialect));
        let existing = match live {
            Some((true, Dialect::Xml)) => return refused(&TrackerError::DialectMismatch, tid),
            // Taken out of the map while its queue entry stays: it is put back below unless
            // the request ends the registration.
            Some((true, Dialect::Json)) => shard.sessions.remove(&request.peer_id),
            Some((false, _)) => {
                if let Some(dead) = shard.remove(&request.peer_id) {
                    self.remove_memberships(&request.peer_id, &dead);
                }
                None
            }
            None => None,
        };
        let ability_nat = connect.peer_num.as_ref().and_then(|p| p.ability_nat);
        let registered = existing.is_some();
        let mut session = match existing {
            Some(mut session) => {
                if !connect.addresses.is_empty() {
                    session.declared = connect
                        .addresses
                        .iter()
                        .take(crate::session::MAX_DECLARED_ADDRESSES)
                        .cloned()
                        .collect();
                }
                session.observed = ctx.observed;
                if ability_nat.is_some() {
                    session.ability_nat = ability_nat;
                }
                if session.rebuild_contact() {
                    self.refresh_contact(&request.peer_id, &session);
                }
                session
            }
            None => {
                // RFC 7846 Table 6: from START, any LEAVE makes the request invalid.
                if connect
                    .swarm_actions
                    .iter()
                    .any(|a| a.action == SwarmActionKind::Leave)
                {
                    return refused(&TrackerError::NoValidSwarmAction, tid);
                }
                Session::new(
                    &request.peer_id,
                    Dialect::Json,
                    None,
                    self.generation(),
                    now,
                    ctx.observed,
                    &connect.addresses,
                    ability_nat,
                )
            }
        };

        let (results, lists) = self.apply_swarm_actions(now, request, connect, &mut session);
        let any_valid = results.iter().any(|r| r.ok);
        if !any_valid {
            // Rule A / C: nothing changed; a registered peer stays registered.
            if registered {
                shard.sessions.insert(request.peer_id.clone(), session);
            }
            return refused(&TrackerError::NoValidSwarmAction, tid);
        }
        let mut response = ok(tid);
        response.swarm_results = results;
        if !matches!(ability_nat, Some(AbilityNat::Stun | AbilityNat::Turn)) {
            response.reflexive_addresses = self.reflexive(ctx);
        }
        let answer = Arc::new(Answer { response, lists });
        if session.swarms.is_empty() {
            // Leaving the last swarm ends the registration (RFC 7846 Table 6).
            shard
                .idle_queue
                .remove(&(session.queued_deadline, session.generation));
            return answer;
        }
        session.last_activity = now;
        session.remember(
            request,
            &answer,
            now,
            self.config.replay_cache_len,
            self.config.replay_cache_ttl,
        );
        if registered {
            shard.sessions.insert(request.peer_id.clone(), session);
        } else {
            shard.insert(&request.peer_id, session, self.idle_deadline(now));
        }
        answer
    }

    /// Applies the swarm actions of a JSON CONNECT: LEAVEs first (so a channel switch works
    /// in either order), then JOINs. Results come back in request order.
    fn apply_swarm_actions(
        &self,
        now: Instant,
        request: &Request,
        connect: &Connect,
        session: &mut Session,
    ) -> (Vec<SwarmResult>, Vec<Vec<Candidate>>) {
        let peer_id = &request.peer_id;
        let mut results: Vec<SwarmResult> = connect
            .swarm_actions
            .iter()
            .map(|a| SwarmResult {
                swarm_id: a.swarm_id.clone(),
                ok: false,
                peers: Vec::new(),
            })
            .collect();
        let mut lists: Vec<Vec<Candidate>> = vec![Vec::new(); results.len()];
        for (action, result) in connect.swarm_actions.iter().zip(results.iter_mut()) {
            if action.action != SwarmActionKind::Leave || !session.is_member(&action.swarm_id) {
                continue;
            }
            self.leave_swarm(peer_id, session, &action.swarm_id);
            result.ok = true;
        }
        let peer_num = connect.peer_num.as_ref();
        for ((action, result), list) in connect
            .swarm_actions
            .iter()
            .zip(results.iter_mut())
            .zip(lists.iter_mut())
        {
            if action.action != SwarmActionKind::Join
                || session.is_member(&action.swarm_id)
                || session.swarms.len() >= self.config.max_swarms_per_peer
                || (action.mode == PeerMode::Leech && session.has_leech_membership())
            {
                // Duplicate JOIN, over the limit, or a LEECH in two swarms at once.
                continue;
            }
            let with_list = action.mode == PeerMode::Leech || peer_num.is_some();
            let wanted = if with_list {
                self.wanted(Dialect::Json, peer_num.map(|p| p.count))
            } else {
                0
            };
            let prefer_reachable = match peer_num.and_then(|p| p.ability_nat) {
                Some(AbilityNat::Turn) => true,
                Some(AbilityNat::Stun | AbilityNat::NoNat) => false,
                None => session.contact.needs_reachable_peers(),
            };
            *list = self.join_swarm(
                now,
                peer_id,
                session,
                &action.swarm_id,
                action.mode,
                None,
                None,
                wanted,
                prefer_reachable,
            );
            result.ok = true;
        }
        (results, lists)
    }

    /// Inserts or updates a membership and returns up to `wanted` candidates.
    #[allow(clippy::too_many_arguments)]
    fn join_swarm(
        &self,
        now: Instant,
        peer_id: &PeerId,
        session: &mut Session,
        swarm_id: &SwarmId,
        mode: PeerMode,
        deadline: Option<Instant>,
        start: Option<ppsp_proto::Clip>,
        wanted: usize,
        prefer_reachable: bool,
    ) -> Vec<Candidate> {
        let generation = self.generation();
        let prefer = start.as_ref().and_then(ChunkScope::from_start);
        let mut guard = self.swarm_shard(swarm_id);
        let shard = &mut *guard;
        let swarm = shard
            .swarms
            .entry(swarm_id.clone())
            .or_insert_with(|| Swarm::new(self.live_swarms.contains(swarm_id)));
        if let Some(old) = swarm.get(peer_id)
            && let Some(old_deadline) = old.deadline
        {
            shard.expiry_queue.remove(&(old_deadline, old.generation));
        }
        swarm.upsert(Member {
            peer_id: peer_id.clone(),
            mode,
            session_generation: session.generation,
            generation,
            joined_at: now,
            deadline,
            contact: Arc::clone(&session.contact),
            start: start.map(Box::new),
            chunks: Vec::new(),
            stats: None,
        });
        if let Some(deadline) = deadline {
            shard
                .expiry_queue
                .insert((deadline, generation), (swarm_id.clone(), peer_id.clone()));
        }
        let criteria = Criteria {
            requester: peer_id,
            wanted,
            prefer_reachable,
            scope: None,
            prefer: prefer.as_ref(),
        };
        let peers = candidates(swarm, select(swarm, &mut shard.rng, &criteria));
        drop(guard);
        match session.swarms.iter_mut().find(|j| &j.swarm_id == swarm_id) {
            Some(joined) => joined.mode = mode,
            None => session.swarms.push(Joined {
                swarm_id: swarm_id.clone(),
                mode,
            }),
        }
        peers
    }

    /// Removes one membership of `session` (member in the swarm, entry in the session) and
    /// drops the swarm when it becomes empty.
    fn leave_swarm(&self, peer_id: &PeerId, session: &mut Session, swarm_id: &SwarmId) {
        self.remove_member(peer_id, session.generation, swarm_id);
        session.swarms.retain(|j| &j.swarm_id != swarm_id);
    }

    fn remove_member(&self, peer_id: &PeerId, session_generation: u64, swarm_id: &SwarmId) {
        let mut guard = self.swarm_shard(swarm_id);
        let shard = &mut *guard;
        let Some(swarm) = shard.swarms.get_mut(swarm_id) else {
            return;
        };
        if swarm
            .get(peer_id)
            .is_some_and(|m| m.session_generation == session_generation)
            && let Some(member) = swarm.remove(peer_id)
            && let Some(deadline) = member.deadline
        {
            shard.expiry_queue.remove(&(deadline, member.generation));
        }
        if swarm.is_empty() {
            shard.swarms.remove(swarm_id);
        }
    }

    /// Removes every membership of a session that is being deleted.
    fn remove_memberships(&self, peer_id: &PeerId, session: &Session) {
        for joined in &session.swarms {
            self.remove_member(peer_id, session.generation, &joined.swarm_id);
        }
    }

    /// Pushes a changed contact (addresses, NAT flags) to every membership.
    fn refresh_contact(&self, peer_id: &PeerId, session: &Session) {
        for joined in &session.swarms {
            let mut shard = self.swarm_shard(&joined.swarm_id);
            if let Some(member) = shard
                .swarms
                .get_mut(&joined.swarm_id)
                .and_then(|s| s.get_mut(peer_id))
                && member.session_generation == session.generation
            {
                member.contact = Arc::clone(&session.contact);
            }
        }
    }

    /// Every method but CONNECT: authenticate by token (XML) or registration (JSON), check
    /// the retransmission cache, run the method, remember the answer.
    fn in_session(&self, now: Instant, ctx: &RequestContext, request: &Request) -> Response {
        // Peer lists are rendered after the locks are released.
        self.in_session_locked(now, ctx, request)
            .render(ctx.observed.ip(), ctx.dialect)
    }

    fn in_session_locked(
        &self,
        now: Instant,
        ctx: &RequestContext,
        request: &Request,
    ) -> Arc<Answer> {
        let tid = &request.transaction_id;
        if ctx.dialect == Dialect::Json
            && !matches!(
                request.body,
                RequestBody::Find(_) | RequestBody::StatReport(_)
            )
        {
            return refused(
                &TrackerError::InvalidRequest("method not part of RFC 7846"),
                tid,
            );
        }
        let mut guard = self.session_shard(&request.peer_id);
        let shard = &mut *guard;
        let idle = self.config.session_idle_timeout;
        let Some(session) = shard
            .sessions
            .get_mut(&request.peer_id)
            .filter(|s| s.alive(now, idle))
        else {
            let error = match ctx.dialect {
                Dialect::Xml => TrackerError::BadToken,
                Dialect::Json => TrackerError::NotRegistered,
            };
            return refused(&error, tid);
        };
        match ctx.dialect {
            // A JSON registration has no token, so an XML request for it cannot present a
            // valid one: 401, the peer re-CONNECTs and learns of the conflict then.
            Dialect::Xml if !session.token_matches(request.auth_token.as_ref()) => {
                return refused(&TrackerError::BadToken, tid);
            }
            Dialect::Json if session.dialect != Dialect::Json => {
                return refused(&TrackerError::DialectMismatch, tid);
            }
            _ => {}
        }
        match session.replay_lookup(request, now, self.config.replay_cache_ttl) {
            Replay::Hit(answer) => return answer,
            Replay::Conflict => return refused(&TrackerError::TransactionIdReused, tid),
            Replay::Miss => {}
        }
        let peer_id = &request.peer_id;
        let result = match &request.body {
            RequestBody::Disconnect => {
                if let Some(old) = shard.remove(peer_id) {
                    self.remove_memberships(peer_id, &old);
                }
                return Arc::new(ok(tid).into());
            }
            RequestBody::Join(join) => self.join(now, peer_id, session, join, tid),
            RequestBody::Leave(leave) => self.leave(peer_id, session, leave, tid).map(Into::into),
            RequestBody::Find(find) => self.find(ctx, peer_id, session, find, tid),
            RequestBody::StatReport(report) => {
                Ok(self.stat_report(ctx, peer_id, session, report, tid).into())
            }
            RequestBody::KeepAlive => Ok(ok(tid).into()),
            RequestBody::Connect(_) => Err(TrackerError::InvalidRequest("CONNECT misrouted")),
        };
        let answer: Answer = result.unwrap_or_else(|error| failure(&error, tid).into());
        if answer.response.status == Status::Ok {
            // Only valid requests keep a session alive.
            session.last_activity = now;
        }
        let answer = Arc::new(answer);
        session.remember(
            request,
            &answer,
            now,
            self.config.replay_cache_len,
            self.config.replay_cache_ttl,
        );
        answer
    }

    fn join(
        &self,
        now: Instant,
        peer_id: &PeerId,
        session: &mut Session,
        join: &Join,
        tid: &TransactionId,
    ) -> Result<Answer, TrackerError> {
        if !session.is_member(&join.swarm_id)
            && session.swarms.len() >= self.config.max_swarms_per_peer
        {
            return Err(TrackerError::TooManySwarms);
        }
        if session.merge_hints(join.hints) {
            self.refresh_contact(peer_id, session);
        }
        let deadline = (join.expire_time > 0).then(|| {
            let seconds = Duration::from_secs(join.expire_time).min(self.config.max_expire_time);
            now.checked_add(seconds).unwrap_or(now)
        });
        let wanted = if join.mode == PeerMode::Leech {
            self.wanted(Dialect::Xml, join.peer_num)
        } else {
            0
        };
        let prefer_reachable = session.contact.needs_reachable_peers();
        let peers = self.join_swarm(
            now,
            peer_id,
            session,
            &join.swarm_id,
            join.mode,
            deadline,
            join.clip.clone(),
            wanted,
            prefer_reachable,
        );
        Ok(single_list(tid, &join.swarm_id, peers))
    }

    fn leave(
        &self,
        peer_id: &PeerId,
        session: &mut Session,
        leave: &Leave,
        tid: &TransactionId,
    ) -> Result<Response, TrackerError> {
        if !session.is_member(&leave.swarm_id) {
            // Idempotent for swarms the peer is not in, but the swarm must exist.
            let exists = self
                .swarm_shard(&leave.swarm_id)
                .swarms
                .contains_key(&leave.swarm_id);
            return if exists {
                Ok(ok(tid))
            } else {
                Err(TrackerError::UnknownSwarm)
            };
        }
        self.leave_swarm(peer_id, session, &leave.swarm_id);
        Ok(ok(tid))
    }

    fn find(
        &self,
        ctx: &RequestContext,
        peer_id: &PeerId,
        session: &mut Session,
        find: &Find,
        tid: &TransactionId,
    ) -> Result<Answer, TrackerError> {
        let json = ctx.dialect == Dialect::Json;
        if session.merge_hints(find.hints) {
            self.refresh_contact(peer_id, session);
        }
        let wanted = self.wanted(ctx.dialect, find.peer_num.as_ref().map(|p| p.count));
        let prefer_reachable = match find.peer_num.as_ref().and_then(|p| p.ability_nat) {
            Some(AbilityNat::Turn) => true,
            Some(AbilityNat::Stun | AbilityNat::NoNat) => false,
            None => session.contact.needs_reachable_peers(),
        };
        // RFC 7846 has no chunk scope.
        let scope = if json {
            None
        } else {
            find.clip.as_ref().map(ChunkScope::from_clip)
        };

        let mut guard = self.swarm_shard(&find.swarm_id);
        let shard = &mut *guard;
        let Some(swarm) = shard.swarms.get(&find.swarm_id) else {
            // RFC 7846 has no "not found": an unknown swarm is a forbidden action there.
            return Err(if json {
                TrackerError::NotMember
            } else {
                TrackerError::UnknownSwarm
            });
        };
        if !session.is_member(&find.swarm_id) {
            return Err(TrackerError::NotMember);
        }
        let criteria = Criteria {
            requester: peer_id,
            wanted,
            prefer_reachable,
            scope: scope.as_ref(),
            prefer: None,
        };
        let chosen = select(swarm, &mut shard.rng, &criteria);
        if scope.is_some() && wanted > 0 && chosen.is_empty() {
            return Err(TrackerError::NoChunkHolder);
        }
        Ok(single_list(tid, &find.swarm_id, candidates(swarm, chosen)))
    }

    fn stat_report(
        &self,
        ctx: &RequestContext,
        peer_id: &PeerId,
        session: &mut Session,
        report: &StatReport,
        tid: &TransactionId,
    ) -> Response {
        let mut response = ok(tid);
        let mut hints = ppsp_proto::NatHints::default();
        for stat in &report.stats {
            match stat {
                Stat::ChunkMap(chunk_report) => {
                    // Reports for swarms the peer is not in are ignored: a JOIN and a report
                    // may cross on the wire.
                    if !session.is_member(&chunk_report.swarm_id) {
                        continue;
                    }
                    let mut shard = self.swarm_shard(&chunk_report.swarm_id);
                    let Some(member) = shard
                        .swarms
                        .get_mut(&chunk_report.swarm_id)
                        .and_then(|s| s.get_mut(peer_id))
                    else {
                        continue;
                    };
                    for clip in &chunk_report.clips {
                        let Some(segments) = &clip.segments else {
                            continue;
                        };
                        for map in segments.segments.iter().filter_map(|s| s.map.as_ref()) {
                            member.apply_chunk_map(&clip.name, segments.media, map);
                        }
                    }
                }
                Stat::StreamStats(stats) => {
                    let Some(swarm_id) = &stats.swarm_id else {
                        continue;
                    };
                    let stored = session.is_member(swarm_id) && {
                        let mut shard = self.swarm_shard(swarm_id);
                        match shard
                            .swarms
                            .get_mut(swarm_id)
                            .and_then(|s| s.get_mut(peer_id))
                        {
                            Some(member) => {
                                member.stats = Some(Box::new(stats.clone()));
                                true
                            }
                            None => false,
                        }
                    };
                    if ctx.dialect == Dialect::Json {
                        response.swarm_results.push(SwarmResult {
                            swarm_id: swarm_id.clone(),
                            ok: stored,
                            peers: Vec::new(),
                        });
                    }
                }
                Stat::Nat(value) => hints.nat = Some(*value),
                Stat::Stun(value) => hints.stun = Some(*value),
            }
        }
        if session.merge_hints(hints) {
            self.refresh_contact(peer_id, session);
        }
        response
    }

    /// Removes idle sessions and memberships whose ExpireTime passed. The cost is
    /// proportional to what is due, not to the number of sessions: both timers sit in
    /// ordered deadline queues, and an entry that comes due for a session that was active
    /// since is queued again at its real deadline.
    pub fn sweep(&self, now: Instant) -> SweepReport {
        let mut report = SweepReport::default();
        let idle = self.config.session_idle_timeout;
        for shard in &*self.session_shards {
            let mut guard = lock(shard);
            let shard = &mut *guard;
            while let Some(entry) = shard.idle_queue.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let ((_, generation), peer_id) = entry.remove_entry();
                let Some(session) = shard.sessions.get_mut(&peer_id) else {
                    continue;
                };
                if session.generation != generation {
                    continue;
                }
                if session.alive(now, idle) {
                    let next = self.idle_deadline(session.last_activity);
                    session.queued_deadline = next;
                    shard.idle_queue.insert((next, generation), peer_id);
                    continue;
                }
                if let Some(session) = shard.sessions.remove(&peer_id) {
                    self.remove_memberships(&peer_id, &session);
                    report.sessions_expired += 1;
                }
            }
        }
        self.metrics
            .sessions_expired
            .fetch_add(report.sessions_expired as u64, Ordering::Relaxed);

        // Memberships: collect what is due under each swarm lock, then remove it in the
        // session → swarm lock order.
        let mut due: Vec<(u64, SwarmId, PeerId)> = Vec::new();
        for shard in &*self.swarm_shards {
            let mut shard = lock(shard);
            while let Some(entry) = shard.expiry_queue.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let ((_, generation), (swarm_id, peer_id)) = entry.remove_entry();
                due.push((generation, swarm_id, peer_id));
            }
        }
        for (generation, swarm_id, peer_id) in due {
            let mut sessions = self.session_shard(&peer_id);
            let mut swarms = self.swarm_shard(&swarm_id);
            let Some(swarm) = swarms.swarms.get_mut(&swarm_id) else {
                continue;
            };
            let Some(member) = swarm.get(&peer_id) else {
                continue;
            };
            if member.generation != generation || member.deadline.is_none_or(|d| d > now) {
                continue;
            }
            let session_generation = member.session_generation;
            swarm.remove(&peer_id);
            if swarm.is_empty() {
                swarms.swarms.remove(&swarm_id);
            }
            drop(swarms);
            if let Some(session) = sessions.sessions.get_mut(&peer_id)
                && session.generation == session_generation
            {
                session.swarms.retain(|j| j.swarm_id != swarm_id);
            }
            report.memberships_expired += 1;
        }
        report
    }

    /// A snapshot for statistics pages. Each swarm is consistent in itself.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            sessions: self
                .session_shards
                .iter()
                .map(|s| lock(s).sessions.len())
                .sum(),
            sessions_expired_total: self.metrics.sessions_expired.load(Ordering::Relaxed),
            ..Snapshot::default()
        };
        for (slot, counter) in snapshot
            .requests_by_method
            .iter_mut()
            .zip(&self.metrics.requests)
        {
            *slot = counter.load(Ordering::Relaxed);
        }
        for (slot, counter) in snapshot
            .responses_by_status
            .iter_mut()
            .zip(&self.metrics.responses)
        {
            *slot = counter.load(Ordering::Relaxed);
        }
        for shard in &*self.swarm_shards {
            let shard = lock(shard);
            for (swarm_id, swarm) in &shard.swarms {
                snapshot.swarms.push(swarm_snapshot(swarm_id, swarm));
            }
        }
        snapshot.swarms.sort_by(|a, b| a.swarm_id.cmp(&b.swarm_id));
        snapshot
    }

    /// The state of `peer_id`'s session at `now`, or `None` when it has none.
    pub fn session_state(&self, peer_id: &PeerId, now: Instant) -> Option<SessionState> {
        let shard = self.session_shard(peer_id);
        let session = shard
            .sessions
            .get(peer_id)
            .filter(|s| s.alive(now, self.config.session_idle_timeout))?;
        Some(if session.swarms.is_empty() {
            SessionState::Connected
        } else {
            SessionState::Joined
        })
    }
}

/// The chosen members as candidates: reference counts only, no copies.
fn candidates(swarm: &Swarm, chosen: Vec<usize>) -> Vec<Candidate> {
    chosen
        .into_iter()
        .filter_map(|i| swarm.members.get(i))
        .map(|m| Candidate {
            mode: m.mode,
            contact: Arc::clone(&m.contact),
        })
        .collect()
}

/// A 200 answer carrying one swarm and its peer list (JOIN, FIND).
fn single_list(tid: &TransactionId, swarm_id: &SwarmId, peers: Vec<Candidate>) -> Answer {
    let mut response = ok(tid);
    response.swarm_results.push(SwarmResult {
        swarm_id: swarm_id.clone(),
        ok: true,
        peers: Vec::new(),
    });
    Answer {
        response,
        lists: vec![peers],
    }
}

/// A refusal, as an answer.
fn refused(error: &TrackerError, transaction_id: &TransactionId) -> Arc<Answer> {
    Arc::new(failure(error, transaction_id).into())
}

fn swarm_snapshot(swarm_id: &SwarmId, swarm: &Swarm) -> SwarmSnapshot {
    let mut peers: Vec<PeerSnapshot> = swarm
        .members
        .iter()
        .map(|m| {
            let stats = m.stats.as_ref();
            PeerSnapshot {
                peer_id: m.peer_id.clone(),
                mode: m.mode,
                joined_at: m.joined_at,
                uploaded_bytes: stats.and_then(|s| s.uploaded_bytes).unwrap_or(0),
                downloaded_bytes: stats.and_then(|s| s.downloaded_bytes).unwrap_or(0),
                available_bandwidth: stats.and_then(|s| s.available_bandwidth).unwrap_or(0),
                chunks_held: m.chunks_held(),
                behind_nat: m.contact.behind_nat,
                stun: m.contact.stun,
            }
        })
        .collect();
    peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));

    // Group the members' maps by clip and media type, then count the union of each group.
    let mut groups: Vec<(&str, ppsp_proto::MediaType, Vec<&ppsp_proto::ChunkMap>)> = Vec::new();
    for member in &swarm.members {
        for chunks in &member.chunks {
            match groups
                .iter_mut()
                .find(|(clip, media, _)| *clip == chunks.clip && *media == chunks.media)
            {
                Some((_, _, maps)) => maps.push(&chunks.map),
                None => groups.push((&chunks.clip, chunks.media, vec![&chunks.map])),
            }
        }
    }
    let mut chunk_availability: Vec<ClipAvailability> = groups
        .into_iter()
        .filter_map(|(clip, media, maps)| {
            let first = maps.iter().map(|m| m.first()).min()?;
            let last = maps.iter().filter_map(|m| m.last()).max()?;
            Some(ClipAvailability {
                clip: clip.to_owned(),
                media,
                first,
                last,
                chunks_available: union_count(first, last, &maps),
            })
        })
        .collect();
    chunk_availability.sort_by(|a, b| a.clip.cmp(&b.clip).then(a.media.cmp(&b.media)));
    SwarmSnapshot {
        swarm_id: swarm_id.clone(),
        live: swarm.is_live(),
        seeds: swarm.seeds,
        live_seeds: swarm.live_seeds.len(),
        leeches: swarm.leeches,
        peers,
        chunk_availability,
    }
}

/// Distinct chunks held by at least one of `maps`, all inside `first..=last`.
fn union_count(first: u64, last: u64, maps: &[&ppsp_proto::ChunkMap]) -> u64 {
    let largest = maps.iter().map(|m| m.count()).max().unwrap_or(0);
    let span = (last - first).saturating_add(1);
    if span > MAX_AVAILABILITY_SPAN_BITS {
        return largest;
    }
    let Ok(byte_len) = usize::try_from(span.div_ceil(8)) else {
        return largest;
    };
    let mut bytes = vec![0u8; byte_len];
    for map in maps {
        or_bits(&mut bytes, map.first() - first, map);
    }
    bytes.iter().map(|b| u64::from(b.count_ones())).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tracker>();
    }

    fn queued(tracker: &Tracker) -> (usize, usize) {
        let idle = tracker
            .session_shards
            .iter()
            .map(|s| lock(s).idle_queue.len())
            .sum();
        let expiry = tracker
            .swarm_shards
            .iter()
            .map(|s| lock(s).expiry_queue.len())
            .sum();
        (idle, expiry)
    }

    #[test]
    fn timer_queues_hold_one_entry_per_live_timer() {
        use ppsp_proto::{Connect, Join, Leave, NatHints, SaslAuth};

        let tracker = Tracker::with_seed(Config::default(), Arc::new(crate::OpenAuthenticator), 5);
        let ctx = RequestContext {
            observed: "127.0.0.1:9".parse().expect("addr"),
            dialect: Dialect::Xml,
            secure_channel: true,
        };
        let now = Instant::now();
        let peer = PeerId::new("churner").expect("id");
        let mut tid = 0u64;
        let mut send = |token: Option<ppsp_proto::AuthToken>, body: RequestBody| {
            tid += 1;
            let request = Request {
                peer_id: peer.clone(),
                auth_token: token,
                transaction_id: TransactionId::numeric(tid),
                body,
            };
            tracker.handle(now, &ctx, &request)
        };
        let connect = || {
            RequestBody::Connect(Connect {
                auth: Some(SaslAuth {
                    mechanism: "ANONYMOUS".into(),
                    credentials: None,
                }),
                addresses: Vec::new(),
                peer_num: None,
                swarm_actions: Vec::new(),
            })
        };
        let join = |expire_time| {
            RequestBody::Join(Join {
                swarm_id: SwarmId::new("s").expect("id"),
                mode: PeerMode::Leech,
                hints: NatHints::default(),
                peer_num: None,
                clip: None,
                expire_time,
            })
        };
        let mut token = None;
        for round in 0..50u64 {
            // Replacing CONNECTs, re-JOINs with new ExpireTimes, LEAVE and JOIN again.
            token = send(None, connect()).auth_token;
            send(token.clone(), join(100 + round));
            send(token.clone(), join(200 + round));
            send(
                token.clone(),
                RequestBody::Leave(Leave {
                    swarm_id: SwarmId::new("s").expect("id"),
                }),
            );
            send(token.clone(), join(300 + round));
        }
        assert_eq!(queued(&tracker), (1, 1));
        send(token, RequestBody::Disconnect);
        assert_eq!(queued(&tracker), (0, 0));

        // RFC 7846: joining and leaving everything, repeatedly.
        let json = RequestContext {
            dialect: Dialect::Json,
            ..ctx.clone()
        };
        for round in 0..20u64 {
            for action in [SwarmActionKind::Join, SwarmActionKind::Leave] {
                let request = Request {
                    peer_id: PeerId::new("json-peer").expect("id"),
                    auth_token: None,
                    transaction_id: TransactionId::numeric(
                        1000 + round * 2 + u64::from(action == SwarmActionKind::Leave),
                    ),
                    body: RequestBody::Connect(Connect {
                        auth: None,
                        addresses: Vec::new(),
                        peer_num: None,
                        swarm_actions: vec![ppsp_proto::SwarmAction {
                            swarm_id: SwarmId::new("j").expect("id"),
                            action,
                            mode: PeerMode::Seed,
                        }],
                    }),
                };
                assert_eq!(tracker.handle(now, &json, &request).status, Status::Ok);
            }
        }
        assert_eq!(queued(&tracker), (0, 0));
        assert_eq!(tracker.snapshot().sessions, 0);
    }

    /// Cross-checks sessions, swarms and both timer queues.
    fn check_invariants(tracker: &Tracker) {
        let sessions: Vec<_> = tracker.session_shards.iter().map(|s| lock(s)).collect();
        let swarms: Vec<_> = tracker.swarm_shards.iter().map(|s| lock(s)).collect();
        let session_of = |peer: &PeerId| sessions.iter().find_map(|shard| shard.sessions.get(peer));
        let member_of = |swarm_id: &SwarmId, peer: &PeerId| {
            swarms
                .iter()
                .find_map(|shard| shard.swarms.get(swarm_id))
                .and_then(|swarm| swarm.get(peer))
        };
        for shard in &sessions {
            assert_eq!(shard.idle_queue.len(), shard.sessions.len());
            for (peer, session) in &shard.sessions {
                assert_eq!(
                    shard
                        .idle_queue
                        .get(&(session.queued_deadline, session.generation)),
                    Some(peer)
                );
                for joined in &session.swarms {
                    let member = member_of(&joined.swarm_id, peer).expect("member exists");
                    assert_eq!(member.session_generation, session.generation);
                    assert_eq!(member.mode, joined.mode);
                }
            }
        }
        for shard in &swarms {
            let mut with_deadline = 0;
            for (swarm_id, swarm) in &shard.swarms {
                assert!(!swarm.is_empty(), "empty swarms are removed");
                let (mut seeds, mut leeches, mut live) = (0, 0, 0);
                for (position, member) in swarm.members.iter().enumerate() {
                    assert_eq!(swarm.position(&member.peer_id), Some(position));
                    let session = session_of(&member.peer_id).expect("session exists");
                    assert_eq!(session.generation, member.session_generation);
                    assert!(session.is_member(swarm_id));
                    match member.mode {
                        PeerMode::Seed => seeds += 1,
                        PeerMode::Leech => leeches += 1,
                        PeerMode::LiveSeed => live += 1,
                    }
                    if let Some(deadline) = member.deadline {
                        with_deadline += 1;
                        assert_eq!(
                            shard.expiry_queue.get(&(deadline, member.generation)),
                            Some(&(swarm_id.clone(), member.peer_id.clone()))
                        );
                    }
                }
                assert_eq!(
                    (swarm.seeds, swarm.leeches, swarm.live_seeds.len()),
                    (seeds, leeches, live)
                );
            }
            assert_eq!(shard.expiry_queue.len(), with_deadline);
        }
    }

    /// Random operations from a few peers of both dialects, with time moving and sweeps
    /// in between; the state must stay consistent after every step.
    #[test]
    fn random_operations_keep_state_consistent() {
        for seed in 0..4 {
            random_walk(seed);
        }
    }

    fn random_walk(seed: u64) {
        use ppsp_proto::{Connect, Find, Join, Leave, NatHints, PeerNum, SaslAuth, SwarmAction};
        use rand::Rng;

        let config = Config {
            session_idle_timeout: Duration::from_secs(40),
            max_swarms_per_peer: 3,
            shards: 4,
            ..Config::default()
        };
        let tracker = Tracker::with_seed(config, Arc::new(crate::OpenAuthenticator), seed);
        let mut rng = StdRng::seed_from_u64(seed + 1000);
        let start = Instant::now();
        let mut now = start;
        let swarm_ids: Vec<SwarmId> = (0..4)
            .map(|i| SwarmId::new(format!("s{i}")).expect("id"))
            .collect();
        let mut tokens: HashMap<usize, Option<ppsp_proto::AuthToken>> = HashMap::new();
        let modes = [PeerMode::Seed, PeerMode::LiveSeed, PeerMode::Leech];
        let mut statuses: HashMap<u16, u32> = HashMap::new();
        let mut most_swarms = 0;
        for step in 0..3000u64 {
            let peer = rng.random_range(0..8usize);
            let json = peer >= 5;
            let ctx = RequestContext {
                observed: format!("127.0.0.{}:9", peer + 1).parse().expect("addr"),
                dialect: if json { Dialect::Json } else { Dialect::Xml },
                secure_channel: true,
            };
            let swarm_id = swarm_ids[rng.random_range(0..swarm_ids.len())].clone();
            let body = if json {
                match rng.random_range(0..4) {
                    0 | 1 => RequestBody::Connect(Connect {
                        auth: None,
                        addresses: Vec::new(),
                        peer_num: Some(PeerNum::count(3)),
                        swarm_actions: (0..rng.random_range(1..3))
                            .map(|_| SwarmAction {
                                swarm_id: swarm_ids[rng.random_range(0..swarm_ids.len())].clone(),
                                action: if rng.random_bool(0.5) {
                                    SwarmActionKind::Join
                                } else {
                                    SwarmActionKind::Leave
                                },
                                mode: if rng.random_bool(0.5) {
                                    PeerMode::Seed
                                } else {
                                    PeerMode::Leech
                                },
                            })
                            .collect(),
                    }),
                    2 => RequestBody::Find(Find {
                        swarm_id,
                        peer_num: None,
                        hints: NatHints::default(),
                        clip: None,
                    }),
                    _ => RequestBody::StatReport(StatReport::default()),
                }
            } else {
                match rng.random_range(0..9) {
                    0 => RequestBody::Connect(Connect {
                        auth: Some(SaslAuth {
                            mechanism: "ANONYMOUS".into(),
                            credentials: None,
                        }),
                        addresses: Vec::new(),
                        peer_num: None,
                        swarm_actions: Vec::new(),
                    }),
                    1 => RequestBody::Disconnect,
                    2..=4 => RequestBody::Join(Join {
                        swarm_id,
                        mode: modes[rng.random_range(0..modes.len())],
                        hints: NatHints::default(),
                        peer_num: Some(4),
                        clip: None,
                        expire_time: rng.random_range(0..30),
                    }),
                    5 => RequestBody::Leave(Leave { swarm_id }),
                    6 => RequestBody::Find(Find {
                        swarm_id,
                        peer_num: None,
                        hints: NatHints::default(),
                        clip: None,
                    }),
                    7 => RequestBody::StatReport(StatReport {
                        stats: vec![Stat::Nat(rng.random_bool(0.5))],
                    }),
                    _ => RequestBody::KeepAlive,
                }
            };
            let request = Request {
                peer_id: PeerId::new(format!("p{peer}")).expect("id"),
                auth_token: tokens.get(&peer).cloned().flatten(),
                // Sometimes reuse an old ID, to exercise the retransmission cache.
                transaction_id: TransactionId::numeric(if rng.random_bool(0.05) {
                    step.saturating_sub(3)
                } else {
                    step
                }),
                body,
            };
            let response = tracker.handle(now, &ctx, &request);
            *statuses.entry(response.status.http_code()).or_insert(0u32) += 1;
            most_swarms = most_swarms.max(tracker.snapshot().swarms.len());
            if let Some(token) = response.auth_token {
                tokens.insert(peer, Some(token));
            }
            for result in &response.swarm_results {
                assert!(result.peers.iter().all(|p| p.peer_id != request.peer_id));
            }
            if rng.random_bool(0.2) {
                now += Duration::from_secs(rng.random_range(0..10));
                tracker.sweep(now);
            }
            check_invariants(&tracker);
        }
        // The walk reached the interesting states, not only refusals.
        for code in [200, 400, 401, 403, 404] {
            assert!(statuses.contains_key(&code), "{statuses:?}");
        }
        assert_eq!(most_swarms, swarm_ids.len());
        tracker.sweep(now + Duration::from_secs(3600));
        check_invariants(&tracker);
        assert_eq!(tracker.snapshot().sessions, 0);
    }

    #[test]
    fn shard_count_is_a_power_of_two() {
        for (asked, got) in [(0, 1), (1, 1), (3, 4), (16, 16), (17, 32)] {
            let tracker = Tracker::with_seed(
                Config {
                    shards: asked,
                    ..Config::default()
                },
                Arc::new(crate::OpenAuthenticator),
                1,
            );
            assert_eq!(tracker.session_shards.len(), got);
            assert_eq!(tracker.swarm_shards.len(), got);
        }
    }
}
