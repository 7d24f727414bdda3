//! The tracker over real HTTP(S), in process, on 127.0.0.1:0.

mod support;

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use ppsp_proto::{
    Connect, Find, PeerId, PeerMode, PeerNum, Request, RequestBody, Status, SwarmAction,
    SwarmActionKind, SwarmId, TransactionId,
};
use ppsp_server::{Accounts, ServerConfig};
use support::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("compress");
    encoder.finish().expect("compress")
}

#[tokio::test]
async fn every_xml_method_over_http() {
    let server = TestServer::start(ServerConfig::default()).await;
    let addr = server.http;

    // CONNECT: AuthToken and the reflexive address as seen on the socket.
    let answer = post_xml(addr, connect_anonymous("seed1", 11, 7001)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(
        answer
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/xml"))
    );
    let connected = answer.xml();
    assert_eq!(connected.status, Status::Ok);
    assert_eq!(connected.transaction_id, Some(TransactionId::numeric(11)));
    let seed_token = connected.auth_token.expect("token").as_str().to_owned();
    assert_eq!(connected.reflexive_addresses.len(), 1);
    assert_eq!(
        connected.reflexive_addresses[0].ip,
        std::net::IpAddr::from([127, 0, 0, 1])
    );

    // JOIN as SEED: no list.
    let answer = post_xml(addr, join("seed1", &seed_token, "swarm-a", "SEED", 12)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(peer_ids(&answer.xml()).is_empty());

    // A LEECH joins and gets the seed.
    let leech_token = connect(addr, "leech1", 21).await;
    let answer = post_xml(addr, join("leech1", &leech_token, "swarm-a", "LEECH", 22)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let joined = answer.xml();
    assert_eq!(joined.transaction_id, Some(TransactionId::numeric(22)));
    assert_eq!(peer_ids(&joined), vec!["seed1".to_owned()]);

    // FIND, STAT_REPORT, KEEPALIVE, LEAVE, DISCONNECT.
    let answer = post_xml(addr, find("leech1", &leech_token, "swarm-a", 23, None)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(peer_ids(&answer.xml()), vec!["seed1".to_owned()]);

    let report = stat_report(
        "leech1",
        &leech_token,
        "swarm-a",
        24,
        (0, 7, "8A=="),
        10,
        20,
    );
    let answer = post_xml(addr, report).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    let answer = post_xml(addr, bare("KEEPALIVE", "leech1", &leech_token, 25)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(
        answer.xml().transaction_id,
        Some(TransactionId::numeric(25))
    );

    let answer = post_xml(addr, leave("leech1", &leech_token, "swarm-a", 26)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    let answer = post_xml(addr, bare("DISCONNECT", "leech1", &leech_token, 27)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    // The token died with the session: 401 with the challenge header and the echoed ID.
    let answer = post_xml(addr, bare("KEEPALIVE", "leech1", &leech_token, 28)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header("www-authenticate"), Some("PPSP-SASL"));
    let refused = answer.xml();
    assert_eq!(refused.status, Status::AuthenticationRequired);
    assert_eq!(refused.transaction_id, Some(TransactionId::numeric(28)));

    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn content_types_methods_and_sizes_are_checked_first() {
    let server = TestServer::start(ServerConfig::default()).await;
    let addr = server.http;
    let body = connect_anonymous("p1", 1, 7000);

    // Absent Content-Type and the XML family all select the XML codec.
    for content_type in [None, Some("text/xml"), Some("application/ppsp-tracker+xml")] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|ct| vec![("content-type", ct)])
            .unwrap_or_default();
        let answer = send(addr, "POST", "/any/path", &headers, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{content_type:?}: {}",
            answer.text()
        );
    }

    let answer = send(
        addr,
        "POST",
        "/",
        &[("content-type", "text/plain")],
        body.clone(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let accept_post = answer.header("accept-post").expect("Accept-Post");
    assert!(accept_post.contains("application/ppsp-tracker+json"));
    assert!(accept_post.contains("application/xml"));

    let answer = send(addr, "GET", "/announce", &[], Bytes::new()).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.header("allow"), Some("POST"));
    let answer = send(addr, "PUT", "/", &[], body.clone()).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(answer.header("allow").is_some_and(|a| a.contains("POST")));

    // Over the 1 MiB default: 413 before the codec sees anything.
    let big = vec![b' '; 1024 * 1024 + 1];
    let answer = post_xml(addr, big).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Well-formed HTTP, broken XML: 400 with a PPSP body, TransactionID echoed when readable.
    let answer = post_xml(
        addr,
        "<PPSPTrackerProtocol version=\"1.0\"><Method>JOIN</Method><TransactionID>77</TransactionID>",
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let error = answer.xml();
    assert_eq!(error.status, Status::InvalidSyntax);
    assert_eq!(error.transaction_id, Some(TransactionId::numeric(77)));

    let answer = post_xml(
        addr,
        "<PPSPTrackerProtocol version=\"2.0\"><Method>KEEPALIVE</Method><PeerID>p</PeerID>\
         <AuthToken>t</AuthToken><TransactionID>5</TransactionID></PPSPTrackerProtocol>",
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.xml().status, Status::VersionNotSupported);
    server.stop().await.expect("clean stop");
}

/// RFC 7846: an `Accept` header that rules out the answer's media type is a
/// plain `406`, for either dialect; absent, wildcard and matching headers are served.
#[tokio::test]
async fn accept_header_excluding_the_dialect_is_406() {
    let server = TestServer::start(ServerConfig::default()).await;
    let addr = server.http;
    let json = br#"{"PPSPTrackerProtocol":{"version":1,"request_type":"STAT_REPORT","transaction_id":"k-1","peer_id":"nobody"}}"#;
    let cases: [(&str, &str, StatusCode); 9] = [
        ("text/xml", "application/xml", StatusCode::OK),
        ("text/xml", "text/xml, text/html;q=0.5", StatusCode::OK),
        ("text/xml", "*/*", StatusCode::OK),
        ("text/xml", "text/html", StatusCode::NOT_ACCEPTABLE),
        (
            "text/xml",
            "application/ppsp-tracker+json",
            StatusCode::NOT_ACCEPTABLE,
        ),
        (
            "text/xml",
            "application/xml;q=0, text/xml;q=0, */*",
            StatusCode::NOT_ACCEPTABLE,
        ),
        // The JSON request reaches the tracker (unknown peer: 403 Forbidden Action).
        (
            "application/ppsp-tracker+json",
            "application/*",
            StatusCode::FORBIDDEN,
        ),
        (
            "application/ppsp-tracker+json",
            "application/xml",
            StatusCode::NOT_ACCEPTABLE,
        ),
        (
            "application/ppsp-tracker+json",
            "application/json",
            StatusCode::NOT_ACCEPTABLE,
        ),
    ];
    for (txid, (content_type, accept, expected)) in (1u64..).zip(cases) {
        let body = if content_type == "text/xml" {
            Bytes::from(connect_anonymous(&format!("acc{txid}"), txid, 7000))
        } else {
            Bytes::from_static(json)
        };
        let answer = send(
            addr,
            "POST",
            "/",
            &[("content-type", content_type), ("accept", accept)],
            body,
        )
        .await;
        assert_eq!(
            answer.status,
            expected,
            "{content_type} with Accept: {accept}: {}",
            answer.text()
        );
        if expected == StatusCode::NOT_ACCEPTABLE {
            assert!(
                answer
                    .header("content-type")
                    .is_some_and(|ct| ct.starts_with("text/plain"))
            );
        }
    }
}

#[tokio::test]
async fn gzip_both_directions() {
    let server = TestServer::start(ServerConfig::default()).await;
    let addr = server.http;

    // A gzip request body.
    let packed = gzip(connect_anonymous("zipped", 3, 7000).as_bytes());
    let answer = send(
        addr,
        "POST",
        "/",
        &[
            ("content-type", "application/xml"),
            ("content-encoding", "gzip"),
        ],
        packed,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let token = answer.xml().auth_token.expect("token").as_str().to_owned();

    // A small answer is not compressed even when gzip is accepted.
    let answer = send(
        addr,
        "POST",
        "/",
        &[
            ("content-type", "application/xml"),
            ("accept-encoding", "gzip"),
        ],
        bare("KEEPALIVE", "zipped", &token, 4),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.header("content-encoding").is_none());

    // Enough seeds that a peer list is well over 1 KiB.
    for i in 0..20 {
        let peer = format!("seed-{i:02}-with-a-rather-long-peer-identifier");
        let seed_token = connect(addr, &peer, 100 + i).await;
        let answer = post_xml(addr, join(&peer, &seed_token, "big", "SEED", 200 + i)).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let answer = post_xml(addr, join("zipped", &token, "big", "LEECH", 5)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let list = find("zipped", &token, "big", 6, None);
    let answer = send(
        addr,
        "POST",
        "/",
        &[
            ("content-type", "application/xml"),
            ("accept-encoding", "gzip"),
        ],
        list.clone(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-encoding"), Some("gzip"));
    assert!(answer.body().len() > 1024);
    assert!(answer.raw.len() < answer.body().len());
    assert_eq!(peer_ids(&answer.xml()).len(), 20);

    // Without Accept-Encoding the same answer comes uncompressed.
    let answer = post_xml(addr, list).await;
    assert!(answer.header("content-encoding").is_none());
    assert_eq!(peer_ids(&answer.xml()).len(), 20);

    // A gzip bomb: a small body that inflates far past the limit.
    let bomb = gzip(&vec![b' '; 8 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    let answer = send(addr, "POST", "/", &[("content-encoding", "gzip")], bomb).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    server.stop().await.expect("clean stop");
}

fn cheap_params() -> argon2::Params {
    argon2::Params::new(1024, 1, 1, None).expect("params")
}

fn accounts_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("accounts");
    let mut accounts = Accounts::new();
    accounts
        .set_password_with(
            &PeerId::new("alice").expect("id"),
            b"correct horse",
            cheap_params(),
        )
        .expect("hash");
    accounts.save(&path).expect("save");
    path
}

fn closed_config(accounts: std::path::PathBuf) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.auth.allow_anonymous = false;
    config.auth.accounts_file = Some(accounts);
    config
}

#[tokio::test]
async fn sasl_plain_against_the_accounts_file() {
    let dir = temp_dir("plain");
    let server = TestServer::start(closed_config(accounts_file(&dir))).await;
    let addr = server.http;

    let answer = post_xml(addr, connect_plain("alice", "correct horse", 1)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(answer.xml().auth_token.is_some());

    let answer = post_xml(addr, connect_plain("alice", "wrong horse", 2)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header("www-authenticate"), Some("PPSP-SASL"));
    let refused = answer.xml();
    assert_eq!(refused.status, Status::AuthenticationRequired);
    assert_eq!(refused.transaction_id, Some(TransactionId::numeric(2)));
    assert!(refused.auth_token.is_none());

    let answer = post_xml(addr, connect_plain("mallory", "correct horse", 3)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // A closed tracker refuses JSON CONNECTs that bring no HTTP authentication (RFC 7846
    // carries no SASL data).
    let answer = post_json(
        addr,
        json_request(
            "json-peer",
            "j-9",
            RequestBody::Connect(Connect {
                auth: None,
                addresses: Vec::new(),
                peer_num: None,
                swarm_actions: vec![SwarmAction {
                    swarm_id: SwarmId::new("s").expect("id"),
                    action: SwarmActionKind::Join,
                    mode: PeerMode::Leech,
                }],
            }),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.json().status, Status::AuthenticationRequired);

    // The tracker is closed: ANONYMOUS is refused.
    let answer = post_xml(addr, connect_anonymous("bob", 4, 7000)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // An account added while the tracker runs works without a restart.
    let path = dir.join("accounts");
    let mut accounts = Accounts::load(&path).expect("load");
    accounts
        .set_password_with(&PeerId::new("bob").expect("id"), b"pw", cheap_params())
        .expect("hash");
    // Make sure the modification time moves even on coarse-grained file systems.
    std::thread::sleep(std::time::Duration::from_millis(20));
    accounts.save(&path).expect("save");
    let answer = post_xml(addr, connect_plain("bob", "pw", 5)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn plain_over_cleartext_is_refused_off_loopback() {
    let dir = temp_dir("cleartext");
    // Tests stay on loopback; this makes the loopback listener count as an ordinary
    // cleartext one, as a listener on a public address would.
    let mut config = closed_config(accounts_file(&dir));
    config.auth.loopback_is_secure = false;
    let server = TestServer::start(config.clone()).await;
    let answer = post_xml(server.http, connect_plain("alice", "correct horse", 1)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.xml().status, Status::AuthenticationRequired);
    server.stop().await.expect("clean stop");

    // Unless the configuration explicitly allows it.
    config.auth.allow_plain_over_cleartext = true;
    let server = TestServer::start(config).await;
    let answer = post_xml(server.http, connect_plain("alice", "correct horse", 2)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn https_listener_with_a_generated_certificate() {
    let dir = temp_dir("tls");
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, generated.cert.pem()).expect("write cert");
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).expect("write key");

    let mut config = closed_config(accounts_file(&dir));
    config.auth.loopback_is_secure = false;
    config.tls.cert = Some(cert_path);
    config.tls.key = Some(key_path);
    let server = TestServer::start(config).await;
    let https = server.https.expect("https listener");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(generated.cert.der().clone()).expect("root");
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");

    // TLS protects the password, so PLAIN is accepted where cleartext is not.
    let tcp = tokio::net::TcpStream::connect(https)
        .await
        .expect("connect");
    let tls = connector
        .connect(name.clone(), tcp)
        .await
        .expect("handshake");
    let answer = send_on(
        tls,
        "POST",
        "/",
        &[("content-type", "application/xml")],
        connect_plain("alice", "correct horse", 9),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.xml().transaction_id, Some(TransactionId::numeric(9)));

    let tcp = tokio::net::TcpStream::connect(https)
        .await
        .expect("connect");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let answer = send_on(tls, "GET", "/healthz", &[], Bytes::new()).await;
    assert_eq!(answer.status, StatusCode::OK);

    // The cleartext listener of the same server refuses the same CONNECT.
    let answer = post_xml(server.http, connect_plain("alice", "correct horse", 10)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

fn json_request(peer: &str, txid: &str, body: RequestBody) -> Vec<u8> {
    ppsp_proto::json::encode_request(&Request {
        peer_id: PeerId::new(peer).expect("id"),
        auth_token: None,
        transaction_id: TransactionId::new(txid).expect("txid"),
        body,
    })
    .into_bytes()
}

async fn post_json(addr: std::net::SocketAddr, body: Vec<u8>) -> Answer {
    send(
        addr,
        "POST",
        "/",
        &[("content-type", "application/ppsp-tracker+json")],
        body,
    )
    .await
}

#[tokio::test]
async fn json_and_xml_share_one_tracker() {
    let server = TestServer::start(ServerConfig::default()).await;
    let addr = server.http;
    let token = connect(addr, "xml-seed", 1).await;
    let answer = post_xml(addr, join("xml-seed", &token, "shared", "SEED", 2)).await;
    assert_eq!(answer.status, StatusCode::OK);

    let connect_json = json_request(
        "json-leech",
        "j-1",
        RequestBody::Connect(Connect {
            auth: None,
            addresses: vec![ppsp_proto::PeerAddress::new(
                std::net::IpAddr::from([127, 0, 0, 1]),
                6881,
            )],
            peer_num: Some(PeerNum::count(10)),
            swarm_actions: vec![SwarmAction {
                swarm_id: SwarmId::new("shared").expect("id"),
                action: SwarmActionKind::Join,
                mode: PeerMode::Leech,
            }],
        }),
    );
    let answer = post_json(addr, connect_json).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(
        answer.header("content-type"),
        Some("application/ppsp-tracker+json")
    );
    let connected = answer.json();
    assert_eq!(connected.status, Status::Ok);
    assert_eq!(
        connected.transaction_id,
        Some(TransactionId::new("j-1").expect("id"))
    );

    let find_json = json_request(
        "json-leech",
        "j-2",
        RequestBody::Find(Find {
            swarm_id: SwarmId::new("shared").expect("id"),
            peer_num: Some(PeerNum::count(10)),
            hints: Default::default(),
            clip: None,
        }),
    );
    let answer = post_json(addr, find_json).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(peer_ids(&answer.json()), vec!["xml-seed".to_owned()]);

    // The XML side sees the JSON leech too (in /api/stats).
    let stats: serde_json::Value =
        serde_json::from_slice(&get(addr, "/api/stats").await.body()).expect("json");
    let swarm = &stats["swarms"][0];
    assert_eq!(swarm["swarm_id"], "shared");
    assert_eq!(swarm["peers_by_mode"]["SEED"], 1);
    assert_eq!(swarm["peers_by_mode"]["LEECH"], 1);

    // An unregistered JSON peer gets Forbidden Action, mirrored as 403.
    let stranger = json_request(
        "stranger",
        "j-3",
        RequestBody::Find(Find {
            swarm_id: SwarmId::new("shared").expect("id"),
            peer_num: None,
            hints: Default::default(),
            clip: None,
        }),
    );
    let answer = post_json(addr, stranger.clone()).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.json().status, Status::MessageForbidden);
    server.stop().await.expect("clean stop");

    // With `always_200` the same outcome travels in the body only.
    let mut config = ServerConfig::default();
    config.server.json_error_http_status = ppsp_server::config::JsonErrorHttpStatus::Always200;
    let server = TestServer::start(config).await;
    let answer = post_json(server.http, stranger).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json().status, Status::MessageForbidden);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn health_metrics_stats_and_dashboard() {
    let server = TestServer::start(ServerConfig::default()).await;
    let addr = server.http;

    let answer = get(addr, "/healthz").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "ok");

    let seed = connect(addr, "s1", 1).await;
    post_xml(addr, join("s1", &seed, "movie-1", "SEED", 2)).await;
    let leech = connect(addr, "l1", 3).await;
    post_xml(addr, join("l1", &leech, "movie-1", "LEECH", 4)).await;
    let answer = post_xml(
        addr,
        stat_report("l1", &leech, "movie-1", 5, (0, 15, "//8="), 4096, 8192),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    // Undecodable requests never reach the core, yet count as INVALID SYNTAX too.
    let answer = post_xml(addr, "<PPSPTrackerProtocol").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/openmetrics-text"))
    );
    let text = metrics.text();
    for line in [
        "ppsp_requests_total{method=\"CONNECT\",protocol=\"xml\",status=\"OK\"} 2",
        "ppsp_requests_total{method=\"JOIN\",protocol=\"xml\",status=\"OK\"} 2",
        "ppsp_requests_total{method=\"STAT_REPORT\",protocol=\"xml\",status=\"OK\"} 1",
        "ppsp_requests_total{method=\"unknown\",protocol=\"xml\",status=\"INVALID SYNTAX\"} 1",
        "ppsp_sessions 2",
        "ppsp_swarms 1",
        "ppsp_peers{mode=\"SEED\"} 1",
        "ppsp_peers{mode=\"LEECH\"} 1",
        "ppsp_sessions_expired_total 0",
        "ppsp_memberships_expired_total 0",
        "ppsp_reported_bytes_total{direction=\"uploaded\"} 4096",
        "ppsp_reported_bytes_total{direction=\"downloaded\"} 8192",
        "ppsp_request_duration_seconds_count{method=\"JOIN\"} 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("ppsp_http_responses_total{code=\"200\"}"));
    assert!(text.contains("# TYPE ppsp_requests counter"));

    let stats = get(addr, "/api/stats").await;
    assert_eq!(stats.header("content-type"), Some("application/json"));
    let stats: serde_json::Value = serde_json::from_slice(&stats.body()).expect("json");
    assert_eq!(stats["totals"]["sessions"], 2);
    assert_eq!(stats["totals"]["swarms"], 1);
    assert_eq!(stats["requests_by_method"]["CONNECT"], 2);
    assert_eq!(stats["responses_by_status"]["INVALID SYNTAX"], 1);
    assert_eq!(stats["totals"]["uploaded_bytes_reported"], 4096);
    assert_eq!(stats["swarms_matching"], 1);
    let swarm = &stats["swarms"][0];
    assert_eq!(swarm["swarm_id"], "movie-1");
    assert_eq!(swarm["peer_count"], 2);
    let peers = swarm["peers"].as_array().expect("peers");
    let l1 = peers
        .iter()
        .find(|p| p["peer_id"] == "l1")
        .expect("l1 listed");
    assert_eq!(l1["mode"], "LEECH");
    assert_eq!(l1["uploaded_bytes"], 4096);
    assert_eq!(l1["downloaded_bytes"], 8192);
    assert_eq!(l1["chunks_held"], 16);
    let clips = swarm["chunk_availability"]
        .as_array()
        .expect("availability");
    assert_eq!(clips[0]["clip"], "movie");
    assert_eq!(clips[0]["media"], "video");
    assert_eq!(clips[0]["chunks_available"], 16);

    let page = get(addr, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html"))
    );
    let html = page.text();
    assert!(html.contains("/api/stats"));
    // Self-contained: no external scripts, styles or images.
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(!html.contains("<link"));

    // A compressed /metrics for clients that accept it.
    let answer = send(
        addr,
        "GET",
        "/metrics",
        &[("accept-encoding", "gzip")],
        Bytes::new(),
    )
    .await;
    assert_eq!(answer.header("content-encoding"), Some("gzip"));
    assert!(answer.text().contains("ppsp_sessions 2"));
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn forwarded_for_only_from_trusted_proxies() {
    let forwarded = |server: &TestServer, txid: u64| {
        let addr = server.http;
        async move {
            let answer = send(
                addr,
                "POST",
                "/",
                &[
                    ("content-type", "application/xml"),
                    ("x-forwarded-for", "203.0.113.9, 127.0.0.1"),
                ],
                connect_anonymous(&format!("fwd{txid}"), txid, 7000),
            )
            .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
            answer.xml().reflexive_addresses[0].ip
        }
    };
    let mut config = ServerConfig::default();
    config.server.trusted_proxies = vec!["127.0.0.0/8".to_owned()];
    let trusting = TestServer::start(config).await;
    assert_eq!(
        forwarded(&trusting, 1).await,
        std::net::IpAddr::from([203, 0, 113, 9])
    );
    trusting.stop().await.expect("clean stop");

    let untrusting = TestServer::start(ServerConfig::default()).await;
    assert_eq!(
        forwarded(&untrusting, 2).await,
        std::net::IpAddr::from([127, 0, 0, 1])
    );
    untrusting.stop().await.expect("clean stop");
}

#[tokio::test]
async fn connect_queue_overflow_is_503_with_retry_after() {
    let dir = temp_dir("overload");
    let path = dir.join("accounts");
    let mut accounts = Accounts::new();
    // Deliberately costly hash so that CONNECTs overlap.
    accounts
        .set_password_with(
            &PeerId::new("alice").expect("id"),
            b"pw",
            argon2::Params::new(32 * 1024, 3, 1, None).expect("params"),
        )
        .expect("hash");
    accounts.save(&path).expect("save");
    let mut config = closed_config(path);
    config.server.connect_concurrency = 1;
    config.server.connect_queue_timeout_ms = 1;
    config.server.retry_after_secs = 7;
    let server = TestServer::start(config).await;
    let addr = server.http;
    let attempts: Vec<_> = (0..4)
        .map(|i| tokio::spawn(post_xml(addr, connect_plain("alice", "pw", 40 + i))))
        .collect();
    let mut shed = 0;
    let mut accepted = 0;
    for attempt in attempts {
        let answer = attempt.await.expect("task");
        match answer.status {
            StatusCode::OK => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                shed += 1;
                assert_eq!(answer.header("retry-after"), Some("7"));
                assert_eq!(answer.xml().status, Status::TemporarilyOverloaded);
            }
            other => panic!("unexpected {other}: {}", answer.text()),
        }
    }
    assert!(accepted >= 1, "at least one CONNECT gets through");
    assert!(shed >= 1, "at least one CONNECT is shed");
    let metrics = get(addr, "/metrics").await.text();
    let line = format!("ppsp_refusals_total{{cause=\"load_shedding\"}} {shed}");
    assert!(
        metrics.lines().any(|l| l == line),
        "no {line:?} in\n{metrics}"
    );
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn stun_binding_service_reports_the_source_address() {
    let mut config = ServerConfig::default();
    config.stun.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    config.server.listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))];
    let listeners = ppsp_server::Listeners::bind(&config).await.expect("bind");
    let lines = listeners.readiness_lines().expect("lines");
    assert!(lines[0].starts_with("listening on http://127.0.0.1:"));
    let stun_line = lines.last().expect("stun line");
    let stun_addr: std::net::SocketAddr = stun_line
        .strip_prefix("stun on udp://")
        .expect("stun readiness line")
        .parse()
        .expect("address");
    let http = listeners.http[0].local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ppsp_server::serve(config, listeners, async move {
        let _ = stopped.await;
    }));

    let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let transaction = [7u8; 12];
    client
        .send_to(&ppsp_proto::stun::binding_request(transaction), stun_addr)
        .await
        .expect("send");
    let mut buf = [0u8; 1024];
    let (len, _) = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.recv_from(&mut buf),
    )
    .await
    .expect("answer in time")
    .expect("receive");
    let mapped =
        ppsp_proto::stun::parse_binding_response(&buf[..len], &transaction).expect("answer");
    assert_eq!(mapped, client.local_addr().expect("addr"));

    // Garbage is dropped silently and the service keeps answering.
    client.send_to(b"not stun", stun_addr).await.expect("send");
    let metrics = get(http, "/metrics").await.text();
    assert!(metrics.contains("ppsp_stun_answers_total 1"), "{metrics}");

    let _ = stop.send(());
    task.await.expect("task").expect("clean stop");
}

#[tokio::test]
async fn ipv6_listener_when_available() {
    // Some sandboxes have no IPv6 loopback; there is nothing to test there.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        return;
    }
    let mut config = ServerConfig::default();
    config.server.listen = vec!["[::1]:0".parse().expect("addr")];
    let listeners = ppsp_server::Listeners::bind(&config).await.expect("bind");
    let addr = listeners.http[0].local_addr().expect("addr");
    assert!(
        listeners.readiness_lines().expect("lines")[0].starts_with("listening on http://[::1]:")
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ppsp_server::serve(config, listeners, async move {
        let _ = stopped.await;
    }));
    let answer = post_xml(addr, connect_anonymous("v6-peer", 1, 7000)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(
        answer.xml().reflexive_addresses[0].ip,
        "::1".parse::<std::net::IpAddr>().expect("ip")
    );
    let _ = stop.send(());
    task.await.expect("task").expect("clean stop");
}

#[tokio::test]
async fn chunked_bodies_and_keep_alive() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start(ServerConfig::default()).await;
    let mut stream = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    let body = connect_anonymous("chunky", 31, 7000);
    let (first, second) = body.split_at(body.len() / 2);
    let mut request = String::from(
        "POST /tracker HTTP/1.1\r\nHost: t\r\nContent-Type: application/xml\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
    );
    for part in [first, second] {
        request.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
    }
    request.push_str("0\r\n\r\n");
    // Two requests on one connection: the second only after the first answer.
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("</PPSPTrackerProtocol>") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("<TransactionID>31</TransactionID>"));

    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut seen = Vec::new();
    while !seen.ends_with(b"ok") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "keep-alive connection closed");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200 OK"));
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn repeated_failed_connects_are_held_off() {
    let dir = temp_dir("guessing");
    let mut config = closed_config(accounts_file(&dir));
    config.auth.max_failed_connects = 2;
    config.server.retry_after_secs = 9;
    let server = TestServer::start(config).await;
    let addr = server.http;
    for txid in 1..=2 {
        let answer = post_xml(addr, connect_plain("alice", "guess", txid)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is not checked until the window ends.
    let answer = post_xml(addr, connect_plain("alice", "correct horse", 3)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.header("retry-after"), Some("9"));
    let refused = answer.xml();
    assert_eq!(refused.status, Status::TemporarilyOverloaded);
    assert_eq!(refused.transaction_id, Some(TransactionId::numeric(3)));
    // Other requests from the same source are unaffected.
    assert_eq!(get(addr, "/healthz").await.status, StatusCode::OK);
    let metrics = get(addr, "/metrics").await.text();
    for line in [
        "ppsp_refusals_total{cause=\"authentication\"} 2",
        "ppsp_refusals_total{cause=\"failed_connect_holdoff\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn shutdown_drains_requests_in_flight() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start(ServerConfig::default()).await;
    let addr = server.http;
    // An idle keep-alive connection, which shutdown simply closes.
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // A request whose body is only half sent when shutdown begins.
    let body = connect_anonymous("draining", 61, 7000);
    let (first, second) = body.split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = xml_post_head(body.len());
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(first.as_bytes()).await.expect("write");
    // Make sure the server is reading this request before shutdown starts.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let stopping = tokio::spawn(server.stop());
    // New connections are soon no longer accepted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "listener still open");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stream.write_all(second.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("answered and closed in time")
    .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("<TransactionID>61</TransactionID>"));

    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        idle.read_to_end(&mut rest),
    )
    .await
    .expect("idle connection closed");
    assert!(closed.is_ok_and(|n| n == 0) || rest.is_empty());
    tokio::time::timeout(std::time::Duration::from_secs(15), stopping)
        .await
        .expect("server returns")
        .expect("task")
        .expect("clean stop");
}

#[tokio::test]
async fn behind_a_proxy_plain_needs_the_client_side_to_be_https() {
    let dir = temp_dir("proxy-plain");
    let mut config = closed_config(accounts_file(&dir));
    config.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
    let server = TestServer::start(config).await;
    let via_proxy = |proto: Option<&'static str>, txid: u64| {
        let addr = server.http;
        async move {
            let mut headers = vec![
                ("content-type", "application/xml"),
                ("x-forwarded-for", "198.51.100.4"),
            ];
            if let Some(proto) = proto {
                headers.push(("x-forwarded-proto", proto));
            }
            send(
                addr,
                "POST",
                "/",
                &headers,
                connect_plain("alice", "correct horse", txid),
            )
            .await
            .status
        }
    };
    // The proxy reached the client over cleartext (or does not say): PLAIN is refused even
    // though the proxy's own connection is on loopback.
    assert_eq!(via_proxy(None, 1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(via_proxy(Some("http"), 2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(via_proxy(Some("https"), 3).await, StatusCode::OK);
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_sweep_task_expires_memberships_and_idle_sessions() {
    let mut config = ServerConfig::default();
    config.server.sweep_interval_ms = 50;
    config.tracker.session_idle_timeout_secs = 2;
    let server = TestServer::start(config).await;
    let addr = server.http;
    let token = connect(addr, "short-lived", 1).await;
    let join_with_expiry = join("short-lived", &token, "brief", "SEED", 2)
        .replace("<ExpireTime>0</ExpireTime>", "<ExpireTime>1</ExpireTime>");
    let answer = post_xml(addr, join_with_expiry).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut seen_membership_expiry = false;
    loop {
        let metrics = get(addr, "/metrics").await.text();
        let has = |line: &str| metrics.lines().any(|l| l == line);
        // A scrape reads the state gauges before the counters, and the sweep runs on
        // another task: a scrape taken during a sweep can count an expiry whose removal
        // its gauges had not seen yet. The next scrape agrees.
        if has("ppsp_memberships_expired_total 1") && has("ppsp_swarms 0") {
            // The swarm went with its last member.
            seen_membership_expiry = true;
        }
        if seen_membership_expiry && has("ppsp_sessions_expired_total 1") && has("ppsp_sessions 0")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no expiry seen:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The expired session's token is dead.
    let answer = post_xml(addr, bare("KEEPALIVE", "short-lived", &token, 3)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn connections_still_busy_after_the_grace_period_are_dropped() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut config = ServerConfig::default();
    config.server.shutdown_grace_secs = 1;
    config.server.body_read_timeout_secs = 60;
    let server = TestServer::start(config).await;
    let mut stream = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    // A body that never completes keeps its request in flight.
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n<PPSP")
        .await
        .expect("write");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    server.stop().await.expect("clean stop");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "serve returned after {:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut rest),
    )
    .await
    .expect("connection closed");
    assert!(read.is_err() || rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn silent_connections_close_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut config = ServerConfig::default();
    config.server.idle_timeout_secs = 1;
    // Longer than the idle timeout, so that the idle timeout is what closes the connection.
    config.server.header_read_timeout_secs = 30;
    let server = TestServer::start(config).await;

    // A connection that is used, then falls silent.
    let mut stream = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    let body = connect_anonymous("idle", 5, 7000);
    let head = xml_post_head(body.len());
    stream
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .expect("write");
    let mut answer = vec![0u8; 4096];
    let read = stream.read(&mut answer).await.expect("answer");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200 OK"));
    let silent_from = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut rest),
    )
    .await
    .expect("closed within 10 s");
    let silence = silent_from.elapsed();
    assert!(matches!(closed, Ok(0)), "{closed:?} {rest:?}");
    assert!(
        silence >= std::time::Duration::from_millis(900),
        "closed after only {silence:?} of silence"
    );
    assert!(
        silence <= std::time::Duration::from_secs(5),
        "closed after {silence:?} of silence, idle timeout 1 s"
    );
    server.stop().await.expect("clean stop");
}
