//! The peer protocol between nodes built from the library, without a tracker: peers are
//! given to each other directly.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ppsp_peer::client::{FetchError, PeerClient};
use ppsp_peer::manifest::Manifest;
use ppsp_peer::node::{Node, NodeConfig, Output};
use ppsp_peer::server::PeerServer;
use ppsp_peer::store::ChunkStore;
use ppsp_peer::swarm::{Swarm, SwarmOptions};
use rand::{RngCore as _, SeedableRng as _};
use tokio::net::TcpListener;

fn temp_path(tag: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "ppsp-exchange-{tag}-{}-{nanos}",
        std::process::id()
    ))
}

struct Cleanup(Vec<std::path::PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

fn config(chunk_size: u32) -> NodeConfig {
    let mut config = NodeConfig::new(Vec::new());
    config.chunk_size = chunk_size;
    config.manifest_timeout = Duration::from_secs(10);
    config
}

/// A leech that knows only the peers in `bootstrap` (no tracker) and writes to `output`.
async fn leech_from(
    chunk_size: u32,
    bootstrap: Vec<std::net::SocketAddr>,
    swarm: &str,
    output: &std::path::Path,
) -> Node {
    let mut leech_config = config(chunk_size);
    leech_config.bootstrap = bootstrap;
    Node::leech(
        &leech_config,
        listener().await,
        swarm,
        Output::File(output.to_owned()),
    )
    .await
    .expect("leech")
}

/// Waits (30 s at most) until `node` holds the whole content.
async fn complete(node: &mut Node) {
    tokio::time::timeout(Duration::from_secs(30), node.wait_complete())
        .await
        .expect("in time")
        .expect("complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leech_fetches_from_seed_then_serves_a_second_leech() {
    let data = content(1_000_000, 10);
    let input = temp_path("in");
    let (out_a, out_b) = (temp_path("a"), temp_path("b"));
    let _cleanup = Cleanup(vec![input.clone(), out_a.clone(), out_b.clone()]);
    std::fs::write(&input, &data).expect("write");

    let seed = Node::seed_file(&config(16 * 1024), listener().await, &input)
        .await
        .expect("seed");
    let swarm = seed.swarm().id().to_owned();

    let mut a = leech_from(16 * 1024, vec![seed.local_addr()], &swarm, &out_a).await;
    complete(&mut a).await;
    assert_eq!(std::fs::read(&out_a).expect("output a"), data);
    assert_eq!(a.swarm().downloaded(), data.len() as u64);

    // The seed goes away; B knows only A.
    drop(seed);
    let mut b = leech_from(16 * 1024, vec![a.local_addr()], &swarm, &out_b).await;
    complete(&mut b).await;
    assert_eq!(std::fs::read(&out_b).expect("output b"), data);
    assert_eq!(a.swarm().uploaded(), data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_library_peer_is_banned() {
    let data = content(600_000, 11);
    let input = temp_path("cin");
    let out = temp_path("cout");
    let _cleanup = Cleanup(vec![input.clone(), out.clone()]);
    std::fs::write(&input, &data).expect("write");

    let good = Node::seed_file(&config(8 * 1024), listener().await, &input)
        .await
        .expect("good seed");
    let mut bad_config = config(8 * 1024);
    bad_config.swarm.corrupt_uploads = true;
    let bad = Node::seed_file(&bad_config, listener().await, &input)
        .await
        .expect("bad seed");
    let swarm = good.swarm().id().to_owned();
    assert_eq!(bad.swarm().id(), swarm);

    // Only the corrupt peer at first, so it is certainly asked.
    let mut leech = leech_from(8 * 1024, vec![bad.local_addr()], &swarm, &out).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while leech.swarm().peers_banned() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the corrupt peer is detected");
    leech.swarm().add_peer(ppsp_peer::swarm::PeerHint {
        addr: good.local_addr(),
        seed: true,
    });
    // Told about the corrupt peer again (as a tracker would): it stays dropped.
    leech.swarm().add_peer(ppsp_peer::swarm::PeerHint {
        addr: bad.local_addr(),
        seed: true,
    });
    complete(&mut leech).await;
    assert_eq!(std::fs::read(&out).expect("output"), data);
    assert_eq!(leech.swarm().peers_banned(), 1);
    assert!(leech.swarm().stats().corrupt_chunks >= 1);
    // Dropped at its first bad chunk: at most the requests already outstanding to it (two
    // per seed) were served, and it was never asked again.
    assert!(
        bad.swarm().uploaded() <= 2 * 8 * 1024,
        "asked again after the ban: {}",
        bad.swarm().uploaded()
    );
}

async fn small_swarm(options: SwarmOptions) -> (Arc<Swarm>, PeerServer, Vec<u8>, Cleanup) {
    let data = content(64 * 1024, 12);
    let path = temp_path("small");
    std::fs::write(&path, &data).expect("write");
    let manifest = Arc::new(
        Manifest::from_reader("s.bin", 16 * 1024, &mut data.as_slice()).expect("manifest"),
    );
    let store = ChunkStore::open_seed(&path, Arc::clone(&manifest)).expect("store");
    let swarm = Swarm::vod("seed", &manifest, store, options);
    let server = PeerServer::start("127.0.0.1:0".parse().expect("addr"), Arc::clone(&swarm), 16)
        .await
        .expect("server");
    (swarm, server, data, Cleanup(vec![path]))
}

#[tokio::test]
async fn upload_slots_answer_busy_when_full() {
    let options = SwarmOptions {
        upload_slots: 1,
        // 16 KiB at 32 KiB/s: each upload holds its slot for a while.
        upload_rate: Some(32 * 1024),
        ..SwarmOptions::default()
    };
    let (swarm, server, data, _cleanup) = small_swarm(options).await;
    let client = PeerClient::new(None, None, Duration::from_secs(10));
    let addr = server.local_addr();
    let id = swarm.id().to_owned();
    let (first, second) = tokio::join!(client.chunk(addr, &id, 0, 1 << 20), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.chunk(addr, &id, 1, 1 << 20).await
    });
    let first = first.expect("first upload");
    assert_eq!(first, Bytes::copy_from_slice(&data[..16 * 1024]));
    assert!(
        matches!(second, Err(FetchError::Busy)),
        "second upload while the only slot is taken: ok={}",
        second.is_ok()
    );
    assert!(matches!(
        client.chunk(addr, &id, 99, 1 << 20).await,
        Err(FetchError::NotHeld)
    ));
    assert!(matches!(
        client.chunk(addr, "other", 0, 1 << 20).await,
        Err(FetchError::NotHeld)
    ));
}

#[tokio::test]
async fn manifest_and_chunk_map_over_http() {
    let (swarm, server, _data, _cleanup) = small_swarm(SwarmOptions::default()).await;
    let client = PeerClient::new(None, None, Duration::from_secs(10));
    let addr = server.local_addr();
    let bytes = client.manifest(addr, swarm.id()).await.expect("manifest");
    let manifest = Manifest::decode_verified(&bytes, swarm.id()).expect("verifies");
    assert_eq!(manifest.chunk_count(), 4);
    let remote = client.chunk_map(addr, swarm.id(), None).await.expect("map");
    assert!(remote.complete);
    assert_eq!(remote.map.count(), 4);
    // A complete peer answers a long poll at once.
    let started = std::time::Instant::now();
    client
        .chunk_map(addr, swarm.id(), Some(remote.version))
        .await
        .expect("map");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn chunk_map_long_poll_reports_new_chunks() {
    let data = content(64 * 1024, 13);
    let manifest = Arc::new(
        Manifest::from_reader("l.bin", 16 * 1024, &mut data.as_slice()).expect("manifest"),
    );
    let path = temp_path("poll");
    let _cleanup = Cleanup(vec![path.clone()]);
    let store = ChunkStore::create_leech(&path, Arc::clone(&manifest), false).expect("store");
    let swarm = Swarm::vod("leech", &manifest, store, SwarmOptions::default());
    let server = PeerServer::start("127.0.0.1:0".parse().expect("addr"), Arc::clone(&swarm), 16)
        .await
        .expect("server");
    let client = PeerClient::new(None, None, Duration::from_secs(10));
    let first = client
        .chunk_map(server.local_addr(), swarm.id(), None)
        .await
        .expect("map");
    assert_eq!(first.map.count(), 0);
    let waiting = client.chunk_map(server.local_addr(), swarm.id(), Some(first.version));
    let store_later = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        swarm
            .store()
            .put(2, Bytes::copy_from_slice(&data[32 * 1024..48 * 1024]))
            .await
            .expect("put");
    };
    let started = std::time::Instant::now();
    let (answer, ()) = tokio::join!(waiting, store_later);
    let answer = answer.expect("map");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "answered before the change"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "waited for the whole long poll"
    );
    assert_eq!(answer.map.iter().collect::<Vec<_>>(), vec![2]);
    assert_ne!(answer.version, first.version);
}

/// Fetches 512 KiB from a fast and a very slow seed; returns whether the download
/// completed within `limit`, and the slow seed's upload count.
async fn race_slow_peer(endgame_requests: u32, limit: Duration) -> (bool, u64) {
    let data = content(512 * 1024, 14);
    let input = temp_path("ein");
    let out = temp_path("eout");
    let _cleanup = Cleanup(vec![input.clone(), out.clone()]);
    std::fs::write(&input, &data).expect("write");

    let fast = Node::seed_file(&config(8 * 1024), listener().await, &input)
        .await
        .expect("fast seed");
    // 1 KiB/s: every 8 KiB chunk it is asked for takes eight seconds.
    let mut slow_config = config(8 * 1024);
    slow_config.swarm.upload_rate = Some(1024);
    let slow = Node::seed_file(&slow_config, listener().await, &input)
        .await
        .expect("slow seed");
    let swarm = fast.swarm().id().to_owned();

    let mut leech_config = config(8 * 1024);
    leech_config.bootstrap = vec![slow.local_addr(), fast.local_addr()];
    leech_config.engine.endgame_requests = endgame_requests;
    let mut leech = Node::leech(
        &leech_config,
        listener().await,
        &swarm,
        Output::File(out.clone()),
    )
    .await
    .expect("leech");
    let done = tokio::time::timeout(limit, leech.wait_complete()).await;
    if let Ok(result) = done {
        result.expect("complete");
        assert_eq!(std::fs::read(&out).expect("output"), data);
        (true, slow.swarm().uploaded())
    } else {
        (false, slow.swarm().uploaded())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endgame_does_not_wait_for_a_slow_peer() {
    // Without duplicate requests the last chunks wait for the slow peer ...
    let (completed, _) = race_slow_peer(1, Duration::from_secs(2)).await;
    assert!(
        !completed,
        "the slow peer was never asked: the test proves nothing"
    );
    // ... with them, the fast peer overtakes it.
    let (completed, slow_uploaded) = race_slow_peer(2, Duration::from_secs(5)).await;
    assert!(completed, "the download waited for the slow peer");
    assert_eq!(slow_uploaded, 0, "every slow upload was overtaken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_viewer_follows_the_source_and_drops_a_forger() {
    use ppsp_peer::manifest::{LiveChunk, LiveManifest, LiveSigner, hash_chunk};
    use tokio::io::AsyncWriteExt as _;

    let (mut feed, input) = tokio::io::duplex(64 * 1024);
    let mut source_config = config(4 * 1024);
    source_config.live_flush = Duration::from_millis(50);
    let source = Node::live_source(&source_config, listener().await, input)
        .await
        .expect("live source");
    let swarm = source.swarm().id().to_owned();

    // A peer that claims the swarm but serves a manifest extended without the source's key.
    let forger_key = LiveSigner::generate().expect("key");
    let evil = b"not from the source";
    let forged = LiveManifest {
        public_key: forger_key.public_key(),
        name: "live.ts".into(),
        chunk_size: 4096,
        sequence: 1_000_000,
        first: 0,
        chunks: vec![LiveChunk {
            len: evil.len() as u32,
            hash: hash_chunk(evil),
        }],
        ended: false,
    };
    let forger_store = ChunkStore::live();
    assert!(forger_store.offer_live_manifest(forger_key.sign(&forged).expect("sign")));
    let forger = Swarm::live(
        "forger",
        &swarm,
        "live.ts",
        forger_store,
        SwarmOptions::default(),
    );
    let forger_server = PeerServer::start("127.0.0.1:0".parse().expect("addr"), forger, 16)
        .await
        .expect("forger server");

    // Some input first, so that the stream has an edge to start from.
    feed.write_all(&[1u8; 10_000]).await.expect("feed");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut viewer_config = config(4 * 1024);
    viewer_config.bootstrap = vec![forger_server.local_addr(), source.local_addr()];
    let viewer = Node::leech(&viewer_config, listener().await, &swarm, Output::Scratch)
        .await
        .expect("viewer");
    let mut stream = ppsp_peer::player::live_stream(viewer.swarm());
    let writer = tokio::spawn(async move {
        for round in 0..40u8 {
            if feed.write_all(&[round; 1000]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while received.len() < 20_000 {
            let piece = stream.recv().await.expect("stream continues");
            received.extend_from_slice(&piece);
        }
    })
    .await
    .expect("live data arrives");
    assert!(
        !received.windows(evil.len()).any(|w| w == evil),
        "forged data reached the player"
    );
    tokio::time::timeout(Duration::from_secs(5), async {
        while viewer.swarm().peers_banned() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the forger is dropped");
    let _ = writer.await;
}
