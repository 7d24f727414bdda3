//! The state of one swarm that a peer's server, downloader and player share.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::limit::{AddressSlot, PerAddress};
use crate::manifest::{Manifest, guess_content_type};
use crate::protocol::PeerStats;
use crate::store::ChunkStore;

/// Most distinct peer addresses remembered from inbound requests.
const MAX_REMEMBERED_PEERS: usize = 4096;
const NO_POSITION: u64 = u64::MAX;

/// A candidate peer learnt from the tracker or from an inbound request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerHint {
    /// Its peer-protocol endpoint.
    pub addr: SocketAddr,
    /// True when the tracker lists it as a SEED or LIVESEED.
    pub seed: bool,
}

/// Settings of a swarm that are not part of its content.
#[derive(Clone, Debug)]
pub struct SwarmOptions {
    /// Concurrent chunk uploads; further requests are answered 503.
    pub upload_slots: usize,
    /// Most of the upload slots one remote address may hold at once, so that one host
    /// (however many connections or endpoints it opens) cannot take them all.
    pub uploads_per_address: usize,
    /// Upload bandwidth cap in bytes per second (`None`: no cap).
    pub upload_rate: Option<u64>,
    /// Test hook: flip a byte in every chunk served, to exercise other peers' verification.
    /// Never set this outside tests.
    pub corrupt_uploads: bool,
    /// Which web pages may read the player endpoint (CORS).
    pub cors: crate::player::CorsPolicy,
}

impl Default for SwarmOptions {
    fn default() -> Self {
        Self {
            upload_slots: 8,
            uploads_per_address: 4,
            upload_rate: None,
            corrupt_uploads: false,
            cors: crate::player::CorsPolicy::default(),
        }
    }
}

/// One swarm as a peer takes part in it.
#[derive(Debug)]
pub struct Swarm {
    id: String,
    local_peer_id: String,
    store: ChunkStore,
    manifest_bytes: Option<Bytes>,
    name: String,
    live: bool,
    options: SwarmOptions,
    upload_slots: Arc<Semaphore>,
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    corrupt_received: AtomicU64,
    banned: AtomicU64,
    peers_known: AtomicU64,
    position: AtomicU64,
    priority_changed: Notify,
    hints_tx: mpsc::UnboundedSender<PeerHint>,
    hints_rx: Mutex<Option<mpsc::UnboundedReceiver<PeerHint>>>,
    seen: Mutex<HashSet<SocketAddr>>,
    next_upload: Mutex<tokio::time::Instant>,
    uploads_by_address: Arc<PerAddress>,
    connections: Arc<AtomicU64>,
    chunks_verified: AtomicU64,
    traffic: Mutex<HashMap<SocketAddr, Traffic>>,
    problem: Mutex<Option<(tokio::time::Instant, String)>>,
}

/// Chunk bytes exchanged with one remote peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes sent to it.
    pub uploaded: u64,
    /// Bytes received from it (verified chunks only).
    pub downloaded: u64,
}

/// An open inbound connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<AtomicU64>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Swarm {
    fn build(
        id: String,
        local_peer_id: &str,
        store: ChunkStore,
        manifest_bytes: Option<Bytes>,
        name: String,
        live: bool,
        options: SwarmOptions,
    ) -> Arc<Self> {
        let (hints_tx, hints_rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            id,
            local_peer_id: local_peer_id.to_owned(),
            store,
            manifest_bytes,
            name,
            live,
            upload_slots: Arc::new(Semaphore::new(options.upload_slots.max(1))),
            options,
            uploaded: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            corrupt_received: AtomicU64::new(0),
            banned: AtomicU64::new(0),
            peers_known: AtomicU64::new(0),
            position: AtomicU64::new(NO_POSITION),
            priority_changed: Notify::new(),
            hints_tx,
            hints_rx: Mutex::new(Some(hints_rx)),
            seen: Mutex::new(HashSet::new()),
            next_upload: Mutex::new(tokio::time::Instant::now()),
            uploads_by_address: Arc::new(PerAddress::default()),
            connections: Arc::new(AtomicU64::new(0)),
            chunks_verified: AtomicU64::new(0),
            traffic: Mutex::new(HashMap::new()),
            problem: Mutex::new(None),
        })
    }

    /// A video-on-demand swarm described by `manifest`, with chunks in `store`.
    pub fn vod(
        local_peer_id: &str,
        manifest: &Manifest,
        store: ChunkStore,
        options: SwarmOptions,
    ) -> Arc<Self> {
        let bytes = manifest.encode();
        Self::build(
            crate::manifest::swarm_id_of(&bytes),
            local_peer_id,
            store,
            Some(Bytes::from(bytes)),
            manifest.name().to_owned(),
            false,
            options,
        )
    }

    /// A live swarm named `id`, whose manifests and chunks arrive in `store`.
    pub fn live(
        local_peer_id: &str,
        id: &str,
        name: &str,
        store: ChunkStore,
        options: SwarmOptions,
    ) -> Arc<Self> {
        Self::build(
            id.to_owned(),
            local_peer_id,
            store,
            None,
            name.to_owned(),
            true,
            options,
        )
    }

    /// The swarm ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// This peer's PeerID.
    pub fn local_peer_id(&self) -> &str {
        &self.local_peer_id
    }

    /// The chunks.
    pub fn store(&self) -> &ChunkStore {
        &self.store
    }

    /// The content's name (a file name for VoD, the stream name for live).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for a live swarm.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The manifest document this peer serves to others.
    pub fn manifest_document(&self) -> Option<Bytes> {
        if self.live {
            self.store.live_manifest().map(|m| m.encoded().clone())
        } else {
            self.manifest_bytes.clone()
        }
    }

    /// Media type for the player endpoint.
    pub fn content_type(&self) -> &'static str {
        let guessed = guess_content_type(&self.name);
        if self.live && guessed == "application/octet-stream" {
            // Live input is most often an MPEG transport stream from an encoder.
            "video/mp2t"
        } else {
            guessed
        }
    }

    pub(crate) fn options(&self) -> &SwarmOptions {
        &self.options
    }

    pub(crate) fn upload_slots(&self) -> &Arc<Semaphore> {
        &self.upload_slots
    }

    /// Chunk bytes sent to other peers.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// Chunk bytes received from other peers.
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// Waits for this upload's turn under [`SwarmOptions::upload_rate`]: each upload
    /// reserves the time its bytes take at that rate, after the previous reservation, and
    /// returns when that time is over.
    pub(crate) async fn pace_upload(&self, len: u64) {
        let Some(rate) = self.options.upload_rate.filter(|r| *r > 0) else {
            return;
        };
        let end = {
            let mut next = self
                .next_upload
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let start = (*next).max(tokio::time::Instant::now());
            *next = start + std::time::Duration::from_secs_f64(len as f64 / rate as f64);
            *next
        };
        // The upload slot stays taken for the time the bytes take at the capped rate.
        tokio::time::sleep_until(end).await;
    }

    /// One of `ip`'s share of upload slots, unless it holds them all.
    pub(crate) fn upload_slot_for(&self, ip: IpAddr) -> Option<AddressSlot> {
        self.uploads_by_address
            .try_take(ip, self.options.uploads_per_address.max(1))
    }

    /// Counts an inbound connection while the returned guard lives.
    pub(crate) fn connection_opened(&self) -> OpenConnection {
        self.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(&self.connections))
    }

    /// Inbound connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    fn add_traffic(&self, peer: SocketAddr, update: impl FnOnce(&mut Traffic)) {
        let mut traffic = self
            .traffic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if traffic.len() >= MAX_REMEMBERED_PEERS && !traffic.contains_key(&peer) {
            return;
        }
        update(traffic.entry(peer).or_default());
    }

    pub(crate) fn add_uploaded(&self, peer: SocketAddr, n: u64) {
        self.uploaded.fetch_add(n, Ordering::Relaxed);
        self.add_traffic(peer, |t| t.uploaded += n);
    }

    pub(crate) fn add_downloaded(&self, peer: SocketAddr, n: u64) {
        self.downloaded.fetch_add(n, Ordering::Relaxed);
        self.add_traffic(peer, |t| t.downloaded += n);
    }

    pub(crate) fn note_verified(&self) {
        self.chunks_verified.fetch_add(1, Ordering::Relaxed);
    }

    /// Chunks received that verified and were stored.
    pub fn chunks_verified(&self) -> u64 {
        self.chunks_verified.load(Ordering::Relaxed)
    }

    /// Chunks received that failed verification.
    pub fn chunks_rejected(&self) -> u64 {
        self.corrupt_received.load(Ordering::Relaxed)
    }

    /// Bytes exchanged with each remote peer (at most a few thousand are remembered).
    pub fn traffic(&self) -> Vec<(SocketAddr, Traffic)> {
        let mut all: Vec<_> = self
            .traffic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(a, t)| (*a, *t))
            .collect();
        all.sort_unstable_by_key(|(a, _)| *a);
        all
    }

    /// Records why the download is not going as it should (a peer failing, a fallback),
    /// for the progress line.
    pub(crate) fn note_problem(&self, problem: String) {
        *self
            .problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((tokio::time::Instant::now(), problem));
    }

    /// The problem the downloader recorded last, if it is at most `within` old.
    pub fn recent_problem(&self, within: std::time::Duration) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|(at, _)| at.elapsed() <= within)
            .map(|(_, text)| text.clone())
    }

    /// The counters in the Prometheus text exposition format (served at `/metrics`).
    pub fn prometheus_text(&self) -> String {
        let mut out = String::new();
        let swarm = &self.id;
        let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{swarm=\"{swarm}\"}} {value}");
        };
        counter(
            "ppsp_peer_uploaded_bytes_total",
            "Chunk bytes sent to other peers.",
            "counter",
            self.uploaded(),
        );
        counter(
            "ppsp_peer_downloaded_bytes_total",
            "Chunk bytes received from other peers.",
            "counter",
            self.downloaded(),
        );
        counter(
            "ppsp_peer_chunks_verified_total",
            "Chunks received whose hash matched.",
            "counter",
            self.chunks_verified(),
        );
        counter(
            "ppsp_peer_chunks_rejected_total",
            "Chunks received whose hash did not match.",
            "counter",
            self.chunks_rejected(),
        );
        counter(
            "ppsp_peer_chunks_held",
            "Chunks this peer holds.",
            "gauge",
            self.store.held(),
        );
        counter(
            "ppsp_peer_peers_connected",
            "Peers the downloader is exchanging with.",
            "gauge",
            self.peers_known(),
        );
        counter(
            "ppsp_peer_inbound_connections",
            "Open connections from other peers.",
            "gauge",
            self.connections_open(),
        );
        counter(
            "ppsp_peer_peers_banned_total",
            "Peers dropped for sending corrupt data.",
            "counter",
            self.peers_banned(),
        );
        let traffic = self.traffic();
        for (name, help, pick) in [
            (
                "ppsp_peer_peer_uploaded_bytes_total",
                "Chunk bytes sent, per remote peer.",
                (|t: &Traffic| t.uploaded) as fn(&Traffic) -> u64,
            ),
            (
                "ppsp_peer_peer_downloaded_bytes_total",
                "Verified chunk bytes received, per remote peer.",
                |t: &Traffic| t.downloaded,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (peer, t) in &traffic {
                let _ = writeln!(
                    out,
                    "{name}{{swarm=\"{swarm}\",peer=\"{peer}\"}} {}",
                    pick(t)
                );
            }
        }
        out
    }

    pub(crate) fn note_corrupt(&self) {
        self.corrupt_received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_banned(&self) {
        self.banned.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_peers_known(&self, n: usize) {
        self.peers_known.store(n as u64, Ordering::Relaxed);
    }

    /// Number of peers the downloader currently knows.
    pub fn peers_known(&self) -> u64 {
        self.peers_known.load(Ordering::Relaxed)
    }

    /// Peers dropped for sending corrupt chunks.
    pub fn peers_banned(&self) -> u64 {
        self.banned.load(Ordering::Relaxed)
    }

    /// The playback position (a chunk index), when something is playing.
    pub fn position(&self) -> Option<u64> {
        let p = self.position.load(Ordering::Relaxed);
        (p != NO_POSITION).then_some(p)
    }

    /// Moves the playback position: the downloader fetches chunks from here on first.
    pub fn set_position(&self, chunk: u64) {
        let old = self.position.swap(chunk, Ordering::Relaxed);
        if old != chunk {
            self.priority_changed.notify_one();
        }
    }

    pub(crate) fn priority_changed(&self) -> &Notify {
        &self.priority_changed
    }

    /// Tells the downloader about a peer (from the tracker or from an inbound request).
    /// Repeated addresses are passed on again only for tracker hints.
    pub fn add_peer(&self, hint: PeerHint) {
        let _ = self.hints_tx.send(hint);
    }

    /// Records a peer that contacted us; passes it on the first time only.
    pub(crate) fn remember_inbound(&self, addr: SocketAddr) {
        let fresh = {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.len() < MAX_REMEMBERED_PEERS && seen.insert(addr)
        };
        if fresh {
            self.add_peer(PeerHint { addr, seed: false });
        }
    }

    pub(crate) fn take_hints(&self) -> Option<mpsc::UnboundedReceiver<PeerHint>> {
        self.hints_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// The counters served at `/ppsp/v1/{swarm}/stats`.
    pub fn stats(&self) -> PeerStats {
        let total = match self.store.vod_manifest() {
            Some(m) => m.chunk_count(),
            None => self.store.live_edge().map_or(0, |(end, _)| end),
        };
        PeerStats {
            peer_id: self.local_peer_id.clone(),
            swarm_id: self.id.clone(),
            uploaded_bytes: self.uploaded(),
            downloaded_bytes: self.downloaded(),
            chunks_held: self.store.held(),
            chunks_total: total,
            peers_known: self.peers_known(),
            peers_banned: self.peers_banned(),
            corrupt_chunks: self.corrupt_received.load(Ordering::Relaxed),
        }
    }
}
