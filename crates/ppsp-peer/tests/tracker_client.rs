//! The tracker client against a small fault-injecting tracker: retransmission with the same
//! TransactionID, backoff, failover between tiers, 503 with Retry-After, re-CONNECT and
//! re-JOIN on 401, gzip answers, token rotation, and the background session timers.
//!
//! The fake tracker speaks the real XML codec; only its session logic is minimal, so that
//! each failure can be switched on precisely.

use std::collections::HashSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ppsp_peer::tracker_client::{
    ClientConfig, ClientError, Credentials, PeerStatus, SessionTimers, TrackerClient,
    TrackerEndpoint, TrackerSession,
};
use ppsp_proto::{
    AuthToken, ChunkMap, ChunkMapReport, ChunkSegments, Clip, Limits, MediaType, Method,
    PeerAddress, PeerId, PeerInfo, PeerMode, Request, RequestBody, Response, Segment, Stat, Status,
    StreamStats, SwarmId, SwarmResult,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

/// One request as the fake tracker saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    raw: Bytes,
    request: Request,
    accept_encoding: Option<String>,
    content_type: Option<String>,
    path: String,
}

/// Faults to inject; counters count down as requests arrive.
#[derive(Debug, Default)]
struct Faults {
    /// Leave this many requests unanswered (the client times out).
    hang: usize,
    /// Close the connection without answering this many requests.
    reset: usize,
    /// Answer this many requests with 503 (and this Retry-After, if any).
    overloaded: usize,
    retry_after: Option<u64>,
    /// Forget every session now: the next token-bearing request gets 401.
    forget_sessions: bool,
    /// Compress every answer, whatever the request asked.
    gzip_always: bool,
    /// Put a fresh token in KEEPALIVE answers.
    rotate_on_keepalive: bool,
    /// Answer FIND with this bare HTTP status and no body.
    bare_find_status: Option<u16>,
}

#[derive(Debug, Default)]
struct TrackerState {
    faults: Faults,
    seen: Vec<Seen>,
    valid_tokens: HashSet<String>,
    issued: usize,
}

#[derive(Clone)]
struct FakeTracker {
    url: String,
    state: Arc<Mutex<TrackerState>>,
    accept: tokio::task::AbortHandle,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl FakeTracker {
    async fn start() -> Self {
        Self::start_on(Arc::new(Mutex::new(TrackerState::default()))).await
    }

    /// A second tracker on the same state, as two nodes sharing one store are.
    async fn start_sharing(other: &Self) -> Self {
        Self::start_on(Arc::clone(&other.state)).await
    }

    /// Stops listening and closes open connections: new connections are refused.
    fn stop(&self) {
        self.accept.abort();
        for connection in self.connections.lock().expect("connections").drain(..) {
            connection.abort();
        }
    }

    async fn start_on(state: Arc<Mutex<TrackerState>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shared = Arc::clone(&state);
        let connections = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                let connection = tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { handle(state, peer, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                open.lock()
                    .expect("connections")
                    .push(connection.abort_handle());
            }
        });
        Self {
            url: format!("http://{address}/ppsp"),
            state,
            accept: accept.abort_handle(),
            connections,
        }
    }

    fn faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.state.lock().expect("state").faults);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("state").seen.clone()
    }

    fn methods(&self) -> Vec<Method> {
        self.seen()
            .iter()
            .map(|seen| seen.request.body.method())
            .collect()
    }
}

type Answer = hyper::Response<Full<Bytes>>;

async fn handle(
    state: Arc<Mutex<TrackerState>>,
    peer: SocketAddr,
    request: hyper::Request<Incoming>,
) -> Result<Answer, std::io::Error> {
    let path = request.uri().path().to_owned();
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|value: &hyper::header::HeaderValue| value.to_str().ok())
            .map(str::to_owned)
    };
    let accept_encoding = header(ACCEPT_ENCODING);
    let content_type = header(CONTENT_TYPE);
    let raw = request
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let decoded = ppsp_proto::xml::decode_request(&raw, &Limits::default())
        .expect("the client sends valid XML");

    enum Action {
        Hang,
        Reset,
        Answer(Answer),
    }
    let action = {
        let mut state = state.lock().expect("state");
        state.seen.push(Seen {
            at: Instant::now(),
            raw: raw.clone(),
            request: decoded.clone(),
            accept_encoding,
            content_type,
            path,
        });
        if state.faults.hang > 0 {
            state.faults.hang -= 1;
            Action::Hang
        } else if state.faults.reset > 0 {
            state.faults.reset -= 1;
            Action::Reset
        } else if state.faults.overloaded > 0 {
            state.faults.overloaded -= 1;
            let mut answer = xml_answer(
                Response::status(Status::TemporarilyOverloaded, Some(decoded.transaction_id)),
                false,
            );
            if let Some(seconds) = state.faults.retry_after {
                answer
                    .headers_mut()
                    .insert(RETRY_AFTER, seconds.to_string().parse().expect("header"));
            }
            Action::Answer(answer)
        } else {
            if std::mem::take(&mut state.faults.forget_sessions) {
                state.valid_tokens.clear();
            }
            Action::Answer(respond(&mut state, peer, decoded))
        }
    };
    match action {
        Action::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Err(std::io::Error::other("never"))
        }
        // An error from the service makes hyper drop the connection unanswered.
        Action::Reset => Err(std::io::Error::other("dropped on purpose")),
        Action::Answer(answer) => Ok(answer),
    }
}

fn respond(state: &mut TrackerState, peer: SocketAddr, request: Request) -> Answer {
    let gzip = state.faults.gzip_always;
    let id = Some(request.transaction_id.clone());
    if let RequestBody::Connect(_) = &request.body {
        state.issued += 1;
        let token = format!("token-{}", state.issued);
        state.valid_tokens.insert(token.clone());
        let mut response = Response::status(Status::Ok, id);
        response.auth_token = Some(AuthToken::new(token).expect("token"));
        response.reflexive_addresses = vec![PeerAddress::new(peer.ip(), peer.port())];
        return xml_answer(response, gzip);
    }
    let token_ok = request
        .auth_token
        .as_ref()
        .is_some_and(|token| state.valid_tokens.contains(token.as_str()));
    if !token_ok {
        return xml_answer(Response::status(Status::AuthenticationRequired, id), gzip);
    }
    let mut response = Response::status(Status::Ok, id);
    match &request.body {
        RequestBody::Join(join) if join.mode == PeerMode::Leech => {
            response.swarm_results = vec![result_with_peer(&join.swarm_id)];
        }
        RequestBody::Join(join) => {
            response.swarm_results = vec![SwarmResult {
                swarm_id: join.swarm_id.clone(),
                ok: true,
                peers: Vec::new(),
            }];
        }
        RequestBody::Find(_) if state.faults.bare_find_status.is_some() => {
            let code = state.faults.bare_find_status.unwrap_or(500);
            return hyper::Response::builder()
                .status(code)
                .body(Full::new(Bytes::new()))
                .expect("answer");
        }
        RequestBody::Find(find) => {
            response.swarm_results = vec![result_with_peer(&find.swarm_id)];
        }
        RequestBody::KeepAlive if state.faults.rotate_on_keepalive => {
            state.issued += 1;
            let token = format!("token-{}", state.issued);
            state.valid_tokens.clear();
            state.valid_tokens.insert(token.clone());
            response.auth_token = Some(AuthToken::new(token).expect("token"));
        }
        RequestBody::Disconnect => {
            if let Some(token) = &request.auth_token {
                state.valid_tokens.remove(token.as_str());
            }
        }
        _ => {}
    }
    xml_answer(response, gzip)
}

fn result_with_peer(swarm_id: &SwarmId) -> SwarmResult {
    SwarmResult {
        swarm_id: swarm_id.clone(),
        ok: true,
        peers: vec![PeerInfo {
            peer_id: PeerId::new("other-peer").expect("id"),
            mode: Some(PeerMode::Seed),
            addresses: vec![PeerAddress::new("192.0.2.10".parse().expect("ip"), 7000)],
            location: None,
            connection_type: None,
            rank_cost: None,
        }],
    }
}

fn xml_answer(response: Response, gzip: bool) -> Answer {
    let body = ppsp_proto::xml::encode_response(&response);
    let mut builder = hyper::Response::builder()
        .status(response.status.http_code())
        .header(CONTENT_TYPE, ppsp_proto::XML_MEDIA_TYPE);
    let bytes = if gzip {
        builder = builder.header(CONTENT_ENCODING, "gzip");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(body.as_bytes()).expect("in memory");
        Bytes::from(encoder.finish().expect("in memory"))
    } else {
        Bytes::from(body)
    };
    builder.body(Full::new(bytes)).expect("answer")
}

fn swarm(name: &str) -> SwarmId {
    SwarmId::new(name).expect("swarm id")
}

/// A client with millisecond timers so that failure paths run quickly.
fn fast_config(trackers: Vec<TrackerEndpoint>) -> ClientConfig {
    let mut config = ClientConfig::new(PeerId::new("peer-under-test").expect("id"), trackers);
    config.request_timeout = Duration::from_millis(300);
    config.retransmit_backoff = vec![
        Duration::from_millis(50),
        Duration::from_millis(100),
        Duration::from_millis(200),
    ];
    config.overload_wait = Duration::from_millis(150);
    config.addresses = vec![PeerAddress::new("10.1.2.3".parse().expect("ip"), 7000)];
    config
}

/// JOINs `swarm_id` as LEECH (CONNECTing first when needed); the test fails otherwise.
async fn join_leech(client: &TrackerClient, swarm_id: SwarmId) {
    client
        .join_swarm(swarm_id, PeerMode::Leech)
        .await
        .expect("join");
}

fn client_for(trackers: &[&FakeTracker]) -> TrackerClient {
    let endpoints = trackers
        .iter()
        .enumerate()
        .map(|(index, tracker)| {
            TrackerEndpoint::new(tracker.url.clone())
                .with_tier(u32::try_from(index + 1).expect("small"))
        })
        .collect();
    TrackerClient::new(fast_config(endpoints)).expect("client")
}

#[tokio::test]
async fn every_method_round_trips_with_the_right_headers() {
    let tracker = FakeTracker::start().await;
    let client = client_for(&[&tracker]);
    let info = client.connect().await.expect("connect");
    assert_eq!(info.tracker, tracker.url);
    assert_eq!(info.reflexive_addresses.len(), 1);
    // Declared 10.1.2.3, seen from 127.0.0.1: behind a NAT.
    assert_eq!(info.behind_nat, Some(true));
    assert_eq!(client.nat_hints().nat, Some(true));

    let peers = client
        .join_swarm(swarm("movie"), PeerMode::Leech)
        .await
        .expect("join");
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer_id.as_str(), "other-peer");
    assert_eq!(client.joined_swarms(), [swarm("movie")]);
    let found = client.find_peers(swarm("movie")).await.expect("find");
    assert_eq!(found.len(), 1);
    client
        .stat_report(ppsp_proto::StatReport {
            stats: vec![Stat::StreamStats(StreamStats {
                swarm_id: Some(swarm("movie")),
                uploaded_bytes: Some(10),
                downloaded_bytes: Some(20),
                available_bandwidth: None,
                concurrent_links: None,
            })],
        })
        .await
        .expect("stat report");
    client.keepalive().await.expect("keepalive");
    client.leave(&swarm("movie")).await.expect("leave");
    client.disconnect().await.expect("disconnect");
    assert!(!client.is_connected());

    let seen = tracker.seen();
    let methods: Vec<Method> = seen.iter().map(|s| s.request.body.method()).collect();
    assert_eq!(
        methods,
        [
            Method::Connect,
            Method::Join,
            Method::Find,
            Method::StatReport,
            Method::KeepAlive,
            Method::Leave,
            Method::Disconnect
        ]
    );
    for request in &seen {
        assert_eq!(request.path, "/ppsp");
        assert_eq!(request.accept_encoding.as_deref(), Some("gzip"));
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/xml; charset=utf-8")
        );
        assert_eq!(request.request.peer_id.as_str(), "peer-under-test");
        let id = request.request.transaction_id.as_u64().expect("numeric");
        assert!(id < 1 << 31);
    }
    // CONNECT carries ANONYMOUS SASL and the declared address, no token; the rest the token.
    match &seen[0].request.body {
        RequestBody::Connect(connect) => {
            assert_eq!(
                connect.auth.as_ref().map(|a| a.mechanism.as_str()),
                Some("ANONYMOUS")
            );
            assert_eq!(connect.addresses.len(), 1);
        }
        other => panic!("expected CONNECT, got {other:?}"),
    }
    assert!(seen[0].request.auth_token.is_none());
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.request.auth_token.as_ref().map(AuthToken::as_str) == Some("token-1"))
    );
    // JOIN and FIND carry the NAT finding as hints; STAT_REPORT appends it.
    match &seen[1].request.body {
        RequestBody::Join(join) => assert_eq!(join.hints.nat, Some(true)),
        other => panic!("expected JOIN, got {other:?}"),
    }
    match &seen[3].request.body {
        RequestBody::StatReport(report) => assert!(report.stats.contains(&Stat::Nat(true))),
        other => panic!("expected STAT_REPORT, got {other:?}"),
    }
}

#[tokio::test]
async fn plain_credentials_are_sent() {
    let tracker = FakeTracker::start().await;
    let mut config = fast_config(vec![TrackerEndpoint::new(tracker.url.clone())]);
    config.credentials = Credentials::Plain {
        authzid: None,
        username: "peer-under-test".into(),
        password: "secret".into(),
    };
    let client = TrackerClient::new(config).expect("client");
    client.connect().await.expect("connect");
    match &tracker.seen()[0].request.body {
        RequestBody::Connect(connect) => {
            let auth = connect.auth.as_ref().expect("auth");
            assert_eq!(auth.mechanism, "PLAIN");
            assert_eq!(
                auth.credentials.as_deref(),
                Some(&b"\0peer-under-test\0secret"[..])
            );
        }
        other => panic!("expected CONNECT, got {other:?}"),
    }
}

#[tokio::test]
async fn unanswered_requests_are_retransmitted_with_the_same_transaction_id() {
    let tracker = FakeTracker::start().await;
    let client = client_for(&[&tracker]);
    client.connect().await.expect("connect");
    // Two timeouts, then a connection reset, then an answer.
    tracker.faults(|f| {
        f.hang = 2;
        f.reset = 1;
    });
    client
        .keepalive()
        .await
        .expect("keepalive after retransmissions");
    let seen = tracker.seen();
    let keepalives: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.request.body.method() == Method::KeepAlive)
        .collect();
    assert_eq!(keepalives.len(), 4);
    let first = &keepalives[0];
    for again in &keepalives[1..] {
        assert_eq!(again.request.transaction_id, first.request.transaction_id);
        assert_eq!(again.raw, first.raw, "retransmissions are byte-identical");
    }
    // Gaps: timeout (300 ms) + 50 ms, timeout + 100 ms, reset (immediate) + 200 ms.
    let gaps: Vec<Duration> = keepalives.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(340), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(390), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(190), "{gaps:?}");
    // Well under the 300 ms timeout + 200 ms: the reset was noticed at once.
    assert!(gaps[2] < Duration::from_millis(480), "{gaps:?}");
    // No re-CONNECT was needed.
    assert_eq!(
        tracker
            .methods()
            .iter()
            .filter(|m| **m == Method::Connect)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_dead_tracker_is_left_for_the_next_tier_and_swarms_are_rejoined() {
    let primary = FakeTracker::start().await;
    let backup = FakeTracker::start().await;
    let client = client_for(&[&primary, &backup]);
    client.connect().await.expect("connect");
    join_leech(&client, swarm("a")).await;
    // The primary stops answering entirely.
    primary.faults(|f| f.reset = usize::MAX);
    let found = client
        .find_peers(swarm("a"))
        .await
        .expect("find on the backup");
    assert_eq!(found.len(), 1);
    // 1 + 3 retransmissions of the same FIND on the primary.
    let finds: Vec<Seen> = primary
        .seen()
        .into_iter()
        .filter(|s| s.request.body.method() == Method::Find)
        .collect();
    assert_eq!(finds.len(), 4);
    assert!(finds.iter().all(|s| s.raw == finds[0].raw));
    // The backup got a fresh session, the swarm again, then the FIND.
    assert_eq!(
        backup.methods(),
        [Method::Connect, Method::Join, Method::Find]
    );
    assert_eq!(
        client.connect_info().await.expect("connected").tracker,
        backup.url
    );
}

#[tokio::test]
async fn a_refused_tracker_is_left_at_once_keeping_the_session() {
    let primary = FakeTracker::start().await;
    let backup = FakeTracker::start_sharing(&primary).await;
    let client = client_for(&[&primary, &backup]);
    join_leech(&client, swarm("a")).await;
    primary.stop();
    // Let the aborted accept loop drop its listener.
    eventually("primary refuses connections", || {
        std::net::TcpStream::connect(
            primary
                .url
                .trim_start_matches("http://")
                .trim_end_matches("/ppsp"),
        )
        .is_err()
    })
    .await;
    // The idle pooled connection to the primary is gone with it; the FIND goes to the
    // backup without waiting out the retransmission delays (50 + 100 + 200 ms).
    let started = Instant::now();
    let found = client
        .find_peers(swarm("a"))
        .await
        .expect("find on the backup");
    assert_eq!(found.len(), 1);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // The backup knows the session: no new CONNECT, no re-JOIN.
    assert_eq!(
        primary.methods(),
        [Method::Connect, Method::Join, Method::Find]
    );
    assert_eq!(
        client.connect_info().await.expect("connected").tracker,
        backup.url
    );
}

#[tokio::test]
async fn no_tracker_at_all_is_unreachable() {
    // A port that was free a moment ago: connections are refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let client = TrackerClient::new(fast_config(vec![TrackerEndpoint::new(format!(
        "http://{address}"
    ))]))
    .expect("client");
    let started = Instant::now();
    let error = client.connect().await.expect_err("nobody listens");
    assert!(matches!(error, ClientError::Unreachable { .. }), "{error}");
    // Backoff 50 + 100 + 200 ms.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn a_silent_single_tracker_gets_one_round_per_call() {
    let tracker = FakeTracker::start().await;
    tracker.faults(|f| f.reset = usize::MAX);
    let client = client_for(&[&tracker]);
    let error = client.connect().await.expect_err("every request dropped");
    assert!(matches!(error, ClientError::Unreachable { .. }), "{error}");
    // The first send and three retransmissions, all the same transaction; no second round.
    let seen = tracker.seen();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|s| s.raw == seen[0].raw));
}

#[tokio::test]
async fn overload_waits_for_retry_after_then_moves_to_the_next_tier() {
    let primary = FakeTracker::start().await;
    let backup = FakeTracker::start().await;
    let client = client_for(&[&primary, &backup]);
    primary.faults(|f| {
        f.overloaded = 1;
        f.retry_after = Some(1);
    });
    let started = Instant::now();
    let info = client.connect().await.expect("connect");
    let waited = started.elapsed();
    assert_eq!(info.tracker, backup.url);
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert_eq!(primary.methods(), [Method::Connect]);
    assert_eq!(backup.methods(), [Method::Connect]);

    // Without Retry-After the configured wait (150 ms) applies. Each tracker gets one more
    // chance per call: backup (KEEPALIVE), primary (CONNECT), backup again (CONNECT); when
    // all three are refused, the overload is reported.
    backup.faults(|f| f.overloaded = 2);
    primary.faults(|f| {
        f.overloaded = 1;
        f.retry_after = None;
    });
    let started = Instant::now();
    let error = client.keepalive().await.expect_err("all overloaded");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(
        error.status(),
        Some(Status::TemporarilyOverloaded),
        "{error}"
    );
    assert_eq!(primary.methods(), [Method::Connect, Method::Connect]);
    assert_eq!(
        backup.methods(),
        [Method::Connect, Method::KeepAlive, Method::Connect]
    );
}

#[tokio::test]
async fn unauthorized_triggers_reconnect_rejoin_and_one_retry() {
    let tracker = FakeTracker::start().await;
    let client = client_for(&[&tracker]);
    join_leech(&client, swarm("one")).await;
    client
        .join_swarm(swarm("two"), PeerMode::Seed)
        .await
        .expect("join");
    tracker.faults(|f| f.forget_sessions = true);
    let peers = client
        .find_peers(swarm("one"))
        .await
        .expect("find after re-auth");
    assert_eq!(peers.len(), 1);
    let seen = tracker.seen();
    let methods: Vec<Method> = seen.iter().map(|s| s.request.body.method()).collect();
    assert_eq!(
        methods,
        [
            Method::Connect,
            Method::Join,
            Method::Join,
            Method::Find, // 401
            Method::Connect,
            Method::Join,
            Method::Join,
            Method::Find,
        ]
    );
    // The re-JOINs repeat the original modes, under the new token.
    let rejoined: Vec<(String, PeerMode)> = seen[5..7]
        .iter()
        .map(|s| match &s.request.body {
            RequestBody::Join(join) => (join.swarm_id.to_string(), join.mode),
            other => panic!("expected JOIN, got {other:?}"),
        })
        .collect();
    assert_eq!(
        rejoined,
        [
            ("one".to_owned(), PeerMode::Leech),
            ("two".to_owned(), PeerMode::Seed)
        ]
    );
    assert_eq!(
        seen[7].request.auth_token.as_ref().map(AuthToken::as_str),
        Some("token-2")
    );
    // The retry is a new transaction (the token differs, so the body does).
    assert_ne!(
        seen[7].request.transaction_id,
        seen[3].request.transaction_id
    );
}

#[tokio::test]
async fn gzip_answers_are_decoded_even_unasked() {
    let tracker = FakeTracker::start().await;
    tracker.faults(|f| f.gzip_always = true);
    let client = client_for(&[&tracker]);
    let info = client.connect().await.expect("connect through gzip");
    assert_eq!(info.reflexive_addresses.len(), 1);
    let peers = client
        .join_swarm(swarm("z"), PeerMode::Leech)
        .await
        .expect("join");
    assert_eq!(peers.len(), 1);
}

#[tokio::test]
async fn a_rotated_token_replaces_the_old_one() {
    let tracker = FakeTracker::start().await;
    tracker.faults(|f| f.rotate_on_keepalive = true);
    let client = client_for(&[&tracker]);
    client.connect().await.expect("connect");
    client.keepalive().await.expect("keepalive");
    client
        .join_swarm(swarm("r"), PeerMode::Leech)
        .await
        .expect("join with the new token");
    let seen = tracker.seen();
    assert_eq!(
        seen[2].request.auth_token.as_ref().map(AuthToken::as_str),
        Some("token-2")
    );
    // No 401 round trip happened.
    assert_eq!(
        tracker.methods(),
        [Method::Connect, Method::KeepAlive, Method::Join]
    );
}

#[tokio::test]
async fn a_bodyless_error_takes_its_status_from_http() {
    let tracker = FakeTracker::start().await;
    tracker.faults(|f| f.bare_find_status = Some(404));
    let client = client_for(&[&tracker]);
    join_leech(&client, swarm("q")).await;
    let error = client.find_peers(swarm("q")).await.expect_err("404");
    assert_eq!(error.status(), Some(Status::ObjectNotFound));
}

fn chunk_report(swarm_id: &SwarmId, held: u64) -> ChunkMapReport {
    let mut map = ChunkMap::new(0, 200);
    for chunk in 0..held {
        map.insert(chunk);
    }
    ChunkMapReport {
        swarm_id: swarm_id.clone(),
        clips: vec![Clip {
            name: "clip".to_owned(),
            kind: None,
            chunk_segment_index: None,
            segments: Some(ChunkSegments {
                media: MediaType::Video,
                segments: vec![Segment::with_map(map)],
            }),
        }],
    }
}

fn count(tracker: &FakeTracker, method: Method) -> usize {
    tracker.methods().iter().filter(|m| **m == method).count()
}

/// Polls `condition` for up to 5 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A report for a `len`-chunk content of which the first `held` chunks are stored.
fn small_chunk_report(swarm_id: &SwarmId, len: u64, held: u64) -> ChunkMapReport {
    let mut report = chunk_report(swarm_id, 0);
    let mut map = ChunkMap::new(0, len);
    for chunk in 0..held {
        map.insert(chunk);
    }
    if let Some(segments) = report.clips[0].segments.as_mut() {
        segments.segments = vec![Segment::with_map(map)];
    }
    report
}

#[tokio::test]
async fn completing_a_small_content_is_reported_early() {
    let tracker = FakeTracker::start().await;
    let client = client_for(&[&tracker]);
    let clip = swarm("clip");
    join_leech(&client, clip.clone()).await;
    let (publish, status) = watch::channel(PeerStatus::default());
    let timers = SessionTimers {
        stat_report_interval: Duration::from_secs(3600),
        keepalive_idle: Duration::from_secs(3600),
        min_report_gap: Duration::from_millis(100),
        significant_change_chunks: 64,
        close_timeout: Duration::from_secs(5),
    };
    let session = TrackerSession::spawn(client.clone(), status, timers);
    let status_with = |held| PeerStatus {
        chunk_maps: vec![small_chunk_report(&clip, 7, held)],
        ..PeerStatus::default()
    };
    // The first map of a swarm is reported (a new map).
    publish.send(status_with(2)).expect("session listens");
    eventually("the first map", || count(&tracker, Method::StatReport) == 1).await;
    // One more chunk is a small change: not reported before the (long) period.
    publish.send(status_with(3)).expect("session listens");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(count(&tracker, Method::StatReport), 1);
    // Holding all 7 chunks is reported soon, though only 4 chunks changed.
    publish.send(status_with(7)).expect("session listens");
    eventually("the completion report", || {
        count(&tracker, Method::StatReport) == 2
    })
    .await;
    session.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn session_reports_keeps_alive_and_closes() {
    let tracker = FakeTracker::start().await;
    let client = client_for(&[&tracker]);
    let movie = swarm("movie");
    join_leech(&client, movie.clone()).await;
    let (publish, status) = watch::channel(PeerStatus::default());
    let timers = SessionTimers {
        stat_report_interval: Duration::from_millis(1500),
        keepalive_idle: Duration::from_millis(150),
        min_report_gap: Duration::from_millis(250),
        significant_change_chunks: 10,
        close_timeout: Duration::from_secs(5),
    };
    let session = TrackerSession::spawn(client.clone(), status, timers);

    // With nothing held, the first STAT_REPORT comes after one period; KEEPALIVE fills the
    // idle time before it.
    eventually("a keepalive", || count(&tracker, Method::KeepAlive) >= 1).await;
    eventually("a periodic report", || {
        count(&tracker, Method::StatReport) >= 1
    })
    .await;

    // A large chunk-map change is reported soon, but not before the minimum gap.
    let reports_before = count(&tracker, Method::StatReport);
    let changed_at = Instant::now();
    publish
        .send(PeerStatus {
            chunk_maps: vec![
                chunk_report(&movie, 50),
                chunk_report(&swarm("not-joined"), 5),
            ],
            stream_stats: vec![StreamStats {
                swarm_id: Some(movie.clone()),
                uploaded_bytes: Some(1),
                downloaded_bytes: Some(2),
                available_bandwidth: None,
                concurrent_links: None,
            }],
            nat: Some(false),
            stun: Some(true),
        })
        .expect("session listens");
    eventually("the change report", || {
        count(&tracker, Method::StatReport) > reports_before
    })
    .await;
    let report = tracker
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.request.body.method() == Method::StatReport)
        .expect("a report");
    assert!(
        report.at - changed_at < Duration::from_millis(1200),
        "reported {:?} after the change, sooner than the period",
        report.at - changed_at
    );
    match &report.request.body {
        RequestBody::StatReport(stat_report) => {
            let maps: Vec<&ChunkMapReport> = stat_report
                .stats
                .iter()
                .filter_map(|s| match s {
                    Stat::ChunkMap(map) => Some(map),
                    _ => None,
                })
                .collect();
            // Only the joined swarm's map is reported.
            assert_eq!(maps.len(), 1);
            assert_eq!(maps[0].swarm_id, movie);
            assert!(stat_report.stats.contains(&Stat::Nat(false)));
            assert!(stat_report.stats.contains(&Stat::Stun(true)));
            assert!(
                stat_report
                    .stats
                    .iter()
                    .any(|s| matches!(s, Stat::StreamStats(_)))
            );
        }
        other => panic!("expected STAT_REPORT, got {other:?}"),
    }
    let reports: Vec<Instant> = tracker
        .seen()
        .iter()
        .filter(|s| s.request.body.method() == Method::StatReport)
        .map(|s| s.at)
        .collect();
    for pair in reports.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(240),
            "{reports:?}"
        );
    }

    // Shutdown: LEAVE each swarm, then DISCONNECT.
    session.shutdown().await.expect("clean shutdown");
    let methods = tracker.methods();
    assert_eq!(
        &methods[methods.len() - 2..],
        [Method::Leave, Method::Disconnect]
    );
    assert!(!client.is_connected());
    assert!(client.joined_swarms().is_empty());
}

#[tokio::test]
async fn closing_against_a_dead_tracker_is_bounded() {
    let tracker = FakeTracker::start().await;
    let client = client_for(&[&tracker]);
    join_leech(&client, swarm("a")).await;
    join_leech(&client, swarm("b")).await;
    let (_publish, status) = watch::channel(PeerStatus::default());
    let session = TrackerSession::spawn(
        client.clone(),
        status,
        SessionTimers {
            close_timeout: Duration::from_millis(600),
            ..SessionTimers::default()
        },
    );
    tracker.faults(|f| f.hang = usize::MAX);
    let started = Instant::now();
    let error = session.shutdown().await.expect_err("tracker never answers");
    let took = started.elapsed();
    assert!(matches!(error, ClientError::Unreachable { .. }), "{error}");
    assert!(took < Duration::from_millis(1500), "{took:?}");

    // Connection resets give up faster than the bound: after the first LEAVE fails, the
    // second LEAVE and the DISCONNECT are skipped.
    let tracker = FakeTracker::start().await;
    let client = client_for(&[&tracker]);
    join_leech(&client, swarm("a")).await;
    join_leech(&client, swarm("b")).await;
    let (_publish, status) = watch::channel(PeerStatus::default());
    let session = TrackerSession::spawn(client.clone(), status, SessionTimers::default());
    tracker.faults(|f| f.reset = usize::MAX);
    let error = session
        .shutdown()
        .await
        .expect_err("tracker drops everything");
    assert!(matches!(error, ClientError::Unreachable { .. }), "{error}");
    let methods = tracker.methods();
    assert_eq!(&methods[3..], [Method::Leave; 4], "{methods:?}");
}
