//! The downloader: keeps a set of peers with their chunk maps, asks them for chunks in the
//! [`Picker`]'s order, verifies every answer, and drops peers that send corrupt data.
//!
//! Peers come from the tracker (JOIN, FIND) and from peers that contact us (they announce
//! their own endpoint in every request), via [`Swarm::add_peer`]. Chunk maps are fetched
//! again every [`EngineConfig::map_interval`] until a peer is complete, which is how a leech
//! learns what other leeches gained.
//!
//! Sharing: a chunk that some non-seed peer holds is fetched from a non-seed peer (unless it
//! is needed for playback right now, or in the endgame), so a seed mostly uploads chunks
//! nobody else has yet, and leeches exchange the rest among themselves.
//!
//! Live, every viewer learns of a new chunk at about the same time, from the source. So
//! that they do not all fetch it from the source at once, a viewer that knows other viewers
//! waits a short pseudo-random time of its own for that chunk (below [`LIVE_HOLD_OFF`])
//! before it asks the source: the viewer whose wait ends first fetches it from the source,
//! its chunk map announces it, and the others fetch it from that viewer. A viewer holding
//! the chunk counts only while it answers well ([`LIVE_PATIENCE`]), so a peer that claims
//! chunks and stalls costs a viewer at most that long before the source serves it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ppsp_proto::ChunkMap;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::client::{FetchError, PeerClient, RemoteMap};
use crate::error::Error;
use crate::manifest::SignedLiveManifest;
use crate::picker::{Candidate, Picker};
use crate::store::PutOutcome;
use crate::swarm::{PeerHint, Swarm};

/// Tuning of the downloader.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Most chunk requests outstanding at once.
    pub max_in_flight: usize,
    /// Most requests outstanding to one non-seed peer.
    pub max_per_peer: u32,
    /// Most requests outstanding to one seed (complete peer).
    pub max_per_seed: u32,
    /// How often a peer's chunk map (and, for live, its manifest) is fetched again.
    pub map_interval: Duration,
    /// Chunks after the playback position fetched first, in order.
    pub playback_window: u64,
    /// Requests allowed per chunk in the endgame.
    pub endgame_requests: u32,
    /// Most peers kept.
    pub max_peers: usize,
    /// Consecutive failures after which a peer is forgotten (the tracker may list it again).
    pub max_failures: u32,
    /// For live: how many chunks behind the live edge a new viewer starts.
    pub live_start_behind: u64,
    /// Longest wait for one chunk; a peer that takes longer has failed that request.
    pub chunk_timeout: Duration,
    /// Most peers being tried at once that have not answered yet (so a tracker listing
    /// thousands of dead addresses costs a bounded number of connection attempts).
    pub max_probing: usize,
    /// How long a forgotten peer is not taken back from the tracker or other peers; doubled
    /// each time the same peer is forgotten again.
    pub bench_time: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 16,
            max_per_peer: 4,
            max_per_seed: 2,
            map_interval: Duration::from_millis(250),
            playback_window: 8,
            endgame_requests: 2,
            max_peers: 64,
            max_failures: 6,
            live_start_behind: 2,
            chunk_timeout: Duration::from_secs(10),
            max_probing: 16,
            bench_time: Duration::from_secs(30),
        }
    }
}

/// A peer with requests outstanding this long and none answered meanwhile is slow: it
/// ranks behind peers answering well, and its chunks may be fetched from the seed.
const SLOW_ANSWER: Duration = Duration::from_secs(2);
/// The same for a peer that has not delivered a chunk yet: it has shown nothing.
const SLOW_FIRST_ANSWER: Duration = Duration::from_millis(500);
/// Live: the longest a viewer waits, after a new chunk appears, for another viewer to hold
/// it before asking the source. Each viewer draws its own wait per chunk below this.
pub const LIVE_HOLD_OFF: Duration = Duration::from_millis(400);
/// Live: a viewer with requests outstanding this long and none answered no longer counts
/// as a holder that keeps a chunk from the source.
pub const LIVE_PATIENCE: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct Remote {
    seed_hint: bool,
    map: Option<ChunkMap>,
    complete: bool,
    map_pending: bool,
    map_due: Instant,
    map_version: Option<u64>,
    manifest_pending: bool,
    manifest_due: Instant,
    in_flight: u32,
    failures: u32,
    /// Consecutive 503 answers (busy or refusing); each doubles the back-off.
    busy: u32,
    /// True once the peer answered anything usable.
    proven: bool,
    /// Since when requests have been outstanding to the peer without one completing.
    waiting_since: Option<Instant>,
    /// True once the peer delivered a chunk that verified.
    delivered: bool,
    backoff_until: Instant,
}

impl Remote {
    fn new(seed_hint: bool, now: Instant) -> Self {
        Self {
            seed_hint,
            map: None,
            complete: false,
            map_pending: false,
            map_due: now,
            map_version: None,
            manifest_pending: false,
            manifest_due: now,
            in_flight: 0,
            failures: 0,
            busy: 0,
            proven: false,
            waiting_since: None,
            delivered: false,
            backoff_until: now,
        }
    }

    fn seedlike(&self) -> bool {
        self.seed_hint || self.complete
    }

    fn has(&self, index: u64) -> bool {
        self.map.as_ref().is_some_and(|m| m.contains(index))
    }

    fn ready(&self, now: Instant) -> bool {
        self.backoff_until <= now
    }

    /// Failed or busy answers since the last good one.
    fn strikes(&self) -> u32 {
        self.failures + self.busy
    }

    /// Answering well lately: no failure, no 503, not backing off, and not sitting on
    /// requests for longer than [`SLOW_ANSWER`] ([`SLOW_FIRST_ANSWER`] before its first
    /// chunk).
    fn healthy(&self, now: Instant) -> bool {
        let patience = if self.delivered {
            SLOW_ANSWER
        } else {
            SLOW_FIRST_ANSWER
        };
        self.healthy_within(now, patience)
    }

    /// [`Self::healthy`] with a given patience for outstanding requests.
    fn healthy_within(&self, now: Instant, patience: Duration) -> bool {
        self.strikes() == 0
            && self.ready(now)
            && self
                .waiting_since
                .is_none_or(|since| now.duration_since(since) < patience)
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.busy = 0;
        self.proven = true;
    }
}

enum Event {
    Chunk {
        peer: SocketAddr,
        index: u64,
        result: Result<Bytes, FetchError>,
    },
    Map {
        peer: SocketAddr,
        result: Result<RemoteMap, FetchError>,
    },
    Manifest {
        peer: SocketAddr,
        result: Result<Bytes, FetchError>,
    },
}

/// Fetches a swarm's chunks from its peers. See the module documentation.
pub struct Engine {
    swarm: Arc<Swarm>,
    client: PeerClient,
    config: EngineConfig,
    picker: Picker,
    peers: HashMap<SocketAddr, Remote>,
    banned: HashSet<SocketAddr>,
    /// Forgotten peers not taken back before the instant given, and how often each was
    /// forgotten.
    benched: HashMap<SocketAddr, (Instant, u32)>,
    own: HashSet<SocketAddr>,
    requests: HashMap<u64, Vec<(SocketAddr, AbortHandle)>>,
    tasks: JoinSet<Event>,
    hints: Option<mpsc::UnboundedReceiver<PeerHint>>,
    max_chunk: usize,
    /// VoD: how many known peers hold each chunk; `None` after any chunk map changed.
    availability: Option<Vec<u32>>,
    /// Live: when each missing chunk was first seen held by a peer.
    live_seen: HashMap<u64, Instant>,
    /// Draws this viewer's per-chunk wait before asking a live source.
    salt: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("swarm", &self.swarm.id())
            .field("peers", &self.peers.len())
            .field("banned", &self.banned.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A downloader for `swarm`, never contacting `own` (this peer's own endpoints).
    pub fn new(
        swarm: Arc<Swarm>,
        client: PeerClient,
        config: EngineConfig,
        own: impl IntoIterator<Item = SocketAddr>,
    ) -> Self {
        let hints = swarm.take_hints();
        let max_chunk = swarm
            .store()
            .vod_manifest()
            .map_or(crate::manifest::MAX_CHUNK_SIZE, |m| m.chunk_size())
            as usize;
        Self {
            picker: Picker::new(
                config.playback_window,
                config.endgame_requests,
                crate::random_u64(),
            ),
            swarm,
            client,
            config,
            peers: HashMap::new(),
            banned: HashSet::new(),
            benched: HashMap::new(),
            own: own.into_iter().collect(),
            requests: HashMap::new(),
            tasks: JoinSet::new(),
            hints,
            max_chunk,
            availability: None,
            live_seen: HashMap::new(),
            salt: crate::random_u64(),
        }
    }

    fn add_hint(&mut self, hint: PeerHint, now: Instant) {
        if self.banned.contains(&hint.addr)
            || self.own.contains(&hint.addr)
            || hint.addr.port() == 0
            || hint.addr.ip().is_unspecified()
        {
            return;
        }
        if let Some(peer) = self.peers.get_mut(&hint.addr) {
            peer.seed_hint |= hint.seed;
            return;
        }
        if self
            .benched
            .get(&hint.addr)
            .is_some_and(|(until, _)| *until > now)
        {
            return;
        }
        if self.peers.len() >= self.config.max_peers {
            return;
        }
        tracing::debug!(peer = %hint.addr, seed = hint.seed, "new peer");
        self.peers.insert(hint.addr, Remote::new(hint.seed, now));
        self.swarm.set_peers_known(self.peers.len());
    }

    /// Runs until a VoD download is complete (returns `Ok`) or `stop` turns true.
    ///
    /// # Errors
    /// [`Error::Io`] when a verified chunk cannot be written.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), Error> {
        let mut hints = self.hints.take();
        let tick = Duration::from_millis(50).min(self.config.map_interval);
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            if !self.swarm.is_live() && self.swarm.store().is_complete() {
                self.abort_all();
                return Ok(());
            }
            let now = Instant::now();
            self.poll_peers(now);
            self.schedule(now);
            tokio::select! {
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(event) = joined {
                        self.on_event(event).await?;
                    }
                }
                Some(hint) = recv_hint(&mut hints) => self.add_hint(hint, Instant::now()),
                () = self.swarm.priority_changed().notified() => {}
                () = tokio::time::sleep(tick) => {}
                changed = stop.changed() => if changed.is_err() { return Ok(()) },
            }
            // Take every queued hint at once so a burst of new peers costs one round.
            while let Some(rx) = hints.as_mut() {
                match rx.try_recv() {
                    Ok(hint) => self.add_hint(hint, Instant::now()),
                    Err(_) => break,
                }
            }
        }
    }

    fn abort_all(&mut self) {
        self.tasks.abort_all();
        self.requests.clear();
    }

    /// Starts chunk-map (and live manifest) fetches that are due.
    fn poll_peers(&mut self, now: Instant) {
        let live = self.swarm.is_live();
        let swarm_id = self.swarm.id().to_owned();
        let mut probing = self
            .peers
            .values()
            .filter(|p| !p.proven && p.map_pending)
            .count();
        for (addr, peer) in &mut self.peers {
            if !peer.ready(now) {
                continue;
            }
            let map_stale = peer.map.is_none() || !peer.complete || live;
            if !peer.map_pending && map_stale && peer.map_due <= now {
                if !peer.proven {
                    if probing >= self.config.max_probing {
                        continue;
                    }
                    probing += 1;
                }
                peer.map_pending = true;
                peer.map_due = now + self.config.map_interval;
                let client = self.client.clone();
                let (addr, swarm_id, since) = (*addr, swarm_id.clone(), peer.map_version);
                self.tasks.spawn(async move {
                    let result = client.chunk_map(addr, &swarm_id, since).await;
                    Event::Map { peer: addr, result }
                });
            }
            if live && !peer.manifest_pending && peer.manifest_due <= now {
                peer.manifest_pending = true;
                peer.manifest_due = now + self.config.map_interval * 4;
                let client = self.client.clone();
                let (addr, swarm_id) = (*addr, swarm_id.clone());
                self.tasks.spawn(async move {
                    let result = client.manifest(addr, &swarm_id).await;
                    Event::Manifest { peer: addr, result }
                });
            }
        }
    }

    /// VoD availability per chunk, recomputed only after a chunk map changed: the cost is
    /// one pass over the set bits of every map, not a lookup per chunk and peer per round.
    fn compute_availability(&self, chunks: u64) -> Vec<u32> {
        let mut counts = vec![0u32; usize::try_from(chunks).unwrap_or(0)];
        for map in self.peers.values().filter_map(|p| p.map.as_ref()) {
            for index in map.iter() {
                if let Some(count) = usize::try_from(index).ok().and_then(|i| counts.get_mut(i)) {
                    *count += 1;
                }
            }
        }
        counts
    }

    /// The chunks still wanted, with how many peers hold each, and the playback position.
    fn missing(&mut self, now: Instant) -> (Vec<Candidate>, Option<u64>) {
        let store = self.swarm.store();
        if let Some(manifest) = store.vod_manifest() {
            let have = store.chunk_map();
            let position = self.swarm.position();
            let chunks = manifest.chunk_count();
            let mut out = Vec::new();
            let availability = match self.availability.take() {
                Some(cached) => cached,
                None => self.compute_availability(chunks),
            };
            for (index, count) in (0..chunks).zip(availability.iter().copied()) {
                if have.contains(index) {
                    continue;
                }
                out.push(Candidate {
                    index,
                    availability: count,
                    in_flight: self.requests.get(&index).map_or(0, |r| r.len() as u32),
                });
            }
            self.availability = Some(availability);
            return (out, position);
        }
        let (range, position) = {
            let Some((edge, _)) = store.live_edge() else {
                return (Vec::new(), None);
            };
            let floor = edge.saturating_sub(crate::store::LIVE_RETENTION);
            let start = match self.swarm.position() {
                Some(p) => p,
                None => {
                    let p = edge.saturating_sub(self.config.live_start_behind);
                    self.swarm.set_position(p);
                    p
                }
            };
            ((start.max(floor), edge), Some(start))
        };
        let have = store.chunk_map();
        let usable: Vec<&Remote> = self
            .peers
            .values()
            .filter(|p| p.map.is_some() && p.ready(now))
            .collect();
        self.live_seen
            .retain(|index, _| *index >= range.0 && !have.contains(*index));
        let mut out = Vec::new();
        for index in range.0..range.1 {
            if have.contains(index) {
                continue;
            }
            let availability = usable.iter().filter(|p| p.has(index)).count() as u32;
            if availability > 0 {
                self.live_seen.entry(index).or_insert(now);
            }
            // A request to a peer that stopped answering does not count: the chunk is
            // asked for again elsewhere instead of waiting for that request's timeout.
            let in_flight = self.requests.get(&index).map_or(0, |r| {
                r.iter()
                    .filter(|(addr, _)| {
                        self.peers
                            .get(addr)
                            .is_some_and(|p| p.healthy_within(now, LIVE_PATIENCE))
                    })
                    .count() as u32
            });
            out.push(Candidate {
                index,
                availability,
                in_flight,
            });
        }
        (out, position)
    }

    fn in_flight_total(&self) -> usize {
        self.requests.values().map(Vec::len).sum()
    }

    fn schedule(&mut self, now: Instant) {
        if self.in_flight_total() >= self.config.max_in_flight {
            return;
        }
        let (missing, position) = self.missing(now);
        if missing.is_empty() {
            return;
        }
        if !self.peers.is_empty() {
            let unheld = missing.iter().filter(|c| c.availability == 0).count();
            if unheld > 0 && self.in_flight_total() == 0 {
                self.swarm.note_problem(format!(
                    "{unheld} chunks held by no known peer, waiting for one"
                ));
            }
        }
        let endgame = Picker::is_endgame(&missing);
        let order = if self.swarm.is_live() {
            // Live: strictly in playback order from the position.
            let picker = Picker::new(u64::MAX, self.config.endgame_requests, 0);
            picker.order(&missing, position)
        } else {
            self.picker.order(&missing, position)
        };
        for index in order {
            if self.in_flight_total() >= self.config.max_in_flight {
                break;
            }
            let urgent = position.is_some_and(|p| index >= p && index - p < self.picker.window());
            if let Some(peer) = self.choose_peer(index, now, endgame || urgent) {
                self.request(index, peer);
            }
        }
    }

    fn choose_peer(&self, index: u64, now: Instant, seeds_allowed: bool) -> Option<SocketAddr> {
        let asked: Vec<SocketAddr> = self
            .requests
            .get(&index)
            .map(|r| r.iter().map(|(a, _)| *a).collect())
            .unwrap_or_default();
        let holders = self
            .peers
            .iter()
            .filter(|(addr, p)| p.has(index) && p.ready(now) && !asked.contains(addr));
        // A chunk another peer holds is left to that peer, even when it is busy right
        // now: the publishing seed's upload goes to chunks nobody else has. Only a holder
        // that has been answering well counts, so no peer can keep a leech from the seed
        // by claiming chunks it then does not deliver.
        let seeds_ok = if self.swarm.is_live() {
            // Live: the source serves a viewer only when no viewer answering well holds the
            // chunk, and once this viewer's own wait for that chunk is over.
            let other_holder = self
                .peers
                .values()
                .any(|p| !p.seed_hint && p.has(index) && p.healthy_within(now, LIVE_PATIENCE));
            !other_holder && self.live_source_turn(index, now)
        } else {
            let other_holder = self
                .peers
                .values()
                .any(|p| !p.seed_hint && p.has(index) && p.healthy(now));
            seeds_allowed || !other_holder
        };
        holders
            .filter(|(_, p)| {
                let limit = if p.seedlike() {
                    self.config.max_per_seed
                } else {
                    self.config.max_per_peer
                };
                p.in_flight < limit && (seeds_ok || !p.seed_hint)
            })
            // Peers answering well first; among them leeches, then leeches that completed,
            // then the publishing seed.
            .min_by_key(|(addr, p)| {
                (
                    !p.healthy(now),
                    p.seed_hint,
                    p.complete,
                    p.in_flight,
                    p.strikes(),
                    tie(**addr, index),
                )
            })
            .map(|(addr, _)| *addr)
    }

    /// Live: whether this viewer may ask the source for chunk `index` now. It waits up to
    /// [`LIVE_HOLD_OFF`] after the chunk appeared (a pseudo-random part of it, its own for
    /// each chunk) while other viewers answering well could pass the chunk on; with none,
    /// it asks at once.
    fn live_source_turn(&self, index: u64, now: Instant) -> bool {
        let relays = self
            .peers
            .values()
            .any(|p| !p.seed_hint && p.map.is_some() && p.healthy_within(now, LIVE_PATIENCE));
        if !relays {
            return true;
        }
        let Some(seen) = self.live_seen.get(&index) else {
            return true;
        };
        now >= *seen + live_hold_off(self.salt, index)
    }

    fn request(&mut self, index: u64, addr: SocketAddr) {
        let Some(peer) = self.peers.get_mut(&addr) else {
            return;
        };
        if peer.in_flight == 0 {
            peer.waiting_since = Some(Instant::now());
        }
        peer.in_flight += 1;
        let client = self.client.clone();
        let swarm_id = self.swarm.id().to_owned();
        let max_len = self.max_chunk;
        let limit = self.config.chunk_timeout;
        let handle = self.tasks.spawn(async move {
            let result = tokio::time::timeout(limit, client.chunk(addr, &swarm_id, index, max_len))
                .await
                .unwrap_or_else(|_| {
                    Err(FetchError::Failed(Error::peer(
                        addr,
                        format!("no chunk within {limit:?}"),
                    )))
                });
            Event::Chunk {
                peer: addr,
                index,
                result,
            }
        });
        self.requests.entry(index).or_default().push((addr, handle));
    }

    /// Forgets a finished request. A request cancelled in the meantime (its answer raced
    /// with the cancellation) was already accounted for, so the peer's count is left alone.
    fn finish_request(&mut self, index: u64, addr: SocketAddr) {
        let mut registered = false;
        if let Some(list) = self.requests.get_mut(&index) {
            let before = list.len();
            list.retain(|(a, _)| *a != addr);
            registered = list.len() != before;
            if list.is_empty() {
                self.requests.remove(&index);
            }
        }
        if registered && let Some(peer) = self.peers.get_mut(&addr) {
            peer.in_flight = peer.in_flight.saturating_sub(1);
            // Whatever the answer, the peer answered: the clock restarts for the rest.
            peer.waiting_since = (peer.in_flight > 0).then(Instant::now);
        }
    }

    /// Cancels the other outstanding requests for a chunk that has arrived (endgame).
    fn cancel_others(&mut self, index: u64) {
        for (addr, handle) in self.requests.remove(&index).unwrap_or_default() {
            handle.abort();
            if let Some(peer) = self.peers.get_mut(&addr) {
                peer.in_flight = peer.in_flight.saturating_sub(1);
                if peer.in_flight == 0 {
                    peer.waiting_since = None;
                }
            }
        }
    }

    /// A request to `addr` failed (connection, timeout, bad answer, 5xx): the peer backs
    /// off for twice as long each time, and is forgotten (and benched) after
    /// [`EngineConfig::max_failures`] in a row, or after two when it never answered.
    fn fail(&mut self, addr: SocketAddr, err: &dyn std::fmt::Display) {
        let max = self.config.max_failures;
        let Some(peer) = self.peers.get_mut(&addr) else {
            return;
        };
        peer.failures += 1;
        let backoff = Duration::from_millis(200 << peer.strikes().min(7));
        peer.backoff_until = Instant::now() + backoff;
        tracing::debug!(peer = %addr, %err, failures = peer.failures, "peer request failed");
        let limit = if peer.proven { max } else { max.min(2) };
        if peer.proven {
            self.swarm
                .note_problem(format!("peer {addr} failing ({err}), fetching elsewhere"));
        }
        if peer.failures >= limit {
            tracing::info!(peer = %addr, %err, "forgetting a peer that keeps failing");
            self.bench(addr);
        }
    }

    /// `addr` answered 503: busy (or pretending). The back-off doubles with each 503 in a
    /// row, up to half a minute, and the peer ranks behind peers answering well.
    fn busy(&mut self, addr: SocketAddr) {
        let Some(peer) = self.peers.get_mut(&addr) else {
            return;
        };
        peer.busy += 1;
        let backoff = Duration::from_millis(50 << peer.busy.min(9));
        peer.backoff_until = Instant::now() + backoff;
        if peer.busy >= 4 {
            self.swarm.note_problem(format!(
                "peer {addr} answered busy {} times in a row, fetching elsewhere",
                peer.busy
            ));
        }
    }

    /// Forgets `addr` and does not take it back for a while (longer each time).
    fn bench(&mut self, addr: SocketAddr) {
        let now = Instant::now();
        self.benched.retain(|_, (until, _)| *until > now);
        // Bounded: past this many, the oldest entries would have expired anyway.
        if self.benched.len() < 4096 {
            let times = self.benched.get(&addr).map_or(0, |(_, n)| *n) + 1;
            let pause = self.config.bench_time * (1 << (times - 1).min(5));
            self.benched.insert(addr, (now + pause, times));
        }
        self.forget(addr);
    }

    fn forget(&mut self, addr: SocketAddr) {
        self.peers.remove(&addr);
        self.availability = None;
        let mut emptied = Vec::new();
        for (index, list) in &mut self.requests {
            list.retain(|(a, handle)| {
                if *a == addr {
                    handle.abort();
                    false
                } else {
                    true
                }
            });
            if list.is_empty() {
                emptied.push(*index);
            }
        }
        for index in emptied {
            self.requests.remove(&index);
        }
        self.swarm.set_peers_known(self.peers.len());
    }

    async fn on_event(&mut self, event: Event) -> Result<(), Error> {
        match event {
            Event::Map { peer, result } => {
                let now = Instant::now();
                match result {
                    Ok(remote) => {
                        let edge = self.swarm.store().live_edge().map(|(end, _)| end);
                        if let Some(p) = self.peers.get_mut(&peer) {
                            p.map_pending = false;
                            // The answer was a long poll: ask again right away, unless it
                            // came back unchanged at once (a peer ignoring `since` must
                            // not make this a busy loop).
                            p.map_due = if p.map_version == Some(remote.version) {
                                now + self.config.map_interval
                            } else {
                                now
                            };
                            p.map_version = Some(remote.version);
                            // A live peer with chunks past our edge has a newer manifest.
                            if let (Some(edge), Some(last)) = (edge, remote.map.last())
                                && last >= edge
                            {
                                p.manifest_due = now;
                            }
                            p.map = Some(remote.map);
                            self.availability = None;
                            p.complete = remote.complete;
                            p.succeeded();
                        }
                    }
                    Err(FetchError::NotHeld) => {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            p.map_pending = false;
                            p.map_due = now + self.config.map_interval;
                        }
                    }
                    Err(FetchError::Busy) => {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            p.map_pending = false;
                            p.map_due = now + self.config.map_interval;
                        }
                        self.busy(peer);
                    }
                    Err(FetchError::Failed(err)) => {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            p.map_pending = false;
                        }
                        self.fail(peer, &err);
                    }
                }
            }
            Event::Manifest { peer, result } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.manifest_pending = false;
                }
                match result {
                    Ok(bytes) => match SignedLiveManifest::decode_verified(&bytes, self.swarm.id())
                    {
                        Ok(signed) => {
                            self.swarm.store().offer_live_manifest(signed);
                        }
                        Err(err) => {
                            tracing::warn!(peer = %peer, %err, "dropping a peer that sent a bad live manifest");
                            self.ban(peer);
                        }
                    },
                    Err(FetchError::Busy | FetchError::NotHeld) => {}
                    Err(FetchError::Failed(err)) => self.fail(peer, &err),
                }
            }
            Event::Chunk {
                peer,
                index,
                result,
            } => {
                self.finish_request(index, peer);
                match result {
                    Ok(data) => self.on_chunk(peer, index, data).await?,
                    Err(FetchError::Busy) => self.busy(peer),
                    Err(FetchError::NotHeld) => {
                        // Our copy of its map is stale (or, for live, the chunk aged out).
                        if let Some(p) = self.peers.get_mut(&peer) {
                            if let Some(map) = p.map.as_mut() {
                                map.remove(index);
                                self.availability = None;
                            }
                            p.complete = false;
                            p.map_due = Instant::now();
                        }
                        // A VoD map only grows, unless the peer found the chunk damaged:
                        // either way it should not be asked first again at once, and a
                        // peer that claims chunks it never serves sinks behind the others.
                        if !self.swarm.is_live() {
                            self.busy(peer);
                        }
                    }
                    Err(FetchError::Failed(err)) => self.fail(peer, &err),
                }
            }
        }
        Ok(())
    }

    async fn on_chunk(&mut self, peer: SocketAddr, index: u64, data: Bytes) -> Result<(), Error> {
        let len = data.len() as u64;
        match self.swarm.store().put(index, data).await {
            Ok(PutOutcome::Stored) => {
                self.swarm.add_downloaded(peer, len);
                self.swarm.note_verified();
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.succeeded();
                    p.delivered = true;
                }
                self.cancel_others(index);
            }
            Ok(PutOutcome::Duplicate) => self.swarm.add_downloaded(peer, len),
            Err(Error::CorruptChunk { .. }) => {
                if self.swarm.store().expected(index).is_none() {
                    // A live chunk that left the window while it was on its way.
                    return Ok(());
                }
                self.swarm.note_corrupt();
                tracing::warn!(peer = %peer, index, "dropping a peer that sent a corrupt chunk");
                self.ban(peer);
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }

    fn ban(&mut self, addr: SocketAddr) {
        if self.banned.insert(addr) {
            self.swarm.note_banned();
        }
        self.forget(addr);
    }
}

async fn recv_hint(hints: &mut Option<mpsc::UnboundedReceiver<PeerHint>>) -> Option<PeerHint> {
    match hints {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// This viewer's wait for live chunk `index` before asking the source: spread evenly over
/// `0..LIVE_HOLD_OFF` by `salt`, so that of several viewers one usually asks well before
/// the others.
fn live_hold_off(salt: u64, index: u64) -> Duration {
    let span = LIVE_HOLD_OFF.as_millis() as u64;
    Duration::from_millis(tie_mix(salt ^ index.rotate_left(17)) % span.max(1))
}

fn tie_mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 31)
}

/// A per-(peer, chunk) pseudo-random key, so equal candidates are chosen evenly.
fn tie(addr: SocketAddr, index: u64) -> u64 {
    tie_mix(index ^ (u64::from(addr.port()) << 32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::store::ChunkStore;
    use crate::swarm::SwarmOptions;

    fn engine() -> (Engine, std::path::PathBuf) {
        let data = vec![1u8; 8 * 1024];
        let manifest =
            Arc::new(Manifest::from_reader("e", 1024, &mut data.as_slice()).expect("manifest"));
        let path = std::env::temp_dir().join(format!("ppsp-engine-{:016x}", crate::random_u64()));
        let store = ChunkStore::create_leech(&path, Arc::clone(&manifest), true).expect("store");
        let swarm = Swarm::vod("me", &manifest, store, SwarmOptions::default());
        let client = PeerClient::new(None, None, Duration::from_secs(1));
        (
            Engine::new(swarm, client, EngineConfig::default(), []),
            path,
        )
    }

    fn peer(seed: bool, chunks: &[u64], in_flight: u32) -> Remote {
        let mut remote = Remote::new(seed, Instant::now());
        let mut map = ChunkMap::new(0, 8);
        for c in chunks {
            map.insert(*c);
        }
        remote.complete = map.is_full();
        remote.map = Some(map);
        remote.proven = true;
        remote.in_flight = in_flight;
        remote
    }

    fn live_engine() -> Engine {
        let swarm = Swarm::live(
            "me",
            "live-test",
            "live.ts",
            ChunkStore::live(),
            SwarmOptions::default(),
        );
        let client = PeerClient::new(None, None, Duration::from_secs(1));
        Engine::new(swarm, client, EngineConfig::default(), [])
    }

    #[tokio::test]
    async fn live_viewers_wait_their_turn_for_the_source_and_prefer_a_viewer_holding_it() {
        let mut engine = live_engine();
        let source: SocketAddr = "127.0.0.1:1000".parse().expect("addr");
        let viewer: SocketAddr = "127.0.0.1:2000".parse().expect("addr");
        engine
            .peers
            .insert(source, peer(true, &[0, 1, 2, 3, 4, 5, 6, 7], 0));
        // A chunk whose wait is long enough to look at both sides of it.
        let index = (0..64)
            .find(|i| live_hold_off(engine.salt, *i) >= Duration::from_millis(100))
            .expect("some chunk waits 100 ms or more");
        let wait = live_hold_off(engine.salt, index);
        let mut map = ChunkMap::new(0, 64);
        map.insert(index);
        engine.peers.get_mut(&source).expect("source").map = Some(map);
        let seen = Instant::now();
        engine.live_seen.insert(index, seen);

        // Alone, a viewer asks the source at once.
        assert_eq!(engine.choose_peer(index, seen, true), Some(source));
        // With another viewer around, it waits its turn ...
        let mut other = peer(false, &[], 0);
        other.backoff_until = seen;
        engine.peers.insert(viewer, other);
        assert_eq!(engine.choose_peer(index, seen, true), None);
        assert_eq!(
            engine.choose_peer(index, seen + wait - Duration::from_millis(1), true),
            None
        );
        assert_eq!(engine.choose_peer(index, seen + wait, true), Some(source));
        // ... and once the other viewer holds the chunk, fetches it from that viewer only.
        let mut map = ChunkMap::new(0, 64);
        map.insert(index);
        engine.peers.get_mut(&viewer).expect("viewer").map = Some(map);
        assert_eq!(engine.choose_peer(index, seen, true), Some(viewer));
        let late = seen + LIVE_HOLD_OFF;
        assert_eq!(engine.choose_peer(index, late, true), Some(viewer));
        // A viewer that sits on requests stops counting as a holder: the source serves.
        {
            let stalling = engine.peers.get_mut(&viewer).expect("viewer");
            stalling.in_flight = engine.config.max_per_peer;
            stalling.waiting_since = Some(late);
        }
        assert_eq!(engine.choose_peer(index, late, true), None);
        assert_eq!(
            engine.choose_peer(index, late + LIVE_PATIENCE, true),
            Some(source)
        );
    }

    #[test]
    fn live_waits_spread_below_the_hold_off() {
        for salt in [1u64, 2, 3, 4] {
            let waits: Vec<Duration> = (0..1000).map(|i| live_hold_off(salt, i)).collect();
            assert!(waits.iter().all(|w| *w < LIVE_HOLD_OFF));
            let mean = waits.iter().sum::<Duration>() / 1000;
            assert!(
                mean > LIVE_HOLD_OFF * 2 / 5 && mean < LIVE_HOLD_OFF * 3 / 5,
                "mean wait {mean:?}"
            );
        }
        // Different viewers draw different waits for the same chunk.
        assert_ne!(live_hold_off(1, 7), live_hold_off(2, 7));
    }

    #[tokio::test]
    async fn leeches_are_preferred_over_the_seed() {
        let (mut engine, _path) = engine();
        let seed: SocketAddr = "127.0.0.1:1000".parse().expect("addr");
        let leech: SocketAddr = "127.0.0.1:2000".parse().expect("addr");
        engine
            .peers
            .insert(seed, peer(true, &[0, 1, 2, 3, 4, 5, 6, 7], 0));
        engine.peers.insert(leech, peer(false, &[3], 0));
        let now = Instant::now();
        // Only the seed has chunk 0: ask the seed.
        assert_eq!(engine.choose_peer(0, now, false), Some(seed));
        // The leech has chunk 3: ask the leech.
        assert_eq!(engine.choose_peer(3, now, false), Some(leech));
        // Even when the leech is busy the chunk waits for it ...
        engine.peers.get_mut(&leech).expect("leech").in_flight = 4;
        assert_eq!(engine.choose_peer(3, now, false), None);
        // ... unless it is needed for playback or in the endgame.
        assert_eq!(engine.choose_peer(3, now, true), Some(seed));
        // A peer backing off is not asked.
        engine.peers.get_mut(&seed).expect("seed").backoff_until = now + Duration::from_secs(5);
        assert_eq!(engine.choose_peer(0, now, true), None);
    }

    #[tokio::test]
    async fn a_holder_that_fails_or_stalls_does_not_keep_chunks_from_the_seed() {
        let (mut engine, _path) = engine();
        let seed: SocketAddr = "127.0.0.1:1000".parse().expect("addr");
        let fake: SocketAddr = "127.0.0.1:2000".parse().expect("addr");
        engine
            .peers
            .insert(seed, peer(true, &[0, 1, 2, 3, 4, 5, 6, 7], 0));
        engine
            .peers
            .insert(fake, peer(false, &[0, 1, 2, 3, 4, 5, 6, 7], 0));
        let now = Instant::now();
        assert_eq!(engine.choose_peer(3, now, false), Some(fake));
        // One 503 and the seed is asked instead, and the 503s grow its back-off.
        engine.busy(fake);
        let first = engine.peers[&fake].backoff_until;
        assert_eq!(engine.choose_peer(3, Instant::now(), false), Some(seed));
        engine.busy(fake);
        assert!(engine.peers[&fake].backoff_until - Instant::now() > first - now);
        // Sitting on requests without answering counts the same.
        let fake_peer = engine.peers.get_mut(&fake).expect("fake");
        fake_peer.busy = 0;
        fake_peer.backoff_until = now;
        fake_peer.waiting_since = Some(now - SLOW_FIRST_ANSWER);
        fake_peer.in_flight = 1;
        assert_eq!(engine.choose_peer(3, Instant::now(), false), Some(seed));
        // Failing again and again: forgotten, and not taken back from the next hint.
        for _ in 0..engine.config.max_failures {
            engine.fail(fake, &"refused");
        }
        assert!(!engine.peers.contains_key(&fake));
        engine.add_hint(
            PeerHint {
                addr: fake,
                seed: false,
            },
            Instant::now(),
        );
        assert!(!engine.peers.contains_key(&fake), "benched");
        assert!(
            engine
                .swarm
                .recent_problem(Duration::from_secs(5))
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_thousand_listed_peers_cost_a_bounded_number_of_connections() {
        let (mut engine, _path) = engine();
        let now = Instant::now();
        // One address listed 1,000 times is one peer.
        let once: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        for _ in 0..1000 {
            engine.add_hint(
                PeerHint {
                    addr: once,
                    seed: false,
                },
                now,
            );
        }
        assert_eq!(engine.peers.len(), 1);
        // 1,000 different addresses: at most max_peers kept, at most max_probing tried at
        // once before any has answered.
        for port in 1000..2000u16 {
            engine.add_hint(
                PeerHint {
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    seed: false,
                },
                now,
            );
        }
        assert_eq!(engine.peers.len(), engine.config.max_peers);
        engine.poll_peers(now);
        assert_eq!(engine.tasks.len(), engine.config.max_probing);
        engine.poll_peers(now);
        assert_eq!(
            engine.tasks.len(),
            engine.config.max_probing,
            "no new probes"
        );
        engine.abort_all();
    }

    #[tokio::test]
    async fn banned_peers_are_not_added_again() {
        let (mut engine, _path) = engine();
        let bad: SocketAddr = "127.0.0.1:3000".parse().expect("addr");
        let now = Instant::now();
        engine.add_hint(
            PeerHint {
                addr: bad,
                seed: true,
            },
            now,
        );
        assert!(engine.peers.contains_key(&bad));
        engine.ban(bad);
        assert!(!engine.peers.contains_key(&bad));
        engine.add_hint(
            PeerHint {
                addr: bad,
                seed: true,
            },
            now,
        );
        assert!(!engine.peers.contains_key(&bad));
        assert_eq!(engine.swarm.peers_banned(), 1);
        // Unusable addresses are ignored too.
        engine.add_hint(
            PeerHint {
                addr: "0.0.0.0:5".parse().expect("addr"),
                seed: false,
            },
            now,
        );
        assert!(engine.peers.is_empty());
    }
}
