//! Hostile input and hostile clients: each is refused quickly with a 4xx (or cut off), and
//! the tracker keeps answering everyone else.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use ppsp_proto::Status;
use ppsp_server::ServerConfig;
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The tracker still works: health check and a full CONNECT.
async fn still_serving(addr: SocketAddr, peer: &str) {
    let answer = get(addr, "/healthz").await;
    assert_eq!(answer.status, StatusCode::OK);
    connect(addr, peer, 99).await;
}

async fn refused_quickly(addr: SocketAddr, content_type: &str, body: Vec<u8>) -> Answer {
    let started = Instant::now();
    let answer = send(addr, "POST", "/", &[("content-type", content_type)], body).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(answer.status.is_client_error(), "{}", answer.status);
    answer
}

#[tokio::test]
async fn entity_bomb() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut doc =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    doc.push_str("<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n");
    for level in 2..=9 {
        let prev = level - 1;
        let refs = format!("&lol{prev};").repeat(10);
        doc.push_str(&format!("<!ENTITY lol{level} \"{refs}\">\n"));
    }
    doc.push_str(
        "]>\n<PPSPTrackerProtocol version=\"1.0\"><Method>CONNECT</Method>\
         <PeerID>&lol9;</PeerID><Auth mechanism=\"ANONYMOUS\"/>\
         <TransactionID>1</TransactionID></PPSPTrackerProtocol>",
    );
    let answer = refused_quickly(server.http, "application/xml", doc.into_bytes()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.xml().status, Status::InvalidSyntax);
    still_serving(server.http, "after-bomb").await;
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn external_entity() {
    let server = TestServer::start(ServerConfig::default()).await;
    let doc = "<?xml version=\"1.0\"?>\n<!DOCTYPE PPSPTrackerProtocol [\n\
               <!ENTITY xxe SYSTEM \"file:///etc/passwd\">\n]>\n\
               <PPSPTrackerProtocol version=\"1.0\"><Method>CONNECT</Method>\
               <PeerID>&xxe;</PeerID><Auth mechanism=\"ANONYMOUS\"/>\
               <TransactionID>2</TransactionID></PPSPTrackerProtocol>";
    let answer = refused_quickly(server.http, "text/xml", doc.as_bytes().to_vec()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let text = answer.text();
    assert!(!text.contains("root:"), "file content leaked: {text}");
    assert_eq!(answer.xml().status, Status::InvalidSyntax);
    still_serving(server.http, "after-xxe").await;
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn ten_thousand_deep_nesting() {
    let server = TestServer::start(ServerConfig::default()).await;
    let depth = 10_000;
    let mut doc = String::from("<PPSPTrackerProtocol version=\"1.0\"><Method>KEEPALIVE</Method>");
    doc.push_str(&"<x>".repeat(depth));
    doc.push_str(&"</x>".repeat(depth));
    doc.push_str("</PPSPTrackerProtocol>");
    let answer = refused_quickly(server.http, "application/xml", doc.into_bytes()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let json = format!(
        "{{\"PPSPTrackerProtocol\":{}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let answer = refused_quickly(
        server.http,
        "application/ppsp-tracker+json",
        json.into_bytes(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    still_serving(server.http, "after-nesting").await;
    server.stop().await.expect("clean stop");
}

/// Reads an HTTP/1.1 response head from a raw socket and returns its status code.
async fn read_status(stream: &mut tokio::net::TcpStream) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test]
async fn fifty_megabyte_bodies() {
    let server = TestServer::start(ServerConfig::default()).await;
    let fifty_mb: u64 = 50 * 1024 * 1024;

    // Announced by Content-Length: refused before a byte of body is read.
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Type: application/xml\r\n\
         Content-Length: {fifty_mb}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    assert_eq!(read_status(&mut stream).await, 413);
    assert!(started.elapsed() < Duration::from_secs(5));

    // Chunked, so the size is only known by counting: cut off at the limit.
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let head = "POST / HTTP/1.1\r\nHost: t\r\nContent-Type: application/xml\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk,
            b"\r\n".to_vec(),
        ]
        .concat();
        let mut sent: u64 = 0;
        while sent < fifty_mb {
            // The server stops reading and closes: the write fails, which ends the loop.
            writer.write_all(&framed).await?;
            sent += 64 * 1024;
        }
        writer.write_all(b"0\r\n\r\n").await?;
        Ok::<u64, std::io::Error>(sent)
    });
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(read > 0, "connection closed without an answer");
        head.extend_from_slice(&buf[..read]);
    }
    let text = String::from_utf8_lossy(&head);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let sent = tokio::time::timeout(Duration::from_secs(10), sender)
        .await
        .expect("sender ends")
        .expect("sender task");
    // Either the write failed when the server closed, or it all fit in socket buffers;
    // what matters is that the server never buffered it.
    drop(sent);

    still_serving(server.http, "after-big").await;
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_do_not_starve_others() {
    let mut config = ServerConfig::default();
    config.server.header_read_timeout_secs = 1;
    config.server.body_read_timeout_secs = 1;
    config.server.max_connections = 3;
    let server = TestServer::start(config).await;

    // A client that never finishes its request head is disconnected.
    let mut loris = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    loris
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .expect("write");
    // A client that announces a body and never sends it gets 408.
    let mut stalled = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    stalled
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n<PPSP")
        .await
        .expect("write");

    // Meanwhile others are served (one slot is still free).
    still_serving(server.http, "busy-1").await;

    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), loris.read_to_end(&mut rest))
        .await
        .expect("slow client cut off in time");
    assert!(closed.is_err() || !String::from_utf8_lossy(&rest).contains("200 OK"));

    let status = tokio::time::timeout(Duration::from_secs(10), read_status(&mut stalled))
        .await
        .expect("stalled body answered in time");
    assert_eq!(status, 408);

    // Idle connections holding every slot are closed by the timeout, so a new client gets
    // through after a short wait instead of never.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(
            tokio::net::TcpStream::connect(server.http)
                .await
                .expect("connect"),
        );
    }
    tokio::time::timeout(
        Duration::from_secs(10),
        still_serving(server.http, "busy-2"),
    )
    .await
    .expect("served once idle connections time out");
    drop(idle);
    server.stop().await.expect("clean stop");
}
