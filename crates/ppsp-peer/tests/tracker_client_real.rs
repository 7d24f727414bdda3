//! The tracker client against the real tracker (`ppsp_server` in process, on 127.0.0.1:0):
//! every method, address declaration with the tracker's STUN service, session expiry
//! recovered by re-CONNECT, failover from a dead tier, and the background session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ppsp_peer::nat::StunTiming;
use ppsp_peer::tracker_client::{
    ClientConfig, PeerStatus, SessionTimers, TrackerClient, TrackerEndpoint, TrackerSession,
};
use ppsp_proto::{
    AddressType, ChunkMap, ChunkMapReport, ChunkSegments, Clip, Find, MediaType, NatHints, PeerId,
    PeerMode, Segment, Stat, StatReport, Status, StreamStats, SwarmId,
};
use ppsp_server::ppsp_tracker_core::block_on_ready;
use ppsp_server::{Listeners, Server, ServerConfig};
use tokio::sync::oneshot;
use tokio::sync::watch;
use tokio::time::Instant;

/// What the tests read from the tracker's snapshot about one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PeerView {
    swarm: String,
    peer: String,
    mode: PeerMode,
    uploaded_bytes: u64,
    chunks_held: u64,
    behind_nat: Option<bool>,
    stun: Option<bool>,
}

type SnapshotFn = Box<dyn Fn() -> (usize, Vec<PeerView>) + Send + Sync>;

struct RealTracker {
    url: String,
    stun: SocketAddr,
    /// Sessions and per-swarm peers, read from the tracker's own snapshot.
    view: SnapshotFn,
    _stop: oneshot::Sender<()>,
}

impl RealTracker {
    async fn start(change: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig::default();
        config.server.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        config.stun.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.server.sweep_interval_ms = 50;
        change(&mut config);
        let listeners = Listeners::bind(&config).await.expect("bind");
        let http = listeners.http[0].local_addr().expect("address");
        let stun = listeners
            .stun
            .as_ref()
            .expect("STUN socket")
            .local_addr()
            .expect("address");
        let server = Server::new(config).expect("server");
        let tracker = Arc::clone(server.tracker());
        let view: SnapshotFn = Box::new(move || {
            let now = ppsp_server::ppsp_tracker_core::Timestamp::now();
            let sessions = block_on_ready(tracker.totals()).expect("totals").sessions as usize;
            let query = ppsp_server::ppsp_tracker_core::SwarmQuery {
                offset: 0,
                limit: usize::MAX,
                filter: None,
            };
            let page = block_on_ready(tracker.swarms(now, &query)).expect("swarms");
            let peers = page
                .swarms
                .iter()
                .filter_map(|s| {
                    block_on_ready(tracker.swarm(now, &s.swarm_id, 0, usize::MAX)).ok()?
                })
                .flat_map(|swarm| {
                    let id = swarm.summary.swarm_id.to_string();
                    swarm.peers.into_iter().map(move |peer| PeerView {
                        swarm: id.clone(),
                        peer: peer.peer_id.to_string(),
                        mode: peer.mode,
                        uploaded_bytes: peer.uploaded_bytes,
                        chunks_held: peer.chunks_held,
                        behind_nat: peer.behind_nat,
                        stun: peer.stun,
                    })
                })
                .collect();
            (sessions, peers)
        });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.serve(listeners, async move {
            let _ = stopped.await;
        }));
        Self {
            url: format!("http://{http}"),
            stun,
            view,
            _stop: stop,
        }
    }

    fn sessions(&self) -> usize {
        (self.view)().0
    }

    fn peer(&self, swarm: &str, peer: &str) -> Option<PeerView> {
        (self.view)()
            .1
            .into_iter()
            .find(|view| view.swarm == swarm && view.peer == peer)
    }
}

fn client(peer: &str, trackers: Vec<TrackerEndpoint>) -> TrackerClient {
    let mut config = ClientConfig::new(PeerId::new(peer).expect("id"), trackers);
    config.request_timeout = Duration::from_secs(2);
    config.retransmit_backoff = vec![Duration::from_millis(50), Duration::from_millis(100)];
    config.overload_wait = Duration::from_millis(100);
    TrackerClient::new(config).expect("client")
}

fn swarm(name: &str) -> SwarmId {
    SwarmId::new(name).expect("swarm id")
}

fn chunk_map_report(swarm_id: &SwarmId, held: std::ops::Range<u64>, len: u64) -> ChunkMapReport {
    let mut map = ChunkMap::new(0, len);
    for chunk in held {
        map.insert(chunk);
    }
    ChunkMapReport {
        swarm_id: swarm_id.clone(),
        clips: vec![Clip {
            name: "main".to_owned(),
            kind: None,
            chunk_segment_index: None,
            segments: Some(ChunkSegments {
                media: MediaType::Video,
                segments: vec![Segment::with_map(map)],
            }),
        }],
    }
}

fn fast_stun() -> StunTiming {
    StunTiming {
        initial_rto: Duration::from_millis(100),
        max_transmissions: 4,
        final_wait_factor: 4,
        overall_limit: Duration::from_secs(3),
    }
}

#[tokio::test]
async fn full_conversation_with_the_real_tracker() {
    let tracker = RealTracker::start(|_| {}).await;
    let seed = client("seed-peer", vec![TrackerEndpoint::new(tracker.url.clone())]);
    let leech = client(
        "leech-peer",
        vec![TrackerEndpoint::new(tracker.url.clone())],
    );

    // Declare addresses: a HOST candidate for the listen address, and the tracker's STUN
    // service confirms the mapping (on loopback it equals the HOST candidate, so no
    // separate REFLEXIVE entry is needed) and turns the STUN flag on.
    let listen = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
    let listen_address = listen.local_addr().expect("address");
    drop(listen);
    let stun_url = format!("stun://{}", tracker.stun);
    let declared = seed
        .gather_addresses(listen_address, Some(&stun_url), &fast_stun())
        .await;
    assert_eq!(declared.len(), 1, "{declared:?}");
    assert_eq!(declared[0].ip, listen_address.ip());
    assert_eq!(declared[0].port, listen_address.port());
    assert_eq!(declared[0].kind, Some(AddressType::Host));
    assert_eq!(seed.nat_hints().stun, Some(true));

    // CONNECT: the tracker reports the observed address; 127.0.0.1 was declared, so no NAT.
    let info = seed.connect().await.expect("connect");
    assert_eq!(info.tracker, tracker.url);
    assert_eq!(info.reflexive_addresses.len(), 1);
    assert_eq!(info.reflexive_addresses[0].ip.to_string(), "127.0.0.1");
    assert_eq!(info.behind_nat, Some(false));
    assert_eq!(
        seed.nat_hints(),
        NatHints {
            nat: Some(false),
            stun: Some(true)
        }
    );

    // JOIN as SEED: no list. JOIN as LEECH (connects implicitly): the seed is offered.
    let movie = swarm("movie");
    assert!(
        seed.join_swarm(movie.clone(), PeerMode::Seed)
            .await
            .expect("seed joins")
            .is_empty()
    );
    let offered = leech
        .join_swarm(movie.clone(), PeerMode::Leech)
        .await
        .expect("leech joins");
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0].peer_id.as_str(), "seed-peer");
    assert!(
        offered[0]
            .addresses
            .iter()
            .any(|a| a.port == listen_address.port())
    );
    assert_eq!(tracker.sessions(), 2);

    // STAT_REPORT: chunk map, stream statistics and the NAT/STUN flags reach the tracker.
    leech
        .stat_report(StatReport {
            stats: vec![
                Stat::ChunkMap(chunk_map_report(&movie, 0..10, 100)),
                Stat::StreamStats(StreamStats {
                    swarm_id: Some(movie.clone()),
                    uploaded_bytes: Some(4096),
                    downloaded_bytes: Some(8192),
                    available_bandwidth: Some(1_000_000),
                    concurrent_links: None,
                }),
                Stat::Stun(false),
            ],
        })
        .await
        .expect("stat report");
    let view = tracker
        .peer("movie", "leech-peer")
        .expect("leech is in the swarm");
    assert_eq!(view.mode, PeerMode::Leech);
    assert_eq!(view.uploaded_bytes, 4096);
    assert_eq!(view.chunks_held, 10);
    assert_eq!(view.stun, Some(false));
    let seed_view = tracker
        .peer("movie", "seed-peer")
        .expect("seed is in the swarm");
    assert_eq!(seed_view.stun, Some(true));
    assert_eq!(seed_view.behind_nat, Some(false));

    // FIND: the whole swarm, then a chunk scope the leech holds and the seed covers.
    let found = seed.find_peers(movie.clone()).await.expect("find");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].peer_id.as_str(), "leech-peer");
    let scoped = leech
        .find(Find {
            swarm_id: movie.clone(),
            peer_num: Some(ppsp_proto::PeerNum::count(5)),
            hints: NatHints::default(),
            clip: Some(Clip {
                name: "main".to_owned(),
                kind: None,
                chunk_segment_index: None,
                segments: Some(ChunkSegments {
                    media: MediaType::Video,
                    segments: vec![Segment::range(50, Some(60))],
                }),
            }),
        })
        .await
        .expect("scoped find");
    assert_eq!(scoped.len(), 1);
    assert_eq!(scoped[0].peer_id.as_str(), "seed-peer");

    // FIND in a swarm never joined is refused with 403.
    let error = leech
        .find_peers(swarm("elsewhere"))
        .await
        .expect_err("not joined");
    assert!(
        matches!(
            error.status(),
            Some(Status::MessageForbidden | Status::ObjectNotFound)
        ),
        "{error}"
    );

    seed.keepalive().await.expect("keepalive");

    // LEAVE and DISCONNECT.
    leech.leave(&movie).await.expect("leave");
    assert!(tracker.peer("movie", "leech-peer").is_none());
    leech.disconnect().await.expect("disconnect");
    seed.disconnect().await.expect("disconnect");
    assert_eq!(tracker.sessions(), 0);
    // Disconnecting again is a no-op.
    seed.disconnect().await.expect("idempotent");
}

#[tokio::test]
async fn an_expired_session_is_restored_by_reconnect_and_rejoin() {
    let tracker = RealTracker::start(|config| {
        config.tracker.session_idle_timeout_secs = 1;
    })
    .await;
    let peer = client("forgetful", vec![TrackerEndpoint::new(tracker.url.clone())]);
    let other = client("other", vec![TrackerEndpoint::new(tracker.url.clone())]);
    peer.join_swarm(swarm("s1"), PeerMode::Leech)
        .await
        .expect("join");
    peer.join_swarm(swarm("s2"), PeerMode::Seed)
        .await
        .expect("join");
    // Wait until the tracker has dropped the idle session.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tracker.peer("s1", "forgetful").is_some() {
        assert!(Instant::now() < deadline, "session never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next request gets 401; the client reconnects, rejoins both swarms and retries.
    other
        .join_swarm(swarm("s1"), PeerMode::Leech)
        .await
        .expect("join");
    let found = peer
        .find_peers(swarm("s1"))
        .await
        .expect("find after re-CONNECT");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].peer_id.as_str(), "other");
    assert_eq!(
        tracker.peer("s2", "forgetful").map(|view| view.mode),
        Some(PeerMode::Seed)
    );
}

#[tokio::test]
async fn a_dead_first_tier_fails_over_to_the_real_tracker() {
    let tracker = RealTracker::start(|_| {}).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}", dead.local_addr().expect("address"));
    drop(dead);
    let peer = client(
        "failover-peer",
        vec![
            TrackerEndpoint::new(tracker.url.clone()).with_tier(2),
            TrackerEndpoint::new(dead_url).with_tier(1),
        ],
    );
    let info = peer.connect().await.expect("connect via tier 2");
    assert_eq!(info.tracker, tracker.url);
    peer.join_swarm(swarm("f"), PeerMode::Seed)
        .await
        .expect("join");
    assert!(tracker.peer("f", "failover-peer").is_some());
}

#[tokio::test]
async fn background_session_reports_and_leaves_on_shutdown() {
    let tracker = RealTracker::start(|_| {}).await;
    let peer = client(
        "session-peer",
        vec![TrackerEndpoint::new(tracker.url.clone())],
    );
    let movie = swarm("movie");
    peer.join_swarm(movie.clone(), PeerMode::Leech)
        .await
        .expect("join");
    let (publish, status) = watch::channel(PeerStatus::default());
    let session = TrackerSession::spawn(
        peer.clone(),
        status,
        SessionTimers {
            stat_report_interval: Duration::from_millis(300),
            keepalive_idle: Duration::from_millis(200),
            min_report_gap: Duration::from_millis(100),
            significant_change_chunks: 8,
            close_timeout: Duration::from_secs(5),
        },
    );
    publish
        .send(PeerStatus {
            chunk_maps: vec![chunk_map_report(&movie, 0..40, 64)],
            stream_stats: vec![StreamStats {
                swarm_id: Some(movie.clone()),
                uploaded_bytes: Some(1234),
                downloaded_bytes: Some(5678),
                available_bandwidth: None,
                concurrent_links: None,
            }],
            nat: Some(true),
            stun: Some(false),
        })
        .expect("session listens");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let view = tracker.peer("movie", "session-peer").expect("member");
        if view.chunks_held == 40 && view.uploaded_bytes == 1234 {
            assert_eq!(view.behind_nat, Some(true));
            assert_eq!(view.stun, Some(false));
            break;
        }
        assert!(Instant::now() < deadline, "report never arrived: {view:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    session.shutdown().await.expect("shutdown");
    assert!(tracker.peer("movie", "session-peer").is_none());
    assert_eq!(tracker.sessions(), 0);
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ppsp-peer-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// SASL PLAIN over https with a certificate the client is told to trust; over cleartext
/// the same credentials are refused, since the tracker protects passwords.
#[tokio::test]
async fn plain_credentials_over_https() {
    let dir = temp_dir("tls");
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, generated.cert.pem()).expect("write cert");
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).expect("write key");
    let accounts_path = dir.join("accounts");
    let mut accounts = ppsp_server::Accounts::new();
    accounts
        .set_password(&PeerId::new("alice").expect("id"), b"correct horse")
        .expect("hash");
    accounts.save(&accounts_path).expect("save accounts");

    let mut config = ServerConfig::default();
    config.server.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.server.tls_listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.tls.cert = Some(cert_path.clone());
    config.tls.key = Some(key_path);
    config.auth.allow_anonymous = false;
    config.auth.accounts_file = Some(accounts_path);
    config.auth.loopback_is_secure = false;
    let listeners = Listeners::bind(&config).await.expect("bind");
    let http = listeners.http[0].local_addr().expect("address");
    let https = listeners.https[0].local_addr().expect("address");
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(ppsp_server::serve(config, listeners, async move {
        let _ = stopped.await;
    }));

    let make_client = |url: String| {
        let mut config = ClientConfig::new(
            PeerId::new("alice").expect("id"),
            vec![TrackerEndpoint::new(url)],
        );
        config.credentials = ppsp_peer::tracker_client::Credentials::Plain {
            authzid: None,
            username: "alice".to_owned(),
            password: "correct horse".to_owned(),
        };
        config.tls_roots =
            ppsp_peer::tracker_client::load_pem_certificates(&cert_path).expect("roots");
        config.retransmit_backoff = vec![Duration::from_millis(50)];
        TrackerClient::new(config).expect("client")
    };

    let secure = make_client(format!("https://localhost:{}/", https.port()));
    let info = secure.connect().await.expect("PLAIN over TLS");
    assert!(info.tracker.starts_with("https://"));
    secure
        .join_swarm(swarm("secret-movie"), PeerMode::Seed)
        .await
        .expect("join over TLS");
    secure.disconnect().await.expect("disconnect");

    let cleartext = make_client(format!("http://{http}"));
    let error = cleartext.connect().await.expect_err("PLAIN over cleartext");
    assert_eq!(
        error.status(),
        Some(Status::AuthenticationRequired),
        "{error}"
    );

    // A certificate nobody vouched for is refused.
    let mut untrusting = ClientConfig::new(
        PeerId::new("alice").expect("id"),
        vec![TrackerEndpoint::new(format!(
            "https://localhost:{}/",
            https.port()
        ))],
    );
    untrusting.retransmit_backoff = Vec::new();
    let untrusting = TrackerClient::new(untrusting).expect("client");
    let error = untrusting.connect().await.expect_err("unknown issuer");
    assert!(
        matches!(
            error,
            ppsp_peer::tracker_client::ClientError::Unreachable { .. }
        ),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
