//! The player endpoint over HTTP: CORS headers, the preflight `OPTIONS`, other methods; the
//! peer endpoint beside it answers none of them.

use std::sync::Arc;

use ppsp_peer::manifest::Manifest;
use ppsp_peer::player::CorsPolicy;
use ppsp_peer::server::{PeerServer, PlayerServer};
use ppsp_peer::store::ChunkStore;
use ppsp_peer::swarm::{Swarm, SwarmOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct Seed {
    server: PeerServer,
    player: PlayerServer,
    swarm: Arc<Swarm>,
    path: std::path::PathBuf,
}

impl Drop for Seed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn seed(cors: CorsPolicy) -> Seed {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("ppsp-cors-{}-{n}", std::process::id()));
    std::fs::write(&path, &data).expect("write");
    let manifest =
        Arc::new(Manifest::from_reader("clip.m3u8", 4096, &mut data.as_slice()).expect("manifest"));
    let store = ChunkStore::open_seed(&path, Arc::clone(&manifest)).expect("store");
    let options = SwarmOptions {
        cors,
        ..SwarmOptions::default()
    };
    let swarm = Swarm::vod("seed", &manifest, store, options);
    let server = PeerServer::start("127.0.0.1:0".parse().expect("addr"), Arc::clone(&swarm), 8)
        .await
        .expect("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("player listener");
    let player = PlayerServer::from_listener(listener, Arc::clone(&swarm)).expect("player");
    Seed {
        server,
        player,
        swarm,
        path,
    }
}

/// Sends one request to the player endpoint and returns the status and the head's header
/// lines (lower-cased names).
async fn request(seed: &Seed, head: &str) -> (u16, Vec<(String, String)>) {
    request_to(seed.player.local_addr(), head).await
}

/// Sends one request to `addr` and returns the status and the head's header lines.
async fn request_to(addr: std::net::SocketAddr, head: &str) -> (u16, Vec<(String, String)>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let text = format!("{head}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(text.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    let (head, _) = answer.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn any_origin_by_default_with_preflight() {
    let seed = seed(CorsPolicy::default()).await;
    let (status, headers) = request(
        &seed,
        "GET / HTTP/1.1\r\nOrigin: http://page.example\r\nRange: bytes=0-99",
    )
    .await;
    assert_eq!(status, 206);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert!(
        header(&headers, "access-control-expose-headers")
            .is_some_and(|v| v.contains("Content-Range") && v.contains("Content-Length"))
    );
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/vnd.apple.mpegurl")
    );

    let (status, headers) = request(
        &seed,
        "OPTIONS /master.m3u8 HTTP/1.1\r\nOrigin: http://page.example\r\n\
         Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(&headers, "access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS")
    );
    assert_eq!(
        header(&headers, "access-control-allow-headers"),
        Some("range")
    );
    assert_eq!(header(&headers, "access-control-max-age"), Some("600"));

    let (status, headers) = request(&seed, "POST / HTTP/1.1\r\nContent-Length: 0").await;
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("GET, HEAD, OPTIONS"));
    // The peer endpoint keeps its own rules: no preflight, no content, no CORS headers.
    let peer = seed.server.local_addr();
    let id = seed.swarm.id().to_owned();
    let (status, _) = request_to(peer, &format!("OPTIONS /ppsp/v1/{id}/manifest HTTP/1.1")).await;
    assert_eq!(status, 405);
    let (status, headers) = request_to(peer, "GET / HTTP/1.1\r\nOrigin: http://page.example").await;
    assert_eq!(status, 404);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn listed_origins_are_echoed_and_others_get_nothing() {
    let policy = CorsPolicy::from_values(&[
        "https://tv.example".to_owned(),
        "http://127.0.0.1:8000".to_owned(),
    ])
    .expect("origins");
    let seed = seed(policy).await;
    let (status, headers) = request(&seed, "GET / HTTP/1.1\r\nOrigin: http://127.0.0.1:8000").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("http://127.0.0.1:8000")
    );
    assert_eq!(header(&headers, "vary"), Some("Origin"));

    let (status, headers) = request(
        &seed,
        "OPTIONS / HTTP/1.1\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: GET",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    assert_eq!(header(&headers, "access-control-allow-methods"), None);

    let off = seed_off().await;
    let (_, headers) = request(&off, "GET / HTTP/1.1\r\nOrigin: https://tv.example").await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
}

async fn seed_off() -> Seed {
    seed(CorsPolicy::from_values(&["none".to_owned()]).expect("none")).await
}

#[test]
fn policy_values() {
    assert_eq!(
        CorsPolicy::from_values(&[]).ok(),
        Some(CorsPolicy::AnyOrigin)
    );
    assert_eq!(
        CorsPolicy::from_values(&["*".to_owned()]).ok(),
        Some(CorsPolicy::AnyOrigin)
    );
    for bad in [
        "example.org",
        "https://",
        "https://a.example/path",
        "*x",
        "ftp://a",
    ] {
        assert!(
            CorsPolicy::from_values(&[bad.to_owned()]).is_err(),
            "{bad} refused"
        );
    }
    assert!(CorsPolicy::from_values(&["*".to_owned(), "https://a.example".to_owned()]).is_err());
}
