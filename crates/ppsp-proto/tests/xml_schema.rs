//! Validates what the XML encoder writes, and the fixture files, against the project's
//! schema `docs/ppsp-tracker-protocol.xsd` with `xmllint` (libxml2), an implementation
//! independent of ours. `scripts/test.sh` installs xmllint; without it this test fails.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ppsp_proto::xml;
use ppsp_proto::{
    AddressType, AuthToken, ChunkMap, ChunkMapReport, ChunkSegments, Clip, Connect, Find, Join,
    Leave, Limits, MediaType, NatHints, PeerAddress, PeerId, PeerInfo, PeerMode, PeerNum, Request,
    RequestBody, Response, SaslAuth, Segment, Stat, StatReport, Status, StreamStats, SwarmId,
    SwarmResult, TransactionId,
};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema() -> PathBuf {
    manifest_dir().join("../../docs/ppsp-tracker-protocol.xsd")
}

fn require_xmllint() {
    let found = Command::new("xmllint")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "xmllint is not installed or not on PATH: install libxml2-utils \
         (scripts/test.sh does this) to run the schema validation test"
    );
}

/// Runs `xmllint --noout --schema` on one file: Ok on success, Err(diagnostics) otherwise.
fn validate(file: &Path) -> Result<(), String> {
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema())
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running xmllint: {e}"));
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "exit {:?}: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ppsp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn peer(id: &str) -> PeerId {
    PeerId::new(id).expect("peer id")
}

fn swarm(id: &str) -> SwarmId {
    SwarmId::new(id).expect("swarm id")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn request(body: RequestBody, token: bool) -> Request {
    Request {
        peer_id: peer("peer&<\"quoted\">'x'"),
        auth_token: token.then(|| AuthToken::new("tok/en+=").expect("token")),
        transaction_id: TransactionId::numeric(u64::MAX),
        body,
    }
}

fn full_clip(with_map: bool) -> Clip {
    let segment = if with_map {
        let mut map = ChunkMap::new(1000, 21);
        map.insert(1000);
        map.insert(1020);
        Segment {
            levels: Some(3),
            chunks: Some(21),
            ..Segment::with_map(map)
        }
    } else {
        Segment {
            levels: Some(2),
            chunks: Some(5),
            ..Segment::range(7, Some(11))
        }
    };
    Clip {
        name: "clip <one> & \"two\"\r\n".into(),
        kind: Some(MediaType::Audio),
        chunk_segment_index: Some(9),
        segments: Some(ChunkSegments {
            media: MediaType::Audio,
            segments: vec![segment, Segment::range(0, None)],
        }),
    }
}

fn all_addresses() -> Vec<PeerAddress> {
    vec![
        PeerAddress::new(ip("192.0.2.1"), 0)
            .with_kind(AddressType::Host)
            .with_priority(u32::MAX),
        PeerAddress::new(ip("::ffff:192.0.2.2"), 65535).with_kind(AddressType::Reflexive),
        PeerAddress::new(ip("2001:db8::1"), 80).with_kind(AddressType::Proxy),
        PeerAddress::new(ip("::"), 1),
    ]
}

/// One message of every kind the crate emits, with every optional field filled somewhere.
fn emitted() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let requests = [
        (
            "connect",
            request(
                RequestBody::Connect(Connect {
                    auth: Some(SaslAuth {
                        mechanism: "PLAIN".into(),
                        credentials: Some(b"\0peer\0pw".to_vec()),
                    }),
                    addresses: all_addresses(),
                    peer_num: None,
                    swarm_actions: Vec::new(),
                }),
                false,
            ),
        ),
        (
            "connect-anonymous",
            request(
                RequestBody::Connect(Connect {
                    auth: Some(SaslAuth {
                        mechanism: "ANONYMOUS".into(),
                        credentials: None,
                    }),
                    addresses: Vec::new(),
                    peer_num: None,
                    swarm_actions: Vec::new(),
                }),
                false,
            ),
        ),
        ("disconnect", request(RequestBody::Disconnect, true)),
        (
            "join",
            request(
                RequestBody::Join(Join {
                    swarm_id: swarm("swarm&1"),
                    mode: PeerMode::LiveSeed,
                    hints: NatHints {
                        nat: Some(false),
                        stun: Some(true),
                    },
                    peer_num: Some(50),
                    clip: Some(full_clip(false)),
                    expire_time: 86_400,
                }),
                true,
            ),
        ),
        (
            "join-minimal",
            request(
                RequestBody::Join(Join {
                    swarm_id: swarm("s"),
                    mode: PeerMode::Leech,
                    hints: NatHints::default(),
                    peer_num: None,
                    clip: None,
                    expire_time: 0,
                }),
                true,
            ),
        ),
        (
            "leave",
            request(
                RequestBody::Leave(Leave {
                    swarm_id: swarm("s'2"),
                }),
                true,
            ),
        ),
        (
            "find",
            request(
                RequestBody::Find(Find {
                    swarm_id: swarm("s"),
                    peer_num: Some(PeerNum::count(1)),
                    hints: NatHints {
                        nat: Some(true),
                        stun: None,
                    },
                    clip: Some(full_clip(false)),
                }),
                true,
            ),
        ),
        (
            "stat-report",
            request(
                RequestBody::StatReport(StatReport {
                    stats: vec![
                        Stat::ChunkMap(ChunkMapReport {
                            swarm_id: swarm("s"),
                            clips: vec![full_clip(true), full_clip(true)],
                        }),
                        Stat::StreamStats(StreamStats {
                            swarm_id: Some(swarm("s")),
                            uploaded_bytes: Some(u64::MAX),
                            downloaded_bytes: Some(0),
                            available_bandwidth: Some(1),
                            concurrent_links: None,
                        }),
                        Stat::Nat(true),
                        Stat::Stun(false),
                    ],
                }),
                true,
            ),
        ),
        (
            "stat-report-empty",
            request(RequestBody::StatReport(StatReport::default()), true),
        ),
        ("keepalive", request(RequestBody::KeepAlive, true)),
    ];
    for (name, req) in requests {
        out.push((format!("request-{name}.xml"), xml::encode_request(&req)));
    }
    let peers = vec![
        PeerInfo {
            peer_id: peer("live&seed"),
            mode: Some(PeerMode::LiveSeed),
            addresses: all_addresses(),
            location: Some("AS64500 <edge>".into()),
            connection_type: Some("FIBER & \"more\"".into()),
            rank_cost: Some(i64::MIN),
        },
        PeerInfo {
            peer_id: peer("bare"),
            mode: None,
            addresses: Vec::new(),
            location: None,
            connection_type: None,
            rank_cost: None,
        },
    ];
    let connect_ok = Response {
        status: Status::Ok,
        transaction_id: Some(TransactionId::numeric(1)),
        auth_token: Some(AuthToken::new("AbC-123_x").expect("token")),
        reflexive_addresses: vec![
            PeerAddress::new(ip("203.0.113.1"), 1),
            PeerAddress::new(ip("2001:db8::9"), 2),
        ],
        swarm_results: Vec::new(),
    };
    let list_ok = Response {
        status: Status::Ok,
        transaction_id: Some(TransactionId::numeric(2)),
        auth_token: None,
        reflexive_addresses: Vec::new(),
        swarm_results: vec![SwarmResult {
            swarm_id: swarm("s"),
            ok: true,
            peers,
        }],
    };
    let seed_ok = Response {
        swarm_results: vec![SwarmResult {
            swarm_id: swarm("s"),
            ok: true,
            peers: Vec::new(),
        }],
        ..Response::status(Status::Ok, Some(TransactionId::numeric(3)))
    };
    for (name, resp) in [
        ("connect", connect_ok),
        ("peer-list", list_ok),
        ("seed", seed_ok),
    ] {
        out.push((format!("response-{name}.xml"), xml::encode_response(&resp)));
    }
    for status in Status::ALL {
        let name = status.ppsp_str().to_lowercase().replace(' ', "-");
        out.push((
            format!("status-{name}.xml"),
            xml::encode_response(&Response::status(status, Some(TransactionId::numeric(4)))),
        ));
        if status != Status::Ok {
            out.push((
                format!("status-{name}-no-txid.xml"),
                xml::encode_response(&Response::status(status, None)),
            ));
        }
    }
    out
}

/// Valid fixtures outside the schema on purpose: declared namespaces and unknown elements
/// are accepted by the decoder but are not part of what a sender may write.
const OUTSIDE_SCHEMA: [&str; 2] = [
    "stat-report-namespaced.xml",
    "keepalive-request-forward-compatible.xml",
];

/// Malformed fixtures the schema itself must reject.
const SCHEMA_REJECTS: [&str; 17] = [
    "missing-version.xml",
    "bad-version.xml",
    "port-out-of-range.xml",
    "negative-transaction-id.xml",
    "huge-transaction-id.xml",
    "method-and-response.xml",
    "no-direction.xml",
    "unknown-method.xml",
    "undeclared-prefix.xml",
    "invalid-credentials-base64.xml",
    "invalid-bitmap-base64.xml",
    "unknown-peer-mode.xml",
    "lowercase-mechanism.xml",
    "wrong-root.xml",
    "not-well-formed.xml",
    "undefined-entity.xml",
    "deep-nesting.xml",
];

/// Malformed fixtures that XSD 1.0 cannot catch ("at most once", "mandatory for this
/// method", cross-attribute checks, version numbers): only the decoder refuses them.
const DECODER_ONLY: [&str; 6] = [
    "missing-swarm-id.xml",
    "missing-stats.xml",
    "missing-credentials.xml",
    "bitmapsize-mismatch.xml",
    "duplicate-peer-id.xml",
    "unsupported-major-version.xml",
];

#[test]
fn emitted_messages_validate() {
    require_xmllint();
    let scratch = Scratch::new("xml-schema-emitted");
    let limits = Limits::default();
    let mut failures = Vec::new();
    let mut written = Vec::new();
    for (name, body) in emitted() {
        // Everything emitted must also decode.
        xml::decode(body.as_bytes(), &limits).unwrap_or_else(|e| panic!("{name}: {e:?}\n{body}"));
        let path = scratch.0.join(&name);
        std::fs::write(&path, &body).expect("write");
        written.push(path);
    }
    // Re-encodings of the valid fixtures: one more copy of every kind, as a peer or tracker
    // would answer after decoding.
    let valid_dir = manifest_dir().join("tests/fixtures/xml/valid");
    for entry in std::fs::read_dir(&valid_dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let message = xml::decode(&std::fs::read(&path).expect("read"), &limits)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let name = format!(
            "reencoded-{}",
            path.file_name().expect("name").to_string_lossy()
        );
        let out = scratch.0.join(name);
        std::fs::write(&out, xml::encode(&message)).expect("write");
        written.push(out);
    }
    assert!(written.len() >= 40, "only {} messages", written.len());
    for path in &written {
        if let Err(e) = validate(path) {
            failures.push(format!(
                "{}: {e}\n{}",
                path.display(),
                std::fs::read_to_string(path).unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_fixtures_validate() {
    require_xmllint();
    let dir = manifest_dir().join("tests/fixtures/xml/valid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let result = validate(&path);
        if OUTSIDE_SCHEMA.contains(&name.as_str()) {
            assert!(
                result.is_err(),
                "{name} was expected to fall outside the schema"
            );
        } else {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
            checked += 1;
        }
    }
    assert!(checked >= 20);
}

#[test]
fn structurally_malformed_fixtures_fail_validation() {
    require_xmllint();
    let dir = manifest_dir().join("tests/fixtures/xml/malformed");
    for name in SCHEMA_REJECTS {
        let result = validate(&dir.join(name));
        assert!(result.is_err(), "{name} unexpectedly validates");
    }
    for name in DECODER_ONLY {
        validate(&dir.join(name))
            .unwrap_or_else(|e| panic!("{name} should be schema-valid (decoder-only): {e}"));
        assert!(
            xml::decode(
                &std::fs::read(dir.join(name)).expect("read"),
                &Limits::default()
            )
            .is_err(),
            "{name} must still be refused by the decoder"
        );
    }
}
