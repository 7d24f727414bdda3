//! Attacks on authentication over real HTTP(S), in process, from second loopback source
//! addresses (127.0.0.2 and up): aimed lockouts, squatting an account's PeerID, and HTTP
//! Digest and client certificates for JSON peers.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use ppsp_proto::{
    Connect, Find, PeerId, PeerMode, PeerNum, Request, RequestBody, Status, SwarmAction,
    SwarmActionKind, SwarmId, TransactionId,
};
use ppsp_server::{Accounts, ServerConfig};
use support::*;

const REALM: &str = "ppsp";

/// Sends one request to `addr` from the loopback address `source`.
async fn send_from(
    source: [u8; 4],
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::from(source), 0))
        .expect("bind the source address");
    let stream = socket.connect(addr).await.expect("connect");
    send_on(stream, "POST", "/", headers, body).await
}

async fn xml_from(source: [u8; 4], addr: SocketAddr, body: String) -> Answer {
    send_from(source, addr, &[("content-type", "application/xml")], body).await
}

fn cheap_params() -> argon2::Params {
    argon2::Params::new(256, 1, 1, None).expect("params")
}

/// An accounts file with `alice` (password `correct horse`, with a Digest secret) and
/// `bob` (password `pw`, PLAIN only).
fn accounts_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("accounts");
    let mut accounts = Accounts::new();
    let alice = PeerId::new("alice").expect("id");
    accounts
        .set_password_with(&alice, b"correct horse", cheap_params())
        .expect("hash");
    accounts
        .set_digest(&alice, REALM, b"correct horse")
        .expect("digest");
    accounts
        .set_password_with(&PeerId::new("bob").expect("id"), b"pw", cheap_params())
        .expect("hash");
    accounts.save(&path).expect("save");
    path
}

fn config_with_accounts(dir: &std::path::Path, open: bool) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.auth.allow_anonymous = open;
    config.auth.accounts_file = Some(accounts_file(dir));
    config
}

#[tokio::test]
async fn failures_from_one_network_never_refuse_the_owner_elsewhere() {
    let dir = temp_dir("aimed-lockout");
    let mut config = config_with_accounts(&dir, false);
    config.auth.max_failed_connects = 3;
    let server = TestServer::start(config).await;
    let addr = server.http;
    let attacker = [127, 0, 0, 2];
    for txid in 1..=3 {
        let answer = xml_from(attacker, addr, connect_plain("alice", "guess", txid)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    // The attacker's network is held off, whatever PeerID it names...
    let answer = xml_from(attacker, addr, connect_plain("bob", "pw", 4)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.xml().status, Status::TemporarilyOverloaded);
    // ...but alice's correct password from her own address is checked and accepted.
    let answer = xml_from(
        [127, 0, 0, 1],
        addr,
        connect_plain("alice", "correct horse", 5),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(answer.xml().auth_token.is_some());
    // A neighbour in the same /24 is a different network by default.
    let answer = xml_from([127, 0, 0, 3], addr, connect_plain("bob", "pw", 6)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_ipv4_prefix_of_24_counts_neighbours_together() {
    let dir = temp_dir("lockout-24");
    let mut config = config_with_accounts(&dir, false);
    config.auth.max_failed_connects = 2;
    config.auth.failed_connect_ipv4_prefix = 24;
    let server = TestServer::start(config).await;
    let addr = server.http;
    let answer = xml_from([127, 0, 0, 2], addr, connect_plain("alice", "guess", 1)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = xml_from([127, 0, 0, 3], addr, connect_plain("alice", "guess", 2)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = xml_from([127, 0, 0, 4], addr, connect_plain("bob", "pw", 3)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn anonymous_cannot_use_a_peer_id_that_has_an_account() {
    let dir = temp_dir("squat-anonymous");
    let server = TestServer::start(config_with_accounts(&dir, true)).await;
    let addr = server.http;
    let owner = [127, 0, 0, 1];
    let answer = xml_from(owner, addr, connect_plain("alice", "correct horse", 1)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let token = answer.xml().auth_token.expect("token").as_str().to_owned();
    let answer = xml_from(owner, addr, join("alice", &token, "movie", "SEED", 2)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    // From elsewhere, ANONYMOUS naming alice is refused and changes nothing.
    let attacker = [127, 0, 0, 2];
    let answer = xml_from(attacker, addr, connect_anonymous("alice", 3, 9999)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.xml().status, Status::AuthenticationRequired);
    assert!(answer.xml().auth_token.is_none());
    let answer = xml_from(owner, addr, bare("KEEPALIVE", "alice", &token, 4)).await;
    assert_eq!(answer.status, StatusCode::OK, "alice's token survives");
    let leech = connect(addr, "carol", 5).await;
    let answer = post_xml(addr, join("carol", &leech, "movie", "LEECH", 6)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let answer = post_xml(addr, find("carol", &leech, "movie", 7, None)).await;
    assert_eq!(
        peer_ids(&answer.xml()),
        vec!["alice".to_owned()],
        "alice still listed"
    );

    // A PeerID without an account stays open to ANONYMOUS.
    let answer = xml_from(attacker, addr, connect_anonymous("mallory", 8, 9999)).await;
    assert_eq!(answer.status, StatusCode::OK);
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

fn json_body(peer: &str, txid: &str, body: RequestBody) -> Vec<u8> {
    ppsp_proto::json::encode_request(&Request {
        peer_id: PeerId::new(peer).expect("id"),
        auth_token: None,
        transaction_id: TransactionId::new(txid).expect("txid"),
        body,
    })
    .into_bytes()
}

fn json_connect(peer: &str, txid: &str) -> Vec<u8> {
    json_body(
        peer,
        txid,
        RequestBody::Connect(Connect {
            auth: None,
            addresses: vec![ppsp_proto::PeerAddress::new(
                IpAddr::from([127, 0, 0, 1]),
                6881,
            )],
            peer_num: Some(PeerNum::count(10)),
            swarm_actions: vec![SwarmAction {
                swarm_id: SwarmId::new("movie").expect("id"),
                action: SwarmActionKind::Join,
                mode: PeerMode::Leech,
            }],
        }),
    )
}

fn json_find(peer: &str, txid: &str) -> Vec<u8> {
    json_body(
        peer,
        txid,
        RequestBody::Find(Find {
            swarm_id: SwarmId::new("movie").expect("id"),
            peer_num: Some(PeerNum::count(10)),
            hints: Default::default(),
            clip: None,
        }),
    )
}

const JSON: (&str, &str) = ("content-type", "application/ppsp-tracker+json");

#[tokio::test]
async fn unauthenticated_json_cannot_use_a_peer_id_that_has_an_account() {
    let dir = temp_dir("squat-json");
    let server = TestServer::start(config_with_accounts(&dir, true)).await;
    let addr = server.http;
    let answer = send_from([127, 0, 0, 2], addr, &[JSON], json_connect("alice", "j1")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.json().status, Status::AuthenticationRequired);
    let challenge = answer.header("www-authenticate").expect("challenge");
    assert!(
        challenge.starts_with("Digest realm=\"ppsp\""),
        "{challenge}"
    );
    assert!(challenge.contains("algorithm=SHA-256"), "{challenge}");
    // FIND and STAT_REPORT are vetted the same way.
    let answer = send_from([127, 0, 0, 2], addr, &[JSON], json_find("alice", "j2")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // A PeerID without an account joins without credentials on an open tracker.
    let answer = send_from([127, 0, 0, 2], addr, &[JSON], json_connect("dave", "j3")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A certificate authority, the tracker's certificate and a client certificate for
/// `client_name`, written as PEM files into `dir`. Returns the rustls client parts.
struct Pki {
    ca_path: std::path::PathBuf,
    ca: rcgen::Certificate,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
    client: Option<(rcgen::Certificate, rcgen::KeyPair)>,
}

fn pki(dir: &std::path::Path, client_name: Option<&str>) -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ppsp test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("key");
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&server_key, &issuer)
        .expect("server certificate");
    let client = client_name.map(|name| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &issuer).expect("client certificate");
        (cert, key)
    });
    let ca_path = dir.join("ca.pem");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    std::fs::write(&cert_path, server.pem()).expect("write cert");
    std::fs::write(&key_path, server_key.serialize_pem()).expect("write key");
    Pki {
        ca_path,
        ca,
        cert_path,
        key_path,
        client,
    }
}

fn connector(pki: &Pki, with_client_cert: bool) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match (&pki.client, with_client_cert) {
        (Some((cert, key)), true) => builder
            .with_client_auth_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key"),
            )
            .expect("client certificate"),
        _ => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn https_post(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    send_on(tls, "POST", "/", headers, body).await
}

fn closed_https_config(dir: &std::path::Path, pki: &Pki) -> ServerConfig {
    let mut config = config_with_accounts(dir, false);
    config.tls.cert = Some(pki.cert_path.clone());
    config.tls.key = Some(pki.key_path.clone());
    config
}

/// The test's own RFC 7616 client: the SHA-256 `Authorization` header answering
/// `challenge` for `method` on `uri` with nonce count `nc`.
fn digest_authorization(
    challenge: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> String {
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("nonce in the challenge");
    let hash = |text: String| {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let ha1 = hash(format!("{user}:{REALM}:{password}"));
    let ha2 = hash(format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let cnonce = "0a4f113b";
    let response = hash(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         algorithm=SHA-256, qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\""
    )
}

#[tokio::test]
async fn digest_sha256_lets_json_peers_into_a_closed_tracker_over_tls() {
    let dir = temp_dir("digest");
    let pki = pki(&dir, None);
    let server = TestServer::start(closed_https_config(&dir, &pki)).await;
    let https = server.https.expect("https listener");
    let tls = connector(&pki, false);

    let answer = https_post(&tls, https, &[JSON], json_connect("alice", "d1")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let challenge = answer
        .header("www-authenticate")
        .expect("challenge")
        .to_owned();

    let authorization = digest_authorization(&challenge, "alice", "correct horse", "POST", "/", 1);
    let headers = [JSON, ("authorization", authorization.as_str())];
    let answer = https_post(&tls, https, &headers, json_connect("alice", "d2")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json().status, Status::Ok);

    // The same nonce with the next count serves the next request...
    let next = digest_authorization(&challenge, "alice", "correct horse", "POST", "/", 2);
    let next_headers = [JSON, ("authorization", next.as_str())];
    let answer = https_post(&tls, https, &next_headers, json_find("alice", "d3")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    // ...and a replay of either is refused.
    let answer = https_post(&tls, https, &next_headers, json_find("alice", "d4")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = https_post(&tls, https, &headers, json_find("alice", "d5")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // Wrong password, a nonce the tracker never issued, another uri: 401.
    let wrong = digest_authorization(&challenge, "alice", "guess", "POST", "/", 3);
    let answer = https_post(
        &tls,
        https,
        &[JSON, ("authorization", wrong.as_str())],
        json_find("alice", "d6"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let forged = digest_authorization(
        "nonce=\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"",
        "alice",
        "correct horse",
        "POST",
        "/",
        1,
    );
    let answer = https_post(
        &tls,
        https,
        &[JSON, ("authorization", forged.as_str())],
        json_find("alice", "d7"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer
            .header("www-authenticate")
            .is_some_and(|c| c.contains("stale=true")),
        "right password, unknown nonce: stale"
    );
    let elsewhere = digest_authorization(&challenge, "alice", "correct horse", "POST", "/x", 4);
    let answer = https_post(
        &tls,
        https,
        &[JSON, ("authorization", elsewhere.as_str())],
        json_find("alice", "d8"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // Authenticated as alice, asking for another peer_id: 403.
    let as_alice = digest_authorization(&challenge, "alice", "correct horse", "POST", "/", 5);
    let answer = https_post(
        &tls,
        https,
        &[JSON, ("authorization", as_alice.as_str())],
        json_connect("bob", "d9"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.json().status, Status::MessageForbidden);

    // bob has no Digest secret: he cannot use Digest at all.
    let as_bob = digest_authorization(&challenge, "bob", "pw", "POST", "/", 1);
    let answer = https_post(
        &tls,
        https,
        &[JSON, ("authorization", as_bob.as_str())],
        json_connect("bob", "d10"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn curl_digest_against_a_closed_tracker_over_tls() {
    let dir = temp_dir("curl-digest");
    let pki = pki(&dir, None);
    let server = TestServer::start(closed_https_config(&dir, &pki)).await;
    let https = server.https.expect("https listener");
    let body_path = dir.join("connect.json");
    std::fs::write(&body_path, json_connect("alice", "c1")).expect("body");
    let output = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--digest",
            "--user",
            "alice:correct horse",
        ])
        .arg("--cacert")
        .arg(&pki.ca_path)
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", https.port()),
        ])
        .args(["--header", "content-type: application/ppsp-tracker+json"])
        .args(["--write-out", "\n%{http_code}"])
        .arg("--data-binary")
        .arg(format!("@{}", body_path.display()))
        .arg(format!("https://localhost:{}/", https.port()))
        .output()
        .await
        .expect("curl runs (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (body, code) = stdout.rsplit_once('\n').expect("status line");
    assert_eq!(code, "200", "{body}");
    let response = ppsp_proto::json::decode_response(body.as_bytes(), &Default::default())
        .expect("JSON response");
    assert_eq!(response.status, Status::Ok);
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_client_certificate_names_the_json_peer() {
    let dir = temp_dir("client-cert");
    let pki = pki(&dir, Some("carol"));
    let mut config = closed_https_config(&dir, &pki);
    config.tls.client_ca = Some(pki.ca_path.clone());
    let server = TestServer::start(config).await;
    let https = server.https.expect("https listener");
    let with_cert = connector(&pki, true);

    let answer = https_post(&with_cert, https, &[JSON], json_connect("carol", "t1")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let answer = https_post(&with_cert, https, &[JSON], json_find("carol", "t2")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    // carol's certificate does not make her alice.
    let answer = https_post(&with_cert, https, &[JSON], json_connect("alice", "t3")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    // Without a certificate the closed tracker asks for Digest.
    let without = connector(&pki, false);
    let answer = https_post(&without, https, &[JSON], json_connect("carol", "t4")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(addr, "GET", path, headers, Bytes::new()).await
}

#[tokio::test]
async fn admin_pages_on_their_own_listener_behind_a_bearer_token() {
    let dir = temp_dir("admin");
    let token_path = dir.join("admin-token");
    std::fs::write(&token_path, "t0ken-for-tests\n").expect("token");
    let mut config = ServerConfig::default();
    config.admin.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.admin.token_file = Some(token_path);
    let server = TestServer::start(config).await;
    let admin = server.admin.expect("admin listener");
    let bearer = [("authorization", "Bearer t0ken-for-tests")];

    // The protocol listener serves the protocol and the health check, not the admin pages.
    for path in ["/", "/api/stats", "/metrics"] {
        let answer = get_with(server.http, path, &bearer).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(get(server.http, "/healthz").await.status, StatusCode::OK);
    connect(server.http, "p1", 1).await;

    // The admin listener wants the token...
    for path in ["/", "/api/stats", "/metrics"] {
        let answer = get_with(admin, path, &[]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer realm=\"ppsp-admin\"")
        );
        let wrong = get_with(admin, path, &[("authorization", "Bearer guess")]).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // ...serves the pages with it, and nothing of the protocol.
    let stats = get_with(admin, "/api/stats", &bearer).await;
    assert_eq!(stats.status, StatusCode::OK);
    let stats: serde_json::Value = serde_json::from_slice(&stats.body()).expect("JSON");
    assert_eq!(
        stats["totals"]["sessions"], 1,
        "the protocol listener's CONNECT counted"
    );
    let metrics = get_with(admin, "/metrics", &bearer).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert_eq!(get(admin, "/healthz").await.status, StatusCode::OK);
    let answer = send(
        admin,
        "POST",
        "/",
        &[("content-type", "application/xml")],
        connect_anonymous("p2", 2, 7000),
    )
    .await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_token_alone_guards_the_admin_pages_on_the_protocol_listener() {
    let dir = temp_dir("admin-token");
    let token_path = dir.join("admin-token");
    std::fs::write(&token_path, "another-t0ken").expect("token");
    let mut config = ServerConfig::default();
    config.admin.token_file = Some(token_path);
    let server = TestServer::start(config).await;
    let answer = get(server.http, "/metrics").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = get_with(
        server.http,
        "/metrics",
        &[("authorization", "Bearer another-t0ken")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    // The default configuration keeps serving them to a local user.
    server.stop().await.expect("clean stop");
    let open = TestServer::start(ServerConfig::default()).await;
    assert_eq!(get(open.http, "/api/stats").await.status, StatusCode::OK);
    assert_eq!(get(open.http, "/").await.status, StatusCode::OK);
    open.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn digest_guesses_count_against_the_guessers_network_only() {
    let dir = temp_dir("digest-guessing");
    let mut config = config_with_accounts(&dir, false);
    config.auth.max_failed_connects = 2;
    let server = TestServer::start(config).await;
    let addr = server.http;
    let guesser = [127, 0, 0, 2];
    let answer = send_from(guesser, addr, &[JSON], json_connect("alice", "g0")).await;
    let challenge = answer
        .header("www-authenticate")
        .expect("challenge")
        .to_owned();
    for nc in 1..=2 {
        let guess = digest_authorization(&challenge, "alice", "guess", "POST", "/", nc);
        let headers = [JSON, ("authorization", guess.as_str())];
        let answer = send_from(guesser, addr, &headers, json_connect("alice", "g1")).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    // Held off now, even with the right password...
    let right = digest_authorization(&challenge, "alice", "correct horse", "POST", "/", 3);
    let headers = [JSON, ("authorization", right.as_str())];
    let answer = send_from(guesser, addr, &headers, json_connect("alice", "g2")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    // ...while alice, elsewhere, gets in with the same challenge's nonce.
    let answer = send_from([127, 0, 0, 1], addr, &headers, json_connect("alice", "g3")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    server.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

/// On an open tracker (no accounts), a stranger at 127.0.0.2 naming a live peer's PeerID
/// cannot take its session, nor replay its CONNECT for its token; the owner is untouched.
#[tokio::test]
async fn an_open_tracker_keeps_sessions_with_their_owners() {
    let server = TestServer::start(ServerConfig::default()).await;
    let addr = server.http;
    let victim_connect = connect_anonymous("victim", 1, 7000);
    let first = xml_from([127, 0, 0, 1], addr, victim_connect.clone()).await;
    assert_eq!(first.status, 200);
    let token = first.xml().auth_token.expect("token").as_str().to_owned();
    let joined = xml_from([127, 0, 0, 1], addr, join("victim", &token, "s", "SEED", 2)).await;
    assert_eq!(joined.status, 200);

    // The same CONNECT, byte for byte, from another address: no token, no takeover.
    let replayed = xml_from([127, 0, 0, 2], addr, victim_connect).await;
    assert_eq!(replayed.status, 403);
    assert_eq!(replayed.xml().auth_token, None);
    // A fresh CONNECT for the PeerID from there: refused the same way.
    let fresh = xml_from([127, 0, 0, 2], addr, connect_anonymous("victim", 9, 7000)).await;
    assert_eq!(fresh.status, 403);

    // The victim's token, membership and address are as they were.
    let alive = xml_from([127, 0, 0, 1], addr, bare("KEEPALIVE", "victim", &token, 3)).await;
    assert_eq!(alive.status, 200);
    let other = connect(addr, "observer", 10).await;
    let listed = post_xml(addr, join("observer", &other, "s", "LEECH", 11)).await;
    let peers = listed.xml().swarm_results[0].peers.clone();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer_id.as_str(), "victim");
    assert_eq!(peers[0].addresses[0].ip, IpAddr::from([127, 0, 0, 1]));
    server.stop().await.expect("clean stop");
}

/// An unauthenticated JSON PeerID belongs to the address it first registered from: from
/// 127.0.0.2 it can neither be left, nor have statistics posted in its name, nor FIND.
#[tokio::test]
async fn an_open_tracker_binds_json_peer_ids_to_their_first_address() {
    let server = TestServer::start(ServerConfig::default()).await;
    let addr = server.http;
    let joined = send_from([127, 0, 0, 1], addr, &[JSON], json_connect("viewer", "j1")).await;
    assert_eq!(joined.status, 200);
    let forged = json_body(
        "viewer",
        "j2",
        RequestBody::StatReport(ppsp_proto::StatReport {
            stats: vec![ppsp_proto::Stat::StreamStats(ppsp_proto::StreamStats {
                swarm_id: Some(SwarmId::new("movie").expect("id")),
                uploaded_bytes: Some(1_000_000_000_000_000_000),
                downloaded_bytes: Some(0),
                available_bandwidth: None,
                concurrent_links: None,
            })],
        }),
    );
    let answer = send_from([127, 0, 0, 2], addr, &[JSON], forged).await;
    assert_eq!(answer.status, 403);
    let answer = send_from([127, 0, 0, 2], addr, &[JSON], json_find("viewer", "j3")).await;
    assert_eq!(answer.status, 403);
    let squat = send_from([127, 0, 0, 2], addr, &[JSON], json_connect("viewer", "j4")).await;
    assert_eq!(squat.status, 403);
    // The owner still finds, and the statistics page shows no forged bytes.
    let answer = send_from([127, 0, 0, 1], addr, &[JSON], json_find("viewer", "j5")).await;
    assert_eq!(answer.status, 200);
    let stats: serde_json::Value =
        serde_json::from_slice(&get(addr, "/api/stats?swarm=movie").await.body()).expect("json");
    assert_eq!(stats["swarm"]["uploaded_bytes"], 0);
    server.stop().await.expect("clean stop");
}
