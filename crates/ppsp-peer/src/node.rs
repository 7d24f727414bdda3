//! A whole peer: one swarm, its HTTP server, its downloader and its tracker session.
//!
//! [`Node`] puts the pieces together for the four roles of the `ppsp peer` command: a SEED
//! publishing a file, a LIVESEED publishing a stream, and a LEECH fetching content (to a
//! file, or for a local player). Every constructor takes a listener bound by the caller, so
//! the caller can print its address before the (possibly slow) tracker exchange starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ppsp_proto::{
    ChunkMapReport, ChunkSegments, Clip, MediaType, PeerInfo, PeerMode, Segment, StreamStats,
    SwarmId,
};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::PeerClient;
use crate::engine::{Engine, EngineConfig};
use crate::error::Error;
use crate::manifest::{
    LiveChunk, LiveManifest, LiveSigner, Manifest, SignedLiveManifest, is_live_swarm,
    live_public_key,
};
use crate::server::{DEFAULT_MAX_CONNECTIONS, PeerServer, PlayerServer};
use crate::store::ChunkStore;
use crate::swarm::{PeerHint, Swarm, SwarmOptions};
use crate::tracker_client::{
    ClientConfig, Credentials, PeerStatus, SessionTimers, TrackerClient, TrackerEndpoint,
    TrackerSession,
};

/// The clip name under which chunk maps and start points are reported to the tracker.
pub const CLIP_NAME: &str = "content";

/// Settings of a [`Node`].
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This peer's identity.
    pub peer_id: ppsp_proto::PeerId,
    /// Tracker URLs, best first; empty to run without a tracker (peers from `bootstrap`).
    pub trackers: Vec<String>,
    /// Peers to contact without asking a tracker.
    pub bootstrap: Vec<SocketAddr>,
    /// Upload slots and test hooks.
    pub swarm: SwarmOptions,
    /// Downloader tuning.
    pub engine: EngineConfig,
    /// Chunk size for content this node publishes.
    pub chunk_size: u32,
    /// How often a leech asks the tracker for more peers (FIND).
    pub find_interval: Duration,
    /// STAT_REPORT and KEEPALIVE periods.
    pub session: SessionTimers,
    /// How long a leech looks for a peer that serves the manifest.
    pub manifest_timeout: Duration,
    /// Longest wait for one answer from another peer.
    pub peer_timeout: Duration,
    /// Live source: longest wait before a partly filled chunk is published anyway.
    pub live_flush: Duration,
    /// Live source: chunks listed in each manifest update.
    pub live_window: usize,
    /// Name given to published content (for the player's media type); taken from the file
    /// name when publishing a file.
    pub name: Option<String>,
    /// SASL credentials for CONNECT (ANONYMOUS by default; PLAIN for trackers with accounts).
    pub credentials: Credentials,
    /// A STUN server (`host:port` or `stun:host:port`) to learn this peer's public mapping
    /// from; the mapping is declared to the tracker as a REFLEXIVE address.
    pub stun: Option<String>,
    /// Extra trust anchors for `https://` trackers (for example a private CA).
    pub tls_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Replace an existing [`Output::File`] that is not the swarm's content (otherwise
    /// joining fails with [`Error::OutputExists`]).
    pub overwrite: bool,
}

impl NodeConfig {
    /// Defaults for a peer using the given trackers.
    pub fn new(trackers: Vec<String>) -> Self {
        Self {
            peer_id: crate::random_peer_id(),
            trackers,
            bootstrap: Vec::new(),
            swarm: SwarmOptions::default(),
            engine: EngineConfig::default(),
            chunk_size: crate::manifest::DEFAULT_CHUNK_SIZE,
            find_interval: Duration::from_secs(5),
            session: SessionTimers::default(),
            manifest_timeout: Duration::from_secs(60),
            peer_timeout: Duration::from_secs(15),
            live_flush: Duration::from_millis(250),
            live_window: 64,
            name: None,
            credentials: Credentials::Anonymous { trace: None },
            stun: None,
            tls_roots: Vec::new(),
            overwrite: false,
        }
    }
}

/// Where a leech keeps VoD content.
#[derive(Clone, Debug)]
pub enum Output {
    /// Write the content to this file (through `FILE.part`, renamed when complete).
    File(PathBuf),
    /// A scratch file in the system's temporary directory, deleted at exit.
    Scratch,
}

/// A running peer. See the module documentation.
pub struct Node {
    swarm: Arc<Swarm>,
    server: PeerServer,
    player: Option<PlayerServer>,
    tracker: Option<TrackerClient>,
    session: Option<TrackerSession>,
    stop: watch::Sender<bool>,
    engine: Option<JoinHandle<Result<(), Error>>>,
    background: Vec<JoinHandle<()>>,
    output: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("swarm", &self.swarm.id())
            .field("listen", &self.server.local_addr())
            .finish_non_exhaustive()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.background {
            task.abort();
        }
        if let Some(engine) = &self.engine {
            engine.abort();
        }
    }
}

/// Checks a swarm ID given on the command line before anything is sent: a VoD ID is the
/// 64-digit lower-case hex SHA-256 of its manifest and a live one is `live-` and the
/// source's 64-digit hex key, so anything else (a typo, a truncated paste) can never be
/// served and would otherwise only fail after the manifest search times out.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the ID when it has neither form.
pub fn parse_swarm_id(text: &str) -> Result<SwarmId, Error> {
    let well_formed = if is_live_swarm(text) {
        live_public_key(text).is_ok()
    } else {
        text.len() == 64 && text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !well_formed {
        return Err(Error::InvalidArgument(format!(
            "swarm ID {text:?} is neither 64 lower-case hex digits (a file) \
             nor live- and 64 hex digits (a live stream)"
        )));
    }
    SwarmId::new(text).map_err(|e| Error::InvalidArgument(format!("swarm ID {text:?}: {e}")))
}

/// Peer endpoints listed in a tracker answer: the first (best) address of each peer, so
/// that one peer is not counted as several.
fn hints_of(peers: &[PeerInfo]) -> Vec<PeerHint> {
    peers
        .iter()
        .filter_map(|p| {
            let a = p.addresses.first()?;
            Some(PeerHint {
                addr: SocketAddr::new(a.ip, a.port),
                seed: p.mode.is_some_and(PeerMode::is_seed),
            })
        })
        .collect()
}

async fn tracker_client(
    config: &NodeConfig,
    local: SocketAddr,
) -> Result<Option<TrackerClient>, Error> {
    if config.trackers.is_empty() {
        return Ok(None);
    }
    let endpoints = config
        .trackers
        .iter()
        .enumerate()
        .map(|(i, url)| TrackerEndpoint::new(url.clone()).with_tier(i as u32 + 1))
        .collect();
    let mut client_config = ClientConfig::new(config.peer_id.clone(), endpoints);
    client_config.credentials = config.credentials.clone();
    client_config.tls_roots = config.tls_roots.clone();
    let client = TrackerClient::new(client_config)?;
    let addresses = client
        .gather_addresses(
            local,
            config.stun.as_deref(),
            &crate::nat::StunTiming::default(),
        )
        .await;
    tracing::debug!(?addresses, "declaring addresses");
    client.connect().await?;
    Ok(Some(client))
}

/// Publishes the swarm's chunk map and counters to the tracker session every second.
fn spawn_status(swarm: Arc<Swarm>, tx: watch::Sender<PeerStatus>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let status = status_of(&swarm);
            tx.send_if_modified(|current| {
                if *current == status {
                    false
                } else {
                    *current = status;
                    true
                }
            });
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

fn status_of(swarm: &Swarm) -> PeerStatus {
    let Ok(id) = SwarmId::new(swarm.id()) else {
        return PeerStatus::default();
    };
    let map = swarm.store().chunk_map();
    let chunk_maps = if map.is_empty() {
        Vec::new()
    } else {
        vec![ChunkMapReport {
            swarm_id: id.clone(),
            clips: vec![Clip {
                name: CLIP_NAME.to_owned(),
                kind: None,
                chunk_segment_index: None,
                segments: Some(ChunkSegments {
                    media: MediaType::Video,
                    segments: vec![Segment::with_map(map)],
                }),
            }],
        }]
    };
    PeerStatus {
        chunk_maps,
        stream_stats: vec![StreamStats {
            swarm_id: Some(id),
            uploaded_bytes: Some(swarm.uploaded()),
            downloaded_bytes: Some(swarm.downloaded()),
            available_bandwidth: None,
            concurrent_links: Some(swarm.peers_known()),
        }],
        nat: None,
        stun: None,
    }
}

impl Node {
    fn assemble(
        swarm: Arc<Swarm>,
        server: PeerServer,
        tracker: Option<TrackerClient>,
        config: &NodeConfig,
    ) -> Self {
        let mut background = Vec::new();
        let session = tracker.as_ref().map(|client| {
            let (tx, rx) = watch::channel(status_of(&swarm));
            background.push(spawn_status(Arc::clone(&swarm), tx));
            TrackerSession::spawn(client.clone(), rx, config.session.clone())
        });
        let (stop, _) = watch::channel(false);
        Self {
            swarm,
            server,
            player: None,
            tracker,
            session,
            stop,
            engine: None,
            background,
            output: None,
        }
    }

    /// Publishes the file at `path` as a new VoD swarm and serves it (peer mode SEED). A
    /// directory is published as one swarm whose manifest lists every file under it.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::Tracker`] when the tracker
    /// refuses or cannot be reached.
    pub async fn seed_file(
        config: &NodeConfig,
        listener: TcpListener,
        path: &Path,
    ) -> Result<Self, Error> {
        let name = config.name.clone().unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let chunk_size = config.chunk_size;
        let file_path = path.to_path_buf();
        let manifest = tokio::task::spawn_blocking(move || {
            if file_path.is_dir() {
                return Manifest::from_dir(&name, chunk_size, &file_path).map(|(m, _)| m);
            }
            let mut file = std::io::BufReader::new(
                std::fs::File::open(&file_path)
                    .map_err(|e| Error::io(format!("opening {}", file_path.display()), e))?,
            );
            Manifest::from_reader(&name, chunk_size, &mut file)
        })
        .await
        .map_err(|e| Error::io("hashing the content", std::io::Error::other(e)))??;
        let manifest = Arc::new(manifest);
        let store = ChunkStore::open_seed(path, Arc::clone(&manifest))?;
        let swarm = Swarm::vod(
            config.peer_id.as_str(),
            &manifest,
            store,
            config.swarm.clone(),
        );
        Self::publish(config, listener, swarm, PeerMode::Seed).await
    }

    async fn publish(
        config: &NodeConfig,
        listener: TcpListener,
        swarm: Arc<Swarm>,
        mode: PeerMode,
    ) -> Result<Self, Error> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        let server =
            PeerServer::from_listener(listener, Arc::clone(&swarm), DEFAULT_MAX_CONNECTIONS)?;
        let tracker = tracker_client(config, local).await?;
        if let Some(client) = &tracker {
            client.join_swarm(parse_swarm_id(swarm.id())?, mode).await?;
        }
        tracing::info!(swarm = swarm.id(), %local, ?mode, "publishing");
        Ok(Self::assemble(swarm, server, tracker, config))
    }

    /// Publishes a live stream read from `input` (peer mode LIVESEED). The swarm ID is
    /// known as soon as this returns; chunks are published as they are read.
    ///
    /// # Errors
    /// [`Error::Tracker`] when the tracker refuses or cannot be reached.
    pub async fn live_source(
        config: &NodeConfig,
        listener: TcpListener,
        input: impl AsyncRead + Send + Unpin + 'static,
    ) -> Result<Self, Error> {
        let (mut node, signer, template) = Self::start_live(config, listener, "live.ts").await?;
        let source = LiveSource {
            swarm: Arc::clone(&node.swarm),
            signer,
            manifest: template,
            window: config.live_window.max(1),
            flush: config.live_flush,
        };
        node.background.push(tokio::spawn(async move {
            if let Err(err) = source.run(input).await {
                tracing::error!(%err, "live source stopped");
            }
        }));
        Ok(node)
    }

    /// Publishes, as a live swarm (peer mode LIVESEED), the HLS output an encoder keeps
    /// writing into `dir`: each segment as soon as a playlist lists it, with a signed live
    /// index that viewers turn back into playlists (see [`crate::hls_live`]).
    ///
    /// # Errors
    /// [`Error::Tracker`] when the tracker refuses or cannot be reached,
    /// [`Error::InvalidArgument`] when `dir` is not a directory.
    pub async fn live_hls_source(
        config: &NodeConfig,
        listener: TcpListener,
        dir: &Path,
    ) -> Result<Self, Error> {
        if !dir.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let (mut node, signer, template) = Self::start_live(config, listener, "index.m3u8").await?;
        let publisher =
            crate::hls_live::HlsPublisher::new(Arc::clone(&node.swarm), signer, template, dir);
        node.background.push(tokio::spawn(async move {
            if let Err(err) = publisher.run().await {
                tracing::error!(%err, "live HLS source stopped");
            }
        }));
        Ok(node)
    }

    /// A new live swarm with its empty first manifest, published to the tracker.
    async fn start_live(
        config: &NodeConfig,
        listener: TcpListener,
        default_name: &str,
    ) -> Result<(Self, LiveSigner, LiveManifest), Error> {
        let limits = crate::manifest::MIN_CHUNK_SIZE..=crate::manifest::MAX_CHUNK_SIZE;
        if !limits.contains(&config.chunk_size) {
            return Err(Error::InvalidArgument(format!(
                "chunk size {} is outside {limits:?}",
                config.chunk_size
            )));
        }
        let signer = LiveSigner::generate()?;
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| default_name.to_owned());
        let template = LiveManifest {
            public_key: signer.public_key(),
            name: crate::manifest::sanitize_name(&name),
            chunk_size: config.chunk_size,
            sequence: 0,
            first: 0,
            chunks: Vec::new(),
            ended: false,
            hls: None,
        };
        let store = ChunkStore::live();
        store.offer_live_manifest(signer.sign(&template)?);
        let swarm = Swarm::live(
            config.peer_id.as_str(),
            &template.swarm_id(),
            &template.name,
            store,
            config.swarm.clone(),
        );
        let node = Self::publish(config, listener, swarm, PeerMode::LiveSeed).await?;
        Ok((node, signer, template))
    }

    /// Joins `swarm` as a LEECH, fetches and verifies its manifest, and starts fetching
    /// chunks (to `output` for VoD; live chunks stay in memory). Serves what it has to
    /// other peers meanwhile.
    ///
    /// # Errors
    /// [`Error::Tracker`] when the tracker refuses or cannot be reached, [`Error::Swarm`]
    /// when no peer serves a valid manifest in time, [`Error::Io`] for the output file.
    pub async fn leech(
        config: &NodeConfig,
        listener: TcpListener,
        swarm: &str,
        output: Output,
    ) -> Result<Self, Error> {
        Self::leech_until(config, listener, swarm, output, std::future::pending()).await
    }

    /// [`Node::leech`], abandoned when `stop` completes first (Ctrl-C while the manifest is
    /// still being searched for).
    ///
    /// Whenever joining does not produce a node (stopped, no manifest in time, a bad
    /// manifest, an unwritable output) the tracker session already opened is closed with
    /// LEAVE and DISCONNECT, so the tracker does not list a peer that is gone until its
    /// session expires.
    ///
    /// # Errors
    /// As [`Node::leech`], and [`Error::Interrupted`] when `stop` completes first.
    pub async fn leech_until(
        config: &NodeConfig,
        listener: TcpListener,
        swarm: &str,
        output: Output,
        stop: impl Future<Output = ()>,
    ) -> Result<Self, Error> {
        let id = parse_swarm_id(swarm)?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        tokio::pin!(stop);
        let tracker = tokio::select! {
            tracker = tracker_client(config, local) => tracker?,
            () = &mut stop => return Err(Error::Interrupted),
        };
        let joining =
            Self::leech_joined(config, listener, swarm, &id, local, tracker.clone(), output);
        let result = tokio::select! {
            result = joining => result,
            () = &mut stop => Err(Error::Interrupted),
        };
        if result.is_err() {
            if let Some(client) = tracker {
                let closing = async {
                    if let Err(err) = client.leave(&id).await {
                        tracing::debug!(%err, "LEAVE after a failed join");
                    }
                    if let Err(err) = client.disconnect().await {
                        tracing::debug!(%err, "DISCONNECT after a failed join");
                    }
                };
                // Bounded, so a vanished tracker cannot hold up reporting the error.
                if tokio::time::timeout(Duration::from_secs(10), closing)
                    .await
                    .is_err()
                {
                    tracing::warn!("the tracker did not answer LEAVE/DISCONNECT in time");
                }
            }
        }
        result
    }

    /// The part of [`Node::leech_until`] after CONNECT: JOIN, manifest, store, engine.
    async fn leech_joined(
        config: &NodeConfig,
        listener: TcpListener,
        swarm: &str,
        id: &SwarmId,
        local: SocketAddr,
        tracker: Option<TrackerClient>,
        output: Output,
    ) -> Result<Self, Error> {
        let id = id.clone();
        let mut hints: Vec<PeerHint> = config
            .bootstrap
            .iter()
            .map(|addr| PeerHint {
                addr: *addr,
                seed: false,
            })
            .collect();
        if let Some(client) = &tracker {
            hints.extend(hints_of(
                &client.join_swarm(id.clone(), PeerMode::Leech).await?,
            ));
        }
        let client = PeerClient::new(
            Some(&local.port().to_string()),
            Some(config.peer_id.as_str()),
            config.peer_timeout,
        );
        let live = is_live_swarm(swarm);
        let document =
            fetch_manifest(&client, tracker.as_ref(), &id, &mut hints, config, local).await?;
        let (swarm_state, output) = if live {
            let signed = SignedLiveManifest::decode_verified(&document, swarm)?;
            let name = signed.manifest().name.clone();
            // Start just behind the live edge, and tell the tracker so (JOIN with a start
            // chunk) so that it lists peers holding chunks from there on.
            let start = signed
                .manifest()
                .end()
                .saturating_sub(config.engine.live_start_behind)
                .max(signed.manifest().first);
            let store = ChunkStore::live();
            store.offer_live_manifest(signed);
            if let Some(client) = &tracker {
                match client.join(live_join(&id, start)).await {
                    Ok(peers) => hints.extend(hints_of(&peers)),
                    Err(err) => tracing::warn!(%err, "JOIN with a start chunk failed"),
                }
            }
            let state = Swarm::live(
                config.peer_id.as_str(),
                swarm,
                &name,
                store,
                config.swarm.clone(),
            );
            state.set_position(start);
            (state, None)
        } else {
            let manifest = Arc::new(Manifest::decode_verified(&document, swarm)?);
            let (store, output) =
                vod_store(swarm, Arc::clone(&manifest), output, config.overwrite).await?;
            (
                Swarm::vod(
                    config.peer_id.as_str(),
                    &manifest,
                    store,
                    config.swarm.clone(),
                ),
                output,
            )
        };
        let server =
            PeerServer::from_listener(listener, Arc::clone(&swarm_state), DEFAULT_MAX_CONNECTIONS)?;
        for hint in hints {
            swarm_state.add_peer(hint);
        }
        let mut node = Self::assemble(Arc::clone(&swarm_state), server, tracker.clone(), config);
        node.output = output;
        let own = [local];
        let engine = Engine::new(Arc::clone(&swarm_state), client, config.engine.clone(), own);
        node.engine = Some(tokio::spawn(engine.run(node.stop.subscribe())));
        if let Some(client) = tracker {
            let every = config.find_interval;
            let swarm_state = Arc::clone(&swarm_state);
            node.background.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match client.find_peers(id.clone()).await {
                        Ok(peers) => {
                            for hint in hints_of(&peers) {
                                swarm_state.add_peer(hint);
                            }
                        }
                        Err(err) => tracing::debug!(%err, "FIND failed"),
                    }
                }
            }));
        }
        Ok(node)
    }

    /// The swarm.
    pub fn swarm(&self) -> &Arc<Swarm> {
        &self.swarm
    }

    /// The address of the peer endpoint (what other peers fetch from).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves the content to local media players on `listener`, a listener of its own:
    /// other peers only ever reach the peer endpoint.
    ///
    /// # Errors
    /// [`Error::Io`] when the listener's address cannot be read.
    pub fn serve_player(&mut self, listener: TcpListener) -> Result<SocketAddr, Error> {
        let player = PlayerServer::from_listener(listener, Arc::clone(&self.swarm))?;
        let addr = player.local_addr();
        self.player = Some(player);
        Ok(addr)
    }

    /// Returns once the published content is gone (the file removed or resized, or no
    /// chunk verifying any more), with the reason; never for content still there. Checked
    /// every two seconds.
    pub async fn content_lost(&self) -> Error {
        loop {
            if let Err(err) = self.swarm.store().check_content() {
                return err;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// The tracker client, when the node uses a tracker.
    pub fn tracker(&self) -> Option<&TrackerClient> {
        self.tracker.as_ref()
    }

    /// Waits until the download is complete and, for [`Output::File`], the file is in
    /// place. Returns at once for a node that does not download.
    ///
    /// # Errors
    /// What stopped the downloader, or [`Error::Io`] when the file cannot be renamed.
    pub async fn wait_complete(&mut self) -> Result<(), Error> {
        if let Some(engine) = self.engine.take() {
            engine
                .await
                .map_err(|e| Error::Swarm(format!("downloader failed: {e}")))??;
        }
        if !self.swarm.is_live()
            && self.swarm.store().is_complete()
            && let Some((part, path)) = self.output.take()
        {
            // A directory in the way was allowed to be replaced (otherwise joining would
            // have refused it); an empty one is simply replaced by the rename.
            if part.is_dir()
                && path.is_dir()
                && std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_some())
            {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| Error::io(format!("replacing {}", path.display()), e))?;
            }
            std::fs::rename(&part, &path).map_err(|e| {
                Error::io(
                    format!("renaming {} to {}", part.display(), path.display()),
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// Stops downloading, then LEAVEs the swarm and DISCONNECTs from the tracker.
    ///
    /// # Errors
    /// [`Error::Tracker`] when the closing requests fail.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        if let Some(engine) = self.engine.take() {
            engine.abort();
        }
        for task in self.background.drain(..) {
            task.abort();
        }
        if let Some(session) = self.session.take() {
            session.shutdown().await?;
        }
        Ok(())
    }
}

/// The store a VoD leech fetches into, and the (partial, final) paths to rename at the
/// end. An [`Output::File`] resumes from its `.part` file; when the file itself already
/// holds the verified content it is used as it is and nothing is fetched; any other
/// existing file is refused unless `overwrite`.
async fn vod_store(
    swarm: &str,
    manifest: Arc<Manifest>,
    output: Output,
    overwrite: bool,
) -> Result<(ChunkStore, Option<(PathBuf, PathBuf)>), Error> {
    let path = match output {
        Output::File(path) => path,
        Output::Scratch => {
            // A directory's files go into a scratch folder of that name.
            let scratch = std::env::temp_dir().join(format!(
                "ppsp-{}-{:016x}.part",
                swarm
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(16)
                    .collect::<String>(),
                crate::random_u64()
            ));
            let store = ChunkStore::create_leech(&scratch, manifest, true)?;
            return Ok((store, None));
        }
    };
    let mut part = path.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let blocking = move || -> Result<(ChunkStore, Option<(PathBuf, PathBuf)>), Error> {
        let chunks = manifest.chunk_count();
        if path.is_dir() && !manifest.is_directory() {
            return Err(Error::InvalidArgument(format!(
                "{} is a directory and the swarm is one file; give a file name",
                path.display()
            )));
        }
        match crate::store::verify_existing(&path, &manifest)? {
            Some(held) if held == chunks => {
                tracing::info!(path = %path.display(), "the output already holds the verified content");
                return Ok((ChunkStore::open_seed(&path, manifest)?, None));
            }
            Some(_) if !overwrite => return Err(Error::OutputExists { path }),
            Some(_) | None => {}
        }
        let store = ChunkStore::resume_leech(&part, manifest)?;
        if store.held() > 0 {
            tracing::info!(
                path = %part.display(),
                held = store.held(),
                chunks,
                "resuming: chunks already in the partial file verified"
            );
        }
        Ok((store, Some((part, path))))
    };
    tokio::task::spawn_blocking(blocking)
        .await
        .map_err(|e| Error::io("checking the output", std::io::Error::other(e)))?
}

/// A LEECH JOIN of a live swarm starting at chunk `start`.
fn live_join(id: &SwarmId, start: u64) -> ppsp_proto::Join {
    ppsp_proto::Join {
        swarm_id: id.clone(),
        mode: PeerMode::Leech,
        hints: ppsp_proto::NatHints::default(),
        peer_num: None,
        clip: Some(Clip {
            name: CLIP_NAME.to_owned(),
            kind: None,
            chunk_segment_index: None,
            segments: Some(ChunkSegments {
                media: MediaType::Video,
                segments: vec![Segment::range(start, None)],
            }),
        }),
        expire_time: 0,
    }
}

/// Peers asked for the manifest at once.
const MANIFEST_PARALLEL: usize = 4;

/// Asks the known peers for the manifest, [`MANIFEST_PARALLEL`] at a time (seeds first),
/// until one serves a document that verifies against the swarm ID. A peer that serves a
/// bad one is not asked again; between rounds the tracker is asked for more peers.
async fn fetch_manifest(
    client: &PeerClient,
    tracker: Option<&TrackerClient>,
    id: &SwarmId,
    hints: &mut Vec<PeerHint>,
    config: &NodeConfig,
    local: SocketAddr,
) -> Result<Bytes, Error> {
    let deadline = tokio::time::Instant::now() + config.manifest_timeout;
    let live = is_live_swarm(id.as_str());
    let mut banned: std::collections::HashSet<SocketAddr> = std::collections::HashSet::new();
    let mut announced = false;
    loop {
        // Seeds first: they certainly hold the manifest.
        hints.sort_by_key(|h| !h.seed);
        // A peer listed many times is asked once.
        let mut seen = std::collections::HashSet::new();
        let mut candidates = hints
            .iter()
            .map(|h| h.addr)
            .filter(|a| *a != local && !banned.contains(a) && seen.insert(*a))
            .collect::<Vec<_>>()
            .into_iter();
        if !announced {
            tracing::info!(
                peers = candidates.len(),
                timeout_secs = config.manifest_timeout.as_secs(),
                "looking for a peer that serves the manifest"
            );
            announced = true;
        }
        let mut asking = tokio::task::JoinSet::new();
        loop {
            while asking.len() < MANIFEST_PARALLEL {
                let Some(addr) = candidates.next() else { break };
                let client = client.clone();
                let swarm = id.as_str().to_owned();
                asking.spawn(async move { (addr, client.manifest(addr, &swarm).await) });
            }
            let Ok(Some(joined)) = tokio::time::timeout_at(deadline, asking.join_next()).await
            else {
                break;
            };
            let Ok((addr, answer)) = joined else { continue };
            match answer {
                Ok(bytes) => {
                    let valid = if live {
                        SignedLiveManifest::decode_verified(&bytes, id.as_str()).map(|_| ())
                    } else {
                        Manifest::decode_verified(&bytes, id.as_str()).map(|_| ())
                    };
                    match valid {
                        Ok(()) => return Ok(bytes),
                        Err(err) => {
                            tracing::warn!(peer = %addr, %err, "ignoring a peer that sent a bad manifest");
                            banned.insert(addr);
                        }
                    }
                }
                Err(err) => tracing::debug!(peer = %addr, %err, "no manifest from peer"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Swarm(format!(
                "no peer served a valid manifest for {id} within {:?}",
                config.manifest_timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(tracker) = tracker {
            match tracker.find_peers(id.clone()).await {
                Ok(peers) => {
                    for hint in hints_of(&peers) {
                        if !hints.contains(&hint) {
                            hints.push(hint);
                        }
                    }
                }
                Err(err) => tracing::debug!(%err, "FIND failed"),
            }
        }
    }
}

/// The LIVESEED's chunker: cuts the input into chunks and signs each manifest update.
struct LiveSource {
    swarm: Arc<Swarm>,
    signer: LiveSigner,
    manifest: LiveManifest,
    window: usize,
    flush: Duration,
}

impl LiveSource {
    async fn run(mut self, mut input: impl AsyncRead + Unpin) -> Result<(), Error> {
        let size = self.manifest.chunk_size as usize;
        let mut buf = vec![0u8; size];
        let mut filled = 0usize;
        let mut started: Option<tokio::time::Instant> = None;
        loop {
            let read = match started {
                Some(at) => {
                    match tokio::time::timeout_at(at + self.flush, input.read(&mut buf[filled..]))
                        .await
                    {
                        Ok(read) => read,
                        Err(_) => {
                            // The input is slow: publish what there is to keep latency low.
                            self.publish(Bytes::copy_from_slice(&buf[..filled])).await?;
                            filled = 0;
                            started = None;
                            continue;
                        }
                    }
                }
                None => input.read(&mut buf[filled..]).await,
            };
            let n = read.map_err(|e| Error::io("reading the live input", e))?;
            if n == 0 {
                if filled > 0 {
                    self.publish(Bytes::copy_from_slice(&buf[..filled])).await?;
                }
                self.manifest.ended = true;
                self.manifest.sequence += 1;
                self.swarm
                    .store()
                    .offer_live_manifest(self.signer.sign(&self.manifest)?);
                tracing::info!(chunks = self.manifest.end(), "live input ended");
                return Ok(());
            }
            filled += n;
            started.get_or_insert_with(tokio::time::Instant::now);
            if filled == size {
                self.publish(Bytes::copy_from_slice(&buf)).await?;
                filled = 0;
                started = None;
            }
        }
    }

    async fn publish(&mut self, data: Bytes) -> Result<(), Error> {
        let index = self.manifest.end();
        self.manifest.chunks.push(LiveChunk {
            len: data.len() as u32,
            hash: crate::manifest::hash_chunk(&data),
        });
        if self.manifest.chunks.len() > self.window {
            let excess = self.manifest.chunks.len() - self.window;
            self.manifest.chunks.drain(..excess);
            self.manifest.first += excess as u64;
        }
        self.manifest.sequence += 1;
        let signed = self.signer.sign(&self.manifest)?;
        let store = self.swarm.store();
        store.offer_live_manifest(signed);
        // Verified like any other chunk: the hash was just put in the manifest.
        store.put(index, data).await?;
        tracing::debug!(index, "live chunk published");
        Ok(())
    }
}

#[cfg(test)]
mod swarm_id_tests {
    use super::parse_swarm_id as swarm_id;

    #[test]
    fn accepts_vod_and_live_ids() {
        let hex = "a69decaef9f550e6c10f88785d1f56ba6b6ace5ca4c51ba202be55e05a9a1384";
        assert!(swarm_id(hex).is_ok());
        assert!(swarm_id(&format!("live-{hex}")).is_ok());
    }

    #[test]
    fn refuses_malformed_ids() {
        let hex = "a69decaef9f550e6c10f88785d1f56ba6b6ace5ca4c51ba202be55e05a9a1384";
        for bad in [
            "zzz".to_owned(),
            String::new(),
            hex[..63].to_owned(),
            hex.to_uppercase(),
            format!("{hex}0"),
            "live-".to_owned(),
            format!("live-{}", &hex[..62]),
            format!("live-{}", hex.replace('a', "g")),
        ] {
            assert!(swarm_id(&bad).is_err(), "{bad:?} was accepted");
        }
    }
}
