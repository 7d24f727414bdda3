//! The XML codec against hand-written fixture files: every message kind decodes to the
//! expected model value and survives encode → decode; every malformed case fails with the
//! expected error (and the TransactionID when it was readable).

use std::net::IpAddr;
use std::path::PathBuf;

use ppsp_proto::xml;
use ppsp_proto::{
    AddressType, AuthToken, ChunkMap, ChunkMapReport, ChunkSegments, Clip, Connect, DecodeError,
    DecodeErrorKind, Find, Join, Leave, Limits, MediaType, Message, NatHints, PeerAddress, PeerId,
    PeerInfo, PeerMode, PeerNum, Request, RequestBody, Response, SaslAuth, Segment, Stat,
    StatReport, Status, StreamStats, SwarmId, SwarmResult, TransactionId,
};

fn fixture(path: &str) -> Vec<u8> {
    let full: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "xml", path]
        .iter()
        .collect();
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

fn request(path: &str) -> Request {
    xml::decode_request(&fixture(path), &Limits::default())
        .unwrap_or_else(|e| panic!("{path}: {e:?}"))
}

fn response(path: &str) -> Response {
    xml::decode_response(&fixture(path), &Limits::default())
        .unwrap_or_else(|e| panic!("{path}: {e:?}"))
}

fn error(path: &str) -> DecodeError {
    match xml::decode(&fixture(path), &Limits::default()) {
        Ok(message) => panic!("{path} decoded but must fail: {message:?}"),
        Err(e) => e,
    }
}

fn peer(id: &str) -> PeerId {
    PeerId::new(id).expect("valid peer id")
}

fn swarm(id: &str) -> SwarmId {
    SwarmId::new(id).expect("valid swarm id")
}

fn token(value: &str) -> Option<AuthToken> {
    Some(AuthToken::new(value).expect("valid token"))
}

fn txid(n: u64) -> TransactionId {
    TransactionId::numeric(n)
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("valid ip")
}

const TOKEN: &str = "Tk9UQVJFQUxUT0tFTjAwMDAx";

#[test]
fn connect_request() {
    let expected = Request {
        peer_id: peer("peer-a17"),
        auth_token: None,
        transaction_id: txid(31337),
        body: RequestBody::Connect(Connect {
            auth: Some(SaslAuth {
                mechanism: "PLAIN".into(),
                credentials: Some(b"\0peer-a17\0open sesame".to_vec()),
            }),
            addresses: vec![
                PeerAddress::new(ip("10.0.0.5"), 6881)
                    .with_priority(2_130_706_431)
                    .with_kind(AddressType::Host),
                PeerAddress::new(ip("2001:db8::5"), 6881).with_kind(AddressType::Host),
            ],
            peer_num: None,
            swarm_actions: Vec::new(),
        }),
    };
    assert_eq!(request("valid/connect-request.xml"), expected);
}

#[test]
fn connect_request_with_the_drafts_bad_padding() {
    let req = request("valid/connect-request-securid-draft-padding.xml");
    let RequestBody::Connect(connect) = req.body else {
        panic!("not a CONNECT: {req:?}");
    };
    let auth = connect.auth.expect("auth");
    assert_eq!(auth.mechanism, "SECURID");
    assert_eq!(auth.credentials.as_deref(), Some(&b"\0magnus\x0012345"[..]));
    assert!(connect.addresses.is_empty());
}

#[test]
fn connect_response() {
    let expected = Response {
        status: Status::Ok,
        transaction_id: Some(txid(31337)),
        auth_token: token(TOKEN),
        reflexive_addresses: vec![
            PeerAddress::new(ip("203.0.113.77"), 40001),
            PeerAddress::new(ip("2001:db8:ffff::77"), 40002),
        ],
        swarm_results: Vec::new(),
    };
    assert_eq!(response("valid/connect-response.xml"), expected);
}

#[test]
fn disconnect_leave_keepalive_requests() {
    let expected = Request {
        peer_id: peer("peer-a17"),
        auth_token: token(TOKEN),
        transaction_id: txid(900_001),
        body: RequestBody::Disconnect,
    };
    assert_eq!(request("valid/disconnect-request.xml"), expected);
    let expected = Request {
        transaction_id: txid(5150),
        body: RequestBody::Leave(Leave {
            swarm_id: swarm("concert-2026"),
        }),
        ..expected
    };
    assert_eq!(request("valid/leave-request.xml"), expected);
    let expected = Request {
        transaction_id: txid(2_147_483_647),
        body: RequestBody::KeepAlive,
        ..expected
    };
    assert_eq!(request("valid/keepalive-request.xml"), expected);
    // Unknown elements (even with nested content) are skipped; version 1.7 is accepted.
    let expected = Request {
        transaction_id: txid(99),
        ..expected
    };
    assert_eq!(
        request("valid/keepalive-request-forward-compatible.xml"),
        expected
    );
}

#[test]
fn plain_ok_responses() {
    for (path, id) in [
        ("valid/disconnect-response.xml", 900_001),
        ("valid/leave-response.xml", 5150),
        ("valid/stat-report-response.xml", 777),
        ("valid/keepalive-response.xml", 2_147_483_647),
        ("valid/response-successful-synonym.xml", 14),
    ] {
        assert_eq!(
            response(path),
            Response::status(Status::Ok, Some(txid(id))),
            "{path}"
        );
    }
}

#[test]
fn error_responses() {
    for (path, status, id) in [
        (
            "valid/error-authentication-required.xml",
            Status::AuthenticationRequired,
            Some(5150),
        ),
        (
            "valid/error-object-not-found.xml",
            Status::ObjectNotFound,
            Some(6060),
        ),
        (
            "valid/error-invalid-syntax-no-txid.xml",
            Status::InvalidSyntax,
            None,
        ),
        (
            "valid/error-version-not-supported.xml",
            Status::VersionNotSupported,
            Some(12),
        ),
        (
            "valid/error-forbidden-lowercase.xml",
            Status::MessageForbidden,
            Some(13),
        ),
    ] {
        assert_eq!(
            response(path),
            Response::status(status, id.map(txid)),
            "{path}"
        );
    }
}

#[test]
fn join_request_leech() {
    let expected = Request {
        peer_id: peer("peer-a17"),
        auth_token: token(TOKEN),
        transaction_id: txid(4242),
        body: RequestBody::Join(Join {
            swarm_id: swarm("concert-2026"),
            mode: PeerMode::Leech,
            hints: NatHints {
                nat: Some(true),
                stun: Some(true),
            },
            peer_num: Some(12),
            clip: Some(Clip {
                name: "main/stage".into(),
                kind: None,
                chunk_segment_index: None,
                segments: Some(ChunkSegments {
                    media: MediaType::Audio,
                    segments: vec![Segment::range(48, None)],
                }),
            }),
            expire_time: 0,
        }),
    };
    assert_eq!(request("valid/join-request-leech.xml"), expected);
}

#[test]
fn join_request_seed_in_any_order() {
    let expected = Request {
        peer_id: peer("edge-cache-3"),
        auth_token: token("c2VlZC10b2tlbg"),
        transaction_id: txid(4243),
        body: RequestBody::Join(Join {
            swarm_id: swarm("film-library-9"),
            mode: PeerMode::Seed,
            hints: NatHints::default(),
            peer_num: None,
            clip: None,
            expire_time: 7200,
        }),
    };
    assert_eq!(request("valid/join-request-seed.xml"), expected);
}

#[test]
fn join_request_lower_case_and_defaults() {
    let req = request("valid/join-request-lowercase.xml");
    assert_eq!(req.transaction_id, txid(0));
    let RequestBody::Join(join) = req.body else {
        panic!("not a JOIN");
    };
    assert_eq!(join.mode, PeerMode::LiveSeed);
    assert_eq!(join.expire_time, 0, "missing ExpireTime means 0");
}

#[test]
fn join_request_without_token_is_not_a_syntax_error() {
    let req = request("valid/join-request-no-token.xml");
    assert_eq!(req.auth_token, None);
    assert_eq!(req.body.method(), ppsp_proto::Method::Join);
}

#[test]
fn join_response_leech() {
    let expected = Response {
        status: Status::Ok,
        transaction_id: Some(txid(4242)),
        auth_token: None,
        reflexive_addresses: Vec::new(),
        swarm_results: vec![SwarmResult {
            swarm_id: swarm("concert-2026"),
            ok: true,
            peers: vec![
                PeerInfo {
                    peer_id: peer("source-01"),
                    mode: Some(PeerMode::LiveSeed),
                    addresses: vec![
                        PeerAddress::new(ip("192.0.2.10"), 7000),
                        PeerAddress::new(ip("2001:db8:10::a"), 7000).with_kind(AddressType::Host),
                    ],
                    location: Some("AS64496".into()),
                    connection_type: Some("FIBER".into()),
                    rank_cost: Some(0),
                },
                PeerInfo {
                    peer_id: peer("peer-b02"),
                    mode: Some(PeerMode::Leech),
                    addresses: vec![
                        PeerAddress::new(ip("198.51.100.9"), 6999)
                            .with_priority(1_694_498_815)
                            .with_kind(AddressType::Reflexive),
                    ],
                    location: None,
                    connection_type: None,
                    rank_cost: Some(-3),
                },
            ],
        }],
    };
    assert_eq!(response("valid/join-response-leech.xml"), expected);
}

#[test]
fn join_response_seed_has_no_list() {
    let resp = response("valid/join-response-seed.xml");
    assert_eq!(resp.swarm_results.len(), 1);
    assert_eq!(resp.swarm_results[0].swarm_id, swarm("film-library-9"));
    assert!(resp.swarm_results[0].peers.is_empty());
}

#[test]
fn find_request() {
    let expected = Request {
        peer_id: peer("peer-a17"),
        auth_token: token(TOKEN),
        transaction_id: txid(6060),
        body: RequestBody::Find(Find {
            swarm_id: swarm("film-library-9"),
            peer_num: Some(PeerNum::count(8)),
            hints: NatHints {
                nat: None,
                stun: Some(false),
            },
            clip: Some(Clip {
                name: "feature & extras".into(),
                kind: Some(MediaType::Video),
                chunk_segment_index: None,
                segments: Some(ChunkSegments {
                    media: MediaType::Video,
                    segments: vec![Segment {
                        levels: Some(2),
                        ..Segment::range(300, Some(363))
                    }],
                }),
            }),
        }),
    };
    assert_eq!(request("valid/find-request.xml"), expected);
    let req = request("valid/find-request-chunk-index.xml");
    let RequestBody::Find(find) = req.body else {
        panic!("not a FIND");
    };
    let clip = find.clip.expect("clip");
    assert_eq!(clip.chunk_segment_index, Some(1234));
    assert!(clip.segments.is_none());
}

#[test]
fn find_response_with_peer_type_alias() {
    let resp = response("valid/find-response.xml");
    let result = &resp.swarm_results[0];
    assert_eq!(result.peers.len(), 1);
    assert_eq!(result.peers[0].mode, Some(PeerMode::Seed));
    assert_eq!(result.peers[0].rank_cost, Some(5));
    assert_eq!(resp.transaction_id, Some(txid(6060)));
}

#[test]
fn stat_report_request() {
    let mut map = ChunkMap::new(100, 12);
    for chunk in (100..=107).chain([110]) {
        assert!(map.insert(chunk));
    }
    let expected = Request {
        peer_id: peer("peer-a17"),
        auth_token: token(TOKEN),
        transaction_id: txid(777),
        body: RequestBody::StatReport(StatReport {
            stats: vec![
                Stat::ChunkMap(ChunkMapReport {
                    swarm_id: swarm("film-library-9"),
                    clips: vec![Clip {
                        name: "feature".into(),
                        kind: None,
                        chunk_segment_index: None,
                        segments: Some(ChunkSegments {
                            media: MediaType::Video,
                            segments: vec![Segment::with_map(map)],
                        }),
                    }],
                }),
                Stat::StreamStats(StreamStats {
                    swarm_id: Some(swarm("film-library-9")),
                    uploaded_bytes: Some(65536),
                    downloaded_bytes: Some(1_310_720),
                    available_bandwidth: Some(8_000_000),
                    concurrent_links: None,
                }),
                Stat::Nat(false),
                Stat::Stun(false),
                // The unknown BatteryLevel property is ignored.
            ],
        }),
    };
    assert_eq!(request("valid/stat-report-request.xml"), expected);
}

#[test]
fn stat_report_with_declared_namespaces() {
    let req = request("valid/stat-report-namespaced.xml");
    let RequestBody::StatReport(report) = req.body else {
        panic!("not a STAT_REPORT");
    };
    assert_eq!(report.stats.len(), 2);
    let Stat::ChunkMap(chunk_map) = &report.stats[0] else {
        panic!("first stat is not a chunk map");
    };
    let segments = chunk_map.clips[0].segments.as_ref().expect("segments");
    let map = segments.segments[0].map.as_ref().expect("bitmap");
    assert_eq!(map.iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(
        report.stats[1],
        Stat::StreamStats(StreamStats {
            swarm_id: Some(swarm("film-library-9")),
            uploaded_bytes: Some(512),
            ..StreamStats::default()
        })
    );
}

const VALID: [&str; 28] = [
    "connect-request.xml",
    "connect-request-securid-draft-padding.xml",
    "connect-response.xml",
    "disconnect-request.xml",
    "disconnect-response.xml",
    "join-request-leech.xml",
    "join-response-leech.xml",
    "join-request-seed.xml",
    "join-response-seed.xml",
    "join-request-lowercase.xml",
    "join-request-no-token.xml",
    "leave-request.xml",
    "leave-response.xml",
    "find-request.xml",
    "find-request-chunk-index.xml",
    "find-response.xml",
    "stat-report-request.xml",
    "stat-report-namespaced.xml",
    "stat-report-response.xml",
    "keepalive-request.xml",
    "keepalive-response.xml",
    "keepalive-request-forward-compatible.xml",
    "error-authentication-required.xml",
    "error-object-not-found.xml",
    "error-invalid-syntax-no-txid.xml",
    "error-version-not-supported.xml",
    "error-forbidden-lowercase.xml",
    "response-successful-synonym.xml",
];

#[test]
fn every_valid_fixture_is_listed() {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/xml/valid"]
        .iter()
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = VALID.iter().map(|s| (*s).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn valid_fixtures_round_trip() {
    let limits = Limits::default();
    for name in VALID {
        let bytes = fixture(&format!("valid/{name}"));
        let message = xml::decode(&bytes, &limits).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let encoded = xml::encode(&message);
        let again = xml::decode(encoded.as_bytes(), &limits)
            .unwrap_or_else(|e| panic!("{name} re-encoded: {e:?}\n{encoded}"));
        assert_eq!(message, again, "{name}\n{encoded}");
        // Encoding is deterministic and stable.
        assert_eq!(xml::encode(&again), encoded, "{name}");
    }
}

#[test]
fn direction_specific_decoders_refuse_the_other_direction() {
    let limits = Limits::default();
    let e = xml::decode_request(&fixture("valid/leave-response.xml"), &limits)
        .expect_err("a response is not a request");
    assert_eq!(e.kind, DecodeErrorKind::Missing("Method"));
    assert_eq!(e.transaction_id, Some(txid(5150)));
    let e = xml::decode_response(&fixture("valid/leave-request.xml"), &limits)
        .expect_err("a request is not a response");
    assert_eq!(e.kind, DecodeErrorKind::Missing("Response"));
    assert_eq!(e.transaction_id, Some(txid(5150)));
    assert!(matches!(
        xml::decode(&fixture("valid/leave-request.xml"), &limits),
        Ok(Message::Request(_))
    ));
}

/// A predicate on the error kind a case must produce.
type KindCheck = fn(&DecodeErrorKind) -> bool;

/// How a malformed fixture must fail.
struct Bad {
    file: &'static str,
    kind: KindCheck,
    transaction_id: Option<u64>,
    status: Status,
}

const MALFORMED: &[Bad] = &[
    Bad {
        file: "missing-swarm-id.xml",
        kind: |k| *k == DecodeErrorKind::Missing("SwarmID"),
        transaction_id: Some(101),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "missing-stats.xml",
        kind: |k| *k == DecodeErrorKind::Missing("Stats"),
        transaction_id: Some(102),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "missing-credentials.xml",
        kind: |k| *k == DecodeErrorKind::Missing("Credentials"),
        transaction_id: Some(103),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "missing-version.xml",
        kind: |k| *k == DecodeErrorKind::BadVersion,
        transaction_id: Some(104),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "bad-version.xml",
        kind: |k| *k == DecodeErrorKind::BadVersion,
        transaction_id: Some(105),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "unsupported-major-version.xml",
        kind: |k| *k == DecodeErrorKind::UnsupportedVersion("2.0".into()),
        transaction_id: Some(106),
        status: Status::VersionNotSupported,
    },
    Bad {
        file: "port-out-of-range.xml",
        kind: |k| {
            matches!(
                k,
                DecodeErrorKind::InvalidValue {
                    field: "PeerAddress@port",
                    ..
                }
            )
        },
        transaction_id: Some(107),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "negative-transaction-id.xml",
        kind: |k| {
            matches!(
                k,
                DecodeErrorKind::InvalidValue {
                    field: "TransactionID",
                    ..
                }
            )
        },
        transaction_id: None,
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "huge-transaction-id.xml",
        kind: |k| {
            matches!(
                k,
                DecodeErrorKind::InvalidValue {
                    field: "TransactionID",
                    ..
                }
            )
        },
        transaction_id: None,
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "method-and-response.xml",
        kind: |k| *k == DecodeErrorKind::BothDirections,
        transaction_id: Some(108),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "no-direction.xml",
        kind: |k| *k == DecodeErrorKind::NoDirection,
        transaction_id: Some(109),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "unknown-method.xml",
        kind: |k| *k == DecodeErrorKind::UnknownMethod("STAT_QUERY".into()),
        transaction_id: Some(110),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "undeclared-prefix.xml",
        kind: |k| matches!(k, DecodeErrorKind::Malformed(m) if m.contains("report")),
        transaction_id: Some(111),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "invalid-credentials-base64.xml",
        kind: |k| *k == DecodeErrorKind::InvalidBase64("Credentials"),
        transaction_id: Some(112),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "invalid-bitmap-base64.xml",
        kind: |k| *k == DecodeErrorKind::InvalidBase64("Segment"),
        transaction_id: Some(113),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "bitmapsize-mismatch.xml",
        kind: |k| matches!(k, DecodeErrorKind::ChunkMap(_)),
        transaction_id: Some(114),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "duplicate-peer-id.xml",
        kind: |k| *k == DecodeErrorKind::Duplicate("PeerID"),
        transaction_id: Some(115),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "unknown-peer-mode.xml",
        kind: |k| {
            matches!(
                k,
                DecodeErrorKind::InvalidValue {
                    field: "PeerMode",
                    ..
                }
            )
        },
        transaction_id: Some(116),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "lowercase-mechanism.xml",
        kind: |k| {
            matches!(
                k,
                DecodeErrorKind::InvalidValue {
                    field: "Auth@mechanism",
                    ..
                }
            )
        },
        transaction_id: Some(117),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "wrong-root.xml",
        kind: |k| *k == DecodeErrorKind::WrongRoot("PPSPTrackerMessage".into()),
        transaction_id: None,
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "not-well-formed.xml",
        kind: |k| matches!(k, DecodeErrorKind::Malformed(_)),
        transaction_id: Some(119),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "undefined-entity.xml",
        kind: |k| matches!(k, DecodeErrorKind::Malformed(_)),
        transaction_id: Some(120),
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "billion-laughs.xml",
        kind: |k| *k == DecodeErrorKind::DoctypeForbidden,
        transaction_id: None,
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "external-entity.xml",
        kind: |k| *k == DecodeErrorKind::DoctypeForbidden,
        transaction_id: None,
        status: Status::InvalidSyntax,
    },
    Bad {
        file: "deep-nesting.xml",
        kind: |k| *k == DecodeErrorKind::TooDeep { limit: 16 },
        transaction_id: Some(123),
        status: Status::InvalidSyntax,
    },
];

#[test]
fn every_malformed_fixture_is_listed() {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/xml/malformed"]
        .iter()
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = MALFORMED.iter().map(|b| b.file.to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn malformed_fixtures_fail_as_expected() {
    for bad in MALFORMED {
        let e = error(&format!("malformed/{}", bad.file));
        assert!(
            (bad.kind)(&e.kind),
            "{}: unexpected error {:?}",
            bad.file,
            e.kind
        );
        assert_eq!(
            e.transaction_id,
            bad.transaction_id.map(txid),
            "{}: transaction id",
            bad.file
        );
        assert_eq!(e.status(), bad.status, "{}", bad.file);
        // The error body for it is itself a valid response echoing the ID.
        let body = xml::encode_decode_error(&e);
        let back = xml::decode_response(body.as_bytes(), &Limits::default()).expect("error body");
        assert_eq!(back.status, bad.status);
        assert_eq!(back.transaction_id, e.transaction_id);
    }
}

#[test]
fn oversize_body_is_refused_before_parsing() {
    // Built here rather than stored: a valid KEEPALIVE padded past the 1 MiB default with
    // white space (which alone would be fine).
    let limits = Limits::default();
    let mut body = fixture("valid/keepalive-request.xml");
    body.resize(limits.max_body_bytes + 1, b' ');
    let e = xml::decode(&body, &limits).expect_err("too large");
    assert_eq!(
        e.kind,
        DecodeErrorKind::TooLarge {
            size: limits.max_body_bytes + 1,
            limit: limits.max_body_bytes
        }
    );
    body.truncate(limits.max_body_bytes);
    xml::decode(&body, &limits).expect("exactly at the limit is fine");
}

#[test]
fn deep_nesting_within_limit_is_fine_and_the_limit_is_exact() {
    let doc = |depth: usize| {
        format!(
            "<PPSPTrackerProtocol version=\"1.0\"><Method>KEEPALIVE</Method><PeerID>p</PeerID>\
             <TransactionID>1</TransactionID>{}{}</PPSPTrackerProtocol>",
            "<x>".repeat(depth),
            "</x>".repeat(depth)
        )
    };
    let limits = Limits {
        max_depth: 5,
        ..Limits::default()
    };
    // Root is depth 1, so four nested unknown elements reach exactly 5.
    xml::decode(doc(4).as_bytes(), &limits).expect("depth 5 allowed");
    let e = xml::decode(doc(5).as_bytes(), &limits).expect_err("depth 6 refused");
    assert_eq!(e.kind, DecodeErrorKind::TooDeep { limit: 5 });
}

#[test]
fn list_limit_applies_while_parsing() {
    let addresses = |n: usize| {
        let mut doc = String::from(
            "<PPSPTrackerProtocol version=\"1.0\"><Method>CONNECT</Method><PeerID>p</PeerID>\
             <Auth mechanism=\"ANONYMOUS\"/><TransactionID>9</TransactionID><PeerAddresses>",
        );
        for i in 0..n {
            doc.push_str(&format!("<PeerAddress ip=\"10.0.0.1\" port=\"{i}\"/>"));
        }
        doc.push_str("</PeerAddresses></PPSPTrackerProtocol>");
        doc
    };
    let limits = Limits {
        max_list_len: 3,
        ..Limits::default()
    };
    let req = xml::decode_request(addresses(3).as_bytes(), &limits).expect("three allowed");
    let RequestBody::Connect(connect) = req.body else {
        panic!("not a CONNECT");
    };
    assert_eq!(connect.addresses.len(), 3);
    assert_eq!(connect.auth.expect("auth").credentials, None);
    let e = xml::decode_request(addresses(4).as_bytes(), &limits).expect_err("four refused");
    assert_eq!(
        e.kind,
        DecodeErrorKind::TooMany {
            what: "PeerAddress",
            limit: 3
        }
    );
    assert_eq!(e.transaction_id, Some(txid(9)));
}

#[test]
fn bitmap_limit_applies_before_decoding() {
    let doc = |bits: u64| {
        format!(
            "<PPSPTrackerProtocol version=\"1.0\"><Method>STAT_REPORT</Method><PeerID>p</PeerID>\
             <TransactionID>5</TransactionID><Stats><Stat property=\"ChunkMap\"><ChunkMapReport>\
             <SwarmID>s</SwarmID><Clip><Name>n</Name><ChunkSegments type=\"video\">\
             <Segment from=\"0\" to=\"{}\" bitmapsize=\"{bits}\">AA==</Segment>\
             </ChunkSegments></Clip></ChunkMapReport></Stat></Stats></PPSPTrackerProtocol>",
            bits - 1
        )
    };
    let limits = Limits {
        max_bitmap_bits: 8,
        ..Limits::default()
    };
    xml::decode_request(doc(8).as_bytes(), &limits).expect("8 bits allowed");
    let e = xml::decode_request(doc(9).as_bytes(), &limits).expect_err("9 bits refused");
    assert!(matches!(e.kind, DecodeErrorKind::ChunkMap(_)), "{e:?}");
    // A range wider than u64 can count is refused, not overflowed.
    let wide = doc(8).replace("to=\"7\" bitmapsize=\"8\"", "to=\"18446744073709551615\"");
    let e = xml::decode_request(wide.as_bytes(), &Limits::default()).expect_err("too wide");
    assert!(matches!(e.kind, DecodeErrorKind::ChunkMap(_)), "{e:?}");
}

#[test]
fn encoder_escapes_and_orders() {
    let req = Request {
        peer_id: peer("a&b<c>\"d'"),
        auth_token: token("t&<>"),
        transaction_id: txid(12),
        body: RequestBody::Find(Find {
            swarm_id: swarm("s'\""),
            peer_num: Some(PeerNum::count(3)),
            hints: NatHints {
                nat: Some(true),
                stun: None,
            },
            clip: Some(Clip {
                name: "x < y & \"z\"\r\nnext".into(),
                kind: None,
                chunk_segment_index: None,
                segments: None,
            }),
        }),
    };
    let out = xml::encode_request(&req);
    assert!(out.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PPSPTrackerProtocol version=\"1.0\"><Method>FIND</Method>"
    ), "{out}");
    assert!(
        out.contains("<PeerID>a&amp;b&lt;c&gt;&quot;d&apos;</PeerID>"),
        "{out}"
    );
    assert!(
        out.contains("<Name>x &lt; y &amp; &quot;z&quot;&#13;\nnext</Name>"),
        "{out}"
    );
    assert!(!out.contains("xmlns"));
    let order: Vec<usize> = [
        "<Method>",
        "<PeerID>",
        "<AuthToken>",
        "<SwarmID>",
        "<PeerNum>",
        "<Stats>",
        "<Clip>",
        "<TransactionID>",
    ]
    .iter()
    .map(|tag| {
        out.find(tag)
            .unwrap_or_else(|| panic!("{tag} missing in {out}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert_eq!(
        xml::decode_request(out.as_bytes(), &Limits::default()).expect("decodes"),
        req
    );
}

#[test]
fn encoder_writes_canonical_ipv6_and_strict_base64() {
    let req = request("valid/connect-request.xml");
    let out = xml::encode_request(&req);
    assert!(out.contains("ip=\"2001:db8::5\""), "{out}");
    let req = request("valid/connect-request-securid-draft-padding.xml");
    let out = xml::encode_request(&req);
    assert!(
        out.contains("<Credentials>AG1hZ251cwAxMjM0NQ==</Credentials>"),
        "{out}"
    );
}

#[test]
fn encoder_leaves_out_what_xml_cannot_carry() {
    let resp = Response {
        status: Status::Ok,
        transaction_id: Some(TransactionId::new("a17b-0001").expect("text id")),
        auth_token: None,
        reflexive_addresses: vec![
            PeerAddress::new(ip("192.0.2.1"), 1)
                .with_kind(AddressType::Host)
                .with_priority(5),
        ],
        swarm_results: vec![
            SwarmResult {
                swarm_id: swarm("first"),
                ok: true,
                peers: Vec::new(),
            },
            SwarmResult {
                swarm_id: swarm("second"),
                ok: true,
                peers: Vec::new(),
            },
        ],
    };
    let out = xml::encode_response(&resp);
    assert!(!out.contains("TransactionID"), "{out}");
    assert!(!out.contains("second"), "{out}");
    assert!(!out.contains("PeerInfoList"), "{out}");
    assert!(
        out.contains("<ReflexiveAddress ip=\"192.0.2.1\" port=\"1\"/>"),
        "{out}"
    );
}

#[test]
fn transaction_id_in_errors_even_when_read_late() {
    // The bad value comes first, the ID last: it is still found for the error body.
    let doc = b"<PPSPTrackerProtocol version='1.0'><Method>JOIN</Method><PeerID>p</PeerID>\
        <SwarmID>s</SwarmID><PeerMode>BOSS</PeerMode><TransactionID>00042</TransactionID>\
        </PPSPTrackerProtocol>";
    let e = xml::decode(doc, &Limits::default()).expect_err("bad mode");
    assert_eq!(e.transaction_id, Some(txid(42)));
}

#[test]
fn misc_rejections() {
    let limits = Limits::default();
    let cases: &[(&str, KindCheck)] = &[
        ("", |k| matches!(k, DecodeErrorKind::Malformed(_))),
        ("\u{feff}", |k| matches!(k, DecodeErrorKind::Malformed(_))),
        (
            "<PPSPTrackerProtocol version='1.0'><Method>KEEPALIVE</Method>",
            |k| matches!(k, DecodeErrorKind::Malformed(_)),
        ),
        ("<PPSPTrackerProtocol version='1.0'/><x/>", |k| {
            matches!(k, DecodeErrorKind::Malformed(_))
        }),
        ("<PPSPTrackerProtocol version='1.0'/>", |k| {
            *k == DecodeErrorKind::NoDirection
        }),
        (
            "<PPSPTrackerProtocol version='01.9'><Response>OK</Response></PPSPTrackerProtocol>",
            |k| *k == DecodeErrorKind::Missing("TransactionID"),
        ),
        (
            "<PPSPTrackerProtocol version='1.0'><Response>FINE</Response></PPSPTrackerProtocol>",
            |k| {
                matches!(
                    k,
                    DecodeErrorKind::InvalidValue {
                        field: "Response",
                        ..
                    }
                )
            },
        ),
        ("<PPSPTrackerProtocol version='1.0' version='1.0'/>", |k| {
            matches!(k, DecodeErrorKind::Malformed(_))
        }),
        (
            "<PPSPTrackerProtocol version='1.0'><Method x:y='1'>KEEPALIVE</Method></PPSPTrackerProtocol>",
            |k| matches!(k, DecodeErrorKind::Malformed(_)),
        ),
        (
            "<PPSPTrackerProtocol version='1.0'><Method>KEEP&#65;LIVE</Method><PeerID>a b</PeerID></PPSPTrackerProtocol>",
            |k| {
                matches!(
                    k,
                    DecodeErrorKind::InvalidValue {
                        field: "PeerID",
                        ..
                    }
                )
            },
        ),
        (
            "<PPSPTrackerProtocol version='1.0'><Method>KEEPALIVE</Method><PeerID>a</PeerID><TransactionID>+5</TransactionID></PPSPTrackerProtocol>",
            |k| {
                matches!(
                    k,
                    DecodeErrorKind::InvalidValue {
                        field: "TransactionID",
                        ..
                    }
                )
            },
        ),
        (
            "<PPSPTrackerProtocol version='1.0'><Method>JOIN</Method><PeerID>a</PeerID><TransactionID>1</TransactionID><SwarmID>s</SwarmID><PeerMode>SEED</PeerMode><PeerNum>0</PeerNum></PPSPTrackerProtocol>",
            |k| {
                matches!(
                    k,
                    DecodeErrorKind::InvalidValue {
                        field: "PeerNum",
                        ..
                    }
                )
            },
        ),
        (
            "<PPSPTrackerProtocol version='1.0'><Response>OK</Response><TransactionID>1</TransactionID><ReflexiveAddress ip='1.2.3.4' port='1'/><ReflexiveAddress ip='::1' port='1'/><ReflexiveAddress ip='::2' port='1'/></PPSPTrackerProtocol>",
            |k| {
                matches!(
                    k,
                    DecodeErrorKind::TooMany {
                        what: "ReflexiveAddress",
                        ..
                    }
                )
            },
        ),
        (
            "<PPSPTrackerProtocol version='1.0'><Response>OK</Response><TransactionID>1</TransactionID><PeerInfoList/></PPSPTrackerProtocol>",
            |k| *k == DecodeErrorKind::Missing("SwarmID"),
        ),
        (
            "<PPSPTrackerProtocol version='1.0'><Method>JOIN</Method><PeerID>a</PeerID><TransactionID>1</TransactionID><SwarmID>s</SwarmID><PeerMode>SEED</PeerMode><Stats><Stat property='NAT'>yes</Stat></Stats></PPSPTrackerProtocol>",
            |k| {
                matches!(
                    k,
                    DecodeErrorKind::InvalidValue {
                        field: "Stat NAT",
                        ..
                    }
                )
            },
        ),
        (
            "<PPSPTrackerProtocol version='1.0'><Method>JOIN</Method><PeerID>a</PeerID><TransactionID>1</TransactionID><SwarmID>s</SwarmID><PeerMode>SEED</PeerMode><Stats><Stat>true</Stat></Stats></PPSPTrackerProtocol>",
            |k| *k == DecodeErrorKind::Missing("Stat@property"),
        ),
        (
            "<PPSPTrackerProtocol version='1.0'><Method>FIND</Method><PeerID>a</PeerID><TransactionID>1</TransactionID><SwarmID>s</SwarmID><Clip><Name>n</Name><ChunkSegments type='video'><Segment from='9' to='3'/></ChunkSegments></Clip></PPSPTrackerProtocol>",
            |k| {
                matches!(
                    k,
                    DecodeErrorKind::InvalidValue {
                        field: "Segment@to",
                        ..
                    }
                )
            },
        ),
        (
            "<PPSPTrackerProtocol version='1.0'><Method>FIND</Method><PeerID>a</PeerID><TransactionID>1</TransactionID><SwarmID>s</SwarmID><Clip><Name>n</Name><ChunkSegments type='video' type='audio'><Segment/></ChunkSegments></Clip></PPSPTrackerProtocol>",
            |k| matches!(k, DecodeErrorKind::Malformed(_)),
        ),
    ];
    for (doc, check) in cases {
        let e = xml::decode(doc.as_bytes(), &limits).expect_err(doc);
        assert!(check(&e.kind), "{doc}: {:?}", e.kind);
    }
}

#[test]
fn attribute_flood_is_refused_quickly() {
    // Close to 1 MiB of attributes on one unknown element: refused by count, before the
    // attribute iterator's duplicate check could go quadratic.
    let mut doc = String::from(
        "<PPSPTrackerProtocol version='1.0'><Method>KEEPALIVE</Method><PeerID>p</PeerID>\
         <TransactionID>3</TransactionID><Flood",
    );
    let mut i = 0u32;
    while doc.len() < 1_000_000 {
        doc.push_str(&format!(" a{i}=''"));
        i += 1;
    }
    doc.push_str("/></PPSPTrackerProtocol>");
    let started = std::time::Instant::now();
    let e = xml::decode(doc.as_bytes(), &Limits::default()).expect_err("flood");
    assert!(
        matches!(
            e.kind,
            DecodeErrorKind::TooMany {
                what: "attributes on one element",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.transaction_id, Some(txid(3)));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // 64 attributes are still fine.
    let ok = format!(
        "<PPSPTrackerProtocol version='1.0'><Method>KEEPALIVE</Method><PeerID>p</PeerID>\
         <TransactionID>3</TransactionID><Ext {}/></PPSPTrackerProtocol>",
        (0..64)
            .map(|i| format!("a{i}='='"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let e = xml::decode(ok.as_bytes(), &Limits::default()).expect_err("65 = signs");
    assert!(matches!(e.kind, DecodeErrorKind::TooMany { .. }));
    let ok = ok.replace("='='", "=''");
    xml::decode(ok.as_bytes(), &Limits::default()).expect("64 attributes");
}

#[test]
fn empty_auth_token_reads_as_missing() {
    let doc = b"<PPSPTrackerProtocol version='1.0'><Method>KEEPALIVE</Method><PeerID>p</PeerID>\
        <AuthToken> </AuthToken><TransactionID>8</TransactionID></PPSPTrackerProtocol>";
    let req = xml::decode_request(doc, &Limits::default()).expect("decodes");
    assert_eq!(req.auth_token, None);
    let twice = b"<PPSPTrackerProtocol version='1.0'><Method>KEEPALIVE</Method><PeerID>p</PeerID>\
        <AuthToken/><AuthToken>x</AuthToken><TransactionID>8</TransactionID></PPSPTrackerProtocol>";
    let e = xml::decode_request(twice, &Limits::default()).expect_err("duplicate");
    assert_eq!(e.kind, DecodeErrorKind::Duplicate("AuthToken"));
}

#[test]
fn characters_outside_xml_are_refused() {
    let with = |value: &str| {
        format!(
            "<PPSPTrackerProtocol version='1.0'><Method>KEEPALIVE</Method>\
             <PeerID>{value}</PeerID><TransactionID>4</TransactionID></PPSPTrackerProtocol>"
        )
    };
    for bad in [
        "a\u{1}b",
        "a\u{0}",
        "a\u{fffe}",
        "a\u{ffff}",
        "a&#1;",
        "a&#xFFFE;",
        "a&#0;",
    ] {
        let e = xml::decode(with(bad).as_bytes(), &Limits::default()).expect_err(bad);
        assert!(
            matches!(e.kind, DecodeErrorKind::Malformed(_)),
            "{bad}: {e:?}"
        );
    }
    for good in ["a&#x10FFFF;", "a&#xE000;", "caf\u{e9}"] {
        xml::decode(with(good).as_bytes(), &Limits::default()).expect(good);
    }
    // The check reads eight bytes at a time: a refused character is found, and an allowed
    // one that shares bytes with a refused one passes, at every offset within a word and
    // across the boundary between two.
    for pad in 0..17 {
        let padding = "x".repeat(pad);
        for bad in ["\u{1}", "\u{1f}", "\u{fffe}", "\u{ffff}"] {
            let value = format!("{padding}{bad}yz");
            let e = xml::decode(with(&value).as_bytes(), &Limits::default()).expect_err(&value);
            assert!(
                matches!(e.kind, DecodeErrorKind::Malformed(_)),
                "{value:?}: {e:?}"
            );
        }
        for good in ["\u{fffd}", "\u{efff}", "\u{e9}", "\u{7f}"] {
            let value = format!("{padding}{good}yz");
            xml::decode(with(&value).as_bytes(), &Limits::default()).expect(&value);
        }
    }
}
