//! The tracker: request dispatch and the protocol's rules over a [`Store`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use ppsp_proto::{
    AbilityNat, AddressType, Connect, Find, Format, Join, Method, PeerAddress, PeerId, PeerMode,
    Request, RequestBody, Response, StatReport, Status, SwarmAction, SwarmId, SwarmResult,
    TransactionId,
};

use crate::replay::{Replay, ReplayCache, ReplayKey};
use crate::rules::{ChunkScope, Criteria, Reachability};
use crate::snapshot::{SwarmDetail, SwarmPage, SwarmQuery, Totals};
use crate::store::{JoinSpec, Proof, Registration, SessionCheck, SessionKey, Store};
use crate::token::TokenKey;
use crate::{
    Authenticator, Candidate, Config, JSON_PEER_COUNT_MAX, MemoryStore, RequestContext, Timestamp,
    TrackerError,
};

/// Where a session stands (draft-gu-ppsp-tracker-protocol-06, section 9.3).
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

#[derive(Default)]
struct Counts {
    requests: [AtomicU64; 7],
    responses: [AtomicU64; 8],
}

fn method_index(method: Method) -> usize {
    Method::ALL.iter().position(|m| *m == method).unwrap_or(0)
}

fn status_index(status: Status) -> usize {
    Status::ALL.iter().position(|s| *s == status).unwrap_or(0)
}

fn ok(transaction_id: &TransactionId) -> Response {
    Response::status(Status::Ok, Some(transaction_id.clone()))
}

fn failure(error: &TrackerError, transaction_id: &TransactionId) -> Response {
    Response::status(error.status(), Some(transaction_id.clone()))
}

/// Refusals that say the request is not tied to a session: nothing to cache them under.
fn is_session_refusal(error: &TrackerError) -> bool {
    matches!(
        error,
        TrackerError::BadToken
            | TrackerError::NotRegistered
            | TrackerError::DialectMismatch
            | TrackerError::SessionOwned
    )
}

/// The tracker. `Send + Sync`; every method takes `&self`.
pub struct Tracker<S = MemoryStore> {
    config: Config,
    store: S,
    tokens: TokenKey,
    authenticator: Arc<dyn Authenticator>,
    replay: ReplayCache,
    counts: Counts,
}

impl<S> std::fmt::Debug for Tracker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Tracker<MemoryStore> {
    /// A tracker on the memory store whose randomness (the AuthToken key, peer sampling)
    /// comes from a CSPRNG seeded by the operating system.
    pub fn new(config: Config, authenticator: Arc<dyn Authenticator>) -> Self {
        Self::on_memory(config, authenticator, &mut StdRng::from_os_rng())
    }

    /// A tracker on the memory store with deterministic randomness, for tests and
    /// benchmarks. Never use it in production: AuthTokens become predictable.
    pub fn with_seed(config: Config, authenticator: Arc<dyn Authenticator>, seed: u64) -> Self {
        Self::on_memory(config, authenticator, &mut StdRng::seed_from_u64(seed))
    }

    fn on_memory(config: Config, authenticator: Arc<dyn Authenticator>, rng: &mut StdRng) -> Self {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let store = MemoryStore::new(&config, Timestamp::from_millis(0), rng);
        Self::with_store(config, store, TokenKey::new(&secret), authenticator)
    }
}

impl<S: Store> Tracker<S> {
    /// A tracker on `store`, minting AuthTokens with `tokens` (every node sharing a store
    /// must use the same key).
    pub fn with_store(
        config: Config,
        store: S,
        tokens: TokenKey,
        authenticator: Arc<dyn Authenticator>,
    ) -> Self {
        Self {
            replay: ReplayCache::new(config.replay_cache_bytes, config.replay_cache_ttl),
            config,
            store,
            tokens,
            authenticator,
            counts: Counts::default(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store behind the tracker.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn wanted(&self, format: Format, requested: Option<u32>) -> usize {
        let mut cap = self.config.peer_num_max;
        if format == Format::Json {
            cap = cap.min(JSON_PEER_COUNT_MAX);
        }
        let count = requested.unwrap_or(self.config.peer_num_default).min(cap);
        usize::try_from(count).unwrap_or(usize::MAX)
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

    /// Handles one decoded request and returns the response to encode in the request's
    /// format. Never panics. CONNECT calls the authenticator, which may be slow: run
    /// CONNECTs where blocking is allowed.
    pub async fn handle(
        &self,
        now: Timestamp,
        ctx: &RequestContext,
        request: &Request,
    ) -> Response {
        self.counts.requests[method_index(request.body.method())].fetch_add(1, Ordering::Relaxed);
        let response = match (&request.body, ctx.format) {
            (RequestBody::Connect(connect), Format::Xml) => {
                self.connect_xml(now, ctx, request, connect).await
            }
            (RequestBody::Connect(connect), Format::Json) => {
                self.connect_json(now, ctx, request, connect).await
            }
            _ => self.in_session(now, ctx, request).await,
        };
        self.counts.responses[status_index(response.status)].fetch_add(1, Ordering::Relaxed);
        response
    }

    fn replayed(&self, key: ReplayKey, request: &Request, now: Timestamp) -> Option<Response> {
        match self.replay.lookup(key, request, now) {
            Replay::Hit(response) => Some(response),
            Replay::Conflict => Some(failure(
                &TrackerError::TransactionIdReused,
                &request.transaction_id,
            )),
            Replay::Miss => None,
        }
    }

    async fn connect_xml(
        &self,
        now: Timestamp,
        ctx: &RequestContext,
        request: &Request,
        connect: &Connect,
    ) -> Response {
        let tid = &request.transaction_id;
        let Some(sasl) = connect.auth.as_ref() else {
            return failure(&TrackerError::InvalidRequest("CONNECT without Auth"), tid);
        };
        let replay_key = self.replay.key(request, ctx.observed.ip());
        if let Some(replayed) = self.replayed(replay_key, request, now) {
            return replayed;
        }
        // No lock is held here: checking a password hash is deliberately slow.
        if let Err(error) =
            self.authenticator
                .authenticate(&request.peer_id, Some(sasl), ctx.secure_channel)
        {
            return failure(&TrackerError::Authentication(error), tid);
        }
        // A retransmission may have overtaken its original during authentication.
        if let Some(replayed) = self.replayed(replay_key, request, now) {
            return replayed;
        }
        // What this CONNECT proves about owning a live session of its PeerID: verified
        // credentials, the session's current token, or else only its source address.
        let proof = if !sasl.mechanism.eq_ignore_ascii_case("ANONYMOUS") {
            Proof::Credentials
        } else {
            match request
                .auth_token
                .as_ref()
                .and_then(|t| self.tokens.verify(&request.peer_id, t))
            {
                Some(generation) => Proof::Token(generation),
                None => Proof::SourceAddress,
            }
        };
        let registration = Registration {
            peer_id: &request.peer_id,
            format: Format::Xml,
            observed: ctx.observed,
            declared: &connect.addresses,
            ability_nat: None,
            proof,
        };
        let generation = match self.store.register(now, &registration).await {
            Ok(generation) => generation,
            Err(error) => return failure(&error, tid),
        };
        let Some(token) = self.tokens.mint(&request.peer_id, generation) else {
            return failure(&TrackerError::Internal, tid);
        };
        let mut response = ok(tid);
        response.auth_token = Some(token);
        response.reflexive_addresses = self.reflexive(ctx);
        self.replay
            .remember(replay_key, request, ctx.format, now, &response);
        response
    }

    fn reachability(ability_nat: Option<AbilityNat>) -> Reachability {
        match ability_nat {
            Some(AbilityNat::Turn) => Reachability::Prefer,
            Some(AbilityNat::Stun | AbilityNat::NoNat) => Reachability::Any,
            None => Reachability::AsRequesterNeeds,
        }
    }

    async fn connect_json(
        &self,
        now: Timestamp,
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
        let replay_key = self.replay.key(request, ctx.observed.ip());
        if let Some(replayed) = self.replayed(replay_key, request, now) {
            return replayed;
        }
        if let Err(error) =
            self.authenticator
                .authenticate(&request.peer_id, None, ctx.secure_channel)
        {
            return failure(&TrackerError::Authentication(error), tid);
        }
        let ability_nat = connect.peer_num.as_ref().and_then(|p| p.ability_nat);
        let peer_num = connect.peer_num.as_ref();
        let criteria = |action: &SwarmAction| {
            let with_list = action.mode == PeerMode::Leech || peer_num.is_some();
            Criteria {
                wanted: if with_list {
                    self.wanted(Format::Json, peer_num.map(|p| p.count))
                } else {
                    0
                },
                reachability: Self::reachability(ability_nat),
                scope: None,
                prefer: None,
            }
        };
        let registration = Registration {
            peer_id: &request.peer_id,
            format: Format::Json,
            observed: ctx.observed,
            declared: &connect.addresses,
            ability_nat,
            proof: if ctx.authenticated {
                Proof::Credentials
            } else {
                Proof::SourceAddress
            },
        };
        let outcome = match self
            .store
            .swarm_actions(now, &registration, &connect.swarm_actions, &criteria)
            .await
        {
            Ok(outcome) => outcome,
            Err(error) => return failure(&error, tid),
        };
        let mut response = ok(tid);
        response.swarm_results = connect
            .swarm_actions
            .iter()
            .zip(outcome.results)
            .map(|(action, (valid, peers))| SwarmResult {
                swarm_id: action.swarm_id.clone(),
                ok: valid,
                peers: peers
                    .into_iter()
                    .map(|c| c.into_peer_info(ctx.observed.ip(), Format::Json))
                    .collect(),
            })
            .collect();
        if !matches!(ability_nat, Some(AbilityNat::Stun | AbilityNat::Turn)) {
            response.reflexive_addresses = self.reflexive(ctx);
        }
        // A CONNECT that ended the registration is answered from the new state when sent
        // again, as the session it belonged to is gone.
        if !outcome.ended {
            self.replay
                .remember(replay_key, request, ctx.format, now, &response);
        }
        response
    }

    /// Every method but CONNECT: tie the request to its session (AuthToken for XML,
    /// registration for JSON), check the retransmission cache, run the method, remember
    /// the answer.
    async fn in_session(
        &self,
        now: Timestamp,
        ctx: &RequestContext,
        request: &Request,
    ) -> Response {
        let tid = &request.transaction_id;
        let check = match ctx.format {
            Format::Json
                if !matches!(
                    request.body,
                    RequestBody::Find(_) | RequestBody::StatReport(_)
                ) =>
            {
                return failure(
                    &TrackerError::InvalidRequest("method not part of RFC 7846"),
                    tid,
                );
            }
            Format::Json => SessionCheck::Json {
                source: (!ctx.authenticated).then(|| ctx.observed.ip()),
            },
            Format::Xml => {
                // A forged or altered token fails here, before any state is looked at.
                match request
                    .auth_token
                    .as_ref()
                    .and_then(|t| self.tokens.verify(&request.peer_id, t))
                {
                    Some(generation) => SessionCheck::Generation(generation),
                    None => return failure(&TrackerError::BadToken, tid),
                }
            }
        };
        let replay_key = self.replay.key(request, ctx.observed.ip());
        if let Some(replayed) = self.replayed(replay_key, request, now) {
            return replayed;
        }
        let key = SessionKey {
            peer_id: &request.peer_id,
            check,
        };
        let result = match &request.body {
            RequestBody::Disconnect => {
                // Not remembered: the cache answers for a session, and this one is gone.
                return match self.store.disconnect(now, key).await {
                    Ok(()) => ok(tid),
                    Err(error) => failure(&error, tid),
                };
            }
            RequestBody::Join(join) => self.join(now, ctx, key, join, tid).await,
            RequestBody::Leave(leave) => self
                .store
                .leave(now, key, &leave.swarm_id)
                .await
                .map(|()| ok(tid)),
            RequestBody::Find(find) => self.find(now, ctx, key, find, tid).await,
            RequestBody::StatReport(report) => self.stat_report(now, ctx, key, report, tid).await,
            RequestBody::KeepAlive => self.store.touch(now, key).await.map(|()| ok(tid)),
            RequestBody::Connect(_) => Err(TrackerError::InvalidRequest("CONNECT misrouted")),
        };
        match result {
            // A FIND changes nothing the peer could see twice, so a retransmission is simply
            // answered again. Remembering its answers would cost more than answering (an
            // encoding of a whole peer list) and, as FINDs are the bulk of the traffic, would
            // push the answers of state-changing requests out of the cache within
            // milliseconds, long before their retransmissions arrive.
            Ok(response) if matches!(request.body, RequestBody::Find(_)) => response,
            Ok(response) => {
                self.replay
                    .remember(replay_key, request, ctx.format, now, &response);
                response
            }
            Err(error) if is_session_refusal(&error) => failure(&error, tid),
            Err(error) => {
                let response = failure(&error, tid);
                self.replay
                    .remember(replay_key, request, ctx.format, now, &response);
                response
            }
        }
    }

    async fn join(
        &self,
        now: Timestamp,
        ctx: &RequestContext,
        key: SessionKey<'_>,
        join: &Join,
        tid: &TransactionId,
    ) -> Result<Response, TrackerError> {
        let deadline = (join.expire_time > 0).then(|| {
            let seconds = Duration::from_secs(join.expire_time).min(self.config.max_expire_time);
            now.plus(seconds)
        });
        let wanted = if join.mode == PeerMode::Leech {
            self.wanted(Format::Xml, join.peer_num)
        } else {
            0
        };
        let criteria = Criteria {
            wanted,
            reachability: Reachability::AsRequesterNeeds,
            scope: None,
            prefer: join.clip.as_ref().and_then(ChunkScope::from_start),
        };
        let spec = JoinSpec {
            swarm_id: &join.swarm_id,
            mode: join.mode,
            deadline,
            start: join.clip.as_ref(),
            hints: join.hints,
        };
        let peers = self.store.join(now, key, &spec, &criteria).await?;
        Ok(single_list(tid, &join.swarm_id, peers, ctx))
    }

    async fn find(
        &self,
        now: Timestamp,
        ctx: &RequestContext,
        key: SessionKey<'_>,
        find: &Find,
        tid: &TransactionId,
    ) -> Result<Response, TrackerError> {
        let json = ctx.format == Format::Json;
        let criteria = Criteria {
            wanted: self.wanted(ctx.format, find.peer_num.as_ref().map(|p| p.count)),
            reachability: Self::reachability(find.peer_num.as_ref().and_then(|p| p.ability_nat)),
            // RFC 7846 has no chunk scope.
            scope: if json {
                None
            } else {
                find.clip.as_ref().map(ChunkScope::from_clip)
            },
            prefer: None,
        };
        let peers = self
            .store
            .find(now, key, &find.swarm_id, find.hints, &criteria)
            .await
            .map_err(|error| match error {
                // RFC 7846 has no "not found": an unknown swarm is a forbidden action there.
                TrackerError::UnknownSwarm if json => TrackerError::NotMember,
                other => other,
            })?;
        Ok(single_list(tid, &find.swarm_id, peers, ctx))
    }

    async fn stat_report(
        &self,
        now: Timestamp,
        ctx: &RequestContext,
        key: SessionKey<'_>,
        report: &StatReport,
        tid: &TransactionId,
    ) -> Result<Response, TrackerError> {
        let stored = self.store.report(now, key, report).await?;
        let mut response = ok(tid);
        if ctx.format == Format::Json {
            response.swarm_results = stored
                .into_iter()
                .map(|(swarm_id, ok)| SwarmResult {
                    swarm_id,
                    ok,
                    peers: Vec::new(),
                })
                .collect();
        }
        Ok(response)
    }

    /// Removes idle sessions and memberships whose ExpireTime passed.
    ///
    /// # Errors
    /// [`TrackerError::Store`] when the store cannot be reached.
    pub async fn sweep(&self, now: Timestamp) -> Result<SweepReport, TrackerError> {
        self.store.expire(now).await
    }

    /// The state of `peer_id`'s session at `now`, or `None` when it has none.
    ///
    /// # Errors
    /// [`TrackerError::Store`] when the store cannot be reached.
    pub async fn session_state(
        &self,
        peer_id: &PeerId,
        now: Timestamp,
    ) -> Result<Option<SessionState>, TrackerError> {
        self.store.session_state(now, peer_id).await
    }

    /// Counts over the whole state (cheap: from counters).
    ///
    /// # Errors
    /// [`TrackerError::Store`] when the store cannot be reached.
    pub async fn totals(&self) -> Result<Totals, TrackerError> {
        self.store.totals().await
    }

    /// A page of swarms, largest first.
    ///
    /// # Errors
    /// [`TrackerError::Store`] when the store cannot be reached.
    pub async fn swarms(
        &self,
        now: Timestamp,
        query: &SwarmQuery,
    ) -> Result<SwarmPage, TrackerError> {
        self.store.swarms(now, query).await
    }

    /// One swarm with a page of its members (join order).
    ///
    /// # Errors
    /// [`TrackerError::Store`] when the store cannot be reached.
    pub async fn swarm(
        &self,
        now: Timestamp,
        swarm_id: &SwarmId,
        offset: usize,
        limit: usize,
    ) -> Result<Option<SwarmDetail>, TrackerError> {
        self.store.swarm(now, swarm_id, offset, limit).await
    }

    /// Requests handled per method (index as [`Method::ALL`]) and responses per status
    /// (index as [`Status::ALL`]) by this node since start.
    pub fn request_counts(&self) -> ([u64; 7], [u64; 8]) {
        let mut requests = [0; 7];
        let mut responses = [0; 8];
        for (slot, counter) in requests.iter_mut().zip(&self.counts.requests) {
            *slot = counter.load(Ordering::Relaxed);
        }
        for (slot, counter) in responses.iter_mut().zip(&self.counts.responses) {
            *slot = counter.load(Ordering::Relaxed);
        }
        (requests, responses)
    }

    /// Bytes the retransmission cache holds now.
    pub fn replay_cache_bytes(&self) -> usize {
        self.replay.bytes()
    }
}

/// A 200 answer carrying one swarm and its peer list (JOIN, FIND).
fn single_list(
    tid: &TransactionId,
    swarm_id: &SwarmId,
    peers: Vec<Candidate>,
    ctx: &RequestContext,
) -> Response {
    let mut response = ok(tid);
    response.swarm_results.push(SwarmResult {
        swarm_id: swarm_id.clone(),
        ok: true,
        peers: peers
            .into_iter()
            .map(|c| c.into_peer_info(ctx.observed.ip(), ctx.format))
            .collect(),
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tracker>();
    }
}
