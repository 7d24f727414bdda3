//! Shared helpers of the JSON codec tests: value generators and the JSON Schema runner.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use ppsp_proto::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

// --- generators ------------------------------------------------------------------------------

/// Identifier text: mostly plain, sometimes with characters that need JSON escaping or are
/// outside ASCII (never white space, which identifiers refuse).
pub fn identifier_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._:-]{1,40}",
        1 => "[a-z\"\\\\/\u{1}\u{7f}\u{e9}\u{4e2d}\u{1f600}]{1,20}",
    ]
}

pub fn peer_id() -> impl Strategy<Value = PeerId> {
    identifier_text().prop_map(|s| PeerId::new(s).expect("generated IDs are valid"))
}

pub fn swarm_id() -> impl Strategy<Value = SwarmId> {
    identifier_text().prop_map(|s| SwarmId::new(s).expect("generated IDs are valid"))
}

pub fn transaction_id() -> impl Strategy<Value = TransactionId> {
    prop_oneof![
        "[a-z0-9-]{1,36}",
        "\\PC{1,40}",
        any::<u64>().prop_map(|n| n.to_string()),
    ]
    .prop_map(|s| TransactionId::new(s).expect("generated IDs are valid"))
}

pub fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u16; 8]>().prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
        // Few zero groups is the interesting case for RFC 5952 compression.
        (any::<u16>(), any::<u16>())
            .prop_map(|(a, b)| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, a, 0, 0, b))),
        any::<[u8; 4]>().prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
    ]
}

pub fn address_type() -> impl Strategy<Value = AddressType> {
    prop_oneof![
        Just(AddressType::Host),
        Just(AddressType::Reflexive),
        Just(AddressType::Proxy)
    ]
}

fn free_text() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Z0-9-]{0,12}", "\\PC{0,12}"]
}

/// An address the JSON form carries exactly: type and priority are always set.
pub fn json_address() -> impl Strategy<Value = PeerAddress> {
    (
        ip(),
        any::<u16>(),
        any::<u32>(),
        address_type(),
        option::of(prop_oneof![
            Just(ConnectionKind::Wired),
            Just(ConnectionKind::Wireless)
        ]),
        option::of(free_text()),
        option::of(free_text()),
    )
        .prop_map(
            |(ip, port, priority, kind, connection, asn, peer_protocol)| PeerAddress {
                ip,
                port,
                priority: Some(priority),
                kind: Some(kind),
                connection,
                asn,
                peer_protocol,
            },
        )
}

/// Any address, including ones without type or priority.
pub fn any_address() -> impl Strategy<Value = PeerAddress> {
    (
        json_address(),
        option::of(any::<u32>()),
        option::of(address_type()),
    )
        .prop_map(|(mut a, priority, kind)| {
            a.priority = priority;
            a.kind = kind;
            a
        })
}

pub fn peer_num() -> impl Strategy<Value = PeerNum> {
    (
        any::<u32>(),
        option::of(prop_oneof![
            Just(AbilityNat::NoNat),
            Just(AbilityNat::Stun),
            Just(AbilityNat::Turn)
        ]),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
    )
        .prop_map(
            |(count, ability_nat, concurrent_links, online_time, upload_bandwidth)| PeerNum {
                count,
                ability_nat,
                concurrent_links,
                online_time,
                upload_bandwidth,
            },
        )
}

fn json_mode() -> impl Strategy<Value = PeerMode> {
    prop_oneof![Just(PeerMode::Seed), Just(PeerMode::Leech)]
}

fn any_mode() -> impl Strategy<Value = PeerMode> {
    prop_oneof![
        Just(PeerMode::Seed),
        Just(PeerMode::Leech),
        Just(PeerMode::LiveSeed)
    ]
}

fn swarm_action(mode: impl Strategy<Value = PeerMode>) -> impl Strategy<Value = SwarmAction> {
    (
        swarm_id(),
        prop_oneof![Just(SwarmActionKind::Join), Just(SwarmActionKind::Leave)],
        mode,
    )
        .prop_map(|(swarm_id, action, mode)| SwarmAction {
            swarm_id,
            action,
            mode,
        })
}

fn stream_stats() -> impl Strategy<Value = StreamStats> {
    (
        swarm_id(),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
    )
        .prop_map(|(swarm_id, up, down, bandwidth, links)| StreamStats {
            swarm_id: Some(swarm_id),
            uploaded_bytes: up,
            downloaded_bytes: down,
            available_bandwidth: bandwidth,
            concurrent_links: links,
        })
}

/// Every request body the JSON form carries exactly: CONNECT (with swarm actions), FIND,
/// STAT_REPORT with stream statistics, and the keep-alive (STAT_REPORT without statistics).
pub fn json_body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        (
            vec(json_address(), 0..4),
            option::of(peer_num()),
            vec(swarm_action(json_mode()), 1..5)
        )
            .prop_map(|(addresses, peer_num, swarm_actions)| {
                RequestBody::Connect(Connect {
                    auth: None,
                    addresses,
                    peer_num,
                    swarm_actions,
                })
            }),
        (swarm_id(), option::of(peer_num())).prop_map(|(swarm_id, peer_num)| {
            RequestBody::Find(Find {
                swarm_id,
                peer_num,
                hints: NatHints::default(),
                clip: None,
            })
        }),
        vec(stream_stats().prop_map(Stat::StreamStats), 0..4)
            .prop_map(|stats| RequestBody::StatReport(StatReport { stats })),
    ]
}

pub fn json_request() -> impl Strategy<Value = Request> {
    (peer_id(), transaction_id(), json_body()).prop_map(|(peer_id, transaction_id, body)| Request {
        peer_id,
        auth_token: None,
        transaction_id,
        body,
    })
}

/// Any request of the model, including the XML-only methods and fields.
pub fn any_request() -> impl Strategy<Value = Request> {
    let body = prop_oneof![
        json_body(),
        Just(RequestBody::Disconnect),
        Just(RequestBody::KeepAlive),
        (
            swarm_id(),
            any_mode(),
            option::of(any::<u32>()),
            any::<u64>()
        )
            .prop_map(
                |(swarm_id, mode, peer_num, expire_time)| RequestBody::Join(Join {
                    swarm_id,
                    mode,
                    hints: NatHints {
                        nat: Some(true),
                        stun: None
                    },
                    peer_num,
                    clip: None,
                    expire_time,
                })
            ),
        swarm_id().prop_map(|swarm_id| RequestBody::Leave(Leave { swarm_id })),
        (
            vec(any_address(), 0..3),
            vec(swarm_action(any_mode()), 0..3),
            any::<bool>()
        )
            .prop_map(|(addresses, swarm_actions, with_auth)| {
                RequestBody::Connect(Connect {
                    auth: with_auth.then(|| SaslAuth {
                        mechanism: "ANONYMOUS".to_owned(),
                        credentials: None,
                    }),
                    addresses,
                    peer_num: None,
                    swarm_actions,
                })
            }),
        (
            vec(stream_stats(), 0..3),
            any::<bool>(),
            option::of(any::<u64>())
        )
            .prop_map(|(stats, nat, orphan_bytes)| {
                let mut stats: Vec<Stat> = stats.into_iter().map(Stat::StreamStats).collect();
                stats.push(Stat::Nat(nat));
                stats.push(Stat::StreamStats(StreamStats {
                    swarm_id: None,
                    uploaded_bytes: orphan_bytes,
                    ..StreamStats::default()
                }));
                RequestBody::StatReport(StatReport { stats })
            }),
    ];
    (
        peer_id(),
        option::of("[a-z0-9]{1,16}"),
        transaction_id(),
        body,
    )
        .prop_map(|(peer_id, token, transaction_id, body)| Request {
            peer_id,
            auth_token: token.map(|t| AuthToken::new(t).expect("valid token")),
            transaction_id,
            body,
        })
}

fn json_peer_info() -> impl Strategy<Value = PeerInfo> {
    (peer_id(), json_address()).prop_map(|(peer_id, address)| PeerInfo {
        peer_id,
        mode: None,
        addresses: vec![address],
        location: None,
        connection_type: None,
        rank_cost: None,
    })
}

fn json_swarm_result() -> impl Strategy<Value = SwarmResult> {
    (swarm_id(), any::<bool>(), vec(json_peer_info(), 0..4)).prop_map(|(swarm_id, ok, peers)| {
        SwarmResult {
            swarm_id,
            ok,
            // A failed swarm result carries no peer group.
            peers: if ok { peers } else { Vec::new() },
        }
    })
}

/// Statuses with their own JSON error code (OBJECT NOT FOUND shares 3 with MESSAGE FORBIDDEN).
pub fn json_status() -> impl Strategy<Value = Status> {
    proptest::sample::select(
        Status::ALL
            .iter()
            .copied()
            .filter(|s| *s != Status::ObjectNotFound)
            .collect::<Vec<_>>(),
    )
}

pub fn json_response() -> impl Strategy<Value = Response> {
    (
        json_status(),
        option::of(transaction_id()),
        option::of(json_address()),
        vec(json_swarm_result(), 0..4),
    )
        .prop_map(|(status, transaction_id, reflexive, results)| {
            let mut response = Response::status(status, transaction_id);
            if status == Status::Ok {
                response.reflexive_addresses.extend(reflexive);
                response.swarm_results = results;
            }
            response
        })
}

/// Any response of the model, including what JSON cannot carry (auth tokens, several
/// reflexive addresses, peers with several or no addresses, bodies on failures).
pub fn any_response() -> impl Strategy<Value = Response> {
    let peer = (peer_id(), vec(any_address(), 0..3), option::of(any_mode())).prop_map(
        |(peer_id, addresses, mode)| PeerInfo {
            peer_id,
            mode,
            addresses,
            location: Some("AS64500".to_owned()),
            connection_type: None,
            rank_cost: Some(-3),
        },
    );
    let result = (swarm_id(), any::<bool>(), vec(peer, 0..3)).prop_map(|(swarm_id, ok, peers)| {
        SwarmResult {
            swarm_id,
            ok,
            peers,
        }
    });
    (
        proptest::sample::select(Status::ALL.to_vec()),
        option::of(transaction_id()),
        vec(any_address(), 0..3),
        vec(result, 0..3),
        option::of("[a-z0-9]{1,16}"),
    )
        .prop_map(
            |(status, transaction_id, reflexive_addresses, swarm_results, token)| Response {
                status,
                transaction_id,
                auth_token: token.map(|t| AuthToken::new(t).expect("valid token")),
                reflexive_addresses,
                swarm_results,
            },
        )
}

// --- fixtures --------------------------------------------------------------------------------

pub fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/json")
        .join(kind)
}

/// `(file name, bytes)` of every fixture of one kind, sorted by name.
pub fn fixtures(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fixture_dir(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).expect("fixture readable");
            (name, bytes)
        })
        .filter(|(name, _)| name.ends_with(".json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

// --- JSON Schema validation with an outside validator -----------------------------------------

pub fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ppsp-tracker-protocol.schema.json")
}

/// A fresh, empty scratch directory under the target dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("json-schema-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

const VALIDATOR: &str = r#"
import json, pathlib, sys
try:
    import jsonschema
except ImportError:
    print("MISSING-JSONSCHEMA")
    sys.exit(3)
schema = json.loads(pathlib.Path(sys.argv[1]).read_text())
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(
    schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
for path in sorted(pathlib.Path(sys.argv[2]).glob("*.json")):
    errors = list(validator.iter_errors(json.loads(path.read_text(encoding="utf-8"))))
    first = errors[0].message.replace("\t", " ").replace("\n", " ")[:300] if errors else ""
    print(path.name + "\t" + ("invalid" if errors else "valid") + "\t" + first)
"#;

/// Validates every `*.json` file in `dir` against the project schema with Python's
/// `jsonschema` (Draft 2020-12, formats checked). Returns file name → error message, or
/// `None` when the file is valid.
pub fn validate_dir(dir: &Path) -> BTreeMap<String, Option<String>> {
    let output = Command::new("python3")
        .arg("-c")
        .arg(VALIDATOR)
        .arg(schema_path())
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to validate against the JSON Schema: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains("MISSING-JSONSCHEMA"),
        "the Python package `jsonschema` is missing: install it with \
         `apt-get install python3-jsonschema` or `python3 -m pip install jsonschema` \
         (scripts/test.sh does this)"
    );
    assert!(
        output.status.success(),
        "validator failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, '\t');
            let name = parts.next().unwrap_or_default().to_owned();
            let verdict = parts.next().unwrap_or_default();
            let message = parts.next().unwrap_or_default().to_owned();
            (name, (verdict != "valid").then_some(message))
        })
        .collect()
}
