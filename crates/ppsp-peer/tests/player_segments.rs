//! The player endpoint answers a short VoD request (a media segment, a playlist) only once
//! every chunk of it is verified: no status line while a chunk is missing, then the whole
//! content at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ppsp_peer::manifest::Manifest;
use ppsp_peer::server::PlayerServer;
use ppsp_peer::store::ChunkStore;
use ppsp_peer::swarm::{Swarm, SwarmOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CHUNK: usize = 4096;

#[tokio::test]
async fn a_segment_is_answered_only_once_all_of_it_is_verified() {
    let data: Vec<u8> = (0..4 * CHUNK as u32).map(|i| (i * 7 % 251) as u8).collect();
    let manifest = Arc::new(
        Manifest::from_reader("seg001.ts", CHUNK as u32, &mut data.as_slice()).expect("manifest"),
    );
    let path = std::env::temp_dir().join(format!("ppsp-segment-{}", std::process::id()));
    let store = ChunkStore::create_leech(&path, Arc::clone(&manifest), true).expect("store");
    let swarm = Swarm::vod("viewer", &manifest, store, SwarmOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let player = PlayerServer::from_listener(listener, Arc::clone(&swarm)).expect("player");

    let mut stream = tokio::net::TcpStream::connect(player.local_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"GET /seg001.ts HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let store = swarm.store();
    // Three of the four chunks arrive: still nothing is sent, and the missing chunk is
    // where the downloader is pointed.
    for index in [0u64, 1, 3] {
        let start = index as usize * CHUNK;
        store
            .put(index, Bytes::copy_from_slice(&data[start..start + CHUNK]))
            .await
            .expect("verified chunk");
    }
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut first)).await;
    assert!(early.is_err(), "answered before the segment was complete");
    assert_eq!(swarm.position(), Some(2));

    store
        .put(2, Bytes::copy_from_slice(&data[2 * CHUNK..3 * CHUNK]))
        .await
        .expect("verified chunk");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered once complete")
        .expect("read");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: video/mp2t"), "{head}");
    assert!(answer[split + 4..] == data[..], "the whole segment");
    drop(player);
    let _ = std::fs::remove_file(&path);
}
